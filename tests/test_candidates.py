"""Candidates (random sampling, trace round trip) and bundles (build, export, callback hashes). No GPU.

The first MetaSchedule TuneContext imports tvm.s_tir.tensor_intrin (~15-20 s of CPU, once per session).
"""
import hashlib
import json

import pytest

from costpass.measure import build as B
from costpass.measure import bundle as BU
from costpass.measure import candidates as C

TARGET = B.cuda_target()
WL = "gemm_fp32_1024"     # small SIMT GEMM: a rich design space, ~1 s to sample 4
WL_SMALL = "softmax_attn_fp32"


@pytest.fixture(scope="module")
def gemm_cands():
    return C.random_candidates(WL, TARGET, 4, seed=3)


def test_random_candidates_distinct_and_valid(gemm_cands):
    cs = gemm_cands
    assert len(cs) == 4
    assert len({c.id for c in cs}) == 4
    assert len({C.canonical_json(c.trace_json) for c in cs}) == 4
    assert all(c.origin == "random" and c.workload == WL and c.space_index >= 0 for c in cs)
    mods = [C.apply_trace(WL, c.trace_json).mod for c in cs]
    import tvm_ffi
    assert len({tvm_ffi.structural_hash(m) for m in mods}) == 4
    # ids are stable hashes of workload + trace
    assert all(c.id == C.candidate_id(WL, c.trace_json) for c in cs)
    # the same seed gives the same candidates
    again = C.random_candidates(WL, TARGET, 2, seed=3)
    assert [c.id for c in again] == [c.id for c in cs[:2]]


def test_apply_trace_round_trips(gemm_cands):
    from tvm import s_tir
    from schedules import workloads as W

    wl = W.get(WL)
    ctx = C.tune_context(wl.mod(), TARGET, 1)
    spaces = C.design_spaces(ctx)
    for c in gemm_cands[:2]:
        sch = C._sample(wl.mod(), spaces[c.space_index], list(ctx.space_generator.postprocs), c.seed)
        assert sch is not None
        assert C.trace_to_json(sch.trace) == c.trace_json
        # through JSON text and back
        back = C.apply_trace(WL, json.loads(json.dumps(c.trace_json)))
        assert back.mod.script() == sch.mod.script()
    # a different trace gives a different module (the comparison can fail)
    a = C.apply_trace(WL, gemm_cands[0].trace_json).mod.script()
    b = C.apply_trace(WL, gemm_cands[1].trace_json).mod.script()
    assert a != b


def test_build_gives_cuda_source(gemm_cands):
    lib = B.build_module(C.apply_trace(WL, gemm_cands[0].trace_json), TARGET)
    src = lib.imports[0].inspect_source()
    assert "__global__" in src and "blockIdx" in src
    assert B.ms_build(C.apply_trace(WL, gemm_cands[0].trace_json).mod, TARGET, None) is not None


def test_manual_elementwise_candidates_build():
    assert C.is_spatial_only("residual_add_fp16") and not C.is_spatial_only(WL_SMALL)
    cs = C.manual_elementwise_candidates("residual_add_fp16", n=3)
    assert len({c.id for c in cs}) == 3 and all(c.origin == "manual" for c in cs)
    src = B.build_module(C.apply_trace("residual_add_fp16", cs[-1].trace_json), TARGET).imports[0].inspect_source()
    assert "threadIdx.x" in src


