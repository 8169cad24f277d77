"""costpass.CostModel inside a real (tiny) MetaSchedule search.

The builder compiles every candidate for CUDA for real (costpass.measure.build.build_module, in-process so
the test does not pay a second TVM start in a popen worker). This machine has no GPU, so the runner below
is a TEST DOUBLE: it executes nothing and returns made-up run times. Nothing it returns is a measurement.
"""
import logging
import os
import random
import tempfile

import numpy as np
import pytest
import tvm
from tvm import te
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult

import costpass
from costpass.cli import preload_tensor_intrinsics
from costpass.measure.build import build_module, cuda_target

preload_tensor_intrinsics()   # the demand pass and the builder need it; this import path takes ~4 s, not ~20 s


@derived_object
class CudaBuilder(PyBuilder):
    """Builds each candidate for CUDA with the project's build function; one temp dir per artifact
    (MetaSchedule's default callback removes the artifact's folder after running it)."""

    def __init__(self):
        self.built = 0

    def build(self, build_inputs):
        out = []
        for bi in build_inputs:
            try:
                lib = build_module(bi.mod, bi.target)
                path = os.path.join(tempfile.mkdtemp(prefix="costpass_test_"), "k.so")
                lib.export_library(path)
                self.built += 1
                out.append(BuilderResult(path, None))
            except Exception as e:  # noqa: BLE001
                out.append(BuilderResult(None, str(e)))
        return out


@derived_object
class _FakeFuture(PyRunnerFuture):
    def __init__(self, secs):
        self.secs = secs

    def done(self):
        return True

    def result(self):
        return RunnerResult([self.secs], None)


@derived_object
class FakeRunner(PyRunner):
    """TEST DOUBLE: returns made-up run times (10-20 us); runs nothing."""

    def __init__(self):
        self.runs = 0
        self.rng = random.Random(0)

    def run(self, runner_inputs):
        self.runs += len(runner_inputs)
        return [_FakeFuture(1e-5 * (1 + self.rng.random())) for _ in runner_inputs]


