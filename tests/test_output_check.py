"""The runner's output check (costpass.measure.ms_gpu): a candidate whose output differs from the reference
kernel's fails its measurement, a correct one is timed. Driven for real through MetaSchedule's LocalRunner on
the CPU (LLVM): the same evaluator the GPU tuning runs use, with a CPU library in place of a CUDA one."""
import functools

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
from tvm import te  # noqa: E402

from costpass.measure import ms_gpu  # noqa: E402


def _add(sign: float):
    a, b = te.placeholder((64,), "float32", "a"), te.placeholder((64,), "float32", "b")
    c = te.compute((64,), lambda i: a[i] + tvm.tirx.const(sign, "float32") * b[i], name="c")
    return tvm.IRModule({"main": te.create_prim_func([a, b, c])})


def _lib(mod, path):
    tvm.tirx.build(mod, target="llvm").export_library(str(path))
    return str(path)


def test_output_error_by_hand(tmp_path):
    ref = tvm.runtime.load_module(_lib(_add(1.0), tmp_path / "ref.so"))
    good = tvm.runtime.load_module(_lib(_add(1.0), tmp_path / "good.so"))
    bad = tvm.runtime.load_module(_lib(_add(-1.0), tmp_path / "bad.so"))
    dev = tvm.cpu()
    args = [tvm.runtime.empty((64,), "float32", dev) for _ in range(3)]
    assert ms_gpu.output_error(good, ref, args, (2,), dev) == 0.0
    # a + b vs a - b on N(0, 0.25) data: |2b| / |a + b| is about sqrt(2)
    assert ms_gpu.output_error(bad, ref, args, (2,), dev) == pytest.approx(np.sqrt(2), rel=0.3)


def test_local_runner_fails_a_wrong_kernel(tmp_path):
    from tvm.s_tir import meta_schedule as ms

    check = ms_gpu.OutputCheck(_lib(_add(1.0), tmp_path / "ref.so"), (2,), 1e-3)
    cfg = ms.runner.EvaluatorConfig(number=1, repeat=1, min_repeat_ms=0, enable_cpu_cache_flush=False)
    runner = ms.runner.LocalRunner(timeout_sec=60, evaluator_config=cfg,
                                   f_run_evaluator=functools.partial(ms_gpu.locked_run_evaluator, check=check))
    info = [ms.arg_info.TensorInfo("float32", (64,))] * 3
    inputs = [ms.runner.RunnerInput(_lib(_add(s), tmp_path / f"k{i}.so"), "cpu", info) for i, s in enumerate((1.0, -1.0))]
    good, bad = [f.result() for f in runner.run(inputs)]
    assert good.error_msg is None and good.run_secs and float(good.run_secs[0]) > 0
    assert bad.run_secs is None and "wrong output: rel. L2 error" in bad.error_msg


def test_output_check_of_a_workload(tmp_path):
    """The tuning driver's side: the workload's reference kernel built for CUDA and exported, last argument
    the output, fp16 tolerance."""
    chk = ms_gpu.output_check("silu_mul_14336_fp16", str(tmp_path))
    assert (tmp_path / "reference_silu_mul_14336_fp16.so").stat().st_size > 0
    assert chk.outputs == (1,) and chk.tol == 1e-2  # (gate|up, out)
    assert ms_gpu.output_check("silu_mul_14336_fp16", str(tmp_path)) == chk  # built once
    host = ms_gpu.check_inputs((((4,), "float16"), ((4,), "int32")), (0,))
    assert np.isnan(host[0]).all() and host[1].dtype == np.int32 and ms_gpu.check_inputs((((2,), "bfloat16"),), ()) is None


def test_cli_tune_checks_by_default(tmp_path):
    import argparse

    from costpass import cli_tune

    def evaluator(no_check):
        ns = argparse.Namespace(runner="local", workload="silu_mul_14336_fp16", work_dir=str(tmp_path),
                                no_check_outputs=no_check)
        return cli_tune._builder_runner(ns)[1].f_run_evaluator

    assert evaluator(False).keywords["check"].ref_lib.endswith("reference_silu_mul_14336_fp16.so")
    assert evaluator(True) is ms_gpu.locked_run_evaluator
