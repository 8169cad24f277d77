"""MetaSchedule builder and runner for tuning on the GPU machine (full TVM wheel, nvcc, no NVRTC).

- Builder: :func:`costpass.measure.build.ms_build` (TVM 0.27's tensor-core workaround), then nvcc compiles
  the kernel's CUDA source to ``$COSTPASS_CUBIN_CACHE/<sha256>.cubin`` inside the builder's parallel
  workers, so the runner does not spend ~2.5 s of nvcc per candidate in its single worker.
- Runner: MetaSchedule's ``LocalRunner`` whose worker looks cubins up in that cache (compiling on a miss)
  through ``tvm_callback_cuda_compile``, and whose evaluator holds an exclusive file lock
  (``$COSTPASS_GPU_LOCK``) while it times, so that several tuning runs sharing one GPU never time at once.
  With an :class:`OutputCheck` it first runs the candidate and the workload's reference kernel on the same
  fresh random inputs and fails a candidate whose output differs (MetaSchedule itself never looks at
  outputs, so a wrong kernel could otherwise win a search: it happened, benchmarks/results/tune_bench_256_retimed.md).
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass

from . import nvcc_cmd

CACHE_ENV = "COSTPASS_CUBIN_CACHE"
LOCK_ENV = "COSTPASS_GPU_LOCK"
ARCH_ENV = "COSTPASS_CUDA_ARCH"


def _cache_dir() -> str:
    d = os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "costpass_cubins")
    os.makedirs(d, exist_ok=True)
    return d


def cubin_for(code: str) -> bytes:
    """The cubin of a CUDA source, from the cache or compiled now (:mod:`costpass.measure.nvcc_cmd`; atomic write)."""
    h = hashlib.sha256(code.encode("utf-8")).hexdigest()
    path = os.path.join(_cache_dir(), f"{h}.cubin")
    if not os.path.exists(path):
        arch = os.environ.get(ARCH_ENV, "sm_90a")
        with tempfile.TemporaryDirectory() as tmp:
            src, out = os.path.join(tmp, "k.cu"), os.path.join(tmp, "k.cubin")
            with open(src, "w") as f:
                f.write(code)
            r = subprocess.run(nvcc_cmd.command(src, out, arch), capture_output=True, text=True)
            if r.returncode != 0:
                errs = [ln for ln in r.stderr.splitlines() if "error" in ln] or r.stderr.splitlines()[-5:]
                raise RuntimeError("nvcc failed: " + " | ".join(errs)[:2000])
            part = f"{path}.{os.getpid()}.part"
            os.replace(out, part)
            os.replace(part, path)
    with open(path, "rb") as f:
        return f.read()


def build_and_compile(mod, target, _params=None):
    """``f_build``: build with the tensor-core workaround, then compile the CUDA source into the cache."""
    from .build import ms_build

    rt = ms_build(mod, target, _params)
    for m in rt.imports:
        if m.kind == "cuda":
            cubin_for(m.inspect_source())
    return rt


def _builder_init():
    from costpass.cli import preload_tensor_intrinsics

    preload_tensor_intrinsics()


def setup_cuda_compile():
    """Register the nvcc compile callback (:func:`cubin_for`); with runtime-only TVM (no
    ``libtvm_compiler.so``) load TVM's CUDA runtime first, globally, so that libraries holding CUDA source
    can be loaded. The runner's worker initializer; call it before loading such a library in-process."""
    import ctypes

    import tvm
    import tvm_ffi

    lib = os.path.join(os.path.dirname(tvm.__file__), "lib")
    cuda_rt = os.path.join(lib, "libtvm_runtime_cuda.so")
    if not os.path.exists(os.path.join(lib, "libtvm_compiler.so")) and os.path.exists(cuda_rt):
        ctypes.CDLL(cuda_rt, mode=ctypes.RTLD_GLOBAL)

    @tvm_ffi.register_global_func("tvm_callback_cuda_compile", override=True)
    def _compile(code, *_):
        return cubin_for(code)


@dataclass(frozen=True)
class OutputCheck:
    """Check each candidate's output against a reference kernel before timing it: ``ref_lib`` (an exported
    library of the reference, e.g. from :func:`output_check`), the indices of the output arguments and the
    relative L2 tolerance."""
    ref_lib: str
    outputs: tuple
    tol: float
    seed: int = 0


