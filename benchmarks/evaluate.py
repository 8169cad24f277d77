#!/usr/bin/env python3
"""Leave-workload-out evaluation of costpass's cost models against TVM's XGBModel, on measured records.

    python3 benchmarks/evaluate.py                       # every GPU under datasets/, all methods
    python3 benchmarks/evaluate.py --gpus h100 --folds 5 --methods analytical,costpass-reg-resid
    python3 benchmarks/evaluate.py --ablation            # costpass-reg-resid variants, 3 seeds -> evaluate.ablation.md
    python3 benchmarks/evaluate.py --ship                # also write costpass/models/<gpu>.json.gz and the
                                                         # cross-GPU model costpass/models/h100+h200.json.gz

Writes ``benchmarks/results/evaluate.md`` and ``evaluate.json`` (``--out`` changes the stem). See
``costpass/evaluate.py`` for the methods and metrics. Features are cached under ``.cache/costpass/``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

from costpass import evaluate as E  # noqa: E402

METRIC_TEXT = """\
Metrics: **MAPE** / **median APE**: |predicted - measured| / measured over all held-out candidates (n/a for
methods whose output is not a latency). **Kendall tau** (tau-b) and **pairwise acc.** (share of candidate pairs
ordered right; a predicted tie counts 1/2): within each workload, mean over workloads. **top-1** / **top-5**:
per workload, best measured latency / best measured latency among the 1 / 5 candidates the method ranks
fastest (1.0 = it found the best), mean over workloads; **worst top-1**: the lowest workload's top-1.
Splits: GroupKFold over workloads (a workload's candidates are all in one fold), so every score is on
workloads the model never saw. Cross-GPU rows train on one GPU's training folds and score the other GPU's
measurements of the held-out workloads (same candidates). `train h100+h200` rows train one model on both GPUs'
training folds (each GPU's rows featurised on its own spec) and score the held-out workloads of one GPU, on
the same folds as that GPU's own leave-workload-out rows. Search-time adaptation: k candidates of each
held-out workload are revealed (seeded random choice) as a tuning session would measure them; every k is
scored on the same never-revealed candidates (see `costpass.evaluate.online_adaptation`)."""

METHOD_TEXT = """\
Methods: `analytical`: costpass's analytical estimate, no fit. `analytical-scaled`: same x one global factor
fitted on the training folds. `costpass-reg-log` / `costpass-reg-resid`: XGBoost on costpass features,
target ln(ms) / ln(ms) - ln(estimate). `costpass-rank`: XGBoost rank:pairwise per workload (ranking only).
`tvm-xgbmodel`: TVM's own XGBModel + PerStoreFeature trained through `update` with the training folds'
measured RunnerResults (it predicts normalised throughput: ranking only). `tvm-perstore-xgb-reg`: the same
PerStoreFeature rows (sum and max over stores, store count) with costpass's XGBoost settings on ln(ms): the
TVM-feature baseline whose MAPE is comparable. `costpass+perstore`: both feature sets, residual target."""


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=REPO, text=True).strip()
    except Exception:  # noqa: BLE001
        return ""


def ship(dsets, variant: str, seed: int, out_dir: str, name: str | None = None, note: dict | None = None) -> str:
    """Fit ``variant`` on all candidates of one GPU's dataset (or of several: the cross-GPU model) and write
    ``costpass/models/<gpu>.json.gz`` (``h100+h200.json.gz`` for several; ``name`` overrides the file name).
    The header lists the GPU(s), a hash of the training data (GPU, candidate id and measured ms of every
    row) and ``note`` (added to its training_data entry)."""
    from costpass.model import CostpassModel

    dsets = [dsets] if isinstance(dsets, E.Dataset) else list(dsets)
    kw = {"costpass-reg-resid": dict(objective="reg", target="residual"),
          "costpass-reg-log": dict(objective="reg", target="log"),
          "costpass-rank": dict(objective="rank")}[variant]
    h = hashlib.sha256()
    for d in dsets:
        for cid, y in sorted(zip(d.ids, d.y_ms)):
            h.update((f"{cid} {y:.9g}\n" if len(dsets) == 1 else f"{d.gpu} {cid} {y:.9g}\n").encode())
    ds = dsets[0] if len(dsets) == 1 else E.concat(dsets)
    m = CostpassModel(seed=seed, gpus=[d.gpu for d in dsets], **kw).fit(ds.X, ds.y_ms, groups=ds.workloads,
                                                                       data_id=h.hexdigest()[:16])
    m.header["training_data"] = {"records": sum(d.info.get("records") or 0 for d in dsets),
                                 "candidates": len(ds), "workloads": len(set(ds.workloads)), "variant": variant,
                                 "source": ", ".join(f"datasets/{d.gpu}" for d in dsets),
                                 "builds": sorted({b for d in dsets for b in d.info.get("builds", [])})}
    if len(dsets) > 1:
        m.header["training_data"]["per_gpu"] = {d.gpu: {"records": d.info.get("records"), "candidates": len(d)}
                                                for d in dsets}
    m.header["training_data"].update(note or {})
    return m.save(os.path.join(out_dir, name or f"{ds.gpu}.json.gz"))


NEW_IN_FEATURES_2 = ("reg_need_over_cap", "log2_local_bytes_per_thread", "log2_serial_iterations")


def ablation_variants():
    """name -> fit_predict(train, test, seed) of costpass-reg-resid variants (features, objective, weights)."""
    from costpass.model import CostpassModel

    drop = [E.F.FEATURE_SCHEMA.index(n) for n in NEW_IN_FEATURES_2]
    keep = [i for i in range(len(E.F.FEATURE_SCHEMA)) if i not in drop]

    class Columns(CostpassModel):          # a model on a subset of the columns (the estimate column kept)
        def _check_X(self, X):
            return np.atleast_2d(np.asarray(X, dtype=np.float64))

    def resid(params=None, cols=None, weights=None):
        def f(tr, te, seed):
            w = None
            if weights == "workload":      # every training workload weighs the same in total
                names, counts = np.unique(tr.workloads, return_counts=True)
                n_of = dict(zip(names, counts))
                w = np.array([1.0 / n_of[x] for x in tr.workloads])
                w = w / w.mean()
            if cols is None:
                m = CostpassModel(objective="reg", target="residual", params=params, seed=seed)
                return m.fit(tr.X, tr.y_ms, sample_weight=w).predict(te.X)
            est_tr, est_te = E._est_ms(tr.X), E._est_ms(te.X)
            m = Columns(objective="reg", target="log", params=params, seed=seed)
            m.fit(tr.X[:, cols], np.exp(np.log(tr.y_ms) - np.log(est_tr)), sample_weight=w)
            return est_te * m.predict(te.X[:, cols])
        return f

    return {
        "features-1 (without the 3 new columns)": resid(cols=keep),
        "features-2 (shipped)": resid(),
        "features-2, pseudo-Huber loss (slope 1)": resid({"objective": "reg:pseudohubererror", "huber_slope": 1.0}),
        "features-2, absolute error (median)": resid({"objective": "reg:absoluteerror"}),
        "features-2, equal weight per workload": resid(weights="workload"),
        "features-2, max_depth 4": resid({"max_depth": 4}),
        "features-2, max_depth 8": resid({"max_depth": 8}),
        "features-2, min_child_weight 8": resid({"min_child_weight": 8.0}),
    }


def ablation(dsets: dict, folds: int, seeds=(0, 1, 2)) -> dict:
    """Leave-workload-out (and cross-GPU) scores of the variants, mean over ``seeds`` (XGBoost's row and
    column subsampling): what the features-2 columns and other objectives change, on the same folds."""
    scen = {f"{g} leave-workload-out": (ds, None) for g, ds in dsets.items()}
    names = list(dsets)
    if len(names) > 1:
        a, b = dsets[names[0]], dsets[names[1]]
        common = sorted(set(a.ids) & set(b.ids))
        pa, pb = {c: i for i, c in enumerate(a.ids)}, {c: i for i, c in enumerate(b.ids)}
        ac, bc = a.subset([pa[c] for c in common]), b.subset([pb[c] for c in common])
        scen[f"train {names[0]} -> test {names[1]}, leave-workload-out"] = (ac, bc)
        scen[f"train {names[1]} -> test {names[0]}, leave-workload-out"] = (bc, ac)
    keys = ("mape", "median_ape", "kendall_tau", "pairwise_acc", "top1", "top5", "top1_min")
    out = {}
    for sname, (tr_ds, te_ds) in scen.items():
        te_ds = te_ds or tr_ds
        splits = E.group_kfold(tr_ds.workloads, folds)
        rows = {}
        for vname, fp in ablation_variants().items():
            per_seed = []
            for seed in seeds:
                p = np.full(len(te_ds), np.nan)
                for tr, te in splits:
                    p[te] = fp(tr_ds.subset(tr), te_ds.subset(te), seed)
                per_seed.append(E.metrics(te_ds.y_ms, p, te_ds.workloads))
            rows[vname] = {k: float(np.mean([m[k] for m in per_seed])) for k in keys}
            rows[vname]["top1_sd"] = float(np.std([m["top1"] for m in per_seed]))
            print(f"[ablation] {sname}: {vname}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[vname].items()),
                  flush=True)
        out[sname] = {"n": len(te_ds), "n_workloads": len(set(te_ds.workloads)), "seeds": list(seeds),
                      "variants": rows}
    return out


def write_ablation(res: dict, path_stem: str, command: str, commit: str, date: str) -> None:
    md = ["# Ablation: costpass-reg-resid variants, leave-workload-out\n",
          f"`{command}` at commit `{commit[:12]}`, {date}. Each row: mean over XGBoost seeds "
          f"{next(iter(res.values()))['seeds']} (row / column subsampling) of the metrics defined in "
          "`evaluate.md`; `top-1 sd`: their standard deviation over the seeds (how much of a top-1 difference is "
          "seed noise). Same workload folds as `evaluate.md`. `features-1` drops the three columns features-2 "
          f"added ({', '.join(NEW_IN_FEATURES_2)}).\n"]
    for sname, r in res.items():
        md += [f"\n## {sname}\n\n{r['n']} candidates, {r['n_workloads']} workloads\n",
               "| variant | MAPE | median APE | Kendall tau | pairwise acc. | top-1 | top-1 sd | top-5 | worst top-1 |",
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for v, m in r["variants"].items():
            md.append(f"| {v} | {m['mape']:.3f} | {m['median_ape']:.3f} | {m['kendall_tau']:.3f} | "
                      f"{m['pairwise_acc']:.3f} | {m['top1']:.3f} | {m['top1_sd']:.3f} | {m['top5']:.3f} | "
                      f"{m['top1_min']:.3f} |")
    with open(path_stem + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    with open(path_stem + ".json", "w") as f:
        json.dump({"command": command, "commit": commit, "date": date, "scenarios": res}, f, indent=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", default="", help="comma-separated dataset names (default: all under datasets/)")
    ap.add_argument("--root", default=None, help="datasets folder (default: datasets/)")
    ap.add_argument("--traces", nargs="*", default=[], help="extra JSONL files / folders holding trace_json")
    ap.add_argument("--build", default="auto", choices=("auto", "tvm", "nvcc", "all"),
                    help="which build's records (default auto: TVM's own build where a GPU has it, else nvcc -O3)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--methods", default=",".join(E.METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cross", action="store_true", help="skip the cross-GPU scenarios (incl. the model "
                    "trained across GPUs)")
    ap.add_argument("--online-k", default="0,8,24", help="revealed candidates per held-out workload for the "
                    "search-time adaptation scenario ('' to skip)")
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "evaluate"))
    ap.add_argument("--ship", action="store_true", help="fit on all data of each GPU, write costpass/models/ "
                    "(<gpu>.json.gz per GPU and, with two GPUs or more, the cross-GPU model <gpu>+<gpu>.json.gz)")
    ap.add_argument("--no-ship-cross", action="store_true", help="with --ship: no cross-GPU model")
    ap.add_argument("--ship-variant", default="costpass-reg-resid")
    ap.add_argument("--ship-only", action="store_true", help="only fit and write the shipped models (no evaluation)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--ablation", action="store_true", help="only the ablation of costpass-reg-resid variants "
                    "(features-1 vs 2, objectives, weights; 3 seeds) -> benchmarks/results/evaluate.ablation.{md,json}")
    a = ap.parse_args(argv)

    t_start = time.time()
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    for m in methods:
        if m not in E.CALIBRATED:
            ap.error(f"unknown method {m} (known: {', '.join(E.METHODS)})")
    gpus = [g.strip() for g in a.gpus.split(",") if g.strip()] or E.available_gpus(a.root)
    gpus = [g for g in gpus if g != "ncu"]
    if not gpus:
        print("no measured dataset found under datasets/", file=sys.stderr)
        return 2
    traces = E.trace_index(a.traces)
    ex = E.Extractor(progress=not a.no_progress)
    need_ps = E._needs_perstore(methods) and not a.ship_only and not a.ablation
    dsets = {}
    for g in gpus:
        t0 = time.time()
        ds = E.load_dataset(g, traces=traces, extractor=ex, with_perstore=need_ps, root=a.root, build=a.build)
        ds.info["load_s"] = round(time.time() - t0, 1)
        print(f"[{g}] {ds.info}", flush=True)
        dsets[g] = ds
    result = {
        "command": "python3 " + " ".join([os.path.relpath(__file__, REPO)] + (argv if argv is not None else sys.argv[1:])),
        "commit": git_commit(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "node": platform.node()},
        "feature_schema_hash": E.F.schema_hash(), "folds": a.folds, "seed": a.seed, "methods": methods,
        "datasets": {g: d.info for g, d in dsets.items()}, "extraction": ex.timing, "scenarios": {},
    }
    if a.ablation:
        res = ablation(dsets, a.folds)
        stem = os.path.join(REPO, "benchmarks", "results", "evaluate.ablation")
        write_ablation(res, stem, result["command"], result["commit"], result["date"])
        print(f"wrote {stem}.md ({round(time.time() - t_start, 1)} s)")
        return 0
    for g, ds in dsets.items():
        if a.ship_only:
            break
        if len(set(ds.workloads)) < 2:
            print(f"[{g}] fewer than 2 workloads: no cross-validation", flush=True)
            continue
        r = E.cross_validate(ds, methods=methods, folds=a.folds, seed=a.seed, progress=not a.no_progress)
        result["scenarios"][f"{g} leave-workload-out"] = r
        print(f"\n## {g} leave-workload-out ({r['n']} candidates, {r['n_workloads']} workloads)\n"
              + E.markdown_table(r), flush=True)
        ks = [int(k) for k in a.online_k.split(",") if k.strip()]
        if ks:
            om = [m for m in E.ONLINE_METHODS if m != "tvm-xgbmodel+k" or "tvm-xgbmodel" in methods]
            r = E.online_adaptation(ds, folds=a.folds, ks=ks, seed=a.seed, methods=om,
                                    progress=not a.no_progress)
            result["scenarios"][f"{g} search-time adaptation (k revealed per held-out workload)"] = r
            print(f"\n## {g} search-time adaptation ({r['n']} candidates scored, {r['n_workloads']} workloads)\n"
                  + E.markdown_table(r), flush=True)
    if not a.no_cross and not a.ship_only:
        for ga in dsets:
            for gb in dsets:
                if ga == gb:
                    continue
                common = set(dsets[ga].ids) & set(dsets[gb].ids)
                wls = {w for c, w in zip(dsets[ga].ids, dsets[ga].workloads) if c in common}
                if len(wls) < 2:
                    print(f"[{ga}->{gb}] fewer than 2 shared workloads: skipped", flush=True)
                    continue
                r = E.cross_validate(dsets[ga], methods=methods, folds=a.folds, seed=a.seed,
                                     progress=not a.no_progress, test_ds=dsets[gb])
                result["scenarios"][f"train {ga} -> test {gb}, leave-workload-out"] = r
                print(f"\n## train {ga} -> test {gb}, leave-workload-out\n" + E.markdown_table(r), flush=True)
                r = E.transfer(dsets[ga], dsets[gb], methods=methods, seed=a.seed)
                result["scenarios"][f"train {ga} -> test {gb}, same workloads"] = r
                print(f"\n## train {ga} -> test {gb}, same workloads (seen on {ga})\n" + E.markdown_table(r),
                      flush=True)
        if len(dsets) > 1:
            joint = "+".join(dsets)
            for gb in dsets:
                r = E.cross_validate_joint(list(dsets.values()), dsets[gb], methods=methods, folds=a.folds,
                                           seed=a.seed, progress=not a.no_progress)
                result["scenarios"][f"train {joint} -> test {gb}, leave-workload-out"] = r
                print(f"\n## train {joint} -> test {gb}, leave-workload-out\n" + E.markdown_table(r), flush=True)
    if a.ship or a.ship_only:
        a.ship = True
        out_dir = os.path.join(REPO, "costpass", "models")
        result["shipped"] = {}
        groups = [[g] for g in dsets] + ([list(dsets)] if len(dsets) > 1 and not a.no_ship_cross else [])
        for gs in groups:
            p = ship([dsets[g] for g in gs], a.ship_variant, a.seed, out_dir)
            name = "+".join(gs)
            result["shipped"][name] = {"path": os.path.relpath(p, REPO), "variant": a.ship_variant,
                                       "bytes": os.path.getsize(p), "gpus": gs,
                                       "candidates": sum(len(dsets[g]) for g in gs)}
            print(f"[{name}] shipped {p}", flush=True)
    result["wall_s"] = round(time.time() - t_start, 1)
    if a.ship_only:      # no evaluation ran: leave the evaluation report as it is
        print(f"\nshipped {', '.join(s['path'] for s in result['shipped'].values())} ({result['wall_s']} s); "
              f"{a.out}.md left as it was (no evaluation with --ship-only)")
        return 0
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    slim = json.loads(json.dumps(result))
    with open(a.out + ".json", "w") as f:
        json.dump(slim, f, indent=1)
    md = [f"# Cost-model evaluation\n", f"`{result['command']}` at commit `{result['commit'][:12]}`, "
          f"{result['date']}, {result['wall_s']} s wall on this {os.cpu_count()}-CPU machine.\n",
          METRIC_TEXT + "\n", METHOD_TEXT + "\n", "## Datasets\n",
          "| dataset | records | ok candidates | used | workloads | no trace | extraction failed |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for g, inf in result["datasets"].items():
        md.append(f"| {g} | {inf['records']} | {inf['ok_candidates']} | {inf['used']} | {inf['workloads']} | "
                  f"{inf['no_trace']} | {inf['extract_failed']} |")
    for name, r in result["scenarios"].items():
        md.append(f"\n## {name}\n\n{r['n']} candidates, {r['n_workloads']} workloads"
                  + (f", {r['folds']} folds" if "folds" in r else "") + "\n")
        md.append(E.markdown_table(r))
    if a.ship:
        md.append("\n## Shipped models\n")
        for g, s in result["shipped"].items():
            md.append(f"- `{s['path']}` ({s['variant']}, {s['bytes']} bytes), trained on all of "
                      + " and ".join(s.get("gpus", [g])) + f" ({s.get('candidates', '?')} candidates)")
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    print(f"\nwrote {a.out}.md and {a.out}.json ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