def test_pack_tiny_bundle(tmp_path):
    cs = C.random_candidates(WL_SMALL, TARGET, 2, seed=1)
    assert len(cs) == 2
    counts = BU.pack(cs, tmp_path, TARGET)
    assert counts["built"] + counts["duplicates"] == 2 and counts["failed"] == 0 and counts["refs"] == 1
    rows = BU.read_manifest(tmp_path)
    assert len(rows) == counts["built"] >= 1
    for r in rows:
        so = tmp_path / r["lib"]
        assert so.exists()
        # the hash is of the exact string the runtime hands to tvm_callback_cuda_compile
        srcs = BU.library_cuda_sources(so)
        assert [hashlib.sha256(s.encode()).hexdigest() for s in srcs] == r["cuda_sha256"]
        # ... which is what the builder's CUDA module reports, rebuilt from the saved trace
        lib = B.build_module(C.apply_trace(r["workload"], r["trace_json"]), TARGET)
        assert [hashlib.sha256(lib.imports[0].inspect_source().encode()).hexdigest()] == r["cuda_sha256"]
        for h in r["cuda_sha256"]:
            assert hashlib.sha256((tmp_path / "sources" / f"{h}.cu").read_bytes()).hexdigest() == h
        assert r["flops"] > 0 and r["arg_specs"] and r["tvm_version"] and r["costpass_commit"]
    refs = BU.read_manifest(tmp_path, "refs.jsonl")
    assert [r["id"] for r in refs] == [f"ref_{WL_SMALL}"] and (tmp_path / refs[0]["lib"]).exists()
    # a rerun skips what is done
    assert BU.pack(cs, tmp_path, TARGET)["skipped"] == 2
    # the library parser does not just return any string
    (tmp_path / "x.so").write_bytes(b"\x7fELF" + b"\x02\x01" + b"\0" * 100)
    assert BU.library_cuda_sources(tmp_path / "x.so") == []
    with pytest.raises(ValueError):
        BU.library_cuda_sources(tmp_path / "sources" / f"{rows[0]['cuda_sha256'][0]}.cu")


@pytest.mark.parametrize("wl,rule", [("gemv_fp32_4096", "GEMV"), ("row_sum_fp32", "Reduction")])
def test_dlight_candidate_replays_and_builds(wl, rule):
    import tvm
    import tvm_ffi
    from schedules import workloads as W
    from costpass.compile import _dlight

    cs = C.dlight_candidates(wl, TARGET)
    assert len(cs) == 1
    c = cs[0]
    assert c.origin == "dlight" and c.workload == wl and c.extra["rule"] == rule
    assert c.id == C.candidate_id(wl, c.trace_json)
    # deterministic: a second call gives the same candidate
    assert C.dlight_candidates(wl, TARGET)[0].id == c.id
    # the trace (through JSON text) replays to the very module DLight's pass (as compile.py runs it) makes
    back = C.apply_trace(wl, json.loads(json.dumps(c.trace_json))).mod
    with TARGET:
        ref = _dlight()(W.get(wl).mod())
    assert tvm_ffi.structural_equal(back["main"].with_attr("tirx.is_scheduled", True), ref["main"])
    assert not tvm_ffi.structural_equal(back, W.get(wl).mod())      # it did schedule something
    src = B.build_module(back, TARGET).imports[0].inspect_source()
    assert "__global__" in src and "threadIdx.x" in src
    # DLight's GEMV / reduction rules reduce across threads (warp shuffles); a plain schedule would not
    assert "__shfl" in src


def test_dlight_no_rule_gives_nothing(monkeypatch):
    monkeypatch.setattr(C, "dlight_rules", lambda: [])
    assert C.dlight_candidates("gemv_fp32_4096", TARGET) == []
    assert C.dlight_schedule("gemv_fp32_4096", TARGET)[2] == "no DLight rule applies"


def test_dlight_matmul_uses_tensor_cores_on_sm_90a():
    """TVM 0.27's DLight Matmul reads "sm_90a" as no SM version and stays on SIMT cores; costpass's rule list
    hands it the arch without the suffix, so an fp16 GEMM is tensorized (wmma) and still builds for sm_90a."""
    import tvm

    rule, sch, _ = C.dlight_schedule("gemm_fp16_1024", TARGET)
    assert rule == "Matmul" and sch is not None
    src = B.build_module(tvm.IRModule({"main": sch.mod["main"]}), TARGET).imports[0].inspect_source()
    assert "wmma::mma_sync" in src
    _, sch32, _ = C.dlight_schedule("gemm_fp32_1024", TARGET)  # fp32 has no tensor-core path here
    assert "wmma" not in B.build_module(tvm.IRModule({"main": sch32.mod["main"]}), TARGET).imports[0].inspect_source()


