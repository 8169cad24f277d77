"""GPU specifications as data: one TOML file per GPU under ``costpass/gpus/``.

Adding a GPU means adding a file. Every number in a file cites its source in a comment.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, asdict
from importlib import resources
from pathlib import Path

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PIPES = ("fp32_fma", "fp16_fma", "bf16_fma", "fp64_fma", "int32_alu", "imad", "sfu",
         "conversion", "lsu", "shared_bytes", "issue")
TENSOR_DTYPES = ("fp16", "bf16", "tf32", "int8", "fp8", "fp64")
MEMORY_KEYS = ("dram_bandwidth_gbs", "dram_bytes", "l2_bytes", "l2_bandwidth_gbs",
               "l1_shared_bytes_per_sm", "sector_bytes")
LIMIT_KEYS = ("max_threads_per_sm", "max_warps_per_sm", "max_blocks_per_sm",
              "max_threads_per_block", "registers_per_sm", "max_registers_per_thread",
              "register_alloc_unit", "shared_memory_per_sm", "max_shared_memory_per_block",
              "max_static_shared_memory_per_block", "shared_memory_reserved_per_block",
              "shared_alloc_unit", "launch_overhead_us")
# measured on the GPU itself; a spec without a measurement leaves them out
OPTIONAL_LIMIT_KEYS = ("event_timer_offset_us", "event_over_kernel_us", "vm_launch_gap_us")


class UnknownGPUError(ValueError):
    """Raised for a GPU name with no spec file."""


@dataclass(frozen=True)
class GPUSpec:
    name: str
    full_name: str
    arch: str
    compute_capability: str
    sm_count: int
    sub_partitions_per_sm: int
    warp_size: int
    sm_clock_mhz: float
    rated_clock_mhz: float
    pipes: dict = field(default_factory=dict)    # thread-level results / clock / SM
    tensor: dict = field(default_factory=dict)   # dense FLOP / clock / SM per dtype
    memory: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)

    @property
    def clock_hz(self) -> float:
        return self.sm_clock_mhz * 1e6

    def peak_tensor_tflops(self, dtype: str = "fp16") -> float:
        return self.tensor[dtype] * self.sm_count * self.clock_hz / 1e12

    def peak_fp32_tflops(self) -> float:
        return 2 * self.pipes["fp32_fma"] * self.sm_count * self.clock_hz / 1e12

    def to_dict(self) -> dict:
        return asdict(self)


def _gpu_dir() -> Path:
    return Path(str(resources.files("costpass") / "gpus"))


def available() -> list[str]:
    """Names of all GPUs with a spec file, sorted."""
    return sorted(p.stem for p in _gpu_dir().glob("*.toml"))


def _check(data: dict, path: Path) -> None:
    missing = [k for k in ("name", "full_name", "arch", "sm_count", "sm_clock_mhz") if k not in data]
    for section, keys in (("pipes", PIPES), ("tensor", TENSOR_DTYPES), ("memory", MEMORY_KEYS),
                          ("limits", LIMIT_KEYS)):
        sec = data.get(section, {})
        missing += [f"{section}.{k}" for k in keys if k not in sec]
    if missing:
        raise ValueError(f"{path}: missing keys {', '.join(missing)}")


def load_file(path: str | Path) -> GPUSpec:
    path = Path(path)
    with open(path, "rb") as f:
        data = tomllib.load(f)
    _check(data, path)
    return GPUSpec(
        name=data["name"], full_name=data["full_name"], arch=data["arch"],
        compute_capability=str(data.get("compute_capability", "")),
        sm_count=int(data["sm_count"]), sub_partitions_per_sm=int(data.get("sub_partitions_per_sm", 4)),
        warp_size=int(data.get("warp_size", 32)), sm_clock_mhz=float(data["sm_clock_mhz"]),
        rated_clock_mhz=float(data.get("rated_clock_mhz", data["sm_clock_mhz"])),
        pipes=dict(data["pipes"]), tensor=dict(data["tensor"]), memory=dict(data["memory"]),
        limits=dict(data["limits"]))


def load(name: str) -> GPUSpec:
    """Load a GPU spec by name (case-insensitive), e.g. ``load("h100")``."""
    key = name.strip().lower()
    path = _gpu_dir() / f"{key}.toml"
    if not path.exists():
        names = available()
        near = difflib.get_close_matches(key, names, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise UnknownGPUError(f"unknown GPU '{name}' (known: {', '.join(names)}){hint}")
    return load_file(path)


def load_many(names: str) -> list[GPUSpec]:
    """Parse a comma-separated list such as ``"h100,h200"``."""
    return [load(n) for n in names.split(",") if n.strip()]
