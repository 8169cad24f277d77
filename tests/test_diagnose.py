"""Diagnosis reports: hand-made kernels with a known bottleneck, golden reports, JSON schema, plot,
multi-GPU comparison, and the hints on synthetic demand records.

Golden files (tests/golden/<kernel>.demand.json: the demand records of tests/golden/kernels/<kernel>.py;
tests/golden/<kernel>.report.json: the h100 report made from those records) are rewritten only with
COSTPASS_REGEN_GOLDEN=1; a missing or different golden file fails the test.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from costpass import bounds as B
from costpass import diagnose as D
from costpass import spec
from costpass.records import INST_KEYS, MEMORY_KEYS, KernelDemand, LaunchShape

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
KERNELS = GOLDEN / "kernels"
REGEN = os.environ.get("COSTPASS_REGEN_GOLDEN") == "1"
NAMES = ("copy", "fma", "exp", "gemm_wmma", "tail")

H100 = spec.load("h100")
H200 = spec.load("h200")
A100 = spec.load("a100")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------

_LIVE = {}


def live(name):
    """Demand records of a hand-made kernel with the current demand pass (cached per session)."""
    if name not in _LIVE:
        from costpass import cli
        mod, label = cli.load_module_file(str(KERNELS / f"{name}.py"))
        _LIVE[name] = cli.extract_demands(mod, label)
    return _LIVE[name]


def saved(name):
    path = GOLDEN / f"{name}.demand.json"
    if REGEN:
        path.write_text(json.dumps([d.to_dict() for d in live(name)], indent=1) + "\n")
    if not path.exists():
        pytest.fail(f"missing golden file {path}: run COSTPASS_REGEN_GOLDEN=1 pytest {__file__}")
    return [KernelDemand.from_dict(x) for x in json.loads(path.read_text())]


def approx_equal(a, b, path="", rel=1e-9):
    """Recursive comparison with a relative tolerance on floats; returns the first difference or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys differ: {sorted(set(a) ^ set(b))}"
        for k in a:
            r = approx_equal(a[k], b[k], f"{path}.{k}", rel)
            if r:
                return r
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            r = approx_equal(x, y, f"{path}[{i}]", rel)
            if r:
                return r
        return None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if a == b or math.isclose(a, b, rel_tol=rel, abs_tol=1e-12):
            return None
        return f"{path}: {a} != {b}"
    return None if a == b else f"{path}: {a!r} != {b!r}"


def synth(grid=(1056, 1, 1), block=(256, 1, 1), regs=32, smem=0, **kw) -> KernelDemand:
    """A synthetic demand record (no TVM): inst/memory keys default to 0."""
    inst = {k: 0.0 for k in INST_KEYS}
    mem = {k: 0.0 for k in MEMORY_KEYS}
    for k, v in kw.pop("inst", {}).items():
        inst[k] = float(v)
    for k, v in kw.pop("memory", {}).items():
        mem[k] = float(v)
    return KernelDemand(name=kw.pop("name", "k"),
                        launch=LaunchShape(grid=grid, block=block, registers_per_thread=regs,
                                           static_smem_bytes=smem),
                        inst=inst, memory=mem, **kw)


def codes(gd):
    return [h.code for h in gd.hints]


# --------------------------------------------------------------------------------------------------
# golden reports (from saved demand records: tests diagnose + bounds, independent of demand.py)
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_golden_report(name):
    report = D.diagnose(saved(name), [H100], name=name, source=f"tests/golden/kernels/{name}.py")
    got = json.loads(D.render_json(report))
    path = GOLDEN / f"{name}.report.json"
    if REGEN:
        path.write_text(json.dumps(got, indent=1) + "\n")
    if not path.exists():
        pytest.fail(f"missing golden file {path}: run COSTPASS_REGEN_GOLDEN=1 pytest {__file__}")
    diff = approx_equal(got, json.loads(path.read_text()))
    assert diff is None, f"{name}: report differs from {path} ({diff}); if intended, regenerate with " \
                         "COSTPASS_REGEN_GOLDEN=1"


