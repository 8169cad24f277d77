"""The costpass command line: outputs, inputs, and one-line errors (exit code 2) for bad input."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from costpass import cli

HERE = Path(__file__).resolve().parent
KERNELS = HERE / "golden" / "kernels"
ROOT = HERE.parent


def run(argv, capfd):
    rc = cli.main(argv)
    out, err = capfd.readouterr()
    return rc, out, err


def assert_one_line_error(rc, out, err, *needles):
    assert rc == 2, (rc, out, err)
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("costpass: error: "), lines[0]
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# --------------------------------------------------------------------------------------------------
# diagnose --example (the README's main job)
# --------------------------------------------------------------------------------------------------

def test_diagnose_example_prints_a_table(capfd):
    rc, out, err = run(["diagnose", "--example"], capfd)
    assert rc == 0, err
    assert "kernel main_kernel" in out and "resource" in out and "bound by" in out
    assert "L2 bandwidth" in out and "tensor core" in out and "occupancy" in out
    assert "\x1b[" not in out                      # not a TTY: plain text
    assert max(len(line) for line in out.splitlines()) <= 100
    assert err == ""


def test_diagnose_example_json_multi_gpu_and_plot(capfd, tmp_path):
    png = tmp_path / "ex.png"
    rc, out, err = run(["diagnose", "--example", "--gpu", "h100,h200", "--json", "--plot", str(png),
                        "--measured-ms", "0.1"], capfd)
    assert rc == 0, err
    rep = json.loads(out)
    assert [g["name"] for g in rep["gpus"]] == ["h100", "h200"]
    (k,) = rep["modules"][0]["kernels"]
    assert [g["gpu"] for g in k["per_gpu"]] == ["h100", "h200"]
    assert k["per_gpu"][0]["measured"]["measured_us"] == pytest.approx(100.0)
    assert rep["modules"][0]["totals"]["h100"]["fraction_of_ceiling"] > 0
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20000
    assert err.strip() == f"costpass: wrote {png}"


def test_example_list_and_all(capfd):
    rc, out, _ = run(["diagnose", "--example", "list"], capfd)
    assert rc == 0 and cli.DEFAULT_EXAMPLE in out
    rc, out, err = run(["diagnose", "--example", "all", "--summary", "-q"], capfd)
    assert rc == 0, err
    for name in cli.list_examples():
        assert name in out


def test_console_script_example():
    """The installed entry point (or python -m costpass), as a user runs it, without a TTY."""
    exe = shutil.which("costpass")
    cmd = [exe] if exe else [sys.executable, "-m", "costpass"]
    p = subprocess.run(cmd + ["diagnose", "--example"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "resource" in p.stdout and "pressure" in p.stdout and "bound by" in p.stdout
    p = subprocess.run(cmd + ["diagnose", "--gpu", "h10", str(KERNELS / "copy.py")], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert_one_line_error(p.returncode, p.stdout, p.stderr, "unknown GPU 'h10'", "did you mean h100")


# --------------------------------------------------------------------------------------------------
# other inputs
# --------------------------------------------------------------------------------------------------

def test_diagnose_file_and_stdin(capfd, monkeypatch):
    rc, out, err = run(["diagnose", str(KERNELS / "copy.py")], capfd)
    assert rc == 0, err
    assert "== copy" in out and "bound by DRAM bandwidth" in out
    monkeypatch.setattr(sys, "stdin", io.StringIO((KERNELS / "exp.py").read_text()))
    rc, out, err = run(["diagnose", "-", "--json"], capfd)
    assert rc == 0, err
    assert json.loads(out)["modules"][0]["kernels"][0]["per_gpu"][0]["bottleneck"] == "xu"


def test_file_with_imports_is_accepted(capfd, tmp_path):
    src = "from tvm.script import ir as I\nfrom tvm.script import tirx as T\n" + (KERNELS / "copy.py").read_text()
    f = tmp_path / "k.py"
    f.write_text(src)
    rc, out, err = run(["diagnose", str(f), "--summary"], capfd)
    assert rc == 0, err


def test_extract(capfd):
    rc, out, err = run(["extract", str(KERNELS / "copy.py")], capfd)
    assert rc == 0, err
    (d,) = json.loads(out)
    assert d["name"] == "main_kernel" and d["launch"]["grid"] == [65536, 1, 1]
    assert {"inst", "memory", "mma", "tensor_flops", "global_buffers"} <= set(d)
    from costpass.records import KernelDemand
    assert KernelDemand.from_dict(d).launch.num_blocks == 65536
    rc, out, err = run(["extract", "--gpu", "h100,a100", str(KERNELS / "copy.py")], capfd)
    assert rc == 0, err
    (item,) = json.loads(out)
    assert set(item) == {"demand", "bounds"} and set(item["bounds"]) == {"h100", "a100"}
    assert item["bounds"]["h100"]["bottleneck"] == "dram"


def test_gpus(capfd):
    rc, out, _ = run(["gpus"], capfd)
    assert rc == 0
    assert "h100" in out and "H100 SXM5" in out and "3.35" in out
    rc, out, _ = run(["gpus", "--json"], capfd)
    names = [g["name"] for g in json.loads(out)]
    assert "h100" in names and "a100" in names


def _make_database(path: Path):
    """A two-record MetaSchedule JSON database of a hand-scheduled vector add (no sampling)."""
    cli.preload_tensor_intrinsics()
    import tvm
    from tvm import s_tir, te
    from tvm.s_tir import meta_schedule as ms

    n = 1 << 22
    A = te.placeholder((n,), "float32", name="A")
    Bt = te.placeholder((n,), "float32", name="B")
    C = te.compute((n,), lambda i: A[i] + Bt[i], name="C")
    mod = tvm.IRModule({"main": te.create_prim_func([A, Bt, C])})
    db = ms.database.JSONDatabase(work_dir=str(path))
    wl = db.commit_workload(mod)
    target = cli._target_for([])
    args_info = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    for threads, secs in ((256, 2.0e-5), (64, 3.5e-5)):
        sch = s_tir.Schedule(mod)
        (i,) = sch.get_loops(sch.get_sblock("C"))
        bx, tx = sch.split(i, [None, threads])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
        db.commit_tuning_record(ms.database.TuningRecord(sch.trace, wl, [secs, secs], target, args_info))


def test_database_best_and_all(capfd, tmp_path):
    _make_database(tmp_path)
    rc, out, err = run(["diagnose", "--database", str(tmp_path), "--json", "-q"], capfd)
    assert rc == 0, err
    rep = json.loads(out)
    (mod,) = rep["modules"]
    assert mod["measured_ms"] == pytest.approx(0.02)       # the best record
    assert mod["kernels"][0]["launch"]["block"] == [256, 1, 1]
    assert mod["kernels"][0]["per_gpu"][0]["measured"]["measured_us"] == pytest.approx(20.0)
    rc, out, err = run(["diagnose", "--database", str(tmp_path), "--all", "-q"], capfd)
    assert rc == 0, err
    assert "#1" in out and "#2" in out and "measured" in out


def test_workload_without_shipped_schedule_samples(capfd):
    rc, out, err = run(["diagnose", "--workload", "residual_add_fp16", "--samples", "1", "--json"], capfd)
    assert rc == 0, err
    rep = json.loads(out)
    assert "no tuned schedule is shipped" in " ".join(rep["modules"][0]["notes"])
    assert "sampling" in err                                  # and it says so on stderr


def test_workload_with_shipped_schedule(capfd):
    rc, out, err = run(["diagnose", "--workload", "llama3_8b_o_proj_fp16", "--summary", "-q"], capfd)
    assert rc == 0, err
    assert "shipped schedule" in out


def test_registry_adds_a_subcommand(capfd):
    def add(sub):
        p = sub.add_parser("hello", help="test command")
        p.add_argument("--name", default="x")
        return p

    cli.register("hello", add, lambda a: print(f"hello {a.name}") or 0)
    try:
        rc, out, _ = run(["hello", "--name", "gpu"], capfd)
        assert rc == 0 and out.strip() == "hello gpu"
        rc, out, _ = run(["--help"], capfd)
        assert "hello" in out and "diagnose" in out
    finally:
        cli._COMMANDS.pop("hello", None)


# --------------------------------------------------------------------------------------------------
# bad input: one line on stderr, exit code 2
# --------------------------------------------------------------------------------------------------

MALFORMED = '@I.ir_module\nclass Module:\n    @T.prim_func\n    def main(A: T.Buffer((16,), "float32")):\n' \
            '        for i in range(16):\n            A[i] = A[i] +\n'
UNDEFINED = '@I.ir_module\nclass Module:\n    @T.prim_func\n    def main(A: T.Buffer((16,), "float32")):\n' \
            '        for i in range(16):\n            A[i] = B[i]\n'
NO_THREADS = '@I.ir_module\nclass Module:\n    @T.prim_func\n    def main(A: T.Buffer((16,), "float32")):\n' \
             '        for i in range(16):\n            A[i] = A[i] + T.float32(1)\n'
SYMBOLIC = '''@I.ir_module
class Module:
    @T.prim_func
    def main(a: T.handle, n: T.int32):
        A = T.match_buffer(a, (1024,), "float32")
        for bx in T.thread_binding(4, thread="blockIdx.x"):
            for tx in T.thread_binding(256, thread="threadIdx.x"):
                for k in range(n):
                    A[bx * 256 + tx] = A[bx * 256 + tx] + T.float32(1)
'''


@pytest.mark.parametrize("text,needles", [
    (MALFORMED, (":6: malformed TVMScript", "invalid syntax")),
    (UNDEFINED, (":6: malformed TVMScript", "Undefined variable: B")),
    (NO_THREADS, ("no GPU kernel", "thread bindings")),
    (SYMBOLIC, ("symbolic loop extent",)),
    ("# just a comment\nx = 1\n", ("no kernel",)),
    ("", ("no kernel",)),
], ids=["malformed", "undefined-var", "no-thread-bindings", "symbolic-extent", "no-kernel", "empty"])
def test_bad_tvmscript(text, needles, capfd, tmp_path):
    f = tmp_path / "bad.py"
    f.write_text(text)
    for sub in ("diagnose", "extract"):
        rc, out, err = run([sub, str(f)], capfd)
        assert_one_line_error(rc, out, err, str(f), *needles)
        assert out == ""


@pytest.mark.parametrize("argv,needles", [
    (["diagnose", "--example", "--gpu", "h10"], ("unknown GPU 'h10'", "did you mean h100")),
    (["diagnose", "--example", "--gpu", "h100,a10O"], ("unknown GPU 'a10O'", "did you mean a100")),
    (["diagnose", "--workload", "llama3_8b_oproj"], ("unknown workload 'llama3_8b_oproj'",
                                                     "did you mean llama3_8b_o_proj_fp16")),
    (["diagnose", "--example", "gem"], ("unknown example 'gem'",)),
    (["diagnose", "/nonexistent/k.py"], ("/nonexistent/k.py: no such file",)),
    (["diagnose", "--database", "/nonexistent/db"], ("cannot read database /nonexistent/db",)),
    (["diagnose"], ("nothing to diagnose",)),
    (["diagnose", "--example", "--measured-ms", "-1"], ("--measured-ms",)),
    (["diagnose", "--example", "--plot", "/nonexistent/dir/x.png"], ("cannot write plot",)),
    (["diagnose", "--example", "--bogus"], ("unrecognized arguments: --bogus",)),
    (["extract"], ("the following arguments are required",)),
], ids=["gpu", "gpu-in-list", "workload", "example", "missing-file", "missing-db", "no-input",
        "measured", "plot-dir", "bad-flag", "extract-no-file"])
def test_bad_arguments(argv, needles, capfd):
    rc, out, err = run(argv, capfd)
    assert_one_line_error(rc, out, err, *needles)


@pytest.mark.parametrize("workloads,records", [
    ("{not json\n", "{not json\n"),
    ('["a", 1]\n["b"\n', '["a", 1]\n["b"\n'),
    ("\n", "\n"),
    ('["a", 1]\n', "[0, [1, 2]]\n"),
], ids=["garbage", "truncated", "empty", "wrong-structure"])
def test_unreadable_database(workloads, records, capfd, tmp_path):
    (tmp_path / "database_workload.json").write_text(workloads)
    (tmp_path / "database_tuning_record.json").write_text(records)
    rc, out, err = run(["diagnose", "--database", str(tmp_path)], capfd)
    assert_one_line_error(rc, out, err, str(tmp_path))


def test_database_dir_without_files(capfd, tmp_path):
    rc, out, err = run(["diagnose", "--database", str(tmp_path)], capfd)
    assert_one_line_error(rc, out, err, "expected database_workload.json")
