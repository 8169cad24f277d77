#!/usr/bin/env python3
"""Identity check of the demand pass: the KernelDemand records of a fixed sample of dataset candidates
must stay byte-identical across speed work on ``costpass/demand.py``.

    python3 benchmarks/demand_identity.py --write      # (re)build the reference from the current code
    python3 benchmarks/demand_identity.py              # check the current code against the reference
    python3 benchmarks/demand_identity.py --batch      # the same through demand.extract_many (list API)
    python3 benchmarks/demand_identity.py --against REV [--limit N]
                                    # every dataset candidate with a trace (datasets/h100/r1..r3): records
                                    # of costpass/demand.py at git revision REV vs this tree, same process

The sample: up to ``--per`` candidates of every workload found in the committed H100 dataset files
(``datasets/h100/r1..r3``; seeded choice, sorted ids), rebuilt from their MetaSchedule traces with
``costpass.measure.candidates.apply_trace``. For every candidate the reference holds the canonical JSON of
``[d.to_dict() for d in demand.extract(mod)]`` (or the DemandError text when lowering fails), plus the
module's structural hash (so a change in trace replay is told apart from a change in the pass).
Reference: ``benchmarks/results/demand_identity_ref.jsonl.xz``. Exit code 1 on any difference.
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import random
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

REF = os.path.join(REPO, "benchmarks", "results", "demand_identity_ref.jsonl.xz")
FILES = [os.path.join(REPO, "datasets", "h100", f"r{i}.jsonl.xz") for i in (1, 2, 3)]


def sample(per: int, seed: int = 0) -> list:
    """[(candidate_id, workload, trace_json)] of up to ``per`` candidates per workload."""
    from costpass import data, evaluate as E
    by: dict = {}
    for path in FILES:
        for r in data.load(path):
            tj = E.record_trace(r)
            if tj:
                by.setdefault(r.workload, {})[r.candidate_id] = tj
    rng = random.Random(seed)
    out = []
    for wl in sorted(by):
        ids = sorted(by[wl])
        rng.shuffle(ids)
        out += [(cid, wl, by[wl][cid]) for cid in ids[:per]]
    return out


def all_candidates() -> list:
    """[(candidate_id, workload, trace_json)] of every candidate of FILES with a trace, sorted by id."""
    from costpass import data, evaluate as E
    out = {}
    for path in FILES:
        for r in data.load(path):
            tj = E.record_trace(r)
            if tj:
                out[r.candidate_id] = (r.workload, tj)
    return [(cid, wl, tj) for cid, (wl, tj) in sorted(out.items())]


def against(rev: str, limit: int | None) -> int:
    """Records of demand.py at ``rev`` vs this tree on every dataset candidate."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    from bench_costmodel import _load_demand_at
    from costpass import demand
    from costpass.measure.candidates import apply_trace
    old = _load_demand_at(rev)
    items = all_candidates()
    if limit:
        items = items[:limit]
    t0 = time.time()
    bad = n = varies = 0
    for k, (cid, wl, tj) in enumerate(items):
        try:
            mod = apply_trace(wl, tj).mod
        except Exception:  # noqa: BLE001 - a trace that no longer applies is not the demand pass's business
            continue
        n += 1
        a, b = record_of(old, mod), record_of(demand, mod)
        if a != b:
            # TVM 0.27's structural_hash hashes a free var by its address and combines almost linearly
            # (hash(v % 2) and hash(v % 4) differ by 2), so distinct index expressions collide in some
            # runs and not in others: the CSE of _count_ops then merges them. Such a candidate gives
            # varying records from run to run with either revision; tell it from a real difference by
            # lowering and walking it again a few times with both.
            olds = {a} | {record_of(old, mod) for _ in range(5)}
            news = {b} | {record_of(demand, mod) for _ in range(5)}
            if olds & news and (len(olds) > 1 or len(news) > 1):
                varies += 1
                print(f"VARIES {cid} ({wl}): {len(olds)} distinct records in 6 runs of {rev}, "
                      f"{len(news)} of this tree, shared: {len(olds & news)}", flush=True)
            else:
                bad += 1
                print(f"DIFF {cid} ({wl})", flush=True)
        if (k + 1) % 250 == 0:
            print(f"{k + 1}/{len(items)} checked, {bad} differ, {varies} vary run to run "
                  f"({time.time() - t0:.0f} s)", flush=True)
    print(f"against {rev}: {n - bad - varies} of {n} candidates identical, {varies} whose records vary from "
          f"run to run with both revisions (same set of values), {bad} DIFFER")
    return 1 if bad else 0