# --------------------------------------------------------------------------------------------------
# live: the current demand pass + model on the hand-made kernels
# --------------------------------------------------------------------------------------------------

def test_copy_is_dram_bound():
    (d,) = live("copy")
    gd = D.diagnose_kernel(d, [H100]).per_gpu[0]
    assert gd.bottleneck == "dram"
    # 2 x 64 MB at 3.35 TB/s
    assert gd.pipes[0].pipe == "dram"
    assert gd.pipes[0].bound_us == pytest.approx(2 * 2 ** 24 * 4 / 3350e9 * 1e6, rel=0.02)
    assert "dram-bound" in codes(gd)
    assert "streaming" in next(h.message for h in gd.hints if h.code == "dram-bound")


def test_fma_loop_is_fma_bound():
    (d,) = live("fma")
    # A100: FP32 pipe is half the issue rate -> a clean FMA bottleneck
    ga = D.diagnose_kernel(d, [A100]).per_gpu[0]
    assert ga.bottleneck == "fma"
    # H100: FP32 pipe and issue run at the same rate; the model reports issue with fma tied (issue #2)
    gh = D.diagnose_kernel(d, [H100]).per_gpu[0]
    assert gh.bottleneck == "fma" or (gh.bottleneck == "issue" and "fma" in gh.co_bottlenecks)
    fma = next(r for r in gh.pipes if r.pipe == "fma")
    assert fma.utilization > 0.95
    # 2^20 threads x 8192 FMA = 2^28 warp FFMA; at 4 warp-FFMA / clk / SM on 132 SMs (32 blocks on the busiest)
    assert d.inst["fp32_fma"] == pytest.approx(2 ** 28, rel=0.01)


def test_vector_flops_are_thread_level():
    (d,) = live("fma")
    assert d.flops == pytest.approx(2 * 2 ** 20 * 512 * 16, rel=0.01)


def test_exp_loop_is_xu_bound():
    (d,) = live("exp")
    gd = D.diagnose_kernel(d, [H100]).per_gpu[0]
    assert gd.bottleneck == "xu"
    assert "xu-bound" in codes(gd)
    assert d.inst["sfu"] == pytest.approx(2 ** 20 * 256 / 32, rel=0.01)


def test_tensor_core_gemm_is_sensible():
    (d,) = live("gemm_wmma")
    M = N = K = 2048
    assert d.tensor_flops == {"fp16": pytest.approx(2 * M * N * K)}
    assert d.inst["mma"] == pytest.approx(2 * M * N * K / 4096)
    gd = D.diagnose_kernel(d, [H100]).per_gpu[0]
    bounds = {r.pipe: r.bound_us for r in gd.pipes}
    # 256 blocks <= 264 slots: the busiest SM runs 2 blocks of 256 -> 2/256 of the work
    # tensor rates are the vendor's dense peak at the clock NVIDIA quotes it for (rated_clock_mhz)
    peak = H100.tensor["fp16"] * H100.rated_clock_mhz * 1e6
    assert bounds["tensor"] == pytest.approx(2 * M * N * K * 2 / 256 / peak * 1e6, rel=1e-6)
    # 128x128 block tiles: A and B are each read N/128 = M/128 = 16 times over from L2
    assert d.memory["l2_bytes"] == pytest.approx(2 * (M * K * 2) * 16, rel=0.05)
    throughput = {p: v for p, v in bounds.items() if p != "latency"}
    top = max(throughput, key=throughput.get)
    # the model: L2 traffic (16x re-reads) and the L1/shared data path (8.5 M shared wavefronts plus
    # 8.4 M global sectors through L1, 4 a clock) limit this tile size, within 10% of each other; the
    # tensor pipe is far from the limit
    assert top in ("l2", "shared") and bounds["l2"] == pytest.approx(bounds["shared"], rel=0.1)
    assert bounds["shared"] > 2 * bounds["tensor"]
    assert gd.bottleneck in ("l2", "shared", "latency")
    assert {"l2-bound", "shared-bound"} & set(codes(gd))
    assert "no-tensor-cores" not in codes(gd)


