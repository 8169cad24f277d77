"""Tuning a workload with MetaSchedule and a chosen cost model: the core behind ``costpass tune`` and
``benchmarks/tune_bench.py``.

Three cost models run through the same search (MetaSchedule's evolutionary search, same design space,
same builder and runner, same seed): ``costpass`` (:func:`costpass.CostModel`, starting from a shipped
or given model and updating online), ``xgb`` (TVM's ``XGBModel`` with ``PerStoreFeature``, starting
empty, as ``ms.tune_tir`` does by default) and ``random`` (TVM's ``RandomModel``).

Zero-shot (``runner="model"``): no kernel is measured; :class:`ModelBuilder` hands the scheduled module
to :class:`ModelRunner`, which answers with costpass's predicted time. The search then climbs the
model's own belief and its best record is the schedule costpass picks with no measurement at all.

The history of a run is read back from its MetaSchedule database (trials in the order they were
committed), so an interrupted run resumes from its ``work_dir`` and what it measured is never lost; on resume
the trials already measured are fed to the fresh cost model first (:func:`replay_database`).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field

logger = logging.getLogger("costpass.tune")

COST_MODELS = ("costpass", "xgb", "random")
FAILED_SECS = 1e9  # MetaSchedule records failed builds/runs with run_secs >= 1e9 (1e10 in practice)


@dataclass
class TuneConfig:
    workload: str
    work_dir: str
    gpu: str = "h100"
    cost_model: str = "costpass"
    trials: int = 64
    trials_per_iter: int = 32
    seed: int = 0
    model_path: str | None = None   # costpass model file; None: the shipped model of ``gpu``
    num_cores: int | None = None    # MetaSchedule's search threads (None: all physical cores)
    population: int = 512           # evolutionary search population (MetaSchedule's default)
    eps_greedy: float = 0.05        # share of each batch the search picks at random (MetaSchedule's default)


@dataclass
class TuneResult:
    workload: str
    gpu: str
    cost_model: str
    seed: int
    trials: int
    wall_s: float
    history_ms: list = field(default_factory=list)  # per trial, in order; None where build/run failed
    best_ms: float | None = None
    best_trace: str | None = None                     # MetaSchedule trace JSON of the best record
    failed: int = 0
    model_path: str | None = None

    def best_after(self, n: int) -> float | None:
        ok = [t for t in self.history_ms[:n] if t is not None]
        return min(ok) if ok else None

    def to_json(self) -> dict:
        return asdict(self)


def make_cost_model(kind: str, gpu: str = "h100", model_path: str | None = None, seed: int = 0,
                    num_cores: int | None = None):
    """A MetaSchedule cost model by name: ``costpass``, ``xgb`` or ``random``. ``num_cores``: the search's threads;
    XGBModel trains with as many, as MetaSchedule's own ``tune`` sets it up (``CostModel.create(...,
    num_tuning_cores=num_cores)``). Left at None, XGBoost takes every physical core, which runs sharing the machine
    fight over: on 2026-11-24, 12 runs on 16 cores, one XGBModel update took ~60 s."""
    from tvm.s_tir import meta_schedule as ms

    if kind == "costpass":
        from .metaschedule import CostModel

        return CostModel(gpu=gpu, model_path=model_path)
    if kind == "xgb":
        return ms.cost_model.XGBModel(extractor=ms.feature_extractor.PerStoreFeature(), adaptive_training=True,
                                      num_tuning_cores=num_cores)
    if kind == "random":
        return ms.cost_model.RandomModel(seed=seed)
    raise ValueError(f"unknown cost model {kind!r}; known: {', '.join(COST_MODELS)}")


def _record_ms(rec) -> float | None:
    return _secs_ms(rec.run_secs)


def _secs_ms(secs) -> float | None:
    secs = sorted(float(x) for x in (secs or []))
    if not secs or secs[0] >= FAILED_SECS:
        return None
    return 1e3 * secs[len(secs) // 2]


def history(work_dir: str) -> list:
    """Per-trial milliseconds (median of the runner's repeats; None: failed) in the order the trials were
    committed, read from the JSON database's record file, which MetaSchedule appends to. (The database
    object's ``get_all_tuning_records`` returns them sorted by time, not in search order.)"""
    return [ms_ for _trace, ms_ in record_rows(work_dir)]


def record_rows(work_dir: str) -> list:
    """(trace as stored, milliseconds or None) per record of a work_dir's database, in commit order."""
    path = os.path.join(work_dir, "database_tuning_record.json")
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                _workload_idx, (trace, run_secs, *_rest) = json.loads(line)
                out.append((trace, _secs_ms(run_secs)))
    return out


def best_record(database):
    """The fastest successful record of a MetaSchedule database, or None."""
    recs = [r for r in database.get_all_tuning_records() if _record_ms(r) is not None]
    return min(recs, key=_record_ms) if recs else None


def _json_database(work_dir: str):
    from tvm.s_tir import meta_schedule as ms

    os.makedirs(work_dir, exist_ok=True)
    return ms.database.JSONDatabase(path_workload=os.path.join(work_dir, "database_workload.json"),
                                    path_tuning_record=os.path.join(work_dir, "database_tuning_record.json"),
                                    allow_missing=True)


def database_in_order(work_dir: str) -> list:
    """The tuning records of a work_dir's JSON database in the order they were committed (the record file's
    order; the database object sorts them by time)."""
    from tvm.s_tir import meta_schedule as ms

    wpath = os.path.join(work_dir, "database_workload.json")
    rpath = os.path.join(work_dir, "database_tuning_record.json")
    if not (os.path.exists(wpath) and os.path.exists(rpath)):
        return []
    with open(wpath) as f:
        workloads = [ms.database.Workload.from_json(json.loads(line)) for line in f if line.strip()]
    with open(rpath) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [ms.database.TuningRecord.from_json(rec, workloads[i]) for i, rec in rows]


def replay_database(cost_model, work_dir: str, mod, target, batch: int = 32, records: list | None = None) -> int:
    """Feed the trials already in ``work_dir``'s database to a fresh ``cost_model``, ``batch`` at a time in
    commit order, as the search fed them when it measured them. MetaSchedule does not do this when a run
    resumes, so without it a resumed XGBModel would start untrained while costpass keeps its pre-trained
    model. Failed trials go in as failed runner results (as the runner reported them). ``records``: the work_dir's
    :func:`database_in_order`, when the caller has read them already. Returns the count."""
    from tvm.s_tir import meta_schedule as ms

    recs = database_in_order(work_dir) if records is None else records
    if not recs:
        return 0
    ctx = ms.TuneContext(mod=mod, target=target, task_name="main")
    for i in range(0, len(recs), batch):
        chunk = recs[i:i + batch]
        results = [ms.runner.RunnerResult(None, "failed (replayed from the database)") if _record_ms(r) is None
                   else ms.runner.RunnerResult([float(x) for x in r.run_secs], None) for r in chunk]
        cost_model.update(ctx, [r.as_measure_candidate() for r in chunk], results)
    return len(recs)


def measured_modules(records) -> set:
    """Structural hashes of the scheduled modules of tuning records (as MetaSchedule's search keys the schedules it
    measured: the database's module equality, structural by default)."""
    from tvm_ffi import structural_hash

    return {structural_hash(r.as_measure_candidate().sch.mod) for r in records}


def _make_skip_measured():
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import RunnerResult
    from tvm.s_tir.meta_schedule.search_strategy import PySearchStrategy

    @derived_object
    class SkipMeasured(PySearchStrategy):
        """A search strategy that never hands the runner a schedule the database already holds.

        MetaSchedule's ``EvolutionarySearch`` remembers what it measured in memory only (its source: "TODO: add
        records from the database to avoid re-measuring"). A resumed run starts with that set empty, and its
        cost model, fed the database, steers the search straight back to the best schedules already measured:
        resumed five or six times, costpass's 256-trial softmax runs of 2026-11-24 measured 99 and 104 distinct
        schedules in 256 trials (``benchmarks/results/tune_bench_256_tvm.md``). This wraps the inner
        search: candidates whose module is in ``measured`` are taken out of each batch (the inner search is told
        they ran, so it counts them and remembers them), and only new ones count as trials. The inner search
        may propose each known module once, so it gets ``max_trials + len(measured)`` to draw from."""

        def __init__(self, inner, measured: set, stats: dict | None = None):
            self.inner, self.measured = inner, set(measured)
            self.left = 0
            self.stats = {"skipped": 0} if stats is None else stats  # shared with clones (MetaSchedule tunes a clone)

        def _initialize_with_tune_context(self, context) -> None:
            self.inner._initialize_with_tune_context(context)

        def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None, cost_model=None):
            self.left = max_trials
            self.inner.pre_tuning(max_trials + len(self.measured), num_trials_per_iter, design_spaces, database,
                                  cost_model)

        def post_tuning(self) -> None:
            self.inner.post_tuning()

        def generate_measure_candidates(self):
            from tvm_ffi import structural_hash

            while self.left > 0:
                cands = self.inner.generate_measure_candidates()
                if cands is None:
                    return None
                new, old = [], []
                for c in cands:
                    (old if structural_hash(c.sch.mod) in self.measured else new).append(c)
                new, extra = new[:self.left], new[self.left:]
                done = old + extra  # not run: the inner search still counts them
                if done:
                    skip = RunnerResult(None, "not run: in the database already, or over the budget")
                    self.inner.notify_runner_results(done, [skip] * len(done))
                self.stats["skipped"] += len(old)
                if new:
                    self.left -= len(new)
                    return new
            return None

        def notify_runner_results(self, measure_candidates, results) -> None:
            self.inner.notify_runner_results(measure_candidates, results)

        def clone(self):
            return SkipMeasured(self.inner.clone(), self.measured, self.stats)

    return SkipMeasured


