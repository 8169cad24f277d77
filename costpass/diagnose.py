"""Per-kernel diagnosis: KernelDemand x GPUSpec -> a report of what limits the kernel and which schedule
decision to change.

Pure functions from the stage records (``records.KernelDemand``, ``bounds.KernelBounds``) to plain
dataclasses; no lowering happens here, so a report can be made from saved demand records.

* :func:`diagnose` -- one scheduled module (its kernels in launch order) on one or several GPUs.
* :func:`combine` -- several modules (e.g. the records of a tuning database) in one report.
* :func:`render_text` -- tables for a terminal (rich; plain ASCII when the output is not a TTY).
* :func:`render_json` / :meth:`Report.to_dict` -- the same content as JSON.
* :func:`plot` -- one PNG: per-pipe utilization bars and a roofline.

Every hint is computed from the numbers of the model: which pipe bounds the kernel, how far the
others are, what the launch shape does to occupancy and waves, and what the access patterns cost
(sectors per request, shared-memory wavefronts per request). Each names the schedule decision that
moves that number.
"""
from __future__ import annotations

import io
import json
import math
import sys
from dataclasses import dataclass, field, asdict

from . import bounds as B
from .records import KernelDemand
from .spec import GPUSpec

SCHEMA = "costpass.diagnose/1"

# Thresholds for hints (a priori, documented so that a reader can argue with them).
LAUNCH_BOUND_RATIO = 1.0       # work below this many launch overheads -> launch-bound
WAVE_EFFICIENCY_MIN = 0.90     # mean/max blocks per SM below this -> tail-wave hint
FILL_MIN = 0.90                # fewer than this share of SMs busy in a single partial wave
LOW_OCCUPANCY = 0.25           # active warps / max warps below this -> occupancy hint
CONFLICT_RATIO = 1.25          # shared wavefronts per request / ideal above this -> bank-conflict hint
SECTOR_RATIO = 1.5             # global sectors per request / ideal above this -> coalescing hint
RELEVANT_UTIL = 0.25           # a pipe's utilization at the ceiling above which its hints matter
CO_BOTTLENECK = 0.95           # pipes within this fraction of the bottleneck are reported with it
LATENCY_NEAR = 0.8             # latency term above this fraction of the throughput bound -> latency hint
GEMM_LIKE_INTENSITY = 32.0     # FLOP per footprint byte above which a kernel counts as GEMM-like

_MEMORY_PIPES = ("dram", "l2", "lsu", "shared")
SHORT_LABEL = {"issue": "warp issue", "fma": "FP32 FMA", "fp16": "FP16", "fp64": "FP64", "alu": "int ALU",
               "xu": "SFU (XU)", "lsu": "LD/ST issue", "tensor": "tensor core", "shared": "L1/shared",
               "l2": "L2", "dram": "DRAM", "latency": "latency"}
_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "info": 3}


# --------------------------------------------------------------------------------------------------
# Report dataclasses
# --------------------------------------------------------------------------------------------------

@dataclass
class PipeRow:
    pipe: str
    label: str
    bound_us: float
    utilization: float        # bound / (ceiling - launch): 1.0 for the bottleneck
    bottleneck: bool = False


@dataclass
class Hint:
    code: str                 # stable identifier, e.g. "tail-wave", "bank-conflicts"
    severity: str             # "high" | "medium" | "low" | "info"
    message: str
    decision: str             # the schedule decision the hint points at


@dataclass
class GPUDiagnosis:
    gpu: str
    full_name: str
    bottleneck: str
    bottleneck_label: str
    co_bottlenecks: list      # other pipes within CO_BOTTLENECK of the bottleneck's bound
    ceiling_us: float
    estimate_us: float
    launch_us: float
    pipes: list               # [PipeRow], largest bound first; zero bounds left out
    occupancy: dict
    waves: dict
    flops: float
    dram_bytes: float
    arithmetic_intensity: float | None   # FLOP per DRAM byte (None: no DRAM traffic)
    roofs: dict               # dram_gbs, compute_tflops (the roof relevant to this kernel), fp32_tflops, ...
    at_estimate: dict         # tflops, dram_gbs, dram_fraction, compute_fraction at the estimate
    measured: dict | None = None
    hints: list = field(default_factory=list)
    problems: list = field(default_factory=list)


@dataclass
class KernelReport:
    name: str
    launch: dict
    metrics: dict
    per_gpu: list             # [GPUDiagnosis], in the order of the gpus argument
    notes: list = field(default_factory=list)


@dataclass
class ModuleReport:
    name: str
    source: str
    kernels: list             # [KernelReport], launch order
    totals: dict              # gpu -> {ceiling_us, estimate_us[, measured_us, fraction_of_ceiling, ...]}
    measured_ms: float | None = None
    measured_gpu: str | None = None
    notes: list = field(default_factory=list)


@dataclass
class Report:
    gpus: list                # [{name, full_name, sm_count, ...}]
    modules: list             # [ModuleReport]
    notes: list = field(default_factory=list)
    schema: str = SCHEMA

    def to_dict(self) -> dict:
        return _clean(asdict(self))

    @property
    def kernels(self) -> list:
        return [k for m in self.modules for k in m.kernels]


