#!/usr/bin/env python3
"""How a costpass model and the analytical estimate rank the schedules that tuning runs measured (CPU only).

    python3 benchmarks/score_pool.py --db-dirs S2/wd S3/e05 --task conv_r50_c3_3x3_fp16 \\
        --model carry/tune/models_v4/conv_r50_c3_3x3_fp16.json.gz [--runs RUN_ID ...]

Every successful record of the task's runs under ``--db-dirs`` (folders TASK__MODEL__sSEED__tTRIALS, or only the
``--runs`` named) is rebuilt from its trace, its demand extracted and scored by the model (ms) and by the analytical
estimate (ms). Prints each run's five fastest measured schedules with both scores, and Kendall's tau between measured
and each score over all records and over the fastest quarter: whether a model can tell the fast schedules apart.
``--families N``: the N launch shapes with the fastest records, which runs measured each, and their analytical range
(did a search never propose a shape, or did it see the shape and rank it low?).
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def score_rows(db_dirs, task, model_path, runs=None, gpu="h100") -> list:
    """[(run id, measured ms, model ms, analytical ms, launch)] of every successful record; ``launch``: the
    dominant kernel's (blocks, warps per block, dynamic shared bytes)."""
    import tune_bench as B
    from costpass import demand as D, features as F, metaschedule as M, spec as S
    from costpass import tune as T
    from costpass.cli import preload_tensor_intrinsics

    preload_tensor_intrinsics()
    g, model = S.load(gpu), None
    out = []
    for wd, t, *_ in B._run_dirs(db_dirs):
        if t != task or (runs and wd.name not in runs):
            continue
        for r in T.database_in_order(str(wd)):
            ms_ = T._record_ms(r)
            if ms_ is None:
                continue
            model = model or M._load_model(model_path)  # loaded once there is something to score
            try:
                ds = D.extract(r.as_measure_candidate().sch.mod, target=M._target_for(g))
                bs = F.kernel_bounds(ds, g)
                x = F.featurize(ds, g, bs)
            except Exception:  # noqa: BLE001 - a schedule costpass cannot analyse is left out, as in a search
                continue
            k = ds[max(range(len(bs)), key=lambda i: bs[i].estimate_us)].launch
            out.append((f"{wd.parent.name}/{wd.name}", ms_, float(model.predict(x[None])[0]),
                        float(F.estimate_us_of(x[None])[0]) / 1e3,
                        (k.num_blocks, k.warps_per_block, k.dynamic_smem_bytes)))
    return out


def families(rows, n: int) -> str:
    """The ``n`` launch shapes with the fastest measured record: which runs found each shape, and whether the
    analytical estimate tells them apart."""
    by: dict = {}
    for r in rows:
        by.setdefault(r[4], []).append(r)
    lines = ["launch shape (blocks, warps, smem): best measured ms, analytical ms min-max, records per run"]
    for shape, rs in sorted(by.items(), key=lambda kv: min(r[1] for r in kv[1]))[:n]:
        runs = Counter(r[0] for r in rs)
        est = [r[3] for r in rs]
        lines.append(f"   {shape}: {min(r[1] for r in rs):.4f}, {min(est):.4f}-{max(est):.4f}, "
                     + ", ".join(f"{k} {v}" for k, v in runs.items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    from costpass.evaluate import kendall_tau

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db-dirs", nargs="+", required=True)
    ap.add_argument("--task", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--runs", nargs="*")
    ap.add_argument("--families", type=int, default=0, metavar="N",
                    help="also print the N fastest launch shapes (blocks, warps per block, dynamic shared bytes): "
                         "best measured, analytical range, and how many records each run measured of it")
    a = ap.parse_args(argv)
    if not Path(a.model).exists():
        print(f"score_pool: error: no model file {a.model}", file=sys.stderr)
        return 2
    rows = score_rows(a.db_dirs, a.task, a.model, a.runs)
    if not rows:
        print(f"score_pool: error: no successful record of {a.task} under {' '.join(a.db_dirs)}", file=sys.stderr)
        return 2
    for run in dict.fromkeys(r[0] for r in rows):
        print(run)
        for _, m, p, e, ln in sorted((r for r in rows if r[0] == run), key=lambda r: r[1])[:5]:
            print(f"   measured {m:.4f}  model {p:.4f}  analytical {e:.4f}  blocks x warps, smem {ln}")
    if a.families:
        print(families(rows, a.families))
    m, p, e = (np.array([r[i] for r in rows]) for i in (1, 2, 3))
    fast = m <= np.quantile(m, 0.25)
    print(f"{len(rows)} records: Kendall tau model {kendall_tau(m, p):.2f}, analytical {kendall_tau(m, e):.2f}; "
          f"fastest quarter ({fast.sum()}): model {kendall_tau(m[fast], p[fast]):.2f}, "
          f"analytical {kendall_tau(m[fast], e[fast]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
