"""Analytical pipeline model: KernelDemand x GPUSpec -> KernelBounds.

Occupancy from the launch shape and the GPU's limits; waves of blocks over the SMs and the tail of the
last one; a time bound per pipeline computed on the *busiest* SM (the one that receives
ceil(blocks / SMs) blocks, which is where waves and tails show up), per memory level on the whole chip,
a latency term for kernels with too little work in flight, and launch overhead.

The ceiling is the largest throughput bound: the best time the kernel's own demand allows on that GPU.
The analytical estimate adds what a real kernel cannot overlap. Its two constants (OVERLAP, the share of
non-bottleneck work that does not overlap, and the memory latency) are set a priori here, not fitted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, asdict

from .records import KernelDemand
from .spec import GPUSpec

# Share of the non-bottleneck pipes' time that is not hidden behind the bottleneck (a priori choice).
OVERLAP = 0.15
# Global-memory latency in SM cycles (DRAM ~ 600-800 cycles on Hopper in published microbenchmarks;
# an a priori round figure) and barrier latency per block.
MEM_LATENCY_CYCLES = 700.0
BARRIER_CYCLES = 24.0
# A warp issues this many independent global loads before it stalls on the first (a priori: nvcc
# unrolls simple loops by 4 and tiled copies issue 2+ loads per iteration).
LOAD_ILP = 8.0

# Pipes reported, in display order. Each is a bound in microseconds.
PIPES = ("issue", "fma", "fp16", "fp64", "alu", "xu", "lsu", "tensor", "shared", "l2", "dram",
         "latency")

PIPE_LABEL = {
    "issue": "warp issue", "fma": "FP32/IMAD (FMA)", "fp16": "FP16/BF16", "fp64": "FP64",
    "alu": "integer ALU", "xu": "special function (XU)", "lsu": "load/store issue",
    "tensor": "tensor core", "shared": "L1 / shared memory", "l2": "L2 bandwidth",
    "dram": "DRAM bandwidth", "latency": "latency (too little in flight)",
}


@dataclass
class Occupancy:
    blocks_per_sm: int
    warps_per_sm: int
    occupancy: float          # active warps / max warps per SM
    limiter: str              # which limit sets blocks_per_sm
    limits: dict = field(default_factory=dict)  # blocks per SM allowed by each resource


@dataclass
class Waves:
    num_blocks: int
    slots: int                # blocks resident on the whole GPU at once
    waves: float              # num_blocks / slots
    full_waves: int
    tail_blocks: int          # blocks in the last, partial wave (0 when waves is integral)
    tail_sms: int             # SMs busy in the last wave
    efficiency: float         # num_blocks / (ceil(waves) * slots)
    blocks_on_busiest_sm: int # ceil(num_blocks / SMs)
    sm_balance: float         # mean / max blocks per SM (1.0 = perfectly balanced)


@dataclass
class KernelBounds:
    kernel: str
    gpu: str
    occupancy: Occupancy
    waves: Waves
    bounds_us: dict           # pipe -> time bound in microseconds
    bottleneck: str           # pipe with the largest throughput bound
    ceiling_us: float         # best time the demand allows: largest hard bound (pipes, compulsory DRAM) + launch
    estimate_us: float        # analytical latency estimate
    utilization: dict         # pipe -> bound / bottleneck bound (pressure relative to the bottleneck)
    launch_us: float
    flops: float              # useful FLOP (tensor + non-tensor)
    dram_bytes: float
    arithmetic_intensity: float   # FLOP per DRAM byte
    valid: bool = True
    problems: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def occupancy(d: KernelDemand, g: GPUSpec) -> Occupancy:
    L = g.limits
    threads = d.launch.threads_per_block
    warps = d.launch.warps_per_block
    regs = max(1, d.launch.registers_per_thread)
    unit = L["register_alloc_unit"]
    regs_per_warp = math.ceil(regs * g.warp_size / unit) * unit
    smem = d.launch.smem_bytes
    limits = {
        "threads": L["max_threads_per_sm"] // max(1, warps * g.warp_size),
        "warps": L["max_warps_per_sm"] // max(1, warps),
        "blocks": L["max_blocks_per_sm"],
        "registers": L["registers_per_sm"] // max(1, regs_per_warp * warps),
    }
    if smem > 0:
        per_block = math.ceil((smem + L["shared_memory_reserved_per_block"]) / L["shared_alloc_unit"]) \
            * L["shared_alloc_unit"]
        limits["shared_memory"] = L["shared_memory_per_sm"] // per_block
    limiter = min(limits, key=lambda k: limits[k])
    blocks = max(0, limits[limiter])
    if threads > L["max_threads_per_block"] or smem > L["max_shared_memory_per_block"]:
        blocks = 0
        limiter = "threads" if threads > L["max_threads_per_block"] else "shared_memory"
    active = blocks * warps
    return Occupancy(blocks_per_sm=blocks, warps_per_sm=active,
                     occupancy=active / L["max_warps_per_sm"], limiter=limiter, limits=limits)


def waves(d: KernelDemand, g: GPUSpec, occ: Occupancy) -> Waves:
    n = max(1, d.launch.num_blocks)
    slots = max(1, occ.blocks_per_sm * g.sm_count)
    w = n / slots
    full = n // slots
    tail = n - full * slots
    # the block scheduler spreads blocks breadth-first: the tail occupies min(tail, SMs) SMs
    tail_sms = min(g.sm_count, tail)
    busiest = math.ceil(n / g.sm_count)
    return Waves(num_blocks=n, slots=slots, waves=w, full_waves=full, tail_blocks=tail,
                 tail_sms=tail_sms, efficiency=n / (math.ceil(w) * slots),
                 blocks_on_busiest_sm=busiest, sm_balance=(n / g.sm_count) / busiest)


def _dram_bytes(d: KernelDemand, g: GPUSpec) -> float:
    """Unique DRAM bytes, plus re-reads when the footprint does not fit in L2."""
    compulsory = d.memory.get("dram_bytes", 0.0)
    l2 = d.memory.get("l2_bytes", 0.0)
    if compulsory <= 0:
        return 0.0
    excess = max(0.0, l2 - compulsory)
    spill = max(0.0, min(1.0, (compulsory - g.memory["l2_bytes"]) / compulsory))
    return compulsory + excess * spill


def pipe_bounds(d: KernelDemand, g: GPUSpec, occ: Occupancy, wv: Waves) -> dict:
    """Time bound per pipe in microseconds."""
    P, I, M = g.pipes, d.inst, d.memory
    nb = max(1, d.launch.num_blocks)
    share = wv.blocks_on_busiest_sm / nb          # fraction of all work done by the busiest SM
    clk = g.clock_hz
    ws = g.warp_size

    def sm_time(instr, lanes_per_clk, lanes_per_instr=ws):
        # warp instructions on the busiest SM / (warp instructions per clock per SM)
        if instr <= 0:
            return 0.0
        rate = lanes_per_clk / lanes_per_instr
        return instr * share / rate / clk * 1e6

    fp32 = I.get("fp32_fma", 0) + I.get("fp32_add", 0) + I.get("fp32_mul", 0)
    imad = I.get("imad", 0)
    b = {}
    b["fma"] = max(sm_time(fp32 + imad, P["fp32_fma"]), sm_time(imad, P["imad"]))
    b["fp16"] = sm_time(I.get("fp16_fma", 0) + I.get("fp16_add", 0) + I.get("fp16_mul", 0)
                        + I.get("bf16_fma", 0), P["fp16_fma"], 2 * ws)
    b["fp64"] = sm_time(I.get("fp64", 0), P["fp64_fma"])
    b["alu"] = sm_time(I.get("int_alu", 0) + I.get("select", 0), P["int32_alu"])
    b["xu"] = sm_time(I.get("sfu", 0) + I.get("conversion", 0), P["sfu"])
    lsu = sum(I.get(k, 0) for k in ("ld_global", "st_global", "ld_shared", "st_shared", "ld_local",
                                     "st_local", "atomic", "ldmatrix", "shuffle"))
    b["lsu"] = sm_time(lsu, P["lsu"])
    total_inst = sum(I.values())
    b["issue"] = sm_time(total_inst, P["issue"])
    tensor = 0.0
    # tensor rates are the vendor's dense peak at the clock it is quoted for (spec: rated_clock_mhz)
    tclk = g.rated_clock_mhz * 1e6
    for dt, flops in d.tensor_flops.items():
        rate = g.tensor.get(dt, 0)
        if rate <= 0:
            rate = g.pipes["fp32_fma"] * 2     # no tensor path: emulated on the FMA pipe
        tensor += flops * share / rate / tclk * 1e6
    b["tensor"] = tensor
    # the L1/shared data path moves 128 bytes per clock per SM: shared-memory wavefronts, and global
    # accesses at 4 sectors per clock, L1 hits included (uncoalesced loads cost here even when L1 hits)
    wavefronts = M.get("shared_load_wavefronts", 0) + M.get("shared_store_wavefronts", 0)
    l1_sectors = M.get("global_load_sectors", 0) + M.get("global_store_sectors", 0)
    b["shared"] = (wavefronts + l1_sectors / 4) * share / (P["shared_bytes"] / 128) / clk * 1e6
    l2_bytes = M.get("l2_bytes", 0.0) + M.get("local_bytes", 0.0)
    l2_bw = g.memory["l2_bandwidth_gbs"] * 1e9
    # whole-chip L2 bandwidth, but the busiest SM can only pull its per-SM share of it
    b["l2"] = max(l2_bytes / l2_bw, l2_bytes * share / (l2_bw / g.sm_count)) * 1e6
    dram = _dram_bytes(d, g)
    b["dram"] = dram / (g.memory["dram_bandwidth_gbs"] * 1e9) * 1e6
    b["latency"] = latency_bound(d, g, occ, wv)
    return {p: float(b.get(p, 0.0)) for p in PIPES}


def latency_bound(d: KernelDemand, g: GPUSpec, occ: Occupancy, wv: Waves) -> float:
    """Time a warp spends waiting on dependent global loads and barriers when nothing hides it:
    rounds of resident blocks on the busiest SM x per-warp chain length x latency."""
    total_warps = max(1, d.launch.num_blocks * d.launch.warps_per_block)
    loads_per_warp = d.inst.get("ld_global", 0) / total_warps
    barriers_per_warp = d.inst.get("barrier", 0) / total_warps
    # each barrier-separated phase waits once for its loads; without barriers, loads overlap LOAD_ILP deep
    # a shared-memory tiled loop has two barriers per step and one of the two regions waits on loads
    phases = max(barriers_per_warp / 2, loads_per_warp / LOAD_ILP, 1.0 if loads_per_warp > 0 else 0.0)
    chain = phases * MEM_LATENCY_CYCLES + barriers_per_warp * BARRIER_CYCLES
    rounds = math.ceil(wv.blocks_on_busiest_sm / max(1, occ.blocks_per_sm))
    return rounds * chain / g.clock_hz * 1e6


def throughput_bottleneck(throughput: dict) -> str:
    """The pipe with the largest bound; a tie with the issue rate names the pipe (an FFMA-only loop is FMA-bound)."""
    bottleneck = max(throughput, key=lambda p: throughput[p])
    named = max((p for p in throughput if p != "issue"), key=lambda p: throughput[p])
    if bottleneck == "issue" and throughput[named] >= 0.95 * throughput["issue"]:
        bottleneck = named
    return bottleneck


def overlapped_us(throughput: dict, bottleneck: str) -> float:
    """The bottleneck's bound plus OVERLAP of the other pipes' (issue left out: it counts them all)."""
    rest = sum(throughput.values()) - throughput[bottleneck] - throughput["issue"]
    if bottleneck == "issue":
        rest = sum(v for p, v in throughput.items() if p != "issue") - max(
            v for p, v in throughput.items() if p != "issue")
    return throughput[bottleneck] + OVERLAP * max(0.0, rest)


def analyze(d: KernelDemand, g: GPUSpec) -> KernelBounds:
    occ = occupancy(d, g)
    problems = []
    if occ.blocks_per_sm == 0:
        problems.append(f"launch does not fit on {g.name}: limited by {occ.limiter}")
        occ = Occupancy(1, d.launch.warps_per_block, d.launch.warps_per_block / g.limits["max_warps_per_sm"],
                        occ.limiter, occ.limits)
    wv = waves(d, g, occ)
    b = pipe_bounds(d, g, occ, wv)
    launch = float(g.limits["launch_overhead_us"])
    throughput = {p: v for p, v in b.items() if p != "latency"}
    bottleneck = throughput_bottleneck(throughput)
    # The ceiling is a lower bound on time: hard per-SM pipe limits and the *compulsory* DRAM traffic
    # only. The L2 term (sector traffic before L1 hits, at an estimated bandwidth) and the DRAM re-read
    # term enter the estimate and the diagnosis, not the ceiling.
    hard = {p: v for p, v in throughput.items() if p not in ("l2", "dram")}
    hard["dram"] = d.memory.get("dram_bytes", 0.0) / (g.memory["dram_bandwidth_gbs"] * 1e9) * 1e6
    ceiling = max(hard.values()) + launch
    estimate = launch + max(overlapped_us(throughput, bottleneck), b["latency"])
    if b["latency"] > throughput[bottleneck]:
        bottleneck_est = "latency"
    else:
        bottleneck_est = bottleneck
    top = throughput[bottleneck]
    util = {p: (v / top if top > 0 else 0.0) for p, v in b.items()}   # pressure relative to the bottleneck
    flops = d.flops + sum(d.tensor_flops.values())
    dram = _dram_bytes(d, g)
    return KernelBounds(
        kernel=d.name, gpu=g.name, occupancy=occ, waves=wv, bounds_us=b,
        bottleneck=bottleneck_est, ceiling_us=ceiling, estimate_us=estimate, utilization=util,
        launch_us=launch, flops=flops, dram_bytes=dram,
        arithmetic_intensity=flops / dram if dram > 0 else float("inf"),
        valid=not problems, problems=problems)


def analyze_all(demands, g: GPUSpec) -> list:
    return [analyze(d, g) for d in demands]


def total_estimate_us(bounds) -> float:
    return sum(b.estimate_us for b in bounds)