def fake_tvm_compile(job):
    """Stand-in for TVM's compile callback in tvm_build.build: a 'cubin' naming the source."""
    sha, code, dst, arch = job
    with open(dst, "wb") as f:
        f.write(f"{arch}:{sha}".encode())
    return sha, None


def test_tvm_build_compiles_every_source_of_a_bundle(tmp_path):
    from costpass.measure import tvm_build as TB

    cs = C.random_candidates(WL_SMALL, TARGET, 2, seed=1)
    BU.pack(cs, tmp_path, TARGET)
    want = {h for r in BU.read_manifest(tmp_path) for h in r["cuda_sha256"]}
    want |= {h for r in BU.read_manifest(tmp_path, "refs.jsonl") for h in r["cuda_sha256"]}
    # sources come from sources/ and, where that is missing (snapshots carry few), from the libraries
    import shutil
    shutil.rmtree(tmp_path / "sources")
    srcs = TB.bundle_sources(str(tmp_path))
    assert set(srcs) == want
    assert all(hashlib.sha256(c.encode()).hexdigest() == h for h, c in srcs.items())
    (tmp_path / "cubins").mkdir(exist_ok=True)
    info = TB.build(str(tmp_path), jobs=1, compile_one=fake_tvm_compile, info={"compiler": "tvm", "mode": "fake"})
    assert info["compiler"] == "tvm" and info["sources"] == len(want) and info["failed"] == 0
    for h in want:
        assert (tmp_path / "cubins" / f"{h}.cubin").read_bytes() == f"sm_90a:{h}".encode()
    assert json.loads((tmp_path / "BUILD.json").read_text())["mode"] == "fake"
    # done once: a second call reads BUILD.json and compiles nothing
    assert TB.build(str(tmp_path), jobs=1, compile_one=None, info={})["mode"] == "fake"


def failing_tvm_compile(job):
    return job[0], "RuntimeError: NVRTC said no"


def test_tvm_build_leaves_no_other_compilers_cubin_behind(tmp_path):
    from costpass.measure import tvm_build as TB

    BU.pack(C.random_candidates(WL_SMALL, TARGET, 1, seed=1), tmp_path, TARGET)
    h = BU.read_manifest(tmp_path)[0]["cuda_sha256"][0]
    (tmp_path / "cubins").mkdir(exist_ok=True)
    # an interrupted run's TVM cubin is kept; here the one source left fails, and nothing may stand in for it
    info = TB.build(str(tmp_path), jobs=1, compile_one=failing_tvm_compile, info={"compiler": "tvm"})
    assert info["failed"] == info["sources"] >= 1 and not (tmp_path / "cubins" / f"{h}.cubin").exists()
    assert json.loads((tmp_path / "BUILD_failures.json").read_text())[h].startswith("RuntimeError")


def test_gpu_run_records_the_bundle_build(tmp_path):
    from costpass.measure import gpu_run as G
    from costpass.measure import nvcc_cmd as N

    assert N.build_of(str(tmp_path)) == {"compiler": "nvcc", "flags": list(N.FLAGS)}
    (tmp_path / "BUILD.json").write_text(json.dumps({"compiler": "tvm", "mode": "nvrtc"}))
    b = N.build_of(str(tmp_path))
    assert b == {"compiler": "tvm", "mode": "nvrtc"}
    assert G.record_build(b, {"cache": 1}) == b
    # a cubin the bundle lacked was compiled with nvcc on the GPU machine: the record says so
    fb = G.record_build(b, {"cache": 1, "nvcc": 1})
    assert fb["compiler"] == "nvcc" and fb["fallback_from"] == "tvm"
    assert G.record_build({"compiler": "nvcc"}, {"nvcc": 1}) == {"compiler": "nvcc"}


def test_tvm_build_refuses_what_is_not_a_bundle(tmp_path, capsys):
    from costpass.measure import tvm_build as TB

    assert TB.main([str(tmp_path / "missing")]) == 2
    assert TB.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("tvm_build: error:") == 2 and "not a bundle" in err
    assert not (tmp_path / "cubins").exists() and not (tmp_path / "BUILD.json").exists()
