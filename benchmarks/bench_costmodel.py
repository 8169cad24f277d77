#!/usr/bin/env python3
"""Cost-model throughput on this machine: costpass (lowering + demand walk + features + XGBoost) against
TVM's XGBModel (PerStoreFeature + XGBoost), on the same candidates, in the same run.

    python3 benchmarks/bench_costmodel.py                 # 120 candidates from the dataset traces
    python3 benchmarks/bench_costmodel.py --n 300 --repeat 2

Both models are trained first on the measured records of ``--gpu`` (when there are any; otherwise on the
analytical estimates, which does not change the timing) so that prediction walks real trees. The
candidates arrive as scheduled modules (``apply_trace`` is outside the timed region: MetaSchedule hands the
cost model schedules). Reports candidates/s for each stage and end to end, cold (no cache) and with
costpass's per-module cache warm (what the evolutionary search sees for repeated modules).
With ``--baseline REV`` the demand pass of git revision REV (``costpass/demand.py`` at REV, loaded beside
the current one) lowers and walks the same candidates in the same run, interleaved candidate by candidate
with the current code (order alternating), so the before/after ratio is not skewed by other jobs.
``extract_many`` (the list API) is timed with 0, 1 and 2 lowering threads, interleaved and repeated.
Writes ``benchmarks/results/bench_costmodel.{md,json}``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402


def _candidates(n: int, seed: int, n_workloads: int):
    """(cid, workload, trace_json) of n candidates of ``n_workloads`` workloads (picked at random with
    ``seed``) from the dataset traces: MetaSchedule scores one task's candidates per call, so the
    benchmark batches per workload as the search does."""
    from costpass import evaluate as E
    from costpass import data
    tr = E.trace_index()
    for g in E.available_gpus():
        if g == "ncu":
            continue
        for r in data.load(g):
            if E.record_trace(r) and r.candidate_id not in tr:
                tr[r.candidate_id] = (r.workload, E.record_trace(r))
    by: dict = {}
    for cid, (wl, tj) in sorted(tr.items()):
        by.setdefault(wl, []).append((cid, wl, tj))
    rng = random.Random(seed)
    wls = sorted(w for w in by if len(by[w]) >= 8)
    rng.shuffle(wls)
    wls = wls[:n_workloads]
    per = -(-n // max(1, len(wls)))
    out = []
    for w in wls:
        its = by[w][:]
        rng.shuffle(its)
        out += its[:per]
    return out[:n]


def _load_demand_at(rev: str):
    """costpass/demand.py as of git revision ``rev``, imported as a separate module."""
    import importlib.util
    import subprocess
    import tempfile
    src = subprocess.run(["git", "-C", REPO, "show", f"{rev}:costpass/demand.py"], check=True,
                         capture_output=True, text=True).stdout
    src = src.replace("from .records import", "from costpass.records import")
    path = os.path.join(tempfile.mkdtemp(prefix="costpass_baseline_"), "demand_baseline.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("costpass_demand_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod        # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--workloads", type=int, default=5, help="number of workloads the candidates come from")
    ap.add_argument("--gpu", default="h100")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "bench_costmodel"))
    ap.add_argument("--baseline", default=None, metavar="REV",
                    help="also time the demand pass of this git revision on the same candidates, interleaved")
    ap.add_argument("--batch-repeat", type=int, default=3, help="repeats of the extract_many timing")
    a = ap.parse_args(argv)

    import tvm
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.cost_model.xgb_model import XGBConfig
    from costpass import demand as D, features as F, spec as S, evaluate as E
    from costpass.model import CostpassModel
    from costpass.measure.build import cuda_target
    from costpass.measure.candidates import apply_trace
    from schedules import workloads as W
    import costpass

    g = S.load(a.gpu)
    target = cuda_target(g.arch)
    t0 = time.time()
    items = _candidates(a.n, a.seed, a.workloads)
    print(f"{len(items)} candidates over {len({w for _, w, _ in items})} workloads", flush=True)
    scheds = []
    for cid, wl, tj in items:
        try:
            scheds.append((cid, wl, apply_trace(wl, tj)))
        except Exception:  # noqa: BLE001
            pass
    print(f"applied traces in {time.time() - t0:.1f} s (not timed below)", flush=True)
    n = len(scheds)

    # ---- costpass, stage by stage (cold) ------------------------------------------------------------
    t_lower = t_walk = t_feat = 0.0
    rows, ok = [], []
    for i, (cid, wl, sch) in enumerate(scheds):
        t1 = time.perf_counter()
        try:
            kernels = D.lower_to_device(sch.mod, target)
        except Exception:  # noqa: BLE001
            t_lower += time.perf_counter() - t1
            continue
        t2 = time.perf_counter()
        try:
            ds = [D.analyze_kernel(name, f) for name, f in kernels]
        except Exception:  # noqa: BLE001
            t_walk += time.perf_counter() - t2
            continue
        t3 = time.perf_counter()
        x = F.featurize(ds, g)
        t4 = time.perf_counter()
        t_lower += t2 - t1
        t_walk += t3 - t2
        t_feat += t4 - t3
        rows.append(x)
        ok.append(i)
    X = np.vstack(rows)

    # what the lowering time is made of: demand's TVM pass list (one call), the rest of lower_to_device
    # (host/device split, LowerWarpMemory, kernel launch order), and for comparison TVM's full pipeline
    from tvm import tirx
    sub = {"demand_pass_list": 0.0, "split_and_launch_order": 0.0, "full_s_tir_pipeline": 0.0}
    for cid, wl, sch in scheds:
        try:
            q0 = time.perf_counter()
            low = D._lower_ir(sch.mod, target)
            q1 = time.perf_counter()
            D._device_kernels(low)
            q2 = time.perf_counter()
            with tvm.transform.PassContext(opt_level=3, config={"tirx.disable_storage_rewrite": True}):
                tvm.s_tir.pipeline.default_s_tir_pipeline()[0](tirx.transform.BindTarget(target)(sch.mod))
            q3 = time.perf_counter()
            sub["demand_pass_list"] += q1 - q0
            sub["split_and_launch_order"] += q2 - q1
            sub["full_s_tir_pipeline"] += q3 - q2
        except Exception:  # noqa: BLE001
            pass

    # ---- before/after in the same run: the demand pass of --baseline, interleaved -----------------
    base = None
    if a.baseline:
        B = _load_demand_at(a.baseline)
        tb = {"base_lower": 0.0, "base_walk": 0.0, "new_lower": 0.0, "new_walk": 0.0}
        same = nb = 0
        for k, (cid, wl, sch) in enumerate(scheds):
            recs = {}
            for tag, mod in (("base", B), ("new", D)) if k % 2 == 0 else (("new", D), ("base", B)):
                try:
                    u0 = time.perf_counter()
                    ks = mod.lower_to_device(sch.mod, target)
                    u1 = time.perf_counter()
                    recs[tag] = json.dumps([mod.analyze_kernel(nm, f).to_dict() for nm, f in ks], sort_keys=True)
                    u2 = time.perf_counter()
                except Exception:  # noqa: BLE001
                    recs[tag] = None
                    continue
                tb[tag + "_lower"] += u1 - u0
                tb[tag + "_walk"] += u2 - u1
            if recs.get("base") is not None:
                nb += 1
                same += recs["base"] == recs.get("new")
        base = {"rev": a.baseline, "n": nb, "identical_records": same,
                **{k: v / max(1, nb) for k, v in tb.items()}}
        print(f"baseline {a.baseline}: {same} of {nb} candidates with identical records", flush=True)

    # ---- extract_many (list API) with 0, 1, 2 lowering threads, interleaved -------------------------
    mods_all = [sch.mod for _, _, sch in scheds]
    batch = {0: [], 1: [], 2: []}
    for r in range(a.batch_repeat):
        for th in ((0, 1, 2) if r % 2 == 0 else (2, 1, 0)):
            v0 = time.perf_counter()
            D.extract_many(mods_all, target, threads=th)
            batch[th].append(time.perf_counter() - v0)

    # models trained on the measured records when there are some (timing does not depend on it)
    try:
        ds_train = E.load_dataset(a.gpu, with_perstore=True)
        Xtr, ytr = ds_train.X, ds_train.y_ms
        trained_on = f"{len(ytr)} measured candidates of {a.gpu}"
    except Exception as e:  # noqa: BLE001
        ds_train = None
        Xtr, ytr = X, F.estimate_us_of(X) / 1e3
        trained_on = f"analytical estimates of the benchmark candidates ({type(e).__name__})"
    m = CostpassModel(objective="reg", target="residual", seed=a.seed).fit(Xtr, ytr)
    t5 = time.perf_counter()
    m.predict(X)
    t_model = time.perf_counter() - t5
    t6 = time.perf_counter()
    for i in range(min(50, len(X))):
        m.predict(X[i:i + 1])
    t_model_single = (time.perf_counter() - t6) / min(50, len(X))

    # ---- costpass through the MetaSchedule interface (cold, then warm cache) -------------------------
    by_wl: dict = {}
    for cid, wl, sch in scheds:
        by_wl.setdefault(wl, []).append(sch)
    ctxs = {}
    for wl in by_wl:
        mod = W.get(wl).mod()
        ctxs[wl] = (ms.TuneContext(mod=mod, target=target, task_name=wl, num_threads=1),
                    ms.arg_info.ArgInfo.from_prim_func(mod["main"]))
    cands = {wl: [ms.MeasureCandidate(s, ctxs[wl][1]) for s in ss] for wl, ss in by_wl.items()}
    cm = costpass.CostModel(gpu=a.gpu, model_path="none")
    cm.base = m           # the model trained above (no file needed)
    t7 = time.perf_counter()
    for wl, cs in cands.items():
        cm.predict(ctxs[wl][0], cs)
    t_cm_cold = time.perf_counter() - t7
    t8 = time.perf_counter()
    for wl, cs in cands.items():
        cm.predict(ctxs[wl][0], cs)
    t_cm_warm = time.perf_counter() - t8
    t9 = time.perf_counter()
    for wl, cs in cands.items():
        for c in cs:
            tvm_ffi.structural_hash(c.sch.mod)
    t_hash = time.perf_counter() - t9

    # ---- TVM XGBModel + PerStoreFeature --------------------------------------------------------------
    fe = ms.feature_extractor.PerStoreFeature()
    t10 = time.perf_counter()
    for wl, cs in cands.items():
        fe.extract_from(ctxs[wl][0], cs)
    t_psf = time.perf_counter() - t10
    xgbm = ms.cost_model.XGBModel(extractor=fe, config=XGBConfig(nthread=1), num_warmup_samples=0,
                                  verbose_eval=0, adaptive_training=False)
    # train it on the measured records (through update, one call per workload) or, lacking them, on the
    # benchmark candidates with their analytical estimates as run times
    if ds_train is not None and len(ds_train):
        from tvm.s_tir.meta_schedule.runner import RunnerResult
        tr_by: dict = {}
        for cid, wl, y in zip(ds_train.ids, ds_train.workloads, ds_train.y_ms):
            tr_by.setdefault(wl, []).append((cid, y))
        traces = E.trace_index()
        from costpass import data
        for r in data.load(a.gpu):
            if E.record_trace(r):
                traces.setdefault(r.candidate_id, (r.workload, E.record_trace(r)))
        wls = sorted(tr_by)
        xgbm.adaptive_training = True
        xgbm.last_train_size = 10 ** 12
        for k, wl in enumerate(wls):
            mod = W.get(wl).mod()
            ctx = ms.TuneContext(mod=mod, target=target, task_name=wl, num_threads=1)
            ai = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
            cs = [ms.MeasureCandidate(apply_trace(wl, traces[cid][1]), ai) for cid, _ in tr_by[wl]]
            if k == len(wls) - 1:
                xgbm.adaptive_training = False
            xgbm.update(ctx, cs, [RunnerResult([float(y) / 1e3], None) for _, y in tr_by[wl]])
    else:
        from tvm.s_tir.meta_schedule.runner import RunnerResult
        est = F.estimate_us_of(X) / 1e6
        k = 0
        for wl, cs in cands.items():
            xgbm.update(ctxs[wl][0], cs, [RunnerResult([float(est[min(k + j, len(est) - 1)])], None)
                                          for j in range(len(cs))])
            k += len(cs)
    t11 = time.perf_counter()
    for wl, cs in cands.items():
        xgbm.predict(ctxs[wl][0], cs)
    t_xgb_total = time.perf_counter() - t11

    def rate(secs, count=n):
        return count / secs if secs > 0 else float("inf")

    load = os.getloadavg()
    res = {
        "command": "python3 " + " ".join([os.path.relpath(__file__, REPO)] + (argv if argv is not None else sys.argv[1:])),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": load},
        "n_candidates": n, "n_featurised": len(ok), "models_trained_on": trained_on,
        "costpass": {
            "lowering_s": t_lower, "lowering_breakdown_s": sub, "walk_s": t_walk, "features_s": t_feat, "model_batch_s": t_model,
            "model_single_row_s": t_model_single,
            "stages_cand_per_s": {"lowering": rate(t_lower), "walk": rate(t_walk), "features": rate(t_feat, len(ok)),
                                  "model_batch": rate(t_model, len(ok))},
            "end_to_end_cand_per_s": rate(t_lower + t_walk + t_feat + t_model),
            "costmodel_predict_cold_cand_per_s": rate(t_cm_cold),
            "costmodel_predict_warm_cand_per_s": rate(t_cm_warm),
            "structural_hash_cand_per_s": rate(t_hash),
            "extract_many_s": {str(k): v for k, v in batch.items()},
            "extract_many_cand_per_s": {str(k): rate(sum(v) / len(v)) for k, v in batch.items()},
            "baseline": base,
        },
        "tvm": {"perstore_feature_s": t_psf, "xgbmodel_predict_total_s": t_xgb_total,
                "perstore_feature_cand_per_s": rate(t_psf),
                "xgbmodel_predict_end_to_end_cand_per_s": rate(t_xgb_total)},
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    c, t = res["costpass"], res["tvm"]
    md = f"""# Cost-model throughput

