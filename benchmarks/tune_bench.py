"""Tuning benchmark: MetaSchedule with costpass, TVM's XGBModel and a random model on the same tasks,
trial budgets and seeds, on the GPU; plus torch references and costpass's zero-shot pick.

Sub-commands:

    # here (no GPU): costpass's zero-shot pick per task (model-only search, nothing measured)
    python3 benchmarks/tune_bench.py zero-shot --tasks T1,T2 --trials 64 --out carry/tune/zero_shot
    # here: costpass models that never saw the task's workload (leave-task-out), one per task
    python3 benchmarks/tune_bench.py heldout-models --tasks T1,T2 --out carry/tune/models
    # on the GPU machine (full TVM wheel, nvcc, torch): tuning runs, K at once, timing serialised by a lock
    python3 benchmarks/tune_bench.py run --tasks T1,T2 --models costpass,xgb,random --seeds 0 --trials 64 \
        --parallel 4 --model-dir carry/tune/models --zero-shot-dir carry/tune/zero_shot --out $OUT/tune
    # here: report (markdown, JSON, plot) from the fetched run files
    python3 benchmarks/tune_bench.py report --runs FETCHED/tune --out benchmarks/results/tune_bench

Each tuning run lives in its own MetaSchedule work_dir (``--work-root``); a run that is cut off resumes
from its database on the next call, and its database is copied under ``--out`` after every run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_TASKS = ("llama3_8b_qkv_fp16,gemv_llama3_8b_qkv_fp16,attn_pv_fp16,softmax_attn_fp32,"
                 "rmsnorm_4096_fp16,silu_mul_14336_fp16,conv_r50_c3_3x3_fp16,gemm_fp32_1024")
TASK_ROLE = {"llama3_8b_qkv_fp16": "fp16 tensor-core GEMM, prefill 512", "gemv_llama3_8b_qkv_fp16": "decode GEMV",
             "attn_pv_fp16": "attention batched matmul (P.V)", "softmax_attn_fp32": "softmax",
             "rmsnorm_4096_fp16": "RMSNorm", "silu_mul_14336_fp16": "SiLU-and-multiply",
             "conv_r50_c3_3x3_fp16": "conv2d NHWC 3x3", "gemm_fp32_1024": "fp32 GEMM"}


def _run_id(task, model, seed, trials):
    return f"{task}__{model}__s{seed}__t{trials}"


_RUN_RE = re.compile(r"(.+)__(costpass|xgb|random)__s(\d+)__t(\d+)")


def _parse_run_id(rid: str):
    """(task, model, seed, trials) of a run id (:func:`_run_id`), or None."""
    m = _RUN_RE.fullmatch(rid)
    return (m.group(1), m.group(2), int(m.group(3)), int(m.group(4))) if m else None


def _run_dirs(db_dirs):
    """(work dir, task, model, seed, trials) of every run folder holding a database under ``db_dirs``."""
    for root in db_dirs:
        for wd in sorted(Path(root).iterdir()):
            p = _parse_run_id(wd.name)
            if p and (wd / "database_tuning_record.json").exists():
                yield (wd, *p)


def _gpu_info() -> dict:
    q = "name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,temperature.gpu,power.draw"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        keys = ["name", "driver", "sm_mhz", "mem_mhz", "max_sm_mhz", "max_mem_mhz", "temp_c", "power_w"]
        return dict(zip(keys, [v.strip() for v in out.split(",")]))
    except Exception as e:  # noqa: BLE001
        return {"error": str(e)}


# ---------------------------------------------------------------------------------------------------
# one tuning run (a subprocess of `run`)
# ---------------------------------------------------------------------------------------------------

EPS_HELP = ("share of each batch MetaSchedule's evolutionary search picks at random (its default 0.05); a run with "
            "another value is a variant: give it its own --out and compare it with --runs FOLDER:MODEL")
CHECK_HELP = ("compare each candidate's output with the workload's reference kernel before timing it; a wrong one "
              "fails (off by default: the runs of 2026-11-23/24 did not check, and a protocol stays one protocol)")


def cmd_one(a) -> int:
    import logging

    from costpass import tune as T
    from costpass.measure import ms_gpu

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    model_path = None
    if a.model == "costpass" and a.model_dir == "none":  # the analytical estimate alone (with the online residual)
        model_path = "none"
    elif a.model == "costpass" and a.model_dir:
        p = Path(a.model_dir) / f"{a.task}.json.gz"
        model_path = str(p) if p.exists() else None
    cfg = T.TuneConfig(workload=a.task, work_dir=a.work_dir, gpu=a.gpu, cost_model=a.model, trials=a.trials,
                       trials_per_iter=a.per_iter, seed=a.seed, model_path=model_path, num_cores=a.cores,
                       population=a.population, eps_greedy=a.eps_greedy)
    check = ms_gpu.output_check(a.task, a.work_dir) if a.check_outputs else None
    res = T.tune(cfg, ms_gpu.gpu_builder(max_workers=a.build_workers), ms_gpu.gpu_runner(check=check))
    out = res.to_json()
    out.update(gpu_info=_gpu_info(), date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               costpass_commit=a.commit, per_iter=a.per_iter, cores=a.cores, population=a.population,
               eps_greedy=a.eps_greedy, outputs_checked=bool(a.check_outputs))
    tmp = a.out + ".part"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, a.out)
    return 0


# ---------------------------------------------------------------------------------------------------
# run: many tuning runs on the GPU machine
# ---------------------------------------------------------------------------------------------------

def _measure_trace(task, trace_json, gpu) -> dict:
    """Build and time one schedule (a MetaSchedule trace) with the same builder/runner as the tuning."""
    from tvm.s_tir import meta_schedule as ms

    from costpass.measure import ms_gpu
    from costpass.measure.build import cuda_target
    from costpass.measure.candidates import apply_trace
    from schedules import workloads as W

    if isinstance(trace_json, str):
        trace_json = json.loads(trace_json)
    mod = apply_trace(W.get(task), trace_json).mod
    target = cuda_target()
    b = ms_gpu.gpu_builder(max_workers=1).build([ms.builder.BuilderInput(mod, target)])[0]
    if b.error_msg:
        return {"error": b.error_msg[-1500:]}
    args = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    r = ms_gpu.gpu_runner().run([ms.runner.RunnerInput(b.artifact_path, "cuda", args)])[0].result()
    if r.error_msg:
        return {"error": r.error_msg[-1500:]}
    runs = [1e3 * float(s) for s in r.run_secs]
    return {"median_ms": sorted(runs)[len(runs) // 2], "run_ms": runs}


def cmd_run(a) -> int:
    out = Path(a.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "db").mkdir(parents=True, exist_ok=True)
    work_root = Path(a.work_root)
    work_root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("COSTPASS_GPU_LOCK", str(work_root / "gpu.lock"))
    env.setdefault("COSTPASS_CUBIN_CACHE", str(work_root / "cubins"))
    os.environ.update({k: env[k] for k in ("COSTPASS_GPU_LOCK", "COSTPASS_CUBIN_CACHE")})
    tasks = a.tasks.split(",")
    jobs = [(t, m, s) for s in map(int, a.seeds.split(",")) for t in tasks for m in a.models.split(",")
            if m not in ("", "none")]
    cores = max(1, a.cores // a.parallel)
    t_start = time.time()
    meta = {"gpu_info": _gpu_info(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "costpass_commit": a.commit, "argv": sys.argv, "parallel": a.parallel, "cores_per_run": cores}
    (out / f"meta_{int(t_start)}.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta), flush=True)

    def one(job):
        t, m, s = job
        rid = _run_id(t, m, s, a.trials)
        dest = out / "runs" / f"{rid}.json"
        if dest.exists():
            return rid, "done before"
        if time.time() - t_start > a.budget_s:
            return rid, "skipped: budget"
        wd = work_root / rid
        cmd = [sys.executable, str(Path(__file__).resolve()), "one", "--task", t, "--model", m, "--seed", str(s),
               "--trials", str(a.trials), "--per-iter", str(a.per_iter), "--work-dir", str(wd), "--out", str(dest),
               "--gpu", a.gpu, "--cores", str(cores), "--build-workers", str(a.build_workers),
               "--commit", a.commit, "--population", str(a.population), "--eps-greedy", str(a.eps_greedy)] + (["--model-dir", a.model_dir] if a.model_dir else []) \
            + (["--check-outputs"] if a.check_outputs else [])
        left = max(30, a.budget_s + a.grace_s - (time.time() - t_start))
        t0 = time.time()
        with open(out / "runs" / f"{rid}.log", "w") as log:
            try:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=left).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        for f in wd.glob("database_*.json"):  # the databases only (the logs are too many files to fetch)
            (out / "db" / rid).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, out / "db" / rid / f.name)
        return rid, f"rc={rc} {time.time() - t0:.0f} s"

    with ThreadPoolExecutor(a.parallel) as pool:
        for rid, status in pool.map(one, jobs):
            print(f"[tune] {rid}: {status} (t={time.time() - t_start:.0f} s)", flush=True)

    refs_path = out / "vendor.json"
    if a.vendor and not refs_path.exists() and time.time() - t_start < a.budget_s + a.grace_s:
        from schedules import workloads as W

        _write_vendor(tasks, W.get, refs_path)

    if a.zero_shot_dir and not (out / "zero_shot.json").exists() and time.time() - t_start < a.budget_s + a.grace_s:
        time_zero_shot(tasks, Path(a.zero_shot_dir), out, lambda t, trace: _measure_trace(t, trace, a.gpu), _gpu_info)
    print(f"[tune] all done in {time.time() - t_start:.0f} s", flush=True)
    return 0


def time_zero_shot(tasks, zs_dir: Path, out: Path, measure, gpu_info) -> dict:
    """Time each task's zero-shot pick (``zs_dir/TASK.json`` from ``zero-shot``) with ``measure(task, trace)``
    into ``out/zero_shot.json``. After each task the results so far go to ``zero_shot.partial.json``, so a call cut
    short by its time limit keeps what it timed (2026-11-24: 4 of 8, the rest lost), and a later call goes on from
    there. A pick that fails to build or run is recorded with its error. Each result carries the GPU state of the
    call that timed it (a later call is often another machine); the top-level ``gpu_info`` is the first call's."""
    part = out / "zero_shot.partial.json"
    old = json.loads(part.read_text()) if part.exists() else None
    now = gpu_info()
    res, gpu = (old["zero_shot"], old["gpu_info"]) if old else ({}, now)
    for t in tasks:
        p = zs_dir / f"{t}.json"
        if not p.exists() or t in res:
            continue
        z = json.loads(p.read_text())
        try:
            res[t] = dict(measure(t, z["best_trace"]), predicted_ms=z.get("best_ms"), gpu_info=now)
        except Exception as e:  # noqa: BLE001
            res[t] = {"error": f"{type(e).__name__}: {e}", "gpu_info": now}
        print(f"[zero-shot] {t}: {res[t]}", flush=True)
        part.write_text(json.dumps({"gpu_info": gpu, "zero_shot": res, "complete": False}, indent=1))
    (out / "zero_shot.json").write_text(json.dumps({"gpu_info": gpu, "zero_shot": res}, indent=1))
    part.unlink(missing_ok=True)
    return res


