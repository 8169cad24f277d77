"""costpass compile: the Llama block, zero-shot tuning end to end, the report's arithmetic, resume, errors."""
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from costpass import compile as C
from costpass.cli import main
from schedules import llama_block as L

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kw", [("decode", {"kv": 48}), ("prefill", {"seq": 8, "kv": 24})])
def test_llama_block_matches_numpy_reference(name, kw):
    """The Relax block (built for the CPU here) computes what the numpy reference computes."""
    import tvm
    from tvm import relax
    c, s = L.CONFIGS["tiny"], L.shape(name, **kw)
    mod, specs = L.build(c, s)
    assert [a["name"] for a in specs] == [n for n, _, _ in L.input_specs(c, s) + L.weight_specs(c)]
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    a = L.random_args(c, s, seed=1)
    out = vm["main"](*[tvm.runtime.tensor(a[x["name"]]) for x in specs]).numpy().astype(np.float32)
    ref = L.reference_numpy(c, s, a).astype(np.float32)
    assert out.shape == (s.batch, s.seq, c.hidden)
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 2e-3
    # the test can fail: a different causal offset changes the result
    if s.seq > 1:
        a2 = dict(a)
        a2["x"] = a["x"].copy()
        a2["x"][:, -1] += 1.0
        out2 = vm["main"](*[tvm.runtime.tensor(a2[x["name"]]) for x in specs]).numpy().astype(np.float32)
        assert np.allclose(out2[:, :-1], out[:, :-1], atol=4e-3)   # causal: earlier rows do not see the last
        assert not np.allclose(out2[:, -1], out[:, -1], atol=1e-2)


def test_shapes_and_configs():
    assert L.shape("decode").kv == 512 and L.shape("decode").seq == 1 and L.shape("decode").past == 511
    assert L.shape("prefill").seq == 512 and L.shape("prefill").past == 0
    c = L.CONFIGS["llama3-8b"]
    assert (c.hidden, c.heads, c.kv_heads, c.head_dim, c.intermediate) == (4096, 32, 8, 128, 14336)
    with pytest.raises(ValueError):
        L.shape("decode", kv=0)
    with pytest.raises(ValueError):
        L.get_config("nope")


# ---------------------------------------------------------------------------------------------------------
# Zero-shot compile, end to end (tiny widths, a handful of trials)
# ---------------------------------------------------------------------------------------------------------

TRIALS = 8


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("compile")
    work = str(d / "work")
    n = [0]

    def fail(_mod):                       # every third candidate fails to build
        n[0] += 1
        return n[0] % 3 == 0

    model = C.load_model("llama_block", config="tiny", shape="decode", kv=64)
    opt = C.TuneOptions(population=32, genetic_iters=1, trials_per_iter=4, num_threads=1, fail=fail)
    report = C.compile_model(model, "h100,h200", runner="none", trials=TRIALS, work_dir=work,
                             output=str(d / "block.so"), options=opt)
    return {"dir": d, "work": work, "model": model, "report": report, "opt": opt}


def test_every_launched_kernel_is_listed(compiled):
    r, model = compiled["report"], compiled["model"]
    target = C.target_for(C.load_gpus("h100")[0])
    # independent count: the PrimFunc calls in the Relax VM's bytecode of the same build
    built = C.build(C.prepare(model.mod, target), target, C.open_database(compiled["work"]))
    calls = [ln.split()[1] for ln in built.executable.as_text().splitlines()
             if ln.strip().startswith("call ") and not ln.split()[1].startswith("vm.")]
    assert len(calls) >= 10, calls
    assert {k.name: k.calls for k in r.kernels} == {n: calls.count(n) for n in set(calls)}
    assert [k.name for k in r.kernels] == list(dict.fromkeys(calls))          # order of first call
    assert max(k.calls for k in r.kernels) == 2                               # the two RMSNorms share one
    for k in r.kernels:
        assert k.device_kernels and k.origin in ("tuned", "default", "default-faster")
        assert [p.gpu for p in k.per_gpu] == ["h100", "h200"]


