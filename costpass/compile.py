"""Compile a Relax model for a GPU: tune its kernels with MetaSchedule and costpass, build it, and report
per kernel where the time goes.

    import costpass.compile as C
    model = C.load_model("llama_block", config="llama3-8b", shape="decode", kv=512)
    report = C.compile_model(model, gpus="h100,h200", runner="none", trials=256,
                             work_dir="tune/decode", output="decode.so")
    print(C.render_text(report))            # or report.to_dict(), C.plot(report, "decode.png")

Steps (each is also a function here):

1. :func:`prepare` -- the fusion half of Relax's CUDA pipeline (``FuseTransposeMatmul``, ``LegalizeOps``,
   ``FuseOps``, ``FuseTIR``): one PrimFunc per fused operator, called from the Relax ``main``.
2. :func:`tune` -- MetaSchedule's ``tune_tasks`` over the PrimFuncs (``extract_tasks``) with
   ``costpass.CostModel(gpu)`` as the cost model and a JSON database in ``work_dir``. Runners:
   ``"local"`` measures every candidate on this machine's GPU (MetaSchedule's ``LocalRunner``; the
   builder compiles each candidate's CUDA source to a cubin in parallel: ``costpass.measure.ms_gpu``);
   ``"none"`` measures nothing: the costpass prediction of each candidate is recorded as its run time
   (zero-shot). ``trials`` counts all records of the model's tasks in the database, so a second call
   with the same ``work_dir`` resumes where an interrupted one stopped. A candidate that fails to build
   or run is recorded by MetaSchedule with the error (run time 1e10 s) and the search goes on.
3. :func:`build` -- the rest of the Relax pipeline with the database (``MetaScheduleApplyDatabase``;
   DLight's default GPU schedules for PrimFuncs the database has no record of), under TVM 0.27's
   tensor-core workaround (``tirx.disable_storage_rewrite``); :func:`export` writes the library.
4. :func:`diagnose_kernels` -- every PrimFunc the Relax VM ``main`` calls, in call order, with its call
   count: costpass's demand pass, the analytical bounds and diagnosis (``costpass.diagnose``) and the
   learned prediction (the shipped model of each GPU, as ``costpass.predict``). The predicted end-to-end
   latency is the sum over calls; each call includes launch overhead (``launch_overhead_us`` of the GPU
   spec in the analytical estimate; the learned model is fitted on per-call times and sees it as a
   feature). ``stream_us`` is the same sum with each learned per-call prediction less what the CUDA-event pair
   of its training measurements reads beyond the kernel's own time (``event_over_kernel_us``, measured, in the
   GPU spec), plus the
   gap the Relax VM leaves between consecutive kernels (``vm_launch_gap_us``, measured, in the GPU spec):
   kernels queued back to back do not pay the one and do pay the other (:func:`stream_offset_us`,
   :func:`stream_gap_us`). ``anchored_us``: ``stream_us`` with each tuned kernel's measured tuning record (runner
   "local") in place of its prediction (:func:`stream_total_us`).

Errors in the input (unknown model, GPU, file; a work dir tuned another way) raise :class:`CompileError`
with a one-line message.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field

SCHEMA = "costpass.compile/1"
MANIFEST = "costpass_compile.json"      # in work_dir: how its records were made
BUILD_CONFIG = {"tirx.disable_storage_rewrite": True}
FAILED_SECS = 1e9                       # MetaSchedule records failed candidates with run_secs 1e10
RUNNERS = ("none", "local")


class CompileError(ValueError):
    """A problem with the input: one line, shown by the CLI as ``costpass: error: ...`` (exit 2)."""


# ------------------------------------------------------------------------------------------------------
# Report dataclasses
# ------------------------------------------------------------------------------------------------------

@dataclass
class KernelPrediction:
    """One PrimFunc on one GPU, per call (times in microseconds)."""
    gpu: str
    predicted_us: float           # learned model (analytical estimate where the GPU has no model)
    predictor: str                # "learned" | "analytical"
    estimate_us: float            # analytical estimate (bounds.py), launch overhead included
    ceiling_us: float             # best time the kernel's demand allows, launch overhead included
    launch_us: float              # launch overhead in the estimate and the ceiling (all kernels of the func)
    total_us: float               # predicted_us x calls
    share: float                  # total_us / the model's predicted time on this GPU
    bottleneck: str               # pipe of the dominant kernel (bounds.PIPES)
    bottleneck_label: str
    fraction_of_ceiling: float    # ceiling_us / predicted_us
    hint: str | None              # the first hint of the dominant kernel
    hints: list = field(default_factory=list)   # [{"kernel", "severity", "message", "decision"}]


@dataclass
class KernelEntry:
    """One PrimFunc called by the Relax VM main function."""
    name: str
    calls: int
    first_call: int               # index of its first call among all calls (execution order)
    origin: str                   # "tuned" (MetaSchedule record) | "default" (DLight: no record) |
                                  # "default-faster" (DLight: predicted faster than the tuned record) |
                                  # "default-wrong" (DLight: the tuned record's output was wrong on the GPU)
    device_kernels: list          # names of its GPU kernels (launch order within one call)
    record_us: float | None       # run time in the tuning record (None for "default")
    record_kind: str | None       # "measured" (runner local, on tuned_for) | "predicted" (runner none)
    per_gpu: list                 # [KernelPrediction], in the order of CompileReport.gpus


@dataclass
class CompileReport:
    model: str
    description: str
    target: str
    gpus: list                    # GPU names, first = the one tuned for
    tuned_for: str
    runner: str
    trials: int                   # requested (records of the model's tasks in the database)
    tuning: dict                  # tasks, records, failed, trials_run, wall_s, ...
    library: str | None
    kernels: list                 # [KernelEntry], order of first call
    totals: dict                  # gpu -> {predicted_us, stream_us, estimate_us, ceiling_us, launches, kernels}
    arg_specs: list | None = None # Relax main arguments (name, shape, dtype, kind) when the model says
    meta: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    created: str = ""
    schema: str = SCHEMA
    checks: dict = field(default_factory=dict)   # tuned PrimFunc -> output check on the GPU (check_kernels)

    def to_dict(self) -> dict:
        return _clean(asdict(self))

    @staticmethod
    def from_dict(d: dict) -> "CompileReport":
        d = dict(d)
        kernels = []
        for k in d.pop("kernels"):
            k = dict(k)
            k["per_gpu"] = [KernelPrediction(**p) for p in k["per_gpu"]]
            kernels.append(KernelEntry(**k))
        return CompileReport(kernels=kernels, **d)


def _clean(x):
    from .diagnose import _clean as clean  # non-finite floats -> None, JSON-safe

    return clean(x)


# ------------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------------

@dataclass
class Model:
    name: str
    mod: object                   # IRModule with a Relax function "main"
    description: str = ""
    arg_specs: list | None = None
    meta: dict = field(default_factory=dict)


BUILTIN_MODELS = ("llama_block",)


def load_model(spec: str = "llama_block", *, config: str = "llama3-8b", shape: str = "decode",
               batch: int = 1, seq: int | None = None, kv: int | None = None) -> Model:
    """A model to compile.

    ``spec`` is ``"llama_block"`` (``schedules/llama_block.py``; ``config``, ``shape``, ``batch``, ``seq``,
    ``kv`` choose it), a Python file defining ``build()`` that returns a Relax ``IRModule`` (or
    ``(IRModule, arg_specs)``), or a TVMScript file of a Relax ``IRModule``; the Relax function to compile
    is ``main``."""
    if spec == "llama_block":
        from schedules import llama_block as L
        try:
            c = L.get_config(config)
            s = L.shape(shape, batch=batch, seq=seq, kv=kv)
        except ValueError as err:
            raise CompileError(str(err)) from None
        mod, specs = L.build(c, s)
        desc = f"Llama-style decoder block ({config}: hidden {c.hidden}, {c.heads}/{c.kv_heads} heads x " \
               f"{c.head_dim}, MLP {c.intermediate}, {c.dtype}), {s.label()}"
        return Model(name=f"llama_block-{config}-{s.name}", mod=mod, description=desc, arg_specs=specs,
                     meta={"kind": "llama_block", "config": config, "config_values": c.to_dict(),
                           "shape": s.to_dict()})
    if os.path.exists(spec) or os.sep in spec or spec.endswith((".py", ".tvmscript", ".txt")):
        return _load_model_file(spec)
    raise CompileError(f"unknown model {spec!r}: give {', '.join(BUILTIN_MODELS)}, a .py file defining build() "
                       "or a TVMScript file of a Relax IRModule")


def _load_model_file(path: str) -> Model:
    import importlib.util
    import tvm
    if not os.path.exists(path):
        raise CompileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CompileError(f"{path}: is a directory, expected a model file")
    name = os.path.splitext(os.path.basename(path))[0]
    specs = None
    if path.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"costpass_model_{name}", path)
        m = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(m)
        except Exception as err:  # noqa: BLE001 - the user's file
            raise CompileError(f"{path}: cannot load: {type(err).__name__}: {_first_line(err)}") from None
        if not hasattr(m, "build"):
            raise CompileError(f"{path}: defines no build() returning a Relax IRModule")
        try:
            out = m.build()
        except Exception as err:  # noqa: BLE001
            raise CompileError(f"{path}: build() failed: {type(err).__name__}: {_first_line(err)}") from None
        mod, specs = out if isinstance(out, tuple) else (out, None)
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            mod = tvm.script.from_source(text)
        except (OSError, UnicodeDecodeError) as err:
            raise CompileError(f"cannot read {path}: {_first_line(err)}") from None
        except Exception as err:  # noqa: BLE001 - TVMScript parse errors
            raise CompileError(f"{path}: malformed TVMScript: {_first_line(err)}") from None
    if not isinstance(mod, tvm.IRModule):
        raise CompileError(f"{path}: expected a Relax IRModule, got {type(mod).__name__}")
    if "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
        raise CompileError(f"{path}: the module has no function named main")
    return Model(name=name, mod=mod, description=f"{path}", arg_specs=specs, meta={"kind": "file", "path": path})


def _first_line(err) -> str:
    for line in str(err).strip().splitlines():
        if line.strip():
            return " ".join(line.split())
    return type(err).__name__


# ------------------------------------------------------------------------------------------------------
# Targets and GPUs
# ------------------------------------------------------------------------------------------------------

def load_gpus(gpus) -> list:
    """GPUSpec list from "h100,h200" / ["h100"] / GPUSpec; duplicates dropped."""
    from . import spec as S
    if isinstance(gpus, (str, S.GPUSpec)):
        gpus = [gpus]
    out = []
    for g in gpus:
        try:
            out += S.load_many(g) if isinstance(g, str) else [g]
        except S.UnknownGPUError as err:
            raise CompileError(_first_line(err)) from None
    seen, uniq = set(), []
    for g in out:
        if g.name not in seen:
            seen.add(g.name)
            uniq.append(g)
    if not uniq:
        raise CompileError(f"no GPU named (known: {', '.join(S.available())})")
    return uniq


def target_for(gpu):
    """The CUDA target for ``gpu``'s architecture, buildable without a GPU (host llvm)."""
    from .measure.build import cuda_target
    return cuda_target(gpu.arch)