def matmul_mod(n=256):
    A = te.placeholder((n, n), "float32", name="A")
    B = te.placeholder((n, n), "float32", name="B")
    k = te.reduce_axis((0, n), name="k")
    C = te.compute((n, n), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    return tvm.IRModule({"main": te.create_prim_func([A, B, C])})


def test_cost_model_in_tune_tir(tmp_path):
    cm = costpass.CostModel(gpu="h100", min_online=4)
    runner, builder = FakeRunner(), CudaBuilder()
    strategy = ms.search_strategy.EvolutionarySearch(population_size=24, init_min_unmeasured=12,
                                                     genetic_num_iters=1)
    db = ms.tune_tir(matmul_mod(), cuda_target(), str(tmp_path / "work"), max_trials_global=8,
                     num_trials_per_iter=4, builder=builder, runner=runner, cost_model=cm,
                     strategy=strategy, num_tuning_cores=1, seed=0)
    recs = db.get_all_tuning_records()
    assert len(recs) >= 4 and builder.built >= 4 and runner.runs >= 4
    st = cm.stats
    assert st["predict_calls"] >= 1 and st["update_calls"] >= 1
    assert st["candidates_measured"] >= 4 and st["residual_fits"] >= 1   # the online model was fitted
    assert st["fallbacks"] == 0 and st["update_failures"] == 0
    # save / load keeps the online data and the residual model
    cm.save(str(tmp_path / "cm.json"))
    cm2 = costpass.CostModel(gpu="h100")
    cm2.load(str(tmp_path / "cm.json"))
    X = np.vstack(cm.online_model.X)
    assert np.allclose(cm.predict_ms(X), cm2.predict_ms(X))


def _candidates(n=6):
    """A few MeasureCandidates of the matmul (random samples of MetaSchedule's CUDA space)."""
    from costpass.measure.candidates import _sample, design_spaces, tune_context
    mod = matmul_mod()
    ctx = tune_context(mod, cuda_target(), 0, "mm")
    spaces = design_spaces(ctx)
    post = list(ctx.space_generator.postprocs)
    ai = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    out, rng = [], random.Random(1)
    for _ in range(400):
        sch = _sample(mod, spaces[rng.randrange(len(spaces))], post, rng.randrange(1, 2 ** 31 - 1))
        if sch is not None:
            out.append(ms.MeasureCandidate(sch, ai))
        if len(out) >= n:
            break
    return ctx, out


def test_failures_fall_back(caplog):
    ctx, cands = _candidates()
    cm = costpass.CostModel(gpu="h100", model_path="none")
    good = cm.predict(ctx, cands)
    assert good.dtype == np.float64 and np.all(good > 0)

    class Broken:
        calibrated = True

        def predict(self, X):
            raise RuntimeError("boom")

    cm.base = Broken()            # a learned model that fails: the analytical estimate is used instead
    cm._ref.clear()
    with caplog.at_level(logging.WARNING, logger="costpass.metaschedule"):
        s = cm.predict(ctx, cands)
    assert np.allclose(s, good) and cm.stats["fallbacks"] >= 1
    assert "analytical estimate used" in caplog.text
    # an update whose feature step fails: logged, nothing raised, the model left as it was

    def broken_features(context, candidates):
        raise RuntimeError("lowering exploded")

    cm._features = broken_features
    res = [RunnerResult([1e-5], None) for _ in cands]
    with caplog.at_level(logging.WARNING, logger="costpass.metaschedule"):
        cm.update(ctx, cands, res)
    assert cm.stats["update_failures"] == 1 and "update failed" in caplog.text
    assert cm.residual is None


def test_predict_ms_matches_analytical():
    from costpass import bounds, demand, spec
    _, cands = _candidates(2)
    mod = cands[0].sch.mod
    ms_pred = costpass.predict(mod, "h100", model_path="none")
    est = sum(bounds.analyze(d, spec.load("h100")).estimate_us for d in demand.extract(mod)) / 1e3
    assert ms_pred == pytest.approx(est, rel=1e-6)


def matmul_add_relax(n=64):
    """A tiny Relax program (matmul + bias add), legalised and fused into one TIR task."""
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((n, n), "float32"))
    w = relax.Var("w", relax.TensorType((n, n), "float32"))
    b = relax.Var("b", relax.TensorType((n,), "float32"))
    with bb.function("main", [x, w, b]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, w))
            z = bb.emit_output(relax.op.add(y, b))
        bb.emit_func_output(z)
    seq = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                    relax.transform.FuseOps(), relax.transform.FuseTIR()])
    return seq(bb.get())


def test_cost_model_in_tune_relax(tmp_path):
    """costpass.CostModel drives ms.relax_integration.tune_relax (builder real, runner a TEST DOUBLE)."""
    mod = matmul_add_relax()
    tasks = ms.relax_integration.extract_tasks(mod, cuda_target())
    assert [t.task_name for t in tasks] == ["fused_matmul_add"]
    cm = costpass.CostModel(gpu="h100", min_online=2)
    assert cm.base is not None                      # the shipped H100 model, not the analytical fallback
    runner, builder = FakeRunner(), CudaBuilder()
    strategy = ms.search_strategy.EvolutionarySearch(population_size=16, init_min_unmeasured=6,
                                                     genetic_num_iters=1)
    db = ms.relax_integration.tune_relax(mod, {}, cuda_target(), str(tmp_path / "work"), max_trials_global=6,
                                         num_trials_per_iter=3, builder=builder, runner=runner, cost_model=cm,
                                         strategy=strategy, seed=0)
    recs = db.get_all_tuning_records()
    assert len(recs) >= 3 and builder.built >= 3 and runner.runs >= 3
    assert all(r.run_secs and float(r.run_secs[0]) > 0 for r in recs)
    # the records are of the fused Relax task
    assert {str(r.workload.mod.get_global_vars()[0].name_hint) for r in recs} == {"main"}
    assert all("matmul" in str(r.workload.mod) for r in recs)
    st = cm.stats                                   # only MetaSchedule's calls into the model count here
    assert st["predict_calls"] >= 1 and st["candidates_scored"] >= 6
    assert st["update_calls"] >= 1 and st["candidates_measured"] >= 3 and st["residual_fits"] >= 1
    assert st["extract_failures"] == 0 and st["fallbacks"] == 0 and st["update_failures"] == 0


