"""Run-to-run spread: candidates measured twice, in two separate runs (different machine leases).

    python3 benchmarks/noise.py [--gpu h100] [--remeasure datasets/noise/h100_r2_remeasure.jsonl.xz]
"""
import argparse

import numpy as np

from costpass import data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", default="h100")
    ap.add_argument("--remeasure", default="datasets/noise/h100_r2_remeasure.jsonl.xz")
    a = ap.parse_args()
    first = {r.candidate_id: r.median_ms for r in data.load(a.gpu) if r.status == "ok"}
    again = {r.candidate_id: r.median_ms for r in data.load(a.remeasure) if r.status == "ok"}
    d = np.array([abs(again[k] / first[k] - 1) for k in again if k in first])
    print(f"{len(d)} candidates: median |second/first - 1| {100 * np.median(d):.2f}%, "
          f"p90 {100 * np.percentile(d, 90):.2f}%, max {100 * d.max():.2f}%")


if __name__ == "__main__":
    main()
