"""Tests of the GPU spec files and the loader (no GPU needed).

Each spec file must load, carry every key h100.toml carries, be internally consistent, and agree with the
vendor's published peaks (table below) within 3%.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from costpass import spec

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

GPU_DIR = Path(spec.__file__).parent / "gpus"

# Vendor figures: dense FP16 tensor TFLOP/s (FP32 accumulate where the vendor distinguishes), FP32 non-tensor TFLOP/s,
# DRAM GB/s. Sources:
#  h100    NVIDIA H100 whitepaper v1.04 / datasheet, SXM5: 989.4 TF fp16 dense, 66.9 TF fp32, 3.35 TB/s HBM3
#  h200    NVIDIA H200 datasheet, SXM: 1,979 TF fp16 with sparsity (989.5 dense), 67 TF fp32, 4.8 TB/s HBM3e
#  a100    NVIDIA A100 datasheet, SXM4 80GB: 312 TF fp16 dense, 19.5 TF fp32, 2,039 GB/s HBM2e
#  l40s    NVIDIA L40S datasheet: 362.05 TF fp16 dense, 91.6 TF fp32, 864 GB/s GDDR6
#  rtx4090 NVIDIA Ada GPU Architecture whitepaper, Appendix A: 165.2 TF fp16 dense with FP32 accumulate, 82.6 TF fp32,
#          1,008 GB/s GDDR6X
#  b200    NVIDIA HGX B200 datasheet, per GPU: 4.5 PF fp16 with sparsity (2.25 PF dense), 75 TF fp32, 7.7 TB/s HBM3e
VENDOR = {
    "h100": {"fp16_tflops": 989.4, "fp32_tflops": 66.9, "dram_gbs": 3350},
    "h200": {"fp16_tflops": 989.5, "fp32_tflops": 67.0, "dram_gbs": 4800},
    "a100": {"fp16_tflops": 312.0, "fp32_tflops": 19.5, "dram_gbs": 2039},
    "l40s": {"fp16_tflops": 362.05, "fp32_tflops": 91.6, "dram_gbs": 864},
    "rtx4090": {"fp16_tflops": 165.2, "fp32_tflops": 82.6, "dram_gbs": 1008},
    "b200": {"fp16_tflops": 2250.0, "fp32_tflops": 75.0, "dram_gbs": 7700},
}

SPEC_FILES = sorted(GPU_DIR.glob("*.toml"))
NAMES = [p.stem for p in SPEC_FILES]


def _raw(path: Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def _keys(data: dict, prefix: str = "") -> set:
    out = set()
    for k, v in data.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _keys(v, prefix + k + ".")
    return out


def test_expected_gpus_present():
    assert set(VENDOR) <= set(spec.available())
    assert spec.available() == sorted(NAMES)


@pytest.mark.parametrize("path", SPEC_FILES, ids=NAMES)
def test_file_loads_and_names_match(path):
    g = spec.load(path.stem)
    assert isinstance(g, spec.GPUSpec)
    assert g.name == path.stem
    assert spec.load_file(path) == g


@pytest.mark.parametrize("path", SPEC_FILES, ids=NAMES)
def test_every_h100_key_present(path):
    reference = _keys(_raw(GPU_DIR / "h100.toml")) - {f"limits.{k}" for k in spec.OPTIONAL_LIMIT_KEYS}
    missing = reference - _keys(_raw(path))
    assert not missing, f"{path.name} lacks {sorted(missing)}"


@pytest.mark.parametrize("path", SPEC_FILES, ids=NAMES)
def test_required_keys_and_values(path):
    g = spec.load(path.stem)
    for section, keys in (("pipes", spec.PIPES), ("tensor", spec.TENSOR_DTYPES),
                          ("memory", spec.MEMORY_KEYS), ("limits", spec.LIMIT_KEYS)):
        d = getattr(g, section)
        for k in keys:
            assert isinstance(d[k], (int, float)) and not isinstance(d[k], bool), f"{section}.{k}"
            assert d[k] >= 0, f"{section}.{k} is negative"
    for k in spec.PIPES:
        assert g.pipes[k] > 0, f"pipes.{k} must be positive"
    assert g.tensor["fp16"] > 0 and g.tensor["bf16"] > 0
    assert g.sm_count > 0 and g.warp_size == 32 and g.sub_partitions_per_sm == 4


@pytest.mark.parametrize("path", SPEC_FILES, ids=NAMES)
def test_consistency(path):
    g = spec.load(path.stem)
    lim, mem = g.limits, g.memory
    assert lim["max_warps_per_sm"] * g.warp_size == lim["max_threads_per_sm"]
    assert lim["max_threads_per_block"] <= lim["max_threads_per_sm"]
    assert lim["max_shared_memory_per_block"] <= lim["shared_memory_per_sm"]
    assert lim["max_shared_memory_per_block"] + lim["shared_memory_reserved_per_block"] <= lim["shared_memory_per_sm"]
    assert lim["max_static_shared_memory_per_block"] <= lim["max_shared_memory_per_block"]
    assert lim["shared_memory_per_sm"] <= mem["l1_shared_bytes_per_sm"]
    assert lim["shared_memory_per_sm"] % lim["shared_alloc_unit"] == 0
    assert lim["registers_per_sm"] % lim["register_alloc_unit"] == 0
    assert 0 < g.rated_clock_mhz <= g.sm_clock_mhz
    assert mem["l2_bytes"] < mem["dram_bytes"]
    assert mem["l2_bandwidth_gbs"] > mem["dram_bandwidth_gbs"]
    assert g.pipes["issue"] == g.sub_partitions_per_sm * g.warp_size
    # arch string agrees with the compute capability (sm_90a <-> 9.0, sm_100a <-> 10.0)
    major, minor = g.compute_capability.split(".")
    assert g.arch.rstrip("af") == f"sm_{major}{minor}"
    # a dtype the GPU lacks is 0; the others are at least the tf32 rate
    for dt in ("fp16", "bf16", "tf32", "int8", "fp8"):
        assert g.tensor[dt] == 0 or g.tensor[dt] >= g.tensor["tf32"]


@pytest.mark.parametrize("name", sorted(VENDOR))
def test_fp16_tensor_peak_matches_vendor(name):
    g = spec.load(name)
    peak = g.tensor["fp16"] * g.sm_count * g.rated_clock_mhz * 1e6 / 1e12
    vendor = VENDOR[name]["fp16_tflops"]
    assert abs(peak - vendor) / vendor <= 0.03, f"{name}: {peak:.1f} vs vendor {vendor}"


@pytest.mark.parametrize("name", sorted(VENDOR))
def test_fp32_peak_matches_vendor(name):
    g = spec.load(name)
    vendor = VENDOR[name]["fp32_tflops"]
    assert abs(g.peak_fp32_tflops() - vendor) / vendor <= 0.03, f"{name}: {g.peak_fp32_tflops():.1f} vs {vendor}"


@pytest.mark.parametrize("name", sorted(VENDOR))
def test_dram_bandwidth_within_vendor_figure(name):
    g = spec.load(name)
    vendor = VENDOR[name]["dram_gbs"]
    assert 0.9 * vendor <= g.memory["dram_bandwidth_gbs"] <= vendor


def test_a100_has_no_fp8_and_ada_no_fp64_tensor():
    assert spec.load("a100").tensor["fp8"] == 0
    assert spec.load("l40s").tensor["fp64"] == 0
    assert spec.load("rtx4090").tensor["fp64"] == 0


def test_load_is_case_insensitive():
    assert spec.load("H100") == spec.load("h100")
    assert spec.load(" RTX4090 ").name == "rtx4090"


def test_unknown_gpu_raises_with_suggestion():
    with pytest.raises(spec.UnknownGPUError) as exc:
        spec.load("h10")
    assert "h100" in str(exc.value)
    assert isinstance(exc.value, ValueError)
    with pytest.raises(spec.UnknownGPUError):
        spec.load("no-such-gpu")


def test_load_many():
    gs = spec.load_many("h100,h200")
    assert [g.name for g in gs] == ["h100", "h200"]
    assert [g.name for g in spec.load_many("a100, L40S,")] == ["a100", "l40s"]
    with pytest.raises(spec.UnknownGPUError):
        spec.load_many("h100,h999")


def test_missing_key_is_rejected(tmp_path):
    text = (GPU_DIR / "h200.toml").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("l2_bandwidth_gbs")]
    bad = tmp_path / "bad.toml"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="memory.l2_bandwidth_gbs"):
        spec.load_file(bad)