def test_model_choice_own_cross_explicit(caplog, tmp_path):
    """Each GPU's own shipped model; the cross-GPU model (h100+h200) for a GPU without one; explicit choices."""
    from costpass import metaschedule as CM
    from costpass.model import read_header

    own, cross = CM.shipped_model_path("h100"), CM.shipped_model_path("h100+h200", fallback=False)
    assert own.endswith("h100.json.gz") and cross.endswith("h100+h200.json.gz")
    assert CM.cross_gpu_model_path() == cross
    h = read_header(cross)                          # the header names both GPUs and the data it saw
    assert h["gpus"] == ["h100", "h200"] and len(h["training_data_hash"]) == 16
    assert set(h["training_data"]["per_gpu"]) == {"h100", "h200"}
    assert h["feature_schema"]["hash"] == costpass.features.schema_hash()
    assert CM.shipped_model_path("a100") == cross and CM.shipped_model_path("a100", fallback=False) is None

    CM._LOGGED.clear()
    with caplog.at_level(logging.INFO, logger="costpass.metaschedule"):
        cm_own, cm_a100 = costpass.CostModel(gpu="h200"), costpass.CostModel(gpu="a100")
        cm_exp = costpass.CostModel(gpu="h100+h200")
        cm_path = costpass.CostModel(gpu="l40s", model_path="h200")
        cm_none = costpass.CostModel(gpu="l40s", model_path="none")
    assert cm_own.model_path.endswith("h200.json.gz")
    assert cm_a100.model_path == cross and cm_a100.gpu.name == "a100" and cm_a100.base.gpus == ["h100", "h200"]
    assert cm_exp.model_path == cross and cm_exp.gpu.name == "h100"
    assert cm_path.model_path.endswith("h200.json.gz") and cm_none.base is None
    text = caplog.text
    assert "GPU h200 uses models/h200.json.gz (the model trained on h200)" in text
    assert ("GPU a100 uses models/h100+h200.json.gz (no model trained on a100: the cross-GPU model trained "
            "on h100, h200)") in text
    assert "GPU h100 uses models/h100+h200.json.gz (shipped model 'h100+h200' chosen explicitly)" in text
    fallback = [r for r in caplog.records if "no model trained on a100" in r.getMessage()]
    assert fallback and fallback[0].levelno == logging.WARNING
    with pytest.raises(FileNotFoundError, match="no shipped costpass model named 'h100\\+a100'"):
        costpass.CostModel(gpu="h100+a100")

    # costpass.predict takes the same route: a100 through the cross-GPU model, equal to an explicit choice
    _, cands = _candidates(1)
    mod = cands[0].sch.mod
    p_a100 = costpass.predict(mod, "a100")
    assert p_a100 == costpass.predict(mod, "a100", model_path=cross) == costpass.predict(mod, "a100",
                                                                                          model_path="h100+h200")
    assert p_a100 != costpass.predict(mod, "a100", model_path="none")
    assert costpass.predict(mod, "h100+h200") == costpass.predict(mod, "h100", model_path=cross)


def test_cross_model_schema_refused(tmp_path, monkeypatch):
    """A shipped model whose feature schema differs is refused with a clear message, the cross-GPU one too."""
    import gzip
    import json
    from costpass import metaschedule as CM
    from costpass.model import ModelSchemaError

    with gzip.open(CM.cross_gpu_model_path(), "rb") as f:
        obj = json.loads(f.read())
    obj["header"]["feature_schema"]["hash"] = "0000000000000000"
    (tmp_path / "h100+h200.json").write_text(json.dumps(obj))
    monkeypatch.setattr(CM, "MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(CM, "_MODEL_CACHE", {})
    assert CM.shipped_model_path("a100") == str(tmp_path / "h100+h200.json")
    with pytest.raises(ModelSchemaError, match="feature schema"):
        costpass.CostModel(gpu="a100")
