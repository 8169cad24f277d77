"""``costpass data`` and ``costpass measure``: dataset statistics with bad lines, one-line argument errors,
and the measurement loop (build -> runner -> records, resume) with a stand-in runner.

No GPU is needed: ``FakeRunner`` / ``FakeBuilder`` below are test doubles that stand in for MetaSchedule's
runner and builder; they are never used outside this file.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from costpass import cli
from costpass.measure import records as R
from costpass.measure import tvm_runner as TR

ROOT = Path(__file__).resolve().parent.parent
H100 = "NVIDIA H100 80GB HBM3"
H200 = "NVIDIA H200"


from test_cli import assert_one_line_error, run  # noqa: E402  (the CLI test helpers)


def rec(cid, gpu=H100, wl="mm", status="ok", med=1.0):
    ok = status in ("ok", "wrong")
    return R.Record(workload=wl, candidate_id=cid, status=status, gpu=gpu,
                    run_times_ms=[med * 0.9, med, med * 1.1] if ok else [],
                    median_ms=med if ok else None, repeats=3 if ok else 0)


def write(path, recs, extra_lines=(), tail=""):
    with open(path, "w") as f:
        for r in recs:
            f.write(R.dumps(r.to_dict()) + "\n")
        for ln in extra_lines:
            f.write(ln + "\n")
        f.write(tail)
    return str(path)


# --------------------------------------------------------------------------------------------------
# data stats / show
# --------------------------------------------------------------------------------------------------

def test_data_stats_reports_corrupted_and_truncated_lines_and_prints_the_table(tmp_path, capfd):
    recs = [rec("a1", med=2.0), rec("a2", med=1.0), rec("a3", status="build_error"),
            rec("b1", wl="softmax", med=0.5), rec("b2", wl="softmax", status="wrong", med=0.1)]
    p = write(tmp_path / "r.jsonl", recs[:3], extra_lines=['{"workload": "mm", "candid'],
              tail=R.dumps(recs[3].to_dict()) + "\n" + R.dumps(recs[4].to_dict())[:40])
    rc, out, err = run(["data", "stats", p], capfd)
    assert rc == 0, err
    # the two bad lines, with file and line, on stderr; the table on stdout
    assert f"{p}:4: corrupted line skipped" in err
    assert f"{p}:6: corrupted line skipped" in err
    assert "Traceback" not in err
    assert f"GPU {H100} (h100): 4 records, 3 ok, 2 workloads" in out
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.startswith(("mm ", "softmax ", "total "))}
    # workload n ok build_err best med spread noise
    assert rows["mm"][:6] == ["mm", "3", "2", "1", "1.0000", "1.5000"]
    assert rows["softmax"][:4] == ["softmax", "1", "1", "0"]
    assert rows["total"] == ["total", "4", "3", "1"]


def test_data_stats_json_and_problems(tmp_path, capfd):
    p = write(tmp_path / "r.jsonl", [rec("a1"), rec("a2", status="timeout")], extra_lines=["not json"])
    rc, out, err = run(["data", "stats", "--json", p], capfd)
    assert rc == 0, err
    d = json.loads(out)
    (row,) = d["rows"]
    assert row["n"] == 2 and row["ok"] == 1 and row["by_status"] == {"ok": 1, "timeout": 1}
    assert d["problems"] == [f"{p}:3: corrupted line skipped: Expecting value: line 1 column 1 (char 0)"]
    assert f"{p}:3:" in err


def test_data_stats_mixed_gpu_file_is_refused_in_one_line(tmp_path, capfd):
    p = write(tmp_path / "mixed.jsonl", [rec("a1"), rec("a2", gpu=H200)])
    rc, out, err = run(["data", "stats", p], capfd)
    assert_one_line_error(rc, out, err, "mixed.jsonl", "2 GPUs", "one dataset file holds one GPU")
    assert out == ""


def test_data_stats_two_files_of_two_gpus_are_two_blocks(tmp_path, capfd):
    a = write(tmp_path / "a.jsonl", [rec("a1")])
    b = write(tmp_path / "b.jsonl", [rec("b1", gpu=H200, med=0.5)])
    rc, out, err = run(["data", "stats", a, b], capfd)
    assert rc == 0, err
    assert f"GPU {H100} (h100): 1 records" in out and f"GPU {H200} (h200): 1 records" in out


def test_data_stats_errors(tmp_path, capfd):
    rc, out, err = run(["data", "stats", str(tmp_path / "nope.jsonl")], capfd)
    assert_one_line_error(rc, out, err, "nope.jsonl")
    rc, out, err = run(["data", "stats", "--gpu", "h100", str(tmp_path)], capfd)
    assert_one_line_error(rc, out, err, "not both")
    rc, out, err = run(["data"], capfd)
    assert_one_line_error(rc, out, err, "data stats")


def test_data_show(tmp_path, capfd):
    r = rec("abcdef0123456789", med=0.25)
    r.trace_json = [[["A", [1, 2]]], []]
    p = write(tmp_path / "r.jsonl", [r, rec("abcd999", med=3.0)])
    rc, out, err = run(["data", "show", "abcdef0123456789", p], capfd)
    assert rc == 0, err
    d = json.loads(out)
    assert d["candidate_id"] == "abcdef0123456789" and d["median_ms"] == 0.25
    assert d["trace_json"] == [[["A", [1, 2]]], []]
    assert '"run_times_ms": [0.225, 0.25, 0.275]' in out          # number lists on one line
    rc, out, err = run(["data", "show", "abcde", p], capfd)     # a unique prefix
    assert rc == 0 and json.loads(out)["candidate_id"] == "abcdef0123456789"
    rc, out, err = run(["data", "show", "abcd", p], capfd)      # ambiguous prefix
    assert_one_line_error(rc, out, err, "matches 2 candidates")
    rc, out, err = run(["data", "show", "ffff", p], capfd)
    assert_one_line_error(rc, out, err, "no record with candidate_id 'ffff'")


# --------------------------------------------------------------------------------------------------
# measure: argument errors (one line, exit 2), all before anything slow
# --------------------------------------------------------------------------------------------------

BASE = ["measure", "--workload", "gemm_fp16_1024", "--candidates", "2", "--gpu", "h100"]


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("extra,needles", [
    (["--workload", "gemm_fp16_1024x"], ["unknown workload 'gemm_fp16_1024x'", "did you mean gemm_fp16_1024"]),
    (["--gpu", "h999"], ["unknown GPU 'h999'", "known: a100"]),
    (["--gpu", "h100,h200"], ["--gpu takes one GPU"]),
    (["--runner", "rpc"], ["--runner rpc needs --tracker HOST:PORT"]),
    (["--runner", "rpc", "--tracker", "nohostport"], ["--tracker must be HOST:PORT"]),
    (["--tracker", "localhost:9190"], ["apply to --runner rpc only"]),
    (["--candidates", "-1"], ["--candidates must be 0 or more"]),
    (["--candidates", "0"], ["nothing to measure"]),
    (["--repeats", "0"], ["--repeats must be at least 1"]),
    (["--runner", "gpu"], ["invalid choice: 'gpu'"]),
])
def test_measure_argument_errors(extra, needles, capfd, tmp_path):
    argv = BASE + ["--out", str(tmp_path / "m.jsonl")] + extra
    rc, out, err = run(argv, capfd)
    assert_one_line_error(rc, out, err, *needles)
    assert not (tmp_path / "m.jsonl").exists()


def test_measure_missing_required(capfd, tmp_path):
    rc, out, err = run(["measure", "--workload", "gemm_fp16_1024", "--candidates", "2",
                        "--out", str(tmp_path / "m.jsonl")], capfd)
    assert_one_line_error(rc, out, err, "--gpu NAME is required")
    rc, out, err = run(BASE, capfd)
    assert_one_line_error(rc, out, err, "--out FILE.jsonl is required")
    rc, out, err = run(BASE + ["--out", str(tmp_path / "m.jsonl.xz")], capfd)
    assert_one_line_error(rc, out, err, "expected a .jsonl file")


def test_measure_out_of_another_gpu_is_refused(capfd, tmp_path):
    p = write(tmp_path / "h200.jsonl", [rec("x", gpu=H200)])
    rc, out, err = run(BASE + ["--out", p], capfd)
    assert_one_line_error(rc, out, err, "holds records of 'NVIDIA H200', not h100")


def test_measure_local_without_cuda_fails_before_starting(capfd, tmp_path):
    import tvm
    if tvm.runtime.enabled("cuda") and tvm.cuda(0).exist:
        pytest.skip("this machine has a CUDA device")
    out_file = tmp_path / "new" / "m.jsonl"
    rc, out, err = run(BASE + ["--runner", "local", "--out", str(out_file)], capfd)
    assert_one_line_error(rc, out, err, "--runner local needs a CUDA GPU on this machine")
    assert not (tmp_path / "new").exists()        # nothing created


def test_measure_rpc_unreachable_tracker(capfd, tmp_path):
    port = _free_port()
    rc, out, err = run(BASE + ["--runner", "rpc", "--tracker", f"127.0.0.1:{port}", "--out",
                               str(tmp_path / "m.jsonl")], capfd)
    assert_one_line_error(rc, out, err, f"cannot reach the RPC tracker at 127.0.0.1:{port}")


def test_measure_bundle_prints_the_device_command(capfd, tmp_path):
    rc, out, err = run(["measure", "--bundle", "tests/golden", "--budget-s", "300", "--tag", "t1"], capfd)
    assert rc == 0, err
    assert "gpu_run.py --bundle tests/golden --out $OUT/measure.jsonl --budget-s 300 --tag t1" in out
    assert out.splitlines()[-1] == "# carry: .whl carry/runtime tests/golden"
    rc, out, err = run(["measure", "--bundle", "tests/golden", "--budget-s", "500"], capfd)
    assert_one_line_error(rc, out, err, "too large for one device call")
    rc, out, err = run(["measure", "--bundle", str(tmp_path)], capfd)
    assert_one_line_error(rc, out, err, "outside the repository")
    rc, out, err = run(["measure", "--bundle", "tests/golden", "--round"], capfd)
    assert_one_line_error(rc, out, err, "--round takes a snapshot .tar.xz")


def test_helpers():
    assert TR.parse_tracker("10.0.0.5:9190") == ("10.0.0.5", 9190)
    assert TR.parse_tracker("[::1]:9190") == ("::1", 9190)
    with pytest.raises(TR.MeasureError):
        TR.parse_tracker("host:99999")
    assert TR.gpu_matches(H100, "h100") and TR.gpu_matches("NVIDIA H100 NVL", "h100")
    assert TR.gpu_matches("NVIDIA GeForce RTX 4090", "rtx4090")
    assert not TR.gpu_matches(H200, "h100") and not TR.gpu_matches("NVIDIA A100-SXM4-80GB", "h100")
    assert TR.gpu_matches("unknown", "h100")
    assert TR.classify_error("LocalRunner: Timeout, killed after 60 seconds") == "timeout"
    assert TR.classify_error("RPCRunner: An exception occurred\nCUDA_ERROR_ILLEGAL_ADDRESS") == "run_error"


# --------------------------------------------------------------------------------------------------
# the measurement loop with stand-ins for MetaSchedule's builder and runner (test doubles)
# --------------------------------------------------------------------------------------------------

class FakeBuilder:
    """Test double for a MetaSchedule Builder: 'builds' every input into an empty file, except the
    candidates named in ``fail`` (a BuilderResult with an error, as LocalBuilder reports one)."""

    def __init__(self, tmp, fail=()):
        self.tmp = tmp
        self.fail = set(fail)
        self.calls = []

    def build(self, inputs):
        from tvm.s_tir.meta_schedule.builder import BuilderResult
        out = []
        self.calls.append(len(inputs))
        for inp in inputs:
            name = inp.mod.attrs["cand"] if inp.mod.attrs and "cand" in inp.mod.attrs else None
            if name in self.fail:
                out.append(BuilderResult(None, "LocalBuilder: An exception occurred\nbuild failed"))
                continue
            d = Path(self.tmp) / f"tmp_{name}"
            d.mkdir()
            (d / "tvm_tmp_mod.tar").write_bytes(b"")
            out.append(BuilderResult(str(d / "tvm_tmp_mod.tar"), None))
        return out


class FakeRunner:
    """Test double for a MetaSchedule Runner: returns prescribed run times (seconds) or errors per
    artifact, as RunnerFuture-like objects; records what it was asked to run."""

    def __init__(self, plan):
        self.plan = plan       # candidate id -> list of seconds, or an error string
        self.seen = []

    def run(self, inputs):
        from tvm.s_tir.meta_schedule.runner import RunnerResult
        futs = []
        for inp in inputs:
            cid = Path(str(inp.artifact_path)).parent.name[len("tmp_"):]
            self.seen.append((cid, str(inp.device_type), [a.as_json() for a in inp.args_info]))
            v = self.plan[cid]
            res = RunnerResult(None, v) if isinstance(v, str) else RunnerResult(v, None)
            futs.append(SimpleNamespace(result=lambda res=res: res))
        return futs


def _cands(ids, wl="gemm_fp16_1024"):
    return [SimpleNamespace(id=i, workload=wl, origin="random", seed=n, trace_json=[[], []]) for n, i in enumerate(ids)]


def _module_of(c):
    """The workload's unscheduled module, marked with the candidate id so the fakes can tell them apart."""
    from schedules import workloads as W
    mod = W.get(c.workload).mod()
    return mod.with_attr("cand", c.id)