# ------------------------------------------------------------------------------------------------------
# 1. prepare
# ------------------------------------------------------------------------------------------------------

def prepare(mod, target):
    """Relax CUDA pipeline up to fused PrimFuncs (what ``compile_relax`` runs before applying the database),
    plus ``FuseTransposeMatmul`` so that ``x @ W.T`` reads W in place instead of transposing it first."""
    import tvm
    from tvm import relax
    from tvm.relax import pipeline as P
    try:
        dispatch = P.library_dispatch_passes(target)
    except (ValueError, AttributeError):
        dispatch = []
    passes = dispatch + [relax.transform.FuseTransposeMatmul(), relax.transform.LegalizeOps(),
                         relax.transform.AnnotateTIROpPattern(), relax.transform.FoldConstant(),
                         relax.transform.FuseOps(), relax.transform.FuseTIR(),
                         relax.transform.DeadCodeElimination()]
    with target, tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential(passes)(mod)


def extract_tasks(prepared, target) -> list:
    """MetaSchedule's tasks of a prepared module, less the PrimFuncs the VM will not launch (pure reshapes,
    which ``RewriteDataflowReshape`` turns into views, e.g. a transpose of an axis of extent 1)."""
    from tvm import relax
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks as _extract
    # The views are recognised on scheduled functions (as in build); DLight schedules in place: a copy.
    copy = _deep_copy(prepared)
    with target:
        called = set(launches(relax.transform.RewriteDataflowReshape()(_dlight()(copy))))
    return [t for t in _extract(prepared, target, module_equality="structural") if t.task_name in called]


# ------------------------------------------------------------------------------------------------------
# Predictions (shared by the zero-shot runner and the report)
# ------------------------------------------------------------------------------------------------------

class Predictor:
    """Latency of scheduled TensorIR modules on one GPU: costpass demand -> learned model (the shipped one
    for the GPU, as ``costpass.predict``), or the analytical estimate when there is none."""

    def __init__(self, gpu, target=None, model_path: str | None = None):
        from .metaschedule import _load_model, shipped_model_path
        from .model import ModelSchemaError
        self.gpu = gpu
        self.target = target or target_for(gpu)
        self.problem = None
        path = None if model_path == "none" else (model_path or shipped_model_path(gpu.name))
        try:
            m = _load_model(path) if path else None
        except ModelSchemaError as err:    # a model trained on other features: say so, predict analytically
            m, self.problem = None, _first_line(err)
        self.model = m if (m is not None and m.calibrated) else None
        self.kind = "learned" if self.model is not None else "analytical"

    def demands(self, mod) -> list:
        from . import demand as D
        from .cli import preload_tensor_intrinsics
        preload_tensor_intrinsics()
        return D.extract(mod, target=self.target)

    def predict_us(self, demands) -> float:
        from . import features as F
        x = F.featurize(demands, self.gpu)
        if self.model is not None:
            return float(self.model.predict(x[None, :])[0]) * 1e3
        return float(F.estimate_us_of(x)[0])


# ------------------------------------------------------------------------------------------------------
# 2. tune
# ------------------------------------------------------------------------------------------------------

_ZS_LOCK = threading.Lock()
_ZS_RESULTS: dict = {}       # artifact key -> (run_secs | None, error | None)


