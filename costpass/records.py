"""Plain dataclasses passed between the stages: demand -> bounds -> features / diagnosis.

Nothing here imports TVM, so the analytical model, the learned model and the diagnosis can be used
(and tested) on saved records without a compiler.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, asdict

# Warp-level instruction classes counted by the demand pass (keys of KernelDemand.inst).
INST_KEYS = (
    "fp32_fma", "fp32_add", "fp32_mul",      # FP32 pipe (FFMA / FADD / FMUL)
    "fp16_fma", "fp16_add", "fp16_mul",      # half-precision non-tensor (HFMA2 ...)
    "bf16_fma",                              # bf16 non-tensor
    "fp64",                                  # DFMA/DADD/DMUL
    "int_alu",                               # IADD3 / LOP3 / SHF / ISETP / IMNMX (index arithmetic too)
    "imad",                                  # IMAD / integer multiply (index arithmetic too)
    "sfu",                                   # MUFU: exp2, log2, rsqrt, rcp, sin, cos (+ div, sqrt, tanh)
    "conversion",                            # F2F / F2I / I2F
    "select",                                # SEL / FSEL (counted on the ALU pipe)
    "ld_global", "st_global",                # LDG / STG (warp instructions, any width)
    "ld_shared", "st_shared",                # LDS / STS
    "ld_local", "st_local",                  # LDL / STL (private arrays that stay in memory)
    "atomic",                                # ATOM / RED
    "barrier",                               # BAR.SYNC
    "shuffle",                               # SHFL (warp reductions)
    "mma",                                   # tensor-core HMMA/IMMA warp instructions (all shapes)
    "ldmatrix",                              # LDSM / wmma fragment loads from shared
    "branch",                                # loop back-edges and branches (BRA)
)

# Memory traffic keys (KernelDemand.memory), all totals over the whole grid.
MEMORY_KEYS = (
    "global_load_bytes",       # bytes requested by global loads (lanes x width)
    "global_store_bytes",      # bytes requested by global stores
    "global_load_sectors",     # 32-byte sectors touched by global loads after coalescing
    "global_store_sectors",    # 32-byte sectors touched by global stores after coalescing
    "shared_load_wavefronts",  # shared-memory wavefronts of loads (bank conflicts included)
    "shared_store_wavefronts", # shared-memory wavefronts of stores
    "shared_ideal_wavefronts", # wavefronts the same accesses would need with no bank conflict
    "local_bytes",             # local-memory (spill / private array) traffic
    "dram_bytes",              # estimate of unique DRAM bytes (read + write)
    "dram_read_bytes",         # its read part (unique bytes of buffers the kernel loads)
    "dram_write_bytes",        # its write part
    "l2_bytes",                # estimate of L1-missing traffic into L2 (sectors x 32)
)


@dataclass
class LaunchShape:
    grid: tuple = (1, 1, 1)
    block: tuple = (1, 1, 1)
    static_smem_bytes: int = 0
    dynamic_smem_bytes: int = 0
    registers_per_thread: int = 32   # estimate (no register allocation has happened yet)
    local_bytes_per_thread: int = 0  # private arrays kept in local memory

    @property
    def num_blocks(self) -> int:
        return int(math.prod(self.grid))

    @property
    def threads_per_block(self) -> int:
        return int(math.prod(self.block))

    @property
    def warps_per_block(self) -> int:
        return -(-self.threads_per_block // 32)

    @property
    def smem_bytes(self) -> int:
        return int(self.static_smem_bytes + self.dynamic_smem_bytes)


@dataclass
class KernelDemand:
    """What one GPU kernel asks of the hardware, totals over the whole grid.

    ``inst`` counts warp-level instructions per class (INST_KEYS); ``mma`` maps an MMA shape/dtype
    key such as ``"m16n8k16.f16.f32"`` to warp-level instruction counts; ``tensor_flops`` maps a
    tensor dtype (fp16, bf16, tf32, int8, fp8) to FLOP; ``memory`` holds MEMORY_KEYS;
    ``flops`` counts useful floating-point operations outside tensor cores (an FMA is 2).
    """
    name: str
    launch: LaunchShape = field(default_factory=LaunchShape)
    inst: dict = field(default_factory=dict)
    mma: dict = field(default_factory=dict)
    tensor_flops: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    flops: float = 0.0
    # longest chain of dependent global loads + loop iterations per thread (for the latency term)
    serial_iterations: float = 0.0
    # per global buffer: {"bytes": size, "load_sectors": n, "store_sectors": n} (for the L2/DRAM model)
    global_buffers: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["launch"]["grid"] = list(self.launch.grid)
        d["launch"]["block"] = list(self.launch.block)
        return d

    @staticmethod
    def from_dict(d: dict) -> "KernelDemand":
        d = dict(d)
        launch = dict(d.pop("launch"))
        launch["grid"] = tuple(launch["grid"])
        launch["block"] = tuple(launch["block"])
        return KernelDemand(launch=LaunchShape(**launch), **d)