def _clean(x):
    """Make a structure JSON-safe: non-finite floats become None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


# --------------------------------------------------------------------------------------------------
# Derived numbers
# --------------------------------------------------------------------------------------------------

def _ratio(a, b, default=0.0):
    return a / b if b else default


def kernel_metrics(d: KernelDemand) -> dict:
    """GPU-independent numbers derived from a demand record (the inputs of the hints)."""
    I, M = d.inst, d.memory
    total = sum(I.values())
    ld, st = I.get("ld_global", 0.0), I.get("st_global", 0.0)
    ld_bytes_req = _ratio(M.get("global_load_bytes", 0.0), ld)
    st_bytes_req = _ratio(M.get("global_store_bytes", 0.0), st)
    sh_req = I.get("ld_shared", 0.0) + I.get("st_shared", 0.0) + I.get("ldmatrix", 0.0)
    sh_wf = M.get("shared_load_wavefronts", 0.0) + M.get("shared_store_wavefronts", 0.0)
    footprint = sum(float(b.get("bytes", 0.0) or 0.0) for b in d.global_buffers.values())
    worst, worst_x = None, 0.0
    for name, b in d.global_buffers.items():
        size = float(b.get("bytes", 0.0) or 0.0)
        if size <= 0:
            continue
        x = (float(b.get("load_sectors", 0.0)) * 32) / size
        if x > worst_x:
            worst, worst_x = name, x
    overhead = sum(I.get(k, 0.0) for k in ("int_alu", "imad", "branch", "select"))
    tensor = sum(d.tensor_flops.values())
    fp16_ops = sum(I.get(k, 0.0) for k in ("fp16_fma", "fp16_add", "fp16_mul", "bf16_fma"))
    return {
        "warp_instructions": total,
        "flops": float(d.flops + tensor),
        "tensor_flops": float(tensor),
        "tensor_dtype": max(d.tensor_flops, key=d.tensor_flops.get) if d.tensor_flops else None,
        "mma_instructions": float(I.get("mma", 0.0)),
        "fp16_instructions": float(fp16_ops),
        "fp32_instructions": float(sum(I.get(k, 0.0) for k in ("fp32_fma", "fp32_add", "fp32_mul"))),
        "conversions": float(I.get("conversion", 0.0)),
        "overhead_fraction": _ratio(overhead, total),
        "global_load_requests": float(ld),
        "global_load_bytes_per_request": ld_bytes_req,
        "global_load_sectors_per_request": _ratio(M.get("global_load_sectors", 0.0), ld),
        "global_load_ideal_sectors_per_request": max(1.0, ld_bytes_req / 32) if ld else 0.0,
        "global_store_requests": float(st),
        "global_store_sectors_per_request": _ratio(M.get("global_store_sectors", 0.0), st),
        "global_store_ideal_sectors_per_request": max(1.0, st_bytes_req / 32) if st else 0.0,
        "load_bytes_per_lane": ld_bytes_req / 32 if ld else 0.0,
        "shared_requests": float(sh_req),
        "shared_wavefronts_per_request": _ratio(sh_wf, sh_req),
        "shared_ideal_wavefronts_per_request": _ratio(M.get("shared_ideal_wavefronts", 0.0), sh_req),
        "footprint_bytes": footprint,
        "l2_bytes": float(M.get("l2_bytes", 0.0)),
        "dram_bytes_compulsory": float(M.get("dram_bytes", 0.0)),
        "l2_reuse": _ratio(M.get("l2_bytes", 0.0), footprint),
        "most_reread_buffer": worst,
        "most_reread_factor": worst_x,
        "local_bytes_per_thread": int(d.launch.local_bytes_per_thread),
        "barriers": float(I.get("barrier", 0.0)),
    }


def _launch_dict(d: KernelDemand) -> dict:
    L = d.launch
    return {"grid": list(L.grid), "block": list(L.block), "num_blocks": L.num_blocks,
            "threads_per_block": L.threads_per_block, "warps_per_block": L.warps_per_block,
            "smem_bytes": L.smem_bytes, "registers_per_thread": L.registers_per_thread,
            "local_bytes_per_thread": L.local_bytes_per_thread}


def _tensor_tflops(g: GPUSpec, dtype: str) -> float:
    """Dense tensor peak as bounds.py uses it: the per-SM rate at the clock it is quoted for."""
    return g.tensor[dtype] * g.sm_count * g.rated_clock_mhz * 1e6 / 1e12


def _roofs(g: GPUSpec, m: dict) -> dict:
    clk = g.clock_hz
    fp32 = g.peak_fp32_tflops()
    fp16 = 2 * g.pipes["fp16_fma"] * g.sm_count * clk / 1e12
    out = {"dram_gbs": float(g.memory["dram_bandwidth_gbs"]), "l2_gbs": float(g.memory["l2_bandwidth_gbs"]),
           "fp32_tflops": fp32, "fp16_vector_tflops": fp16}
    for dt in ("fp16", "bf16", "tf32", "int8", "fp8"):
        out[f"tensor_{dt}_tflops"] = _tensor_tflops(g, dt)
    if m["tensor_flops"] > 0:
        key = f"tensor_{m['tensor_dtype']}_tflops"
        out["compute_tflops"] = out.get(key, out["tensor_fp16_tflops"])
        out["compute_roof"] = f"{m['tensor_dtype']} tensor core"
    elif m["fp16_instructions"] > m["fp32_instructions"]:
        out["compute_tflops"] = fp16
        out["compute_roof"] = "FP16 vector (HFMA2)"
    else:
        out["compute_tflops"] = fp32
        out["compute_roof"] = "FP32 FMA"
    return out


# --------------------------------------------------------------------------------------------------
# Hints
# --------------------------------------------------------------------------------------------------

def format_us(x, unit: str = "µs") -> str:
    """Microseconds for a report: '-' for missing or non-finite values, ms from 1000 up."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "-"
    if x >= 1000:
        return f"{x / 1000:.2f} ms"
    if x >= 100:
        return f"{x:.0f} {unit}"
    if x >= 10:
        return f"{x:.1f} {unit}"
    return f"{x:.2f} {unit}"


_us = format_us


def _bytes(x: float) -> str:
    for unit, s in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if x >= s:
            return f"{x / s:.3g} {unit}"
    return f"{x:.0f} B"


def _count(x: float) -> str:
    for unit, s in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= s:
            return f"{x / s:.3g}{unit}"
    return f"{x:.0f}"


def _gemm_like(m: dict, context: dict) -> bool:
    if context.get("gemm_like") is not None:
        return bool(context["gemm_like"])
    return m["flops"] >= 1e8 and _ratio(m["flops"], m["footprint_bytes"]) >= GEMM_LIKE_INTENSITY


def _half_precision(m: dict, context: dict) -> bool:
    dt = str(context.get("dtype", ""))
    if dt:
        return dt in ("float16", "bfloat16", "fp16", "bf16")
    return m["fp16_instructions"] > 0 or m["conversions"] > 0


