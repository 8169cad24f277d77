"""Is a kernel's warm-L2 time different after the GPU has been busy for a while, or while another process
keeps it busy (as during the tuning runs, where 4-12 runs shared one GPU)? For each kernel (``--ids``):
gpu_run.py's event timing (median, 3 times) right away; after ``--busy-s`` seconds of back-to-back launches
of the kernel itself; and while a second process runs torch kernels in a loop. One JSON line per (kernel,
condition). Runtime-only TVM is enough.

    python3 benchmarks/warmup_probe.py --bundle DIR --ids a,b --out rows.jsonl [--busy-s 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from costpass.measure import gpu_run as G  # noqa: E402

BACKGROUND = ("import torch, time\n"
              "x = torch.randn(64 << 20, device='cuda'); t = time.time()\n"
              "while time.time() - t < {s}:\n"
              "    x.mul_(1.0000001); torch.cuda.synchronize()\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--busy-s", type=float, default=3.0)
    a = ap.parse_args(argv)

    import torch

    keep = a.ids.split(",")
    entries = [e for e in G.read_manifest(a.bundle) if e["id"] in keep]
    G.setup_tvm(G.CubinCache(os.path.join(a.bundle, "cubins"), G.device_arch()))
    with open(a.out, "w") as out:
        for e in entries:
            mod, fn = G.load_entry(G.entry_lib(a.bundle, e), e.get("entry", "main"))
            args = G.Workload(e["workload"], e, seed=0).args   # inputs N(0, 0.25), outputs NaN
            fn(*args)
            torch.cuda.synchronize()

            def measure(cond):
                res = [statistics.median(G.time_fn(fn, args)["times"]) for _ in range(3)]
                row = {"id": e["id"], "workload": e["workload"], "condition": cond, "clocks": G.read_clocks(),
                       "median_ms_x3": res}
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(f"{e['id']} {e['workload']:24s} {cond:12s} " + " ".join(f"{x * 1e3:7.1f}" for x in res)
                      + f" us  sm {row['clocks'].get('sm_mhz')} MHz", flush=True)

            time.sleep(1.0)
            measure("idle")
            t0 = time.time()
            while time.time() - t0 < a.busy_s:
                for _ in range(50):
                    fn(*args)
                torch.cuda.synchronize()
            measure("after_busy")
            bg = subprocess.Popen([sys.executable, "-c", BACKGROUND.format(s=a.busy_s + 8)])
            time.sleep(3.0)
            measure("background")
            bg.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