def zero_shot_builder_runner(predictor: Predictor, check_build: bool = True, fail=None):
    """(builder, runner) for tuning without a GPU: the builder builds each candidate in-process (a build
    failure is recorded as such) and predicts its latency; the runner returns that prediction as the run
    time. A candidate whose launch does not fit on the GPU is recorded as a run failure. ``fail`` (tests):
    a predicate on the candidate's IRModule that makes its build fail."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult
    from . import bounds as B
    from .measure.build import build_module

    @derived_object
    class ZeroShotBuilder(PyBuilder):
        def build(self, build_inputs):
            out = []
            for bi in build_inputs:
                # a real directory: MetaSchedule's RemoveBuildArtifact callback deletes dirname(artifact)
                key = os.path.join(tempfile.mkdtemp(prefix="costpass-zero-shot-"), "prediction")
                try:
                    if fail is not None and fail(bi.mod):
                        raise RuntimeError("injected build failure (test)")
                    if check_build:
                        build_module(bi.mod, bi.target)
                except Exception as err:  # noqa: BLE001 - recorded by MetaSchedule, search goes on
                    out.append(BuilderResult(None, f"build failed: {type(err).__name__}: {_first_line(err)}"))
                    continue
                try:
                    ds = predictor.demands(bi.mod)
                    bad = [p for d in ds for p in B.analyze(d, predictor.gpu).problems]
                    res = (None, f"cannot run on {predictor.gpu.name}: {bad[0]}") if bad else \
                        ([predictor.predict_us(ds) * 1e-6], None)
                except Exception as err:  # noqa: BLE001
                    res = (None, f"costpass could not predict: {type(err).__name__}: {_first_line(err)}")
                with _ZS_LOCK:
                    _ZS_RESULTS[key] = res
                out.append(BuilderResult(key, None))
            return out

    @derived_object
    class _Future(PyRunnerFuture):
        def __init__(self, res):
            super().__init__()
            self.res = res

        def done(self):
            return True

        def result(self):
            secs, err = self.res
            return RunnerResult(secs, err)

    @derived_object
    class ZeroShotRunner(PyRunner):
        def run(self, runner_inputs):
            futs = []
            for ri in runner_inputs:
                with _ZS_LOCK:
                    res = _ZS_RESULTS.pop(str(ri.artifact_path), (None, "no prediction for this artifact"))
                futs.append(_Future(res))
            return futs

    return ZeroShotBuilder(), ZeroShotRunner()


def has_cuda_gpu() -> bool:
    try:
        import tvm
        return bool(tvm.cuda(0).exist)
    except Exception:  # noqa: BLE001
        return False


def _secs(rec) -> float | None:
    rs = [float(x) for x in (rec.run_secs or [])]
    rs = [x for x in rs if math.isfinite(x) and 0 < x < FAILED_SECS]
    return sum(rs) / len(rs) if rs else None


def open_database(work_dir: str):
    from tvm.s_tir.meta_schedule.database import JSONDatabase
    os.makedirs(work_dir, exist_ok=True)
    return JSONDatabase(work_dir=work_dir, module_equality="structural")


def _records_by_task(db, tasks) -> dict:
    """task name -> [TuningRecord] of that task's workload."""
    import tvm_ffi
    keys = {tvm_ffi.structural_hash(t.dispatched[0]): t.task_name for t in tasks}
    out = {t.task_name: [] for t in tasks}
    for rec in db.get_all_tuning_records():
        name = keys.get(tvm_ffi.structural_hash(rec.workload.mod))
        if name is not None:
            out[name].append(rec)
    return out


def _check_manifest(work_dir: str, want: dict) -> None:
    os.makedirs(work_dir, exist_ok=True)
    path = os.path.join(work_dir, MANIFEST)
    if os.path.exists(path):
        try:
            with open(path) as f:
                have = json.load(f)
        except (OSError, ValueError) as err:
            raise CompileError(f"{path}: unreadable ({_first_line(err)}): use a fresh --work-dir") from None
        for key in ("runner", "tuned_for", "target_arch"):
            if have.get(key) != want[key]:
                raise CompileError(
                    f"work dir {work_dir} holds records made with {key} {have.get(key)!r}, not {want[key]!r}: "
                    "use a fresh --work-dir (zero-shot predictions and measurements must not mix)")
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(want, f, indent=1)
    os.replace(tmp, path)


def _quiet_console(verbose: bool) -> None:
    """MetaSchedule logs its progress tables to stdout at INFO; keep stdout for the report: progress goes to
    stderr, and only warnings unless ``verbose``. The per-task logs in ``work_dir/logs`` keep everything."""
    import logging
    for h in logging.getLogger("tvm.s_tir.meta_schedule").handlers:
        if h.get_name() == "tvm.s_tir.meta_schedule.console" and isinstance(h, logging.StreamHandler):
            h.setStream(sys.stderr)
            h.setLevel(logging.INFO if verbose else logging.WARNING)


