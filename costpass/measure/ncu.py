#!/usr/bin/env python3
"""Hardware counters of bundle candidates under Nsight Compute, one JSON line per (candidate, kernel).

    python3 ncu.py --bundle DIR|FILE.tar.xz --out NCU.jsonl (--ids a,b,c | --ids-file F | --first N
                   | --from-records measure.jsonl --first N)
                   [--ncu /usr/local/cuda/bin/ncu] [--kernel-regex main_kernel] [--raw-out RAW.txt]

The driver starts ``ncu ... python3 ncu.py --target ...``; the target loads each candidate with
``gpu_run.py``'s code (same cubin cache, same inputs), prints a marker line, calls the entry function
once (one launch of each of its kernels) and synchronizes. Rows of ncu's CSV come in launch
order and are assigned to candidates in that order, using the kernel names the target read from each
candidate's CUDA source (checked against the row's kernel name; see ``map_kernels``). Values are kept raw (base units,
``--print-units base``); prefixed units are scaled to base units when ncu still prints them.

Clocks are left as they are (``--clock-control none``); caches are flushed before each replay pass
(ncu's default ``--cache-control all``), so DRAM bytes are those of a cold cache.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

try:
    from . import gpu_run as G
    from . import records as R
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gpu_run as G  # type: ignore
    import records as R  # type: ignore

PIPES = ("fma", "fmaheavy", "fmalite", "fma_type_fp16", "alu", "xu", "lsu", "adu", "cbu", "uniform",
         "fp64", "tensor")
METRICS = (
    [f"smsp__inst_executed_pipe_{p}.sum" for p in PIPES]
    + ["smsp__inst_executed_pipe_tensor_op_hmma.sum", "smsp__inst_executed_pipe_tensor_op_gmma.sum",
       "smsp__inst_executed_pipe_tensor_op_imma.sum",
       "smsp__inst_executed.sum",
       "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum",
       "dram__bytes_read.sum", "dram__bytes_write.sum", "lts__t_bytes.sum",
       "launch__registers_per_thread", "launch__grid_size", "launch__block_size",
       "gpu__time_duration.sum", "sm__warps_active.avg.pct_of_peak_sustained_active"]
)
# not yet seen working on the H100 machine: dropped (and reported) if ncu does not know them
OPTIONAL_METRICS = [
    "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
    "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum",
    "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum",
    "launch__shared_mem_per_block_dynamic",
    "launch__shared_mem_per_block_static",
    # listed by ncu --query-metrics on the H100 (2026-11-23), not yet profiled there
    "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_atom.sum",
    "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_gmma.sum",
    "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_misc.sum",
    "smsp__inst_executed_pipe_tensor_op_hmma_type_hfma2.sum",
    "smsp__inst_executed_pipe_tensor_op_dmma.sum",
]
# columns of the raw page kept besides the requested metrics (the rest, device__attribute_*,
# nvlink__*, per-unit .avg/.min/.max, ..., is dropped unless --keep-all)
KEEP_PREFIXES = ("launch__", "sm__maximum_warps_per_active_cycle_pct")

MARK = "@@COSTPASS_CAND"
PROF_RE = re.compile(r'==PROF== Profiling "([^"]+)"(?: - |: )(\d+)')
UNIT_SCALE = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "k": 1e3}
TIME_SCALE = {"nsecond": 1.0, "usecond": 1e3, "msecond": 1e6, "second": 1e9}


def find_ncu(path: str | None) -> str:
    for p in (path, shutil.which("ncu"), "/usr/local/cuda/bin/ncu"):
        if p and os.path.exists(p):
            return p
    raise FileNotFoundError("ncu not found (give --ncu)")


def base_name(metric: str) -> str:
    return metric.split(".")[0]


def query_metric_names(ncu: str) -> set[str] | None:
    """Base metric names this device knows (``ncu --query-metrics``), or None if that fails."""
    try:
        r = subprocess.run([ncu, "--query-metrics"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = {ln.split()[0] for ln in r.stdout.splitlines()
             if ln.strip() and re.match(r"^[a-z0-9]+__\w+", ln.split()[0])}
    return names if len(names) > 50 else None


# ----------------------------------------------------------------------------------------------
# target: runs inside ncu
# ----------------------------------------------------------------------------------------------

def target_main(a) -> int:
    import torch

    bundle = a.bundle
    entries = {e["id"]: e for e in G.read_manifest(bundle)}
    with open(a.plan) as f:
        ids = json.load(f)["ids"]
    torch.cuda.init()
    arch = G.device_arch()
    cache = G.CubinCache(os.path.join(bundle, "cubins"), arch, use_cache=(arch == "sm_90a"))
    G.setup_tvm(cache)
    side = []
    wl = None
    for i, cid in enumerate(ids):
        e = entries[cid]
        if wl is None or wl.name != e["workload"]:
            wl = None
            torch.cuda.empty_cache()
            wl = G.Workload(e["workload"], e, G.workload_seed(e["workload"]))
        cache.reset()
        item = {"index": i, "id": cid, "workload": e["workload"]}
        try:
            mod, fn = G.load_entry(G.entry_lib(bundle, e), e.get("entry", "main"))
            wl.poison_outputs()
            torch.cuda.synchronize()
            sys.stdout.write(f"{MARK} {i} {cid}\n")
            sys.stdout.flush()
            fn(*wl.args)
            torch.cuda.synchronize()
            item["status"] = "ok"
            del fn, mod
        except Exception as ex:  # noqa: BLE001
            item["status"] = "error"
            item["error"] = str(ex)[-2000:]
            print(f"[ncu target] {cid}: {ex}", file=sys.stderr, flush=True)
            if not G.context_ok():
                item["poisoned"] = True
                side.append(item | {"kernels": [k for ev in cache.events for k in ev["kernels"]]})
                break
        item["kernels"] = [k for ev in cache.events for k in ev["kernels"]]
        item["cubins"] = cache.summary()
        side.append(item)
    sys.stdout.write(f"{MARK} end\n")
    sys.stdout.flush()
    with open(a.sidecar, "w") as f:
        json.dump(side, f)
    return 0


# ----------------------------------------------------------------------------------------------
# parsing ncu's output
# ----------------------------------------------------------------------------------------------

def _value(v: str):
    v = v.strip()
    if v in ("", "n/a", "N/A"):
        return None
    try:
        x = float(v.replace(",", ""))
    except ValueError:
        return v
    return int(x) if x.is_integer() and abs(x) < 2**63 else x


def _to_base(val, unit: str):
    """Scale a value printed with a prefixed unit (Kbyte, usecond, ...) to its base unit."""
    if not isinstance(val, (int, float)) or not unit:
        return val, unit
    if unit in TIME_SCALE:
        return val * TIME_SCALE[unit], "nsecond"
    if len(unit) > 1 and unit[0] in UNIT_SCALE and unit[1:] in ("byte", "inst", "sector", "request",
                                                                "cycle", "warp", "thread", "block",
                                                                "byte/second", "wavefront"):
        return val * UNIT_SCALE[unit[0]], unit[1:]
    return val, unit


def parse_csv_rows(text: str, keep: "set[str] | None" = None) -> list[dict]:
    """Kernels of ncu --csv output (``--page raw`` wide or ``--page details`` long format):
    [{"ncu_id", "kernel", "block_size", "grid_size", "device", "cc", "metrics", "units"}]."""
    lines = [ln for ln in text.splitlines() if ln.startswith('"')]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    kernels: dict[int, dict] = {}
    header = None
    header_units: dict = {}
    units_row_next = False
    for row in rows:
        if row and row[0] == "ID":
            header = row
            units_row_next = "Metric Name" not in header
            continue
        if header is None or len(row) != len(header):
            continue
        rec = dict(zip(header, row))
        if units_row_next:  # raw page: second line holds units
            units_row_next = False
            if not rec.get("ID", "").strip().isdigit():
                header_units = rec
                continue
        try:
            kid = int(rec["ID"])
        except ValueError:
            continue
        k = kernels.setdefault(kid, {"ncu_id": kid, "kernel": rec.get("Kernel Name", ""),
                                     "block_size": rec.get("Block Size", ""),
                                     "grid_size": rec.get("Grid Size", ""),
                                     "device": rec.get("Device", ""), "cc": rec.get("CC", ""),
                                     "metrics": {}, "units": {}})
        if "Metric Name" in header:
            name, unit = rec["Metric Name"], rec.get("Metric Unit", "")
            if keep is not None and name not in keep and not name.startswith(KEEP_PREFIXES):
                continue
            val, unit = _to_base(_value(rec["Metric Value"]), unit)
            k["metrics"][name] = val
            k["units"][name] = unit
        else:
            for col in header:
                if "__" not in col:
                    continue
                if keep is not None and col not in keep and not col.startswith(KEEP_PREFIXES):
                    continue
                unit = header_units.get(col, "")
                val, unit = _to_base(_value(rec[col]), unit)
                k["metrics"][col] = val
                k["units"][col] = unit
    return [kernels[i] for i in sorted(kernels)]


def map_kernels(text: str, sidecar: list[dict], kernels: list[dict]) -> tuple[dict[int, str], str]:
    """ncu ID -> candidate id.

    ncu prints rows in launch order; the target launched the candidates in sidecar order, each
    launching the kernels its CUDA source defines (names in the sidecar). Rows are assigned in that
    order and the names are checked ("sequential_by_source"; "_names_differ" if a name does not
    match). ``==PROF== Profiling "name" - ID`` lines between the target's markers, where ncu prints
    them (it does not with --csv, as seen on the H100 machine), are used first ("prof_lines")."""
    cur = None
    by_prof: dict[int, str] = {}
    for ln in text.splitlines():
        if ln.startswith(MARK):
            parts = ln.split()
            cur = parts[2] if len(parts) > 2 else None
            continue
        m = PROF_RE.search(ln)
        if m and cur is not None:
            by_prof[int(m.group(2))] = cur
    expected = {s["id"]: len(s.get("kernels") or []) for s in sidecar if s.get("status") == "ok"}
    ids = sorted(k["ncu_id"] for k in kernels)
    name_of = {k["ncu_id"]: k["kernel"] for k in kernels}
    count: dict[str, int] = {}
    for i in ids:
        if i in by_prof:
            count[by_prof[i]] = count.get(by_prof[i], 0) + 1
    if ids and all(i in by_prof for i in ids) and all(count.get(c, 0) == n for c, n in expected.items()):
        return by_prof, "prof_lines"
    seq: dict[int, str] = {}
    it = iter(ids)
    ok, names_ok = True, True
    for s in sidecar:
        if s.get("status") != "ok":
            continue
        for kname in s.get("kernels") or []:
            try:
                i = next(it)
            except StopIteration:
                ok = False
                break
            seq[i] = s["id"]
            names_ok &= (name_of.get(i) == kname)
    if ok and len(seq) == len(ids):
        return seq, "sequential_by_source" + ("" if names_ok else "_names_differ")
    return by_prof or seq, "uncertain"


def ncu_version(ncu: str) -> str:
    try:
        r = subprocess.run([ncu, "--version"], capture_output=True, text=True, timeout=60)
        return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------

def select_ids(entries: list[dict], a) -> list[str]:
    if a.ids:
        want = [s for s in a.ids.split(",") if s]
    elif a.ids_file:
        with open(a.ids_file) as f:
            want = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    elif a.from_records:
        # N candidates per workload that ran ok in a gpu_run output, spread over their speed range
        by_wl: dict[str, list] = {}
        for r in R.read_records(a.from_records):
            if r.status == "ok" and r.median_ms is not None:
                by_wl.setdefault(r.workload, []).append(r)
        n = a.first or 3
        want = []
        for wl, rs in by_wl.items():
            rs = sorted({r.candidate_id: r for r in rs}.values(), key=lambda r: r.median_ms)
            k = min(n, len(rs))
            idx = sorted({round(i * (len(rs) - 1) / max(k - 1, 1)) for i in range(k)})
            want += [rs[i].candidate_id for i in idx]
    elif a.first:
        want = []
        for _, es in G.group_by_workload(entries):
            want += [e["id"] for e in es[: a.first]]
    else:
        want = [e["id"] for e in entries]
    known = {e["id"] for e in entries}
    missing = [w for w in want if w not in known]
    if missing:
        raise SystemExit(f"ids not in the manifest: {missing[:10]}")
    order = {e["id"]: i for i, e in enumerate(entries)}
    wl_first = {}
    for e in entries:
        wl_first.setdefault(e["workload"], order[e["id"]])
    by = {e["id"]: e for e in entries}
    # grouped by workload so inputs are allocated once per workload
    return sorted(dict.fromkeys(want), key=lambda c: (wl_first[by[c]["workload"]], order[c]))


def run_ncu(a, bundle: str, ids: list[str], metrics: list[str], ncu: str, workdir: str):
    plan = os.path.join(workdir, "plan.json")
    side = os.path.join(workdir, "sidecar.json")
    with open(plan, "w") as f:
        json.dump({"ids": ids}, f)
    cmd = [ncu, "--metrics", ",".join(metrics), "--csv", "--page", a.page, "--print-units", "base",
           "--target-processes", "all", "--clock-control", a.clock_control,
           "--cache-control", a.cache_control, "-k", f"regex:{a.kernel_regex}",
           sys.executable, os.path.abspath(__file__), "--target", "--bundle", bundle, "--plan", plan,
           "--sidecar", side]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                       timeout=a.timeout_s)
    wall = time.time() - t0
    sidecar = []
    if os.path.exists(side):
        with open(side) as f:
            sidecar = json.load(f)
    return r.returncode, r.stdout, sidecar, wall, cmd


def main(argv=None) -> int:
    import warnings

    warnings.formatwarning = lambda msg, cat, fn, ln, line=None: f"[ncu] warning: {msg}\n"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--out", help="JSONL, one line per (candidate, kernel); appended")
    p.add_argument("--ids", help="comma-separated candidate ids")
    p.add_argument("--ids-file")
    p.add_argument("--first", type=int, help="the first N candidates of each workload (with "
                   "--from-records: N ok candidates per workload, fastest to slowest)")
    p.add_argument("--from-records", help="a gpu_run output: pick candidates that ran ok")
    p.add_argument("--ncu")
    p.add_argument("--kernel-regex", default="main_kernel")
    p.add_argument("--extra-metrics", default="", help="comma list added to the default metrics")
    p.add_argument("--page", default="raw", choices=["raw", "details"])
    p.add_argument("--clock-control", default="none", choices=["none", "base"])
    p.add_argument("--cache-control", default="all", choices=["all", "none"])
    p.add_argument("--raw-out", help="keep ncu's whole output here")
    p.add_argument("--tag", default="")
    p.add_argument("--timeout-s", type=float, default=1800, help="limit for one ncu invocation")
    p.add_argument("--batch", type=int, default=16, help="candidates per ncu invocation (each one "
                   "costs ~5 s to start; a batch's results are written when it ends)")
    p.add_argument("--budget-s", type=float, default=None, help="start no batch after S seconds")
    p.add_argument("--no-query", action="store_true", help="skip ncu --query-metrics")
    p.add_argument("--keep-all", action="store_true", help="keep every column of the raw page")
    p.add_argument("--target", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    p.add_argument("--sidecar", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.target:
        return target_main(a)
    if not a.out:
        p.error("--out is required")
    bundle = G.open_bundle(a.bundle)
    entries = G.read_manifest(bundle)
    ids = select_ids(entries, a)
    ncu = find_ncu(a.ncu)
    metrics = list(dict.fromkeys(METRICS + [m for m in a.extra_metrics.split(",") if m]))
    optional = list(OPTIONAL_METRICS)
    dropped = []
    known = None if a.no_query else query_metric_names(ncu)
    if known is not None:
        for m in list(optional):
            if not m.startswith("launch__") and base_name(m) not in known:
                optional.remove(m)
                dropped.append(m)
        for m in list(metrics):
            if not m.startswith("launch__") and base_name(m) not in known:
                metrics.remove(m)
                dropped.append(m)
    print(f"[ncu] {len(ids)} candidates, {len(metrics) + len(optional)} metrics"
          + (f"; ncu does not know {dropped}" if dropped else ""), flush=True)
    by = {e["id"]: e for e in entries}
    done = R.recorded_ids(a.out) if os.path.exists(a.out) else set()
    if done & set(ids):
        print(f"[ncu] {len(done & set(ids))} candidates already in {a.out}: skipped", flush=True)
        ids = [c for c in ids if c not in done]
    info = {}
    vals = G._smi(["name", "driver_version"])
    if vals:
        info = {"gpu": vals[0], "driver": vals[1]}
    ver = ncu_version(ncu)
    t0 = time.time()
    raw = open(a.raw_out, "w") if a.raw_out else None
    w = R.JsonlWriter(a.out)
    n_rows, n_cands, rc_all, shown = 0, 0, 0, 0
    failed: list[dict] = []
    batches = [ids[i:i + a.batch] for i in range(0, len(ids), a.batch)]
    for bi, batch in enumerate(batches):
        if a.budget_s and time.time() - t0 > a.budget_s:
            print(f"[ncu] budget reached: {len(batches) - bi} batches not profiled", flush=True)
            break
        with tempfile.TemporaryDirectory() as wd:
            rc, text, sidecar, wall, cmd = run_ncu(a, bundle, batch, metrics + optional, ncu, wd)
            if rc != 0 and optional and re.search(r"metric", text, re.I) and not n_rows:
                # an optional metric may be unknown to this ncu: retry with the required ones only
                bad = [m for m in optional if m in text or base_name(m) in text] or optional
                print(f"[ncu] ncu failed (rc={rc}); retrying without {bad}", flush=True)
                dropped += bad
                optional = [m for m in optional if m not in bad]
                rc, text, sidecar, wall, cmd = run_ncu(a, bundle, batch, metrics + optional, ncu, wd)
        rc_all = rc_all or rc
        if raw:
            raw.write(" ".join(cmd) + "\n\n" + text + "\n")
            raw.flush()
        kernels = parse_csv_rows(text, None if a.keep_all else set(metrics + optional))
        mapping, how = map_kernels(text, sidecar, kernels)
        side_by = {s["id"]: s for s in sidecar}
        per_cand: dict[str, int] = {}
        for k in kernels:
            cid = mapping.get(k["ncu_id"])
            e = by.get(cid, {})
            kidx = per_cand.get(cid, 0)
            per_cand[cid] = kidx + 1
            w.append({
                "candidate_id": cid, "workload": e.get("workload"), "origin": e.get("origin", ""),
                "kernel": k["kernel"], "kernel_index": kidx, "ncu_id": k["ncu_id"],
                "block_size": k["block_size"], "grid_size": k["grid_size"],
                "metrics": k["metrics"], "units": k["units"],
                "expected_kernels": (side_by.get(cid) or {}).get("kernels"),
                "mapping": how, "gpu": info.get("gpu", k.get("device", "")), "driver": info.get("driver", ""),
                "cc": k.get("cc", ""), "date": G.now_iso(), "ncu_version": ver,
                "clock_control": a.clock_control, "cache_control": a.cache_control,
                "metrics_dropped": dropped, "tag": a.tag,
                "costpass_commit": e.get("costpass_commit", ""), "tvm_version": e.get("tvm_version", ""),
            })
            n_rows += 1
            if shown < 20:
                shown += 1
                m = k["metrics"]
                print(f"  {str(cid)[:24]:<24} {k['kernel'][:16]:<16} "
                      f"t={m.get('gpu__time_duration.sum')} ns inst={m.get('smsp__inst_executed.sum')} "
                      f"hmma={m.get('smsp__inst_executed_pipe_tensor_op_hmma.sum')} "
                      f"dram_r={m.get('dram__bytes_read.sum')} regs={m.get('launch__registers_per_thread')}")
        n_cands += len(per_cand)
        failed += [s for s in sidecar if s.get("status") != "ok"]
        missing = [c for c in batch if c not in side_by]
        print(f"[ncu] batch {bi + 1}/{len(batches)}: rc={rc}, {sum(per_cand.values())} kernel rows for "
              f"{len(per_cand)} of {len(batch)} candidates, mapping={how}, {wall:.1f} s"
              + (f"; not reached: {len(missing)} (a candidate before them poisoned the context?)"
                 if missing else ""), flush=True)
        if not kernels:
            print(text[-3000:], flush=True)
    w.close()
    if raw:
        raw.close()
    wall = time.time() - t0
    print(f"[ncu] {n_rows} kernel rows for {n_cands} candidates in {wall:.1f} s "
          f"({wall / max(len(ids), 1):.2f} s per candidate)", flush=True)
    for s in failed:
        print(f"[ncu]   {s['id']}: {s.get('error', '')[:200]}", flush=True)
    if n_rows == 0 and ids:
        return 1
    return 0 if rc_all == 0 else 2

if __name__ == "__main__":
    sys.exit(main())
