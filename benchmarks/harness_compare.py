"""Same kernels, two harnesses: why re-timed tuning bests differ from their tuning-time latencies
(benchmarks/results/tune_bench_256_retimed.md: the prefill GEMM kernels of costpass and random read 1.5x
slower under gpu_run.py than under MetaSchedule's runner, XGBModel's 0.92x).

For every kernel of a measurement bundle, in one process on the GPU: the inputs filled three ways (torch
N(0,1)*0.5 as gpu_run.py does; TVM's ``random_fill_for_measure`` as MetaSchedule's LocalRunner does; zeros),
each timed two ways (gpu_run.py's CUDA events around each launch behind a spin; TVM's ``time_evaluator`` with
number 3, repeat 5, min_repeat_ms 20, the tuning runs' runner config). Needs the full TVM wheel
(``time_evaluator`` reaches for ``tvm.target``) and torch. Writes one JSON line per (kernel, fill).

    python3 benchmarks/harness_compare.py --bundle DIR --out rows.jsonl [--ids a,b,...]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from costpass.measure import gpu_run as G  # noqa: E402

FILLS = ("randn", "tvm_measure", "zeros")


def fill(kind: str, torch_args, tvm_args, outputs, seed: int):
    import torch

    import tvm

    gen = torch.Generator(device="cuda")
    gen.manual_seed(seed)
    f_measure = tvm.get_global_func("tvm.contrib.random.random_fill_for_measure")
    for i, (t, v) in enumerate(zip(torch_args, tvm_args)):
        if i in outputs:
            t.zero_()
        elif kind == "randn":
            G.fill_input(t, str(v.dtype), None, gen)
        elif kind == "tvm_measure":
            f_measure(v)
        else:
            t.zero_()
    torch.cuda.synchronize()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ids", default="", help="comma-separated candidate ids (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    import torch

    import tvm

    entries = G.read_manifest(a.bundle)
    if a.ids:
        keep = set(a.ids.split(","))
        entries = [e for e in entries if e["id"] in keep]
    G.setup_tvm(G.CubinCache(os.path.join(a.bundle, "cubins"), G.device_arch()))
    dev = tvm.cuda(0)
    clocks = G.read_clocks()
    with open(a.out, "w") as out:
        for e in entries:
            row0 = {"id": e["id"], "workload": e["workload"], "origin": e.get("origin"), "clocks": clocks}
            try:
                mod, fn = G.load_entry(G.entry_lib(a.bundle, e), e.get("entry", "main"))
                targs = [torch.empty(tuple(int(s) for s in sh), dtype=G.torch_dtype(dt), device="cuda")
                         for sh, dt in e["arg_specs"]]
                vargs = [tvm.runtime.from_dlpack(t) for t in targs]
                outputs = G.output_indices(e)
                fn(*targs)  # load, compile or look up the cubin, warm up
                torch.cuda.synchronize()
                ev = mod.time_evaluator(mod.entry_name, dev, number=3, repeat=5, min_repeat_ms=20)
            except Exception as ex:  # noqa: BLE001
                out.write(json.dumps({**row0, "error": f"{type(ex).__name__}: {ex}"[:500]}) + "\n")
                continue
            for kind in FILLS:
                fill(kind, targs, vargs, outputs, a.seed)
                fn(*targs)
                torch.cuda.synchronize()
                res = G.time_fn(fn, targs)
                t0 = time.perf_counter()
                te = [x * 1e3 for x in ev(*vargs).results]
                row = {**row0, "fill": kind, "events_ms": statistics.median(res["times"]), "events_n": len(res["times"]),
                       "evaluator_ms": statistics.median(te), "evaluator_runs_ms": te,
                       "evaluator_wall_s": round(time.perf_counter() - t0, 3)}
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(f"{e['id']} {e['workload']:26s} {kind:12s} events {row['events_ms']*1e3:8.1f} us  "
                      f"evaluator {row['evaluator_ms']*1e3:8.1f} us", flush=True)
            del mod, fn
    return 0


if __name__ == "__main__":
    sys.exit(main())