def tune_contexts(tasks, target, work_dir, strategy, seed, num_threads="physical", verbose=False) -> tuple:
    """TuneContexts as MetaSchedule's ``extracted_tasks_to_tune_contexts`` makes them (default CUDA design
    space, one logger per task in ``work_dir/logs``, seeds forked from ``seed``), except that a task whose
    default space cannot be generated gets a space without tensor cores: TVM 0.27's
    ``MultiLevelTilingTensorCore`` fails ("Back optional access") on batch-1 GEMVs of shape [1, 1, K]. That
    space also leaves out ``MultiLevelTiling``, whose tiles of such GEMVs stage the weight matrix in shared
    memory and nearly all fail ``VerifyGPUCode`` (0 of ~4500 for Llama-3-8B's gate/up GEMV, so the search
    could not even start); ``CrossThreadReduction`` (the reduction split across threads) remains.
    Returns (contexts, weights, names of the tasks given that space)."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir
    from tvm.s_tir.meta_schedule.utils import fork_seed

    ctxs, weights, simt = [], [], []
    import logging
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.INFO if verbose else logging.WARNING)
    loggers = get_loggers_from_work_dir(work_dir, [t.task_name for t in tasks])
    _quiet_console(verbose)
    for task, logger, rand_state in zip(tasks, loggers, fork_seed(seed, n=len(tasks))):
        mod = task.dispatched[0]
        space = "post-order-apply"
        try:
            probe = ms.TuneContext(mod=mod, target=task.target, space_generator=space, task_name=task.task_name,
                                   num_threads=1)
            probe.space_generator.generate_design_space(mod)
        except Exception:  # noqa: BLE001 - TVM raises RuntimeError / TVMError
            rules = [r for r in ms.ScheduleRule.create("cuda") if type(r).__name__ != "MultiLevelTiling"]
            space = ms.space_generator.PostOrderApply(sch_rules=rules, postprocs=ms.Postproc.create("cuda"),
                                                      mutator_probs=ms.Mutator.create("cuda"))
            simt.append(task.task_name)
        ctxs.append(ms.TuneContext(mod=mod, target=task.target, space_generator=space, search_strategy=strategy,
                                   task_name=task.task_name, logger=logger, rand_state=rand_state,
                                   num_threads=num_threads).clone())
        weights.append(task.weight)
    return ctxs, weights, simt


@dataclass
class TuneOptions:
    population: int = 512             # EvolutionarySearch population_size (MetaSchedule default 512)
    genetic_iters: int = 4            # EvolutionarySearch genetic_num_iters (default 4)
    trials_per_iter: int = 64         # candidates measured per task per round
    seed: int = 0
    builder_workers: int | None = None
    check_build: bool = True          # zero-shot: build each candidate too (a failure is recorded)
    num_threads: int | None = None    # MetaSchedule search threads (default: physical cores)
    verbose: bool = False             # MetaSchedule's progress tables on stderr
    fail: object = None               # tests: predicate -> injected build failure (zero-shot only)


def tune(prepared, target, work_dir: str, *, trials: int, gpu, runner: str = "none",
         options: TuneOptions | None = None, log=None) -> dict:
    """Tune the PrimFuncs of a prepared module; returns a summary dict (see module docstring)."""
    from tvm.s_tir import meta_schedule as ms
    from . import CostModel
    from .cli import preload_tensor_intrinsics

    opt = options or TuneOptions()
    log = log or (lambda msg: None)
    if runner not in RUNNERS:
        raise CompileError(f"unknown runner {runner!r} (none, local)")
    if runner == "local" and not has_cuda_gpu():
        raise CompileError("--runner local needs a CUDA GPU on this machine and none was found "
                           "(use --runner none to tune with costpass's predictions alone)")
    preload_tensor_intrinsics()
    tasks = extract_tasks(prepared, target)
    _check_manifest(work_dir, {"runner": runner, "tuned_for": gpu.name, "target_arch": gpu.arch})
    db = open_database(work_dir)
    before = _records_by_task(db, tasks)
    done = sum(len(v) for v in before.values())
    remaining = max(0, int(trials) - done)
    summary = {"tasks": len(tasks), "records_before": done, "trials_run": 0, "wall_s": 0.0,
               "population": opt.population, "trials_per_iter": opt.trials_per_iter, "seed": opt.seed}
    t0 = time.perf_counter()
    if remaining > 0 and tasks:
        log(f"tuning {len(tasks)} tasks for {gpu.name}: {remaining} trials "
            f"({done} already in {work_dir}), runner {runner}")
        strategy = ms.search_strategy.EvolutionarySearch(
            population_size=opt.population, init_min_unmeasured=min(50, max(2, opt.population // 8)),
            genetic_num_iters=opt.genetic_iters)
        if done:  # resuming: MetaSchedule's search would measure the database's schedules again
            from .tune import skip_measured
            strategy = skip_measured(strategy, [r for v in before.values() for r in v])
        ctxs, weights, simt = tune_contexts(tasks, target, work_dir, strategy, opt.seed,
                                            opt.num_threads if opt.num_threads is not None else "physical",
                                            opt.verbose)
        summary["simt_only_tasks"] = simt
        if simt:
            log(f"{len(simt)} tasks tuned without tensor cores (TVM's tensor-core rule fails on them): "
                + ", ".join(simt))
        pred = Predictor(gpu, target)
        if pred.problem:
            log(f"the learned model cannot be used ({pred.problem}): the analytical estimate ranks candidates")
            summary["cost_model"] = f"analytical ({pred.problem})"
        else:
            summary["cost_model"] = "learned" if pred.model is not None else "analytical"
        mp = "none" if pred.problem else None
        if runner == "none":
            builder, run = zero_shot_builder_runner(pred, opt.check_build, opt.fail)
            cm = CostModel(gpu=gpu.name, model_path=mp, online=False)
        else:
            import shutil
            from .measure import ms_gpu
            os.environ[ms_gpu.ARCH_ENV] = gpu.arch
            if shutil.which("nvcc") is None and os.path.exists("/usr/local/cuda/bin/nvcc"):
                os.environ["PATH"] = "/usr/local/cuda/bin" + os.pathsep + os.environ.get("PATH", "")
            builder = ms_gpu.gpu_builder(max_workers=opt.builder_workers or max(1, (os.cpu_count() or 2) - 1))
            run = ms_gpu.gpu_runner()
            cm = CostModel(gpu=gpu.name, model_path=mp)
        ms.tune.tune_tasks(tasks=ctxs, task_weights=weights, work_dir=work_dir, max_trials_global=remaining,
                           num_trials_per_iter=min(opt.trials_per_iter, remaining), builder=builder,
                           runner=run, database=db, cost_model=cm)
        if done:
            summary["skipped_as_measured"] = strategy.stats["skipped"]
    summary["wall_s"] = time.perf_counter() - t0
    after = _records_by_task(db, tasks)
    summary["trials_run"] = sum(len(v) for v in after.values()) - done
    summary["records"] = sum(len(v) for v in after.values())
    summary["failed"] = sum(1 for v in after.values() for r in v if _secs(r) is None)
    summary["per_task"] = {name: {"records": len(v), "failed": sum(1 for r in v if _secs(r) is None),
                                  "best_us": (min((s for s in map(_secs, v) if s is not None), default=None)
                                              or 0) * 1e6 or None}
                           for name, v in after.items()}
    return summary


# ------------------------------------------------------------------------------------------------------
# 3. build
# ------------------------------------------------------------------------------------------------------

@dataclass
class Built:
    executable: object            # tvm.relax Executable
    scheduled: object             # IRModule after the database and DLight (scheduled PrimFuncs + main)
    lowered: object               # IRModule the VM code is generated from (main calls the PrimFuncs)
    tuned: set                    # PrimFunc names scheduled from the database
    kept_default: dict = field(default_factory=dict)   # name -> (tuned µs, default µs) predicted: DLight kept
    wrong: dict = field(default_factory=dict)   # name -> rel. L2 error of the tuned schedule: DLight used instead


def _deep_copy(mod):
    """A deep copy of an IRModule. TVM 0.27's DLight ``ApplyDefaultSchedule`` modifies the PrimFuncs of its
    input module in place (seen: the structural hash of the input changes)."""
    import tvm
    return tvm.ir.load_json(tvm.ir.save_json(mod))


def _dlight():
    """DLight's default GPU rules. Its Matmul rule is given the target with an arch suffix dropped ("sm_90a"
    -> "sm_90"): TVM 0.27's ``check_sm_version`` reads "sm_90a" as no version at all (-1) and so never
    tensorizes for the H100/H200, leaving fp16 matmuls on SIMT cores (measured 7.7-12x slower than tuned
    ones, datasets/h100/r5)."""
    import tvm
    from tvm.s_tir import dlight as dl

    class Matmul(dl.gpu.Matmul):
        def apply(self, func, target, tunable):
            arch = str(target.attrs.get("arch", "")) if target.kind.name == "cuda" else ""
            if arch.startswith("sm_") and arch[-1].isalpha() and arch[3:-1].isdigit():
                target = tvm.target.Target({**target.export(), "arch": arch[:-1]})
            return super().apply(func, target, tunable)

    return dl.ApplyDefaultSchedule(Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                   dl.gpu.GeneralReduction(), dl.gpu.Fallback())


def build(prepared, target, database=None, predictor: "Predictor | None" = None, use_default=()) -> Built:
    """Apply the database's best schedules (DLight's default GPU schedules for the rest) and build the Relax
    VM executable. With ``predictor``, a PrimFunc whose tuned schedule is predicted slower than DLight's
    schedule of it keeps DLight's (``Built.kept_default``): with few trials MetaSchedule's best can be worse
    than the hand-written rules, notably for batch-1 GEMVs. PrimFuncs named in ``use_default`` keep DLight's
    schedule whatever is predicted (to rebuild a library as a report describes it, see :func:`repredict`)."""
    import tvm
    from tvm import relax
    from tvm.relax import pipeline as P
    from .cli import preload_tensor_intrinsics

    preload_tensor_intrinsics()
    try:
        lower = P.dataflow_lower_passes(target)
        finalize = P.finalize_passes(target)
    except (ValueError, AttributeError):
        lower = [relax.transform.RewriteDataflowReshape(), relax.transform.ToNonDataflow(),
                 relax.transform.RemovePurityChecking(), relax.transform.CallTIRRewrite()]
        finalize = [relax.transform.StaticPlanBlockMemory(), relax.transform.LowerAllocTensor(),
                    relax.transform.KillAfterLastUse(), relax.transform.LowerRuntimeBuiltin(),
                    relax.transform.ComputePrimValue(), relax.transform.VMShapeLower(),
                    relax.transform.AttachGlobalSymbol()]
    got = {"kept_default": {}}
    prepared = _deep_copy(prepared)    # DLight schedules PrimFuncs in place: keep the caller's module intact

    @tvm.transform.module_pass(opt_level=0, name="costpass.CompilePipeline")
    def pipeline(mod, _ctx):
        before = mod
        if database is not None:
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        tuned = {gv.name_hint for gv, f in mod.functions_items()
                 if isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None and "tirx.is_scheduled" in f.attrs}
        if (predictor is not None or use_default) and tuned:
            for gv, f in list(mod.functions_items()):
                forced = gv.name_hint in use_default
                if gv.name_hint not in tuned or not (forced or predictor is not None):
                    continue
                try:
                    default = _dlight()(_deep_copy(tvm.IRModule({"main": before[gv.name_hint]})))["main"]
                    t_tuned, t_default = (float("nan"),) * 2 if forced else (
                        predictor.predict_us(predictor.demands(_kernel_module(f))),
                        predictor.predict_us(predictor.demands(_kernel_module(default))))
                except Exception:  # noqa: BLE001 - keep the tuned schedule when either cannot be predicted
                    continue
                if forced or t_default < t_tuned:
                    mod[gv] = default.with_attr("global_symbol", gv.name_hint) if \
                        f.attrs is not None and "global_symbol" in f.attrs else default
                    got["kept_default"][gv.name_hint] = (t_tuned, t_default)
        got["tuned"] = tuned - set(got["kept_default"])
        mod = _dlight()(mod)
        got["scheduled"] = mod
        mod = tvm.transform.Sequential(lower + finalize)(mod)
        got["lowered"] = mod
        return mod

    import contextlib
    with contextlib.ExitStack() as st:
        st.enter_context(target)
        if database is not None:
            st.enter_context(database)
        st.enter_context(tvm.transform.PassContext(opt_level=3, config=BUILD_CONFIG))
        ex = relax.build(prepared, target=target, relax_pipeline=pipeline, tir_pipeline="s_tir")
    return Built(ex, got["scheduled"], got["lowered"], got["tuned"], got["kept_default"])


def export(built: Built, path: str) -> str:
    """Write the library (host code compiled, CUDA kernels as source: the runtime compiles them when it
    loads the library through ``tvm_callback_cuda_compile``)."""
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise CompileError(f"cannot write {path}: no such directory {d}")
    built.executable.export_library(path)
    return path


def written_params(func) -> list:
    """Indices of the PrimFunc's parameters whose buffers its body stores into: its outputs."""
    stored, todo = [], [func.body]
    while todo:
        node = todo.pop()
        if node is None:
            continue
        if type(node).__name__ == "BufferStore":
            stored.append(node.buffer)
        todo.extend(getattr(node, "seq", None) or ())
        todo.extend(getattr(node, f, None) for f in ("body", "block", "init", "then_case", "else_case"))
    return [i for i, p in enumerate(func.params) if any(b.same_as(p) for b in stored)]


