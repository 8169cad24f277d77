#!/usr/bin/env python3
"""How far off the learned model is on the schedule a search keeps (CPU only, leave-workload-out).

    python3 benchmarks/selection_bias.py [--gpus h100,h200] [--out benchmarks/results/selection_bias]

Out-of-fold predictions of ``costpass-reg-resid`` (GroupKFold over workloads, as ``evaluate.py``), then per workload
prediction / measurement of three schedules: the one the model ranks fastest (what a zero-shot compile keeps), the
one measured fastest (what tuning keeps), and all of them (the workload's median ratio). A search that keeps the
argmin of noisy scores keeps a schedule whose score is low by luck: a model's pick tends to be predicted too fast,
the measured best to be predicted too slow. This is why the tuned libraries' end-to-end predictions run high and the
zero-shot ones low (`e2e_tvm.md`), and why the measured tuning records are the better figure for tuned kernels.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def ratios(y: np.ndarray, pred: np.ndarray, workloads, min_n: int = 10) -> dict:
    """Per workload (with at least ``min_n`` candidates) ln(pred / measured) at the model's pick, at the measured
    best, and the workload's median over all candidates."""
    W = np.asarray(workloads)
    out = {"model_pick": [], "measured_best": [], "all_median": [], "workloads": []}
    for w in sorted(set(workloads)):
        idx = np.where(W == w)[0]
        if len(idx) < min_n:
            continue
        lr = np.log(pred[idx] / y[idx])
        out["model_pick"].append(float(lr[np.argmin(pred[idx])]))
        out["measured_best"].append(float(lr[np.argmin(y[idx])]))
        out["all_median"].append(float(np.median(lr)))
        out["workloads"].append(w)
    return out


def summary(v) -> dict:
    v = np.asarray(v)
    return {"geomean_ratio": float(np.exp(v.mean())), "median_ratio": float(np.exp(np.median(v))),
            "share_over": float((v > 0).mean()), "n": int(len(v))}


def main(argv=None) -> int:
    from costpass import evaluate as E

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpus", default="h100,h200")
    ap.add_argument("--method", default="costpass-reg-resid")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "selection_bias"))
    a = ap.parse_args(argv)
    res = {}
    for gpu in a.gpus.split(","):
        try:
            ds = E.load_dataset(gpu, with_perstore=False, extractor=E.Extractor(progress=False))
        except ValueError as err:       # an unknown GPU or a dataset that cannot be read
            print(f"selection_bias: error: {err}", file=sys.stderr)
            return 2
        pred = np.full(len(ds), np.nan)
        for tr, te in E.group_kfold(ds.workloads, a.folds):
            pred[te] = E.fit_predict(a.method, ds.subset(tr), ds.subset(te))
        r = ratios(ds.y_ms, pred, ds.workloads)
        res[gpu] = {"n_candidates": len(ds), **{k: summary(r[k]) for k in ("model_pick", "measured_best", "all_median")},
                    "per_workload": r}
        print(gpu, {k: round(res[gpu][k]["median_ratio"], 3) for k in ("model_pick", "measured_best", "all_median")})
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip() or "unknown"
    meta = {"commit": commit, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "method": a.method, "folds": a.folds}
    Path(a.out + ".json").write_text(json.dumps({"meta": meta, "gpus": res}, indent=1))
    lines = ["# Selection bias: the learned model on the schedule a search keeps", "",
             f"`python3 benchmarks/selection_bias.py` at commit `{commit}`, {meta['date']}; `{a.method}`, "
             f"{a.folds}-fold GroupKFold over workloads (every prediction is of a workload the model never saw). "
             "Per workload with >= 10 measured candidates, predicted / measured latency of the schedule the model "
             "ranks fastest (a zero-shot pick), of the schedule measured fastest (a tuned pick), and the median over "
             "all its candidates; then the geometric mean and the median over workloads, and the share of workloads "
             "where the prediction is too slow.", "",
             "| GPU | candidates | workloads | model's pick: geomean / median (too slow) | measured best: geomean / median (too slow) | all: geomean / median |",
             "|---|---:|---:|---|---|---|"]
    for gpu, x in res.items():
        mp, mb, al = x["model_pick"], x["measured_best"], x["all_median"]
        lines.append(f"| {gpu} | {x['n_candidates']} | {mp['n']} | {mp['geomean_ratio']:.3f} / {mp['median_ratio']:.3f} "
                     f"({mp['share_over']:.0%}) | {mb['geomean_ratio']:.3f} / {mb['median_ratio']:.3f} "
                     f"({mb['share_over']:.0%}) | {al['geomean_ratio']:.3f} / {al['median_ratio']:.3f} |")
    lines += ["", "A ratio above 1 means predicted slower than measured. The measured best is predicted too slow: its "
              "low measurement is partly luck and partly what the model does not see, so the prediction regresses "
              "toward the typical schedule. For a tuned library the measured tuning records are the better figure "
              "(`costpass.compile.stream_total_us`, `e2e_tvm.md`'s `with records`)."]
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}.md and {a.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
