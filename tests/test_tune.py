"""costpass tune: zero-shot search end to end on the CPU (the model stands in for the GPU), resuming from
the work dir, one-line errors, and the tuning benchmark's summary arithmetic."""
import json
import subprocess
import sys

import pytest

from costpass import tune as T


def test_zero_shot_search_and_resume(tmp_path):
    b, r = T.model_builder_runner("h100")
    cfg = T.TuneConfig(workload="softmax_attn_fp32", work_dir=str(tmp_path / "wd"), trials=4, trials_per_iter=4,
                       population=16, seed=1)
    res = T.tune(cfg, b, r)
    assert res.trials == 4 and res.failed == 0
    assert res.best_ms == min(res.history_ms) > 0
    assert json.loads(res.best_trace)  # a MetaSchedule trace that re-applies (see apply_trace below)
    from costpass.measure.candidates import apply_trace
    from costpass.metaschedule import predict
    from schedules import workloads as W

    mod = apply_trace(W.get("softmax_attn_fp32"), json.loads(res.best_trace)).mod
    assert predict(mod, "h100") == pytest.approx(res.best_ms, rel=1e-6)
    ms_, tj = T.buildable_best(cfg.work_dir, "softmax_attn_fp32")  # the best one builds for CUDA
    assert ms_ == res.best_ms and json.loads(tj) == json.loads(res.best_trace)
    again = T.tune(cfg, b, r)  # everything already in the database: nothing new is run
    assert again.history_ms == res.history_ms
    _check_replay(cfg.work_dir, res.history_ms)


def _resume_in_steps(work_dir, monkeypatch=None):
    """Four calls of 8 trials each, each one resuming the last: (records, distinct scheduled modules)."""
    from tvm_ffi import structural_hash

    b, r = T.model_builder_runner("h100")
    for n in (8, 16, 24, 32):
        T.tune(T.TuneConfig(workload="softmax_attn_fp32", work_dir=work_dir, trials=n, trials_per_iter=8,
                            population=32, seed=1), b, r)
    hashes = [structural_hash(x.as_measure_candidate().sch.mod) for x in T.database_in_order(work_dir)]
    return len(hashes), len(set(hashes))


def test_resumed_search_measures_nothing_twice(tmp_path, monkeypatch):
    """MetaSchedule's search forgets on resume what it measured; with the cost model replayed, it proposes the
    database's best schedules again. costpass's resume skips them: 32 trials over four calls, 32 schedules."""
    assert _resume_in_steps(str(tmp_path / "fixed")) == (32, 32)
    monkeypatch.setattr(T, "measured_modules", lambda records: set())  # skip nothing: MetaSchedule's own resume
    n, distinct = _resume_in_steps(str(tmp_path / "plain"))
    assert n == 32 and distinct < 28


