"""Record schema round trip and the resumable JSONL writer (no GPU, no TVM)."""
import json
import math
import os
import warnings

import pytest

from costpass.measure import gpu_run, records as R


def rec(cid="c0", **kw):
    d = dict(workload="mm", candidate_id=cid, status="ok", gpu="NVIDIA H100 80GB HBM3",
             repeats=3, run_times_ms=[1.0, 2.0, 3.0], median_ms=2.0, clocks={"sm_mhz": 1980})
    d.update(kw)
    return R.Record.from_dict(d)


def test_round_trip_keeps_every_field_and_unknown_keys():
    r = rec(correctness={"rel_l2": 1e-6, "tol": 1e-3, "ok": True}, timing={"probe_ms": 1.5})
    d = r.to_dict()
    d["future_field"] = {"x": 1}
    back = R.Record.from_dict(json.loads(R.dumps(d)))
    assert back.extra == {"future_field": {"x": 1}}
    assert back.to_dict() == json.loads(R.dumps(d))
    assert back.median_ms == 2.0 and back.correctness["ok"] is True


def test_invalid_records_are_refused():
    with pytest.raises(ValueError):
        rec(status="fine")
    with pytest.raises(ValueError):
        R.Record.from_dict({"workload": "mm", "status": "ok"})
    with pytest.raises(ValueError):
        rec(run_times_ms=["1.0"])


def test_nan_becomes_null():
    line = R.dumps(rec(median_ms=float("nan")).to_dict())
    assert json.loads(line)["median_ms"] is None


def test_median():
    assert R.median([3, 1, 2]) == 2 and R.median([4, 1, 2, 3]) == 2.5 and R.median([]) is None


def test_writer_resume_after_crash(tmp_path):
    out = str(tmp_path / "m.jsonl")
    with R.JsonlWriter(out) as w:
        for i in range(3):
            w.append(rec(f"c{i}"))
    # a kill in the middle of the fourth write leaves a torn line
    with open(out, "a") as f:
        f.write('{"workload": "mm", "candidate_id": "c3", "sta')
    with pytest.warns(R.RecordWarning, match=r"m\.jsonl:4"):
        done = R.recorded_ids(out)
    assert done == {"c0", "c1", "c2"}
    # the planner of a rerun skips what is recorded, keeps the torn one
    entries = [{"id": f"c{i}", "workload": "mm", "arg_specs": []} for i in range(5)]
    with pytest.warns(R.RecordWarning):
        todo, skipped = gpu_run.plan_ids(entries, out, None, None)
    assert todo == ["c3", "c4"] and skipped == 3
    # a new writer starts on a fresh line: the torn fragment does not swallow the next record
    with R.JsonlWriter(out) as w:
        w.append(rec("c3"))
    problems = []
    with pytest.warns(R.RecordWarning):
        got = R.read_records(out, problems)
    assert [r.candidate_id for r in got] == ["c0", "c1", "c2", "c3"]
    assert len(problems) == 1 and problems[0].startswith(f"{out}:4:")


def test_redo_status(tmp_path):
    out = str(tmp_path / "m.jsonl")
    with R.JsonlWriter(out) as w:
        w.append(rec("a"))
        w.append(rec("b", status="timeout", run_times_ms=[], median_ms=None))
    assert R.recorded_ids(out) == {"a", "b"}
    assert R.recorded_ids(out, ["timeout"]) == {"a"}


def test_plan_groups_by_workload_and_limits(tmp_path):
    entries = [{"id": "x1", "workload": "x"}, {"id": "y1", "workload": "y"}, {"id": "x2", "workload": "x"}]
    ids = tmp_path / "ids.txt"
    ids.write_text("x2\ny1\n")
    assert gpu_run.plan_ids(entries, str(tmp_path / "none.jsonl"), None, None)[0] == ["x1", "x2", "y1"]
    assert gpu_run.plan_ids(entries, str(tmp_path / "none.jsonl"), str(ids), None)[0] == ["x2", "y1"]
    assert gpu_run.plan_ids(entries, str(tmp_path / "none.jsonl"), None, 2)[0] == ["x1", "x2"]


def test_kernel_names_from_cuda_source():
    src = ('extern "C" __global__ void __launch_bounds__(128) main_kernel(float* A);\n'
           'extern "C" __global__ void main_kernel_1(float* B);\n'
           'extern "C" __global__ void __launch_bounds__(128) main_kernel(float* A) {}\n')
    assert gpu_run.kernel_names(src) == ["main_kernel", "main_kernel_1"]


def test_ncu_csv_parsing_raw_and_details():
    from costpass.measure import ncu

    raw = "\n".join([
        '@@COSTPASS_CAND 0 c0',
        '==PROF== Profiling "main_kernel" - 0: 0%....50%....100% - 9 passes',
        '"ID","Kernel Name","Block Size","Grid Size","dram__bytes_read.sum","gpu__time_duration.sum"',
        '"","","","","Kbyte","usecond"',
        '"0","main_kernel","(256, 1, 1)","(64, 1, 1)","1,024","12.5"',
    ])
    k = ncu.parse_csv_rows(raw)
    assert k[0]["metrics"] == {"dram__bytes_read.sum": 1024000, "gpu__time_duration.sum": 12500.0}
    assert k[0]["units"]["gpu__time_duration.sum"] == "nsecond"
    mapping, how = ncu.map_kernels(raw, [{"id": "c0", "status": "ok", "kernels": ["main_kernel"]}], k)
    assert mapping == {0: "c0"} and how == "prof_lines"
    det = "\n".join([
        '"ID","Kernel Name","Section Name","Metric Name","Metric Unit","Metric Value"',
        '"3","main_kernel","Command line profiler metrics","launch__grid_size","","4,096"',
    ])
    k = ncu.parse_csv_rows(det)
    assert k[0]["ncu_id"] == 3 and k[0]["metrics"]["launch__grid_size"] == 4096
