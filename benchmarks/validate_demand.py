"""Check the demand pass against Nsight Compute: counted / measured per pipe.

    python3 benchmarks/validate_demand.py --manifest h100 \
        --ncu datasets/ncu/h100_r1.jsonl.xz datasets/ncu/h100_r2.jsonl.xz [--out benchmarks/results/demand_vs_ncu]

For each profiled kernel (raw counters committed under datasets/), the candidate's schedule is
re-created from its MetaSchedule trace, the demand pass counts it, and the ratio counted/measured is
taken per pipe. Reports the median, 10th and 90th percentile ratio per pipe, overall and per operator
family, and the share of kernels within [0.8, 1.25]. Writes <out>.md and <out>.json.
"""
from __future__ import annotations

import argparse
import json
import lzma
import statistics
import time
from collections import defaultdict
from pathlib import Path

from costpass import demand
from costpass.measure.candidates import apply_trace
from schedules import workloads

# pipe -> (counted from the demand record, measured ncu metric(s))
LSU_KEYS = ("ld_global", "st_global", "ld_shared", "st_shared", "ld_local", "st_local", "atomic",
            "ldmatrix", "shuffle")
PIPES = {
    "fma": (lambda I, M: I["fp32_fma"] + I["fp32_add"] + I["fp32_mul"] + I["imad"] + I["fp16_fma"]
            + I["fp16_add"] + I["fp16_mul"] + I["bf16_fma"],
            ("smsp__inst_executed_pipe_fma.sum",)),
    "alu": (lambda I, M: I["int_alu"] + I["select"], ("smsp__inst_executed_pipe_alu.sum",)),
    "xu": (lambda I, M: I["sfu"] + I["conversion"], ("smsp__inst_executed_pipe_xu.sum",)),
    "lsu": (lambda I, M: sum(I[k] for k in LSU_KEYS), ("smsp__inst_executed_pipe_lsu.sum",)),
    "tensor": (lambda I, M: I["mma"], ("smsp__inst_executed_pipe_tensor_op_hmma.sum",
                                        "smsp__inst_executed_pipe_tensor_op_imma.sum")),
    "global_ld_sectors": (lambda I, M: M["global_load_sectors"],
                          ("l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",)),
    "global_st_sectors": (lambda I, M: M["global_store_sectors"],
                          ("l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum",)),
    "shared_wavefronts": (lambda I, M: M["shared_load_wavefronts"] + M["shared_store_wavefronts"],
                          ("l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
                           "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum")),
    "dram_read_bytes": (lambda I, M: M["dram_read_bytes"], ("dram__bytes_read.sum",)),
    "dram_bytes": (lambda I, M: M["dram_bytes"], ("dram__bytes_read.sum", "dram__bytes_write.sum")),
    "l2_bytes": (lambda I, M: M["l2_bytes"], ("lts__t_bytes.sum",)),
    "all_instructions": (lambda I, M: sum(I.values()), ("smsp__inst_executed.sum",)),
}
TARGET_PIPES = ("fma", "tensor", "lsu", "dram_read_bytes")


