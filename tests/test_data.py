"""Dataset loader: formats, corrupted lines reported with file:line, mixed GPUs refused."""
import gzip
import lzma
import os

import pytest

from costpass import data
from costpass.measure import records as R

H100 = "NVIDIA H100 80GB HBM3"
H200 = "NVIDIA H200"


def rec(cid, gpu=H100, wl="mm", status="ok", med=1.0):
    return R.Record(workload=wl, candidate_id=cid, status=status, gpu=gpu,
                    run_times_ms=[med * 0.9, med, med * 1.1] if status == "ok" else [],
                    median_ms=med if status == "ok" else None, repeats=3 if status == "ok" else 0)


def write_plain(path, recs, extra_lines=()):
    with open(path, "w") as f:
        for r in recs:
            f.write(R.dumps(r.to_dict()) + "\n")
        for ln in extra_lines:
            f.write(ln + "\n")


def test_gpu_key():
    assert data.gpu_key(H100) == "h100"
    assert data.gpu_key(H200) == "h200"
    assert data.gpu_key("NVIDIA A100-SXM4-80GB") == "a100"


def test_load_all_formats_by_gpu_name(tmp_path):
    d = tmp_path / "h100"
    d.mkdir()
    write_plain(d / "a.jsonl", [rec("a")])
    data.write_compressed([rec("b")], str(d / "b.jsonl.gz"))
    data.write_compressed([rec("c")], str(d / "c.jsonl.xz"))
    (d / "notes.txt").write_text("not a dataset")
    got = data.load("h100", root=str(tmp_path))
    assert sorted(r.candidate_id for r in got) == ["a", "b", "c"]
    assert sorted(r.candidate_id for r in data.load(H100, root=str(tmp_path))) == ["a", "b", "c"]
    assert [r.candidate_id for r in data.load(str(d / "c.jsonl.xz"))] == ["c"]
    with pytest.raises(FileNotFoundError):
        data.load("a100", root=str(tmp_path))


def test_corrupted_line_reported_with_file_and_line(tmp_path):
    p = tmp_path / "m.jsonl"
    write_plain(p, [rec("a"), rec("b")], ['{"workload": "mm", "candidate_id": "c", "stat',
                                          '{"workload": "mm", "candidate_id": "d", "status": "great"}'])
    with open(p, "a") as f:
        f.write(R.dumps(rec("e").to_dict()) + "\n")
    problems = []
    with pytest.warns(R.RecordWarning) as w:
        got = data.load(str(p), problems=problems)
    assert [r.candidate_id for r in got] == ["a", "b", "e"]
    assert problems[0].startswith(f"{p}:3:") and problems[1].startswith(f"{p}:4:")
    assert any(f"{p}:3:" in str(x.message) for x in w)


def test_truncated_xz_is_reported(tmp_path):
    p = tmp_path / "t.jsonl.xz"
    data.write_compressed([rec(f"c{i}") for i in range(2000)], str(p))
    blob = p.read_bytes()
    p.write_bytes(blob[: len(blob) // 2])
    problems = []
    with pytest.warns(R.RecordWarning):
        got = data.load(str(p), problems=problems)
    assert 0 < len(got) < 2000
    assert problems and "truncated" in problems[-1] and problems[-1].startswith(f"{p}:")


def test_mixed_gpus_in_one_file_refused(tmp_path):
    p = tmp_path / "m.jsonl"
    write_plain(p, [rec("a"), rec("b", gpu=H200)])
    with pytest.raises(data.DatasetError, match="m.jsonl.*2 GPUs"):
        data.load(str(p))


def test_mixed_gpus_across_files_and_wrong_folder_refused(tmp_path):
    d = tmp_path / "h100"
    d.mkdir()
    write_plain(d / "a.jsonl", [rec("a")])
    write_plain(d / "b.jsonl", [rec("b", gpu=H200)])
    with pytest.raises(data.DatasetError, match="several GPUs"):
        data.load("h100", root=str(tmp_path))
    os.remove(d / "a.jsonl")
    with pytest.raises(data.DatasetError, match="'h100' holds records of 'NVIDIA H200'"):
        data.load("h100", root=str(tmp_path))


def test_stats_and_statuses():
    recs = [rec("a", med=1.0), rec("b", med=4.0), rec("c", status="run_error"), rec("d", wl="va", med=2.0)]
    rows = {r["workload"]: r for r in data.stats(recs)}
    mm = rows["mm"]
    assert mm["n"] == 3 and mm["ok"] == 2 and mm["by_status"] == {"ok": 2, "run_error": 1}
    assert mm["median_of_medians_ms"] == 2.5 and mm["best_ms"] == 1.0 and mm["spread"] == 4.0
    assert abs(mm["noise"] - 0.16) < 1e-9
    assert rows["va"]["n"] == 1
    assert "mm" in data.format_stats(data.stats(recs))


def test_merge_and_write_compressed(tmp_path):
    a = [rec("a"), rec("b")]
    b = [rec("b"), rec("b", med=2.0)]
    assert len(data.merge(a, b)) == 3
    latest = data.merge(a, b, dedupe="latest")
    assert [(r.candidate_id, r.median_ms) for r in latest] == [("a", 1.0), ("b", 2.0)]
    p = data.write_compressed(data.merge(a, b), str(tmp_path / "out.jsonl.xz"))
    with lzma.open(p, "rt") as f:
        assert len(f.read().splitlines()) == 3
    p2 = data.write_compressed(a, str(tmp_path / "out.jsonl.gz"))
    with gzip.open(p2, "rt") as f:
        assert len(f.read().splitlines()) == 2
    assert [r.candidate_id for r in data.merge(p, p2)] == ["a", "b", "b"]
    with pytest.raises(ValueError):
        data.write_compressed(a, str(tmp_path / "out.json"))


def test_one_build_at_a_time(tmp_path):
    d = tmp_path / "h100"
    d.mkdir()
    old = [rec("a", med=2.0), rec("b", med=1.0)]                 # schema-1 records: nvcc -O3
    new = [rec("a", med=1.5)]
    new[0].build = {"compiler": "tvm", "mode": "nvrtc"}
    data.write_compressed(old, str(d / "r1.jsonl.xz"))
    data.write_compressed(new, str(d / "r7.jsonl.xz"))
    assert [data.build_kind(r) for r in data.load("h100", root=str(tmp_path))] == ["nvcc", "nvcc", "tvm"]
    # the model code's default: TVM's own build where the GPU has it
    got = data.load("h100", root=str(tmp_path), build="auto")
    assert [(r.candidate_id, r.median_ms) for r in got] == [("a", 1.5)]
    assert sorted(r.candidate_id for r in data.load("h100", root=str(tmp_path), build="nvcc")) == ["a", "b"]
    assert len(data.load("h100", root=str(tmp_path))) == 3                 # "all" by default
    # a GPU with nvcc records only keeps them under "auto"
    assert len(data.select_build(old, "auto")) == 2
    with pytest.raises(ValueError):
        data.select_build(old, "fast")
    # the field survives a round trip; a record without it reads as {}
    assert data.load(str(d / "r7.jsonl.xz"))[0].build == {"compiler": "tvm", "mode": "nvrtc"}
    assert R.Record.from_dict({"workload": "w", "candidate_id": "c", "status": "ok"}).build == {}