def test_shares_and_end_to_end_prediction(compiled):
    r = compiled["report"]
    for i, g in enumerate(r.gpus):
        ps = [k.per_gpu[i] for k in r.kernels]
        assert math.isclose(sum(p.share for p in ps), 1.0, rel_tol=1e-9)
        total = sum(p.predicted_us * k.calls for p, k in zip(ps, r.kernels))
        assert math.isclose(r.totals[g]["predicted_us"], total, rel_tol=1e-12)
        assert math.isclose(r.totals[g]["ceiling_us"], sum(p.ceiling_us * k.calls for p, k in zip(ps, r.kernels)))
        assert r.totals[g]["calls"] == sum(k.calls for k in r.kernels)
        launch = C.load_gpus(g)[0].limits["launch_overhead_us"]
        assert math.isclose(r.totals[g]["launch_us"], launch * r.totals[g]["launches"])
        # in a stream: each call less what the event pair of the learned model's training times reads beyond the kernel, plus the
        # VM's gap between kernels per launch
        learned = r.totals[g]["predictor"] == "learned"
        off = {"h100": 2.94, "h200": 2.99}[g] if learned else 0.0
        gap = {"h100": 1.51, "h200": 1.42}[g] if learned else 0.0
        assert r.totals[g]["timer_offset_us"] == off and r.totals[g]["stream_gap_us"] == gap
        assert math.isclose(r.totals[g]["stream_us"], sum((max(p.predicted_us - off, 0.0) + gap * len(k.device_kernels))
                                                         * k.calls for p, k in zip(ps, r.kernels)), rel_tol=1e-12)
        # no record was measured here (runner none): with records is the same as in stream
        assert r.totals[g]["anchored_kernels"] == 0 and math.isclose(r.totals[g]["anchored_us"], r.totals[g]["stream_us"])
        for p in ps:
            assert p.predicted_us > 0 and p.ceiling_us > p.launch_us > 0
            assert math.isclose(p.fraction_of_ceiling, p.ceiling_us / p.predicted_us)
            assert p.bottleneck and p.hint
    # the text table lists every kernel and the totals
    text = C.render_text(r)
    for k in r.kernels:
        assert k.name[:20] in text
    for g in r.gpus:
        assert f"{g}: predicted end to end {C._us(r.totals[g]['predicted_us'])}" in text
        assert (f"{g}: in a stream {C._us(r.totals[g]['stream_us'])}" in text) == bool(r.totals[g]["timer_offset_us"])


def test_stream_offset_is_spec_data():
    from costpass import spec

    assert C.stream_offset_us(spec.load("h100"), "learned") == 2.94  # event time less kernel time, not the null launch
    assert C.stream_offset_us(spec.load("h100"), "analytical") == 0.0  # the estimate carries its own launch term
    assert C.stream_offset_us(spec.load("a100"), "learned") == 0.0     # no measurement for that GPU
    assert C.stream_gap_us(spec.load("h100"), "learned") == 1.51 and C.stream_gap_us(spec.load("h200"), "learned") == 1.42
    assert C.stream_gap_us(spec.load("h100"), "analytical") == 0.0 and C.stream_gap_us(spec.load("a100"), "learned") == 0.0


def test_stream_total_with_measured_records_by_hand():
    """Two GPUs, three PrimFuncs: a tuned one with a measured record, a tuned one whose record is a prediction
    (runner none) and a DLight one. Only the first takes its record; on the second GPU it is scaled by the
    two GPUs' predictions. Counted by hand."""
    def kp(gpu, us):
        return C.KernelPrediction(gpu=gpu, predicted_us=us, predictor="learned", estimate_us=us, ceiling_us=us,
                                  launch_us=1.0, total_us=us, share=0.0, bottleneck="dram", bottleneck_label="dram",
                                  fraction_of_ceiling=1.0, hint=None)

    def ke(name, calls, kernels, origin, rec, kind, p0, p1):
        return C.KernelEntry(name=name, calls=calls, first_call=0, origin=origin, device_kernels=kernels,
                             record_us=rec, record_kind=kind, per_gpu=[kp("h100", p0), kp("h200", p1)])

    es = [ke("gemm", 2, ["k0"], "tuned", 10.0, "measured", 14.0, 7.0),
          ke("norm", 1, ["k1", "k2"], "tuned", 3.0, "predicted", 6.0, 5.0),
          ke("silu", 1, ["k3"], "default", None, None, 5.0, 4.0)]
    # GPU 0: gemm 2 x 10 = 20 (a record holds its launch gap); norm (6 - 3) + 2 x 1.5 = 6; silu (5 - 3) + 1.5 = 3.5
    assert C.stream_total_us(es, 0, 3.0, 1.5, tuned_gi=0) == (29.5, 1)
    # GPU 1: gemm's record x 7/14 = 5: 2 x 5 = 10; norm (5 - 3) + 3 = 5; silu max(4 - 3, 0) + 1.5 = 2.5
    assert C.stream_total_us(es, 1, 3.0, 1.5, tuned_gi=0) == (17.5, 1)
    # a prediction below the offset counts 0, not less
    assert C.stream_total_us(es[2:], 1, 9.0, 0.0, tuned_gi=0) == (0.0, 0)
    # without tuned_gi no record is taken: gemm 2 x (14 - 3 + 1.5) = 25, + 6 + 3.5
    assert C.stream_total_us(es, 0, 3.0, 1.5) == (34.5, 0)