def _open(path):
    return lzma.open(path, "rt") if str(path).endswith(".xz") else open(path)


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def collect(manifest_path, ncu_path, limit=None):
    man = {}
    if Path(manifest_path).exists():
        with _open(manifest_path) as f:
            for line in f:
                e = json.loads(line)
                man[e["id"]] = e
    else:   # a GPU name: the measured records carry their schedules (trace JSON)
        from costpass import data
        for r in data.load(manifest_path):
            man[r.candidate_id] = {"id": r.candidate_id, "workload": r.workload, "trace_json": r.trace_json}
    rows = []
    cache = {}
    ncu = []
    for path in ([ncu_path] if isinstance(ncu_path, str) else ncu_path):
        with _open(path) as f:
            ncu += [json.loads(line) for line in f if line.strip()]
    for r in ncu[:limit]:
        cid = r["candidate_id"]
        entry = man.get(cid)
        if entry is None or not entry.get("trace_json"):
            continue
        if cid not in cache:
            wl = workloads.get(entry["workload"])
            try:
                cache[cid] = demand.extract(apply_trace(wl, entry["trace_json"]))
            except demand.DemandError as err:
                cache[cid] = err
        ds = cache[cid]
        if isinstance(ds, Exception):
            continue
        k = int(r.get("kernel_index", 0))
        if k >= len(ds):
            continue
        d = ds[k]
        m = r["metrics"]
        row = {"id": cid, "workload": entry["workload"], "family": workloads.get(entry["workload"]).family,
               "kernel": d.name, "ratios": {}, "counted": {}, "measured": {}}
        for pipe, (fc, keys) in PIPES.items():
            if not all(k2 in m and m[k2] is not None for k2 in keys[:1]):
                continue
            meas = float(sum(float(m.get(k2) or 0) for k2 in keys))
            cnt = float(fc(d.inst, d.memory))
            row["counted"][pipe], row["measured"][pipe] = cnt, meas
            if meas > 0:
                row["ratios"][pipe] = cnt / meas
        rows.append(row)
    return rows


def summarise(rows):
    def block(rs):
        out = {}
        for pipe in PIPES:
            xs = [r["ratios"][pipe] for r in rs if pipe in r["ratios"]]
            if xs:
                out[pipe] = {"n": len(xs), "median": statistics.median(xs), "p10": _pct(xs, 0.1),
                             "p90": _pct(xs, 0.9),
                             "within_0.8_1.25": sum(0.8 <= x <= 1.25 for x in xs) / len(xs)}
        return out

    fam = defaultdict(list)
    for r in rows:
        fam[r["family"]].append(r)
    return {"kernels": len(rows), "candidates": len({r["id"] for r in rows}),
            "workloads": len({r["workload"] for r in rows}), "families": sorted(fam),
            "overall": block(rows), "by_family": {f: block(rs) for f, rs in sorted(fam.items())}}


def markdown(summary, meta) -> str:
    lines = [f"# Demand pass vs Nsight Compute ({meta['gpu']})", "",
             f"{summary['kernels']} kernels of {summary['candidates']} candidates, {summary['workloads']} "
             f"workloads, families: {', '.join(summary['families'])}. Ratio = counted / measured.",
             f"Produced by `{meta['command']}` on {meta['date']}.", "",
             "| pipe | n | median | p10 | p90 | share in [0.8, 1.25] | target met |", "|---|---|---|---|---|---|---|"]
    for pipe, s in summary["overall"].items():
        ok = "yes" if 0.8 <= s["median"] <= 1.25 else "no"
        lines.append(f"| {pipe} | {s['n']} | {s['median']:.3f} | {s['p10']:.3f} | {s['p90']:.3f} | "
                     f"{s['within_0.8_1.25']:.0%} | {ok if pipe in TARGET_PIPES else '-'} |")
    lines += ["", "## Median ratio per operator family", "",
              "| family | " + " | ".join(PIPES) + " |", "|---" * (len(PIPES) + 1) + "|"]
    for fam, blk in summary["by_family"].items():
        cells = [f"{blk[p]['median']:.2f}" if p in blk else "-" for p in PIPES]
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", default="h100",
                    help="bundle manifest.jsonl, or a GPU name whose measured records carry the traces")
    ap.add_argument("--ncu", nargs="+", required=True, help="Nsight Compute record files (jsonl[.xz])")
    ap.add_argument("--out", default="benchmarks/results/demand_vs_ncu")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args()
    rows = collect(args.manifest, args.ncu, args.limit)
    summary = summarise(rows)
    with _open(args.ncu[0]) as f:
        first = json.loads(f.readline())
    meta = {"gpu": first.get("gpu", "?"), "date": time.strftime("%Y-%m-%d"),
            "command": "python3 benchmarks/validate_demand.py --manifest " + args.manifest + " --ncu " + " ".join(args.ncu)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1))
    Path(args.out + ".md").write_text(markdown(summary, meta))
    print(markdown(summary, meta))


if __name__ == "__main__":
    main()