def test_tail_wave_hint():
    (d,) = live("tail")
    gd = D.diagnose_kernel(d, [H100]).per_gpu[0]
    assert gd.waves["waves"] == pytest.approx(277 / 264)
    # 277 - 264 = 13 tail blocks, spread breadth-first by the block scheduler: 13 of 132 SMs busy
    assert gd.waves["tail_sms"] == 13
    h = next(h for h in gd.hints if h.code == "tail-wave")
    assert "1.05 waves" in h.message and "13 of 132 SMs" in h.message


# --------------------------------------------------------------------------------------------------
# hints on synthetic demand records (no TVM)
# --------------------------------------------------------------------------------------------------

def test_hint_bank_conflicts():
    d = synth(inst={"ld_shared": 1e8}, memory={"shared_load_wavefronts": 3.1e8, "shared_ideal_wavefronts": 1e8})
    gd = D.diagnose_kernel(d, [H100]).per_gpu[0]
    assert gd.bottleneck == "shared"
    h = next(h for h in gd.hints if h.code == "bank-conflicts")
    assert "3.1 wavefronts per request vs 1.0 ideal" in h.message and "pad" in h.message
    # no conflict -> no bank-conflict hint, a register-tiling one instead
    d2 = synth(inst={"ld_shared": 1e8}, memory={"shared_load_wavefronts": 2e8, "shared_ideal_wavefronts": 2e8})
    c2 = codes(D.diagnose_kernel(d2, [H100]).per_gpu[0])
    assert "bank-conflicts" not in c2 and "shared-bound" in c2


def test_hint_uncoalesced_loads():
    n = 1e7
    d = synth(inst={"ld_global": n},
              memory={"global_load_bytes": n * 32, "global_load_sectors": 4 * n, "l2_bytes": 4 * n * 32,
                      "dram_bytes": 4 * n * 32},
              global_buffers={"A": {"bytes": 4 * n * 32, "load_sectors": 4 * n, "store_sectors": 0.0}})
    gd = D.diagnose_kernel(d, [H100]).per_gpu[0]
    assert gd.bottleneck == "dram"
    h = next(h for h in gd.hints if h.code == "uncoalesced-loads")
    assert "4.0 sectors per request where 1.0 would do" in h.message
    assert "contiguous" in h.message


def test_hint_dram_rereads_suggest_tiling():
    mb = 1e6
    # a 100 MB footprint (does not fit in H100's 50 MB L2) fetched 16 times over through L2
    d = synth(inst={"ld_global": 1e6},
              memory={"dram_bytes": 100 * mb, "l2_bytes": 1600 * mb, "global_load_bytes": 1600 * mb,
                      "global_load_sectors": 50 * mb},
              global_buffers={"A": {"bytes": 100 * mb, "load_sectors": 50 * mb, "store_sectors": 0.0}})
    gd = D.diagnose_kernel(d, [H100]).per_gpu[0]
    assert gd.bottleneck == "dram"
    h = next(h for h in gd.hints if h.code == "dram-bound")
    assert "DRAM-bound at" in h.message and "of peak bandwidth" in h.message
    assert "tile the reduction loop into shared memory to raise reuse" in h.message
    # on a GPU whose L2 holds the footprint (B200: 126 MB) the re-reads stay in L2
    gb = D.diagnose_kernel(d, [spec.load("b200")]).per_gpu[0]
    assert gb.dram_bytes == pytest.approx(100 * mb)


