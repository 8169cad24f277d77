"""Per-workload ranking quality of one method, from benchmarks/results/evaluate.json.

    python3 benchmarks/per_workload.py [--scenario "h100 leave-workload-out"] [--method analytical]
"""
import argparse
import json
from pathlib import Path

RES = Path(__file__).parent / "results"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="h100 leave-workload-out")
    ap.add_argument("--method", default="analytical")
    a = ap.parse_args()
    d = json.loads((RES / "evaluate.json").read_text())
    m = d["scenarios"][a.scenario]["methods"][a.method]
    lines = [f"# {a.method}: per workload ({a.scenario})", "",
             f"From `benchmarks/results/evaluate.json` ({d['command']}, {d['date']}); "
             f"produced by `python3 benchmarks/per_workload.py --scenario \"{a.scenario}\" --method {a.method}`.",
             f"Overall: MAPE {m['mape']:.3f}, median APE {m['median_ape']:.3f}, Kendall {m['kendall_tau']:.3f}.", "",
             "| workload | n | Kendall tau | pairwise acc. | top-1 | top-5 |", "|---|---:|---:|---:|---:|---:|"]
    for w, r in sorted(m["per_workload"].items()):
        f = lambda k: "-" if r.get(k) is None else f"{r[k]:.3f}"
        lines.append(f"| {w} | {r['n']} | {f('kendall_tau')} | {f('pairwise_acc')} | {f('top1')} | {f('top5')} |")
    out = RES / f"per_workload_{a.method}.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
