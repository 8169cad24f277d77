"""Schedule candidates for a workload, drawn from MetaSchedule's default CUDA design space.

* :func:`random_candidates`: a design space (sketch) with its sampling decisions thrown away, replayed with
  a fresh seed, post-processed (the same postprocs MetaSchedule runs, ``VerifyGPUCode`` included). This is
  MetaSchedule's own "random init population" step, so it covers the whole space, the bad end included.
* :func:`evolved_candidates`: MetaSchedule's ``EvolutionarySearch`` run programmatically with a given cost
  model and no runner: the cost model's own prediction is fed back as the "measured" run time, so the
  search walks towards what that model thinks is fast. With an informative model (the project's analytical
  model) this represents the good end of the distribution; with ``RandomModel`` (the default when nothing
  is passed) it is mutation-based random sampling, which mainly adds neighbours of existing candidates.
* :func:`dlight_candidates`: DLight's default GPU schedule of the workload (the rules and order of
  ``costpass.compile._dlight``, the first rule that applies), as a trace that :func:`apply_trace` replays.
* :func:`apply_trace`: re-creates the scheduled module from a saved trace (full trace, postprocs included).

A candidate's trace is stored as JSON (``trace.as_json()`` unpacked to plain Python lists / ints / strs),
and its id is the first 16 hex digits of sha256(workload name + "\\n" + canonical trace JSON).
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass, field, asdict

import tvm
import tvm_ffi
from tvm import s_tir
from tvm.s_tir import meta_schedule as ms
import tvm.s_tir.tensor_intrin  # noqa: F401  (registers wmma/mma intrinsics that traces refer to)
from tvm.s_tir.meta_schedule.utils import _json_de_tvm

from schedules import workloads as W

_LOG = logging.getLogger(__name__)


@dataclass
class Candidate:
    id: str
    workload: str
    origin: str              # "random" | "evolved" | "manual" | "dlight"
    seed: int
    trace_json: list
    space_index: int
    extra: dict = field(default_factory=dict)   # e.g. the cost model's score for evolved ones

    def to_dict(self) -> dict:
        return asdict(self)


def _plain(obj):
    """Unpack TVM containers / IntImm / FloatImm (as returned by ``Trace.as_json``) into plain JSON."""
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, (list, tuple, tvm.ir.Array)):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return _plain(_json_de_tvm(obj))


def trace_to_json(trace) -> list:
    return _plain(trace.as_json())


def canonical_json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def candidate_id(workload: str, trace_json) -> str:
    return hashlib.sha256((workload + "\n" + canonical_json(trace_json)).encode()).hexdigest()[:16]


def _workload(workload):
    return W.get(workload) if isinstance(workload, str) else workload


def tune_context(mod, target, seed: int, task_name: str = "main", search_strategy="evolutionary"):
    return ms.TuneContext(mod=mod, target=target, space_generator="post-order-apply",
                          search_strategy=search_strategy, task_name=task_name, rand_state=seed, num_threads=1)


def design_spaces(ctx):
    return list(ctx.space_generator.generate_design_space(ctx.mod))


def _sample(mod, space, postprocs, seed):
    """One random sample of a design space; returns the post-processed Schedule or None."""
    tr = s_tir.Trace(space.trace.simplified(remove_postproc=True).insts, {})
    sch = s_tir.Schedule(mod, seed=seed)
    try:
        tr.apply_to_schedule(sch, remove_postproc=True)
        sch.enter_postproc()
        if all(p.apply(sch) for p in postprocs):
            return sch
    except Exception:  # noqa: BLE001 - an invalid sample, e.g. a failed tensorize
        return None
    return None


def random_candidates(workload, target, n: int, seed: int = 1, max_tries: int | None = None,
                      max_seconds: float | None = None, exclude=(), exclude_mods=(),
                      max_dup_streak: int = 300) -> list[Candidate]:
    """Up to ``n`` distinct valid random candidates (distinct trace *and* distinct scheduled module).

    Gives up after ``max_tries`` samples (default ``max(200, 200 * n)``: a SIMT GEMM sample passes
    ``VerifyGPUCode`` only 1-5% of the time), after ``max_seconds``, or once ``max_dup_streak`` valid samples
    in a row were duplicates (the space is exhausted). ``exclude`` / ``exclude_mods`` are candidate ids /
    module structural hashes already held (e.g. from an earlier run) that are not returned again.
    """
    wl = _workload(workload)
    mod = wl.mod()
    ctx = tune_context(mod, target, seed, wl.name)
    spaces = design_spaces(ctx)
    postprocs = list(ctx.space_generator.postprocs)
    rng = random.Random(f"{wl.name}:{seed}")
    max_tries = max_tries or max(200, 200 * n)
    out, seen_ids, seen_mods = [], set(exclude), set(exclude_mods)
    t0 = time.time()
    dup_streak = 0
    for _ in range(max_tries):
        if len(out) >= n or (max_seconds and time.time() - t0 > max_seconds) or dup_streak >= max_dup_streak:
            break
        si = rng.randrange(len(spaces))
        s = rng.randrange(1, 2 ** 31 - 1)
        sch = _sample(mod, spaces[si], postprocs, s)
        if sch is None:
            continue
        tj = trace_to_json(sch.trace)
        cid = candidate_id(wl.name, tj)
        h = tvm_ffi.structural_hash(sch.mod)
        if cid in seen_ids or h in seen_mods:
            dup_streak += 1
            continue
        dup_streak = 0
        seen_ids.add(cid)
        seen_mods.add(h)
        out.append(Candidate(cid, wl.name, "random", s, tj, si))
    return out


def evolved_candidates(workload, target, n: int, seed: int = 1, cost_model=None, rounds: int | None = None,
                       per_round: int = 16, population_size: int = 128, genetic_num_iters: int = 3,
                       exclude=()) -> list[Candidate]:
    """``n`` candidates from MetaSchedule's ``EvolutionarySearch`` guided by ``cost_model`` (no runner).

    Each round asks the strategy for ``per_round`` candidates, scores them with ``cost_model.predict``
    (higher = faster, MetaSchedule's convention), records ``1/score`` seconds as their run time in an
    in-memory database (so later rounds start from the best so far) and notifies the strategy and the model.
    ``cost_model`` defaults to ``ms.cost_model.RandomModel(seed=seed)``. The candidate's ``extra`` holds
    the round and the model's score.
    """
    wl = _workload(workload)
    mod = wl.mod()
    strategy = ms.search_strategy.EvolutionarySearch(population_size=population_size,
                                                     genetic_num_iters=genetic_num_iters,
                                                     init_min_unmeasured=min(50, population_size))
    ctx = tune_context(mod, target, seed, wl.name, search_strategy=strategy)
    spaces = design_spaces(ctx)
    cost_model = cost_model or ms.cost_model.RandomModel(seed=seed)
    db = ms.database.MemoryDatabase()
    rounds = rounds or max(2, -(-n // per_round) + 2)
    ctx.search_strategy.pre_tuning(rounds * per_round, per_round, spaces, db, cost_model)
    workload_entry = db.commit_workload(mod)
    args_info = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    out, seen_ids, seen_mods = [], set(exclude), set()
    try:
        for r in range(rounds):
            cands = ctx.search_strategy.generate_measure_candidates()
            if not cands:
                break
            scores = [float(x) for x in cost_model.predict(ctx, cands)]
            results = []
            for mc, sc in zip(cands, scores):
                secs = 1.0 / max(sc, 1e-9)
                results.append(ms.runner.RunnerResult([secs], None))
                db.commit_tuning_record(ms.database.TuningRecord(mc.sch.trace, workload_entry, [secs], target,
                                                                 args_info))
                tj = trace_to_json(mc.sch.trace)
                cid = candidate_id(wl.name, tj)
                h = tvm_ffi.structural_hash(mc.sch.mod)
                if cid in seen_ids or h in seen_mods or len(out) >= n:
                    continue
                seen_ids.add(cid)
                seen_mods.add(h)
                out.append(Candidate(cid, wl.name, "evolved", seed, tj, _space_index(mc.sch, spaces),
                                     {"round": r, "score": sc}))
            cost_model.update(ctx, cands, results)
            ctx.search_strategy.notify_runner_results(cands, results)
            if len(out) >= n:
                break
    finally:
        ctx.search_strategy.post_tuning()
    return out


def _space_index(sch, spaces) -> int:
    """Which design space a schedule came from: the space whose (decision-free) instruction kinds prefix
    the schedule's trace. -1 if none matches."""
    kinds = [i.kind.name for i in sch.trace.insts]
    best, best_len = -1, -1
    for idx, sp in enumerate(spaces):
        sk = [i.kind.name for i in sp.trace.simplified(remove_postproc=True).insts]
        if kinds[:len(sk)] == sk and len(sk) > best_len:
            best, best_len = idx, len(sk)
    return best


def apply_trace(workload, trace_json) -> s_tir.Schedule:
    """Re-create the scheduled module of a saved candidate (trace with its decisions and postprocs)."""
    wl = _workload(workload)
    sch = s_tir.Schedule(wl.mod())
    s_tir.Trace.apply_json_to_schedule(trace_json, sch)
    return sch


def dlight_rules() -> list:
    """DLight's default GPU rules, in order: the very list ``costpass.compile._dlight`` applies."""
    from costpass.compile import _dlight
    return list(_dlight().rules)


def dlight_schedule(workload, target=None):
    """Schedule the workload's PrimFunc as DLight's ``ApplyDefaultSchedule`` would (non-tunable, first rule
    that returns a schedule wins). Returns ``(rule_name, schedule, reason)``: ``schedule`` is None when no
    rule applies, a rule raises (the pass itself would fail then) or a rule returns several schedules
    (``ApplyDefaultSchedule`` asserts exactly one); ``reason`` says which."""
    from .build import cuda_target

    wl = _workload(workload)
    target = target or cuda_target()
    func = wl.mod()["main"]
    for rule in dlight_rules():
        name = type(rule).__name__
        try:
            with target:
                got = rule.apply(func, target, False)
        except Exception as e:  # noqa: BLE001
            return name, None, f"rule {name} raised {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        if got is None:
            continue
        if isinstance(got, s_tir.Schedule):
            return name, got, ""
        got = list(got)
        if len(got) == 1:
            return name, got[0], ""
        return name, None, f"rule {name} returned {len(got)} schedules, not one"
    return None, None, "no DLight rule applies"


def dlight_candidates(workload, target=None) -> list[Candidate]:
    """DLight's default GPU schedule of ``workload`` as a one-element list of candidates (origin
    ``"dlight"``, ``extra = {"rule": <rule class name>, "tensorized": <trace has a Tensorize>}``), or ``[]``
    (reason logged) when :func:`dlight_schedule` gives none. The trace is the schedule's own, so
    :func:`apply_trace` replays it; the candidate is deterministic (DLight samples nothing when not tunable)."""
    wl = _workload(workload)
    rule, sch, reason = dlight_schedule(wl, target)
    if sch is None:
        _LOG.warning("dlight %s: no candidate: %s", wl.name, reason)
        return []
    tj = trace_to_json(sch.trace)
    tensorized = any(i.kind.name == "Tensorize" for i in sch.trace.insts)
    return [Candidate(candidate_id(wl.name, tj), wl.name, "dlight", 0, tj, -1,
                      {"rule": rule, "tensorized": tensorized})]


def is_spatial_only(workload) -> bool:
    """True when the workload is a single block with no reduction (elementwise / copy): MetaSchedule's
    default CUDA space for these is a single point (the postproc binds a fixed thread count)."""
    wl = _workload(workload)
    sch = s_tir.Schedule(wl.mod())
    blocks = sch.get_child_blocks(sch.get_sblock("root", func_name="main"))
    if len(blocks) != 1:
        return False
    return all(int(iv.iter_type) == 0 for iv in sch.get(blocks[0]).iter_vars)


def manual_elementwise_candidates(workload, n: int = 48, exclude=()) -> list[Candidate]:
    """Hand-parameterised schedules of a spatial-only workload, to cover what the one-point MetaSchedule
    space misses: all loops fused, split into (blockIdx.x, [serial elements per thread], threadIdx.x,
    [vectorized lanes]) with threads in {32..1024}, vector width in {1,2,4,8} and 1 or 4 elements per
    thread. Origin ``"manual"``, ``extra`` holds the parameters; traces re-apply with :func:`apply_trace`."""
    wl = _workload(workload)
    out, seen = [], set(exclude)
    for threads in (32, 64, 128, 256, 512, 1024):
        for vec in (1, 2, 4, 8):
            for ept in (1, 4):
                if len(out) >= n:
                    return out
                sch = s_tir.Schedule(wl.mod())
                blk = sch.get_child_blocks(sch.get_sblock("root", func_name="main"))[0]
                loops = sch.get_loops(blk)
                fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
                extent = 1
                for iv in sch.get(blk).iter_vars:
                    extent *= int(iv.dom.extent)
                if extent % (threads * vec * ept):
                    continue
                bx, e, tx, v = sch.split(fused, [None, ept, threads, vec])
                sch.bind(bx, "blockIdx.x")
                sch.bind(tx, "threadIdx.x")
                if vec > 1:
                    sch.vectorize(v)
                if ept > 1:
                    sch.unroll(e)
                tj = trace_to_json(sch.trace)
                cid = candidate_id(wl.name, tj)
                if cid in seen:
                    continue
                seen.add(cid)
                out.append(Candidate(cid, wl.name, "manual", 0, tj, -1,
                                     {"threads": threads, "vector": vec, "elems_per_thread": ept}))
    return out