def test_hint_no_tensor_cores_on_fp16_gemm():
    M = N = K = 4096
    warp_fma = M * N * K / 32
    d = synth(grid=(4096, 1, 1), inst={"fp32_fma": warp_fma, "conversion": warp_fma / 8},
              flops=2.0 * M * N * K,
              memory={"dram_bytes": 3 * M * N * 2.0, "l2_bytes": 3 * M * N * 2.0},
              global_buffers={"A": {"bytes": M * K * 2.0}, "B": {"bytes": K * N * 2.0}, "C": {"bytes": M * N * 2.0}})
    gd = D.diagnose_kernel(d, [H100], context={"dtype": "float16"}).per_gpu[0]
    assert gd.hints[0].code == "no-tensor-cores"
    assert "no tensor cores used on an fp16 GEMM-like kernel" in gd.hints[0].message
    # the same kernel with tensor FLOP gets no such hint
    d.tensor_flops = {"fp16": 2.0 * M * N * K}
    assert "no-tensor-cores" not in codes(D.diagnose_kernel(d, [H100]).per_gpu[0])


def test_hint_launch_bound():
    d = synth(grid=(4, 1, 1), block=(128, 1, 1), inst={"ld_global": 16, "st_global": 16, "fp32_fma": 64},
              memory={"dram_bytes": 4096.0, "l2_bytes": 4096.0})
    gd = D.diagnose_kernel(d, [H100]).per_gpu[0]
    assert gd.hints[0].code == "launch-bound"
    assert "below the launch overhead" in gd.hints[0].message
    assert "under-filled" not in codes(gd)   # the grid size does not matter for a launch-bound kernel


def test_hint_registers_cap_occupancy():
    d = synth(regs=255, inst={"ld_global": 1e6, "fp32_fma": 1e7},
              memory={"dram_bytes": 1e8, "l2_bytes": 1e8})
    gd = D.diagnose_kernel(d, [H100]).per_gpu[0]
    assert gd.occupancy["blocks_per_sm"] == 1 and gd.occupancy["limiter"] == "registers"
    h = next(h for h in gd.hints if h.code == "low-occupancy")
    assert h.message.startswith("registers (~255/thread, estimated) cap occupancy at 1 block/SM")


def test_hint_under_filled_grid():
    d = synth(grid=(16, 1, 1), inst={"fp32_fma": 16 * 8 * 1e5})
    gd = D.diagnose_kernel(d, [H100]).per_gpu[0]
    h = next(h for h in gd.hints if h.code == "under-filled")
    assert "16 of 132 SMs" in h.message


def test_measured_headroom():
    (d,) = saved("copy")
    r = D.diagnose([d], [H100], measured_ms=0.1)
    gd = r.modules[0].kernels[0].per_gpu[0]
    assert gd.measured["measured_us"] == pytest.approx(100.0)
    assert gd.measured["fraction_of_ceiling"] == pytest.approx(gd.ceiling_us / 100.0)
    assert gd.measured["headroom_us"] == pytest.approx(100.0 - gd.ceiling_us)
    assert gd.hints[0].code == "headroom"
    assert r.modules[0].totals["h100"]["measured_us"] == pytest.approx(100.0)
    # faster than the ceiling: the model is told so
    r2 = D.diagnose([d], [H100], measured_ms=gd.ceiling_us / 2000)
    assert r2.modules[0].kernels[0].per_gpu[0].hints[0].code == "below-ceiling"


# --------------------------------------------------------------------------------------------------
# multi-GPU, JSON schema, text, plot
# --------------------------------------------------------------------------------------------------

def test_multi_gpu_side_by_side():
    ds = saved("copy")
    r = D.diagnose(ds, ["h100,h200"])
    (k,) = r.modules[0].kernels
    assert [g.gpu for g in k.per_gpu] == ["h100", "h200"]
    b = {g.gpu: {p.pipe: p.bound_us for p in g.pipes} for g in k.per_gpu}
    assert b["h200"]["dram"] < b["h100"]["dram"]
    assert b["h100"]["dram"] / b["h200"]["dram"] == pytest.approx(4800 / 3350)
    text = D.render_text(r, color=False, width=100)
    header = next(line for line in text.splitlines() if "h100" in line and "h200" in line and "bottleneck" not in line
                  and "costpass" not in line and "estimated" not in line)
    assert header.index("h100") < header.index("h200")
    assert "estimated time (speed-up vs h100): h100" in text and "x)" in text


