"""The pipeline-demand pass: a scheduled TensorIR module -> one KernelDemand per GPU kernel.

The module is lowered with TVM's own S-TIR pipeline (exactly what ``tvm.compile`` runs) as far as the
split into host and device functions. Each device function is then walked once:

* every statement is weighted by how often one thread executes it (the product of the enclosing loop
  extents) and by the fraction of warps that have at least one active lane under the enclosing
  conditions; counts are warp-level instructions, totals over the grid;
* arithmetic is classified per pipeline (FP32 FMA/add/mul with a*b+c fused, FP16/BF16 packed two lanes
  per instruction, integer ALU vs IMAD, special functions, conversions);
* integer index arithmetic is charged at the depth of the innermost non-unrolled loop it depends on,
  which is what loop-invariant code motion and immediate address offsets leave for the GPU to execute;
* every memory access is evaluated for the 32 lanes of sampled warps (numpy over the index expression)
  to count 32-byte sectors after coalescing (global) and wavefronts with bank conflicts (shared);
* tensor-core intrinsics (wmma / mma / ldmatrix) are counted by shape and dtype.

Nothing here is fitted to measurements: constants that are estimates (e.g. the instruction cost of a
libdevice ``expf``) are named in ``SPECIAL_FUNCTION_COST`` and checked against Nsight Compute in
``benchmarks/``.
"""
from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .records import INST_KEYS, MEMORY_KEYS, KernelDemand, LaunchShape


class DemandError(ValueError):
    """The module cannot be analysed (no GPU kernel, symbolic extent, failed lowering...)."""


# Approximate per-lane instruction cost of special functions after nvcc (no fast-math):
# (sfu, fp32 fma-pipe ops, int alu ops). Estimates from libdevice's implementations; checked in benchmarks.
SPECIAL_FUNCTION_COST = {
    "exp": (1, 6, 1), "exp2": (1, 2, 0), "exp10": (1, 6, 1), "log": (1, 8, 2), "log2": (1, 6, 2),
    "log10": (1, 8, 2), "log1p": (1, 12, 2), "sqrt": (1, 4, 1), "rsqrt": (1, 1, 0), "tanh": (1, 4, 1),
    "sigmoid": (2, 8, 1), "erf": (0, 18, 2), "pow": (2, 20, 4), "sin": (1, 8, 2), "cos": (1, 8, 2),
    "tan": (2, 14, 2), "atan": (1, 18, 2), "fabs": (0, 0, 1), "floor": (0, 1, 0), "ceil": (0, 1, 0),
    "round": (0, 1, 0), "trunc": (0, 1, 0), "nearbyint": (0, 1, 0), "fmod": (2, 10, 2),
    "isnan": (0, 0, 1), "isinf": (0, 0, 1), "isfinite": (0, 0, 1), "div": (1, 8, 1),
}

# A global access forms its 64-bit address with one IMAD.WIDE (FMA-heavy pipe) from a 32-bit index.
ADDRESS_IMAD_PER_GLOBAL_ACCESS = 1.0
# nvcc unrolls other loops with a constant trip count by 4 by default: loop overhead and strength-
# reduced address increments are paid once per 4 iterations.
NVCC_PARTIAL_UNROLL = 4
# nvcc fully unrolls an innermost loop with a small constant trip count (its default heuristics);
# such loops are treated like explicitly unrolled ones (indices fold, local arrays stay in registers).
NVCC_AUTO_UNROLL = 16
_SAMPLES = 8  # sampled (block, loop-iteration, warp) contexts per kernel for coalescing and predicates
# Global loads are cached in L1 (sm_70 and later): the sectors a warp touches again within this many
# consecutive iterations of its innermost loop hit there and do not reach L2 (e.g. a GEMV whose lanes read
# 16-byte chunks 4 bytes per iteration: 16 sectors per load instruction at L1, 4 at L2; ncu agrees).
L1_WINDOW = 16
_FLOAT_PIPE = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}
_TENSOR_DTYPE = {"float16": "fp16", "bfloat16": "bf16", "float32": "tf32", "int8": "int8",
                 "uint8": "int8", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "float64": "fp64"}


def _dtype_bits(dtype) -> int:
    s = str(dtype)
    r = _BITS.get(s)
    if r is None:
        r = _BITS[s] = _dtype_bits_of(s)
    return r


_BITS: dict = {}


def _dtype_bits_of(s: str) -> int:
    base = s.split("x")[0]
    if base == "bool":
        return 8
    digits = "".join(ch for ch in base if ch.isdigit())
    if base.startswith("float8") or base.startswith("e4m3") or base.startswith("e5m2"):
        return 8
    return int(digits.split("_")[0][:2] if base.startswith("float8") else digits or 32)


def _lanes(dtype) -> int:
    s = str(dtype)
    return int(s.split("x")[1]) if "x" in s and not s.startswith("float8") else 1


def _scalar(dtype) -> str:
    return str(dtype).split("x")[0]


# --------------------------------------------------------------------------------------------------
# Lowering
# --------------------------------------------------------------------------------------------------

def default_target(arch: str = "sm_90a"):
    import tvm
    return tvm.target.Target({"kind": "cuda", "arch": arch, "max_threads_per_block": 1024,
                              "max_shared_memory_per_block": 49152, "thread_warp_size": 32},
                             host="llvm")


def lower_to_device(mod, target=None):
    """Lower a scheduled IRModule with TVM's S-TIR pipeline; return [(kernel name, device PrimFunc)]
    in launch order."""
    target = target or default_target()
    try:
        lowered = _lower_ir(mod, target)
    except Exception as err:  # noqa: BLE001
        raise _lowering_error(err) from err
    return _device_kernels(lowered)


def _lowering_error(err) -> DemandError:
    # TVM raises its own error types; keep the first line readable
    msg = str(err).strip().splitlines()
    return DemandError(f"lowering failed: {msg[-1] if msg else type(err).__name__}")


_PASS_CONFIG = {"tirx.disable_storage_rewrite": True}
_PIPELINES: dict = {}       # target handle -> (target, Sequential of BindTarget + analysis_passes())


def _pipeline(target):
    """BindTarget(target) followed by ``analysis_passes()`` as one Sequential (built once per target):
    one call into TVM runs the whole lowering (with the GIL released)."""
    import tvm
    from tvm import tirx

    key = target.__chandle__()
    hit = _PIPELINES.get(key)
    if hit is not None and hit[0].same_as(target):
        return hit[1]
    seq = tvm.transform.Sequential([tirx.transform.BindTarget(target)] + analysis_passes())
    if len(_PIPELINES) >= 16:
        _PIPELINES.clear()
    _PIPELINES[key] = (target, seq)     # holding the target keeps its handle from being reused
    return seq


def _lower_ir(mod, target):
    """The lowered module (host and device functions) of a scheduled module; TVM errors propagate."""
    import tvm
    from tvm import tirx

    if isinstance(mod, tirx.PrimFunc):
        mod = tvm.IRModule({"main": mod})
    seq = _pipeline(target)
    with tvm.transform.PassContext(opt_level=3, config=_PASS_CONFIG):
        return seq(mod)


def _device_kernels(lowered):
    """[(kernel name, device PrimFunc)] of a lowered module, in launch order."""
    import tvm
    from tvm import tirx

    try:
        with tvm.transform.PassContext(opt_level=3, config=_PASS_CONFIG):
            device = {gv: f for gv, f in lowered.functions_items()
                      if f.attrs is not None and "tirx.is_global_func" in f.attrs}
            host = tvm.IRModule({gv: f for gv, f in lowered.functions_items() if gv not in device})
            kernels = []
            if device:
                dev_mod = tirx.transform.LowerWarpMemory()(tvm.IRModule(device))
                kernels = [(gv.name_hint, func) for gv, func in dev_mod.functions_items()]
    except Exception as err:  # noqa: BLE001
        raise _lowering_error(err) from err
    if not kernels:
        raise DemandError("the module has no GPU kernel (no blockIdx/threadIdx bindings)")
    if len(kernels) > 1:
        order = _launch_order_fast(host, {name for name, _ in kernels})
        if order is None:
            order = _launch_order(host)
        kernels.sort(key=lambda kv: order.get(kv[0], len(order)))
    return kernels


# Passes of TVM 0.27's default S-TIR pipeline (tvm/s_tir/pipeline.py) that only clean up or expand
# code after the structure is fixed. The demand pass skips them: UnrollLoop's decisions are emulated
# by the walker (``pragma_auto_unroll_max_step``), and the cleanups (simplify, CSE, no-op removal) do
# not change what the GPU executes once nvcc has optimised the code, but they cost 10-100x the rest of
# the lowering on explicitly unrolled candidates.
SKIPPED_PASSES = ("UnrollLoop", "RenormalizeSplitPattern", "RemoveNoOp", "CommonSubexprElim",
                  "VerifyMemory", "HoistIfThenElse", "InstrumentBoundCheckers", "InstrumentProfileIntrinsics",
                  "RewriteUnsafeSelect")