def test_tuning_records_failures_and_resumes(compiled):
    r, work = compiled["report"], compiled["work"]
    t = r.tuning
    assert t["trials_run"] >= TRIALS and t["records"] == t["trials_run"]
    assert t["failed"] >= 1                            # the injected build failures were recorded ...
    with open(os.path.join(work, "database_tuning_record.json")) as f:
        secs = [json.loads(line)[1][1][0] for line in f if line.strip()]
    assert len(secs) == t["records"] and sum(s >= 1e9 for s in secs) == t["failed"]
    assert sum(0 < s < 1e-2 for s in secs) == t["records"] - t["failed"]   # ... and search went on
    assert any(k.origin != "default" for k in r.kernels)
    # same command again: the database already holds the trials, nothing new is tuned
    again = C.compile_model(compiled["model"], "h100", runner="none", trials=TRIALS, work_dir=work,
                            options=compiled["opt"])
    assert again.tuning["trials_run"] == 0 and again.tuning["records_before"] == t["records"]
    assert [k.name for k in again.kernels] == [k.name for k in r.kernels]
    # more trials in a copy of the work dir: the resumed search runs none of the database's schedules again
    import shutil
    from tvm_ffi import structural_hash
    more = str(compiled["dir"] / "work_more")
    shutil.copytree(work, more)
    grown = C.compile_model(compiled["model"], "h100", runner="none", trials=TRIALS + 8, work_dir=more,
                            options=compiled["opt"])
    assert grown.tuning["records"] == t["records"] + grown.tuning["trials_run"] and grown.tuning["trials_run"] >= 8
    assert "skipped_as_measured" in grown.tuning
    recs = C.open_database(more).get_all_tuning_records()
    mods = [structural_hash(x.as_measure_candidate().sch.mod) for x in recs]
    assert len(mods) == grown.tuning["records"] == len(set(mods))
    # a work dir tuned another way is refused
    with pytest.raises(C.CompileError, match="fresh --work-dir"):
        C.compile_model(compiled["model"], "h200", runner="none", trials=TRIALS + 4, work_dir=work,
                        options=compiled["opt"])


def test_library_and_report_for_run_relax(compiled):
    d, r = compiled["dir"], compiled["report"]
    lib = d / "block.so"
    assert lib.exists() and lib.stat().st_size > 10_000
    with open(str(lib) + ".json") as f:
        saved = json.load(f)
    back = C.CompileReport.from_dict(saved)
    assert back.totals == json.loads(json.dumps(r.totals)) and len(back.kernels) == len(r.kernels)
    # what run_relax.py rebuilds from the report: the same config, shape and arguments
    meta = saved["meta"]
    cfg = L.LlamaConfig(**meta["config_values"])
    shp = L.BlockShape(**{k: meta["shape"][k] for k in ("name", "batch", "seq", "kv")})
    args = L.random_args(cfg, shp, 0)
    assert [(s["name"], tuple(s["shape"]), s["dtype"]) for s in saved["arg_specs"]] == \
        [(n, a.shape, str(a.dtype)) for n, a in ((s["name"], args[s["name"]]) for s in saved["arg_specs"])]
    # the library holds CUDA source for the runtime to compile; nvcc (when present) accepts it for sm_90a
    from costpass.measure import bundle
    srcs = bundle.library_cuda_sources(str(lib))
    assert len(srcs) == 1 and "__global__" in srcs[0]
    names = {n for k in r.kernels for n in k.device_kernels}
    assert all(f"{n}(" in srcs[0] or f"{n} (" in srcs[0] for n in names)
    r2 = subprocess.run([sys.executable, os.path.join(REPO, "costpass", "measure", "run_relax.py"), "--help"],
                        capture_output=True, text=True)
    assert r2.returncode == 0 and "LIB" in r2.stdout.upper()