def hints_for(d: KernelDemand, b: B.KernelBounds, g: GPUSpec, m: dict, context: dict | None = None) -> list:
    """Hints for one kernel on one GPU, most important first."""
    context = context or {}
    H = []
    u, bd = b.utilization, b.bounds_us
    work = b.ceiling_us - b.launch_us
    occ, wv = b.occupancy, b.waves
    top = max((p for p in bd if p != "latency"), key=lambda p: bd[p])

    def add(code, severity, message, decision):
        H.append(Hint(code, severity, message, decision))

    def sev(pipe):
        if pipe == top or u.get(pipe, 0) >= CO_BOTTLENECK:
            return "high"
        return "medium" if u.get(pipe, 0) >= 0.5 else "low"

    for p in b.problems:
        add("does-not-fit", "high", p, "launch shape: threads per block / shared-memory tile size")

    # -- launch overhead --------------------------------------------------------------------------
    if work < LAUNCH_BOUND_RATIO * b.launch_us:
        add("launch-bound", "high",
            f"launch-bound: the kernel's work ({_us(work)}) is below the launch overhead "
            f"({_us(b.launch_us)}): fuse it with its neighbours or give each launch more work",
            "operator fusion / batching")

    # -- the bottleneck ---------------------------------------------------------------------------
    est_s = b.estimate_us * 1e-6
    if top == "dram":
        bw_frac = _ratio(b.dram_bytes / est_s / 1e9, g.memory["dram_bandwidth_gbs"])
        over = _ratio(b.dram_bytes, m["footprint_bytes"], 1.0)
        if over > 1.3:
            add("dram-bound", "high",
                f"DRAM-bound at {bw_frac:.0%} of peak bandwidth (at the estimate): it moves "
                f"{_bytes(b.dram_bytes)}, {over:.1f}x its {_bytes(m['footprint_bytes'])} footprint: tile the "
                f"reduction loop into shared memory to raise reuse", "tiling + cache_read into shared memory")
        else:
            add("dram-bound", "high",
                f"DRAM-bound at {bw_frac:.0%} of peak bandwidth (at the estimate), streaming its "
                f"{_bytes(m['footprint_bytes'])} footprint once: only fusion with neighbours or a narrower "
                f"dtype makes it faster", "operator fusion / data type")
    elif top == "l2":
        msg = (f"L2-bound: global loads move {_bytes(m['l2_bytes'])}, {m['l2_reuse']:.1f}x the "
               f"{_bytes(m['footprint_bytes'])} footprint")
        if m["most_reread_buffer"] and m["most_reread_factor"] > 2:
            msg += f" ({m['most_reread_buffer']} is read {m['most_reread_factor']:.0f}x over)"
        msg += ": enlarge the block tile and stage it in shared memory so each byte is reused more"
        add("l2-bound", "high", msg, "block tile sizes (splits of the blockIdx loops) + cache_read to shared")
    elif top == "lsu":
        if m["load_bytes_per_lane"] and m["load_bytes_per_lane"] < 16:
            msg = (f"load/store-issue-bound: {_count(sum(d.inst.get(k, 0) for k in ('ld_global', 'st_global', 'ld_shared', 'st_shared', 'ldmatrix')))} "
                   f"warp memory instructions, {m['load_bytes_per_lane']:.0f} bytes per lane per global load: "
                   f"vectorize the innermost copy loop to 16-byte accesses")
        else:
            msg = ("load/store-issue-bound: too many memory instructions per FLOP: raise the per-thread "
                   "register tile so each loaded value is used more")
        add("lsu-bound", "high", msg, "vectorize / register tiling (inner split factors)")
    elif top == "shared":
        ratio = _ratio(m["shared_wavefronts_per_request"], m["shared_ideal_wavefronts_per_request"], 1.0)
        mem = d.memory
        l1_sectors = mem.get("global_load_sectors", 0) + mem.get("global_store_sectors", 0)
        used = mem.get("global_load_bytes", 0) + mem.get("global_store_bytes", 0)
        if l1_sectors / 4 > mem.get("shared_load_wavefronts", 0) + mem.get("shared_store_wavefronts", 0):
            add("l1-bound", "high",
                f"L1-bound: global accesses move {_bytes(l1_sectors * 32)} through L1, "
                f"{_ratio(l1_sectors * 32, used, 1.0):.1f}x the bytes the lanes use: make consecutive lanes "
                "read consecutive addresses (or stage the tile through shared memory)",
                "loop order / binding so threadIdx.x walks the contiguous axis; cache_read to shared")
        elif ratio <= CONFLICT_RATIO:
            add("shared-bound", "high",
                "shared-memory-bandwidth-bound without bank conflicts: raise the per-thread register tile "
                "so each value read from shared memory is reused more", "register tiling (inner split factors)")
    elif top == "tensor":
        frac = _ratio(b.bounds_us["tensor"], b.estimate_us)
        add("tensor-bound", "info",
            f"tensor-core-bound: {frac:.0%} of the {_roof_name(m)} peak at the estimate: the schedule is at "
            f"the compute roof; only fewer FLOP or a narrower dtype go faster", "none (at the roof)")
    elif top == "fma":
        imad = d.inst.get("imad", 0.0)
        fp32 = sum(d.inst.get(k, 0.0) for k in ("fp32_fma", "fp32_add", "fp32_mul"))
        if imad > 0.3 * (imad + fp32):
            add("imad-overhead", "high",
                f"FMA-pipe-bound, but {imad / (imad + fp32):.0%} of it is integer IMAD (index arithmetic): "
                "simplify the fused-loop index math (power-of-two splits, unrolled inner loops)",
                "split factors / unroll")
        elif not m["tensor_flops"] and _gemm_like(m, context) and _half_precision(m, context):
            pass  # the tensor-core hint below says it
        else:
            add("fma-bound", "info",
                "FP32-FMA-bound: at the FP32 roof; only fewer FLOP or tensor cores (tf32/fp16) go faster",
                "algorithm / data type")
    elif top == "alu":
        add("alu-bound", "high",
            f"integer-ALU-bound: {m['overhead_fraction']:.0%} of the instructions are index arithmetic and "
            "loop overhead: unroll the inner loops and avoid non-power-of-two splits",
            "unroll / split factors")
    elif top == "xu":
        conv, sfu = d.inst.get("conversion", 0.0), d.inst.get("sfu", 0.0)
        if conv > sfu:
            add("xu-bound", "high",
                f"special-function-unit-bound by type conversions ({_count(conv)} vs {_count(sfu)} "
                "transcendentals): convert once (keep fp32 in registers), vectorize half2 conversions",
                "cast placement (compute_at of the cast stage)")
        else:
            add("xu-bound", "high",
                f"special-function-unit-bound: {_count(sfu)} MUFU warp instructions (exp/log/rsqrt/div): "
                "use exp2 with a pre-scaled input or fewer transcendentals per element",
                "expression rewrite / fast math")
    elif top == "issue":
        useful = {"fma": "FP32 FMA", "fp16": "FP16", "xu": "special-function", "tensor": "tensor-core"}
        tied = [p for p in useful if bd.get(p, 0) >= CO_BOTTLENECK * bd["issue"]]
        if tied and m["overhead_fraction"] < 0.1:
            add("issue-bound", "info",
                f"instruction-issue-bound, tied with the {useful[tied[0]]} pipe (one warp instruction per "
                f"clock per scheduler): the {useful[tied[0]]} stream runs at its roof; only fewer "
                "instructions per result go faster", "none (at the roof)")
        else:
            add("issue-bound", "high" if b.bottleneck != "latency" else "medium",
                f"instruction-issue-bound: {_count(m['warp_instructions'])} warp instructions, "
                f"{m['overhead_fraction']:.0%} of them index arithmetic / loop overhead: unroll inner loops "
                "and vectorize memory accesses", "unroll / vectorize")
    if bd.get("latency", 0.0) >= LATENCY_NEAR * bd[top] and bd[top] > 0:
        loads = _ratio(d.inst.get("ld_global", 0.0), max(1, d.launch.num_blocks * d.launch.warps_per_block))
        resident = min(occ.warps_per_sm, wv.blocks_on_busiest_sm * d.launch.warps_per_block)
        what = "latency-bound" if b.bottleneck == "latency" else "latency nearly limits too"
        add("latency-bound", "high" if b.bottleneck == "latency" else "medium",
            f"{what} ({_us(bd['latency'])} vs {_us(bd[top])} of throughput): {resident} resident warps/SM "
            f"with {loads:.0f} global loads per warp cannot hide the memory latency: raise occupancy or "
            "software-pipeline the loads (more stages in flight)", "occupancy / software pipelining")

    # -- waves and grid fill -----------------------------------------------------------------------
    if wv.num_blocks < wv.slots and wv.num_blocks < g.sm_count * FILL_MIN and work >= b.launch_us:
        busy = min(g.sm_count, wv.num_blocks)
        add("under-filled", "high" if busy < g.sm_count / 2 else "medium",
            f"{wv.num_blocks} blocks keep only {busy} of {g.sm_count} SMs busy: split the grid finer "
            "(smaller block tiles, or split-K for a reduction)", "grid tiling / rfactor")
    elif wv.waves > 1 and wv.sm_balance < WAVE_EFFICIENCY_MIN and work >= b.launch_us:
        lost = work * (1 - wv.sm_balance)
        add("tail-wave", "high" if wv.sm_balance < 0.75 else "medium",
            f"{wv.waves:.2f} waves: the last wave runs {wv.tail_sms} of {g.sm_count} SMs "
            f"(~{_us(lost)} idle on the others): change the grid tiling so the block count is a multiple "
            f"of {wv.slots}", "grid tiling (splits of the blockIdx loops)")

    # -- occupancy ---------------------------------------------------------------------------------
    if occ.occupancy < LOW_OCCUPANCY and occ.limiter in ("registers", "shared_memory", "threads"):
        what = {"registers": "registers", "shared_memory": "shared memory",
                "threads": "threads per block"}[occ.limiter]
        extra = f" (~{d.launch.registers_per_thread}/thread, estimated)" if occ.limiter == "registers" else ""
        bl = "block" if occ.blocks_per_sm == 1 else "blocks"
        matters = b.bottleneck == "latency" or u.get("latency", 0) > 0.5
        add("low-occupancy", "high" if matters else "low",
            f"{what}{extra} cap occupancy at {occ.blocks_per_sm} {bl}/SM ({occ.warps_per_sm} warps, "
            f"{occ.occupancy:.0%})",
            "register tile / shared tile size / threads per block")

    # -- access patterns ---------------------------------------------------------------------------
    sr = m["global_load_sectors_per_request"]
    ideal = m["global_load_ideal_sectors_per_request"]
    mem_u = max(u.get("dram", 0), u.get("l2", 0), u.get("lsu", 0))
    if ideal and sr > SECTOR_RATIO * ideal and mem_u >= RELEVANT_UTIL:
        add("uncoalesced-loads", sev("l2") if u.get("l2", 0) >= u.get("dram", 0) else sev("dram"),
            f"global loads use {sr:.1f} sectors per request where {ideal:.1f} would do: make the innermost "
            "thread axis walk contiguous memory", "loop order / thread binding of the copy loops")
    sw = m["global_store_sectors_per_request"]
    ideal_w = m["global_store_ideal_sectors_per_request"]
    if ideal_w and sw > SECTOR_RATIO * ideal_w and mem_u >= RELEVANT_UTIL:
        add("uncoalesced-stores", "medium",
            f"global stores use {sw:.1f} sectors per request where {ideal_w:.1f} would do: bind threadIdx.x "
            "to the output's innermost axis (or stage the output tile in shared memory)",
            "thread binding of the write-back loop")
    wr = m["shared_wavefronts_per_request"]
    wi = m["shared_ideal_wavefronts_per_request"]
    if wi and wr > CONFLICT_RATIO * wi and u.get("shared", 0) >= RELEVANT_UTIL:
        add("bank-conflicts", sev("shared"),
            f"shared-memory bank conflicts: {wr:.1f} wavefronts per request vs {wi:.1f} ideal: pad the "
            "shared tile (storage_align) or swizzle it", "storage_align / layout of the shared buffer")

    # -- tensor cores ------------------------------------------------------------------------------
    if not m["tensor_flops"] and _gemm_like(m, context) and _half_precision(m, context):
        fp32_roof = g.peak_fp32_tflops()
        tensor_roof = _tensor_tflops(g, "fp16")
        add("no-tensor-cores", "high",
            f"no tensor cores used on an fp16 GEMM-like kernel ({_count(m['flops'])}FLOP): tensorize the "
            f"inner tile (wmma/mma); the tensor roof is {tensor_roof / fp32_roof:.0f}x the FP32 one",
            "tensorize (MultiLevelTilingTensorCore)")

    # -- local memory ------------------------------------------------------------------------------
    if m["local_bytes_per_thread"] > 0:
        add("local-memory", "medium" if u.get("l2", 0) < 0.5 else "high",
            f"{m['local_bytes_per_thread']} bytes/thread in local memory (spills or a private array indexed "
            "by a loop variable): unroll the loops that index it or shrink the register tile",
            "unroll / register tile size")

    first = ("does-not-fit", "launch-bound", "no-tensor-cores")
    H.sort(key=lambda h: (_SEVERITY_ORDER.get(h.severity, 9), first.index(h.code) if h.code in first else 9))
    return H


