"""Fixed-length feature vectors for the learned cost model, from the analytical model's demands and bounds.

One vector per *candidate* (one scheduled module, which may launch several kernels)::

    from costpass import features
    x = features.featurize(demands, gpu_spec)        # np.ndarray, len(x) == len(FEATURE_SCHEMA.names)

Everything is expressed relative to the GPU's spec (times from the analytical model on *that* GPU,
utilizations, occupancy, waves, arithmetic intensity over the GPU's ridge point, registers over the
per-thread limit ...), so one model can serve several GPUs and be tried on a GPU it never saw.

Aggregation over kernels: time-like quantities are summed over the candidate's kernels (the module's run
time is the sum of its kernels'), ratio-like quantities (utilization, occupancy, coalescing ...) are
taken from the *dominant* kernel (the one with the largest analytical estimate), and the number of kernels
is a feature of its own.

Pure numpy + costpass.bounds; no TVM import here (features can be computed from saved demand records).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from . import bounds as B
from .records import KernelDemand
from .spec import GPUSpec

# Time features are ln(t_us + TIME_FLOOR_US): finite for a zero bound, monotone, and a difference of two
# of them is close to a log-ratio for the times that matter (> 1 us).
TIME_FLOOR_US = 0.01
PIPES = B.PIPES


@dataclass(frozen=True)
class FeatureSchema:
    version: str
    names: tuple

    def index(self, name: str) -> int:
        return self.names.index(name)

    def __len__(self) -> int:
        return len(self.names)


def _names() -> tuple:
    n = ["n_kernels", "log_estimate_us", "log_ceiling_us", "log_launch_us", "log_max_kernel_estimate_us",
         "estimate_over_ceiling", "dominant_kernel_share"]
    n += [f"log_sum_bound_{p}_us" for p in PIPES]           # sum over kernels of each pipe's bound
    n += [f"log_dom_bound_{p}_us" for p in PIPES]           # the dominant kernel's bound
    n += [f"util_{p}" for p in PIPES]                        # dominant kernel: bound / ceiling
    n += ["latency_over_ceiling", "launch_share",
          "occupancy", "blocks_per_sm_frac", "warps_per_sm_frac", "log2_waves", "wave_efficiency",
          "tail_fraction", "tail_sm_fraction", "sm_balance", "busiest_sm_share",
          "log2_ai_over_ridge", "log2_ai_over_ridge_min", "sectors_per_load_request",
          "sectors_per_store_request", "load_sector_efficiency", "store_sector_efficiency",
          "shared_wavefronts_over_ideal", "regs_frac", "regs_per_thread_log2", "spill",
          "smem_frac", "log2_threads_per_block", "log2_blocks", "log2_blocks_per_sm_count",
          "log2_total_warps", "tensor_flop_share", "log2_flop_per_inst", "barriers_per_warp_log2",
          "loads_per_warp_log2", "invalid_launch",
          # register pressure and private memory of the dominant kernel (features-2): the register demand
          # the pass estimates (before the cap) over what the block size leaves per thread on this GPU,
          # the bytes per thread kept off registers (spills + local arrays), the serial load chain
          "reg_need_over_cap", "log2_local_bytes_per_thread", "log2_serial_iterations"]
    n += [f"bottleneck_{p}" for p in PIPES]                  # one-hot: the dominant kernel's bottleneck
    n += [f"est_share_{p}" for p in PIPES]                   # share of the estimate per bottleneck pipe
    return tuple(n)


FEATURE_SCHEMA = FeatureSchema(version="costpass-features-2", names=_names())
_IDX = {n: i for i, n in enumerate(FEATURE_SCHEMA.names)}


def schema_hash(schema: FeatureSchema = FEATURE_SCHEMA) -> str:
    """First 16 hex digits of sha256(version + names): changes whenever the vector's meaning changes."""
    text = schema.version + "\n" + "\n".join(schema.names)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _lt(us: float) -> float:
    return math.log(max(0.0, float(us)) + TIME_FLOOR_US)


def _log2(x: float, floor: float = 1e-6) -> float:
    return math.log2(max(float(x), floor))