def _arg_specs(func):
    """[(shape, dtype)] of the PrimFunc's parameters; None when one is not a buffer of static shape."""
    import tvm
    specs = []
    for p in func.params:
        shape = getattr(p, "shape", None)
        if shape is None or not all(isinstance(x, tvm.tirx.IntImm) for x in shape):
            return None
        specs.append((tuple(int(x) for x in shape), str(p.dtype)))
    return specs


def _load_built(func, target, tmp: str, tag: str):
    """Build one PrimFunc as a library of its own, export it and load it back (CUDA kernels are compiled when
    the library is loaded, through ``tvm_callback_cuda_compile``)."""
    import tvm
    from .measure.build import build_module
    path = os.path.join(tmp, f"{tag}.so")
    build_module(_kernel_module(func), target).export_library(path)
    return tvm.runtime.load_module(path)


def check_kernel(func, ref_func, target, device, seed: int = 0):
    """Rel. L2 error of ``func``'s outputs against ``ref_func``'s (same PrimFunc, scheduled differently), both
    built for ``target`` and run on ``device`` on the same random inputs (outputs start as NaN, so an element
    left unwritten counts; :func:`costpass.measure.ms_gpu.output_error`). None when it cannot be checked
    (dynamic shapes, no output, a dtype numpy cannot fill). Returns (error, tolerance)."""
    import collections
    import tempfile
    from .measure.gpu_run import tolerance
    from .measure.ms_gpu import output_error

    specs = _arg_specs(func)
    outputs = written_params(ref_func)
    if specs is None or not outputs:
        return None, None
    Arg = collections.namedtuple("Arg", "shape dtype")
    with tempfile.TemporaryDirectory() as tmp:
        mod = _load_built(func, target, tmp, "tuned")
        ref = _load_built(ref_func, target, tmp, "reference")
        err = output_error(mod, ref, [Arg(sh, dt) for sh, dt in specs], outputs, device, seed)
    return err, tolerance([[list(sh), dt] for sh, dt in specs], outputs)


