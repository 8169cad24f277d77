"""Named, parameterised workloads written in TE, turned into TensorIR with ``te.create_prim_func``.

Every workload is a :class:`Workload`: ``mod()`` gives an ``IRModule`` whose PrimFunc is ``"main"``,
``arg_specs()`` the ``(shape, dtype)`` of each argument in call order (inputs first, output last).

Counting conventions (used by ``flops`` and ``min_bytes``):

* ``flops``: one multiply-add is 2 FLOP (GEMM, conv, GEMV: ``2*M*N*K``). For the other operators every
  arithmetic operation on one element counts 1 (add, sub, mul, div, max, exp, rsqrt, compare); casts,
  copies and index arithmetic count 0. Each workload's builder says what it counted.
* ``min_bytes``: every input read once plus every output written once (sum of argument sizes). The
  padding stage of a convolution is an intermediate, not an argument, and is not counted.

Shapes are real layer shapes (Llama-3 8B/70B, Qwen2-7B, Mixtral, DeepSeek-V2-Lite, ResNet-50,
MobileNetV2) at sizes a poor schedule still finishes in reasonable time on one H100 (prefill M=512).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

import tvm
from tvm import te, tirx

_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "int32": 4, "int8": 1}


def _nbytes(shape, dtype) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n * _BYTES[dtype]


@dataclass
class Workload:
    name: str
    family: str          # "llm" | "cnn" | "blas"
    dtype: str           # main input dtype
    params: dict
    flops: float
    min_bytes: float
    description: str
    _tensors: Callable[[], list] = field(repr=False, compare=False, default=None)

    def prim_func(self) -> tirx.PrimFunc:
        return te.create_prim_func(self._tensors())

    def mod(self) -> tvm.IRModule:
        return tvm.IRModule({"main": self.prim_func()})

    def arg_specs(self) -> list:
        return [(tuple(int(s) for s in t.shape), str(t.dtype)) for t in self._tensors()]


_REGISTRY: dict[str, Workload] = {}


def _register(name, family, dtype, params, flops, description, tensors_fn):
    ts = tensors_fn()
    min_bytes = sum(_nbytes(t.shape, str(t.dtype)) for t in ts)
    w = Workload(name, family, dtype, dict(params), float(flops), float(min_bytes), description, tensors_fn)
    assert name not in _REGISTRY, name
    _REGISTRY[name] = w
    return w


def names() -> list[str]:
    return list(_REGISTRY)


def all_workloads() -> list[Workload]:
    return list(_REGISTRY.values())


class UnknownWorkload(KeyError):
    pass


def get(name: str) -> Workload:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.4)
        raise UnknownWorkload(f"unknown workload {name!r}; did you mean: {', '.join(close) or '(none close)'}") \
            from None


# ---------------------------------------------------------------------------------------------
# TE builders (each returns the list of argument tensors, inputs first, output last)
# ---------------------------------------------------------------------------------------------

def _dtype(x) -> str:
    d = getattr(x, "dtype", None)
    return str(d) if d is not None else str(x.ty)


def _cast(x, dtype):
    return x if _dtype(x) == dtype else x.astype(dtype)


def _epilogue(C, out_dtype, name="out"):
    """Cast the accumulator to the output dtype as a separate (inlinable) stage."""
    if str(C.dtype) == out_dtype:
        return C
    return te.compute(C.shape, lambda *i: C(*i).astype(out_dtype), name=name)


def te_linear(M, N, K, dtype, acc="float32", out=None):
    """Y[M,N] = X[M,K] @ W[N,K]^T (torch ``nn.Linear`` layout), accumulate in ``acc``."""
    out = out or dtype
    X = te.placeholder((M, K), dtype, name="X")
    W = te.placeholder((N, K), dtype, name="W")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(_cast(X[i, k], acc) * _cast(W[j, k], acc), axis=k), name="C")
    return [X, W, _epilogue(C, out)]


def te_matmul_nn(M, N, K, dtype, acc=None, out=None):
    """C[M,N] = A[M,K] @ B[K,N]."""
    acc = acc or dtype
    out = out or dtype
    A = te.placeholder((M, K), dtype, name="A")
    B = te.placeholder((K, N), dtype, name="B")
    k = te.reduce_axis((0, K), name="k")
    C = te.compute((M, N), lambda i, j: te.sum(_cast(A[i, k], acc) * _cast(B[k, j], acc), axis=k), name="C")
    return [A, B, _epilogue(C, out)]


def te_attn_qk(H, Hkv, S, D, dtype, acc="float32"):
    """Scores[h,i,j] = scale * sum_d Q[h,i,d] K[h//(H/Hkv),j,d] (grouped-query attention), fp32 out."""
    g = H // Hkv
    Q = te.placeholder((H, S, D), dtype, name="Q")
    Kt = te.placeholder((Hkv, S, D), dtype, name="K")
    d = te.reduce_axis((0, D), name="d")
    C = te.compute((H, S, S), lambda h, i, j: te.sum(_cast(Q[h, i, d], acc) * _cast(Kt[h // g, j, d], acc), axis=d),
                   name="C")
    scale = 1.0 / float(D) ** 0.5
    Sc = te.compute((H, S, S), lambda h, i, j: C[h, i, j] * tvm.tirx.const(scale, acc), name="scores")
    return [Q, Kt, Sc]


def te_attn_pv(H, S, D, dtype, acc="float32", out=None):
    """O[h,i,d] = sum_j P[h,i,j] V[h,j,d]."""
    P = te.placeholder((H, S, S), dtype, name="P")
    V = te.placeholder((H, S, D), dtype, name="V")
    j = te.reduce_axis((0, S), name="j")
    C = te.compute((H, S, D), lambda h, i, d: te.sum(_cast(P[h, i, j], acc) * _cast(V[h, j, d], acc), axis=j),
                   name="C")
    return [P, V, _epilogue(C, out or dtype)]


def te_softmax(R, C, dtype, acc="float32"):
    """Row softmax: max, exp-sum, normalise (5 ops/element: max, sub, exp, add, div)."""
    X = te.placeholder((R, C), dtype, name="X")
    k1 = te.reduce_axis((0, C), name="k1")
    mx = te.compute((R,), lambda i: te.max(_cast(X[i, k1], acc), axis=k1), name="row_max")
    e = te.compute((R, C), lambda i, j: te.exp(_cast(X[i, j], acc) - mx[i]), name="exp")
    k2 = te.reduce_axis((0, C), name="k2")
    s = te.compute((R,), lambda i: te.sum(e[i, k2], axis=k2), name="row_sum")
    Y = te.compute((R, C), lambda i, j: _cast(e[i, j] / s[i], dtype), name="Y")
    return [X, Y]


def te_rmsnorm(R, C, dtype, acc="float32", eps=1e-5):
    """y = x * rsqrt(mean(x^2) + eps) * w. Per element: square, add, mul, mul (4); per row: div, add, rsqrt."""
    X = te.placeholder((R, C), dtype, name="X")
    Wt = te.placeholder((C,), dtype, name="weight")
    k = te.reduce_axis((0, C), name="k")
    ss = te.compute((R,), lambda i: te.sum(_cast(X[i, k], acc) * _cast(X[i, k], acc), axis=k), name="sumsq")
    r = te.compute((R,), lambda i: te.rsqrt(ss[i] / tvm.tirx.const(C, acc) + tvm.tirx.const(eps, acc)), name="rstd")
    Y = te.compute((R, C), lambda i, j: _cast(_cast(X[i, j], acc) * r[i] * _cast(Wt[j], acc), dtype), name="Y")
    return [X, Wt, Y]


def te_layernorm(R, C, dtype, acc="float32", eps=1e-5):
    """y = (x-mean)*rsqrt(var+eps)*g+b. Per element: sum (1), sumsq (2), sub, mul, mul, add (4) = 7;
    per row: 2 div, mul, sub, add, rsqrt = 6."""
    X = te.placeholder((R, C), dtype, name="X")
    G = te.placeholder((C,), dtype, name="gamma")
    B = te.placeholder((C,), dtype, name="beta")
    k1 = te.reduce_axis((0, C), name="k1")
    k2 = te.reduce_axis((0, C), name="k2")
    s1 = te.compute((R,), lambda i: te.sum(_cast(X[i, k1], acc), axis=k1), name="sum")
    s2 = te.compute((R,), lambda i: te.sum(_cast(X[i, k2], acc) * _cast(X[i, k2], acc), axis=k2), name="sumsq")
    n = tvm.tirx.const(C, acc)
    mean = te.compute((R,), lambda i: s1[i] / n, name="mean")
    rstd = te.compute((R,), lambda i: te.rsqrt(s2[i] / n - mean[i] * mean[i] + tvm.tirx.const(eps, acc)),
                      name="rstd")
    Y = te.compute((R, C), lambda i, j: _cast((_cast(X[i, j], acc) - mean[i]) * rstd[i] * _cast(G[j], acc)
                                              + _cast(B[j], acc), dtype), name="Y")
    return [X, G, B, Y]


def te_rope(S, H, D, dtype, acc="float32"):
    """Rotary embedding (rotate-half form), x[S,H,D], cos/sin[S,D/2]: 3 ops/element (mul, mul, add/sub)."""
    half = D // 2
    X = te.placeholder((S, H, D), dtype, name="X")
    cos = te.placeholder((S, half), dtype, name="cos")
    sin = te.placeholder((S, half), dtype, name="sin")

    def f(s, h, d):
        x = _cast(X[s, h, d], acc)
        lo = d < half
        dd = te.if_then_else(lo, d, d - half)
        other = _cast(te.if_then_else(lo, X[s, h, d + half], X[s, h, d - half]), acc)
        sign = te.if_then_else(lo, tvm.tirx.const(-1.0, acc), tvm.tirx.const(1.0, acc))
        return _cast(x * _cast(cos[s, dd], acc) + sign * other * _cast(sin[s, dd], acc), dtype)

    return [X, cos, sin, te.compute((S, H, D), f, name="Y")]


def te_silu_mul(M, F, dtype, acc="float32"):
    """Y[m,f] = silu(X[m,f]) * X[m,F+f] on a fused gate|up tensor: 5 ops/output (neg, exp, add, div, mul)."""
    X = te.placeholder((M, 2 * F), dtype, name="X")

    def f(m, j):
        g = _cast(X[m, j], acc)
        u = _cast(X[m, j + F], acc)
        return _cast(g / (tvm.tirx.const(1.0, acc) + te.exp(-g)) * u, dtype)

    return [X, te.compute((M, F), f, name="Y")]


def te_add(shape, dtype):
    A = te.placeholder(shape, dtype, name="A")
    B = te.placeholder(shape, dtype, name="B")
    return [A, B, te.compute(shape, lambda *i: A(*i) + B(*i), name="Y")]


def te_permute(shape, perm, dtype):
    X = te.placeholder(shape, dtype, name="X")
    out_shape = tuple(shape[p] for p in perm)
    inv = [perm.index(i) for i in range(len(perm))]
    return [X, te.compute(out_shape, lambda *o: X(*[o[inv[i]] for i in range(len(shape))]), name="Y")]


def te_row_reduce(R, C, dtype, kind):
    X = te.placeholder((R, C), dtype, name="X")
    k = te.reduce_axis((0, C), name="k")
    op = te.sum if kind == "sum" else te.max
    return [X, te.compute((R,), lambda i: op(X[i, k], axis=k), name="Y")]


def _pad_nhwc(X, pad, name="pad"):
    if pad == 0:
        return X
    N, H, W, C = (int(s) for s in X.shape)
    zero = tvm.tirx.const(0, X.dtype)
    return te.compute(
        (N, H + 2 * pad, W + 2 * pad, C),
        lambda n, h, w, c: te.if_then_else(
            tvm.tirx.all(h >= pad, h < H + pad, w >= pad, w < W + pad), X[n, h - pad, w - pad, c], zero),
        name=name)


def te_conv2d_nhwc(N, H, W, C, K, R, S, stride, pad, dtype, acc=None, out=None):
    """NHWC input, HWIO (R,S,C,K) weights."""
    acc = acc or dtype
    X = te.placeholder((N, H, W, C), dtype, name="X")
    Wt = te.placeholder((R, S, C, K), dtype, name="W")
    P = _pad_nhwc(X, pad)
    OH = (H + 2 * pad - R) // stride + 1
    OW = (W + 2 * pad - S) // stride + 1
    r = te.reduce_axis((0, R), name="r")
    s = te.reduce_axis((0, S), name="s")
    c = te.reduce_axis((0, C), name="c")
    Y = te.compute((N, OH, OW, K), lambda n, h, w, k: te.sum(
        _cast(P[n, h * stride + r, w * stride + s, c], acc) * _cast(Wt[r, s, c, k], acc), axis=[r, s, c]),
        name="conv")
    return [X, Wt, _epilogue(Y, out or dtype)]


def te_depthwise_nhwc(N, H, W, C, R, stride, pad, dtype, acc=None):
    acc = acc or dtype
    X = te.placeholder((N, H, W, C), dtype, name="X")
    Wt = te.placeholder((R, R, C), dtype, name="W")
    P = _pad_nhwc(X, pad)
    OH = (H + 2 * pad - R) // stride + 1
    OW = (W + 2 * pad - R) // stride + 1
    r = te.reduce_axis((0, R), name="r")
    s = te.reduce_axis((0, R), name="s")
    Y = te.compute((N, OH, OW, C), lambda n, h, w, c: te.sum(
        _cast(P[n, h * stride + r, w * stride + s, c], acc) * _cast(Wt[r, s, c], acc), axis=[r, s]), name="dwconv")
    return [X, Wt, _epilogue(Y, dtype)]


def te_maxpool_nhwc(N, H, W, C, R, stride, pad, dtype):
    X = te.placeholder((N, H, W, C), dtype, name="X")
    P = X
    if pad:
        P = te.compute((N, H + 2 * pad, W + 2 * pad, C), lambda n, h, w, c: te.if_then_else(
            tvm.tirx.all(h >= pad, h < H + pad, w >= pad, w < W + pad), X[n, h - pad, w - pad, c],
            tvm.tirx.min_value(dtype)), name="pad")
    OH = (H + 2 * pad - R) // stride + 1
    OW = (W + 2 * pad - R) // stride + 1
    r = te.reduce_axis((0, R), name="r")
    s = te.reduce_axis((0, R), name="s")
    return [X, te.compute((N, OH, OW, C), lambda n, h, w, c: te.max(
        P[n, h * stride + r, w * stride + s, c], axis=[r, s]), name="Y")]


def te_global_avgpool_nhwc(N, H, W, C, dtype):
    X = te.placeholder((N, H, W, C), dtype, name="X")
    r = te.reduce_axis((0, H), name="r")
    s = te.reduce_axis((0, W), name="s")
    S = te.compute((N, C), lambda n, c: te.sum(X[n, r, s, c], axis=[r, s]), name="sum")
    return [X, te.compute((N, C), lambda n, c: S[n, c] / tvm.tirx.const(H * W, dtype), name="Y")]


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

def _linear(name, M, N, K, dtype, desc, family="llm", out=None):
    _register(name, family, dtype, dict(M=M, N=N, K=K, layout="X[M,K] W[N,K]", acc="float32"), 2.0 * M * N * K,
              desc, lambda: te_linear(M, N, K, dtype, "float32", out))


# LLM prefill GEMMs (M = 512 tokens), fp16 / bf16 in, fp32 accumulate, out in the input dtype.
_linear("llama3_8b_qkv_fp16", 512, 6144, 4096, "float16", "Llama-3 8B fused QKV projection (32 q + 2x8 kv heads x 128)")
_linear("llama3_8b_o_proj_fp16", 512, 4096, 4096, "float16", "Llama-3 8B attention output projection")
_linear("llama3_8b_gate_fp16", 512, 14336, 4096, "float16", "Llama-3 8B MLP gate (= up) projection")
_linear("llama3_8b_down_fp16", 512, 4096, 14336, "float16", "Llama-3 8B MLP down projection")
_linear("llama3_8b_qkv_bf16", 512, 6144, 4096, "bfloat16", "Llama-3 8B fused QKV projection, bf16")
_linear("llama3_8b_o_proj_bf16", 512, 4096, 4096, "bfloat16", "Llama-3 8B attention output projection, bf16")
_linear("llama3_70b_o_proj_fp16", 512, 8192, 8192, "float16", "Llama-3 70B attention output projection")
_linear("qwen2_7b_qkv_bf16", 512, 4608, 3584, "bfloat16", "Qwen2-7B fused QKV (28 q + 2x4 kv heads x 128), bf16")
_linear("qwen2_7b_down_fp16", 512, 3584, 18944, "float16", "Qwen2-7B MLP down projection")
_linear("mixtral_expert_w1_fp16", 128, 14336, 4096, "float16",
        "Mixtral 8x7B one expert's w1 (gate) for 128 routed tokens (512 tokens x top-2 / 8 experts)")
_linear("deepseek_v2l_expert_gate_up_fp16", 64, 2816, 2048, "float16",
        "DeepSeek-V2-Lite one routed expert, fused gate|up (2x1408) for 64 tokens")
_linear("deepseek_v2l_mla_kv_a_fp16", 512, 576, 2048, "float16",
        "DeepSeek-V2-Lite MLA kv_a_proj_with_mqa (kv_lora_rank 512 + rope 64)")

# Decode GEMV (batch 1).
_linear("gemv_llama3_8b_qkv_fp16", 1, 6144, 4096, "float16", "Llama-3 8B decode fused QKV, batch 1")
_linear("gemv_llama3_8b_down_fp16", 1, 4096, 14336, "float16", "Llama-3 8B decode MLP down, batch 1")
_linear("gemv_llama3_70b_gate_fp16", 1, 28672, 8192, "float16", "Llama-3 70B decode MLP gate, batch 1")
_register("gemv_fp32_4096", "blas", "float32", dict(M=1, N=4096, K=4096, layout="X[M,K] W[N,K]"),
          2.0 * 4096 * 4096, "fp32 GEMV 4096x4096", lambda: te_linear(1, 4096, 4096, "float32", "float32"))

# Attention matmuls (Llama-3 8B: 32 heads, 8 kv heads, head dim 128, seq 512).
_register("attn_qk_gqa_fp16", "llm", "float16", dict(H=32, Hkv=8, S=512, D=128),
          2.0 * 32 * 512 * 512 * 128 + 32 * 512 * 512,
          "Llama-3 8B prefill QK^T * scale, grouped-query (4 q heads per kv head), fp32 scores (2HS^2D + HS^2 scale)",
          lambda: te_attn_qk(32, 8, 512, 128, "float16"))
_register("attn_pv_fp16", "llm", "float16", dict(H=32, S=512, D=128), 2.0 * 32 * 512 * 512 * 128,
          "Llama-3 8B prefill P @ V, fp16 out", lambda: te_attn_pv(32, 512, 128, "float16"))

# Softmax, norms, elementwise.
_register("softmax_attn_fp32", "llm", "float32", dict(R=32 * 512, C=512), 5.0 * 32 * 512 * 512,
          "attention-score softmax over rows (32 heads x 512 queries, 512 keys)", lambda: te_softmax(32 * 512, 512, "float32"))
_register("softmax_logits_fp16", "llm", "float16", dict(R=4096, C=32000), 5.0 * 4096 * 32000,
          "vocabulary softmax (4096 rows x 32000 logits), fp32 internally", lambda: te_softmax(4096, 32000, "float16"))
_register("rmsnorm_4096_fp16", "llm", "float16", dict(R=2048, C=4096), 4.0 * 2048 * 4096 + 3 * 2048,
          "RMSNorm, Llama-3 8B hidden 4096, 2048 rows", lambda: te_rmsnorm(2048, 4096, "float16"))
_register("rmsnorm_8192_fp16", "llm", "float16", dict(R=1024, C=8192), 4.0 * 1024 * 8192 + 3 * 1024,
          "RMSNorm, Llama-3 70B hidden 8192, 1024 rows", lambda: te_rmsnorm(1024, 8192, "float16"))
_register("layernorm_4096_fp32", "llm", "float32", dict(R=2048, C=4096), 7.0 * 2048 * 4096 + 6 * 2048,
          "LayerNorm with affine, hidden 4096, 2048 rows", lambda: te_layernorm(2048, 4096, "float32"))
_register("rope_llama3_fp16", "llm", "float16", dict(S=512, H=32, D=128), 3.0 * 512 * 32 * 128,
          "rotary embedding on Llama-3 8B queries (512 tokens, 32 heads, dim 128)", lambda: te_rope(512, 32, 128, "float16"))
_register("silu_mul_14336_fp16", "llm", "float16", dict(M=512, F=14336), 5.0 * 512 * 14336,
          "SiLU(gate) * up on a fused [512, 2x14336] tensor (Llama-3 8B MLP)", lambda: te_silu_mul(512, 14336, "float16"))
_register("residual_add_fp16", "llm", "float16", dict(shape=(2048, 4096)), 1.0 * 2048 * 4096,
          "residual add, 2048 x 4096", lambda: te_add((2048, 4096), "float16"))
_register("transpose_heads_fp16", "llm", "float16", dict(shape=(512, 32, 128), perm=(1, 0, 2)), 0.0,
          "[seq, heads, dim] -> [heads, seq, dim] copy", lambda: te_permute((512, 32, 128), (1, 0, 2), "float16"))
_register("transpose2d_fp32", "blas", "float32", dict(shape=(4096, 4096), perm=(1, 0)), 0.0,
          "4096 x 4096 matrix transpose", lambda: te_permute((4096, 4096), (1, 0), "float32"))
_register("row_sum_fp32", "blas", "float32", dict(R=4096, C=4096), 1.0 * 4096 * 4096,
          "row sums of a 4096 x 4096 matrix", lambda: te_row_reduce(4096, 4096, "float32", "sum"))
_register("row_max_fp32", "blas", "float32", dict(R=16384, C=512), 1.0 * 16384 * 512,
          "row max of a 16384 x 512 matrix", lambda: te_row_reduce(16384, 512, "float32", "max"))


# CNN (NHWC, batch 8).
def _conv(name, N, H, W, C, K, R, stride, pad, dtype, desc):
    OH = (H + 2 * pad - R) // stride + 1
    OW = (W + 2 * pad - R) // stride + 1
    acc = "float32"
    _register(name, "cnn", dtype, dict(N=N, H=H, W=W, C=C, K=K, R=R, S=R, stride=stride, pad=pad, layout="NHWC/HWIO",
                                       acc=acc),
              2.0 * N * OH * OW * K * R * R * C, desc,
              lambda: te_conv2d_nhwc(N, H, W, C, K, R, R, stride, pad, dtype, acc, dtype))


_conv("conv_r50_c2_3x3_fp16", 8, 56, 56, 64, 64, 3, 1, 1, "float16", "ResNet-50 conv2_x 3x3, 56x56x64->64")
_conv("conv_r50_c2_3x3_fp32", 8, 56, 56, 64, 64, 3, 1, 1, "float32", "ResNet-50 conv2_x 3x3, 56x56x64->64, fp32")
_conv("conv_r50_c3_3x3_fp16", 8, 28, 28, 128, 128, 3, 1, 1, "float16", "ResNet-50 conv3_x 3x3, 28x28x128->128")
_conv("conv_r50_c4_1x1_fp16", 8, 14, 14, 256, 1024, 1, 1, 0, "float16", "ResNet-50 conv4_x 1x1 expand, 14x14x256->1024")
_conv("conv_r50_c4_1x1_fp32", 8, 14, 14, 1024, 256, 1, 1, 0, "float32", "ResNet-50 conv4_x 1x1 reduce, 14x14x1024->256")
_conv("conv_r50_c3_3x3s2_fp32", 8, 56, 56, 128, 128, 3, 2, 1, "float32",
      "ResNet-50 v1.5 conv3_1 3x3 stride 2, 56x56x128->28x28x128")
_conv("conv_r50_stem_7x7s2_fp32", 8, 224, 224, 3, 64, 7, 2, 3, "float32", "ResNet-50 stem 7x7 stride 2, 224x224x3->64")

_register("dwconv_mbv2_3x3_fp32", "cnn", "float32", dict(N=8, H=56, W=56, C=144, R=3, stride=1, pad=1),
          2.0 * 8 * 56 * 56 * 144 * 9, "MobileNetV2 depthwise 3x3, 56x56x144",
          lambda: te_depthwise_nhwc(8, 56, 56, 144, 3, 1, 1, "float32"))
_register("dwconv_mbv2_3x3s2_fp16", "cnn", "float16", dict(N=8, H=112, W=112, C=96, R=3, stride=2, pad=1),
          2.0 * 8 * 56 * 56 * 96 * 9, "MobileNetV2 depthwise 3x3 stride 2, 112x112x96 -> 56x56 (fp32 accumulate)",
          lambda: te_depthwise_nhwc(8, 112, 112, 96, 3, 2, 1, "float16", "float32"))
_register("maxpool_r50_3x3s2_fp16", "cnn", "float16", dict(N=8, H=112, W=112, C=64, R=3, stride=2, pad=1),
          9.0 * 8 * 56 * 56 * 64, "ResNet-50 max pool 3x3 stride 2, 112x112x64 -> 56x56 (9 compares/output)",
          lambda: te_maxpool_nhwc(8, 112, 112, 64, 3, 2, 1, "float16"))
_register("avgpool_r50_global_fp32", "cnn", "float32", dict(N=8, H=7, W=7, C=2048),
          8.0 * 2048 * (49 + 1), "ResNet-50 global average pool 7x7x2048 (49 adds + 1 div per output)",
          lambda: te_global_avgpool_nhwc(8, 7, 7, 2048, "float32"))

# Plain GEMM / BLAS.
_register("gemm_fp32_1024", "blas", "float32", dict(M=1024, N=1024, K=1024, layout="A[M,K] B[K,N]"),
          2.0 * 1024 ** 3, "fp32 GEMM 1024^3", lambda: te_matmul_nn(1024, 1024, 1024, "float32"))
_register("gemm_fp32_4096x4096x1024", "blas", "float32", dict(M=4096, N=4096, K=1024, layout="A[M,K] B[K,N]"),
          2.0 * 4096 * 4096 * 1024, "fp32 GEMM M=N=4096, K=1024", lambda: te_matmul_nn(4096, 4096, 1024, "float32"))
_register("gemm_fp16_1024", "blas", "float16", dict(M=1024, N=1024, K=1024, layout="A[M,K] B[K,N]", acc="float32"),
          2.0 * 1024 ** 3, "fp16 GEMM 1024^3, fp32 accumulate and output",
          lambda: te_matmul_nn(1024, 1024, 1024, "float16", "float32", "float32"))