def _peak_flops_per_s(d: KernelDemand, g: GPUSpec) -> float:
    """Peak FLOP/s for this kernel's mix: tensor FLOP at the tensor rate of their dtype, the rest at FP32."""
    tensor = sum(d.tensor_flops.values())
    total = tensor + d.flops
    clk_sm = g.clock_hz * g.sm_count
    simt = 2.0 * g.pipes["fp32_fma"] * clk_sm
    if total <= 0:
        return simt
    if tensor <= 0:
        return simt
    # time-weighted harmonic mix of the rates
    t = d.flops / simt
    for dt, f in d.tensor_flops.items():
        rate = g.tensor.get(dt, 0) or 2 * g.pipes["fp32_fma"]
        t += f / (rate * clk_sm)
    return total / t if t > 0 else simt


def kernel_bounds(demands, gpu: GPUSpec) -> list:
    return [B.analyze(d, gpu) for d in demands]


def featurize(demands: list, gpu: GPUSpec, kernel_bounds_: list | None = None) -> np.ndarray:
    """Feature vector (float64, length ``len(FEATURE_SCHEMA)``) of one candidate on ``gpu``.

    ``demands`` are the candidate's kernels (``demand.extract``); ``kernel_bounds_`` may pass their
    ``bounds.analyze`` results when the caller already has them. All values are finite.
    """
    if not demands:
        raise ValueError("featurize: a candidate needs at least one kernel demand")
    bs = kernel_bounds_ if kernel_bounds_ is not None else kernel_bounds(demands, gpu)
    x = np.zeros(len(FEATURE_SCHEMA), dtype=np.float64)

    def put(name, v):
        x[_IDX[name]] = v

    est = sum(b.estimate_us for b in bs)
    ceil_ = sum(b.ceiling_us for b in bs)
    launch = sum(b.launch_us for b in bs)
    k = max(range(len(bs)), key=lambda i: bs[i].estimate_us)
    d, b = demands[k], bs[k]
    put("n_kernels", len(bs))
    put("log_estimate_us", _lt(est))
    put("log_ceiling_us", _lt(ceil_))
    put("log_launch_us", _lt(launch))
    put("log_max_kernel_estimate_us", _lt(b.estimate_us))
    put("estimate_over_ceiling", est / ceil_ if ceil_ > 0 else 1.0)
    put("dominant_kernel_share", b.estimate_us / est if est > 0 else 1.0)
    for p in PIPES:
        put(f"log_sum_bound_{p}_us", _lt(sum(bb.bounds_us.get(p, 0.0) for bb in bs)))
        put(f"log_dom_bound_{p}_us", _lt(b.bounds_us.get(p, 0.0)))
        put(f"util_{p}", min(b.utilization.get(p, 0.0), 100.0))
    thr = b.ceiling_us - b.launch_us
    put("latency_over_ceiling", min(b.bounds_us.get("latency", 0.0) / thr, 1e3) if thr > 0 else 0.0)
    put("launch_share", launch / est if est > 0 else 1.0)

    occ, wv, L = b.occupancy, b.waves, gpu.limits
    put("occupancy", occ.occupancy)
    put("blocks_per_sm_frac", occ.blocks_per_sm / L["max_blocks_per_sm"])
    put("warps_per_sm_frac", occ.warps_per_sm / L["max_warps_per_sm"])
    put("log2_waves", _log2(wv.waves, 1e-4))
    put("wave_efficiency", wv.efficiency)
    put("tail_fraction", wv.tail_blocks / wv.slots if wv.slots else 0.0)
    put("tail_sm_fraction", wv.tail_sms / gpu.sm_count)
    put("sm_balance", wv.sm_balance)
    put("busiest_sm_share", wv.blocks_on_busiest_sm / max(1, wv.num_blocks))

    # arithmetic intensity relative to the GPU's ridge point (peak FLOP/s / DRAM B/s)
    bw = gpu.memory["dram_bandwidth_gbs"] * 1e9
    tot_flops = sum(bb.flops for bb in bs)
    tot_dram = sum(bb.dram_bytes for bb in bs)
    ridge = _peak_flops_per_s(d, gpu) / bw
    ai = tot_flops / tot_dram if tot_dram > 0 else (1e6 if tot_flops > 0 else 0.0)
    put("log2_ai_over_ridge", float(np.clip(_log2(ai / ridge, 2.0 ** -30), -30, 30)))
    ai_min = [((bb.flops / bb.dram_bytes) if bb.dram_bytes > 0 else 1e6) / (_peak_flops_per_s(dd, gpu) / bw)
              for dd, bb in zip(demands, bs)]
    put("log2_ai_over_ridge_min", float(np.clip(_log2(min(ai_min), 2.0 ** -30), -30, 30)))

    I, M = d.inst, d.memory
    sector = gpu.memory.get("sector_bytes", 32)
    ld, st = I.get("ld_global", 0.0), I.get("st_global", 0.0)
    put("sectors_per_load_request", M.get("global_load_sectors", 0.0) / ld if ld > 0 else 0.0)
    put("sectors_per_store_request", M.get("global_store_sectors", 0.0) / st if st > 0 else 0.0)
    lsec, ssec = M.get("global_load_sectors", 0.0), M.get("global_store_sectors", 0.0)
    put("load_sector_efficiency", min(1.0, M.get("global_load_bytes", 0.0) / (lsec * sector)) if lsec > 0 else 1.0)
    put("store_sector_efficiency", min(1.0, M.get("global_store_bytes", 0.0) / (ssec * sector)) if ssec > 0 else 1.0)
    wf = M.get("shared_load_wavefronts", 0.0) + M.get("shared_store_wavefronts", 0.0)
    ideal = M.get("shared_ideal_wavefronts", 0.0)
    put("shared_wavefronts_over_ideal", min(wf / ideal, 64.0) if ideal > 0 else 1.0)

    ln = d.launch
    put("regs_frac", ln.registers_per_thread / L["max_registers_per_thread"])
    put("regs_per_thread_log2", _log2(ln.registers_per_thread, 1.0))
    put("spill", 1.0 if ln.local_bytes_per_thread > 0 or M.get("local_bytes", 0.0) > 0 else 0.0)
    put("smem_frac", ln.smem_bytes / L["shared_memory_per_sm"])
    put("log2_threads_per_block", _log2(ln.threads_per_block, 1.0))
    put("log2_blocks", _log2(ln.num_blocks, 1.0))
    put("log2_blocks_per_sm_count", _log2(ln.num_blocks / gpu.sm_count, 1e-4))
    warps = max(1, ln.num_blocks * ln.warps_per_block)
    put("log2_total_warps", _log2(warps, 1.0))
    put("tensor_flop_share", sum(d.tensor_flops.values()) / b.flops if b.flops > 0 else 0.0)
    ninst = sum(I.values())
    put("log2_flop_per_inst", _log2(b.flops / ninst, 2.0 ** -20) if ninst > 0 else -20.0)
    put("barriers_per_warp_log2", _log2(1.0 + I.get("barrier", 0.0) / warps, 1.0))
    put("loads_per_warp_log2", _log2(1.0 + ld / warps, 1.0))
    put("invalid_launch", 0.0 if all(bb.valid for bb in bs) else 1.0)
    # registers per thread the GPU allows at this block size (register file / threads, at most the ISA cap);
    # the demand pass caps its register estimate there and moves the excess to local_bytes_per_thread
    cap = min(L["max_registers_per_thread"], L["registers_per_sm"] / max(1, ln.threads_per_block))
    put("reg_need_over_cap", (ln.registers_per_thread + ln.local_bytes_per_thread / 4.0) / cap)
    put("log2_local_bytes_per_thread", math.log2(1.0 + max(0, ln.local_bytes_per_thread)))
    put("log2_serial_iterations", math.log2(1.0 + max(0.0, d.serial_iterations)))

    put(f"bottleneck_{b.bottleneck}", 1.0)
    if est > 0:
        for bb in bs:
            x[_IDX[f"est_share_{bb.bottleneck}"]] += bb.estimate_us / est
    return np.nan_to_num(x, nan=0.0, posinf=1e6, neginf=-1e6)


def featurize_many(demand_lists, gpu: GPUSpec) -> np.ndarray:
    """Stack ``featurize`` over candidates: shape (n, len(FEATURE_SCHEMA))."""
    rows = [featurize(ds, gpu) for ds in demand_lists]
    return np.vstack(rows) if rows else np.zeros((0, len(FEATURE_SCHEMA)))


def estimate_us_of(X: np.ndarray) -> np.ndarray:
    """The analytical estimate (µs) back from feature rows (inverse of the ``log_estimate_us`` column)."""
    X = np.atleast_2d(X)
    return np.maximum(np.exp(X[:, _IDX["log_estimate_us"]]) - TIME_FLOOR_US, 1e-6)