def record_of(demand, mod) -> str:
    try:
        ds = demand.extract(mod)
    except demand.DemandError as e:
        return json.dumps({"error": str(e)})
    return json.dumps([d.to_dict() for d in ds], sort_keys=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="write the reference instead of checking")
    ap.add_argument("--per", type=int, default=6, help="candidates per workload (with --write)")
    ap.add_argument("--batch", action="store_true", help="check demand.extract_many over the whole list")
    ap.add_argument("--ref", default=REF)
    ap.add_argument("--against", metavar="REV", help="compare with demand.py at this git revision instead")
    ap.add_argument("--limit", type=int, default=None, help="with --against: first N candidates only")
    a = ap.parse_args(argv)
    if a.against:
        return against(a.against, a.limit)

    import tvm_ffi
    from costpass import demand
    from costpass.measure.candidates import apply_trace

    if a.write:
        items = sample(a.per)
    else:
        with lzma.open(a.ref, "rt") as f:
            refs = [json.loads(line) for line in f]
        items = [(r["id"], r["workload"], r["trace_json"]) for r in refs]
    t0 = time.time()
    mods = []
    for cid, wl, tj in items:
        mods.append(apply_trace(wl, tj).mod)
    t1 = time.time()
    print(f"{len(items)} candidates of {len({w for _, w, _ in items})} workloads; traces applied in "
          f"{t1 - t0:.1f} s", flush=True)
    if a.batch:
        recs = []
        for res in demand.extract_many(mods):
            if isinstance(res, demand.DemandError):
                recs.append(json.dumps({"error": str(res)}))
            elif isinstance(res, Exception):
                recs.append(json.dumps({"error": f"{type(res).__name__}: {res}"}))
            else:
                recs.append(json.dumps([d.to_dict() for d in res], sort_keys=True))
    else:
        recs = [record_of(demand, m) for m in mods]
    t2 = time.time()
    print(f"demand of {len(mods)} candidates in {t2 - t1:.1f} s ({1e3 * (t2 - t1) / len(mods):.1f} ms each)",
          flush=True)

    if a.write:
        with lzma.open(a.ref, "wt") as f:
            for (cid, wl, tj), m, rec in zip(items, mods, recs):
                f.write(json.dumps({"id": cid, "workload": wl, "trace_json": tj,
                                    "shash": str(tvm_ffi.structural_hash(m)), "demand": rec}) + "\n")
        n_err = sum(1 for r in recs if r.startswith('{"error"'))
        print(f"wrote {a.ref}: {len(recs)} candidates ({n_err} with a DemandError)")
        return 0

    bad = varies = 0
    for r, m, rec in zip(refs, mods, recs):
        if str(tvm_ffi.structural_hash(m)) != r["shash"]:
            print(f"{r['id']} ({r['workload']}): the rebuilt module differs from the reference's")
            bad += 1
        elif rec != r["demand"] and any(record_of(demand, m) == r["demand"] for _ in range(8)):
            # records that vary from run to run (TVM's address-dependent structural_hash, see against())
            varies += 1
            print(f"VARIES {r['id']} ({r['workload']}): the reference's records came back on a retry")
        elif rec != r["demand"]:
            bad += 1
            if bad <= 10:
                want, got = json.loads(r["demand"]), json.loads(rec)
                print(f"DIFF {r['id']} ({r['workload']}):")
                if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
                    for k, (x, y) in enumerate(zip(want, got)):
                        for key in sorted(set(x) | set(y)):
                            if x.get(key) != y.get(key):
                                print(f"  kernel {k} {key}: {x.get(key)} != {y.get(key)}"[:600])
                else:
                    print(f"  {r['demand'][:300]}\n  {rec[:300]}")
    print(f"identity: {len(refs) - bad - varies} of {len(refs)} identical"
          + (f", {varies} equal to the reference on a retry (records that vary run to run)" if varies else "")
          + ("" if not bad else f", {bad} DIFFER"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
