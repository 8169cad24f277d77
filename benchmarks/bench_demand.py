"""Benchmark (not a test): time of the demand pass per MetaSchedule candidate on this machine.

    python3 benchmarks/bench_demand.py [--n 20] [--workloads a,b,c]

Samples random MetaSchedule candidates of a GEMM, a softmax and a conv2d workload (fixed seeds), then
times `costpass.demand.extract` (lowering with TVM's pipeline + the walk) and, separately, the walk alone.
Prints the median per candidate and writes benchmarks/results/bench_demand.json.
"""
import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from costpass import demand
from costpass.measure.build import cuda_target
from costpass.measure.candidates import random_candidates, apply_trace
from schedules import workloads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--workloads", default="llama3_8b_qkv_fp16,softmax_attn_fp32,conv_r50_c3_3x3_fp16")
    args = ap.parse_args()
    target = cuda_target()
    import os
    import subprocess
    import sys
    try:
        commit = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    except Exception:  # noqa: BLE001
        commit = ""
    out = {"command": "python3 benchmarks/bench_demand.py " + " ".join(sys.argv[1:]), "commit": commit,
           "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d"), "results": {}}
    for name in args.workloads.split(","):
        wl = workloads.get(name)
        cands = random_candidates(wl, target, args.n, seed=7)
        full, lower, walk, failed = [], [], [], 0
        for c in cands:
            sch = apply_trace(wl, c.trace_json)
            t0 = time.perf_counter()
            try:
                kernels = demand.lower_to_device(sch.mod, target)
            except demand.DemandError:
                failed += 1      # TVM's own lowering rejects the candidate (it would not build either)
                continue
            t1 = time.perf_counter()
            for kname, f in kernels:
                demand.analyze_kernel(kname, f)
            t2 = time.perf_counter()
            lower.append((t1 - t0) * 1e3)
            walk.append((t2 - t1) * 1e3)
            full.append((t2 - t0) * 1e3)
        res = {"candidates": len(full), "lowering_failed": failed, "median_ms": statistics.median(full),
               "p90_ms": sorted(full)[int(0.9 * (len(full) - 1))],
               "median_lower_ms": statistics.median(lower), "median_walk_ms": statistics.median(walk)}
        out["results"][name] = res
        print(f"{name:32s} n={res['candidates']:3d}  median {res['median_ms']:6.1f} ms  "
              f"(lower {res['median_lower_ms']:5.1f}, walk {res['median_walk_ms']:5.1f})  p90 {res['p90_ms']:6.1f} ms")
    path = Path(__file__).parent / "results" / "bench_demand.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    out["loadavg_at_end"] = os.getloadavg()
    path.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
