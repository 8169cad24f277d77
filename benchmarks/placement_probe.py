"""Does where a kernel's buffers sit in GPU memory change its warm-L2 time? (tune_bench_256_retimed: some
kernels whose working set is near the H100's 50 MB L2 re-time 1.2-1.6x away from their tuning-time latency
in every harness, in both directions.)

For each kernel of a measurement bundle (``--ids``): its arguments allocated after a pad buffer of 0, 1, 2,
... MB (``--pads``), inputs N(0, 0.25), timed three times by gpu_run.py's CUDA-event method (warm L2,
median of each). Runtime-only TVM is enough. One JSON line per (kernel, pad).

    python3 benchmarks/placement_probe.py --bundle DIR --ids a,b --out rows.jsonl [--pads 0,1,2,3,5,8,13,21,34]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from costpass.measure import gpu_run as G  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pads", default="0,1,2,3,5,8,13,21,34,55")
    a = ap.parse_args(argv)

    import torch

    keep = a.ids.split(",")
    entries = [e for e in G.read_manifest(a.bundle) if e["id"] in keep]
    G.setup_tvm(G.CubinCache(os.path.join(a.bundle, "cubins"), G.device_arch()))
    clocks = G.read_clocks()
    with open(a.out, "w") as out:
        for e in entries:
            mod, fn = G.load_entry(G.entry_lib(a.bundle, e), e.get("entry", "main"))
            for pad_mb in [int(x) for x in a.pads.split(",")]:
                torch.cuda.empty_cache()
                pad = torch.empty(max(pad_mb << 20, 1), dtype=torch.uint8, device="cuda")
                args = G.Workload(e["workload"], e, seed=0).args   # inputs N(0, 0.25), outputs NaN
                fn(*args)
                torch.cuda.synchronize()
                res = [statistics.median(G.time_fn(fn, args)["times"]) for _ in range(3)]
                row = {"id": e["id"], "workload": e["workload"], "pad_mb": pad_mb, "clocks": clocks,
                       "addresses": [t.data_ptr() for t in args], "median_ms_x3": res}
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(f"{e['id']} {e['workload']:24s} pad {pad_mb:3d} MB  "
                      + " ".join(f"{x * 1e3:7.1f}" for x in res) + " us", flush=True)
                del args, pad
            del mod, fn
    return 0


if __name__ == "__main__":
    sys.exit(main())
