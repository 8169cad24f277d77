#!/usr/bin/env python3
"""An analytical variant tried and not adopted: latency exposed when few blocks share an SM (CPU only).

    python3 benchmarks/latency_variant.py [--gpus h100,h200] [--seeds 0,1,2] [--out benchmarks/results/latency_variant]

``bounds.analyze`` estimates ``launch + max(throughput, latency)``: the latency of a block's barrier-separated
phases hidden behind other blocks' work. With one block resident per SM (the fast conv2d schedules: 112 blocks of
7 warps), nothing hides it. Variant ``exposed``: for kernels with barriers, ``launch + max(T, L) + min(T, L) / k``,
``k`` the blocks resident on the busiest SM. Scored leave-workload-out (GroupKFold over workloads, as
``evaluate.py``) three ways: the analytical estimate with the variant in place of the estimate; the learned
``costpass-reg-resid`` on features computed with the variant; and the learned model with the variant's estimate as
one extra feature (the estimate unchanged); each learned row over several XGBoost seeds (seed noise is large).
The variant is applied by wrapping ``costpass.bounds.analyze`` for the duration of a call and restored after.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KEYS = ("mape", "median_ape", "kendall_tau", "top1", "top5")


def exposed_estimate_us(kb, has_barriers: bool) -> float:
    """The variant's estimate from one kernel's ``KernelBounds``."""
    from costpass import bounds as B
    thr = {p: v for p, v in kb.bounds_us.items() if p != "latency"}
    lat = kb.bounds_us["latency"]
    t = B.overlapped_us(thr, B.throughput_bottleneck(thr))       # what analyze sets against the latency
    k = max(1, min(kb.occupancy.blocks_per_sm, kb.waves.blocks_on_busiest_sm))
    return kb.launch_us + max(t, lat) + (min(t, lat) / k if has_barriers else 0.0)


@contextlib.contextmanager
def exposed_bounds():
    """``costpass.bounds.analyze`` with the variant's estimate, restored on exit."""
    from costpass import bounds as B
    orig = B.analyze

    def analyze(d, g):
        kb = orig(d, g)
        kb.estimate_us = exposed_estimate_us(kb, d.inst.get("barrier", 0) > 0)
        return kb

    B.analyze = analyze
    try:
        yield
    finally:
        B.analyze = orig


def rows_of(gpu: str):
    """(spec, [(candidate, workload, measured ms, [KernelDemand])]) of every analysable measured candidate."""
    from costpass import data, evaluate as E, spec as S
    g = S.load(data.gpu_key(gpu))
    records = data.load(gpu, build="auto")      # one build, as the model code reads it
    meas = E.measured(records)
    items = E.measured_items(records, E.trace_index(), meas)
    ds = E.Extractor(progress=False).demands(items, g.arch)
    return g, [(c, wl, meas[c][1], ds[c]) for c, wl, _ in items if not isinstance(ds[c], str)]


def learned(X, y, wls, seed: int, est_X=None) -> dict:
    """Leave-workload-out metrics of XGBoost on ln(ms) - ln(estimate), the estimate read from ``est_X``."""
    from costpass import evaluate as E
    est = E._est_ms(X if est_X is None else est_X)
    pred = np.full(len(y), np.nan)
    for tr, te in E.group_kfold(wls, 5):
        b = E._xgb_reg(X[tr], np.log(y[tr]) - np.log(est[tr]), seed=seed)
        pred[te] = est[te] * np.exp(E._xgb_pred(b, X[te]))
    m = E.metrics(y, pred, wls)
    return {k: m[k] for k in KEYS}


def run(gpu: str, seeds) -> dict:
    from costpass import evaluate as E, features as F
    g, rows = rows_of(gpu)
    wls, y = [r[1] for r in rows], np.array([r[2] for r in rows])
    X = np.vstack([F.featurize(r[3], g) for r in rows])
    with exposed_bounds():
        Xv = np.vstack([F.featurize(r[3], g) for r in rows])
    extra = np.log(F.estimate_us_of(Xv) + F.TIME_FLOOR_US)[:, None]
    an = {name: {k: E.metrics(y, E._est_ms(XX), wls)[k] for k in KEYS} for name, XX in (("base", X), ("exposed", Xv))}
    out = {"n": len(y), "workloads": len(set(wls)), "analytical": an, "learned": {}}
    for name, XX, est_X in (("base", X, None), ("exposed estimate", Xv, None),
                            ("base + exposed feature", np.hstack([X, extra]), X)):
        per = [learned(XX, y, wls, s, est_X) for s in seeds]
        out["learned"][name] = {"per_seed": per, "mean": {k: float(np.mean([p[k] for p in per])) for k in KEYS}}
        print(gpu, name, {k: round(v, 3) for k, v in out["learned"][name]["mean"].items()}, flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpus", default="h100,h200")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "latency_variant"))
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    try:
        res = {gpu: run(gpu, seeds) for gpu in a.gpus.split(",")}
    except ValueError as err:           # an unknown GPU or a dataset that cannot be read
        print(f"latency_variant: error: {err}", file=sys.stderr)
        return 2
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip() or "unknown"
    meta = {"commit": commit, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "seeds": seeds}
    Path(a.out + ".json").write_text(json.dumps({"meta": meta, "gpus": res}, indent=1))
    lines = ["# Latency exposed when few blocks share an SM: a variant not adopted", "",
             f"`python3 benchmarks/latency_variant.py` at commit `{commit}`, {meta['date']}, CPU only; "
             "leave-workload-out (5-fold GroupKFold over workloads); learned rows: mean over XGBoost seeds "
             f"{a.seeds}. See the script's docstring for the variant.", "",
             "| GPU | scorer | MAPE | median APE | Kendall tau | top-1 | top-5 |", "|---|---|---:|---:|---:|---:|---:|"]
    for gpu, x in res.items():
        for name, m in x["analytical"].items():
            lines.append(f"| {gpu} | analytical, {name} | " + " | ".join(f"{m[k]:.3f}" for k in KEYS) + " |")
        for name, v in x["learned"].items():
            m = v["mean"]
            lines.append(f"| {gpu} | learned, {name} | " + " | ".join(f"{m[k]:.3f}" for k in KEYS) + " |")
    lines += ["", "Per seed (tau / top-1): " + "; ".join(
        f"{gpu} {name}: " + ", ".join(f"{p['kendall_tau']:.3f}/{p['top1']:.3f}" for p in v["per_seed"])
        for gpu, x in res.items() for name, v in x["learned"].items()) + "."]
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}.md and {a.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