def output_check(workload, work_dir: str, target=None) -> OutputCheck:
    """Build the workload's reference kernel (:func:`costpass.measure.bundle.reference_module`, the kernel the
    measured datasets are checked against), export it into ``work_dir``; the last argument is the output and
    the tolerance is that of the least precise float (as ``gpu_run.py`` checks)."""
    from schedules import workloads as W

    from .build import build_module, cuda_target
    from .bundle import reference_module
    from .gpu_run import tolerance

    wl = W.get(workload) if isinstance(workload, str) else workload
    target = target or cuda_target()
    path = os.path.join(work_dir, f"reference_{wl.name}.so")
    if not os.path.exists(path):
        os.makedirs(work_dir, exist_ok=True)
        build_module(reference_module(wl, target)[0], target).export_library(path + ".part.so")
        os.replace(path + ".part.so", path)
    specs = [[list(sh), str(dt)] for sh, dt in wl.arg_specs()]
    outputs = (len(specs) - 1,)
    return OutputCheck(path, outputs, tolerance(specs, list(outputs)))


def _fill(shape, dtype: str, rng):
    """Random host data of one argument, or None for a dtype numpy cannot make (the check is skipped)."""
    import numpy as np

    try:
        dt = np.dtype(dtype)
    except TypeError:
        return None
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 0.5).astype(dt)
    if dt.kind in "iu":
        return rng.integers(0, 8, shape).astype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, shape).astype(dt)
    return None


@functools.lru_cache(maxsize=2)
def check_inputs(specs: tuple, outputs: tuple, seed: int = 0):
    """Host data for the check, one array per argument of ``specs`` ((shape, dtype) pairs): N(0, 0.25)
    floats or small integers, outputs NaN so that an element left unwritten counts. None for a dtype numpy
    cannot make. Cached: a task's candidates share their argument shapes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    host = []
    for i, (shape, dtype) in enumerate(specs):
        h = _fill(shape, dtype, rng)
        if h is None:
            return None
        host.append(np.full(shape, np.nan, h.dtype) if i in outputs and h.dtype.kind == "f" else h)
    return host


def output_error(rt_mod, ref_mod, args, outputs, device, seed: int = 0):
    """Rel. L2 error of ``rt_mod``'s outputs against ``ref_mod``'s, both run on the same fresh random inputs
    shaped like ``args`` (:func:`check_inputs`). Elements where the reference is not finite are left out; a
    non-finite candidate element where the reference is finite makes the error infinite. None when nothing
    could be compared."""
    import numpy as np
    import tvm

    host = check_inputs(tuple((tuple(int(x) for x in a.shape), str(a.dtype)) for a in args), tuple(outputs), seed)
    if host is None:
        return None

    def run(mod):
        xs = [tvm.runtime.tensor(h, device) for h in host]
        mod(*xs)
        device.sync()
        return [xs[i].numpy().astype("float64") for i in outputs]

    worst = 0.0
    for c, r in zip(run(rt_mod), run(ref_mod)):
        ok = np.isfinite(r)
        if not ok.any():
            return None
        if not np.isfinite(c[ok]).all():
            return float("inf")
        worst = max(worst, float(np.linalg.norm(c[ok] - r[ok]) / max(np.linalg.norm(r[ok]), 1e-30)))
    return worst


@functools.lru_cache(maxsize=4)
def _load(path: str):
    import tvm

    return tvm.runtime.load_module(path)


def locked_run_evaluator(rt_mod, device, evaluator_config, repeated_args, check: OutputCheck | None = None):
    """MetaSchedule's default evaluator under an exclusive lock on ``$COSTPASS_GPU_LOCK`` (if set); with
    ``check``, a candidate whose output differs from the reference raises (the runner records the error and
    the search goes on)."""
    from tvm.s_tir.meta_schedule.runner.utils import run_evaluator_common

    def checked():
        if check is not None:
            err = output_error(rt_mod, _load(check.ref_lib), repeated_args[0], check.outputs, device, check.seed)
            if err is not None and not err <= check.tol:
                raise RuntimeError(f"wrong output: rel. L2 error {err:.3g} against the reference (tolerance {check.tol})")
        return run_evaluator_common(rt_mod, device, evaluator_config, repeated_args)

    lock = os.environ.get(LOCK_ENV)
    if not lock:
        return checked()
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            return checked()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def gpu_builder(max_workers: int = 4, timeout_sec: float = 120.0):
    from tvm.s_tir import meta_schedule as ms

    return ms.builder.LocalBuilder(f_build=build_and_compile, max_workers=max_workers, timeout_sec=timeout_sec,
                                   initializer=_builder_init)


def gpu_runner(timeout_sec: float = 60.0, number: int = 3, repeat: int = 5, min_repeat_ms: int = 20,
               check: OutputCheck | None = None):
    from tvm.s_tir import meta_schedule as ms

    cfg = ms.runner.EvaluatorConfig(number=number, repeat=repeat, min_repeat_ms=min_repeat_ms,
                                    enable_cpu_cache_flush=False)
    f_eval = functools.partial(locked_run_evaluator, check=check) if check is not None else locked_run_evaluator
    return ms.runner.LocalRunner(timeout_sec=timeout_sec, evaluator_config=cfg,
                                 f_run_evaluator=f_eval, initializer=setup_cuda_compile)