def check_kernels(built: Built, prepared, target, device, seed: int = 0, log=None) -> dict:
    """Check every tuned PrimFunc of ``built`` against DLight's schedule of the same PrimFunc of ``prepared``
    (the schedule the library has without tuning) on ``device``. MetaSchedule never looks at outputs, and its
    bests can be wrong (seen: benchmarks/results/tune_bench_256_retimed.md). Returns
    ``{name: {"rel_l2": err, "tol": tol, "ok": bool | None}}`` (ok None: not checkable)."""
    import tvm
    log = log or (lambda msg: None)
    funcs = {gv.name_hint: f for gv, f in built.scheduled.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    out = {}
    for name in sorted(built.tuned):
        with target:
            ref = _dlight()(_deep_copy(tvm.IRModule({"main": prepared[name]})))["main"]
        try:
            err, tol = check_kernel(funcs[name], ref, target, device, seed)
        except Exception as ex:  # noqa: BLE001 - a kernel that cannot run is as unusable as a wrong one
            out[name] = {"rel_l2": None, "tol": None, "ok": False, "error": _first_line(ex)}
            log(f"checked {name}: failed to run ({_first_line(ex)})")
            continue
        ok = None if err is None else bool(err <= tol)
        out[name] = {"rel_l2": err, "tol": tol, "ok": ok}
        log(f"checked {name}: rel. L2 error {err if err is not None else 'n/a'}"
            + ("" if ok is not False else " WRONG"))
    return out


# ------------------------------------------------------------------------------------------------------
# 4. per-kernel diagnosis
# ------------------------------------------------------------------------------------------------------

def launches(lowered) -> list:
    """Names of the PrimFuncs the Relax function ``main`` calls, one entry per call, in execution order."""
    import tvm
    from tvm import relax

    prims = {gv.name_hint for gv, f in lowered.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    main = lowered["main"]
    calls = []

    def visit(e):
        if isinstance(e, relax.Call):
            op = e.op
            if isinstance(op, tvm.ir.GlobalVar) and op.name_hint in prims:
                calls.append(op.name_hint)
            elif isinstance(op, tvm.ir.Op) and op.name.startswith("relax.call_tir") and e.args and \
                    isinstance(e.args[0], tvm.ir.GlobalVar) and e.args[0].name_hint in prims:
                calls.append(e.args[0].name_hint)

    relax.analysis.post_order_visit(main, visit)
    return calls


def _kernel_module(func, name: str = "main"):
    """A scheduled PrimFunc as a module of its own; its kernels are named ``<name>_kernel[_i]`` as in the
    library built from the whole model."""
    import tvm
    return tvm.IRModule({name: func.with_attr("global_symbol", name)})


def stream_offset_us(gpu, predictor_kind: str) -> float:
    """What each learned per-call prediction carries beyond the kernel's own time: the learned model is fitted
    on calls timed by a CUDA-event pair each, which reads ``event_over_kernel_us`` (measured, in the GPU's
    spec: the event time less the profiler's kernel time, the same for kernels of any size) beyond the kernel.
    Calls queued back to back in a stream do not pay it. Not ``event_timer_offset_us``: that is the event
    time of a 1-element kernel, which holds the tiny kernel's own ~1 us too. 0 for the analytical predictor
    and for GPUs with no measured offset."""
    if predictor_kind != "learned":
        return 0.0
    return float(gpu.limits.get("event_over_kernel_us", 0.0))


def stream_gap_us(gpu, predictor_kind: str) -> float:
    """Time between two consecutive kernels of a model call in the Relax VM's stream (``vm_launch_gap_us``,
    measured, in the GPU's spec), added per launch to the learned per-call predictions less their timer
    offset. 0 for the analytical predictor (its launch term covers it) and for GPUs with no measurement."""
    if predictor_kind != "learned":
        return 0.0
    return float(gpu.limits.get("vm_launch_gap_us", 0.0))


def stream_total_us(entries, gi: int, offset_us: float, gap_us: float, tuned_gi: int | None = None) -> tuple:
    """``(us, n)``: the end-to-end time on GPU ``gi`` of kernels queued back to back: each learned per-call
    prediction less ``offset_us`` (:func:`stream_offset_us`), plus ``gap_us`` per launch (:func:`stream_gap_us`).
    With ``tuned_gi``, each tuned kernel's *measured* tuning record (``record_kind == "measured"``, taken on GPU
    ``tuned_gi`` by MetaSchedule's runner) takes the place of its prediction; on another GPU the record is scaled
    by the two GPUs' predictions of that kernel. The runner times launches queued back to back and divides by their
    number, so a record already holds the gap between launches and no event offset: it is taken as it is.
    ``n``: the kernels that took a record."""
    tot, n = 0.0, 0
    for e in entries:
        p = e.per_gpu[gi].predicted_us
        if tuned_gi is not None and e.origin == "tuned" and e.record_kind == "measured" and e.record_us:
            ref = e.per_gpu[tuned_gi].predicted_us
            tot += e.calls * e.record_us * (p / ref if gi != tuned_gi and ref > 0 else 1.0)
            n += 1
        else:
            tot += e.calls * (max(p - offset_us, 0.0) + gap_us * len(e.device_kernels))
    return tot, n


def diagnose_kernels(built: Built, gpus, target, model_path: str | None = None, log=None) -> tuple:
    """([KernelEntry], totals) for every PrimFunc main calls, on each GPU (see the module docstring)."""
    import tvm
    from . import bounds as B
    from . import diagnose as Dg

    log = log or (lambda msg: None)
    calls = launches(built.lowered)
    order = list(dict.fromkeys(calls))
    counts = {n: calls.count(n) for n in order}
    funcs = {gv.name_hint: f for gv, f in built.scheduled.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    preds = [Predictor(g, target, model_path) for g in gpus]
    entries = []
    for name in order:
        mod = _kernel_module(funcs[name], name)
        try:
            ds = preds[0].demands(mod)
        except Exception as err:  # noqa: BLE001 - say which kernel could not be analysed
            raise CompileError(f"kernel {name}: costpass cannot analyse it: {_first_line(err)}") from None
        per = []
        for g, p in zip(gpus, preds):
            bs = [B.analyze(d, g) for d in ds]
            k = max(range(len(bs)), key=lambda i: bs[i].estimate_us)
            kr = Dg.diagnose_kernel(ds[k], [g])
            gd = kr.per_gpu[0]
            predicted = p.predict_us(ds)
            ceiling = sum(b.ceiling_us for b in bs)
            hints = [{"kernel": ds[i].name, "severity": h.severity, "message": h.message, "decision": h.decision}
                     for i in [k] + [j for j in range(len(ds)) if j != k]
                     for h in Dg.diagnose_kernel(ds[i], [g]).per_gpu[0].hints]
            per.append(KernelPrediction(
                gpu=g.name, predicted_us=predicted, predictor=p.kind,
                estimate_us=sum(b.estimate_us for b in bs), ceiling_us=ceiling,
                launch_us=sum(b.launch_us for b in bs), total_us=predicted * counts[name], share=0.0,
                bottleneck=gd.bottleneck, bottleneck_label=gd.bottleneck_label,
                fraction_of_ceiling=ceiling / predicted if predicted > 0 else float("nan"),
                hint=hints[0]["message"] if hints else None, hints=hints))
        entries.append(KernelEntry(
            name=name, calls=counts[name], first_call=calls.index(name),
            origin="tuned" if name in built.tuned else (
                "default-wrong" if name in built.wrong else
                "default-faster" if name in built.kept_default else "default"),
            device_kernels=[d.name for d in ds],
            record_us=None, record_kind=None, per_gpu=per))
        log(f"analysed {name}")
    totals = {}
    for i, g in enumerate(gpus):
        tot = sum(e.per_gpu[i].total_us for e in entries)
        off, gap = stream_offset_us(g, preds[i].kind), stream_gap_us(g, preds[i].kind)
        for e in entries:
            e.per_gpu[i].share = e.per_gpu[i].total_us / tot if tot > 0 else 0.0
        totals[g.name] = {
            "predicted_us": tot,
            "estimate_us": sum(e.per_gpu[i].estimate_us * e.calls for e in entries),
            "ceiling_us": sum(e.per_gpu[i].ceiling_us * e.calls for e in entries),
            "launch_us": sum(e.per_gpu[i].launch_us * e.calls for e in entries),
            "launches": sum(len(e.device_kernels) * e.calls for e in entries),
            "stream_us": stream_total_us(entries, i, off, gap)[0],
            "timer_offset_us": off, "stream_gap_us": gap,
            "calls": len(calls), "kernels": len(entries), "predictor": preds[i].kind,
            "predictor_problem": preds[i].problem}
    return entries, totals


def _best_record_us(db, task_mod, target, name) -> float | None:
    rec = db.query_tuning_record(task_mod, target, name)
    if rec is None:
        return None
    s = _secs(rec)
    return s * 1e6 if s is not None else None


# ------------------------------------------------------------------------------------------------------
# The whole thing
# ------------------------------------------------------------------------------------------------------

def _checked(built: Built, prepared, target, db, predictor, gpu, log) -> tuple:
    """(built, checks): the tuned kernels checked on this machine's GPU; rebuilt with DLight's schedule for
    the wrong ones."""
    import tvm
    from .measure import ms_gpu
    if not has_cuda_gpu():
        raise CompileError("checking outputs needs a CUDA GPU on this machine and none was found "
                           "(--no-check-outputs builds without checking)")
    os.environ[ms_gpu.ARCH_ENV] = gpu.arch
    ms_gpu.setup_cuda_compile()
    log(f"checking the outputs of {len(built.tuned)} tuned kernels against DLight's schedules")
    checks = check_kernels(built, prepared, target, tvm.cuda(0), log=log)
    wrong = {n: c["rel_l2"] for n, c in checks.items() if c["ok"] is False}
    if wrong:
        built = build(prepared, target, db, predictor, use_default=tuple(wrong))
        for n in wrong:
            built.kept_default.pop(n, None)
        built.tuned -= set(wrong)
        built.wrong = wrong
    return built, checks


def compile_model(model: Model | str, gpus="h100", *, runner: str = "none", trials: int = 64,
                  work_dir: str | None = None, output: str | None = None, options: TuneOptions | None = None,
                  model_path: str | None = None, keep_faster_default: bool = True, check_outputs: bool | None = None,
                  log=None) -> CompileReport:
    """Tune (``trials`` > 0), build and diagnose ``model`` for ``gpus`` (the first one is tuned for; the
    others are predicted with the same schedules). ``output``: write the library there and the report next
    to it (``<output>.json``, which ``costpass/measure/run_relax.py`` reads). ``check_outputs`` (default: when
    ``runner`` is "local", i.e. a GPU is here): run every tuned kernel and DLight's schedule of it on the GPU on
    the same inputs and use DLight's wherever the tuned one's output differs (:func:`check_kernels`)."""
    if isinstance(model, str):
        model = load_model(model)
    gpus = load_gpus(gpus)
    if trials < 0:
        raise CompileError(f"--trials must be >= 0, not {trials}")
    if trials > 0 and not work_dir:
        raise CompileError("tuning needs a work dir for its database (--work-dir)")
    if work_dir and os.path.exists(work_dir) and not os.path.isdir(work_dir):
        raise CompileError(f"--work-dir {work_dir}: not a directory")
    if output:
        d = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(d):
            raise CompileError(f"cannot write {output}: no such directory {d}")
    log = log or (lambda msg: None)
    g0 = gpus[0]
    target = target_for(g0)
    notes = []
    t0 = time.perf_counter()
    prepared = prepare(model.mod, target)
    tasks = extract_tasks(prepared, target)
    summary = {"tasks": len(tasks), "trials_run": 0, "records": 0, "failed": 0, "wall_s": 0.0}
    db = None
    used_runner = "untuned"
    if trials > 0:
        summary = tune(prepared, target, work_dir, trials=trials, gpu=g0, runner=runner, options=options, log=log)
        db = open_database(work_dir)
    elif work_dir and os.path.exists(os.path.join(work_dir, "database_tuning_record.json")):
        db = open_database(work_dir)
        recs = [r for v in _records_by_task(db, tasks).values() for r in v]
        summary["records"], summary["failed"] = len(recs), sum(1 for r in recs if _secs(r) is None)
        try:
            with open(os.path.join(work_dir, MANIFEST)) as f:
                used_runner = json.load(f).get("runner", "unknown")
        except (OSError, ValueError):
            used_runner = "unknown"
    log("building")
    predictor = Predictor(g0, target, model_path) if (db is not None and keep_faster_default) else None
    built = build(prepared, target, db, predictor)
    checks = {}
    if (runner == "local" if check_outputs is None else check_outputs) and built.tuned:
        built, checks = _checked(built, prepared, target, db, predictor, g0, log)
        if built.wrong:
            notes.append(f"default!: the tuned schedule of {len(built.wrong)} kernels gave wrong output on this GPU "
                         f"({', '.join(built.wrong)}): DLight's schedule is used instead")
    lib = export(built, output) if output else None
    entries, totals = diagnose_kernels(built, gpus, target, model_path, log)
    if db is not None:
        by_name = {t.task_name: t.dispatched[0] for t in tasks}
        for e in entries:
            if e.origin in ("tuned", "default-faster", "default-wrong") and e.name in by_name:
                e.record_us = _best_record_us(db, by_name[e.name], target, e.name)
                e.record_kind = ("measured" if runner == "local" else "predicted") if e.record_us else None
    for i, g in enumerate(gpus):
        t = totals[g.name]
        t["anchored_us"], t["anchored_kernels"] = stream_total_us(entries, i, t["timer_offset_us"],
                                                                  t["stream_gap_us"], tuned_gi=0)
    n_default = sum(1 for e in entries if e.origin == "default")
    if n_default:
        notes.append(f"{n_default} of {len(entries)} kernels have no tuning record and use DLight's default "
                     "schedule (more --trials tunes them)")
    kept = [e.name for e in entries if e.origin == "default-faster"]
    if kept:
        notes.append(f"default*: DLight's schedule kept for {len(kept)} kernels whose best tuning record is "
                     f"predicted slower on {g0.name} ({', '.join(kept)})")
    for g in gpus:
        if totals[g.name].get("predictor_problem"):
            notes.append(f"{g.name}: predictions are the analytical estimate: {totals[g.name]['predictor_problem']}")
    if runner == "none" and trials > 0:
        notes.append("zero-shot: no kernel was measured; the tuning records hold costpass predictions")
    summary["total_wall_s"] = time.perf_counter() - t0
    report = CompileReport(
        model=model.name, description=model.description, target=str(target.attrs.get("arch", "")) or "cuda",
        gpus=[g.name for g in gpus], tuned_for=g0.name, runner=runner if trials > 0 else used_runner,
        trials=int(trials), tuning=summary, library=os.path.abspath(lib) if lib else None, kernels=entries,
        totals=totals, arg_specs=model.arg_specs, meta=dict(model.meta, work_dir=work_dir), notes=notes,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), checks=checks)
    if output:
        with open(output + ".json", "w") as f:
            json.dump(report.to_dict(), f, indent=1)
    return report


def repredict(report: dict, work_dir: str | None = None, gpus=None, model_path: str | None = None,
              log=None) -> tuple:
    """Predict again a library ``costpass compile`` built, from its report (``LIB.so.json``) and tuning
    database, with this costpass (its demand pass and shipped models): the same model is prepared, the
    same schedules are applied (the database's best records; DLight's where the report says ``default``
    or ``default-faster``), and every kernel is diagnosed on ``gpus`` (default: the report's). Returns
    ``(entries, totals, built)``: ``entries`` and ``totals`` as :func:`diagnose_kernels`, ``built`` the
    rebuilt library (its CUDA source should equal the original's). Needs the built-in model the report
    names."""
    from .cli import preload_tensor_intrinsics

    preload_tensor_intrinsics()        # the database's traces name tensor intrinsics
    meta = report.get("meta", {})
    if meta.get("kind") != "llama_block":
        raise CompileError("repredict: only reports of the built-in llama_block model can be rebuilt")
    shp = meta["shape"]
    model = load_model("llama_block", config=meta["config"], shape=shp["name"], batch=shp.get("batch", 1),
                       seq=shp.get("seq") if shp["name"] == "prefill" else None,
                       kv=shp.get("kv") if shp["name"] == "decode" else None)
    gpus = load_gpus(gpus or report["gpus"])
    target = target_for(load_gpus(report.get("tuned_for") or gpus[0].name)[0])
    prepared = prepare(model.mod, target)
    work_dir = work_dir or meta.get("work_dir")
    db = open_database(work_dir) if work_dir and os.path.exists(
        os.path.join(work_dir, "database_tuning_record.json")) else None
    wanted = {k["name"]: k["origin"] for k in report["kernels"]}
    built = build(prepared, target, db, None, use_default=frozenset(n for n, o in wanted.items() if o != "tuned"))
    got = {n: ("tuned" if n in built.tuned else "default") for n in wanted}
    differ = [n for n, o in wanted.items() if (o == "tuned") != (got[n] == "tuned")]
    if differ:
        raise CompileError(f"repredict: the database does not give the report's schedules for {', '.join(differ)}")
    return (*diagnose_kernels(built, gpus, target, model_path, log), built)


# ------------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------------

def _us(x) -> str:
    from .diagnose import format_us

    return format_us(x, unit="us")


def render_json(report: CompileReport) -> str:
    return json.dumps(report.to_dict(), indent=2, allow_nan=False)


def render_text(report: CompileReport, width: int = 120, hints: bool = True) -> str:
    """Plain-text table: one row per kernel (call order), per GPU its predicted time per call, share of the
    model's time, bottleneck and fraction of its ceiling; then the first hint of each kernel."""
    from . import diagnose as Dg
    r = report
    t = r.tuning
    if r.runner == "untuned":
        how = "not tuned: DLight's default schedules"
    else:
        how = (f"tuned for {r.tuned_for} with runner {r.runner}, {t.get('records', 0)} records "
               f"({t.get('trials_run', 0)} new, {t.get('failed', 0)} failed) over {t.get('tasks', 0)} tasks")
    out = [f"costpass compile: {r.model} -- {r.description}", f"target cuda {r.target}; {how}"]
    if r.library:
        out.append(f"library: {r.library}")
    head = ["#", "kernel", "calls", "sched"]
    for g in r.gpus:
        head += [f"{g} /call", "share", "bound", "of ceil"]
    rows = []
    for i, e in enumerate(r.kernels, 1):
        row = [str(i), e.name, str(e.calls), {"default-faster": "default*", "default-wrong": "default!"}.get(e.origin, e.origin)]
        for p in e.per_gpu:
            row += [_us(p.predicted_us), f"{p.share:.1%}", Dg.SHORT_LABEL.get(p.bottleneck, p.bottleneck),
                    f"{p.fraction_of_ceiling:.0%}" if math.isfinite(p.fraction_of_ceiling) else "-"]
        rows.append(row)
    tot = ["", "total", str(sum(e.calls for e in r.kernels)), ""]
    for g in r.gpus:
        t = r.totals[g]
        tot += [_us(t["predicted_us"]), "100%", "", f"{t['ceiling_us'] / t['predicted_us']:.0%}"
                if t["predicted_us"] else "-"]
    rows.append(tot)
    ws = [max(len(h), *(len(row[j]) for row in rows)) for j, h in enumerate(head)]
    name_w = max(12, min(ws[1], width - sum(w + 2 for j, w in enumerate(ws) if j != 1)))
    ws[1] = name_w
    right = {0, 2} | {4 + 4 * k + j for k in range(len(r.gpus)) for j in (0, 1, 3)}

    def fmt(row):
        cells = []
        for j, (c, w) in enumerate(zip(row, ws)):
            c = c if len(c) <= w else c[:w - 1] + "~"
            cells.append(c.rjust(w) if j in right else c.ljust(w))
        return "  ".join(cells).rstrip()

    out += ["", fmt(head), fmt(["-" * w for w in ws])]
    out += [fmt(row) for row in rows[:-1]]
    out += [fmt(["-" * w for w in ws]), fmt(rows[-1])]
    for g in r.gpus:
        t = r.totals[g]
        out.append(f"{g}: predicted end to end {_us(t['predicted_us'])} for {t['calls']} calls ({t['launches']} kernel "
                   f"launches, {_us(t['launch_us'])} of it launch overhead in the analytical model); "
                   f"analytical estimate {_us(t['estimate_us'])}, ceiling {_us(t['ceiling_us'])}; "
                   f"predictor: {t['predictor']}")
        if t.get("timer_offset_us"):
            out.append(f"{g}: in a stream {_us(t['stream_us'])} (each call's prediction less the "
                       f"{t['timer_offset_us']:.2f} us CUDA-event offset its training measurements carry"
                       + (f", plus {t['stream_gap_us']:.2f} us between kernels" if t.get("stream_gap_us") else "")
                       + ")")
        if t.get("anchored_kernels"):
            out.append(f"{g}: in a stream with the tuning measurements {_us(t['anchored_us'])} (the "
                       f"{t['anchored_kernels']} tuned kernels at their measured records"
                       + (f", scaled from {r.tuned_for} by the predictions" if g != r.tuned_for else "") + ")")
    if len(r.gpus) > 1:
        base = r.totals[r.gpus[0]]["predicted_us"]
        out.append("speed-up vs " + r.gpus[0] + ": " + ", ".join(
            f"{g} {base / r.totals[g]['predicted_us']:.2f}x" for g in r.gpus[1:] if r.totals[g]["predicted_us"]))
    recs = [e for e in r.kernels if e.record_us]
    if recs:
        kind = recs[0].record_kind
        out.append(f"tuning records ({kind} on {r.tuned_for}, per call): " + ", ".join(
            f"{e.name} {_us(e.record_us)}" for e in recs))
    if hints:
        out += ["", f"hints ({r.gpus[0]}, first per kernel):"]
        for i, e in enumerate(r.kernels, 1):
            p = e.per_gpu[0]
            if p.hint:
                out.append(f"  {i:>2} {e.name}: {p.hint}")
    for n in r.notes:
        out.append(f"note: {n}")
    return "\n".join(out) + "\n"


def plot(report: CompileReport, path: str) -> str:
    """Horizontal bars: each kernel's predicted time (x calls) per GPU, coloured by bottleneck."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from . import diagnose as Dg

    ks = report.kernels
    n, ng = len(ks), len(report.gpus)
    fig, ax = plt.subplots(figsize=(10, 0.42 * n * max(1, ng) + 1.6), dpi=110)
    pipes = sorted({p.bottleneck for e in ks for p in e.per_gpu})
    cmap = plt.get_cmap("tab10")
    color = {p: cmap(i % 10) for i, p in enumerate(pipes)}
    h = 0.8 / ng
    y = np.arange(n)
    for gi, g in enumerate(report.gpus):
        vals = [e.per_gpu[gi].total_us for e in ks]
        pos = y + (gi - (ng - 1) / 2) * h
        ax.barh(pos, vals, height=h * 0.9, color=[color[e.per_gpu[gi].bottleneck] for e in ks],
                alpha=1.0 if gi == 0 else 0.55, edgecolor="k", linewidth=0.3)
        for v, yy, e in zip(vals, pos, ks):
            ax.text(v, yy, f" {_us(v)} {e.per_gpu[gi].share:.0%}" + (f" {g}" if ng > 1 else ""),
                    va="center", fontsize=7)
    ax.set_yticks(y, [f"{e.name} x{e.calls}" if e.calls > 1 else e.name for e in ks], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("predicted time per model call (µs)")
    tot = ", ".join(f"{g} {_us(report.totals[g]['predicted_us'])}" for g in report.gpus)
    ax.set_title(f"{report.model}: predicted {tot}", fontsize=10)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=color[p], label=Dg.SHORT_LABEL.get(p, p)) for p in pipes],
              title="bottleneck", fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
