"""Vendor references: the same computation as a workload in torch (cuBLAS / cuDNN / torch's own kernels),
timed with CUDA events on the GPU machine, so a tuned TVM kernel can be set against the practical ceiling.

Only the workload kinds the tuning benchmark uses are covered; :func:`torch_reference` raises
``KeyError`` for the rest. TF32 is switched off so fp32 GEMM/conv run in true fp32, as TVM's kernels do.
"""
from __future__ import annotations

import statistics


def _kind(name: str, params: dict) -> str:
    if name.startswith(("gemv_", "llama", "qwen", "mixtral", "deepseek")) and "K" in params:
        return "linear"
    for k in ("gemm_", "attn_pv", "softmax", "rmsnorm", "silu_mul", "conv_"):
        if name.startswith(k):
            return k.rstrip("_")
    raise KeyError(f"no torch reference for workload {name!r}")


def torch_reference(workload):
    """(callable, description) computing ``workload`` in torch on CUDA with random inputs."""
    import torch
    import torch.nn.functional as F

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    p, name = workload.params, workload.name
    dt = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[workload.dtype]
    dev = "cuda"

    def rnd(*shape):
        return torch.randn(*shape, device=dev, dtype=dt)

    kind = _kind(name, p)
    if kind == "linear":
        X, W = rnd(p["M"], p["K"]), rnd(p["N"], p["K"])
        return (lambda: F.linear(X, W)), "torch.nn.functional.linear (cuBLAS)"
    if kind == "gemm":
        A, B = rnd(p["M"], p["K"]), rnd(p["K"], p["N"])
        return (lambda: torch.mm(A, B)), "torch.mm (cuBLAS, TF32 off)"
    if kind == "attn_pv":
        P, V = rnd(p["H"], p["S"], p["S"]), rnd(p["H"], p["S"], p["D"])
        return (lambda: torch.bmm(P, V)), "torch.bmm (cuBLAS)"
    if kind == "softmax":
        X = rnd(p["R"], p["C"])
        return (lambda: torch.softmax(X.float(), dim=-1).to(dt) if dt != torch.float32
                else torch.softmax(X, dim=-1)), "torch.softmax"
    if kind == "rmsnorm":
        X, Wt = rnd(p["R"], p["C"]), rnd(p["C"])
        return (lambda: F.rms_norm(X, (p["C"],), Wt, eps=1e-5)), "torch.nn.functional.rms_norm"
    if kind == "silu_mul":
        X = rnd(p["M"], 2 * p["F"])
        return (lambda: F.silu(X[:, :p["F"]]) * X[:, p["F"]:]), "torch silu(x1) * x2 (two kernels)"
    if kind == "conv":
        X = rnd(p["N"], p["C"], p["H"], p["W"]).to(memory_format=torch.channels_last)
        Wt = rnd(p["K"], p["C"], p["R"], p["S"]).to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
        return (lambda: F.conv2d(X, Wt, stride=p["stride"], padding=p["pad"])), "torch conv2d NHWC (cuDNN)"
    raise KeyError(name)


def time_cuda(fn, warmup: int = 10, repeats: int = 20, number: int = 10) -> dict:
    """Median over ``repeats`` of the mean time of ``number`` back-to-back ``fn()`` calls between one CUDA
    event pair (ms), after ``warmup`` calls. Several calls per event pair amortise Python's dispatch gap
    between launches, as TVM's ``time_evaluator`` (``number`` > 1) does for the tuned kernels.

    (The first tuning benchmark, datasets/tuning/h100_r1, timed one call per event pair: for kernels of
    tens of microseconds that number includes the dispatch gap.)"""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(number):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / number)
    return {"median_ms": statistics.median(times), "repeats": repeats, "number": number, "warmup": warmup,
            "run_ms": times}


def cuda_graph(fn, number: int = 1):
    """``fn`` called ``number`` times, captured once as a CUDA graph; returns the graph's ``replay``. The
    replay launches the same kernels with no Python or framework dispatch in between: the GPU time torch's
    kernels need, as a production server running CUDA graphs sees it. ``fn`` must have run (warm-up,
    cuDNN autotuning) before."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(number):
            fn()
    torch.cuda.synchronize()
    return graph.replay


def time_eager_and_graph(fn, warmup: int = 10, repeats: int = 20, number: int = 10) -> dict:
    """:func:`time_cuda` of ``fn`` (eager; ``median_ms``) and of ``number`` calls replayed from one CUDA graph
    (``graph``, per call; an ``error`` there if the capture fails)."""
    out = time_cuda(fn, warmup, repeats, number)
    try:
        replay = cuda_graph(fn, number)
        g = time_cuda(replay, warmup=3, repeats=repeats, number=1)
        out["graph"] = {"median_ms": g["median_ms"] / number, "calls_per_graph": number, "repeats": repeats,
                        "run_ms": [t / number for t in g["run_ms"]]}
    except Exception as err:  # noqa: BLE001 - the eager time stands without it
        out["graph"] = {"error": f"{type(err).__name__}: {err}"[:500]}
    return out


def measure_reference(workload) -> dict:
    fn, desc = torch_reference(workload)
    out = time_eager_and_graph(fn)
    out["reference"] = desc
    return out
