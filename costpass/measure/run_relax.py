"""Run a library built by ``costpass compile`` on this machine's GPU, time it, compare with torch.

    python3 costpass/measure/run_relax.py LIB.so [--out result.json] [--warmup 20] [--repeats 200]

Needs TVM (the Relax VM; runtime-only TVM, without ``libtvm_compiler.so``, is enough), torch with CUDA,
and nvcc. Reads ``LIB.so.json`` (the report ``costpass compile -o LIB.so`` writes next to the library) for
the arguments and the model. Steps:

1. nvcc compiles the library's CUDA source when TVM loads it (``tvm_callback_cuda_compile``, cubins cached
   by sha256 in ``$COSTPASS_CUBIN_CACHE``, see ``costpass/measure/ms_gpu.py``), for this GPU's arch;
2. random fp16 inputs and weights (``schedules/llama_block.random_args``, fixed seed) go to the Relax VM's
   ``main`` and, for a ``llama_block`` model, to the same block in torch (``reference_torch``, same
   weights); the outputs must agree (relative L2 error below ``--tol``);
3. each is timed with CUDA events on the default stream: ``--warmup`` calls, then ``--repeats`` calls, each
   between its own pair of events; the median is the result (min, mean, p10, p90 too); torch also replayed
   from a CUDA graph (no Python dispatch between its kernels);
4. ``--profile-iters`` more calls under the torch profiler give each PrimFunc's GPU time per model call,
   beside its predicted time from the report;
5. one JSON file: GPU name, driver and clocks (nvidia-smi, before and after), date, versions, repeats,
   the timings, the check, and the predicted latency from the report for this GPU with its error.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def cubin_build() -> dict:
    """How the kernels the library's CUDA source holds were compiled: ``BUILD.json`` in ``$COSTPASS_CUBIN_CACHE``
    when the cache was filled with TVM's own build (``costpass.measure.tvm_build``), else the measuring code's
    nvcc command. A library that holds cubins (built on a GPU machine) keeps the build it was made with."""
    from costpass.measure import ms_gpu, nvcc_cmd

    return nvcc_cmd.build_of(os.environ.get(ms_gpu.CACHE_ENV))


def nvidia_smi() -> dict:
    q = "name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.draw,temperature.gpu"
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True,
                           text=True, timeout=30)
        vals = [v.strip() for v in r.stdout.strip().splitlines()[0].split(",")]
        return dict(zip(q.split(","), vals))
    except Exception as err:  # noqa: BLE001 - record why, do not fail the run
        return {"error": f"{type(err).__name__}: {err}"}


def time_cuda(fn, warmup: int, repeats: int) -> dict:
    """Milliseconds per call: CUDA events around each call on the current (default) stream."""
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in ev:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    ms = sorted(s.elapsed_time(e) for s, e in ev)
    return {"median_ms": statistics.median(ms), "mean_ms": statistics.fmean(ms), "min_ms": ms[0],
            "p10_ms": ms[len(ms) // 10], "p90_ms": ms[(len(ms) * 9) // 10], "repeats": repeats, "warmup": warmup}


def profiler_us(fn, iters: int) -> dict:
    """GPU time per kernel name per call of ``fn`` over ``iters`` calls, from the torch profiler (CUPTI sees
    TVM's kernels too)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    us = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None)
        us[e.key] = (t if t is not None else e.cuda_time_total) / iters
    return us


def profile_kernels(fn, iters: int, report: dict, gpu_key: str | None) -> dict:
    """GPU time per PrimFunc of the report (all its kernels, all its calls) per model call
    (:func:`profiler_us`), beside the report's prediction for this GPU."""
    us = profiler_us(fn, iters)
    gi = report["gpus"].index(gpu_key) if gpu_key in report.get("gpus", []) else None
    rows = []
    for k in report["kernels"]:
        names = set(k["device_kernels"])
        meas = sum(v for n, v in us.items() if n in names)
        pred = k["per_gpu"][gi]["total_us"] if gi is not None else None
        rows.append({"name": k["name"], "calls": k["calls"], "measured_us": meas, "predicted_us": pred,
                     "error": (pred / meas - 1.0) if pred and meas else None})
    other = sum(v for n, v in us.items() if not any(n in k["device_kernels"] for k in report["kernels"]))
    return {"iters": iters, "kernels": rows, "sum_us": sum(r["measured_us"] for r in rows),
            "unmatched_gpu_us": other}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("library")
    ap.add_argument("--report", help="the compile report (default: LIBRARY.json)")
    ap.add_argument("--out", default=None, help="result JSON (default: LIBRARY.run.json)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=2e-2, help="max relative L2 error TVM vs torch")
    ap.add_argument("--no-torch", action="store_true", help="time the library only")
    ap.add_argument("--profile-iters", type=int, default=20, help="calls under the torch profiler for the "
                                                                   "per-kernel times (0: none)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    import tvm
    from tvm.runtime.vm import VirtualMachine   # = tvm.relax.VirtualMachine; also in runtime-only TVM

    from costpass.measure import ms_gpu, vendor

    if shutil.which("nvcc") is None and os.path.exists("/usr/local/cuda/bin/nvcc"):
        os.environ["PATH"] = "/usr/local/cuda/bin" + os.pathsep + os.environ.get("PATH", "")
    report_path = args.report or args.library + ".json"
    with open(report_path) as f:
        report = json.load(f)
    assert torch.cuda.is_available(), "no CUDA GPU visible to torch"
    major, minor = torch.cuda.get_device_capability()
    arch = f"sm_{major}{minor}" + ("a" if major == 9 else "")
    os.environ.setdefault(ms_gpu.ARCH_ENV, arch)
    ms_gpu.setup_cuda_compile()    # tvm_callback_cuda_compile -> nvcc cubin, cached by source hash

    dev = tvm.cuda(0)
    vm = VirtualMachine(tvm.runtime.load_module(args.library), dev)
    main_fn = vm["main"]

    meta = report.get("meta", {})
    specs = report["arg_specs"]
    if meta.get("kind") == "llama_block":
        from schedules import llama_block as L
        cfg = L.LlamaConfig(**meta["config_values"])
        shp = L.BlockShape(**{k: meta["shape"][k] for k in ("name", "batch", "seq", "kv")})
        host = L.random_args(cfg, shp, args.seed)
    else:
        rng = np.random.default_rng(args.seed)
        host = {s["name"]: rng.standard_normal(s["shape"]).astype(s["dtype"]) for s in specs}
    t_args = {s["name"]: torch.from_numpy(host[s["name"]]).cuda() for s in specs}
    tvm_args = [tvm.runtime.from_dlpack(t_args[s["name"]]) for s in specs]

    res = main_fn(*tvm_args)
    try:
        out_tvm = torch.from_dlpack(res).clone()
    except Exception:  # noqa: BLE001 - an older DLPack protocol: go through the host
        out_tvm = torch.from_numpy(res.numpy()).cuda()
    torch.cuda.synchronize()
    result = {"schema": "costpass.run_relax/1", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "host": socket.gethostname(), "library": os.path.abspath(args.library), "model": report.get("model"),
              "description": report.get("description"), "gpu": torch.cuda.get_device_name(0), "arch": arch,
              "nvidia_smi_before": nvidia_smi(), "torch": torch.__version__, "cuda": torch.version.cuda,
              "tvm": getattr(tvm, "__version__", "?"), "python": platform.python_version(), "seed": args.seed,
              "compile_report": {k: report.get(k) for k in ("runner", "trials", "tuned_for", "created", "tuning")}}
    result["build"] = cubin_build()
    result["tvm_timing"] = time_cuda(lambda: main_fn(*tvm_args), args.warmup, args.repeats)

    if meta.get("kind") == "llama_block" and not args.no_torch:
        with torch.no_grad():
            out_ref = L.reference_torch(cfg, shp, t_args)
            torch.cuda.synchronize()
            a, b = out_tvm.float(), out_ref.float()
            rel = (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()
            result["check"] = {"rel_l2_error": rel, "max_abs_error": (a - b).abs().max().item(),
                               "max_abs_ref": b.abs().max().item(), "tol": args.tol,
                               "finite": bool(torch.isfinite(a).all().item()), "ok": bool(rel < args.tol)}
            ref_fn = lambda: L.reference_torch(cfg, shp, t_args)  # noqa: E731
            result["torch_timing"] = time_cuda(ref_fn, args.warmup, args.repeats)
            try:    # the same torch block replayed from a CUDA graph: no Python dispatch between kernels
                result["torch_graph_timing"] = time_cuda(vendor.cuda_graph(ref_fn), args.warmup, args.repeats)
                result["torch_graph_over_tvm"] = (result["torch_graph_timing"]["median_ms"]
                                                  / result["tvm_timing"]["median_ms"])
            except Exception as err:  # noqa: BLE001 - the eager timing stands without it
                result["torch_graph_timing"] = {"error": f"{type(err).__name__}: {err}"[:500]}
        result["torch_over_tvm"] = result["torch_timing"]["median_ms"] / result["tvm_timing"]["median_ms"]
    result["nvidia_smi_after"] = nvidia_smi()

    name = result["gpu"].lower()
    gpu_key = next((g for g in report.get("gpus", []) if g.lower() in name), None)
    if args.profile_iters > 0:
        try:
            result["per_kernel"] = profile_kernels(lambda: main_fn(*tvm_args), args.profile_iters, report, gpu_key)
        except Exception as err:  # noqa: BLE001 - the timing above stands without it
            result["per_kernel"] = {"error": f"{type(err).__name__}: {err}"}
    if gpu_key:
        pred_ms = report["totals"][gpu_key]["predicted_us"] / 1e3
        meas = result["tvm_timing"]["median_ms"]
        result["prediction"] = {"gpu": gpu_key, "predicted_ms": pred_ms, "measured_ms": meas,
                                "error": pred_ms / meas - 1.0}

    out = args.out or args.library + ".run.json"
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    line = f"{result['model']} on {result['gpu']}: TVM median {result['tvm_timing']['median_ms'] * 1e3:.1f} us"
    if "torch_timing" in result:
        line += (f", torch {result['torch_timing']['median_ms'] * 1e3:.1f} us "
                 f"(torch/TVM {result['torch_over_tvm']:.2f}x; CUDA graph "
                 f"{result['torch_graph_timing'].get('median_ms', float('nan')) * 1e3:.1f} us), check rel err {result['check']['rel_l2_error']:.2e} "
                 f"{'ok' if result['check']['ok'] else 'FAILED'}")
    if "prediction" in result:
        p = result["prediction"]
        line += f"; predicted {p['predicted_ms'] * 1e3:.1f} us ({p['error']:+.1%})"
    print(line)
    print(f"wrote {out}")
    return 0 if result.get("check", {}).get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