def test_json_schema_and_round_trip():
    r = D.diagnose(saved("gemm_wmma"), [H100, A100], measured_ms=0.08, name="gemm")
    text = D.render_json(r)
    d = json.loads(text)
    assert d == json.loads(json.dumps(d))
    assert d["schema"] == D.SCHEMA
    assert [g["name"] for g in d["gpus"]] == ["h100", "a100"]
    (mod,) = d["modules"]
    assert set(mod) >= {"name", "source", "kernels", "totals", "measured_ms", "measured_gpu", "notes"}
    assert set(mod["totals"]) == {"h100", "a100"}
    assert mod["totals"]["h100"]["measured_us"] == pytest.approx(80.0)
    (k,) = mod["kernels"]
    assert set(k) == {"name", "launch", "metrics", "per_gpu", "notes"}
    assert isinstance(k["launch"]["grid"], list) and len(k["launch"]["grid"]) == 3
    for gd in k["per_gpu"]:
        for key, typ in (("gpu", str), ("bottleneck", str), ("bottleneck_label", str), ("co_bottlenecks", list),
                         ("ceiling_us", float), ("estimate_us", float), ("launch_us", float), ("pipes", list),
                         ("occupancy", dict), ("waves", dict), ("hints", list), ("roofs", dict),
                         ("at_estimate", dict), ("problems", list)):
            assert isinstance(gd[key], typ), key
        assert gd["bottleneck"] in B.PIPES
        for row in gd["pipes"]:
            assert set(row) == {"pipe", "label", "bound_us", "utilization", "bottleneck"}
            assert row["pipe"] in B.PIPES and row["bound_us"] > 0
        assert [r["bound_us"] for r in gd["pipes"]] == sorted((r["bound_us"] for r in gd["pipes"]), reverse=True)
        assert set(gd["occupancy"]) >= {"blocks_per_sm", "warps_per_sm", "occupancy", "limiter"}
        assert set(gd["waves"]) >= {"waves", "tail_sms", "efficiency", "num_blocks", "slots"}
        for h in gd["hints"]:
            assert set(h) == {"code", "severity", "message", "decision"}
            assert h["severity"] in ("high", "medium", "low", "info")
    assert k["per_gpu"][0]["measured"]["fraction_of_ceiling"] > 0
    assert k["per_gpu"][1]["measured"] is None          # measured time belongs to the first GPU
    assert "nan" not in text.lower() and "infinity" not in text.lower()


def test_render_text_plain_fits_100_columns():
    ds = saved("gemm_wmma") + saved("copy")
    r = D.diagnose(ds, [H100], name="two kernels")
    text = D.render_text(r, color=False, width=100)
    assert "\x1b[" not in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "L2 bandwidth" in text and "DRAM bandwidth" in text and "occupancy" in text
    assert "#" in text   # ASCII bars
    fancy = D.render_text(r, color=True, width=100)
    assert "█" in fancy


def test_combine_reports():
    a = D.diagnose(saved("copy"), [H100], name="a")
    b = D.diagnose(saved("exp"), [H100], name="b")
    r = D.combine([a, b], notes=["x"])
    assert [m.name for m in r.modules] == ["a", "b"] and r.notes == ["x"]
    assert len(r.kernels) == 2
    with pytest.raises(ValueError):
        D.combine([a, D.diagnose(saved("copy"), [H200])])


def test_plot_file(tmp_path):
    r = D.diagnose(saved("gemm_wmma") + saved("copy"), [H100, H200], measured_ms=0.2)
    out = tmp_path / "report.png"
    D.plot(r, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000