def _roof_name(m: dict) -> str:
    return f"{m['tensor_dtype']} tensor" if m.get("tensor_dtype") else "FP32"


def _measured(measured_us: float, b_ceiling: float, b_estimate: float) -> dict:
    frac = _ratio(b_ceiling, measured_us)
    return {"measured_us": measured_us, "fraction_of_ceiling": frac,
            "headroom_us": max(0.0, measured_us - b_ceiling),
            "headroom_x": _ratio(measured_us, b_ceiling),
            "estimate_error": _ratio(b_estimate, measured_us) - 1.0}


def _measured_hint(meas: dict) -> Hint:
    f = meas["fraction_of_ceiling"]
    if f > 1.02:
        return Hint("below-ceiling", "high",
                    f"measured {_us(meas['measured_us'])} is faster than the model's ceiling: the model "
                    "overestimates this kernel's demand (report it)", "none (model check)")
    if f >= 0.8:
        return Hint("near-ceiling", "info",
                    f"measured {_us(meas['measured_us'])} reaches {f:.0%} of the ceiling: little to gain "
                    "without changing the demand itself", "none")
    return Hint("headroom", "high" if f < 0.5 else "medium",
                f"measured {_us(meas['measured_us'])} reaches {f:.0%} of the ceiling: up to "
                f"{meas['headroom_x']:.1f}x ({_us(meas['headroom_us'])}) to gain without changing the demand",
                "overlap / latency hiding (pipelining, occupancy)")


# --------------------------------------------------------------------------------------------------
# Diagnosis
# --------------------------------------------------------------------------------------------------

def gpu_summary(g: GPUSpec) -> dict:
    return {"name": g.name, "full_name": g.full_name, "arch": g.arch, "sm_count": g.sm_count,
            "sm_clock_mhz": g.sm_clock_mhz, "dram_gbs": g.memory["dram_bandwidth_gbs"],
            "l2_bytes": g.memory["l2_bytes"], "fp32_tflops": g.peak_fp32_tflops(),
            "tensor_fp16_tflops": _tensor_tflops(g, "fp16"),
            "launch_overhead_us": g.limits["launch_overhead_us"]}


def _as_specs(gpus) -> list:
    from . import spec as S
    if isinstance(gpus, (str, GPUSpec)):
        gpus = [gpus]
    out = []
    for g in gpus:
        if isinstance(g, str):
            out.extend(S.load_many(g))
        else:
            out.append(g)
    if not out:
        raise ValueError("no GPU given")
    return out


