#!/usr/bin/env python3
"""Search simulated offline, on the CPU: every schedule the 256-trial GPU runs measured for a task is a pool,
and a cost model picks from the pool batch by batch, "measuring" by looking the latency up, as a search that
could only propose measured schedules would. It tests what a cost model does with its measurements (online
update, warm-up, exploration) without the GPU, and compares models on the same pool, seeds and budget.

    python3 benchmarks/search_sim.py --db-dirs OLD/wd NEW/wd S1/wd S1R/wd TVM/wd S2/wd \\
        --tasks conv_r50_c3_3x3_fp16 --models costpass,xgb,random --seeds 0,1,2 --out /tmp/sim

What it is not: MetaSchedule's search. The real search proposes new schedules by evolution from the model's
favourites; here the candidates are only those some earlier run measured (10 runs x 256 trials per task: the
good ones are over-represented, since two thirds of the runs were guided searches). Latency of a schedule is the
median over the runs that measured it of each run's median. costpass's base model for a task is the held-out one
(``--model-dir``, one model per task that never saw its workload); XGBModel is TVM's own class with its
PerStoreFeature features (computed once per schedule and cached: the training and prediction are TVM's code).
Each batch takes the model's top ``per_iter`` unmeasured schedules, ``--eps`` of them at random instead (as
MetaSchedule's evolutionary search mixes in random picks, eps_greedy 0.05).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

RUN_DIR = re.compile(r"^(?P<task>.+)__(?P<model>[a-z]+)__s(?P<seed>\d+)__t(?P<trials>\d+)$")


def pool_of(task: str, db_dirs: list) -> tuple[list, list, dict]:
    """The distinct schedules measured for ``task`` in the run folders under ``db_dirs``: (candidates, latency ms
    or None for a failed one, info). Schedules are the same when their scheduled modules are structurally equal (as
    MetaSchedule's database compares them)."""
    from tvm_ffi import structural_hash

    from costpass import tune as T

    by_hash: dict = {}
    runs = 0
    for root in db_dirs:
        for wd in sorted(Path(root).iterdir()):
            m = RUN_DIR.match(wd.name)
            if not m or m["task"] != task:
                continue
            runs += 1
            for rec in T.database_in_order(str(wd)):
                cand = rec.as_measure_candidate()
                h = structural_hash(cand.sch.mod)
                ms = T._record_ms(rec)
                ent = by_hash.setdefault(h, [cand, []])
                if ms is not None:
                    ent[1].append(ms)
    cands = [c for c, _ in by_hash.values()]
    lat = [float(np.median(v)) if v else None for _, v in by_hash.values()]
    return cands, lat, {"runs": runs, "schedules": len(cands), "failed": sum(x is None for x in lat)}


def simulate(model, ctx, cands: list, lat: list, trials: int, per_iter: int, eps: float, seed: int) -> list:
    """One simulated search: ``trials`` picks from the pool, ``per_iter`` at a time; returns the measured latencies in
    pick order (None: failed). ``model``: a MetaSchedule cost model (predict / update)."""
    from tvm.s_tir import meta_schedule as ms

    rng = np.random.default_rng(seed)
    left = list(range(len(cands)))
    hist: list = []
    while len(hist) < trials and left:
        k = min(per_iter, trials - len(hist), len(left))
        scores = np.asarray(model.predict(ctx, [cands[i] for i in left]), dtype=float)
        n_rand = int(round(eps * k))
        order = list(np.argsort(-scores, kind="stable"))
        pick = order[:k - n_rand]
        taken = set(pick)
        rest = [j for j in range(len(left)) if j not in taken]
        if n_rand and rest:
            pick += list(rng.choice(rest, size=min(n_rand, len(rest)), replace=False))
        chosen = [left[j] for j in pick]
        results = [ms.runner.RunnerResult([lat[i] / 1e3], None) if lat[i] is not None
                   else ms.runner.RunnerResult(None, "failed on the GPU") for i in chosen]
        model.update(ctx, [cands[i] for i in chosen], results)
        hist += [lat[i] for i in chosen]
        chosen_set = set(chosen)
        left = [i for i in left if i not in chosen_set]
    return hist


def _cached_extractor(base):
    """A feature extractor that computes ``base``'s features once per schedule (keyed by structural hash)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.feature_extractor import PyFeatureExtractor
    from tvm_ffi import structural_hash

    @derived_object
    class Cached(PyFeatureExtractor):
        def __init__(self):
            self.cache = {}

        def extract_from(self, context, candidates):
            keys = [structural_hash(c.sch.mod) for c in candidates]
            new = [(k, c) for k, c in zip(keys, candidates) if k not in self.cache]
            if new:
                for (k, _), f in zip(new, base.extract_from(context, [c for _, c in new])):
                    self.cache[k] = f
            return [self.cache[k] for k in keys]

    return Cached()


def make_model(kind: str, task: str, model_dir: str, seed: int, extractor=None, rows: dict | None = None):
    """``extractor``: XGBModel's (shared across seeds); ``rows``: costpass's feature rows by structural hash (shared
    across seeds and variants: the features do not depend on the model)."""
    from tvm.s_tir import meta_schedule as ms

    from costpass.metaschedule import CostModel

    if kind == "xgb":
        return ms.cost_model.XGBModel(extractor=extractor, adaptive_training=True, num_tuning_cores=1)
    if kind == "random":
        return ms.cost_model.RandomModel(seed=seed)
    path = str(Path(model_dir) / f"{task}.json.gz")
    if kind == "costpass":
        m = CostModel(gpu="h100", model_path=path, seed=seed)
    elif kind == "costpass-base":  # the held-out model alone, no online update
        m = CostModel(gpu="h100", model_path=path, online=False, seed=seed)
    else:
        raise ValueError(f"unknown model {kind!r}")
    if rows is not None:
        m._rows = rows
    return m


def best_after(hist: list, n: int) -> float | None:
    ok = [x for x in hist[:n] if x is not None]
    return min(ok) if ok else None


def run(a) -> dict:
    from tvm.s_tir import meta_schedule as ms

    from costpass.cli import preload_tensor_intrinsics
    from costpass.measure.build import cuda_target
    from schedules import workloads as W

    preload_tensor_intrinsics()
    out = {"argv": sys.argv, "tasks": {}}
    for task in a.tasks.split(","):
        t0 = time.time()
        cands, lat, info = pool_of(task, a.db_dirs)
        ok = [x for x in lat if x is not None]
        if not ok:
            raise SystemExit(f"search_sim: no measured schedule of {task!r} under {' '.join(a.db_dirs)}")
        info.update(best_ms=min(ok), median_ms=float(np.median(ok)))
        print(f"[sim] {task}: {info['schedules']} schedules from {info['runs']} runs ({time.time() - t0:.0f} s)",
              flush=True)
        ctx = ms.TuneContext(mod=W.get(task).mod(), target=cuda_target(), task_name="main")
        shared_xgb_features, rows = _cached_extractor(ms.feature_extractor.PerStoreFeature()), {}
        res = {}
        for kind in a.models.split(","):
            for seed in (int(s) for s in a.seeds.split(",")):
                t1 = time.time()
                model = make_model(kind, task, a.model_dir, seed, shared_xgb_features, rows)
                hist = simulate(model, ctx, cands, lat, a.trials, a.per_iter, a.eps, seed)
                res[f"{kind}/s{seed}"] = hist
                print(f"[sim] {task} {kind} s{seed}: best@64 {best_after(hist, 64):.4f} @128 "
                      f"{best_after(hist, 128):.4f} @{a.trials} {best_after(hist, a.trials):.4f} ms "
                      f"(pool best {info['best_ms']:.4f}; {time.time() - t1:.0f} s)", flush=True)
        out["tasks"][task] = {"pool": info, "histories": res}
        Path(a.out + ".json").write_text(json.dumps(out))
    return out


def summary_lines(out: dict, trials: int, models: list) -> list:
    lines = ["| task | pool (best ms) | " + " | ".join(f"{m} @64 / @128 / @{trials}" for m in models) + " |",
             "|---|---:|" + "---:|" * len(models)]
    ratios = {m: [] for m in models}
    for task, d in out["tasks"].items():
        best = d["pool"]["best_ms"]
        cells = []
        for m in models:
            hs = [h for k, h in d["histories"].items() if k.split("/")[0] == m]
            gaps = [[best_after(h, n) / best for h in hs] for n in (64, 128, trials)]
            ratios[m].append([math.exp(np.mean(np.log(g))) for g in gaps])
            cells.append(" / ".join(f"{math.exp(np.mean(np.log(g))):.3f}" for g in gaps))
        lines.append(f"| {task} | {d['pool']['schedules']} ({best:.4f}) | " + " | ".join(cells) + " |")
    lines.append("| geomean | | " + " | ".join(" / ".join(f"{math.exp(np.mean(np.log([r[i] for r in ratios[m]]))):.3f}"
                                                           for i in range(3)) for m in models) + " |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db-dirs", nargs="+", required=True, help="folders of TASK__MODEL__sSEED__tTRIALS run folders")
    p.add_argument("--tasks", required=True)
    p.add_argument("--models", default="costpass,xgb,random")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--trials", type=int, default=256)
    p.add_argument("--per-iter", type=int, default=32)
    p.add_argument("--eps", type=float, default=0.05)
    p.add_argument("--model-dir", default="carry/tune/models_v4")
    p.add_argument("--out", required=True, help="writes OUT.json and OUT.md")
    a = p.parse_args(argv)
    for d in a.db_dirs:
        if not Path(d).is_dir():
            print(f"search_sim: no such folder {d}", file=sys.stderr)
            return 2
    try:
        out = run(a)
    except SystemExit as e:  # a task without measurements: say which, exit 2 (the tasks before it are in OUT.json)
        print(e, file=sys.stderr)
        return 2
    lines = [f"# Simulated search over measured pools\n\n`{' '.join(sys.argv)}`\n",
             "Best found / pool best (geometric mean over seeds) after 64, 128 and all trials:\n"]
    lines += summary_lines(out, a.trials, a.models.split(","))
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