def skip_measured(inner, records):
    """``inner`` (a MetaSchedule search strategy) wrapped so that a resumed run measures none of ``records``'
    schedules again (:func:`_make_skip_measured`). One wrapper can serve several tasks: their modules differ."""
    return _make_skip_measured()(inner, measured_modules(records))


def tune(cfg: TuneConfig, builder, runner, target=None) -> TuneResult:
    """Tune ``cfg.workload`` for up to ``cfg.trials`` trials in total (trials already in ``cfg.work_dir``'s
    database count: a second call resumes). ``builder``/``runner``: MetaSchedule objects (see
    :func:`costpass.measure.build.ms_builder`, :mod:`costpass.measure.ms_gpu`, :class:`ModelRunner`)."""
    from tvm.s_tir import meta_schedule as ms

    from schedules import workloads as W

    from .cli import preload_tensor_intrinsics
    from .measure.build import cuda_target

    preload_tensor_intrinsics()
    wl = W.get(cfg.workload)
    target = target or cuda_target()
    db = _json_database(cfg.work_dir)
    done = len(history(cfg.work_dir))
    left = max(0, cfg.trials - done)
    t0 = time.time()
    if left:
        strategy = ms.search_strategy.EvolutionarySearch(population_size=cfg.population,
                                                          init_min_unmeasured=min(50, cfg.population // 2),
                                                          eps_greedy=cfg.eps_greedy)
        cost_model = make_cost_model(cfg.cost_model, cfg.gpu, cfg.model_path, cfg.seed, cfg.num_cores)
        if done:  # resuming: the cost model learns what the earlier calls measured, as it would have,
            # and the search skips what the database holds (MetaSchedule's search would measure it again)
            recs = database_in_order(cfg.work_dir)
            n = replay_database(cost_model, cfg.work_dir, wl.mod(), target, cfg.trials_per_iter, records=recs)
            strategy = skip_measured(strategy, recs)
            logger.info("%s/%s: replayed %d trials from the database into the cost model; the search skips "
                        "their schedules", cfg.workload, cfg.cost_model, n)
        # max_trials_global counts this call's trials only (not those already in the database)
        ms.tune_tir(mod=wl.mod(), target=target, work_dir=cfg.work_dir, max_trials_global=left,
                    num_trials_per_iter=min(cfg.trials_per_iter, left), builder=builder, runner=runner,
                    database=db, cost_model=cost_model,
                    strategy=strategy, num_tuning_cores=cfg.num_cores or "physical", seed=cfg.seed)
        if done:
            logger.info("%s/%s: %d proposals were in the database already and were not run again", cfg.workload,
                        cfg.cost_model, strategy.stats["skipped"])
    hist, best = history(cfg.work_dir), best_record(db)
    res = TuneResult(cfg.workload, cfg.gpu, cfg.cost_model, cfg.seed, len(hist), time.time() - t0, hist,
                     failed=sum(t is None for t in hist), model_path=cfg.model_path)
    if best is not None:
        from .measure.candidates import trace_to_json

        res.best_ms = _record_ms(best)
        res.best_trace = json.dumps(trace_to_json(best.trace))
    logger.info("%s/%s seed %d: %d trials (%d new), best %s ms, %.0f s", cfg.workload, cfg.cost_model,
                cfg.seed, len(hist), left, res.best_ms, res.wall_s)
    return res


# ---------------------------------------------------------------------------------------------------
# Zero-shot: the model stands in for the GPU
# ---------------------------------------------------------------------------------------------------

def _make_model_builder_runner():
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult

    @derived_object
    class ModelBuilder(PyBuilder):
        """Writes each scheduled module as TVMScript (the 'artifact'), one folder each (MetaSchedule's
        default callback removes an artifact's folder once it ran); nothing is compiled."""

        def build(self, build_inputs):
            out = []
            for inp in build_inputs:
                path = os.path.join(tempfile.mkdtemp(prefix="costpass_zero_shot_"), "mod.py")
                with open(path, "w") as f:
                    f.write(inp.mod.script())
                out.append(BuilderResult(path, None))
            return out

    @derived_object
    class _Done(PyRunnerFuture):
        def __init__(self, secs, err=None):
            self.secs, self.err = secs, err

        def done(self):
            return True

        def result(self):
            return RunnerResult(self.secs, self.err)

    @derived_object
    class ModelRunner(PyRunner):
        """Answers every 'measurement' with costpass's predicted time of the module (seconds)."""

        def __init__(self, gpu: str = "h100", model_path: str | None = None):
            self.gpu, self.model_path = gpu, model_path

        def run(self, runner_inputs):
            import tvm

            from .metaschedule import predict

            futs = []
            for inp in runner_inputs:
                try:
                    with open(inp.artifact_path) as f:
                        mod = tvm.script.from_source(f.read())
                    ms_ = predict(mod, self.gpu, self.model_path)
                    futs.append(_Done([ms_ / 1e3]))
                except Exception as e:  # noqa: BLE001 - recorded as a failed trial, search goes on
                    futs.append(_Done(None, f"costpass zero-shot: {type(e).__name__}: {e}"))
            return futs

    return ModelBuilder, ModelRunner


def buildable_best(work_dir: str, workload: str, k: int = 8, target=None):
    """(milliseconds, trace JSON) of the fastest record of a database whose module TVM can build for CUDA,
    trying the ``k`` fastest in order; None if none builds. A zero-shot search never compiles, so its best
    record may be a schedule TVM's code generator refuses."""
    from schedules import workloads as W

    from .measure.build import build_module, cuda_target
    from .measure.candidates import apply_trace, trace_to_json

    db = _json_database(work_dir)
    recs = sorted((r for r in db.get_all_tuning_records() if _record_ms(r) is not None), key=_record_ms)[:k]
    for r in recs:
        tj = trace_to_json(r.trace)
        try:
            build_module(apply_trace(W.get(workload), tj).mod, target or cuda_target())
        except Exception as e:  # noqa: BLE001 - try the next one
            logger.info("zero-shot candidate of %s does not build: %s", workload, str(e).splitlines()[-1][:200])
            continue
        return _record_ms(r), json.dumps(tj)
    return None


def model_builder_runner(gpu: str = "h100", model_path: str | None = None):
    """(builder, runner) for zero-shot search: no compilation, no GPU, costpass's prediction as the time."""
    from .cli import preload_tensor_intrinsics

    preload_tensor_intrinsics()
    B, R = _make_model_builder_runner()
    return B(), R(gpu, model_path)