DEVICE = {"gpu": H100, "driver": "580.159.04", "compute_capability": "9.0", "sm_count": 132,
          "l2_bytes": 52428800}


def _measure(cands, out, builder, runner, **kw):
    from costpass.measure.build import cuda_target
    cfg = TR.RunnerConfig(kind="local", repeats=3, min_repeat_ms=10)
    return TR.measure(cands, str(out), target=cuda_target(), builder=builder, runner=runner, device=DEVICE,
                      cfg=cfg, tag="t", commit="abc123", read_clocks=lambda: {"sm_mhz": 1980},
                      module_of=_module_of, **kw)


def test_measure_writes_records_and_resumes(tmp_path):
    out = tmp_path / "m.jsonl"
    plan = {"c1": [1e-4, 2e-4, 3e-4], "c2": "LocalRunner: Timeout, killed after 60 seconds",
            "c3": "LocalRunner: An exception occurred\nillegal memory access", "c5": [5e-5] * 3,
            "c6": [1e-3] * 3}
    b, r = FakeBuilder(tmp_path, fail={"c4"}), FakeRunner(plan)
    events = []
    counts = _measure(_cands(["c1", "c2", "c3", "c4"]), out, b, r, on_event=lambda k, p: events.append(k))
    assert counts == {"skipped": 0, "ok": 1, "timeout": 1, "run_error": 1, "build_error": 1}
    assert [s[0] for s in r.seen] == ["c1", "c2", "c3"]            # the build failure never reaches the runner
    assert r.seen[0][1] == "cuda"
    assert r.seen[0][2] == [["TENSOR", "float16", [1024, 1024]], ["TENSOR", "float16", [1024, 1024]],
                            ["TENSOR", "float32", [1024, 1024]]]
    assert events[:2] == ["plan", "build"] and events.count("record") == 4
    recs = {x.candidate_id: x for x in R.read_records(str(out))}
    ok = recs["c1"]
    assert ok.status == "ok" and ok.run_times_ms == pytest.approx([0.1, 0.2, 0.3], rel=1e-6)
    assert ok.median_ms == pytest.approx(0.2, rel=1e-6) and ok.repeats == 3
    assert ok.gpu == H100 and ok.driver == "580.159.04" and ok.sm_count == 132 and ok.clocks == {"sm_mhz": 1980}
    assert ok.costpass_commit == "abc123" and ok.tag == "t" and ok.origin == "random"
    assert ok.params["M"] == ok.params["N"] == ok.params["K"] == 1024
    assert ok.flops == 2 * 1024 ** 3 and ok.correctness is None
    assert ok.timing["method"] == "tvm_time_evaluator" and ok.timing["repeat"] == 3
    assert ok.timing["l2_flush"] is False and ok.trace_json == [[], []]
    # MetaSchedule's runner runs what TVM's own compile made: the model code counts it as TVM's build
    assert ok.build["compiler"] == "tvm" and ok.build["via"] == "MetaSchedule local runner"
    from costpass import data
    assert data.build_kind(ok) == "tvm"
    assert recs["c2"].status == "timeout" and recs["c3"].status == "run_error"
    assert "illegal memory access" in recs["c3"].error and recs["c3"].median_ms is None
    assert recs["c4"].status == "build_error" and "build failed" in recs["c4"].error
    # artifacts are removed once measured
    assert not any(p.name.startswith("tmp_") for p in tmp_path.iterdir())

    # rerun with two new candidates: only those are built and run, nothing is written twice
    b2, r2 = FakeBuilder(tmp_path), FakeRunner(plan)
    counts = _measure(_cands(["c1", "c2", "c3", "c4", "c5", "c6"]), out, b2, r2)
    assert counts == {"skipped": 4, "ok": 2}
    assert [s[0] for s in r2.seen] == ["c5", "c6"] and b2.calls == [2]
    ids = [x.candidate_id for x in R.read_records(str(out))]
    assert sorted(ids) == ["c1", "c2", "c3", "c4", "c5", "c6"] and len(ids) == 6

    # a third run finds nothing to do and does not call the builder or the runner
    b3, r3 = FakeBuilder(tmp_path), FakeRunner(plan)
    assert _measure(_cands(["c1", "c5"]), out, b3, r3) == {"skipped": 2}
    assert b3.calls == [] and r3.seen == []


