"""MetaSchedule builder and runner for tuning on the GPU machine (full TVM wheel, nvcc, no NVRTC).

- Builder: :func:`costpass.measure.build.ms_build` (TVM 0.27's tensor-core workaround), then nvcc compiles
  the kernel's CUDA source to ``$COSTPASS_CUBIN_CACHE/<sha256>.cubin`` inside the builder's parallel
  workers, so the runner does not spend ~2.5 s of nvcc per candidate in its single worker.
- Runner: MetaSchedule's ``LocalRunner`` whose worker looks cubins up in that cache (compiling on a miss)
  through ``tvm_callback_cuda_compile``, and whose evaluator holds an exclusive file lock
  (``$COSTPASS_GPU_LOCK``) while it times, so that several tuning runs sharing one GPU never time at once.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import tempfile

CACHE_ENV = "COSTPASS_CUBIN_CACHE"
LOCK_ENV = "COSTPASS_GPU_LOCK"
ARCH_ENV = "COSTPASS_CUDA_ARCH"


def _cache_dir() -> str:
    d = os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "costpass_cubins")
    os.makedirs(d, exist_ok=True)
    return d


def cubin_for(code: str) -> bytes:
    """The cubin of a CUDA source, from the cache or compiled now with ``nvcc -O3 -cubin`` (atomic write)."""
    h = hashlib.sha256(code.encode("utf-8")).hexdigest()
    path = os.path.join(_cache_dir(), f"{h}.cubin")
    if not os.path.exists(path):
        arch = os.environ.get(ARCH_ENV, "sm_90a")
        with tempfile.TemporaryDirectory() as tmp:
            src, out = os.path.join(tmp, "k.cu"), os.path.join(tmp, "k.cubin")
            with open(src, "w") as f:
                f.write(code)
            r = subprocess.run(["nvcc", "-O3", "-cubin", f"-arch={arch}", "-o", out, src],
                               capture_output=True, text=True)
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


def _runner_init():
    """Register the nvcc compile callback; with runtime-only TVM (no ``libtvm_compiler.so``) load TVM's CUDA
    runtime first, globally, so that libraries holding CUDA source can be loaded."""
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


def locked_run_evaluator(rt_mod, device, evaluator_config, repeated_args):
    """MetaSchedule's default evaluator under an exclusive lock on ``$COSTPASS_GPU_LOCK`` (if set)."""
    from tvm.s_tir.meta_schedule.runner.utils import run_evaluator_common

    lock = os.environ.get(LOCK_ENV)
    if not lock:
        return run_evaluator_common(rt_mod, device, evaluator_config, repeated_args)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            return run_evaluator_common(rt_mod, device, evaluator_config, repeated_args)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def gpu_builder(max_workers: int = 4, timeout_sec: float = 120.0):
    from tvm.s_tir import meta_schedule as ms

    return ms.builder.LocalBuilder(f_build=build_and_compile, max_workers=max_workers, timeout_sec=timeout_sec,
                                   initializer=_builder_init)


def gpu_runner(timeout_sec: float = 60.0, number: int = 3, repeat: int = 5, min_repeat_ms: int = 20):
    from tvm.s_tir import meta_schedule as ms

    cfg = ms.runner.EvaluatorConfig(number=number, repeat=repeat, min_repeat_ms=min_repeat_ms,
                                    enable_cpu_cache_flush=False)
    return ms.runner.LocalRunner(timeout_sec=timeout_sec, evaluator_config=cfg,
                                 f_run_evaluator=locked_run_evaluator, initializer=_runner_init)