def _check_replay(work_dir, history_ms):
    """A resumed run feeds what its database holds to the fresh cost model: in commit order, in batches,
    failed trials as failed runner results."""
    from pathlib import Path

    from costpass.measure.build import cuda_target
    from schedules import workloads as W

    rec_file = Path(work_dir) / "database_tuning_record.json"
    first = json.loads(rec_file.read_text().splitlines()[0])
    first[1][1] = [1e10]  # the same schedule again, failed
    rec_file.write_text(rec_file.read_text() + json.dumps(first) + "\n")

    class Recorder:
        def __init__(self):
            self.calls = []

        def update(self, context, candidates, results):
            assert context.mod is not None and len(candidates) == len(results)
            self.calls.append([None if r.error_msg else 1e3 * sorted(map(float, r.run_secs))[len(r.run_secs) // 2]
                               for r in results])

    rec = Recorder()
    n = T.replay_database(rec, work_dir, W.get("softmax_attn_fp32").mod(), cuda_target(), batch=3)
    assert n == 5 and [len(c) for c in rec.calls] == [3, 2]
    got = [x for c in rec.calls for x in c]
    assert got[:4] == pytest.approx(history_ms, rel=1e-6) and got[4] is None
    from tvm.s_tir import meta_schedule as ms

    xgb = T.make_cost_model("xgb")
    T.replay_database(xgb, work_dir, W.get("softmax_attn_fp32").mod(), cuda_target())
    assert xgb.data_size == 5  # TVM's XGBModel took all five (the failed one at its 1e10 s)
    assert isinstance(xgb, ms.cost_model.XGBModel)
    # XGBoost trains with the search's threads, as MetaSchedule's own tune() sets it up
    assert T.make_cost_model("xgb", num_cores=2).config.nthread == 2


def test_best_after():
    r = T.TuneResult("w", "h100", "xgb", 0, 4, 1.0, [3.0, None, 2.0, 2.5])
    assert r.best_after(1) == 3.0 and r.best_after(3) == 2.0 and T.TuneResult("w", "h100", "x", 0, 0, 0).best_after(5) is None


def test_unknown_cost_model():
    with pytest.raises(ValueError, match="unknown cost model"):
        T.make_cost_model("nope")


@pytest.mark.parametrize("args,msg", [(["nope"], "unknown workload"), (["gemm_fp32_1024", "--gpu", "zz"], "unknown GPU"),
                                      (["gemm_fp32_1024", "--trials", "0"], "--trials")])
def test_cli_errors(tmp_path, args, msg):
    p = subprocess.run([sys.executable, "-m", "costpass", "tune", *args, "--work-dir", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_bench_summary_arithmetic():
    sys.path.insert(0, "benchmarks")
    import tune_bench as B

    runs = [dict(workload="a", cost_model="costpass", seed=0, trials=4, history_ms=[4.0, 2.0, None, 1.0], best_ms=1.0,
                 wall_s=1, failed=1),
            dict(workload="a", cost_model="xgb", seed=0, trials=3, history_ms=[4.0, 3.0, 2.5], best_ms=2.5,
                 wall_s=1, failed=0),
            dict(workload="b", cost_model="xgb", seed=0, trials=0, history_ms=[], best_ms=None)]  # no trial: ignored
    s = B.summarize(runs, {"a": {"median_ms": 0.5, "reference": "torch"}}, {"a": {"median_ms": 3.0, "predicted_ms": 2.0}})
    assert list(s) == ["a"]
    a = s["a"]
    assert a["common_trials"] == {0: 3}  # compared at the budget both reached
    assert a["models"]["costpass"]["best_at_common_ms"] == 2.0 and a["models"]["xgb"]["best_at_common_ms"] == 2.5
    assert a["speedup_vs_xgb"] == pytest.approx(1.25) and a["speedup_by_seed"][0] == pytest.approx(1.25)
    assert a["costpass_trials_to_match_xgb"] == [2]
    assert a["torch_ms"] == 0.5 and a["zero_shot_ms"] == 3.0
    assert B._trials_to_reach([4.0, None, 1.0], 0.5) is None
    assert B._geomean([2.0, 8.0]) == pytest.approx(4.0)
    # within the task's cross-run timing noise (3%) of XGBModel's best (2.5), costpass matches one trial sooner
    runs[0]["history_ms"] = [4.0, 2.55, 2.45]
    s = B.summarize(runs, noise={"a": {"median_abs_pct": 3.0}})
    assert s["a"]["costpass_trials_to_match_xgb"] == [3]  # 2.45 <= 2.5 at trial 3
    assert s["a"]["costpass_trials_to_match_xgb_within_noise"] == [2]  # 2.55 <= 2.5 * 1.03 at trial 2
    assert B.summarize(runs)["a"]["costpass_trials_to_match_xgb_within_noise"] == []  # no noise given: not computed


def test_history_in_commit_order(tmp_path):
    """MetaSchedule's database object sorts records by time; the history must keep the search order."""
    lines = ['[0,[[], [0.003, 0.003], {}, []]]', '[0,[[], [1e10], {}, []]]', '[0,[[], [0.001, 0.002, 0.001], {}, []]]']
    (tmp_path / "database_tuning_record.json").write_text("\n".join(lines) + "\n")
    assert T.history(str(tmp_path)) == [3.0, None, 1.0]
    assert T.history(str(tmp_path / "missing")) == []


def test_cross_run_noise(tmp_path, capsys):
    """The same schedule timed by two runs of a task: the ratio of the two medians, failed ones left out."""
    sys.path.insert(0, "benchmarks")
    import tune_bench as B

    rows = {"costpass": ['[0,[["a"], [0.001], {}, []]]', '[0,[["b"], [0.002], {}, []]]', '[0,[["c"], [1e10], {}, []]]'],
            "xgb": ['[0,[["a"], [0.0011, 0.0011, 0.0009], {}, []]]', '[0,[["b"], [0.002], {}, []]]',
                    '[0,[["c"], [0.005], {}, []]]']}
    for model, lines in rows.items():
        wd = tmp_path / f"rmsnorm_4096_fp16__{model}__s0__t256"
        wd.mkdir()
        (wd / "database_tuning_record.json").write_text("\n".join(lines) + "\n")
    (tmp_path / "not_a_run").mkdir()
    out = tmp_path / "noise.json"
    assert B.main(["noise", "--db-dirs", str(tmp_path), "--out", str(out)]) == 0
    got = json.loads(out.read_text())["rmsnorm_4096_fp16"]
    assert got["pairs"] == 2  # "a" and "b"; "c" failed in one run
    assert got["median_abs_pct"] == pytest.approx(100 * (1.1 ** 0.5 - 1), abs=0.01)  # median of |ln 1.1| and 0
    assert got["p90_abs_pct"] == pytest.approx(100 * (1.1 ** 0.9 - 1), abs=0.01)


def test_retime_report(tmp_path):
    """Re-timed bests: the fastest ok record over a run's top schedules, through same-source aliases; a task
    whose runs all ended on one kernel stays out of the mean; every schedule gets a row."""
    sys.path.insert(0, "benchmarks")
    import tune_bench as B

    runs = {"t__costpass__s0__t256": [{"id": "a", "rank": 0, "tuning_ms": 1.0}, {"id": "b", "rank": 1, "tuning_ms": 1.2}],
            "t__xgb__s0__t256": [{"id": "c", "rank": 0, "tuning_ms": 0.4}, {"id": "d", "rank": 1, "tuning_ms": 2.0}],
            "t__random__s0__t256": [{"id": "e", "rank": 0}],
            "u__costpass__s0__t256": [{"id": "f", "rank": 0}], "u__xgb__s0__t256": [{"id": "g", "rank": 0}]}
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    dups = [{"id": "d", "same_source_as": "a"}, {"id": "g", "same_source_as": "f"}]
    (tmp_path / "duplicates.jsonl").write_text("".join(json.dumps(d) + "\n" for d in dups))
    recs = [dict(workload="t", candidate_id="a", status="ok", median_ms=2.0, correctness={"rel_l2": 1e-5, "ok": True}),
            dict(workload="t", candidate_id="b", status="ok", median_ms=1.5),
            dict(workload="t", candidate_id="c", status="wrong", median_ms=0.5),  # wrong output: not a best
            dict(workload="t", candidate_id="e", status="run_error"),
            dict(workload="u", candidate_id="f", status="ok", median_ms=3.0)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = str(tmp_path / "rt")
    assert B.main(["retime-report", "--bundle", str(tmp_path), "--records", str(tmp_path / "m.jsonl"), "--out", out]) == 0
    got = json.loads(open(out + ".json").read())
    assert got["runs"] == {"t__costpass__s0__t256": 1.5, "t__xgb__s0__t256": 2.0, "t__random__s0__t256": None,
                           "u__costpass__s0__t256": 3.0, "u__xgb__s0__t256": 3.0}
    assert got["geomean_speedup"] == pytest.approx(2.0 / 1.5)  # u: one kernel for both runs, left out
    assert got["left_out"] == ["u"]
    rows = {(r["run"], r["rank"]): r for r in got["schedules"]}
    assert rows[("t__xgb__s0__t256", 1)]["kernel"] == "a" and rows[("t__xgb__s0__t256", 1)]["retimed_ms"] == 2.0
    assert rows[("t__xgb__s0__t256", 0)]["status"] == "wrong" and rows[("t__xgb__s0__t256", 0)]["retimed_ms"] is None
    assert rows[("t__costpass__s0__t256", 0)]["checked"] and not rows[("t__costpass__s0__t256", 1)]["checked"]
    md = open(out + ".md").read()
    assert "Wrong output: 1 schedule(s) (t__xgb__s0__t256 #0)" in md and "| t__costpass__s0__t256 | 0 | a | 1.0000 | 2.0000 | 2.00 | ok |" in md


def test_bench_missing_inputs(tmp_path, capsys):
    sys.path.insert(0, "benchmarks")
    import tune_bench as B

    assert B.main(["noise", "--db-dirs", str(tmp_path / "nope")]) == 2
    assert B.main(["retime-report", "--bundle", str(tmp_path), "--records", str(tmp_path / "m.jsonl"),
                   "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "m.jsonl" in err and not (tmp_path / "o.md").exists()
    (tmp_path / "runs").mkdir()
    assert B.main(["report", "--runs", str(tmp_path / "runs"), "--noise", str(tmp_path / "noise.json"),
                   "--out", str(tmp_path / "o")]) == 2
    assert "noise.json" in capsys.readouterr().err and not (tmp_path / "o.md").exists()


def test_cli_output_check_error_is_one_line(tmp_path):
    """A work dir that cannot hold the reference kernel: one line, exit 2, and the way around it named."""
    bad = tmp_path / "a_file"
    bad.write_text("x")
    p = subprocess.run([sys.executable, "-m", "costpass", "tune", "silu_mul_14336_fp16", "--work-dir", str(bad)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "output check" in p.stderr and "--no-check-outputs" in p.stderr and bad.read_text() == "x"


def test_harness_compare_summary(tmp_path, capsys):
    """One row per kernel: its fastest tuning-time latency over the runs that found it, each harness's reading,
    and the runner-now / tuning-time ratio; missing inputs are a one-line error with exit 2."""
    sys.path.insert(0, "benchmarks")
    import harness_compare as H

    runs = {"t__costpass__s0__t256": [{"id": "a", "rank": 0, "tuning_ms": 0.010}, {"id": "c", "rank": 1, "tuning_ms": 0.025}],
            "t__xgb__s0__t256": [{"id": "a", "rank": 0, "tuning_ms": 0.008}, {"id": "b", "rank": 1, "tuning_ms": 0.02}]}
    rows = [{"id": "a", "workload": "t", "fill": "randn", "events_ms": 0.012, "evaluator_ms": 0.010},
            {"id": "a", "workload": "t", "fill": "ms_runner", "runner_ms": 0.012},
            {"id": "b", "workload": "t", "fill": "randn", "error": "RuntimeError: boom"},
            {"id": "c", "workload": "t", "fill": "randn", "events_ms": 0.03, "evaluator_ms": 0.028}]
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    k = H.summarize(rows, runs)
    assert len(k) == 2 and k[0]["tuning_ms"] == 0.008 and k[0]["MetaSchedule runner"] == 0.012
    assert sorted(k[0]["runs"]) == sorted(runs)
    md = H.render_md(k)
    assert "| t | a | costpass, xgb | 8.0 | 12.0 | 10.0 | - | - | - | 12.0 | 1.50 |" in md
    assert "| t | c | costpass | 25.0 | 30.0 | 28.0 | - | - | - | - | - |" in md   # no runner row: no ratio
    assert "geometric mean 1.50" in md
    out = str(tmp_path / "s")
    assert H.main_summarize(["--rows", str(tmp_path / "rows.jsonl"), "--runs", str(tmp_path / "runs.json"),
                             "--out", out]) == 0
    assert json.loads(open(out + ".json").read()) == k
    assert H.main_summarize(["--rows", str(tmp_path / "nope.jsonl"), "--runs", str(tmp_path / "runs.json"),
                             "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.jsonl" in err and not (tmp_path / "x.md").exists()


def test_report_runs_from_two_batches(tmp_path, capsys):
    """`report --runs A:costpass --runs B:xgb,random`: costpass's runs from one batch, the others' from another;
    a (task, model, seed, trials) given twice is refused with both files named."""
    sys.path.insert(0, "benchmarks")
    import tune_bench as B

    def rec(folder, model, best):
        folder.mkdir(exist_ok=True)
        r = dict(workload="t", cost_model=model, seed=0, requested_trials=4, trials=2, history_ms=[2 * best, best],
                 best_ms=best)
        (folder / f"t__{model}__s0__t4.json").write_text(json.dumps(r))

    old, new = tmp_path / "old", tmp_path / "new"
    for m, b in (("costpass", 9.0), ("xgb", 2.0), ("random", 3.0)):
        rec(old, m, b)
    rec(new, "costpass", 1.0)
    runs = B.load_runs([f"{new}:costpass", f"{old}:xgb,random"])
    assert sorted((r["cost_model"], r["best_ms"]) for r in runs) == [("costpass", 1.0), ("random", 3.0), ("xgb", 2.0)]
    with pytest.raises(ValueError, match="two run records"):
        B.load_runs([str(new), str(old)])
    assert B.main(["report", "--runs", str(new), "--runs", str(old), "--out", str(tmp_path / "o")]) == 2
    assert "t__costpass__s0__t4.json" in capsys.readouterr().err and not (tmp_path / "o.md").exists()
    assert B.main(["report", "--runs", f"{new}:costpass", "--runs", f"{old}:xgb,random", "--out", str(tmp_path / "o")]) == 0
    assert "| t |" in (tmp_path / "o.md").read_text()
    # --drop: a run superseded by a later one in another folder is left out by its file; a file not read is refused
    stale = old / "t__costpass__s0__t4.json"
    runs = B.load_runs([str(new), str(old)], drop=[str(stale)])
    assert sorted((r["cost_model"], r["best_ms"]) for r in runs) == [("costpass", 1.0), ("random", 3.0), ("xgb", 2.0)]
    with pytest.raises(ValueError, match="no run record read: .*t__xgb__s9__t4.json"):
        B.load_runs([str(new), str(old)], drop=[str(stale), str(old / "t__xgb__s9__t4.json")])
    assert B.main(["report", "--runs", str(new), "--runs", str(old), "--drop", str(stale), "--out", str(tmp_path / "d")]) == 0
    assert "| t |" in (tmp_path / "d.md").read_text()


def test_zero_shot_timing_keeps_what_it_timed(tmp_path):
    """A call cut short while timing zero-shot picks keeps the tasks it timed (zero_shot.partial.json); the next
    call times only the rest, and a pick that fails is recorded with its error."""
    sys.path.insert(0, "benchmarks")
    import tune_bench as B

    zs = tmp_path / "zs"
    zs.mkdir()
    for t, ms in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        (zs / f"{t}.json").write_text(json.dumps({"best_trace": t, "best_ms": ms}))
    timed = []

    def cut_after_one(task, trace):
        if timed:
            raise KeyboardInterrupt  # the call's time limit
        timed.append(task)
        return {"median_ms": 10.0}

    with pytest.raises(KeyboardInterrupt):
        B.time_zero_shot(["a", "b", "c"], zs, tmp_path, cut_after_one, lambda: {"name": "gpu1"})
    part = json.loads((tmp_path / "zero_shot.partial.json").read_text())
    assert part["zero_shot"] == {"a": {"median_ms": 10.0, "predicted_ms": 1.0, "gpu_info": {"name": "gpu1"}}}
    assert not (tmp_path / "zero_shot.json").exists()

    def second_call(task, trace):
        timed.append(task)
        if task == "c":
            raise RuntimeError("build failed")
        return {"median_ms": 20.0}

    res = B.time_zero_shot(["a", "b", "c"], zs, tmp_path, second_call, lambda: {"name": "gpu2"})
    assert timed == ["a", "b", "c"]  # a timed once
    assert res["b"] == {"median_ms": 20.0, "predicted_ms": 2.0, "gpu_info": {"name": "gpu2"}}
    assert res["c"] == {"error": "RuntimeError: build failed", "gpu_info": {"name": "gpu2"}}
    done = json.loads((tmp_path / "zero_shot.json").read_text())
    assert done["gpu_info"] == {"name": "gpu1"} and done["zero_shot"]["a"]["median_ms"] == 10.0
    assert not (tmp_path / "zero_shot.partial.json").exists()


def test_miss_cost_to_exceed():
    """The trials each miss would need for the geometric mean of trials-to-match to reach the target."""
    sys.path.insert(0, "benchmarks")
    import tune_bench as B

    assert B.miss_cost_to_exceed([4, 16, None], 16) == pytest.approx(64.0)  # (4 * 16 * 64) ** (1/3) = 16
    assert B.miss_cost_to_exceed([1, 2], 96) is None
    x = B.miss_cost_to_exceed([1, 1, None, None], 96)
    assert B._geomean([1, 1, x, x]) == pytest.approx(96)


def test_search_sim_picks_the_models_favourites_once_each():
    """benchmarks/search_sim.simulate: each batch is the model's top unmeasured schedules (eps of them at random),
    no schedule twice, failed ones included as failures, and the model is told what each batch measured."""
    sys.path.insert(0, "benchmarks")
    import search_sim as S

    lat = [5.0, 1.0, None, 3.0, 2.0, 4.0, 0.5, 6.0]

    class ByIndex:  # favours high indices; records what it was told
        def __init__(self):
            self.told = []

        def predict(self, ctx, cands):
            return [float(c) for c in cands]

        def update(self, ctx, cands, results):
            self.told.append([(c, r.run_secs is not None) for c, r in zip(cands, results)])

    m = ByIndex()
    hist = S.simulate(m, None, list(range(8)), lat, trials=6, per_iter=4, eps=0.0, seed=0)
    assert hist == [6.0, 0.5, 4.0, 2.0, 3.0, None]  # indices 7,6,5,4 then 3,2
    assert m.told[1] == [(3, True), (2, False)]
    assert S.best_after(hist, 2) == 0.5 and S.best_after([None], 1) is None
    h2 = S.simulate(ByIndex(), None, list(range(8)), lat, trials=8, per_iter=4, eps=0.5, seed=1)
    assert sorted(map(str, h2)) == sorted(map(str, lat))  # every schedule once, whatever the random picks


def test_search_sim_bad_input(tmp_path, capsys):
    sys.path.insert(0, "benchmarks")
    import search_sim as S

    assert S.main(["--db-dirs", str(tmp_path / "nope"), "--tasks", "t", "--out", str(tmp_path / "o")]) == 2
    assert S.main(["--db-dirs", str(tmp_path), "--tasks", "t", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "no measured schedule of 't'" in err


def test_headroom_is_xgb_over_the_best_of_every_run():
    """`report`'s headroom: per task, XGBModel's best per seed over the best any run found (geometric mean over
    seeds), then over tasks; a one-point task and a task XGBModel never ran are left out. By hand: task a: best of
    all 1.0 (costpass seed 1); XGBModel 1.21 and 1.0 -> sqrt(1.21) = 1.1; task b: XGBModel's own 2.0 is the best
    -> 1.0; geomean sqrt(1.1 * 1.0)."""
    sys.path.insert(0, "benchmarks")
    import tune_bench as B

    def row(trials, **models):
        return {"common_trials": {"0": trials}, "models": {m: {"best_by_seed_ms": b} for m, b in models.items()}}

    tasks = {"a": row(256, costpass={"0": 1.5, "1": 1.0}, xgb={"0": 1.21, "1": 1.0}, random={"0": 3.0}),
             "b": row(256, costpass={"0": 2.5}, xgb={"0": 2.0}),
             "one_point": row(1, costpass={"0": 0.5}, xgb={"0": 1.0}),
             "no_xgb": row(256, costpass={"0": 0.5})}
    hr = B.headroom(tasks)
    assert sorted(hr["tasks"]) == ["a", "b"]
    assert hr["tasks"]["a"]["best_of_all_runs_ms"] == 1.0 and hr["tasks"]["a"]["runs"] == 5
    assert hr["tasks"]["a"]["xgb_over_best"] == pytest.approx(1.1)
    assert hr["tasks"]["b"]["xgb_over_best"] == pytest.approx(1.0)
    assert hr["geomean"] == pytest.approx(1.1 ** 0.5)


def test_retime_bundle_refuses_two_runs_of_one_name(tmp_path, capsys):
    """Two variants' folders (e.g. two eps_greedy settings) hold runs of the same id; one bundle keyed by run id
    would silently keep only the last: refused, nothing packed."""
    sys.path.insert(0, "benchmarks")
    import tune_bench as B

    for variant in ("e05", "e25"):
        wd = tmp_path / variant / "conv__costpass__s3__t256"
        wd.mkdir(parents=True)
        (wd / "database_tuning_record.json").write_text("")
        (wd / "database_workload.json").write_text("")
    out = tmp_path / "bundle"
    assert B.main(["retime-bundle", "--db-dirs", str(tmp_path / "e05"), str(tmp_path / "e25"), "--out", str(out)]) == 2
    assert "two runs named conv__costpass__s3__t256" in capsys.readouterr().err
    assert not (out / "runs.json").exists()


def test_collect_keeps_the_calls_state_for_a_run_cut_short(tmp_path):
    """`collect --meta`: a run that never finished wrote no record of its own, so the GPU state, date and commit
    come from its calls' meta files (the latest call's state on top, every call's in `calls`); a run whose own
    record came back keeps its own."""
    sys.path.insert(0, "benchmarks")
    import tune_bench as B

    db = tmp_path / "db"
    for rid in ("t__costpass__s2__t256", "t__xgb__s2__t256"):
        (db / rid).mkdir(parents=True)
        (db / rid / "database_tuning_record.json").write_text(
            json.dumps([0, [[[], []], [2e-5, 3e-5, 4e-5]]]) + "\n" + json.dumps([0, [[[], []], [1e-5]]]) + "\n")
    metas = []
    for i, (date, mhz) in enumerate((("2026-11-24T13:21:34+00:00", "1980"), ("2026-11-24T13:12:43+00:00", "345"))):
        metas.append(tmp_path / f"meta_{i}.json")
        metas[-1].write_text(json.dumps({"gpu_info": {"name": "H100", "sm_mhz": mhz}, "date": date, "costpass_commit": "abc"}))
    own = tmp_path / "own"
    own.mkdir()
    (own / "t__xgb__s2__t256.json").write_text(json.dumps({"gpu_info": {"name": "H100", "sm_mhz": "1900"}}))
    out = tmp_path / "out"
    assert B.main(["collect", "--db-dirs", str(db), "--run-json", str(own), "--meta", *map(str, metas),
                   "--out", str(out)]) == 0
    cut = json.loads((out / "t__costpass__s2__t256.json").read_text())
    assert cut["history_ms"] == [pytest.approx(0.03), pytest.approx(0.01)] and cut["best_ms"] == pytest.approx(0.01)
    assert cut["gpu_info"]["sm_mhz"] == "1980" and cut["date"] == "2026-11-24T13:21:34+00:00"
    assert [c["date"] for c in cut["calls"]] == ["2026-11-24T13:12:43+00:00", "2026-11-24T13:21:34+00:00"]
    assert cut["provenance"] == "call metadata"
    done = json.loads((out / "t__xgb__s2__t256.json").read_text())
    assert done["gpu_info"]["sm_mhz"] == "1900" and "calls" not in done
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert B.main(["collect", "--db-dirs", str(db), "--meta", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert not (tmp_path / "o2").exists()


def test_score_pool_says_when_there_is_nothing_to_score(tmp_path, capsys):
    """`score_pool.py` on folders holding no run of the task: a one-line error, exit 2."""
    sys.path.insert(0, "benchmarks")
    import score_pool

    (tmp_path / "other__xgb__s0__t4").mkdir()
    (tmp_path / "other__xgb__s0__t4" / "database_tuning_record.json").write_text("")
    model = tmp_path / "m.json.gz"
    assert score_pool.main(["--db-dirs", str(tmp_path), "--task", "conv", "--model", str(model)]) == 2
    assert "no model file" in capsys.readouterr().err
    model.write_bytes(b"")  # never opened: nothing to score
    assert score_pool.main(["--db-dirs", str(tmp_path), "--task", "conv", "--model", str(model)]) == 2
    assert "no successful record of conv" in capsys.readouterr().err
