"""Same kernels, several harnesses: why re-timed tuning bests differ from their tuning-time latencies
(benchmarks/results/tune_bench_256_retimed.md: the prefill GEMM kernels of costpass and random read 1.5x
slower under gpu_run.py than under MetaSchedule's runner, XGBModel's 0.92x).

For every kernel of a measurement bundle, in one process on the GPU: the inputs filled three ways (torch
N(0,1)*0.5 as gpu_run.py does; TVM's ``random_fill_for_measure`` as MetaSchedule's LocalRunner does; zeros),
each timed two ways (gpu_run.py's CUDA events around each launch behind a spin; TVM's ``time_evaluator`` with
number 3, repeat 5, min_repeat_ms 20, the tuning runs' runner config). Needs the full TVM wheel
(``time_evaluator`` reaches for ``tvm.target``) and torch. Writes one JSON line per (kernel, fill).

Two more rows per kernel narrow down the rest: ``tvm_alloc`` (arguments allocated by TVM, not torch, filled
by ``random_fill_for_measure``, timed both ways in this process) and ``ms_runner`` (the bundle's library run
through the tuning runs' own runner, ``costpass.measure.ms_gpu.gpu_runner``: MetaSchedule's ``LocalRunner``
in its popen worker, allocating and filling as MetaSchedule does; its cubins come from the bundle).

    python3 benchmarks/harness_compare.py --bundle DIR --out rows.jsonl [--ids a,b,...] [--no-runner]

Here, without a GPU: one row per kernel, its tuning-time latency beside every harness's, as Markdown and JSON:

    python3 benchmarks/harness_compare.py summarize --rows rows.jsonl --runs BUNDLE/runs.json --out PREFIX
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
    ap.add_argument("--no-runner", action="store_true", help="leave out the ms_runner rows")
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
                targs = G.Workload(e["workload"], e, seed=a.seed).args   # refilled below, per fill
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
                _emit(out, row)
            try:
                _emit(out, {**row0, **tvm_alloc_row(fn, ev, e["arg_specs"], dev)})
            except Exception as ex:  # noqa: BLE001
                _emit(out, {**row0, "fill": "tvm_alloc", "error": f"{type(ex).__name__}: {ex}"[:500]})
            del mod, fn
        if not a.no_runner:
            try:
                rows = runner_rows(a.bundle, entries, clocks)
            except Exception as ex:  # noqa: BLE001
                rows = [{"id": "-", "workload": "-", "fill": "ms_runner", "error": f"{type(ex).__name__}: {ex}"[:500]}]
            for row in rows:
                _emit(out, row)
    return 0


def _emit(out, row: dict):
    out.write(json.dumps(row) + "\n")
    out.flush()
    show = "  ".join(f"{k[:-3]} {row[k]*1e3:8.1f} us" for k in ("events_ms", "evaluator_ms", "runner_ms")
                     if row.get(k) is not None)
    print(f"{row['id']} {row['workload']:26s} {row['fill']:12s} {show or row.get('error', '')}", flush=True)


def tvm_alloc_row(fn, ev, arg_specs, dev) -> dict:
    """Arguments allocated by TVM (``tvm.runtime.empty``) and filled by ``random_fill_for_measure``, as the
    LocalRunner does, timed by events and by the evaluator in this process."""
    import tvm

    f_measure = tvm.get_global_func("tvm.contrib.random.random_fill_for_measure")
    args = [tvm.runtime.empty(tuple(int(s) for s in sh), dt, dev) for sh, dt in arg_specs]
    for x in args:
        f_measure(x)
    dev.sync()
    fn(*args)
    dev.sync()
    res = G.time_fn(fn, args)
    te = [x * 1e3 for x in ev(*args).results]
    return {"fill": "tvm_alloc", "events_ms": statistics.median(res["times"]), "events_n": len(res["times"]),
            "evaluator_ms": statistics.median(te), "evaluator_runs_ms": te}


def runner_rows(bundle: str, entries: list, clocks: dict) -> list:
    """Every kernel through the tuning runs' runner (one ``LocalRunner`` batch, as a search iteration is):
    MetaSchedule's evaluator with number 3, repeat 5, min_repeat_ms 20 in the runner's worker process."""
    from tvm.s_tir import meta_schedule as ms

    from costpass.measure import ms_gpu

    os.environ[ms_gpu.CACHE_ENV] = os.path.join(bundle, "cubins")
    runner = ms_gpu.gpu_runner()
    inputs = [ms.runner.RunnerInput(os.path.abspath(G.entry_lib(bundle, e)), "cuda",
                                    [ms.arg_info.TensorInfo(dt, [int(s) for s in sh]) for sh, dt in e["arg_specs"]])
              for e in entries]
    rows = []
    for e, fut in zip(entries, runner.run(inputs)):
        r = fut.result()
        row = {"id": e["id"], "workload": e["workload"], "origin": e.get("origin"), "clocks": clocks, "fill": "ms_runner"}
        if r.error_msg:
            row["error"] = str(r.error_msg)[:500]
        else:
            secs = [float(x) * 1e3 for x in r.run_secs]
            row.update(runner_ms=statistics.median(secs), runner_runs_ms=secs)
        rows.append(row)
    return rows


HARNESSES = (("events", "randn", "events_ms"), ("evaluator", "randn", "evaluator_ms"),
             ("evaluator, TVM fill", "tvm_measure", "evaluator_ms"), ("evaluator, zeros", "zeros", "evaluator_ms"),
             ("evaluator, TVM-allocated", "tvm_alloc", "evaluator_ms"), ("MetaSchedule runner", "ms_runner", "runner_ms"))


def summarize(rows: list, runs: dict) -> list:
    """One dict per kernel: its runs, its fastest tuning-time latency among them, and each harness's (ms)."""
    tuned = {}
    for run, items in runs.items():
        for it in items:
            t = tuned.setdefault(it["id"], {"runs": [], "tuning_ms": it["tuning_ms"]})
            t["runs"].append(run)
            t["tuning_ms"] = min(t["tuning_ms"], it["tuning_ms"])
    by = {}
    for r in rows:
        if r.get("error") or r["id"] not in tuned:
            continue
        k = by.setdefault(r["id"], {"id": r["id"], "workload": r["workload"], **tuned[r["id"]]})
        for name, fill, key in HARNESSES:
            if r.get("fill") == fill and r.get(key) is not None:
                k[name] = r[key]
    return sorted(by.values(), key=lambda k: (k["workload"], k["tuning_ms"]))