`{res['command']}`, {res['date']}; {os.cpu_count()} CPUs shared with other work (load average
{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end of the run: absolute rates here are pessimistic, the
two models ran interleaved in the same process under the same load). {n} candidates (real MetaSchedule
candidates of the dataset, {len({w for _, w, _ in items})} workloads, scored one workload per call as
MetaSchedule does); models trained on {trained_on}.

| path | candidates/s | time per candidate |
|---|---:|---:|
| costpass end to end, cold (lower + walk + features + XGBoost) | {c['end_to_end_cand_per_s']:.1f} | {1e3 / c['end_to_end_cand_per_s']:.1f} ms |
| - lowering (demand.lower_to_device: TVM passes to device kernels) | {c['stages_cand_per_s']['lowering']:.1f} | {1e3 * c['lowering_s'] / n:.1f} ms |
| -- of which demand's pass list, one TVM call (timed again separately) | | {1e3 * sub['demand_pass_list'] / n:.1f} ms |
| -- of which host/device split, LowerWarpMemory, kernel launch order | | {1e3 * sub['split_and_launch_order'] / n:.2f} ms |
| (for comparison: TVM's full default S-TIR pipeline) | | {1e3 * sub['full_s_tir_pipeline'] / n:.1f} ms |
| - demand walk (costpass.demand) | {c['stages_cand_per_s']['walk']:.1f} | {1e3 * c['walk_s'] / n:.1f} ms |
| - bounds + features | {c['stages_cand_per_s']['features']:.0f} | {1e3 * c['features_s'] / max(1, len(ok)):.2f} ms |
| - XGBoost predict (batch of {len(ok)}) | {c['stages_cand_per_s']['model_batch']:.0f} | {1e3 * c['model_batch_s'] / max(1, len(ok)):.3f} ms |
| costpass.CostModel.predict, cold (MetaSchedule interface) | {c['costmodel_predict_cold_cand_per_s']:.1f} | {1e3 / c['costmodel_predict_cold_cand_per_s']:.1f} ms |
| costpass.CostModel.predict, warm (same modules again: structural-hash cache) | {c['costmodel_predict_warm_cand_per_s']:.0f} | {1e3 / c['costmodel_predict_warm_cand_per_s']:.2f} ms |
| demand.extract_many, serial (lower + walk, no features) | {c['extract_many_cand_per_s']['0']:.1f} | {1e3 / c['extract_many_cand_per_s']['0']:.1f} ms |
| demand.extract_many, 1 lowering thread | {c['extract_many_cand_per_s']['1']:.1f} | {1e3 / c['extract_many_cand_per_s']['1']:.1f} ms |
| demand.extract_many, 2 lowering threads | {c['extract_many_cand_per_s']['2']:.1f} | {1e3 / c['extract_many_cand_per_s']['2']:.1f} ms |
| TVM PerStoreFeature alone | {t['perstore_feature_cand_per_s']:.1f} | {1e3 / t['perstore_feature_cand_per_s']:.1f} ms |
| TVM XGBModel.predict end to end (PerStoreFeature + XGBoost) | {t['xgbmodel_predict_end_to_end_cand_per_s']:.1f} | {1e3 / t['xgbmodel_predict_end_to_end_cand_per_s']:.1f} ms |

Target for costpass: >= 500 candidates/s. Single-row XGBoost predict: {1e3 * c['model_single_row_s']:.2f} ms.
extract_many rows: mean of {a.batch_repeat} interleaved repeats over the same {n} candidates.
"""
    if base is not None:
        md += f"""
Before/after in this run (demand pass of `{base['rev']}` vs this tree, same candidates, interleaved;
{base['identical_records']} of {base['n']} candidates with byte-identical records):

| stage | {base['rev']} | this tree | speed-up |
|---|---:|---:|---:|
| lowering (lower_to_device) | {1e3 * base['base_lower']:.2f} ms | {1e3 * base['new_lower']:.2f} ms | {base['base_lower'] / max(1e-12, base['new_lower']):.2f}x |
| demand walk | {1e3 * base['base_walk']:.2f} ms | {1e3 * base['new_walk']:.2f} ms | {base['base_walk'] / max(1e-12, base['new_walk']):.2f}x |
| lowering + walk | {1e3 * (base['base_lower'] + base['base_walk']):.2f} ms | {1e3 * (base['new_lower'] + base['new_walk']):.2f} ms | {(base['base_lower'] + base['base_walk']) / max(1e-12, base['new_lower'] + base['new_walk']):.2f}x |
"""
    with open(a.out + ".md", "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
