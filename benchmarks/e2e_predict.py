#!/usr/bin/env python3
"""End-to-end latency of compiled models: measured on the GPU vs predicted by costpass.

    python3 benchmarks/e2e_predict.py [--data datasets/e2e/r1 datasets/e2e/r2] [--out benchmarks/results/e2e]

For every library in each ``<data>/manifest.json`` (a ``costpass compile`` report, its tuning database (none for
an untuned library), and
``run_relax.py`` results per GPU), the library's schedules are rebuilt from its database as the report
describes them (``costpass.compile.repredict``) and every kernel is predicted again with this costpass;
the predictions stored in the report when the library was built are shown beside them. Per GPU:

* measured end to end: the Relax VM's median time per call (CUDA events around each call);
* kernel sum: the GPU time of the library's kernels per call, from the torch profiler;
* predicted: the sum over calls of the per-kernel predictions (``costpass compile``'s end-to-end figure).

Writes ``<out>.md`` and ``<out>.json``; nothing here needs a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _work_dir(archive: Path, tmp: str) -> str:
    """Unpack a tuning-database archive; the folder holding database_tuning_record.json."""
    with tarfile.open(archive) as tf:
        tf.extractall(tmp, filter="data")
    for root, _dirs, files in os.walk(tmp):
        if "database_tuning_record.json" in files:
            return root
    raise FileNotFoundError(f"{archive}: no database_tuning_record.json inside")


def kernel_sources(src: str) -> dict:
    """CUDA source of a library split per ``__global__`` function: name -> text."""
    out = {}
    for part in re.split(r'(?=extern "C" __global__)', src)[1:]:
        m = re.search(r"void (?:__launch_bounds__\(\d+\) )?(\w+)\(", part)
        out[m.group(1) if m else part[:80]] = part
    return out


def same_launched_source(a: str, b: str, report: dict) -> bool:
    """Whether two libraries' CUDA sources agree on every kernel the report lists as launched (a PrimFunc the
    VM never calls, e.g. a reshape that became a view, may be scheduled differently)."""
    ka, kb = kernel_sources(a), kernel_sources(b)
    names = {n for k in report["kernels"] for n in k["device_kernels"]}
    return all(n in ka and ka.get(n) == kb.get(n) for n in names)


def evaluate_library(entry: dict, data: Path, log=print) -> dict:
    from costpass import compile as C
    from costpass.measure import bundle

    report = json.loads((data / entry["report"]).read_text())
    runs = {g: json.loads((data / p).read_text()) for g, p in entry["runs"].items()}

    lib = data / entry["report"].removesuffix(".json")
    with tempfile.TemporaryDirectory() as tmp:
        wd = _work_dir(data / entry["database"], tmp) if entry.get("database") else None
        entries, totals, built = C.repredict(report, wd, gpus=list(runs), log=lambda m: None)
        rebuilt = C.export(built, os.path.join(tmp, "rebuilt.so"))
        try:
            same = same_launched_source(bundle.library_cuda_sources(rebuilt)[0],
                                        bundle.library_cuda_sources(str(lib))[0], report)
        except ValueError:      # built where nvcc was registered: the library holds cubins, not source
            same = None
    if same is False:
        log(f"warning: {entry['name']}: the rebuilt library's CUDA source differs from {lib.name}")
    out = {"name": entry["name"], "library": os.path.relpath(lib, REPO), "same_cuda_source": same, "gpus": {}}
    recs = {k["name"]: k for k in report["kernels"]}
    for e in entries:        # the tuning records are the report's: the rebuilt library has none
        e.record_us, e.record_kind = recs[e.name].get("record_us"), recs[e.name].get("record_kind")
    tuned_gi = list(runs).index(report["tuned_for"]) if report.get("tuned_for") in runs else None
    for gi, (g, run) in enumerate(runs.items()):
        measured = run["tvm_timing"]["median_ms"] * 1e3
        prof = {k["name"]: k["measured_us"] for k in run.get("per_kernel", {}).get("kernels", [])}
        then = {k["name"]: k["per_gpu"][report["gpus"].index(g)] for k in report["kernels"]} \
            if g in report["gpus"] else {}
        kernels = []
        for e in entries:
            p = e.per_gpu[gi]
            kernels.append({"name": e.name, "calls": e.calls, "sched": e.origin,
                            "measured_us": prof.get(e.name), "predicted_us": p.total_us,
                            "predicted_at_build_us": then[e.name]["total_us"] if e.name in then else None,
                            "estimate_us": p.estimate_us * e.calls, "bottleneck": p.bottleneck})
        pred, est, stream = totals[g]["predicted_us"], totals[g]["estimate_us"], totals[g]["stream_us"]
        at_build = report["totals"].get(g, {}).get("predicted_us")
        anch, n_anch = C.stream_total_us(entries, gi, totals[g]["timer_offset_us"], totals[g].get("stream_gap_us", 0.0),
                                         tuned_gi=tuned_gi)
        out["gpus"][g] = {"gpu_name": run["gpu"], "date": run["date"], "measured_us": measured,
                          "build": run_build(run, same),
                          "kernel_sum_us": run.get("per_kernel", {}).get("sum_us"),
                          "predicted_us": pred, "error": pred / measured - 1.0,
                          "predicted_at_build_us": at_build,
                          "error_at_build": (at_build / measured - 1.0) if at_build else None,
                          "estimate_us": est, "estimate_error": est / measured - 1.0,
                          "stream_us": stream, "stream_error": stream / measured - 1.0,
                          "anchored_us": anch, "anchored_error": anch / measured - 1.0, "anchored_kernels": n_anch,
                          "timer_offset_us": totals[g]["timer_offset_us"],
                          "stream_gap_us": totals[g].get("stream_gap_us", 0.0),
                          "torch_eager_us": run.get("torch_timing", {}).get("median_ms", 0) * 1e3 or None,
                          "torch_graph_us": run.get("torch_graph_timing", {}).get("median_ms", 0) * 1e3 or None,
                          "kernels": kernels}
        log(f"{entry['name']} on {g}: measured {measured:.1f} us, predicted {pred:.1f} us ({pred / measured - 1:+.1%}); "
            f"at build {at_build:.1f} us")
    return out


def run_build(run: dict, same_source) -> str:
    """What compiled the kernels a run timed: ``tvm`` (TVM's own build: the cubins a library built on a GPU machine
    holds, or a cubin cache filled by ``tvm_build``) or ``nvcc -O3`` (run_relax's own compile; runs before the
    ``build`` field)."""
    if same_source is None:             # the library holds cubins: TVM compiled them when it was built
        return "tvm"
    return "tvm" if (run.get("build") or {}).get("compiler") == "tvm" else "nvcc -O3"


def _f(x, fmt=".1f"):
    return "-" if x is None else format(x, fmt)


def markdown(results: list, meta: dict) -> str:
    lines = ["# End to end: compiled Llama-3-8B block, measured vs predicted", "",
             f"`python3 benchmarks/e2e_predict.py` at commit `{meta['commit']}`, {meta['date']}. Data: "
             f"`{meta['data']}` (see their READMEs: what was built how, and measured where). The predictions are "
             "made here, without a GPU, from the libraries' own schedules; `at build`: the prediction stored in "
             "the compile report when the library was built (the costpass of that day).", "",
             "`same source`: the schedules rebuilt from the database give the measured library's CUDA source, "
             "byte for byte, for every kernel the model launches (n/a: the library holds cubins). `estimate`: "
             "costpass's analytical estimate (no learned model) of the same kernels. `in stream`: the learned "
             "prediction less, per call, what the CUDA-event pair of the model's training measurements reads beyond the "
             "kernel's own time (`event_over_kernel_us` of the GPU spec, measured with `costpass/measure/event_offset.py`: " + ", ".join(
                 f"{x['timer_offset_us']:.2f} us on the {g}" for g, x in
                 {g: x for r in results for g, x in r["gpus"].items()}.items()) + "), plus per launch the gap the "
             "Relax VM leaves between kernels (`vm_launch_gap_us`, measured on the decode libraries of r1: " + ", ".join(
                 f"{x.get('stream_gap_us', 0):.2f} us on the {g}" for g, x in
                 {g: x for r in results for g, x in r["gpus"].items()}.items()) + "). `with records`: in stream, with "
             "each tuned kernel's measured tuning record (MetaSchedule's runner on the H100: launches back to back, so the "
             "record holds the gap between launches) in place of its prediction and gap, "
             "scaled to the H200 by the two GPUs' predictions of the kernel (`costpass.compile.stream_total_us`; "
             "`(k)`: k kernels took a record; the zero-shot and untuned libraries have no measured records). "
             "`build`: what compiled the "
             "kernels the run timed (`tvm`: TVM's own build, as deployed and as the shipped models' training data since "
             "stop 13; `nvcc -O3`: the measuring code's compile before stop 13, which times some kernels up to 1.5x "
             "apart, `benchmarks/results/build_path.md`).", "",
             "| library | GPU | build | same source | measured e2e (us) | kernel sum (us) | predicted (us) | error | in stream (us) | error | with records (us) | error | estimate (us) | error | at build (us) | error at build | torch eager | torch CUDA graph |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    errs, est, strm, anch = [], [], [], []
    for r in results:
        for g, x in r["gpus"].items():
            errs.append(abs(x["error"]))
            est.append(abs(x["estimate_error"]))
            strm.append(abs(x["stream_error"]))
            anch.append(abs(x["anchored_error"]))
            lines.append(f"| {r['name']} | {g} | {x.get('build', '?')} | { {True: 'yes', False: 'NO', None: 'n/a (cubin)'}[r['same_cuda_source']] } | {_f(x['measured_us'])} | {_f(x['kernel_sum_us'])} | "
                         f"{_f(x['predicted_us'])} | {x['error']:+.1%} | {_f(x['stream_us'])} | {x['stream_error']:+.1%} | "
                         f"{_f(x['anchored_us'])} ({x['anchored_kernels']}) | {x['anchored_error']:+.1%} | "
                         f"{_f(x['estimate_us'])} | "
                         f"{x['estimate_error']:+.1%} | {_f(x['predicted_at_build_us'])} | "
                         f"{_f(x['error_at_build'], '+.1%')} | {_f(x['torch_eager_us'])} | {_f(x['torch_graph_us'])} |")
    if errs:
        lines += ["", f"|error| over {len(errs)} library x GPU pairs: " + "; ".join(
            f"{what}: median {sorted(v)[len(v) // 2]:.1%}, max {max(v):.1%}, within 10%: {sum(e <= 0.10 for e in v)} "
            f"of {len(v)}" for what, v in (("learned", errs), ("learned in stream", strm),
                                           ("in stream with records", anch),
                                           ("analytical estimate", est))) + "."]
    for r in results:
        for g, x in r["gpus"].items():
            lines += ["", f"## {r['name']} on {g}: per kernel (us per model call)", "",
                      "| kernel | calls | sched | measured (profiler) | predicted | error | at build | bound |",
                      "|---|---:|---|---:|---:|---:|---:|---|"]
            for k in x["kernels"]:
                err = (k["predicted_us"] / k["measured_us"] - 1.0) if k["measured_us"] else None
                lines.append(f"| {k['name']} | {k['calls']} | {k['sched']} | {_f(k['measured_us'])} | "
                             f"{_f(k['predicted_us'])} | {_f(err, '+.0%')} | {_f(k['predicted_at_build_us'])} | "
                             f"{k['bottleneck']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import datetime as dt
    import subprocess

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", default=[str(REPO / "datasets" / "e2e" / r) for r in ("r1", "r2")])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "e2e"))
    a = ap.parse_args(argv)
    results = []
    for data in map(Path, a.data):
        if not (data / "manifest.json").is_file():
            print(f"e2e_predict: error: {data / 'manifest.json'} not found (--data names folders with a manifest.json)",
                  file=sys.stderr)
            return 2
        manifest = json.loads((data / "manifest.json").read_text())
        results += [evaluate_library(e, data) for e in manifest["libraries"]]
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip() or "unknown"
    meta = {"commit": commit, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "data": ", ".join(os.path.relpath(d, REPO) for d in a.data)}
    Path(a.out + ".json").write_text(json.dumps({"meta": meta, "libraries": results}, indent=1))
    Path(a.out + ".md").write_text(markdown(results, meta))
    print(f"wrote {a.out}.md and {a.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
