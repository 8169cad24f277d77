"""Does how a library's CUDA module is loaded change how fast its kernel runs?

Stop 13 (``build_flags_probe.py`` with the ``@`` and ``%`` sets): a MetaSchedule builder's artifact (its CUDA module
holds the cubin) ran the SiLU schedule at 19 us where the bundle's library of the same schedule, loaded with the
byte-identical cubin handed over by the compile callback, ran at 26.5 us; under Nsight Compute both take 16 us.
Here both libraries are loaded in one process, given the same argument tensors, and timed alternately
(A, B, A, B): CUDA events per launch (gpu_run.time_fn), wall clock over back-to-back launches, and the kernel
durations that the torch profiler (CUPTI) records inside the back-to-back loop.

    python3 benchmarks/load_path_probe.py --bundle DIR --artifacts DIR --cubins DIR --ids a,b --out rows.jsonl
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from costpass.measure import gpu_run as G  # noqa: E402


def wall_us(fn, args, n: int = 200) -> float:
    import torch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn(*args)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


def profiled_us(fn, args, n: int = 50) -> list:
    """Kernel durations (us) recorded by the torch profiler over n back-to-back launches."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn(*args)
        torch.cuda.synchronize()
    return [round(ev.device_time, 3) for ev in prof.events()
            if ev.device_type.name == "CUDA" and "main_kernel" in ev.name]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--artifacts", required=True, help="DIR/<id>.so: libraries whose CUDA module holds the cubin")
    ap.add_argument("--cubins", required=True, help="DIR/<sha256 of source>.cubin: handed to the bundle's libraries")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)

    import torch

    torch.cuda.init()

    def prebuilt(code, *_rest):
        return (Path(a.cubins) / f"{hashlib.sha256(str(code).encode()).hexdigest()}.cubin").read_bytes()

    G.setup_tvm(prebuilt)
    keep = a.ids.split(",")
    clocks = G.read_clocks()
    with open(a.out, "w") as out:
        for e in [e for e in G.read_manifest(a.bundle) if e["id"] in keep]:
            libs = {"artifact": str(Path(a.artifacts) / f"{e['id']}.so"), "bundle": G.entry_lib(a.bundle, e)}
            loaded = {k: G.load_entry(p, e.get("entry", "main")) for k, p in libs.items()}
            args = G.Workload(e["workload"], e, seed=0).args
            for _, fn in loaded.values():
                fn(*args)
            for rnd in range(2):
                for name, (_, fn) in loaded.items():
                    prof = profiled_us(fn, args)
                    row = {"id": e["id"], "workload": e["workload"], "lib": name, "round": rnd, "clocks": clocks,
                           "events_median_us": round(statistics.median(G.time_fn(fn, args)["times"]) * 1e3, 3),
                           "wall_us_per_call": round(wall_us(fn, args), 3),
                           "profiler_median_us": statistics.median(prof) if prof else None,
                           "profiler_n": len(prof)}
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(json.dumps({k: v for k, v in row.items() if k != "clocks"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