def test_repredict_rebuilds_the_same_library(compiled, tmp_path):
    """From the saved report and the database alone: the same schedules (the same CUDA source) and, with
    the same costpass, the same predictions."""
    from costpass.measure import bundle
    d, r = compiled["dir"], compiled["report"]
    with open(str(d / "block.so") + ".json") as f:
        saved = json.load(f)
    entries, totals, built = C.repredict(saved, compiled["work"])
    again = C.export(built, str(tmp_path / "again.so"))
    assert bundle.library_cuda_sources(again) == bundle.library_cuda_sources(str(d / "block.so"))
    assert [(e.name, e.origin) for e in entries] == [(k.name, k.origin) for k in r.kernels]
    for g in r.gpus:
        assert totals[g]["predicted_us"] == pytest.approx(r.totals[g]["predicted_us"], rel=1e-9)
    saved["meta"]["kind"] = "something else"
    with pytest.raises(C.CompileError, match="built-in llama_block"):
        C.repredict(saved, compiled["work"])


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_source_compiles_with_nvcc(compiled, tmp_path, monkeypatch):
    from costpass.measure import bundle, ms_gpu
    monkeypatch.setenv(ms_gpu.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(ms_gpu.ARCH_ENV, "sm_90a")
    (src,) = bundle.library_cuda_sources(str(compiled["dir"] / "block.so"))
    assert len(ms_gpu.cubin_for(src)) > 1000


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------

def test_cli_untuned_prefill_json_and_plot(tmp_path, capsys):
    lib, png = tmp_path / "p.so", tmp_path / "p.png"
    rc = main(["compile", "llama_block", "--config", "tiny", "--shape", "prefill", "--seq", "32", "--trials", "0",
               "--gpu", "h100", "--json", "-q", "-o", str(lib), "--plot", str(png)])
    out = capsys.readouterr().out
    assert rc == 0
    d = json.loads(out)
    assert d["schema"] == C.SCHEMA and d["runner"] == "untuned"
    assert all(k["origin"] == "default" for k in d["kernels"])
    assert math.isclose(sum(k["per_gpu"][0]["share"] for k in d["kernels"]), 1.0)
    assert png.stat().st_size > 1000 and lib.exists()


@pytest.mark.parametrize("argv,msg", [
    (["--gpu", "h999"], "unknown GPU 'h999'"),
    (["/nonexistent/model.py"], "no such file"),
    (["no_such_model"], "unknown model"),
    (["--config", "huge"], "unknown config"),
    (["--trials", "3"], "needs --work-dir"),
    (["--trials", "-1"], "--trials must be >= 0"),
    (["--trials", "0", "-o", "/nonexistent/dir/x.so"], "no such directory"),
])
def test_cli_bad_input_one_line_exit_2(argv, msg, capsys):
    assert main(["compile", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("costpass: error:") and msg in err and err.count("\n") == 1


def test_cli_local_runner_without_gpu(tmp_path, capsys):
    if C.has_cuda_gpu():
        pytest.skip("this machine has a GPU")
    rc = main(["compile", "--config", "tiny", "--runner", "local", "--trials", "4", "--work-dir",
               str(tmp_path / "w"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "needs a CUDA GPU" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------------------
# Output check of the tuned kernels (on the CPU with LLVM here; on the GPU with --runner local)
# ---------------------------------------------------------------------------------------------------------

def _axpy(sign: float):
    import tvm
    from tvm import te
    a, b = te.placeholder((64,), "float32", "a"), te.placeholder((64,), "float32", "b")
    c = te.compute((64,), lambda i: a[i] + tvm.tirx.const(sign, "float32") * b[i], name="c")
    return te.create_prim_func([a, b, c])


def test_check_kernel_finds_a_wrong_schedule():
    import tvm
    llvm, cpu = tvm.target.Target("llvm"), tvm.cpu()
    good, bad = _axpy(1.0), _axpy(-1.0)
    assert C.written_params(good) == [2]
    err, tol = C.check_kernel(good, _axpy(1.0), llvm, cpu)
    assert err == 0.0 and tol == 1e-3  # fp32
    err, _ = C.check_kernel(bad, good, llvm, cpu)
    assert err == pytest.approx(math.sqrt(2), rel=0.3)  # |2b| / |a + b| on N(0, 0.25) data


def test_check_kernels_names_the_wrong_tuned_kernel():
    """check_kernels compares each tuned PrimFunc with DLight's schedule of the unscheduled one (on LLVM DLight
    leaves it as it is); only tuned PrimFuncs are checked."""
    import tvm
    built = C.Built(executable=None, scheduled=tvm.IRModule({"f_ok": _axpy(1.0), "f_bad": _axpy(-1.0),
                                                             "f_default": _axpy(-1.0)}),
                    lowered=None, tuned={"f_ok", "f_bad"})
    prepared = tvm.IRModule({"f_ok": _axpy(1.0), "f_bad": _axpy(1.0), "f_default": _axpy(1.0)})
    got = C.check_kernels(built, prepared, tvm.target.Target("llvm"), tvm.cpu())
    assert set(got) == {"f_ok", "f_bad"}
    assert got["f_ok"]["ok"] is True and got["f_ok"]["rel_l2"] == 0.0
    assert got["f_bad"]["ok"] is False and got["f_bad"]["rel_l2"] > 1.0


def test_cli_check_outputs_needs_a_gpu(compiled, capsys):
    if C.has_cuda_gpu():
        pytest.skip("this machine has a GPU")
    rc = main(["compile", "--config", "tiny", "--kv", "64", "--trials", "0", "--work-dir", compiled["work"],
               "--keep-tuned", "--check-outputs", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "checking outputs needs a CUDA GPU" in err and err.count("\n") == 1