def _write_vendor(tasks, get, path: Path) -> dict:
    """torch references of ``tasks`` (``get(task)`` gives an object with ``name``, ``dtype``, ``params``),
    eager and from a CUDA graph (``costpass.measure.vendor``), with the GPU's state, to ``path``."""
    from costpass.measure import vendor

    refs = {}
    for t in tasks:
        try:
            refs[t] = vendor.measure_reference(get(t))
        except Exception as e:  # noqa: BLE001 - one failing reference does not lose the others
            refs[t] = {"error": f"{type(e).__name__}: {e}"}
        print(f"[vendor] {t}: {refs[t].get('median_ms', refs[t].get('error'))} ms eager, "
              f"{refs[t].get('graph', {}).get('median_ms')} ms graph", flush=True)
    doc = {"gpu_info": _gpu_info(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "timer": "costpass.measure.vendor.time_eager_and_graph", "refs": refs}
    path.write_text(json.dumps(doc, indent=1))
    return doc


def cmd_vendor(a) -> int:
    """torch references only. ``--dump FILE`` (here, full TVM) writes the tasks' name/dtype/params;
    ``--params FILE`` reads them back on a GPU machine that has only runtime-only TVM."""
    from types import SimpleNamespace

    tasks = a.tasks.split(",")
    if a.dump:
        from schedules import workloads as W

        spec = {t: {"name": w.name, "dtype": w.dtype, "params": w.params} for t, w in zip(tasks, map(W.get, tasks))}
        Path(a.dump).write_text(json.dumps(spec, indent=1))
        print(f"wrote {a.dump}")
        return 0
    if a.params:
        spec = json.loads(Path(a.params).read_text())
        get = lambda t: SimpleNamespace(**spec[t])  # noqa: E731
    else:
        from schedules import workloads as W

        get = W.get
    _write_vendor(tasks, get, Path(a.out))
    return 0


# ---------------------------------------------------------------------------------------------------
# here: zero-shot picks and held-out models
# ---------------------------------------------------------------------------------------------------

def cmd_zero_shot(a) -> int:
    from costpass import tune as T

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for t in a.tasks.split(","):
        dest = out / f"{t}.json"
        if dest.exists():
            continue
        mp = Path(a.model_dir) / f"{t}.json.gz" if a.model_dir else None
        mp = str(mp) if mp and mp.exists() else None
        b, r = T.model_builder_runner(a.gpu, mp)
        cfg = T.TuneConfig(workload=t, work_dir=str(out / "db" / t), gpu=a.gpu, cost_model="costpass",
                           trials=a.trials, trials_per_iter=a.per_iter, seed=a.seed, model_path=mp,
                           population=a.population)
        res = T.tune(cfg, b, r)
        d = res.to_json()
        d["mode"] = "zero-shot: model-only search, costpass prediction as the measurement"
        pick = T.buildable_best(cfg.work_dir, t)  # the fastest predicted schedule that TVM can build
        d["unbuilt_best_ms"], d["unbuilt_best_trace"] = d["best_ms"], d["best_trace"]
        d["best_ms"], d["best_trace"] = pick if pick else (None, None)
        dest.write_text(json.dumps(d))
        print(f"[zero-shot] {t}: predicted best {res.best_ms} ms after {res.trials} model trials, "
              f"{res.wall_s:.0f} s", flush=True)
    return 0


def cmd_heldout_models(a) -> int:
    """One costpass model per task, trained on every measured workload of ``--gpu`` except the task's
    (``benchmarks/evaluate.py``'s ``ship``, the shipped models' recipe)."""
    import numpy as np

    from costpass import evaluate as E
    from evaluate import ship  # benchmarks/evaluate.py

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = E.load_dataset(a.gpu, with_perstore=False,
                        extractor=E.Extractor(cache_dir=a.cache_dir) if a.cache_dir else None)
    for t in a.tasks.split(","):
        keep = np.array([w != t for w in ds.workloads])
        sub = ds.subset(np.flatnonzero(keep))
        p = ship(sub, "costpass-reg-resid", a.seed, str(out), name=f"{t}.json.gz", note={"held_out_workload": t})
        print(f"[heldout] {t}: trained on {len(sub)} candidates of {len(set(sub.workloads))} workloads "
              f"(left out {int((~keep).sum())}) -> {p}", flush=True)
    return 0


def cmd_collect(a) -> int:
    """Rebuild one run record per MetaSchedule database fetched from the GPU machine (folders named
    TASK__MODEL__sSEED__tTRIALS holding database_*.json): the trial history comes from the database, the
    wall time, GPU and provenance from the run's own JSON where it came back (``--run-json``) and
    from the driver logs (``--logs``: lines '[tune] RID: rc=0 312 s', summed over the calls a resumed
    run took; leave out logs of calls that only rebuilt records)."""
    from costpass import tune as T
    from costpass.cli import preload_tensor_intrinsics

    preload_tensor_intrinsics()  # databases of tensor-core runs name the wmma intrinsics
    known = {}
    for d in a.run_json or []:
        for p in Path(d).glob("*.json"):
            r = json.loads(p.read_text())
            known[p.stem] = r
    walls = {}
    for lg in a.logs or []:
        for m in re.finditer(r"\[tune\] (\S+): rc=(\S+) (\d+) s", Path(lg).read_text()):
            if m.group(2) not in ("0", "timeout"):  # a crashed start (e.g. a refused model) ran no trial
                continue
            rc0, w0 = walls.get(m.group(1), ("", 0.0))  # a run resumed over several calls: their sum
            walls[m.group(1)] = ((rc0 + "," if rc0 else "") + m.group(2), w0 + float(m.group(3)))
    try:
        metas = sorted((json.loads(Path(m).read_text()) for m in a.meta or []), key=lambda m: m.get("date") or "")
    except (ValueError, AttributeError) as e:
        print(f"tune_bench collect: error: a --meta file is not a call's meta JSON ({e})", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for wd, task, model, seed, trials in _run_dirs(a.db_dirs):
        hist = T.history(str(wd))
        rec = dict(known.get(wd.name, {}))
        rec.update(workload=task, cost_model=model, seed=seed, requested_trials=trials,
                   history_ms=hist[:trials], trials=min(len(hist), trials), failed=sum(t is None for t in hist[:trials]),
                   best_ms=_best(hist[:trials]),
                   database_records=len(hist))
        if metas and "gpu_info" not in rec:  # a run cut short wrote no record: its calls' state says where it ran
            rec.update(gpu_info=metas[-1].get("gpu_info"), date=metas[-1].get("date"),
                       costpass_commit=metas[-1].get("costpass_commit"), calls=metas, provenance="call metadata")
        rc, w = walls.get(wd.name, (None, None))
        if w is not None:  # the driver log of the call that ran the trials (a resumed call reports ~0 s)
            rec.update(wall_s=w, driver_rc=rc, wall_source="driver log")
        elif rec.get("wall_s") is not None:
            rec["wall_source"] = "run record"
        rec.pop("best_trace", None)
        (out / f"{wd.name}.json").write_text(json.dumps(rec))
        n += 1
        print(f"[collect] {wd.name}: {rec['trials']} trials (database {len(hist)}), best {rec['best_ms']}")
    print(f"[collect] {n} runs -> {out}")
    return 0


def _top_traces(wd: Path, k: int) -> list:
    """The ``k`` fastest distinct schedules of a run's database: [(trace JSON, tuning-time ms)]."""
    from costpass import tune as T
    from costpass.measure.candidates import canonical_json, trace_to_json

    best = {}
    for r in T.database_in_order(str(wd)):
        ms_ = T._record_ms(r)
        if ms_ is None:
            continue
        tj = trace_to_json(r.trace)
        key = canonical_json(tj)
        if key not in best or ms_ < best[key][1]:
            best[key] = (tj, ms_)
    return sorted(best.values(), key=lambda x: x[1])[:k]


def distinct_schedules(db_dirs: list[str]) -> dict:
    """Per run (folder name): [database records, distinct schedules among them]. MetaSchedule's search forgets what
    the database holds when a run resumes (`EvolutionarySearch`'s measured set starts empty), so a resumed run can
    spend trials measuring schedules again; this counts how many trials found something new."""
    from costpass import tune as T
    from costpass.measure.candidates import canonical_json, trace_to_json

    out = {}
    for wd, *_ in _run_dirs(db_dirs):
        keys = [canonical_json(trace_to_json(r.trace)) for r in T.database_in_order(str(wd))]
        out[wd.name] = [len(keys), len(set(keys))]
    return out


def cmd_noise(a) -> int:
    """Cross-run timing noise: schedules that two runs of the same task both measured (same trace), the
    ratio of their two tuning-time medians. It bounds how far apart two runs' bests can be by noise alone."""
    import numpy as np

    from costpass import tune as T

    by_task = {}
    for wd, task, *_ in _run_dirs(a.db_dirs):
        d = {json.dumps(trace, sort_keys=True): ms_ for trace, ms_ in T.record_rows(str(wd)) if ms_ is not None}
        by_task.setdefault(task, []).append(d)
    out = {}
    for task, dbs in sorted(by_task.items()):
        logr = [math.log(x[k] / y[k]) for i, x in enumerate(dbs) for y in dbs[i + 1:] for k in set(x) & set(y)]
        if logr:
            q = np.percentile(np.abs(logr), [50, 90])
            out[task] = {"pairs": len(logr), "median_abs_pct": round(100 * math.expm1(q[0]), 2),
                         "p90_abs_pct": round(100 * math.expm1(q[1]), 2)}
    print(json.dumps(out, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0 if out else 1


def cmd_retime_bundle(a) -> int:
    """Pack the ``--top`` fastest schedules of every run into one measurement bundle, so that the final
    bests of all models are timed again side by side in one process on the GPU (the tuning runs timed
    them in different processes while other runs loaded the machine). ``runs.json`` maps each run to its
    candidate ids; the same schedule found by two runs is one candidate."""
    from costpass.cli import preload_tensor_intrinsics
    from costpass.measure import bundle as Bu
    from costpass.measure.candidates import Candidate, candidate_id

    preload_tensor_intrinsics()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    runs, cands = {}, []
    for wd, task, *_ in _run_dirs(a.db_dirs):
        if wd.name in runs:  # two variants' folders share run ids (e.g. two eps_greedy settings): one would be lost
            print(f"tune_bench retime-bundle: error: two runs named {wd.name} in --db-dirs (a variant's folder: "
                  f"pack it into a bundle of its own)", file=sys.stderr)
            return 2
        runs[wd.name] = []
        for rank, (tj, ms_) in enumerate(_top_traces(wd, a.top)):
            cid = candidate_id(task, tj)
            runs[wd.name].append({"id": cid, "rank": rank, "tuning_ms": ms_})
            cands.append(Candidate(cid, task, f"retime:{wd.name}", 0, tj, -1, {"tuning_ms": ms_}))
    (out / "runs.json").write_text(json.dumps(runs, indent=1))
    print(f"[retime] {len(runs)} runs, {len(cands)} schedules ({len({c.id for c in cands})} distinct)", flush=True)
    print(json.dumps(Bu.pack(cands, out, log=Bu._Log(out / "progress.log"))), flush=True)
    return 0


def retimed_schedules(runs: dict, duplicates: list, records: list) -> list:
    """One row per (run, rank): the schedule's tuning-time ms, the kernel it shares its CUDA source with
    (``duplicates.jsonl`` of ``retime-bundle``), and that kernel's re-timed status, median and correctness.
    ``records``: the measurement records (the latest per candidate)."""
    alias = {d["id"]: d["same_source_as"] for d in duplicates}
    by_id = {r.candidate_id: r for r in records}
    rows = []
    for rid, tops in runs.items():
        for t in tops:
            kid = alias.get(t["id"], t["id"])
            r = by_id.get(kid)
            corr = getattr(r, "correctness", None) or {}
            rows.append({"run": rid, "rank": t.get("rank"), "id": t["id"], "kernel": kid, "tuning_ms": t.get("tuning_ms"),
                         "status": r.status if r else "missing", "retimed_ms": r.median_ms if r and r.status == "ok" else None,
                         "checked": bool(corr), "rel_l2": corr.get("rel_l2")})
    return rows


def retimed_bests(runs: dict, rows: list) -> dict:
    """Per run: the fastest re-timed median (ms) over its top schedules (``rows`` of
    :func:`retimed_schedules`), or None. Only status ok counts (a kernel whose output was wrong is no best)."""
    out = {rid: None for rid in runs}
    for row in rows:
        v = row["retimed_ms"]
        if v is not None and (out[row["run"]] is None or v < out[row["run"]]):
            out[row["run"]] = v
    return out


def cmd_retime_report(a) -> int:
    """Each task's costpass / XGBModel / random bests as re-timed side by side (``retime-bundle`` measured
    with ``gpu_run.py``), the speed-up of costpass over XGBModel and its geometric mean over the tasks whose
    runs did not all end on one kernel; then every re-timed schedule against its tuning-time latency."""
    from costpass.measure import records as R

    bundle = Path(a.bundle)
    runs = json.loads((bundle / "runs.json").read_text())
    dup_path = bundle / "duplicates.jsonl"
    dups = [json.loads(x) for x in dup_path.read_text().splitlines() if x.strip()] if dup_path.exists() else []
    rows = retimed_schedules(runs, dups, R.read_records(a.records))
    best = retimed_bests(runs, rows)
    table, kernels = {}, {}
    for rid, v in best.items():
        task, model, seed, _trials = _parse_run_id(rid)
        table.setdefault((task, seed), {})[model] = v
    for row in rows:
        kernels.setdefault(_parse_run_id(row["run"])[0], set()).add(row["kernel"])
    lines = [a.preamble, ""] if a.preamble else []
    lines += ["| task | seed | costpass | XGBModel | random | costpass speed-up vs XGBModel |", "|---|---:|---:|---:|---:|---:|"]
    speed, single = [], []
    for (task, seed), row in sorted(table.items()):
        c, x = row.get("costpass"), row.get("xgb")
        sp = x / c if c and x else None
        if len(kernels.get(task, ())) == 1:
            single.append(task)
        elif sp:
            speed.append(sp)
        lines.append(f"| {task} | {seed} | {_fmt(c)} | {_fmt(x)} | {_fmt(row.get('random'))} | "
                     f"{_fmt(sp, '.2f') + 'x' if sp else '-'} |")
    g = _geomean(speed) if speed else None
    lines += ["", f"Geometric-mean speed-up over {len(speed)} tasks: **{_fmt(g, '.2f')}x**" if g else "No speed-up to average."]
    if single:
        lines.append(f"Left out of the mean: {', '.join(sorted(set(single)))} (all runs' top schedules are one kernel).")
    wrong = [r for r in rows if r["status"] == "wrong"]
    if wrong:
        lines.append(f"Wrong output: {len(wrong)} schedule(s) ({', '.join(r['run'] + ' #' + str(r['rank']) for r in wrong)}); "
                     "they are no best above.")
    lines += ["", "Every schedule (rank in its run by tuning-time latency; kernel: the id of the first schedule with the "
              "same CUDA source; checked: output compared with the reference kernel):", "",
              "| run | rank | kernel | tuning ms | re-timed ms | re-timed / tuning | status | checked |",
              "|---|---:|---|---:|---:|---:|---|---|"]
    for r in rows:
        ratio = r["retimed_ms"] / r["tuning_ms"] if r["retimed_ms"] and r["tuning_ms"] else None
        chk = "-" if not r["checked"] else f"rel. L2 {r['rel_l2']:.1e}"
        lines.append(f"| {r['run']} | {r['rank']} | {r['kernel']} | {_fmt(r['tuning_ms'])} | {_fmt(r['retimed_ms'])} | "
                     f"{_fmt(ratio, '.2f')} | {r['status']} | {chk} |")
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    Path(a.out + ".json").write_text(json.dumps({"runs": best, "geomean_speedup": g, "left_out": sorted(set(single)),
                                                 "schedules": rows}, indent=1) + "\n")
    print("\n".join(lines[:len(table) + 8]))
    return 0


# ---------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------

def _geomean(xs):
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def _trials_to_reach(hist, target):
    best = math.inf
    for i, t in enumerate(hist):
        if t is not None:
            best = min(best, t)
        if best <= target:
            return i + 1
    return None


def _best(h):
    ok = [x for x in h if x is not None]
    return min(ok) if ok else None


def miss_cost_to_exceed(reach: list, target: float) -> float | None:
    """The trials each unmatched pair (None in ``reach``) would have to cost for the geometric mean of ``reach`` to
    reach ``target``: below it, the target holds whatever the misses cost. None when every pair matched."""
    hit = [math.log(n) for n in reach if n is not None]
    k = len(reach) - len(hit)
    return math.exp((len(reach) * math.log(target) - sum(hit)) / k) if k else None


def summarize(runs: list, vendor: dict | None = None, zero_shot: dict | None = None, noise: dict | None = None) -> dict:
    """Per task and seed: the budget every model of that seed reached (``common_trials[seed]``), each model's
    best at it; per task the mean over seeds of those bests, costpass's speedup over XGBModel (ratio of the
    means; ``speedup_by_seed`` per seed), the trials costpass needed to match XGBModel's best in each seed,
    the torch reference (its CUDA-graph time where measured) and the zero-shot pick. With ``noise`` (the
    output of ``noise``: per task the median cross-run timing difference of one schedule), also the trials
    costpass needed to come within that difference of XGBModel's best. Runs with no trial are ignored."""
    by = {}
    for r in runs:
        if r.get("trials", 0) > 0:
            by.setdefault(r["workload"], {}).setdefault(r["seed"], {})[r["cost_model"]] = r
    tasks = {}
    for t, seeds in sorted(by.items()):
        common = {sd: min(r["trials"] for r in models.values()) for sd, models in sorted(seeds.items())}
        row = {"role": TASK_ROLE.get(t, ""), "common_trials": common, "models": {}, "speedup_by_seed": {},
               "costpass_trials_to_match_xgb": [], "costpass_trials_to_match_xgb_within_noise": []}
        tol = (noise or {}).get(t, {}).get("median_abs_pct")
        names = sorted({m for models in seeds.values() for m in models})
        for m in names:
            rs = [(sd, seeds[sd][m]) for sd in sorted(seeds) if m in seeds[sd]]
            bests = {sd: _best(r["history_ms"][:common[sd]]) for sd, r in rs}
            ok = [b for b in bests.values() if b is not None]
            row["models"][m] = {"seeds": [sd for sd, _ in rs], "trials": [r["trials"] for _, r in rs],
                                "best_by_seed_ms": bests, "best_at_common_ms": sum(ok) / len(ok) if ok else None,
                                "wall_s": [r.get("wall_s") for _, r in rs], "failed": [r.get("failed") for _, r in rs]}
        for sd in sorted(seeds):
            bc = row["models"].get("costpass", {}).get("best_by_seed_ms", {}).get(sd)
            bx = row["models"].get("xgb", {}).get("best_by_seed_ms", {}).get(sd)
            if bc and bx:
                row["speedup_by_seed"][sd] = bx / bc
                hist = seeds[sd]["costpass"]["history_ms"][:common[sd]]
                row["costpass_trials_to_match_xgb"].append(_trials_to_reach(hist, bx))
                if tol is not None:
                    row["costpass_trials_to_match_xgb_within_noise"].append(_trials_to_reach(hist, bx * (1 + tol / 100)))
        c, x = row["models"].get("costpass", {}), row["models"].get("xgb", {})
        if c.get("best_at_common_ms") and x.get("best_at_common_ms"):
            row["speedup_vs_xgb"] = x["best_at_common_ms"] / c["best_at_common_ms"]
        ref = (vendor or {}).get(t, {})
        # the CUDA-graph time where there is one (no dispatch gaps, as TVM's time_evaluator), else eager
        row["torch_ms"] = ref.get("graph", {}).get("median_ms") or ref.get("median_ms")
        row["torch_eager_ms"], row["torch"] = ref.get("median_ms"), ref.get("reference")
        z = (zero_shot or {}).get(t, {})
        row["zero_shot_ms"], row["zero_shot_predicted_ms"] = z.get("median_ms"), z.get("predicted_ms")
        row["zero_shot_error"] = z.get("error")
        tasks[t] = row
    return tasks


def _fmt(v, f=".4f"):
    return "-" if v is None else format(v, f)


def load_runs(specs: list[str], drop: list[str] | None = None) -> list[dict]:
    """Run records from ``DIR`` or ``DIR:MODEL[,MODEL]`` specs (the second form keeps only those cost models'
    runs, so that one report can take costpass's runs from one batch and the others' from another). Two
    records of one (task, model, seed, trials) are refused: which one counts must be said, not guessed.
    ``drop``: record files (``FOLDER/TASK__MODEL__sSEED__tTRIALS.json``) to leave out, for a run superseded by a
    later one in another folder; a file that is not among the records read is an error (a typo must not pass
    silently)."""
    drop = {Path(d).resolve() for d in drop or []}
    runs, seen, dropped = [], {}, set()
    for spec in specs:
        folder, _, models = spec.partition(":")
        keep = set(models.split(",")) if models else None
        for p in sorted(Path(folder).glob("*.json")):
            r = json.loads(p.read_text())
            if keep is not None and r.get("cost_model") not in keep:
                continue
            r.setdefault("run_id", p.stem)  # the records of the first batch carry no requested_trials
            if p.resolve() in drop:
                dropped.add(p.resolve())
                continue
            key = _parse_run_id(r["run_id"]) or (r.get("workload"), r.get("cost_model"), r.get("seed"))
            if key in seen:
                raise ValueError(f"two run records of {key}: {seen[key]} and {p} (name the models each folder gives)")
            seen[key] = p
            runs.append(r)
    if drop - dropped:
        raise ValueError(f"--drop names no run record read: {', '.join(sorted(map(str, drop - dropped)))}")
    return runs


def headroom(tasks: dict) -> dict:
    """How much any search could gain over XGBModel among the schedules measured so far: per task with a search,
    the best that any run in the report found (every model and seed), and XGBModel's best per seed over it
    (geometric mean over seeds); ``geomean``: over tasks. Each run's best is the minimum of noisy medians, so the
    best of many runs is biased low and this bound generous."""
    per = {}
    for t, row in tasks.items():
        xgb = row["models"].get("xgb", {}).get("best_by_seed_ms", {})
        every = [b for m in row["models"].values() for b in m["best_by_seed_ms"].values() if b]
        if max(row["common_trials"].values()) <= 1 or not every or not any(xgb.values()):
            continue
        best = min(every)
        per[t] = {"best_of_all_runs_ms": best, "runs": len(every),
                  "xgb_over_best": _geomean([b / best for b in xgb.values() if b])}
    return {"tasks": per, "geomean": _geomean([v["xgb_over_best"] for v in per.values()]) if per else None}


def cmd_report(a) -> int:
    try:
        runs = load_runs(a.runs, a.drop)
    except ValueError as e:
        print(f"tune_bench report: error: {e}", file=sys.stderr)
        return 2
    vendor = json.loads(Path(a.vendor).read_text())["refs"] if a.vendor else {}
    zs = json.loads(Path(a.zero_shot).read_text())["zero_shot"] if a.zero_shot else {}
    noise = json.loads(Path(a.noise).read_text()) if a.noise else None
    tasks = summarize(runs, vendor, zs, noise)
    models = ("costpass", "xgb", "random")
    lines = ["# Tuning benchmark on the H100: costpass vs TVM XGBModel vs random", "", a.preamble or "", "",
             "| task | role | trials | costpass | XGBModel | random | costpass speedup vs XGBModel | costpass trials to match XGBModel | torch | zero-shot measured (predicted) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t, row in tasks.items():
        cells = [_fmt(row["models"].get(m, {}).get("best_at_common_ms")) for m in models]
        zs_cell = (f"{_fmt(row['zero_shot_ms'])} ({_fmt(row['zero_shot_predicted_ms'])})" if row["zero_shot_ms"]
                   else ("build failed" if row["zero_shot_error"] else "-"))
        budget = "/".join(str(n) for n in row["common_trials"].values())
        lines.append(f"| {t} | {row['role']} | {budget} | " + " | ".join(cells) +
                     f" | {_fmt(row.get('speedup_vs_xgb'), '.2f')}x | {row.get('costpass_trials_to_match_xgb', '-')} |"
                     f" {_fmt(row['torch_ms'])} | {zs_cell} |")
    searched = {t: row for t, row in tasks.items() if max(row["common_trials"].values()) > 1}
    sp = [row["speedup_vs_xgb"] for row in searched.values() if row.get("speedup_vs_xgb")]
    sp_seed = {}
    for row in searched.values():
        for sd, v in row["speedup_by_seed"].items():
            sp_seed.setdefault(sd, []).append(v)
    reach = [n for row in searched.values() for n in row.get("costpass_trials_to_match_xgb", [])]
    reach_tol = [n for row in searched.values() for n in row.get("costpass_trials_to_match_xgb_within_noise", [])]
    cap = max((n for row in searched.values() for n in row["common_trials"].values()), default=0) + 1
    vs_torch = [row["torch_ms"] / row["models"]["costpass"]["best_at_common_ms"] for row in tasks.values()
                if row["torch_ms"] and row["models"].get("costpass", {}).get("best_at_common_ms")]
    zs_ratio = [row["zero_shot_ms"] / row["models"]["costpass"]["best_at_common_ms"] for row in tasks.values()
                if row["zero_shot_ms"] and row["models"].get("costpass", {}).get("best_at_common_ms")]
    zs_pred = [abs(row["zero_shot_predicted_ms"] / row["zero_shot_ms"] - 1) for row in tasks.values()
               if row["zero_shot_ms"] and row["zero_shot_predicted_ms"]]
    summary = {"geomean_speedup_vs_xgb": _geomean(sp), "tasks_with_search": len(sp),
               "geomean_speedup_vs_xgb_by_seed": {sd: _geomean(v) for sd, v in sorted(sp_seed.items())},
               "costpass_trials_to_match_xgb": reach,
               "geomean_trials_to_match_never_as_cap": _geomean([n or cap for n in reach]) if reach else None,
               "costpass_trials_to_match_xgb_within_noise": reach_tol,
               "geomean_trials_to_match_within_noise_never_as_cap": _geomean([n or cap for n in reach_tol]) if reach_tol else None,
               "geomean_torch_over_costpass": _geomean(vs_torch),
               "geomean_zero_shot_over_tuned": _geomean(zs_ratio), "zero_shot_prediction_ape": zs_pred,
               "headroom_over_xgb": headroom(searched)}
    lines += ["", "Best latency in ms (mean over seeds) at the trial count every model of a seed reached on that task "
              "(`trials`: per seed); torch: replayed from a CUDA graph where measured so.", ""]
    if sp:
        by_seed = ", ".join(f"seed {sd}: {v:.2f}x" for sd, v in summary["geomean_speedup_vs_xgb_by_seed"].items())
        lines.append(f"- Geometric-mean speedup of costpass's best over XGBModel's best, {len(sp)} tasks with a search "
                     f"space of more than one point: **{summary['geomean_speedup_vs_xgb']:.2f}x** ({by_seed}).")
    hr = summary["headroom_over_xgb"]
    if hr["geomean"]:
        cells = ", ".join(f"{t} {v['xgb_over_best']:.2f}" for t, v in hr["tasks"].items())
        lines.append(f"- Headroom: XGBModel's best over the best any run in this report found for the task (every model and "
                     f"seed), geometric mean over {len(hr['tasks'])} tasks: **{hr['geomean']:.2f}x** ({cells}). No search "
                     f"that only finds schedules as fast as those measured here can beat XGBModel by more.")
    if reach:
        lines.append(f"- Trials costpass needed to match XGBModel's best at the same budget, per task and seed: {reach} "
                     f"(None: not matched): matched in {sum(n is not None for n in reach)} of {len(reach)}; geometric mean "
                     f"counting None as {cap}, a lower bound: {summary['geomean_trials_to_match_never_as_cap']:.0f}.")
    if reach and getattr(a, "trials_target", None):
        x = miss_cost_to_exceed(reach, a.trials_target)
        lines.append(f"- Against the target of {a.trials_target} trials: " + (
            "every pair matched." if x is None else
            f"the geometric mean exceeds it only if each of the {sum(n is None for n in reach)} misses would need "
            f"more than {x:.0f} trials." if x > cap else
            f"missed even counting each miss as {cap} trials."))
    if reach_tol:
        lines.append(f"- The same, counting a match when costpass came within the task's median cross-run timing noise "
                     f"of XGBModel's best (`--noise`): {reach_tol}: matched in {sum(n is not None for n in reach_tol)} of "
                     f"{len(reach_tol)}; geometric mean counting None as {cap}: "
                     f"{summary['geomean_trials_to_match_within_noise_never_as_cap']:.0f}.")
    if vs_torch:
        lines.append(f"- torch time / costpass-tuned time, geometric mean over {len(vs_torch)} tasks: "
                     f"{summary['geomean_torch_over_costpass']:.2f} (below 1: torch is faster).")
    if zs_ratio:
        lines.append(f"- Zero-shot pick (no measurement) / costpass-tuned best, geometric mean over {len(zs_ratio)} "
                     f"tasks: {summary['geomean_zero_shot_over_tuned']:.2f}; |predicted / measured - 1| of the "
                     f"picks: median {sorted(zs_pred)[len(zs_pred) // 2]:.1%}.")
    lines += ["", "Search wall time per run (s; runs shared the 16 CPU cores with other runs, as said above, so these are not "
              "comparable across tasks):", "", "| task | costpass | XGBModel | random |", "|---|---:|---:|---:|"]
    for t, row in tasks.items():
        lines.append(f"| {t} | " + " | ".join("/".join(_fmt(w, ".0f") for w in row["models"].get(m, {}).get("wall_s", []))
                                             or "-" for m in models) + " |")
    distinct = None
    if a.db_dirs:
        from costpass.cli import preload_tensor_intrinsics

        preload_tensor_intrinsics()  # databases of tensor-core runs name the wmma intrinsics
        distinct = distinct_schedules(a.db_dirs)
        lines += ["", "Distinct schedules among each run's database records (per seed, in seed order; a resumed run can measure a "
                  "schedule again: MetaSchedule's search does not load what the database already holds):", "",
                  "| task | costpass | XGBModel | random |", "|---|---:|---:|---:|"]
        for t in tasks:
            cells = []
            for m in models:
                got = [distinct.get(r.get("run_id")) for r in sorted(runs, key=lambda r: r["seed"])
                       if r["workload"] == t and r["cost_model"] == m]
                cells.append("/".join(f"{d[1]} of {d[0]}" for d in got if d) or "-")
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + ".md").write_text("\n".join(lines) + "\n")
    Path(str(out) + ".json").write_text(json.dumps({"tasks": tasks, "summary": summary, **({"distinct_schedules": distinct}
                                                    if distinct is not None else {})}, indent=1, default=str))
    _plot(runs, vendor, Path(str(out) + ".png"))
    print("\n".join(lines))
    return 0


def _plot(runs, vendor, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in runs if r.get("trials", 0) > 1]
    tasks = sorted({r["workload"] for r in runs})
    if not tasks:
        return
    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    colors = {"costpass": "tab:blue", "xgb": "tab:orange", "random": "tab:gray"}
    styles = ["-", "--", ":", "-."]
    for ax, t in zip(axes.flat, tasks):
        lo, hi = math.inf, 0.0
        for r in runs:
            if r["workload"] != t:
                continue
            best, ys = math.inf, []
            for x in r["history_ms"]:
                best = min(best, x) if x is not None else best
                ys.append(best if math.isfinite(best) else None)
            lo, hi = min(lo, best), max(hi, best if math.isfinite(best) else 0.0)
            ax.plot(range(1, len(ys) + 1), ys, color=colors.get(r["cost_model"]), alpha=0.8,
                    ls=styles[r["seed"] % len(styles)], label=f"{r['cost_model']} s{r['seed']}")
        ref = (vendor or {}).get(t, {})
        v = ref.get("graph", {}).get("median_ms") or ref.get("median_ms")
        if v:
            ax.axhline(v, color="k", ls="--", lw=1, label="torch")
            lo = min(lo, v)
        ax.set_title(t, fontsize=8)
        if math.isfinite(lo) and hi > 0:  # the end game: early trials can be 1000x slower and would flatten it
            ax.set_ylim(0.9 * lo, 1.6 * hi)
        ax.set_xlabel("trials")
        ax.set_ylabel("best ms")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("one")
    for k, d in (("--task", None), ("--model", None), ("--work-dir", None), ("--out", None), ("--gpu", "h100"),
                 ("--model-dir", None), ("--commit", "unknown")):
        o.add_argument(k, default=d, required=d is None and k != "--model-dir")
    for k, d in (("--seed", 0), ("--trials", 64), ("--per-iter", 32), ("--cores", 4), ("--build-workers", 4),
                 ("--population", 512)):
        o.add_argument(k, type=int, default=d)
    o.add_argument("--check-outputs", action="store_true", help=CHECK_HELP)
    o.add_argument("--eps-greedy", type=float, default=0.05, help=EPS_HELP)
    r = sub.add_parser("run")
    r.add_argument("--eps-greedy", type=float, default=0.05, help=EPS_HELP)
    r.add_argument("--check-outputs", action="store_true", help=CHECK_HELP)
    r.add_argument("--tasks", default=DEFAULT_TASKS)
    r.add_argument("--models", default="costpass,xgb,random")
    r.add_argument("--seeds", default="0")
    r.add_argument("--gpu", default="h100")
    r.add_argument("--model-dir", help="costpass models, one TASK.json.gz per task (held out from it); \"none\": the "
                   "analytical estimate alone, with the online residual")
    r.add_argument("--zero-shot-dir")
    r.add_argument("--out", required=True)
    r.add_argument("--work-root", default="/tmp/costpass_tune")
    r.add_argument("--commit", default="unknown")
    r.add_argument("--vendor", action="store_true")
    for k, d in (("--trials", 64), ("--per-iter", 32), ("--parallel", 4), ("--cores", 16), ("--build-workers", 4),
                 ("--budget-s", 420), ("--grace-s", 120), ("--population", 512)):
        r.add_argument(k, type=int, default=d)
    z = sub.add_parser("zero-shot")
    z.add_argument("--tasks", default=DEFAULT_TASKS)
    z.add_argument("--gpu", default="h100")
    z.add_argument("--model-dir")
    z.add_argument("--out", required=True)
    for k, d in (("--trials", 64), ("--per-iter", 32), ("--seed", 0), ("--population", 128)):
        z.add_argument(k, type=int, default=d)
    h = sub.add_parser("heldout-models")
    h.add_argument("--tasks", default=DEFAULT_TASKS)
    h.add_argument("--gpu", default="h100")
    h.add_argument("--out", required=True)
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--cache-dir", default=None, help="feature cache folder (default: costpass.evaluate's)")
    v = sub.add_parser("vendor")
    v.add_argument("--tasks", default=DEFAULT_TASKS)
    v.add_argument("--out", default="vendor.json")
    v.add_argument("--dump", help="write the tasks' parameters to this file and stop (needs full TVM)")
    v.add_argument("--params", help="parameters written by --dump (for a GPU machine with runtime-only TVM)")
    c = sub.add_parser("collect")
    c.add_argument("--db-dirs", nargs="+", required=True)
    c.add_argument("--run-json", nargs="*")
    c.add_argument("--logs", nargs="*")
    c.add_argument("--meta", nargs="*", help="the calls' meta_*.json (GPU state, date, commit, argv): kept in a record "
                   "whose run never finished, so never wrote its own")
    c.add_argument("--out", required=True)
    n = sub.add_parser("noise")
    n.add_argument("--db-dirs", nargs="+", required=True)
    n.add_argument("--out")
    b = sub.add_parser("retime-bundle")
    b.add_argument("--db-dirs", nargs="+", required=True)
    b.add_argument("--top", type=int, default=3)
    b.add_argument("--out", required=True)
    q = sub.add_parser("retime-report")
    q.add_argument("--bundle", required=True, help="the retime-bundle folder (runs.json, duplicates.jsonl)")
    q.add_argument("--records", required=True, help="measure.jsonl of gpu_run.py on that bundle")
    q.add_argument("--out", required=True, help="path without suffix: writes .md and .json")
    q.add_argument("--preamble", default="", help="text above the table (what was measured, where, caveats)")
    p = sub.add_parser("report")
    p.add_argument("--runs", required=True, action="append",
                   help="folder of run records (from `collect`), or FOLDER:MODEL[,MODEL] to take only those cost "
                        "models' runs from it; repeatable")
    p.add_argument("--drop", action="append", default=[], metavar="FILE",
                   help="leave out this run record (FOLDER/TASK__MODEL__sSEED__tTRIALS.json), superseded by one in "
                        "another folder; repeatable")
    p.add_argument("--vendor", help="vendor.json from `run --vendor`")
    p.add_argument("--zero-shot", help="zero_shot.json from `run --zero-shot-dir`")
    p.add_argument("--trials-target", type=int, help="state against this many trials to match XGBModel (the issue's 96)")
    p.add_argument("--preamble", default="", help="text above the table (what was run, where, caveats)")
    p.add_argument("--noise", help="output of `noise` (per-task cross-run timing noise): adds trials-to-match within it")
    p.add_argument("--db-dirs", nargs="+", help="folders of the runs' databases: adds how many distinct schedules each run measured (a run found in two folders: the later one counts)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tune_bench"))
    a = ap.parse_args(argv)
    must_exist = list(getattr(a, "db_dirs", None) or []) + [getattr(a, k) for k in ("bundle", "records", "vendor", "zero_shot", "noise")
                                                           if isinstance(getattr(a, k, None), str)]  # run --vendor: a flag
    must_exist += [r.partition(":")[0] for r in (getattr(a, "runs", None) or []) if isinstance(r, str)]
    must_exist += list(getattr(a, "meta", None) or [])
    missing = [p for p in must_exist if not Path(p).exists()]
    if missing:
        print(f"tune_bench {a.cmd}: error: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    return {"one": cmd_one, "run": cmd_run, "zero-shot": cmd_zero_shot, "heldout-models": cmd_heldout_models, "vendor": cmd_vendor,
            "collect": cmd_collect, "noise": cmd_noise, "retime-bundle": cmd_retime_bundle, "retime-report": cmd_retime_report, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