def render_md(kernels: list, preamble: str = "") -> str:
    import math

    names = [n for n, _, _ in HARNESSES]
    head = "| task | kernel | runs | tuning | " + " | ".join(names) + " | runner / tuning |"
    lines = [preamble.rstrip() + "\n" if preamble else "", "Latencies in µs.\n", head,
             "|---|---|---|" + "---:|" * (len(names) + 2)]
    ratios = []
    for k in kernels:
        runner = k.get("MetaSchedule runner")
        ratio = runner / k["tuning_ms"] if runner else None
        if ratio:
            ratios.append(ratio)
        models = sorted({r.split("__")[1] for r in k["runs"]})
        cells = [f"{k[n] * 1e3:.1f}" if k.get(n) is not None else "-" for n in names]
        lines.append(f"| {k['workload']} | {k['id']} | {', '.join(models)} | {k['tuning_ms'] * 1e3:.1f} | "
                     + " | ".join(cells) + (f" | {ratio:.2f} |" if ratio else " | - |"))
    if ratios:
        ratios.sort()
        gm = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        lines.append(f"\nMetaSchedule's runner now / at tuning time, {len(ratios)} kernels: geometric mean {gm:.2f}, "
                     f"range {ratios[0]:.2f}-{ratios[-1]:.2f}, median {ratios[len(ratios) // 2]:.2f}.")
    return "\n".join(lines) + "\n"


def main_summarize(argv) -> int:
    ap = argparse.ArgumentParser(description="harness comparison rows -> one row per kernel (.md, .json)")
    ap.add_argument("--rows", required=True)
    ap.add_argument("--runs", required=True, help="the bundle's runs.json (tuning-time latency per kernel)")
    ap.add_argument("--out", required=True, help="path without suffix")
    ap.add_argument("--preamble", default="")
    a = ap.parse_args(argv)
    try:
        rows = [json.loads(line) for line in open(a.rows) if line.strip()]
        runs = json.load(open(a.runs))
    except (OSError, ValueError) as err:
        print(f"harness_compare: error: {err}", file=sys.stderr)
        return 2
    kernels = summarize(rows, runs)
    Path(a.out + ".json").write_text(json.dumps(kernels, indent=1) + "\n")
    Path(a.out + ".md").write_text(render_md(kernels, a.preamble))
    print(f"{len(kernels)} kernels -> {a.out}.md, {a.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main_summarize(sys.argv[2:]) if sys.argv[1:2] == ["summarize"] else main())