def test_measure_after_a_torn_line(tmp_path):
    out = tmp_path / "m.jsonl"
    plan = {"c1": [1e-4] * 3, "c2": [2e-4] * 3}
    _measure(_cands(["c1"]), out, FakeBuilder(tmp_path), FakeRunner(plan))
    with open(out, "a") as f:
        f.write('{"workload": "gemm_fp16_1024", "candidate_id": "c2", "sta')     # killed mid-write
    r = FakeRunner(plan)
    with pytest.warns(R.RecordWarning, match="m.jsonl:2: corrupted line skipped"):
        assert _measure(_cands(["c1", "c2"]), out, FakeBuilder(tmp_path), r) == {"skipped": 1, "ok": 1}
    problems = []
    with pytest.warns(R.RecordWarning):
        recs = R.read_records(str(out), problems)
    assert [x.candidate_id for x in recs] == ["c1", "c2"] and len(problems) == 1


def test_measure_command_end_to_end_with_stand_ins(monkeypatch, capfd, tmp_path):
    """The CLI wiring of 'costpass measure': the device check, sampling and MetaSchedule's runner and
    builder are replaced by stand-ins; the rest (arguments, loop, records, summary, resume) is real."""
    from costpass.measure import build
    plan = {"k1": [1e-4] * 3, "k2": [3e-4] * 3}
    monkeypatch.setattr(TR, "check_device", lambda cfg, name: dict(DEVICE))
    monkeypatch.setattr(TR, "sample", lambda wls, target, n, ne, **kw: _cands(["k1", "k2"])[:n])
    monkeypatch.setattr(TR, "make_runner", lambda cfg, n=None: FakeRunner(plan))
    monkeypatch.setattr(TR, "apply_candidate", _module_of)
    monkeypatch.setattr(build, "ms_builder", lambda max_workers=1: FakeBuilder(tmp_path))
    out = tmp_path / "runs" / "m.jsonl"            # the folder is created with the first record
    rc, o, err = run(BASE + ["--out", str(out), "--tag", "cli"], capfd)
    assert rc == 0, err
    assert f"{out}: 2 ok; 0 already there (skipped)" in err
    assert "gemm_fp16_1024: 2 measured, best 0.1000 ms" in err
    recs = R.read_records(str(out))
    assert [x.candidate_id for x in recs] == ["k1", "k2"] and {x.tag for x in recs} == {"cli"}
    with open(out, "a") as f:
        f.write('{"workload": "gemm_fp16_1024", "candid')                       # a torn line
    rc, o, err = run(BASE + ["--out", str(out)], capfd)
    assert rc == 0 and f"{out}: nothing new; 2 already there (skipped)" in err
    assert f"costpass: warning: {out}:3: corrupted line skipped" in err and "Traceback" not in err
    rc, o, err = run(["data", "stats", str(out)], capfd)
    assert rc == 0 and "gemm_fp16_1024" in o and "0.1000" in o
