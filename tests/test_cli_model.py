"""`costpass predict`: JSONL in, JSONL out; a bad line gets an error and the rest go on."""
import json

import kernels
from costpass import cli


def test_predict_jsonl(tmp_path):
    good = kernels.vector_add(1 << 16).script()
    lines = [{"id": "ok", "tir": good, "extra": 1}, {"id": "bad", "tir": "def ("}, {"id": "none"}]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "out.jsonl"
    assert cli.main(["predict", "--gpu", "h100", "--input", str(src), "--output", str(out), "--model", "none"]) == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in recs] == ["ok", "bad", "none"]
    assert recs[0]["latency_ms"] > 0 and recs[0]["bottleneck"] in ("dram", "l2", "latency", "lsu", "issue")
    # with no learned model the prediction is the analytical estimate
    assert abs(recs[0]["latency_ms"] - recs[0]["estimate_ms"]) < 1e-9
    assert "error" in recs[1] and "malformed TVMScript" in recs[1]["error"]
    assert "error" in recs[2]


def test_predict_nothing_predicted_exits_2(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "x", "tir": "nope"}) + "\n")
    assert cli.main(["predict", "--input", str(src), "--output", str(tmp_path / "o.jsonl")]) == 2


def test_predict_unknown_gpu_is_one_line(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("{}\n")
    assert cli.main(["predict", "--gpu", "h1000", "--input", str(src), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "h1000" in err[0]
