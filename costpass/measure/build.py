"""Building scheduled TensorIR modules for CUDA without a GPU.

The CUDA kernels are not compiled here: ``tvm.tirx.build`` gives a host module that imports a CUDA module
holding CUDA C source; the runtime passes that source to the global ``tvm_callback_cuda_compile`` when the
exported library is loaded (see ``costpass.measure.bundle``).

Tensor-core (wmma) schedules from MetaSchedule's default CUDA space only build with storage rewrite
disabled (``tvm_access_ptr element type must match ...`` otherwise), so every build here runs under
``PassContext(opt_level=3, config={"tirx.disable_storage_rewrite": True})``.
"""
from __future__ import annotations

import tvm

BUILD_CONFIG = {"tirx.disable_storage_rewrite": True}


def cuda_target(arch: str = "sm_90a") -> tvm.target.Target:
    """The CUDA target used for building without a GPU attached (host: llvm)."""
    return tvm.target.Target({"kind": "cuda", "arch": arch, "max_threads_per_block": 1024,
                              "max_shared_memory_per_block": 49152, "thread_warp_size": 32}, host="llvm")


def _prepare(mod):
    import tvm.s_tir.tensor_intrin  # noqa: F401  (registers the wmma intrinsics)
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    if isinstance(mod, tvm.tirx.PrimFunc):
        mod = tvm.IRModule({"main": mod})
    return RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)


def build_module(mod, target=None):
    """Build a scheduled module (``IRModule``, ``PrimFunc`` or ``s_tir.Schedule``) into a runtime Module.

    Returns the host ``tvm.runtime.Module`` (what ``tvm.tirx.build`` returns); its ``imports[0]`` is the
    CUDA module whose ``inspect_source()`` is the CUDA source.
    """
    if hasattr(mod, "mod") and not isinstance(mod, tvm.IRModule):  # an s_tir.Schedule
        mod = mod.mod
    target = target or cuda_target()
    mod = _prepare(mod)
    with tvm.transform.PassContext(opt_level=3, config=BUILD_CONFIG):
        return tvm.tirx.build(mod, target=target, pipeline="s_tir")


def ms_build(mod, target, _params=None):
    """``f_build`` for MetaSchedule's ``LocalBuilder``: same signature and return type as its
    ``default_build`` (``(IRModule, Target, params) -> runtime.Module``), with the storage-rewrite workaround."""
    assert _params is None or len(_params) == 0, "params are not supported"
    return build_module(mod, target)


def _worker_init():
    """Popen-worker initializer: the tensor-intrinsic import takes 15-30 s of CPU, more than the per-build
    timeout, so do it before the first (timed) build."""
    import tvm.s_tir.tensor_intrin  # noqa: F401


def ms_builder(max_workers: int = 1, timeout_sec: float = 60.0):
    """A MetaSchedule ``LocalBuilder`` that builds with :func:`ms_build` (usable in ``ms.tune_tir``).

    The builder runs ``f_build`` in popen workers (restarted at every ``build`` call); they unpickle the
    function by reference, so ``costpass`` must be importable there (it is installed editable).
    """
    from tvm.s_tir import meta_schedule as ms

    return ms.builder.LocalBuilder(f_build=ms_build, max_workers=max_workers, timeout_sec=timeout_sec,
                                   initializer=_worker_init)