def analysis_passes():
    """TVM's default S-TIR lowering up to SplitHostDevice, without SKIPPED_PASSES."""
    from tvm import s_tir, tirx
    S, X = s_tir.transform, tirx.transform
    passes = [
        S.CanonicalizeLoop(), S.LowerCrossThreadReduction(), S.LowerInitBlock(),
        S.PlanAndUpdateBufferAllocationLocation(), S.ConvertBlocksToOpaque(), S.LiftThreadBinding(),
        S.ManifestSharedMemoryLocalStage(), S.CompactBufferAllocation(), S.LowerAutoCopy(),
        S.UnifyThreadBinding(), S.LowerMatchBuffer(), S.StmtSimplify(), S.InjectPermutedLayout(),
        S.AnnotateIrregularLoop(), S.InjectSoftwarePipeline(), S.TransformMmaBufferLayout(),
        S.LowerOpaqueBlock(), X.FlattenBuffer(), X.BF16ComputeLegalize(), X.NarrowDataType(32),
        S.LoopPartition(), X.VectorizeLoop(True), S.InjectVirtualThread(), S.InjectDoubleBuffer(),
        X.FP8ComputeLegalize(), X.AnnotateEntryFunc(),
        S.ThreadSync("shared"), S.ThreadSync("shared.dyn"), S.ThreadSync("warp"), S.InferFragment(),
        S.LowerThreadAllreduce(), S.MergeSharedMemoryAllocations(), X.SplitHostDevice(),
    ]
    return passes


class _Fallback(Exception):
    pass


def _launch_order_fast(host_mod, kernel_names) -> dict | None:
    """What ``_launch_order`` returns for the kernels (same relative order of every kernel name),
    read from the host function's statements instead of its printed text: the first argument of each
    ``call_ffi_kernel`` in program order. None when the host has anything this reader does not know
    (then ``_launch_order`` prints it), or a name that could make the printed text order differ."""
    from tvm import tirx as T
    import tvm

    funcs = list(host_mod.functions_items())
    if len(funcs) != 1:
        return None
    order: dict = {}

    def name_ok(n):
        # the printer may rename (suffix _1, _2 ...): refuse any name that could print as a token
        # _launch_order takes for a kernel name
        n = str(n)
        if "_kernel" in n or n.startswith("main_kernel") or n in kernel_names:
            raise _Fallback()

    def expr(e):
        t = type(e).__name__
        if t in ("IntImm", "FloatImm"):
            return
        if t == "StringImm":
            name_ok(e.value)
        elif t == "Var":
            name_ok(e.name)
        elif t == "Call":
            for a in e.args:
                expr(a)
        else:
            raise _Fallback()

    def stmt(s):
        t = type(s)
        if t is T.SeqStmt:
            for x in s.seq:
                stmt(x)
        elif t is T.DeclBuffer or t is T.AllocBuffer:
            name_ok(s.buffer.name)
            expr(s.buffer.data)
            body = getattr(s, "body", None)
            if body is not None:
                stmt(body)
        elif t is T.AttrStmt:
            node = s.node
            if type(node).__name__ != "Var":
                raise _Fallback()
            name_ok(node.name)
            expr(s.value)
            stmt(s.body)
        elif t is T.Evaluate:
            c = s.value
            if type(c).__name__ != "Call" or not isinstance(c.op, tvm.ir.Op):
                raise _Fallback()
            args = list(c.args)
            if c.op.name == "tirx.call_ffi_kernel" and args and type(args[0]).__name__ == "StringImm":
                k = str(args[0].value)
                if k in kernel_names and k not in order:
                    order[k] = len(order)
                args = args[1:]
            for a in args:
                expr(a)
        else:
            raise _Fallback()

    try:
        _gv, f = funcs[0]
        for p in f.params:
            if type(p).__name__ != "Var":
                return None
            name_ok(p.name)
        stmt(f.body)
    except _Fallback:
        return None
    except Exception:  # noqa: BLE001 - anything unexpected: print the host instead
        return None
    return order


def _launch_order(host_mod) -> dict:
    """Order in which the host calls kernels (by first occurrence of the kernel name in its text)."""
    try:
        text = host_mod.script()
    except Exception:  # pragma: no cover - printing never fails in practice
        return {}
    order, pos = {}, 0
    for token in text.replace('"', " ").replace("(", " ").replace(",", " ").split():
        if token.endswith("_kernel") or "_kernel_" in token or token.startswith("main_kernel"):
            if token not in order:
                order[token] = pos
                pos += 1
    return order


# --------------------------------------------------------------------------------------------------
# Expression evaluation over sampled lanes (coalescing, bank conflicts, predicates)
# --------------------------------------------------------------------------------------------------

class _Unknown(Exception):
    pass


class _Evaluator:
    """Evaluates integer/boolean TIR expressions for arrays of contexts: shape (S, 32[, lanes])."""

    def __init__(self, tirx, env: dict, lets: dict):
        self.T = tirx
        self.env = env          # var handle -> np.ndarray broadcastable to (S, 32)
        self.lets = lets        # var handle -> value expr (Bind statements)
        self.memo = {}

    def var(self, v):
        h = v.__chandle__()
        val = self.env.get(h)
        if val is not None:
            return val
        if h in self.lets:
            val = self.eval(self.lets[h])
            self.env[h] = val
            return val
        raise _Unknown(str(v))

    def eval(self, e):
        """Value of ``e`` over the sampled contexts (memoised per node: the values of the vars it
        reads never change once set)."""
        t = type(e)
        if t is self.T.IntImm:
            return np.int64(e.value)
        h = e.__chandle__()
        r = self.memo.get(h)
        if r is None:
            r = self._eval(e, t)
            self.memo[h] = r
        return r

    def _eval(self, e, t):
        T = self.T
        if t is T.Var:
            return self.var(e)
        fn = _EVAL_BINARY.get(t.__name__)
        if fn is not None:
            return fn(self.eval(e.a), self.eval(e.b))
        name = t.__name__
        if name == "Ramp":
            base = np.asarray(self.eval(e.base))
            stride = np.asarray(self.eval(e.stride))
            n = int(e.lanes)
            return base[..., None] + stride[..., None] * np.arange(n)
        if name == "Broadcast":
            return np.asarray(self.eval(e.value))[..., None]
        if name == "Cast":
            return self.eval(e.value)
        if name == "Not":
            return np.logical_not(self.eval(e.a))
        if name == "Select":
            return np.where(self.eval(e.condition), self.eval(e.true_value), self.eval(e.false_value))
        if name == "Call":
            op = e.op.name
            if op in ("tirx.likely", "tirx.assume"):
                return self.eval(e.args[0])
            if op == "tirx.shift_right":
                return np.right_shift(self.eval(e.args[0]), self.eval(e.args[1]))
            if op == "tirx.shift_left":
                return np.left_shift(self.eval(e.args[0]), self.eval(e.args[1]))
            if op == "tirx.bitwise_and":
                return np.bitwise_and(self.eval(e.args[0]), self.eval(e.args[1]))
            if op == "tirx.bitwise_or":
                return np.bitwise_or(self.eval(e.args[0]), self.eval(e.args[1]))
            if op == "tirx.bitwise_xor":
                return np.bitwise_xor(self.eval(e.args[0]), self.eval(e.args[1]))
            if op == "tirx.if_then_else":
                return np.where(self.eval(e.args[0]), self.eval(e.args[1]), self.eval(e.args[2]))
        if name == "Let":
            self.env[e.var.__chandle__()] = self.eval(e.value)
            return self.eval(e.body)
        raise _Unknown(name)


def _fdiv(a, b):
    if type(b) is np.int64 and b != 0:     # a nonzero constant: what np.where would give back
        return np.floor_divide(a, b)
    b = np.where(np.asarray(b) == 0, 1, b)
    return np.floor_divide(a, b)


def _fmod(a, b):
    if type(b) is np.int64 and b != 0:
        return np.mod(a, b)
    b = np.where(np.asarray(b) == 0, 1, b)
    return np.mod(a, b)


def _tdiv(a, b):
    b = np.where(np.asarray(b) == 0, 1, b)
    q = np.abs(a) // np.abs(b)
    return np.where((np.asarray(a) < 0) ^ (np.asarray(b) < 0), -q, q)


def _tmod(a, b):
    return a - _tdiv(a, b) * b


_EVAL_BINARY = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "FloorDiv": _fdiv, "FloorMod": _fmod,
    "Div": _tdiv, "Mod": _tmod, "Min": np.minimum, "Max": np.maximum,
    "LT": np.less, "LE": np.less_equal, "GT": np.greater, "GE": np.greater_equal,
    "EQ": np.equal, "NE": np.not_equal, "And": np.logical_and, "Or": np.logical_or,
}


# --------------------------------------------------------------------------------------------------
# The kernel walker
# --------------------------------------------------------------------------------------------------

_LOOP_SERIAL = itertools.count()


@dataclass
class _Loop:
    var: object
    extent: int
    unrolled: bool
    key: int = 0     # the loop var's handle (identity of the TVM object)
    serial: int = 0  # unique number of this loop (identity in the CSE keys of _count_ops)

    def __post_init__(self):
        self.key = self.var.__chandle__()
        self.serial = next(_LOOP_SERIAL)


@dataclass
class _BufInfo:
    name: str
    scope: str
    dtype: str
    elements: int
    bits: int
    in_registers: bool = True  # local arrays: True while every access index is a constant


@dataclass
class _Ctx:
    loops: list = field(default_factory=list)          # enclosing serial loops
    preds: tuple = ()                                   # enclosing conditions (exprs, negated flag)
    max_step: int = 0                                   # pragma_auto_unroll_max_step in force
    # derived from loops/preds, filled on first use (a ctx is never changed after it is made)
    weights: tuple = field(default=None, repr=False, compare=False)
    level_loops: list = field(default=None, repr=False, compare=False)
    sampled: bool = field(default=False, repr=False, compare=False)