def diagnose_kernel(d: KernelDemand, gpus, measured_us: float | None = None, measured_gpu: str | None = None,
                    context: dict | None = None) -> KernelReport:
    gpus = _as_specs(gpus)
    m = kernel_metrics(d)
    per = []
    for g in gpus:
        b = B.analyze(d, g)
        rows = [PipeRow(p, B.PIPE_LABEL[p], v, b.utilization.get(p, 0.0))
                for p, v in b.bounds_us.items() if v > 0]
        thr = {p: v for p, v in b.bounds_us.items() if p != "latency"}
        top = max(thr, key=thr.get)
        for r in rows:   # the largest throughput bound, and the latency term when it dominates
            r.bottleneck = r.pipe == top or r.pipe == b.bottleneck
        rows.sort(key=lambda r: -r.bound_us)
        co = [p for p, v in thr.items() if p != top and thr[top] > 0 and v >= CO_BOTTLENECK * thr[top]]
        roofs = _roofs(g, m)
        t = b.estimate_us * 1e-6
        at_est = {"tflops": b.flops / t / 1e12 if t else 0.0,
                  "dram_gbs": b.dram_bytes / t / 1e9 if t else 0.0}
        at_est["dram_fraction"] = _ratio(at_est["dram_gbs"], roofs["dram_gbs"])
        at_est["compute_fraction"] = _ratio(at_est["tflops"], roofs["compute_tflops"])
        meas = None
        if measured_us is not None and (measured_gpu is None or measured_gpu == g.name):
            meas = _measured(measured_us, b.ceiling_us, b.estimate_us)
        hints = hints_for(d, b, g, m, context)
        if meas is not None:
            hints.insert(0, _measured_hint(meas))
        ai = b.arithmetic_intensity if math.isfinite(b.arithmetic_intensity) else None
        per.append(GPUDiagnosis(
            gpu=g.name, full_name=g.full_name, bottleneck=b.bottleneck,
            bottleneck_label=B.PIPE_LABEL[b.bottleneck], co_bottlenecks=co,
            ceiling_us=b.ceiling_us, estimate_us=b.estimate_us, launch_us=b.launch_us, pipes=rows,
            occupancy=asdict(b.occupancy), waves=asdict(b.waves), flops=b.flops, dram_bytes=b.dram_bytes,
            arithmetic_intensity=ai, roofs=roofs, at_estimate=at_est, measured=meas, hints=hints,
            problems=list(b.problems)))
    return KernelReport(name=d.name, launch=_launch_dict(d), metrics=m, per_gpu=per, notes=list(d.notes))


def diagnose(demands, gpus, measured_ms: float | None = None, *, name: str = "module", source: str = "",
             measured_gpu: str | None = None, context: dict | None = None) -> Report:
    """Diagnose one scheduled module (its kernels, launch order) on one or several GPUs.

    ``measured_ms`` is the measured time of the whole module (all its kernels) on ``measured_gpu``
    (default: the first GPU). With one kernel it is also compared per kernel.
    """
    if isinstance(demands, KernelDemand):
        demands = [demands]
    demands = list(demands)
    gpus = _as_specs(gpus)
    if measured_gpu is None and measured_ms is not None:
        measured_gpu = gpus[0].name
    per_kernel_meas = measured_ms * 1000 if (measured_ms is not None and len(demands) == 1) else None
    kernels = [diagnose_kernel(d, gpus, per_kernel_meas, measured_gpu, context) for d in demands]
    totals = {}
    for i, g in enumerate(gpus):
        c = sum(k.per_gpu[i].ceiling_us for k in kernels)
        e = sum(k.per_gpu[i].estimate_us for k in kernels)
        t = {"ceiling_us": c, "estimate_us": e}
        if measured_ms is not None and g.name == measured_gpu:
            t.update(_measured(measured_ms * 1000, c, e))
        totals[g.name] = t
    notes = []
    if measured_ms is not None and len(gpus) > 1:
        notes.append(f"measured times are compared on {measured_gpu} only")
    mod = ModuleReport(name=name, source=source, kernels=kernels, totals=totals, measured_ms=measured_ms,
                       measured_gpu=measured_gpu)
    return Report(gpus=[gpu_summary(g) for g in gpus], modules=[mod], notes=notes)


def combine(reports, notes=None) -> Report:
    """Join reports over the same GPUs (e.g. one per tuning record) into one."""
    reports = list(reports)
    if not reports:
        raise ValueError("nothing to combine")
    names = [g["name"] for g in reports[0].gpus]
    for r in reports[1:]:
        if [g["name"] for g in r.gpus] != names:
            raise ValueError("reports are over different GPUs")
    all_notes = [n for r in reports for n in r.notes] + list(notes or [])
    out = Report(gpus=reports[0].gpus, modules=[m for r in reports for m in r.modules],
                 notes=list(dict.fromkeys(all_notes)))
    return out


# --------------------------------------------------------------------------------------------------
# Rendering: JSON
# --------------------------------------------------------------------------------------------------

def render_json(report: Report, indent: int = 2) -> str:
    return json.dumps(report.to_dict(), indent=indent, allow_nan=False)


# --------------------------------------------------------------------------------------------------
# Rendering: text (rich)
# --------------------------------------------------------------------------------------------------

def _bar(frac: float, width: int, fancy: bool) -> str:
    frac = max(0.0, min(1.0, frac if math.isfinite(frac) else 1.0))
    if not fancy:
        n = int(round(frac * width))
        return "#" * n + "." * (width - n)
    eighths = int(round(frac * width * 8))
    full, part = divmod(eighths, 8)
    s = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    return s + " " * (width - len(s))


def _short_launch(k: KernelReport) -> str:
    L = k.launch
    grid = "x".join(str(v) for v in L["grid"])
    block = "x".join(str(v) for v in L["block"])
    s = f"grid {grid} ({L['num_blocks']} blocks), block {block} ({L['threads_per_block']} threads)"
    if L["smem_bytes"]:
        s += f", smem {_bytes(L['smem_bytes'])}"
    s += f", ~{L['registers_per_thread']} regs/thread (est.)"
    if L["local_bytes_per_thread"]:
        s += f", {L['local_bytes_per_thread']} B local/thread"
    return s


_SEV_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan", "info": "green"}


def _plain_box():
    from rich.box import Box
    return Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)


def render_text(report: Report, *, width: int | None = None, color: bool | None = None, details: bool = True,
                file=None) -> str:
    """Render the report for a terminal and return the text.

    ``color`` None: colour and box-drawing characters when ``file`` (default stdout) is a TTY, plain
    ASCII otherwise. ``width`` defaults to the terminal's (at most 120) on a TTY, 100 otherwise."""
    from rich import box
    from rich.console import Console
    from rich.text import Text

    stream = file if file is not None else sys.stdout
    tty = bool(getattr(stream, "isatty", lambda: False)())
    fancy = tty if color is None else bool(color)
    width = width or (min(_terminal_width(), 120) if tty else 100)
    console = Console(width=width, record=True, file=io.StringIO(), force_terminal=fancy,
                      color_system="truecolor" if fancy else None, no_color=not fancy, highlight=False,
                      emoji=False, soft_wrap=False, force_jupyter=False, force_interactive=False)
    R = _Renderer(console, report, fancy, box.SIMPLE_HEAD if fancy else _plain_box())
    R.render(details)
    out = console.export_text(styles=fancy)
    if not fancy:
        out = "\n".join(line.rstrip() for line in out.splitlines()).replace("µs", "us") + "\n"
    return out


