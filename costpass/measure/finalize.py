"""Turn what a measurement round brought back into a committed dataset file.

    python3 -m costpass.measure.finalize --records /work/.device/N/measure.jsonl \
        --manifest carry/bundle_v1/manifest.jsonl [--manifest carry/bundle_v2/manifest.jsonl] \
        --out datasets/h100/r2.jsonl.xz

Adds each candidate's schedule (its MetaSchedule trace JSON, from the bundle manifest) to its record, so
a dataset file is self-contained: the model code re-creates the scheduled module from the record alone.
Lines that cannot be read are reported (file:line) and skipped by the loader; nothing is invented.
"""
from __future__ import annotations

import argparse
import json
import sys

from costpass.data import load, write_compressed
from costpass.measure.snapshot import _lines
from pathlib import Path


def finalize(records_path: str, manifests: list[str], out: str) -> dict:
    traces = {}
    for m in manifests:
        for e in _lines(Path(m)):
            traces[e["id"]] = e.get("trace_json", "")
    problems: list = []
    recs = load(records_path, problems=problems)
    missing = 0
    for r in recs:
        r.trace_json = traces.get(r.candidate_id, r.trace_json)
        if not r.trace_json:
            missing += 1
    write_compressed(recs, out)
    return {"records": len(recs), "without_trace": missing, "unreadable_lines": len(problems), "out": out}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m costpass.measure.finalize")
    ap.add_argument("--records", required=True)
    ap.add_argument("--manifest", action="append", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    print(json.dumps(finalize(a.records, a.manifest, a.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