class _KernelWalker:
    def __init__(self, name, func, rng_seed=0):
        from tvm import tirx
        self.T = tirx
        self.name = name
        self.func = func
        self.inst = {k: 0.0 for k in INST_KEYS}
        self.mem = {k: 0.0 for k in MEMORY_KEYS}
        self.mma = {}
        self.tensor_flops = {}
        self.flops = 0.0
        self.buffers = {}        # name -> _BufInfo
        self.global_traffic = {} # name -> [load_sectors, store_sectors, bytes]
        self.thread_ext = {}     # "threadIdx.x" -> extent
        self.block_ext = {}
        self.thread_vars = {}    # var handle -> tag
        self.lets = {}           # var handle -> bound value (Bind statements, Let expressions)
        self.static_smem = 0
        self.dyn_smem = 0
        self.fragment_regs = 0.0
        self.local_reg_bytes = 0
        self.max_serial = 0.0
        self.notes = []
        self.rng = np.random.default_rng(rng_seed)
        self.env = {}
        self.evaluator = None
        self._pred_cache = {}
        self._uses_cache = {}
        self._uses_memo = {}     # node handle -> frozenset of var handles (cleared when lets change)
        self._lvl_ctx = None     # the ctx_index the _lvl_memo belongs to
        self._lvl_memo = {}      # node handle -> loop level under _lvl_ctx
        self._seen_int = set()
        self._shash = {}         # node handle -> structural hash
        self._warps_cache = None
        self._pmask = {}         # ctx.preds -> active-lane mask (S, 32)
        self._lane_frac = None
        self._lanes_per_warp = 32.0
        self._loop_samples = {}

    # ---- setup -------------------------------------------------------------------------------
    def _collect_launch(self, stmt):
        """First pass: thread extents (they wrap the whole body in TVM's device functions)."""
        T = self.T
        stack = [stmt]
        while stack:
            s = stack.pop()
            t = type(s)
            if t is T.AttrStmt:
                if s.attr_key == "thread_extent":
                    iv = s.node
                    tag = iv.thread_tag
                    if not isinstance(s.value, T.IntImm):
                        raise DemandError(f"kernel {self.name}: symbolic launch extent {tag} = {s.value}")
                    ext = int(s.value.value)
                    (self.block_ext if tag.startswith("blockIdx") else self.thread_ext)[tag] = ext
                    self.thread_vars[iv.var.__chandle__()] = tag
                stack.append(s.body)
            elif t is T.SeqStmt:
                stack.extend(list(s.seq))
            elif t in (T.For, T.While):
                stack.append(s.body)
            elif t is T.IfThenElse:
                stack.append(s.then_case)
                if s.else_case is not None:
                    stack.append(s.else_case)

    def _setup_env(self):
        S = _SAMPLES
        bx = self.thread_ext.get("threadIdx.x", 1)
        by = self.thread_ext.get("threadIdx.y", 1)
        bz = self.thread_ext.get("threadIdx.z", 1)
        nthreads = bx * by * bz
        nwarps = max(1, -(-nthreads // 32))
        warp = self.rng.integers(0, nwarps, size=(S, 1))
        tid = warp * 32 + np.arange(32)[None, :]
        self.lane_valid = tid < nthreads
        tid = np.minimum(tid, nthreads - 1)
        vals = {"threadIdx.x": tid % bx, "threadIdx.y": (tid // bx) % by, "threadIdx.z": tid // (bx * by)}
        for var, tag in self.thread_vars.items():
            if tag.startswith("threadIdx"):
                self.env[var] = vals[tag]
            else:
                self.env[var] = self.rng.integers(0, self.block_ext[tag], size=(S, 1))
        self.evaluator = _Evaluator(self.T, self.env, self.lets)

    # ---- counting helpers -----------------------------------------------------------------------
    def _warps_total(self):
        r = self._warps_cache
        if r is None:
            r = self._warps_cache = self._warps_total_of()
        return r

    def _warps_total_of(self):
        nthreads = math.prod(self.thread_ext.values()) if self.thread_ext else 1
        nblocks = math.prod(self.block_ext.values()) if self.block_ext else 1
        return nblocks * max(1, -(-nthreads // 32)), nblocks * nthreads

    def _weight(self, ctx, int_level=False):
        """Executions per thread of a statement in ``ctx``; with int_level, unrolled loops do not
        multiply (their index arithmetic folds into immediates)."""
        w = 1.0
        for lp in ctx.loops:
            if int_level and lp.unrolled:
                continue
            w *= lp.extent
        return w

    def _active(self, ctx):
        """(fraction of warps with an active lane, fraction of active lanes) under ctx's predicates."""
        if not ctx.preds:
            frac = self._lane_frac
            if frac is None:
                frac = self._lane_frac = float(self.lane_valid.mean())
            return 1.0, frac
        key = ctx.preds
        hit = self._pred_cache.get(key)
        if hit is not None:
            return hit
        try:
            mask = self._pred_mask_enumerated(ctx)
            warp = float(np.mean(mask.any(axis=-1)))
            lane = float(mask.mean())
        except _Unknown:
            warp, lane = 1.0, float(self.lane_valid.mean())
        self._pred_cache[key] = (warp, lane)
        return warp, lane

    def _pred_mask_enumerated(self, ctx):
        """Active-lane mask under ctx's predicates, with every enclosing loop variable that a
        condition uses enumerated over its range (up to 4096 combinations, else sampled)."""
        used = set()
        for cond, _ in ctx.preds:
            used |= self._uses(cond)
        loops = [lp for lp in ctx.loops if lp.key in used]
        if not loops:
            return self._pred_mask(ctx)
        total = math.prod(lp.extent for lp in loops)
        if total <= 4096:
            grids = np.meshgrid(*[np.arange(lp.extent) for lp in loops], indexing="ij")
            values = [g.reshape(-1) for g in grids]
        else:
            values = [self.rng.integers(0, lp.extent, size=4096) for lp in loops]
        n = len(values[0])
        env = {}
        for var, val in self.env.items():
            if var in self.thread_vars:
                env[var] = np.asarray(val)[None]                     # (1, S, 32|1)
        for lp, val in zip(loops, values):
            env[lp.key] = val[:, None, None]                         # (n, 1, 1)
        for lp in ctx.loops:
            if lp.key not in env:
                env[lp.key] = self.rng.integers(0, max(1, lp.extent), size=(1, _SAMPLES, 1))
        ev = _Evaluator(self.T, env, self.lets)
        mask = np.broadcast_to(self.lane_valid[None], (n,) + self.lane_valid.shape)
        for cond, negate in ctx.preds:
            v = np.asarray(ev.eval(cond), dtype=bool)
            v = np.broadcast_to(v, v.shape[:3] if v.ndim > 3 else v.shape)
            while v.ndim > 3:
                v = v.any(axis=-1)
            mask = mask & (~v if negate else v)
        return mask.reshape(-1, mask.shape[-1])

    def _uses(self, e):
        """Handles of the vars (loop, thread) an expression depends on, through let bindings
        (memoised per node while the let bindings stay the same)."""
        t = type(e)
        kind = _KIND.get(t)
        if kind is None:
            kind = _kind_of(self.T, t)
        if kind is _K_CONST:
            return _EMPTY
        h = e.__chandle__()
        r = self._uses_memo.get(h)
        if r is not None:
            return r
        if kind is _K_VAR:
            if h in self.lets:
                r = self._uses_cache.get(h)
                if r is None:
                    r = self._uses(self.lets[h])
                    self._uses_cache[h] = r
            else:
                r = frozenset((h,))
        elif kind is _K_IRVAR:
            r = frozenset((h,))
        else:
            out = set()
            for c in _kids(e, kind):
                out |= self._uses(c)
            r = frozenset(out)
        self._uses_memo[h] = r
        return r

    def _lets_changed(self):
        self._uses_memo = {}
        self._lvl_ctx = None

    def _pred_mask(self, ctx):
        mask = self.lane_valid.copy()
        for cond, negate in ctx.preds:
            v = np.asarray(self.evaluator.eval(cond), dtype=bool)
            while v.ndim > 2:
                v = v.any(axis=-1)
            mask = mask & (~v if negate else v)
        return mask

    def _sample_loops(self, ctx):
        if ctx.sampled:
            return
        ctx.sampled = True      # loop samples, once drawn, stay in env
        for lp in ctx.loops:
            if lp.key not in self.env:
                self.env[lp.key] = self.rng.integers(0, max(1, lp.extent), size=(_SAMPLES, 1))

    # ---- expressions ----------------------------------------------------------------------------
    def _level(self, e, ctx_index):
        """Depth (1-based) of the innermost non-unrolled enclosing loop whose var ``e`` uses; 0 when
        ``e`` depends on no such loop (thread/block indices and constants only).

        ``ctx_index`` (from ``_ctx_index``) maps loop-var handles to depths. Results are memoised per
        node for the current ``ctx_index`` (one statement) and let bindings."""
        if ctx_index is not self._lvl_ctx:
            self._lvl_ctx = ctx_index
            self._lvl_memo = {}
        return self._lvl(e, ctx_index)

    def _lvl(self, x, ctx_index):
        t = type(x)
        kind = _KIND.get(t)
        if kind is None:
            kind = _kind_of(self.T, t)
        if kind is _K_CONST:
            return 0
        h = x.__chandle__()
        memo = self._lvl_memo
        r = memo.get(h)
        if r is not None:
            return r
        if kind is _K_VAR:
            r = ctx_index.get(h)
            if r is None:
                r = 0
                if h in self.lets:
                    lv = self._let_level.get(h)
                    if lv is None:
                        lv = self._lvl(self.lets[h], ctx_index)
                        self._let_level[h] = lv
                    r = lv
        else:
            r = 0
            for c in _kids(x, kind):
                v = self._lvl(c, ctx_index)
                if v > r:
                    r = v
        memo[h] = r
        return r

    def _count_expr(self, e, ctx, w_float, w_int_by_level, ctx_index, in_index=False):
        """Accumulate instruction counts of expression ``e``.

        w_float: executions per thread of the statement; w_int_by_level: list, weight of an integer
        op that depends on loops up to level L (index L)."""
        T = self.T
        t = type(e)
        if t is T.IntImm or t is T.FloatImm or t is T.Var:
            return
        name = t.__name__
        dtype = _dt(e)
        scalar = _scalar(dtype)
        lanes = _lanes(dtype)
        is_float = scalar.startswith("float") or scalar.startswith("bfloat")
        if name in ("BufferLoad", "TensorLoad"):
            self._access(_load_name(e), e.indices, dtype, ctx, w_float / self._redundant(e, ctx),
                         is_store=False)
            for idx in e.indices:
                self._count_index(idx, ctx, w_int_by_level, ctx_index)
            return
        if name in ("Add", "Sub", "Mul", "Div", "Mod", "FloorDiv", "FloorMod", "Min", "Max",
                    "LT", "LE", "GT", "GE", "EQ", "NE", "And", "Or"):
            if is_float or (name in ("LT", "LE", "GT", "GE", "EQ", "NE") and
                            _scalar(_dt(e.a)).startswith(("float", "bfloat"))):
                fscalar = scalar if is_float else _scalar(_dt(e.a))
                self._float_op(name, e, fscalar, lanes if is_float else _lanes(_dt(e.a)), w_float)
                fused = name == "Add" and (type(e.a).__name__ == "Mul" or type(e.b).__name__ == "Mul")
                for child in (e.a, e.b):
                    if fused and type(child).__name__ == "Mul" and _dt(child) == _dt(e):
                        # a*b+c: one FMA already counted; descend into the Mul's operands only
                        self._count_expr(child.a, ctx, w_float, w_int_by_level, ctx_index)
                        self._count_expr(child.b, ctx, w_float, w_int_by_level, ctx_index)
                        fused = False
                    else:
                        self._count_expr(child, ctx, w_float, w_int_by_level, ctx_index)
                return
            # integer arithmetic in a value (not an address): charge at its loop level
            self._count_ops(e, ctx, w_int_by_level, ctx_index)
            return
        if name == "Cast":
            src = _scalar(_dt(e.value))
            if src != scalar and not (src.startswith("int") and scalar.startswith("int")):
                if src == "bfloat16" and scalar == "float32":
                    # a bf16 is the top half of an fp32: PRMT/SHL on the integer ALU
                    self.inst["int_alu"] += lanes * w_float
                elif {src, scalar} == {"float16", "float32"} or {src, scalar} == {"bfloat16", "float32"}:
                    # HADD2.F32 / F2FP.PACK run on the FMA pipe on sm_90, two lanes per instruction
                    # when vectorised (Nsight Compute: no XU instruction for these)
                    self.inst["fp32_add"] += (-(-lanes // 2) if lanes > 1 else 1) * w_float
                else:   # int<->float and 64-bit conversions: the XU pipe
                    self.inst["conversion"] += lanes * w_float
            self._count_expr(e.value, ctx, w_float, w_int_by_level, ctx_index)
            return
        if name == "Select":
            self.inst["select"] += lanes * w_float
            for c in (e.condition, e.true_value, e.false_value):
                self._count_expr(c, ctx, w_float, w_int_by_level, ctx_index)
            return
        if name == "Not":
            self._count_expr(e.a, ctx, w_float, w_int_by_level, ctx_index)
            return
        if name in ("Broadcast",):
            self._count_expr(e.value, ctx, w_float, w_int_by_level, ctx_index)
            return
        if name == "Ramp":
            self._count_index(e.base, ctx, w_int_by_level, ctx_index)
            return
        if name == "Let":
            self.lets[e.var.__chandle__()] = e.value
            self._lets_changed()
            self._count_expr(e.value, ctx, w_float, w_int_by_level, ctx_index)
            self._count_expr(e.body, ctx, w_float, w_int_by_level, ctx_index)
            return
        if name == "Shuffle":
            for v in e.vectors:
                self._count_expr(v, ctx, w_float, w_int_by_level, ctx_index)
            return
        if name == "Call":
            self._call(e, ctx, w_float, w_int_by_level, ctx_index, lanes)
            return

    def _redundant(self, load, ctx):
        """Product of the extents of enclosing unrolled loops the load's index does not use: the
        compiler issues such a load once and reuses the register."""
        unrolled = [lp for lp in ctx.loops if lp.unrolled]
        if not unrolled:
            return 1.0
        used = set()
        for idx in load.indices:
            used |= self._uses(idx)
        r = 1.0
        for lp in unrolled:
            if lp.key not in used:
                r *= lp.extent
        return r

    def _float_op(self, name, e, scalar, lanes, w):
        pipe = _FLOAT_PIPE.get(scalar, "fp32")
        if pipe in ("fp16", "bf16"):
            n = -(-lanes // 2) if lanes > 1 else 1
        else:
            n = lanes
        if name in ("LT", "LE", "GT", "GE", "EQ", "NE", "Min", "Max"):
            self.inst["int_alu" if pipe != "fp64" else "fp64"] += n * w   # FSETP / FMNMX: ALU pipe
            return
        if name in ("Div", "Mod", "FloorDiv", "FloorMod"):
            sfu, fma, alu = SPECIAL_FUNCTION_COST["div"]
            if type(e.b).__name__ in ("FloatImm", "Broadcast"):
                sfu, fma = 0, 1   # division by a constant becomes a multiply
            self.inst["sfu"] += sfu * lanes * w
            self.inst["fp32_fma"] += fma * lanes * w
            self.inst["int_alu"] += alu * lanes * w
            self.flops += lanes * w * self._lanes_per_warp
            return
        if pipe == "fp64":
            self.inst["fp64"] += n * w
            self.flops += lanes * w * self._lanes_per_warp * (2 if name == "Add" and type(e.a).__name__ == "Mul" else 1)
            return
        fused = name == "Add" and (type(e.a).__name__ == "Mul" or type(e.b).__name__ == "Mul")
        if fused or name == "Add" or name == "Sub":
            kind = "fma" if fused else "add"
        else:
            kind = "mul"
        key = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16" if kind == "fma" else "fp16"}[pipe]
        if key == "bf16":
            self.inst["bf16_fma"] += n * w
        else:
            self.inst[f"{key}_{kind}"] += n * w
        self.flops += lanes * w * self._lanes_per_warp * (2 if fused else 1)

    def _count_index(self, e, ctx, w_int_by_level, ctx_index):
        """Integer arithmetic of an address. Inside a non-unrolled loop, nvcc strength-reduces an
        address that varies with the loop into a pointer increment (one IADD per NVCC_PARTIAL_UNROLL
        iterations, the rest folds into immediate offsets of the unrolled copies); its loop-invariant
        parts are hoisted and computed at their own loop level, once (common subexpressions)."""
        T = self.T
        lvl = self._level(e, ctx_index)
        if lvl == 0:
            self._count_ops(e, ctx, w_int_by_level, ctx_index)
            return
        self.inst["int_alu"] += w_int_by_level[lvl] / NVCC_PARTIAL_UNROLL
        stack = [e]
        while stack:
            x = stack.pop()
            t = type(x)
            if t is T.IntImm or t is T.Var or t is T.FloatImm:
                continue
            if t.__name__ in ("BufferLoad", "TensorLoad"):
                self._count_expr(x, ctx, self._w_float_cur, w_int_by_level, ctx_index)
                continue
            if self._level(x, ctx_index) < lvl:
                self._count_ops(x, ctx, w_int_by_level, ctx_index)
                continue
            stack.extend(_children(x))

    def _count_ops(self, e, ctx, w_int_by_level, ctx_index):
        """Integer arithmetic of an expression, each op charged at its loop level, each distinct
        subexpression once per iteration of its level (CSE + loop-invariant code motion).
        Adding a constant is free (immediate offset); a*b+c is one IMAD."""
        T = self.T
        stack = [(e, False)]
        while stack:
            x, parent_add = stack.pop()
            t = type(x)
            if t is T.IntImm or t is T.Var or t is T.FloatImm:
                continue
            name = t.__name__
            if name not in ("BufferLoad", "TensorLoad"):
                lv = self._level(x, ctx_index)
                hx = x.__chandle__()
                sh = self._shash.get(hx)
                if sh is None:
                    sh = self._shash[hx] = tvm_structural_hash(x)
                key = (sh, lv, self._level_loop(ctx, lv))
                if key in self._seen_int:
                    continue
                self._seen_int.add(key)
            if name in ("BufferLoad", "TensorLoad"):
                self._count_expr(x, ctx, self._w_float_cur, w_int_by_level, ctx_index)
                continue
            if name in ("Ramp", "Broadcast", "Cast"):
                stack.append((x.base if name == "Ramp" else x.value, False))
                continue
            if name == "Call":
                op = x.op.name
                if op in ("tirx.shift_right", "tirx.shift_left", "tirx.bitwise_and",
                          "tirx.bitwise_or", "tirx.bitwise_xor"):
                    lvl = self._level(x, ctx_index)
                    self.inst["int_alu"] += w_int_by_level[lvl]
                stack.extend((a, False) for a in x.args)
                continue
            if name == "Select":
                lvl = self._level(x, ctx_index)
                self.inst["select"] += w_int_by_level[lvl]
                stack.extend([(x.condition, False), (x.true_value, False), (x.false_value, False)])
                continue
            if name == "Not":
                stack.append((x.a, False))
                continue
            if not hasattr(x, "a"):
                continue
            a, b = x.a, x.b
            b_const = type(b) is T.IntImm
            lvl = self._level(x, ctx_index)
            w = w_int_by_level[lvl]
            if name in ("Add", "Sub"):
                if b_const or type(a) is T.IntImm:
                    pass  # immediate offset / folded
                elif type(a).__name__ == "Mul" or type(b).__name__ == "Mul":
                    pass  # fused into the IMAD counted below
                else:
                    self.inst["int_alu"] += w
                stack.append((a, True))
                stack.append((b, True))
            elif name == "Mul":
                if b_const and _is_pow2(b.value):
                    self.inst["int_alu"] += w   # shift
                else:
                    self.inst["imad"] += w
                stack.append((a, False))
                stack.append((b, False))
            elif name in ("FloorDiv", "FloorMod", "Div", "Mod"):
                if b_const and _is_pow2(b.value):
                    self.inst["int_alu"] += w
                elif b_const:
                    self.inst["imad"] += 2 * w      # IMAD.HI + IMAD for the remainder
                    self.inst["int_alu"] += w
                else:
                    self.inst["imad"] += 6 * w      # reciprocal-based integer division
                    self.inst["int_alu"] += 8 * w
                    self.inst["conversion"] += 2 * w
                    self.inst["sfu"] += w
                stack.append((a, False))
                stack.append((b, False))
            else:  # Min/Max/compare/And/Or
                self.inst["int_alu"] += w
                stack.append((a, False))
                stack.append((b, False))

    def _level_loop(self, ctx, lv):
        """Identity of the lv-th non-unrolled enclosing loop (None for level 0): its serial number
        (unique per loop statement; ``id()`` of a freed _Loop could be reused by a later one)."""
        if lv == 0:
            return None
        ll = ctx.level_loops
        if ll is None:
            ll = ctx.level_loops = [None] + [lp.serial for lp in ctx.loops if not lp.unrolled]
        return ll[lv] if lv < len(ll) else None

    def _call(self, e, ctx, w, w_int_by_level, ctx_index, lanes):
        op = e.op.name
        short = op.split(".")[-1]
        if short in ("likely", "assume"):
            self._count_expr(e.args[0], ctx, w, w_int_by_level, ctx_index)
            return
        if short in ("shift_right", "shift_left", "bitwise_and", "bitwise_or", "bitwise_xor",
                     "bitwise_not"):
            self._count_ops(e, ctx, w_int_by_level, ctx_index)
            return
        if short == "if_then_else":
            self.inst["select"] += lanes * w
            for a in e.args:
                self._count_expr(a, ctx, w, w_int_by_level, ctx_index)
            return
        if short in SPECIAL_FUNCTION_COST:
            sfu, fma, alu = SPECIAL_FUNCTION_COST[short]
            scalar = _scalar(_dt(e))
            self.inst["sfu"] += sfu * lanes * w
            key = "fp64" if scalar == "float64" else "fp32_fma"
            self.inst[key] += fma * lanes * w
            self.inst["int_alu"] += alu * lanes * w
            if scalar in ("float16", "bfloat16"):
                self.inst["fp32_add"] += 2 * lanes * w     # computed in fp32 and converted back
            self.flops += lanes * w * self._lanes_per_warp
            for a in e.args:
                self._count_expr(a, ctx, w, w_int_by_level, ctx_index)
            return
        if short.startswith("tvm_warp_shuffle"):
            self.inst["shuffle"] += w
            for a in e.args[1:]:
                self._count_expr(a, ctx, w, w_int_by_level, ctx_index)
            return
        if short == "tvm_warp_activemask":
            self.inst["int_alu"] += w
            return
        # Anything else: count the arguments
        for a in e.args:
            if hasattr(a, "dtype"):
                self._count_expr(a, ctx, w, w_int_by_level, ctx_index)

    # ---- memory accesses ------------------------------------------------------------------------
    def _access(self, name, indices, dtype, ctx, W, is_store):
        """One load/store executed ``W`` times at warp level (loop weight x active warps)."""
        info = self.buffers.get(name)
        scope = info.scope if info is not None else "global"
        bits = _dtype_bits(dtype)
        lanes = _lanes(dtype)
        width = max(1, bits * lanes // 8)
        warp_frac, lane_frac = self._active(ctx)
        lanes_per_warp = 32 * lane_frac / warp_frac if warp_frac > 0 else 0.0
        if scope == "global":
            n_inst = max(1, -(-width // 16))
            key = "st_global" if is_store else "ld_global"
            self.inst[key] += n_inst * W
            # the 64-bit base address is formed once per warp (loops add increments, unrolled copies
            # fold into immediate offsets)
            self.inst["imad"] += self._warps_total()[0] * warp_frac * ADDRESS_IMAD_PER_GLOBAL_ACCESS
            sectors = self._sectors(indices, bits, lanes, ctx)
            tot_sectors = sectors * W
            self.mem["global_store_sectors" if is_store else "global_load_sectors"] += tot_sectors
            req = width * lanes_per_warp * W
            self.mem["global_store_bytes" if is_store else "global_load_bytes"] += req
            l2 = sectors if is_store else self._l2_load_sectors(indices, bits, lanes, ctx, sectors)
            self._traffic(name, l2 * W, is_store)
            return
        if scope.startswith("shared"):
            n_inst = max(1, -(-width // 16))
            key = "st_shared" if is_store else "ld_shared"
            self.inst[key] += n_inst * W
            wave, ideal = self._wavefronts(indices, bits, lanes, ctx)
            self.mem["shared_store_wavefronts" if is_store else "shared_load_wavefronts"] += wave * W
            self.mem["shared_ideal_wavefronts"] += ideal * W
            return
        if scope == "local":
            if info is not None and not info.in_registers:
                n_inst = max(1, -(-width // 16))
                self.inst["st_local" if is_store else "ld_local"] += n_inst * W
                self.mem["local_bytes"] += width * lanes_per_warp * W
            return
        # warp / wmma.* scopes: registers

    def _traffic(self, name, sectors, is_store):
        """Add sectors to a global buffer's load or store traffic (for the DRAM/L2 estimate)."""
        tr = self.global_traffic.setdefault(name, [0.0, 0.0, 0.0])
        tr[1 if is_store else 0] += sectors
        info = self.buffers.get(name)
        if info is not None:
            tr[2] = info.elements * info.bits / 8

    def _addresses(self, indices, bits, lanes, ctx, evaluator=None):
        """Byte addresses per (sample, lane, vector lane) and the active-lane mask."""
        self._sample_loops(ctx)
        idx = indices[0] if len(indices) == 1 else None
        if idx is None:
            raise _Unknown("multi-dimensional index after flattening")
        addr = np.asarray((evaluator or self.evaluator).eval(idx), dtype=np.int64)
        elem = max(1, bits // 8)
        if addr.ndim == 0:
            addr = np.broadcast_to(addr, (_SAMPLES, 32))
        elif addr.ndim == 1:        # a vector index that uses no thread or loop variable
            addr = np.broadcast_to(addr, (_SAMPLES, 32, addr.shape[0]))
        elif addr.ndim > 3 or addr.shape[0] not in (1, _SAMPLES):
            raise _Unknown(f"index of shape {addr.shape}")
        if addr.ndim == 2:
            addr = addr[..., None]
        if addr.shape[:2] != (_SAMPLES, 32):
            addr = np.broadcast_to(addr, (_SAMPLES, 32, addr.shape[-1]))   # (sample, lane, vector lane)
        if ctx.preds:
            mask = self._pmask.get(ctx.preds)
            if mask is None:
                mask = self._pmask[ctx.preds] = self._pred_mask(ctx)
        else:
            mask = self.lane_valid
        return addr * elem, mask, elem

    def _sectors(self, indices, bits, lanes, ctx):
        """Average 32-byte sectors per warp-level request."""
        try:
            addr, mask, elem = self._addresses(indices, bits, lanes, ctx)
        except (_Unknown, ValueError):
            width = bits * lanes // 8
            return min(32.0, max(1.0, 32 * width / 32))
        first = addr // 32
        last = (addr + elem - 1) // 32
        keys = np.concatenate([first, last], axis=-1)          # (S, 32, 2L)
        return _mean_unique(keys, mask)

    def _l2_load_sectors(self, indices, bits, lanes, ctx, per_request):
        """Sectors per warp load request that miss L1 and reach L2: the distinct sectors the warp touches
        over the first ``L1_WINDOW`` iterations of its innermost enclosing loop, per iteration (at most
        ``per_request``: a loop whose iterations touch new sectors gains nothing)."""
        if not ctx.loops:
            return per_request
        inner = ctx.loops[-1]
        n = min(inner.extent, L1_WINDOW)
        if n <= 1:
            return per_request
        self._sample_loops(ctx)
        # a fresh evaluator per iteration: the memo and the let values cached in env depend on the loop var
        base = {k: v for k, v in self.env.items() if k not in self.lets}
        keys = []
        try:
            for j in range(n):
                env = dict(base)
                env[inner.key] = np.full((_SAMPLES, 1), j, dtype=np.int64)
                addr, mask, elem = self._addresses(indices, bits, lanes, ctx, _Evaluator(self.T, env, self.lets))
                keys += [addr // 32, (addr + elem - 1) // 32]
        except (_Unknown, ValueError):
            return per_request
        return min(per_request, _mean_unique(np.concatenate(keys, axis=-1), mask) / n)

    def _wavefronts(self, indices, bits, lanes, ctx):
        """Average shared-memory wavefronts per warp request, and the conflict-free ideal."""
        width = bits * lanes // 8
        ideal = max(1.0, math.ceil(32 * width / 128))
        try:
            addr, mask, elem = self._addresses(indices, bits, lanes, ctx)
        except (_Unknown, ValueError):
            return ideal, ideal
        words = (addr[..., None] + np.arange(0, max(elem, 4), 4)) // 4   # (S, 32, L, k) 4-byte words
        words = words.reshape(_SAMPLES, 32, -1)
        wave = _wavefronts_of(words, mask)
        return max(wave, 1.0), ideal

    # ---- statements -----------------------------------------------------------------------------
    def walk(self):
        T = self.T
        self._collect_launch(self.func.body)
        if not self.thread_ext and not self.block_ext:
            raise DemandError(f"kernel {self.name}: no GPU thread bindings")
        self._setup_env()
        self._let_level = {}
        self._w_float_cur = 1.0
        self._stmt(self.func.body, _Ctx())
        return self._result()

    def _ctx_index(self, ctx):
        idx = {}
        depth = 0
        for lp in ctx.loops:
            if not lp.unrolled:
                depth += 1
            idx[lp.key] = depth if not lp.unrolled else 0
        return idx

    def _int_weights(self, ctx):
        ws = [1.0]
        w = 1.0
        for lp in ctx.loops:
            if lp.unrolled:
                continue
            w *= lp.extent
            ws.append(w)
        return ws

    def _stmt_weights(self, ctx):
        """(per-thread float weight, warp-level int weights by level, ctx_index) for ctx."""
        r = ctx.weights
        if r is None:
            r = ctx.weights = self._stmt_weights_of(ctx)
        self._lanes_per_warp = r[4]
        return r[:4]

    def _stmt_weights_of(self, ctx):
        w = self._weight(ctx)
        warps, _ = self._warps_total()
        warp_frac, lane_frac = self._active(ctx)
        ints = [x * warps * warp_frac for x in self._int_weights(ctx)]
        # active lanes per executing warp: turns warp-level executions into thread-level FLOP
        lanes_per_warp = 32.0 * lane_frac / warp_frac if warp_frac > 0 else 0.0
        return w, ints, self._ctx_index(ctx), warps * warp_frac, lanes_per_warp

    def _stmt(self, s, ctx):
        T = self.T
        t = type(s)
        if t is T.SeqStmt:
            for x in s.seq:
                self._stmt(x, ctx)
        elif t is T.AttrStmt:
            if s.attr_key == "pragma_auto_unroll_max_step" and isinstance(s.value, T.IntImm):
                ctx = _Ctx(ctx.loops, ctx.preds, int(s.value.value))
            self._stmt(s.body, ctx)
        elif t is T.DeclBuffer or t is T.AllocBuffer:
            self._declare(s.buffer)
            body = getattr(s, "body", None)
            if body is not None:
                self._stmt(body, ctx)
        elif t is T.Bind:
            self.lets[s.var.__chandle__()] = s.value
            self._lets_changed()
            self._value(s.value, ctx)
        elif t is T.For:
            if not isinstance(s.extent, T.IntImm):
                raise DemandError(f"kernel {self.name}: symbolic loop extent {s.loop_var} < {s.extent} cannot be counted")
            ext = int(s.extent.value)
            kind = int(s.kind)
            unrolled = kind in (int(T.ForKind.UNROLLED), int(T.ForKind.VECTORIZED))
            if not unrolled and kind == int(T.ForKind.SERIAL):
                unrolled = (ctx.max_step > 0 and _tvm_unrolls(T, s, ctx.max_step)) or \
                    ext * _inner_trip(T, s.body) <= NVCC_AUTO_UNROLL
            if not isinstance(s.min, T.IntImm) or int(s.min.value) != 0:
                self.lets_min = True
            inner = _Ctx(ctx.loops + [_Loop(s.loop_var, ext, unrolled)], ctx.preds, ctx.max_step)
            if not unrolled:
                w = self._weight(inner)
                warps, _ = self._warps_total()
                frac, _ = self._active(ctx)
                # induction increment + compare + branch, once per NVCC_PARTIAL_UNROLL iterations
                self.inst["int_alu"] += 2 * w * warps * frac / NVCC_PARTIAL_UNROLL
                self.inst["branch"] += w * warps * frac / NVCC_PARTIAL_UNROLL
            self._stmt(s.body, inner)
        elif t is T.IfThenElse:
            w = self._weight(ctx)
            warps, _ = self._warps_total()
            frac, _ = self._active(ctx)
            self.inst["branch"] += w * warps * frac
            self._value(s.condition, ctx)
            self._stmt(s.then_case, _Ctx(ctx.loops, ctx.preds + ((s.condition, False),), ctx.max_step))
            if s.else_case is not None:
                self._stmt(s.else_case, _Ctx(ctx.loops, ctx.preds + ((s.condition, True),), ctx.max_step))
        elif t is T.BufferStore:
            self._store(s, ctx)
        elif t is T.Evaluate:
            v = s.value
            if type(v).__name__ == "Call":
                self._intrinsic(v, ctx)
        elif t is T.While:
            raise DemandError(f"kernel {self.name}: a while loop has no countable trip count")
        elif t is T.AssertStmt:
            self._stmt(s.body, ctx) if getattr(s, "body", None) is not None else None
        # Break/Continue/Return and others: nothing to count

    def _value(self, e, ctx):
        w, ints, cidx, wscale = self._stmt_weights(ctx)
        self._w_float_cur = w * wscale
        self._count_expr(e, ctx, w * wscale, ints, cidx)

    def _store(self, s, ctx):
        w, ints, cidx, wscale = self._stmt_weights(ctx)
        self._w_float_cur = w * wscale
        buf = s.buffer
        info = self.buffers.get(buf.name)
        if info is not None and info.scope == "local" and info.in_registers:
            lvl = max((self._level(i, cidx) for i in s.indices), default=0)
            if lvl > 0:
                info.in_registers = False
                self.notes.append(f"local array {buf.name} indexed by a loop variable: local memory")
        self._access(buf.name, s.indices, _dt(s.value), ctx, w * wscale, is_store=True)
        for idx in s.indices:
            self._count_index(idx, ctx, ints, cidx)
        self._count_expr(s.value, ctx, w * wscale, ints, cidx)

    def _declare(self, buf):
        scope = buf.scope()
        dtype = str(buf.dtype)
        elems = 1
        for d in buf.shape:
            if not hasattr(d, "value"):
                raise DemandError(f"kernel {self.name}: buffer {buf.name} has symbolic shape {list(buf.shape)}")
            elems *= int(d.value)
        bits = _dtype_bits(dtype) * _lanes(dtype)
        if buf.name in self.buffers:
            return
        self.buffers[buf.name] = _BufInfo(buf.name, scope, dtype, elems, bits)
        nbytes = elems * bits // 8
        if scope == "shared.dyn" and dtype in ("uint8", "int8"):
            self.dyn_smem += nbytes
        elif scope == "shared":
            self.static_smem += nbytes
        elif scope.startswith("wmma.") or scope.startswith("m16n8k8") or scope == "warp":
            self.fragment_regs += nbytes / (32 * 4)
        elif scope == "local":
            self.local_reg_bytes += nbytes

    # ---- tensor-core and other intrinsics -------------------------------------------------------
    def _frag_dtype(self, arg):
        """dtype of a fragment given the ``buf.data`` argument of a wmma intrinsic."""
        info = self.buffers.get(_data_name(arg))
        return info.dtype if info is not None else "float16"

    def _src_scope(self, arg):
        T = self.T
        if type(arg).__name__ == "Call" and arg.op.name.endswith("address_of"):
            load = arg.args[0]
            if type(load).__name__ in ("BufferLoad", "TensorLoad"):
                info = self.buffers.get(_load_name(load))
                return (info.scope if info else "global"), load
        return "shared", None

    def _intrinsic(self, call, ctx):
        op = call.op.name.split(".")[-1]
        w, ints, cidx, wscale = self._stmt_weights(ctx)
        W = w * wscale      # warp-level executions
        self._w_float_cur = W
        args = call.args
        if op == "tvm_storage_sync":
            self.inst["barrier"] += W
        elif op == "tvm_mma_sync":
            a_dt = self._frag_dtype(args[2])
            c_dt = self._frag_dtype(args[0])
            m, n, k = self._frag_shape
            flops = 2 * m * n * k
            n_hmma = max(1, flops // 4096)   # m16n8k16 HMMA = 4096 FLOP
            key = f"m16n8k16.{_TENSOR_DTYPE.get(a_dt, a_dt)}.{'f32' if c_dt == 'float32' else 'f16'}"
            self.mma[key] = self.mma.get(key, 0.0) + n_hmma * W
            self.inst["mma"] += n_hmma * W
            td = _TENSOR_DTYPE.get(a_dt, "fp16")
            self.tensor_flops[td] = self.tensor_flops.get(td, 0.0) + flops * W
        elif op == "tvm_load_matrix_sync":
            m, n, k = self._frag_shape
            dt = self._frag_dtype(args[0])
            elems = 256  # 16x16 (or 32x8 / 8x32) fragment
            nbytes = elems * _dtype_bits(dt) // 8
            scope, load = self._src_scope(args[5])
            if scope.startswith("shared"):
                self.inst["ldmatrix"] += max(1, nbytes // 512) * W   # LDSM.x4 moves 512 bytes
                self.mem["shared_load_wavefronts"] += max(1, nbytes // 128) * W
                self.mem["shared_ideal_wavefronts"] += max(1, nbytes // 128) * W
            else:
                n_inst = max(1, nbytes // (32 * 16))
                self.inst["ld_global"] += n_inst * 2 * W
                self.mem["global_load_bytes"] += nbytes * W
                self.mem["global_load_sectors"] += nbytes / 32 * W
                if load is not None:
                    self._traffic(_load_name(load), nbytes / 32 * W, is_store=False)
            self._count_expr(args[4], ctx, W, ints, cidx)
        elif op == "tvm_store_matrix_sync":
            dt = self._frag_dtype(args[0])
            nbytes = 256 * _dtype_bits(dt) // 8
            scope, load = self._src_scope(args[5])
            n_inst = max(1, nbytes // (32 * 8))     # each lane stores 8-byte pairs
            if scope.startswith("shared"):
                self.inst["st_shared"] += n_inst * W
                self.mem["shared_store_wavefronts"] += max(1, nbytes // 128) * W
                self.mem["shared_ideal_wavefronts"] += max(1, nbytes // 128) * W
            else:
                self.inst["st_global"] += n_inst * W
                self.mem["global_store_bytes"] += nbytes * W
                self.mem["global_store_sectors"] += nbytes / 32 * W
                if load is not None:
                    self._traffic(_load_name(load), nbytes / 32 * W, is_store=True)
        elif op == "tvm_fill_fragment":
            dt = self._frag_dtype(args[0])
            self.inst["int_alu"] += 256 * _dtype_bits(dt) // 8 // (32 * 4) * W
        elif op in ("ptx_mma", "ptx_mma_sp"):
            shape = str(args[0]).strip('"')
            a_dt = str(args[3]).strip('"')
            mnk = [int(x) for x in shape.replace("m", "").replace("n", " ").replace("k", " ").split()]
            flops = 2 * mnk[0] * mnk[1] * mnk[2]
            td = {"fp16": "fp16", "bf16": "bf16", "tf32": "tf32", "int8": "int8", "e4m3": "fp8",
                  "e5m2": "fp8"}.get(a_dt, "fp16")
            key = f"{shape}.{td}"
            self.mma[key] = self.mma.get(key, 0.0) + W
            self.inst["mma"] += W
            self.tensor_flops[td] = self.tensor_flops.get(td, 0.0) + flops * W
        elif op == "ptx_ldmatrix":
            num = int(args[2].value) if hasattr(args[2], "value") else 4
            self.inst["ldmatrix"] += W
            self.mem["shared_load_wavefronts"] += num * W
            self.mem["shared_ideal_wavefronts"] += num * W
        elif op in ("ptx_cp_async", "ptx_cp_async_bulk"):
            self.inst["ld_global"] += W
            self.inst["st_shared"] += W
        else:
            for a in args:
                if hasattr(a, "dtype"):
                    self._count_expr(a, ctx, W, ints, cidx)

    _frag_shape = (16, 16, 16)

    # ---- result ---------------------------------------------------------------------------------
    def _result(self) -> KernelDemand:
        def dim(ext, prefix):
            return tuple(int(ext.get(f"{prefix}.{a}", 1)) for a in "xyz")

        grid, block = dim(self.block_ext, "blockIdx"), dim(self.thread_ext, "threadIdx")
        threads = max(1, math.prod(block))
        regs = 20 + self.fragment_regs + sum(
            b.elements * max(4, b.bits // 8) / 4 for b in self.buffers.values()
            if b.scope == "local" and b.in_registers)
        regs += 2 * len([b for b in self.buffers.values() if b.scope == "global"])
        cap = max(16, min(255, 65536 // threads // 8 * 8))
        spill = max(0.0, regs - cap)
        regs = int(min(max(16, math.ceil(regs / 8) * 8), cap))
        local_bytes_per_thread = int(sum(b.elements * b.bits // 8 for b in self.buffers.values()
                                         if b.scope == "local" and not b.in_registers))
        if spill > 0:
            self.notes.append(f"register estimate exceeds the cap of {cap}: ~{int(spill)} registers spill")
            local_bytes_per_thread += int(spill * 4)
        rd = wr = l2 = 0.0
        for name, (ld, st, size) in self.global_traffic.items():
            load_b, store_b = ld * 32, st * 32
            l2 += load_b + store_b
            rd += min(load_b, size) if size else load_b
            wr += min(store_b, size) if size else store_b
        self.mem["dram_read_bytes"] = rd
        self.mem["dram_write_bytes"] = wr
        self.mem["dram_bytes"] = rd + wr
        self.mem["l2_bytes"] = l2
        launch = LaunchShape(grid=grid, block=block, static_smem_bytes=int(self.static_smem),
                             dynamic_smem_bytes=int(self.dyn_smem), registers_per_thread=regs,
                             local_bytes_per_thread=local_bytes_per_thread)
        buffers = {n: {"bytes": size, "load_sectors": ld, "store_sectors": st}
                   for n, (ld, st, size) in self.global_traffic.items()}
        return KernelDemand(name=self.name, launch=launch,
                            inst={k: float(v) for k, v in self.inst.items()},
                            mma={k: float(v) for k, v in self.mma.items()},
                            tensor_flops={k: float(v) for k, v in self.tensor_flops.items()},
                            memory={k: float(v) for k, v in self.mem.items()},
                            flops=float(self.flops), serial_iterations=float(self.max_serial),
                            global_buffers=buffers, notes=list(dict.fromkeys(self.notes)))


def _unroll_steps(T, stmt, max_step):
    """(step count, has a loop that stays a loop) of ``stmt`` under TVM's UnrollLoop rule
    (tirx/transform/unroll_loop.cc): each store/evaluate is a step; a serial loop is unrolled when
    no loop inside it stays a loop and extent x steps <= max_step."""
    t = type(stmt)
    if t is T.BufferStore or t is T.Evaluate:
        return 1, False
    if t is T.SeqStmt:
        steps, normal = 0, False
        for x in stmt.seq:
            s, n = _unroll_steps(T, x, max_step)
            steps += s
            normal = normal or n
        return steps, normal
    if t is T.For:
        s, n = _unroll_steps(T, stmt.body, max_step)
        if not isinstance(stmt.extent, T.IntImm):
            return s, True
        ext = int(stmt.extent.value)
        kind = int(stmt.kind)
        if kind == int(T.ForKind.UNROLLED) or (kind == int(T.ForKind.SERIAL) and not n and ext * s <= max_step):
            return ext * s, n
        return s, True
    if t is T.IfThenElse:
        s, n = _unroll_steps(T, stmt.then_case, max_step)
        if stmt.else_case is not None:
            s2, n2 = _unroll_steps(T, stmt.else_case, max_step)
            s, n = s + s2, n or n2
        return s, n
    if t is T.While:
        return 1, True
    body = getattr(stmt, "body", None)
    return _unroll_steps(T, body, max_step) if body is not None else (0, False)


def _tvm_unrolls(T, loop, max_step) -> bool:
    s, n = _unroll_steps(T, loop.body, max_step)
    return (not n) and int(loop.extent.value) * s <= max_step


def _inner_trip(T, stmt) -> int:
    """Largest product of loop extents along any path inside ``stmt`` (1 when it has no loop;
    a huge number for a loop without a constant extent)."""
    t = type(stmt)
    if t is T.For:
        ext = int(stmt.extent.value) if isinstance(stmt.extent, T.IntImm) else 1 << 30
        return ext * _inner_trip(T, stmt.body)
    if t is T.While:
        return 1 << 30
    if t is T.SeqStmt:
        return max((_inner_trip(T, x) for x in stmt.seq), default=1)
    if t is T.IfThenElse:
        a = _inner_trip(T, stmt.then_case)
        return max(a, _inner_trip(T, stmt.else_case)) if stmt.else_case is not None else a
    body = getattr(stmt, "body", None)
    return _inner_trip(T, body) if body is not None else 1


def _active_rows(keys, mask):
    """Flatten (S, 32, k) keys to (S, 32*k) with inactive lanes replaced by a duplicate of an
    active key of the same sample (so they add nothing); samples with no active lane are dropped."""
    mask = np.broadcast_to(mask, keys.shape[:2])
    ok = mask.any(axis=1)
    if not ok.any():
        return None
    keys, mask = keys[ok], mask[ok]
    first_active = keys[np.arange(keys.shape[0]), mask.argmax(axis=1), 0]
    keys = np.where(mask[..., None], keys, first_active[:, None, None])
    return keys.reshape(keys.shape[0], -1)


def _sorted_unique_mask(rows):
    rows = np.sort(rows, axis=1)
    new = np.ones(rows.shape, dtype=bool)
    new[:, 1:] = rows[:, 1:] != rows[:, :-1]
    return rows, new


def _rows_of(keys, mask):
    """``_active_rows`` with a shortcut: when every lane is active it returns the keys flattened."""
    if mask.all():
        return keys.reshape(keys.shape[0], -1)
    return _active_rows(keys, mask)


def _mean_unique(keys, mask) -> float:
    """Mean number of distinct keys per sample among active lanes."""
    rows = _rows_of(keys, mask)
    if rows is None:
        return 0.0
    rows = np.sort(rows, axis=1)
    n = rows.shape[0]
    # the distinct count of a row is 1 + its number of steps; the mean of integer counts is their
    # exact sum divided by n (what numpy's mean of the per-row counts computes)
    return (n + int(np.count_nonzero(rows[:, 1:] != rows[:, :-1]))) / n


def _wavefronts_of(words, mask) -> float:
    """Shared-memory wavefronts per request: the busiest bank's distinct words, at least the
    number of 128-byte transfers the distinct words need."""
    rows = _rows_of(words, mask)
    if rows is None:
        return 1.0
    rows, new = _sorted_unique_mask(rows)
    n = rows.shape[0]
    banks = (rows % 32) + 32 * np.arange(n)[:, None]
    per_bank = np.bincount(banks[new], minlength=32 * n).reshape(n, 32).max(axis=1)
    distinct = new.sum(axis=1)
    return float(np.maximum(per_bank, np.ceil(distinct * 4 / 128)).mean())


# Expression node kinds (by Python type, classified once per type; the order of the tests is the one
# the walker's traversals have always used: exact tirx.Var, immediates, binary (fields a and b), names).
_K_CONST, _K_VAR, _K_AB, _K_CALL, _K_RAMP, _K_VALUE, _K_SELECT, _K_NOT, _K_LOAD, _K_IRVAR, _K_OTHER = (
    "const", "var", "ab", "call", "ramp", "value", "select", "not", "load", "irvar", "other")
_KIND: dict = {}
_EMPTY = frozenset()


def _kind_of(T, t) -> str:
    if t is T.Var:
        k = _K_VAR
    elif t is T.IntImm or t is T.FloatImm:
        k = _K_CONST
    elif hasattr(t, "a") and hasattr(t, "b"):
        k = _K_AB
    else:
        k = {"Call": _K_CALL, "Ramp": _K_RAMP, "Broadcast": _K_VALUE, "Cast": _K_VALUE,
             "Select": _K_SELECT, "Not": _K_NOT, "BufferLoad": _K_LOAD, "TensorLoad": _K_LOAD,
             "Var": _K_IRVAR}.get(t.__name__, _K_OTHER)
    _KIND[t] = k
    return k


def _kids(x, kind) -> tuple:
    """Operands of an expression node of ``kind`` (what ``_children`` returns)."""
    if kind is _K_AB:
        return (x.a, x.b)
    if kind is _K_CALL:
        return tuple(x.args)
    if kind is _K_RAMP:
        return (x.base, x.stride)
    if kind is _K_VALUE:
        return (x.value,)
    if kind is _K_SELECT:
        return (x.condition, x.true_value, x.false_value)
    if kind is _K_NOT:
        return (x.a,)
    if kind is _K_LOAD:
        return tuple(x.indices)
    return ()


def tvm_structural_hash(e) -> int:
    import tvm_ffi
    return tvm_ffi.structural_hash(e)


def _children(x) -> list:
    name = type(x).__name__
    if hasattr(x, "a") and hasattr(x, "b"):
        return [x.a, x.b]
    if name == "Call":
        return list(x.args)
    if name == "Ramp":
        return [x.base, x.stride]
    if name in ("Broadcast", "Cast"):
        return [x.value]
    if name == "Select":
        return [x.condition, x.true_value, x.false_value]
    if name == "Not":
        return [x.a]
    if name in ("BufferLoad", "TensorLoad"):
        return list(x.indices)
    return []


def _dt(e) -> str:
    """dtype string of an expression (TVM 0.27 loads carry ``ty`` instead of ``dtype``)."""
    d = getattr(e, "dtype", None)
    if d is None:
        d = getattr(e, "ty", "int32")
    return str(d)


def _load_name(load) -> str:
    """Name of the buffer a load reads (BufferLoad.buffer or TensorLoad.source var)."""
    buf = getattr(load, "buffer", None)
    if buf is not None:
        return buf.name
    return _var_name(load.source)


def _var_name(v) -> str:
    name = getattr(v, "name", None) or getattr(v, "name_hint", None)
    return str(name) if name is not None else str(v)


def _data_name(arg) -> str:
    """Buffer name behind a ``buf.data`` argument (``tirx.buffer_data(var)`` or a plain var)."""
    if type(arg).__name__ == "Call" and arg.args:
        return _var_name(arg.args[0])
    return _var_name(arg)


def _is_pow2(v: int) -> bool:
    return v > 0 and (v & (v - 1)) == 0


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------

def analyze_kernel(name: str, func, seed: int = 0) -> KernelDemand:
    """Demand of one lowered device PrimFunc."""
    return _KernelWalker(name, func, rng_seed=seed).walk()


def extract(mod, target=None, seed: int = 0) -> list:
    """Scheduled IRModule (or PrimFunc, or Schedule) -> [KernelDemand], one per GPU kernel, in launch order."""
    if hasattr(mod, "mod") and hasattr(mod, "trace"):   # an s_tir.Schedule
        mod = mod.mod
    return [analyze_kernel(name, func, seed) for name, func in lower_to_device(mod, target)]


def default_lowering_threads() -> int:
    """Lowering threads ``extract_many`` uses by default: ``COSTPASS_LOWER_THREADS`` when set, else 0
    (serial). With N > 0, N threads lower the next modules while the calling thread walks: TVM's passes
    run in C++ with the GIL released, so this pays only where cores are idle (opt-in: on a machine whose
    cores are busy it measured slower, see benchmarks/results/bench_costmodel.md)."""
    v = os.environ.get("COSTPASS_LOWER_THREADS")
    if v is not None:
        try:
            return max(0, int(v))
        except ValueError:
            pass
    return 0


def extract_many(mods, target=None, seed: int = 0, threads: int | None = None) -> list:
    """Demand records of many scheduled modules (IRModule, PrimFunc or Schedule): one entry per module,
    in order, either its ``[KernelDemand]`` (what ``extract`` returns) or the exception ``extract`` would
    have raised (usually a DemandError).

    The records are those of ``extract``. With ``threads`` > 0 (default: ``default_lowering_threads()``)
    the TVM lowering of the next modules runs in that many background threads while this thread walks
    the lowered kernels; a lowering that fails in a thread is run again here, and if the threads cannot
    be used at all everything runs serially."""
    mods = [m.mod if hasattr(m, "mod") and hasattr(m, "trace") else m for m in mods]
    target = target or default_target()
    threads = default_lowering_threads() if threads is None else max(0, int(threads))

    def walk(kernels):
        try:
            return [analyze_kernel(name, func, seed) for name, func in kernels]
        except Exception as e:  # noqa: BLE001 - returned to the caller in place of the records
            return e

    def serial(m):
        try:
            kernels = lower_to_device(m, target)
        except Exception as e:  # noqa: BLE001
            return e
        return walk(kernels)

    if threads == 0 or len(mods) < 2:
        return [serial(m) for m in mods]
    try:
        import sys
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="costpass-lower")
    except Exception:  # noqa: BLE001 - no threads here: serial
        return [serial(m) for m in mods]
    out = []
    window = 2 * threads + 1        # lowered modules waiting for the walk (bounded memory)
    # the lowering threads need the GIL for a moment between TVM calls; hand it over quickly
    # instead of after the default 5 ms of walking
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, 0.0002))
    try:
        futures = {}
        for i, m in enumerate(mods):
            while len(futures) < window and i + len(futures) < len(mods):
                j = i + len(futures)
                try:
                    futures[j] = pool.submit(_lower_ir, mods[j], target)
                except Exception:  # noqa: BLE001 - the pool refused work: lower here
                    break
            fut = futures.pop(i, None)
            try:
                lowered = fut.result() if fut is not None else _lower_ir(m, target)
            except Exception:  # noqa: BLE001 - lowered again in this thread: its result (or error) stands
                out.append(serial(m))
                continue
            try:
                kernels = _device_kernels(lowered)
            except Exception as e:  # noqa: BLE001
                out.append(e)
                continue
            out.append(walk(kernels))
    finally:
        sys.setswitchinterval(switch)
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def demand_pass(target=None, seed: int = 0):
    """A ``tvm.transform`` module pass: returns the module unchanged, with the demand records attached
    as the module attribute ``costpass.demand`` (a JSON string, one object per kernel)."""
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="costpass.DemandPass")
    def _pass(mod, _ctx):
        records = extract(mod, target=target, seed=seed)
        return mod.with_attr("costpass.demand", json.dumps([r.to_dict() for r in records]))

    return _pass


def demands_of(mod) -> list:
    """Read the records that ``demand_pass`` attached to a module."""
    text = mod.attrs["costpass.demand"] if mod.attrs is not None and "costpass.demand" in mod.attrs else None
    if text is None:
        raise DemandError("module carries no costpass.demand attribute: run costpass.demand_pass() first")
    return [KernelDemand.from_dict(d) for d in json.loads(str(text))]