def _terminal_width() -> int:
    import shutil
    return shutil.get_terminal_size((100, 24)).columns


class _Renderer:
    def __init__(self, console, report, fancy, bx):
        self.c, self.r, self.fancy, self.bx = console, report, fancy, bx
        self.gnames = [g["name"] for g in report.gpus]
        self.multi = len(self.gnames) > 1

    # -- small helpers -------------------------------------------------------------------------------
    def us(self, x):
        s = _us(x)
        return s if self.fancy else s.replace("µs", "us")

    def sty(self, s):
        return s if self.fancy else None

    def text(self, s, style=None):
        from rich.text import Text
        return Text(s, style=self.sty(style) if style else None)

    def table(self, **kw):
        from rich.table import Table
        return Table(box=self.bx, show_edge=False, pad_edge=False, padding=(0, 1), **kw)

    def grid(self, *widths):
        from rich.table import Table
        t = Table.grid(padding=(0, 1))
        for w in widths:
            if w is None:
                t.add_column(ratio=1, overflow="fold")
            else:
                t.add_column(width=w, no_wrap=True)
        return t

    # -- document --------------------------------------------------------------------------------
    def render(self, details):
        c, r = self.c, self.r
        gl = [f"{g['name']} = {g['full_name']} ({g['sm_count']} SMs, {g['dram_gbs'] / 1000:.2f} TB/s, "
              f"{g['tensor_fp16_tflops']:.0f} TFLOP/s fp16 tensor)" for g in r.gpus]
        if len(gl) == 1:
            c.print(self.text(f"costpass diagnose: {gl[0]}", "bold"))
        else:
            c.print(self.text("costpass diagnose on " + ", ".join(self.gnames), "bold"))
            for line in gl:
                c.print(self.text(f"  {line}", "dim"))
        for n in r.notes:
            c.print(self.text(f"note: {n}", "dim"))
        if not details or len(r.modules) > 1 or any(len(m.kernels) > 1 for m in r.modules):
            self.summary(force=not details)
        if details:
            for mod in r.modules:
                self.module(mod)

    def summary(self, force=False):
        from rich.text import Text
        r = self.r
        t = self.table()
        t.add_column("module / kernel", overflow="fold", ratio=1, min_width=16)
        for g in self.gnames:
            t.add_column(f"{g} bound" if not self.multi else g, overflow="fold")
            t.add_column("ceiling", justify="right", no_wrap=True)
            t.add_column("estimate", justify="right", no_wrap=True)
        has_meas = any(m.measured_ms is not None for m in r.modules)
        if has_meas:
            t.add_column("measured", justify="right", no_wrap=True)
            t.add_column("of ceil.", justify="right", no_wrap=True)
        for mod in r.modules:
            if force or len(r.modules) > 1 or len(mod.kernels) > 1:
                row = [Text(mod.name, style=self.sty("bold"))]
                for gi, g in enumerate(self.gnames):
                    tt = mod.totals[g]
                    bn = mod.kernels[0].per_gpu[gi].bottleneck if len(mod.kernels) == 1 \
                        else f"{len(mod.kernels)} kernels"
                    row += [bn, self.us(tt["ceiling_us"]), self.us(tt["estimate_us"])]
                if has_meas:
                    tt = mod.totals.get(mod.measured_gpu or "", {})
                    ok = "measured_us" in tt
                    row += [self.us(tt["measured_us"]) if ok else "-",
                            f"{tt['fraction_of_ceiling']:.0%}" if ok else "-"]
                t.add_row(*row)
            if len(mod.kernels) > 1:
                for k in mod.kernels:
                    row = ["  " + k.name]
                    for gd in k.per_gpu:
                        row += [gd.bottleneck, self.us(gd.ceiling_us), self.us(gd.estimate_us)]
                    if has_meas:
                        row += ["", ""]
                    t.add_row(*row)
        self.c.print()
        self.c.print(t)
        if force and len(r.modules) == 1:
            for mod in r.modules:
                for n in mod.notes:
                    self.c.print(self.text(f"note ({mod.name}): {n}", "dim"))

    def module(self, mod):
        c = self.c
        c.print()
        head = f"== {mod.name}"
        if mod.source:
            head += f"  ({mod.source})"
        c.print(self.text(head, "bold"))
        if mod.notes:
            g = self.grid(2, 5, None)
            for n in mod.notes:
                g.add_row("", self.text("note", "dim"), self.text(n, "dim"))
            c.print(g)
        tt = mod.totals.get(mod.measured_gpu or "", {})
        if "measured_us" in tt and len(mod.kernels) > 1:
            c.print(f"   measured {self.us(tt['measured_us'])} on {mod.measured_gpu} for {len(mod.kernels)} "
                    f"kernels: {tt['fraction_of_ceiling']:.0%} of the summed ceiling "
                    f"{self.us(tt['ceiling_us'])} (headroom {tt['headroom_x']:.2f}x)")
        if self.multi:
            base = mod.totals[self.gnames[0]]["estimate_us"]
            parts = []
            for g in self.gnames:
                e = mod.totals[g]["estimate_us"]
                parts.append(f"{g} {self.us(e)}" + (f" ({base / e:.2f}x)" if g != self.gnames[0] else ""))
            c.print(f"   estimated time (speed-up vs {self.gnames[0]}): " + ", ".join(parts))
        for k in mod.kernels:
            self.kernel(k)

    def kernel(self, k):
        c = self.c
        c.print()
        c.print(self.text(f"kernel {k.name}", "bold"))
        m = k.metrics
        facts = []
        if m["tensor_flops"]:
            facts.append(f"{_count(m['tensor_flops'])}FLOP on {m['tensor_dtype']} tensor cores")
        vec = m["flops"] - m["tensor_flops"]
        if vec > 0:
            facts.append(f"{_count(vec)}FLOP on vector pipes")
        facts.append(f"{_count(m['warp_instructions'])} warp instructions")
        facts.append(f"footprint {_bytes(m['footprint_bytes'])}")
        if m["l2_bytes"]:
            facts.append(f"L2 traffic {_bytes(m['l2_bytes'])}")
        g = self.grid(1, 7, None)
        g.add_row("", "launch", _short_launch(k))
        g.add_row("", "demand", ", ".join(facts))
        c.print(g)
        if self.multi:
            self.side_by_side(k)
        else:
            self.single(k.per_gpu[0])
        if k.notes:
            g = self.grid(1, 7, None)
            for n in k.notes:
                g.add_row("", self.text("note", "dim"), self.text(n, "dim"))
            c.print(g)

    def print_headline(self, gd, ind=1):
        g = self.grid(ind, None)
        t = self.headline(gd)
        t.plain = t.plain  # keep styles
        g.add_row("", t)
        self.c.print(g)

    def headline(self, gd):
        t = self.text(f"{gd.gpu}: ", "bold")
        t.append(f"bound by {gd.bottleneck_label}", style=self.sty("bold red"))
        if gd.co_bottlenecks:
            t.append(f" (tied: {', '.join(B.PIPE_LABEL[p] for p in gd.co_bottlenecks)})")
        t.append(f"; ceiling {self.us(gd.ceiling_us)}, estimate {self.us(gd.estimate_us)}")
        if gd.measured:
            t.append(f", measured {self.us(gd.measured['measured_us'])} "
                     f"({gd.measured['fraction_of_ceiling']:.0%} of the ceiling)")
        return t

    def single(self, gd):
        c = self.c
        self.print_headline(gd)
        t = self.table()
        t.add_column("  resource", no_wrap=True)
        t.add_column("bound", justify="right", no_wrap=True)
        t.add_column("share", justify="right", no_wrap=True)
        barw = max(10, min(40, self.c.width - 50))
        t.add_column("pressure (bound / bottleneck)", no_wrap=True, width=barw)
        for r in gd.pipes:
            lat = r.pipe == "latency"
            style = "bold" if r.bottleneck else None
            util = f"{r.utilization:.0%}" if not lat else "-"
            bar = _bar(r.utilization, barw, self.fancy)
            t.add_row(self.text("  " + r.label, style), self.us(r.bound_us), util,
                      self.text(bar, "red" if r.bottleneck else ("magenta" if lat else "blue")))
        c.print(t)
        self.occ_waves(gd, "  ")
        self.hints(gd.hints, "  ")

    def occ_waves(self, gd, ind):
        o, w = gd.occupancy, gd.waves
        g = self.grid(len(ind) - 1, 10, None)
        g.add_row("", "occupancy",
                  f"{o['blocks_per_sm']} block{'s' if o['blocks_per_sm'] != 1 else ''}/SM, {o['warps_per_sm']} "
                  f"warps ({o['occupancy']:.0%}), limited by {o['limiter'].replace('_', ' ')}")
        tail = f"; last wave: {w['tail_blocks']} blocks on {w['tail_sms']} SMs" \
            if w["tail_blocks"] and w["waves"] > 1 else ""
        g.add_row("", "waves", f"{w['waves']:.2f} ({w['num_blocks']} blocks / {w['slots']} slots){tail}; "
                               f"slot use {w['efficiency']:.0%}, SM balance {w['sm_balance']:.0%}")
        ae = gd.at_estimate
        parts = []
        if gd.flops > 0:
            parts.append(f"{ae['tflops']:.3g} TFLOP/s = {ae['compute_fraction']:.0%} of the "
                         f"{gd.roofs['compute_roof']} roof")
        parts.append(f"DRAM {ae['dram_gbs']:.0f} GB/s = {ae['dram_fraction']:.0%} of peak")
        if gd.arithmetic_intensity:
            ai = gd.arithmetic_intensity
            parts.append(f"{ai:.0f} FLOP/byte" if ai >= 100 else f"{ai:.3g} FLOP/byte")
        g.add_row("", "achieved", ", ".join(parts) + " (at the estimate)")
        self.c.print(g)

    def hints(self, hints, ind):
        if not hints:
            return
        g = self.grid(len(ind) - 1 if len(ind) > 1 else 0, 8, None)
        for h in hints:
            msg = self.text(h.message)
            if h.decision:
                msg.append(f"  [{h.decision}]", style=self.sty("dim"))
            g.add_row("", self.text(h.severity, _SEV_STYLE.get(h.severity)), msg)
        self.c.print(g)

    def side_by_side(self, k):
        from rich.text import Text
        per = k.per_gpu
        barw = max(4, min(14, (self.c.width - 34) // len(per) - 11))
        t = self.table()
        t.add_column("  ", no_wrap=True)
        for gd in per:
            t.add_column(gd.gpu, justify="left", no_wrap=True)
        t.add_row("  bottleneck", *[self.text(SHORT_LABEL[gd.bottleneck], "bold") for gd in per])
        t.add_row("  ceiling", *[self.us(gd.ceiling_us) for gd in per])
        t.add_row("  estimate", *[self.us(gd.estimate_us) for gd in per])
        if any(gd.measured for gd in per):
            t.add_row("  measured", *[self.us(gd.measured["measured_us"]) if gd.measured else "-" for gd in per])
        t.add_row("  occupancy", *[f"{gd.occupancy['blocks_per_sm']} blk/SM, {gd.occupancy['occupancy']:.0%}"
                                   for gd in per])
        t.add_row("  waves", *[f"{gd.waves['waves']:.2f}" for gd in per])
        t.add_section()
        pipes = []
        for gd in per:
            pipes += [r.pipe for r in gd.pipes if r.pipe not in pipes]
        first = {r.pipe: r.bound_us for r in per[0].pipes}
        order = {p: i for i, p in enumerate(B.PIPES)}
        pipes.sort(key=lambda p: (-first.get(p, 0.0), order.get(p, 99)))
        for p in pipes:
            cells = []
            for gd in per:
                r = next((r for r in gd.pipes if r.pipe == p), None)
                if r is None:
                    cells.append("-")
                    continue
                cell = Text(f"{self.us(r.bound_us):>9} ")
                cell.append(_bar(r.utilization, barw, self.fancy),
                            style=self.sty("red" if r.bottleneck else ("magenta" if p == "latency" else "blue")))
                cells.append(cell)
            t.add_row("  " + SHORT_LABEL[p], *cells)
        self.c.print(t)
        common = [h for h in per[0].hints if all(any(h2.message == h.message for h2 in gd.hints) for gd in per)]
        for gd in per:
            self.print_headline(gd)
            self.hints([h for h in gd.hints if h not in common and
                        not any(h.message == c.message for c in common)], "    ")
        if common:
            self.c.print(self.text(f"  on all of {', '.join(self.gnames)}:", "bold"))
            self.hints(common, "    ")


# --------------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------------

def plot(report: Report, path, max_panels: int = 6) -> str:
    """One PNG: per-pipe pressure bars (one group per kernel x GPU, at most ``max_panels``) and a
    roofline (FLOP/s vs FLOP per DRAM byte, with each GPU's DRAM and compute roofs) with every kernel
    at its estimate (filled), its ceiling (hollow) and its measured time (star) when there is one."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    entries = []   # (label, KernelReport, GPUDiagnosis)
    multi_mod = len(report.modules) > 1
    for mod in report.modules:
        for k in mod.kernels:
            for gd in k.per_gpu:
                entries.append(((f"{mod.name}/" if multi_mod else "") + k.name, k, gd))
    shown = entries[:max_panels]
    gnames = [g["name"] for g in report.gpus]
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    gcolor = {g: palette[i % len(palette)] for i, g in enumerate(gnames)}
    multi_gpu = len(gnames) > 1

    def label(lab, gd):
        return f"{lab} @ {gd.gpu}" if multi_gpu else lab

    fig = plt.figure(figsize=(13.5, 5.8), dpi=110)
    gs = fig.add_gridspec(1, 2, width_ratios=[1.0, 1.0], wspace=0.38)

    # -- pipe pressure ----------------------------------------------------------------------------
    ax = fig.add_subplot(gs[0, 0])
    present = {r.pipe for _, _, gd in shown for r in gd.pipes}
    pipes = [p for p in B.PIPES if p in present]
    n = max(1, len(shown))
    height = 0.8 / n
    y = np.arange(len(pipes))
    xmax = 1.0
    for i, (lab, k, gd) in enumerate(shown):
        rows = {r.pipe: r for r in gd.pipes}
        vals = np.array([min(rows[p].utilization, 2.0) if p in rows else 0.0 for p in pipes])
        xmax = max(xmax, float(vals.max(initial=0.0)))
        pos = y + (i - (n - 1) / 2) * height
        if n == 1:
            colors = [("#e08080" if p == "latency" else "#d62728") if (p in rows and rows[p].bottleneck) else
                      ("#9a9a9a" if p == "latency" else "#4c72b0") for p in pipes]
            ax.barh(pos, vals, height=height * 0.9, color=colors,
                    hatch=["//" if p == "latency" else "" for p in pipes])
        else:
            c = gcolor[gd.gpu] if multi_gpu and len(report.kernels) == 1 else palette[i % len(palette)]
            ax.barh(pos, vals, height=height * 0.9, color=c, label=label(lab, gd))
        if n <= 3:
            for p, v, yy in zip(pipes, vals, pos):
                if p in rows:
                    ax.text(v + 0.015, yy, _us(rows[p].bound_us), va="center", fontsize=7.5, color="0.25")
    ax.set_yticks(y, [B.PIPE_LABEL[p] for p in pipes], fontsize=9)
    ax.invert_yaxis()
    ax.axvline(1.0, color="0.3", lw=0.8, ls="--")
    ax.set_xlim(0, xmax * 1.22)
    ax.set_xlabel("bound / throughput ceiling  (1.0 = the bottleneck pipe)")
    title = "pipe pressure"
    if n == 1:
        title += f": {label(shown[0][0], shown[0][2])}"
    if len(entries) > len(shown):
        title += f" (first {len(shown)} of {len(entries)})"
    ax.set_title(title, fontsize=10)
    if n > 1:
        ax.legend(fontsize=7.5, loc="best", framealpha=0.9)
    ax.grid(axis="x", alpha=0.3)

    # -- roofline ---------------------------------------------------------------------------------
    rx = fig.add_subplot(gs[0, 1])
    pts = [(lab, gd) for lab, _, gd in entries if gd.arithmetic_intensity and gd.flops > 0]
    ais = [gd.arithmetic_intensity for _, gd in pts]
    ridges = []
    peaks = []
    for g in report.gpus:
        gd0 = next((gd for _, _, gd in entries if gd.gpu == g["name"]), None)
        if gd0 is not None:
            ridges.append(gd0.roofs["compute_tflops"] * 1e3 / gd0.roofs["dram_gbs"])
            peaks.append(max(gd0.roofs["compute_tflops"], gd0.roofs["fp32_tflops"]))
    lo = min([0.5] + [a / 20 for a in ais] + [r / 100 for r in ridges])
    hi = max([100.0] + [a * 20 for a in ais] + [r * 10 for r in ridges])
    xs = np.logspace(math.log10(lo), math.log10(hi), 300)
    roof_labels = {}   # (name, value) -> [gpu, ...]: one label for GPUs with the same roof
    for g in report.gpus:
        gd0 = next((gd for _, _, gd in entries if gd.gpu == g["name"]), None)
        if gd0 is None:
            continue
        c = gcolor[g["name"]]
        bw = gd0.roofs["dram_gbs"] * 1e9
        roofs = [("FP32", gd0.roofs["fp32_tflops"], ":")]
        if gd0.roofs["compute_roof"] != "FP32 FMA":
            roofs.append((gd0.roofs["compute_roof"].replace(" core", ""), gd0.roofs["compute_tflops"], "-"))
        for rname, tf, ls in roofs:
            ys = np.minimum(xs * bw, tf * 1e12) / 1e12
            rx.plot(xs, ys, color=c, lw=1.5, ls=ls)
            roof_labels.setdefault((rname, round(tf, 1)), []).append((g["name"], c))
        k_ = len([t for t in rx.texts if t.get_text().endswith("TB/s")])
        rx.text(0.02, 0.97 - 0.045 * k_, f"{g['name']} DRAM roof {bw / 1e12:.2f} TB/s", transform=rx.transAxes,
                fontsize=7.5, color=c, ha="left", va="top")
    for (rname, tf), gl in roof_labels.items():
        rx.text(hi / 1.15, tf * 1.07, f"{', '.join(n for n, _ in gl)} {rname} {tf:,.0f} TFLOP/s", ha="right",
                va="bottom", fontsize=7.5, color=gl[0][1] if len(gl) == 1 else "0.2")
    markers = "osD^v<>ph"
    ys_all = []
    for i, (lab, gd) in enumerate(pts):
        c = gcolor[gd.gpu] if multi_gpu else palette[i % len(palette)]
        mk = markers[(i // len(gnames)) % len(markers)] if multi_gpu else markers[i % len(markers)]
        x = gd.arithmetic_intensity
        y_est = gd.flops / (gd.estimate_us * 1e-6) / 1e12
        y_ceil = gd.flops / (gd.ceiling_us * 1e-6) / 1e12
        ys_all += [y_est, y_ceil]
        rx.plot([x, x], [y_est, y_ceil], color=c, lw=0.9, alpha=0.8)
        rx.scatter([x], [y_ceil], facecolors="white", edgecolors=c, marker=mk, s=50, zorder=3, linewidths=1.4)
        rx.scatter([x], [y_est], color=c, marker=mk, s=50, zorder=4,
                   label=f"{label(lab, gd)}: {y_est:,.3g} TFLOP/s" if i < 10 else None)
        if gd.measured:
            y_m = gd.flops / (gd.measured["measured_us"] * 1e-6) / 1e12
            ys_all.append(y_m)
            rx.scatter([x], [y_m], color=c, marker="*", s=140, zorder=5, edgecolors="k", linewidths=0.6)
    rx.set_xscale("log")
    rx.set_yscale("log")
    rx.set_xlim(lo, hi)
    ylo = min([lo * min((g["dram_gbs"] for g in report.gpus), default=1000) / 1e3 * 1.5] +
              [v / 4 for v in ys_all])
    rx.set_ylim(ylo, max(peaks + [1.0]) * 3)
    rx.set_xlabel("arithmetic intensity (FLOP per DRAM byte)")
    rx.set_ylabel("TFLOP/s")
    rx.set_title("roofline: filled = estimate, hollow = ceiling, * = measured", fontsize=10)
    rx.grid(which="major", alpha=0.3)
    rx.grid(which="minor", alpha=0.08)
    if pts:
        rx.legend(fontsize=7.5, loc="lower right", framealpha=0.9)
    else:
        rx.text(0.5, 0.5, "no FLOP counted: nothing to place on the roofline", transform=rx.transAxes,
                ha="center", fontsize=9, color="0.4")
    names = ", ".join(m.name for m in report.modules[:3]) + (" ..." if len(report.modules) > 3 else "")
    fig.suptitle(f"costpass: {names}  ({', '.join(gnames)})", fontsize=11)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return str(path)
