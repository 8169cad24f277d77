"""A Llama-style decoder block in ``tvm.relax.frontend.nn`` (fp16), for ``costpass compile``.

    from schedules import llama_block as L
    mod, args = L.build(L.CONFIGS["llama3-8b"], L.shape("decode", kv=512))

One block as in Llama 3 (``transformers``' ``LlamaDecoderLayer``)::

    h = x + o_proj(attention(rope(q), rope(k), v))      q, k, v = split(qkv_proj(rms_norm(x)))
    y = h + down_proj(silu(gate) * up)                  gate, up = split(gate_up_proj(rms_norm(h)))

* The Q/K/V projections are one fused ``qkv_proj`` and gate/up one ``gate_up_proj`` (as MLC-LLM does);
  the torch reference uses the same fused weights. Projections accumulate in fp32 and cast to fp16.
* Rotary embedding in the rotate-half form with ``cos``/``sin`` tables ``[seq, head_dim]`` passed in as
  inputs (``transformers`` passes them to the layer as ``position_embeddings``); :func:`rope_tables` makes
  them for positions ``past .. past + seq - 1``.
* Grouped-query attention without copying K/V per query head: the ``heads / kv_heads`` query heads of a
  group are stacked along the sequence axis, so each K/V head serves one batched matmul. Scores are scaled
  by ``1/sqrt(head_dim)`` in fp32, causally masked (a query at position ``past + i`` sees keys ``0 ..
  past + i``), soft-maxed in fp32 and cast to fp16 (``transformers``' eager attention does the same).
* Shapes are static. ``kv`` is the number of keys attended to, the new token(s) included: decode is
  ``seq=1`` with a cache of ``past = kv - 1`` earlier tokens (inputs ``k_cache``, ``v_cache``, concatenated
  with the new K/V); prefill is ``seq = kv`` with no cache. The block returns the new hidden state only.

The Relax ``main`` takes the inputs first, then the weights (:func:`arg_specs` lists them in call order),
so that the same random weights can be handed to the compiled library and to the torch reference
(:func:`reference_torch`). :func:`reference_numpy` is the same block in numpy (fp32 math), for tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict


@dataclass(frozen=True)
class LlamaConfig:
    hidden: int = 4096
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    intermediate: int = 14336
    rms_eps: float = 1e-5
    rope_theta: float = 500000.0
    dtype: str = "float16"

    def to_dict(self) -> dict:
        return asdict(self)


CONFIGS = {
    # Llama-3-8B (config.json of meta-llama/Meta-Llama-3-8B: hidden 4096, 32 heads, 8 KV heads,
    # intermediate 14336, rms_norm_eps 1e-5, rope_theta 500000)
    "llama3-8b": LlamaConfig(),
    # small widths for tests (same structure: GQA with 2 query heads per KV head)
    "tiny": LlamaConfig(hidden=256, heads=4, kv_heads=2, head_dim=64, intermediate=512),
}


@dataclass(frozen=True)
class BlockShape:
    name: str      # "decode" | "prefill"
    batch: int
    seq: int       # new tokens
    kv: int        # keys attended to (new tokens included)

    @property
    def past(self) -> int:
        return self.kv - self.seq

    def to_dict(self) -> dict:
        return {"name": self.name, "batch": self.batch, "seq": self.seq, "kv": self.kv, "past": self.past}

    def label(self) -> str:
        if self.name == "decode":
            return f"decode batch {self.batch}, kv {self.kv}"
        return f"prefill batch {self.batch}, seq {self.seq}"


def shape(name: str, *, batch: int = 1, seq: int | None = None, kv: int | None = None) -> BlockShape:
    """``shape("decode", kv=512)`` (seq 1) or ``shape("prefill", seq=512)`` (kv = seq)."""
    if name == "decode":
        s = 1 if seq is None else seq
        k = 512 if kv is None else kv
    elif name == "prefill":
        s = 512 if seq is None else seq
        k = s if kv is None else kv
    else:
        raise ValueError(f"unknown shape {name!r} (decode, prefill)")
    if batch < 1 or s < 1 or k < s:
        raise ValueError(f"bad shape {name}: batch {batch}, seq {s}, kv {k} (need batch, seq >= 1, kv >= seq)")
    return BlockShape(name, int(batch), int(s), int(k))


def get_config(name: str) -> LlamaConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown config {name!r} (known: {', '.join(CONFIGS)})") from None


# ------------------------------------------------------------------------------------------------------
# Arguments
# ------------------------------------------------------------------------------------------------------

def input_specs(c: LlamaConfig, s: BlockShape) -> list:
    """[(name, shape, dtype)] of the block's inputs, in call order."""
    out = [("x", (s.batch, s.seq, c.hidden), c.dtype),
           ("cos", (s.seq, c.head_dim), c.dtype),
           ("sin", (s.seq, c.head_dim), c.dtype)]
    if s.past:
        out += [("k_cache", (s.batch, s.past, c.kv_heads, c.head_dim), c.dtype),
                ("v_cache", (s.batch, s.past, c.kv_heads, c.head_dim), c.dtype)]
    return out


def weight_specs(c: LlamaConfig) -> list:
    """[(name, shape, dtype)] of the weights in call order (torch ``nn.Linear`` layout: [out, in])."""
    qkv = (c.heads + 2 * c.kv_heads) * c.head_dim
    return [("input_layernorm.weight", (c.hidden,), c.dtype),
            ("qkv_proj.weight", (qkv, c.hidden), c.dtype),
            ("o_proj.weight", (c.hidden, c.heads * c.head_dim), c.dtype),
            ("post_attention_layernorm.weight", (c.hidden,), c.dtype),
            ("gate_up_proj.weight", (2 * c.intermediate, c.hidden), c.dtype),
            ("down_proj.weight", (c.hidden, c.intermediate), c.dtype)]


def arg_specs(c: LlamaConfig, s: BlockShape) -> list:
    """[{name, shape, dtype, kind}] of the Relax ``main`` arguments in call order."""
    return ([{"name": n, "shape": list(sh), "dtype": dt, "kind": "input"} for n, sh, dt in input_specs(c, s)]
            + [{"name": n, "shape": list(sh), "dtype": dt, "kind": "weight"} for n, sh, dt in weight_specs(c)])


def rope_tables(c: LlamaConfig, s: BlockShape):
    """(cos, sin) as numpy float32 arrays [seq, head_dim] for positions past .. past + seq - 1."""
    import numpy as np
    inv = 1.0 / (c.rope_theta ** (np.arange(0, c.head_dim, 2, dtype=np.float64) / c.head_dim))
    pos = np.arange(s.past, s.past + s.seq, dtype=np.float64)
    f = np.outer(pos, inv)
    emb = np.concatenate([f, f], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def random_args(c: LlamaConfig, s: BlockShape, seed: int = 0) -> dict:
    """name -> numpy array (fp16) for every argument: N(0, 1) activations and caches, weights scaled by
    1/sqrt(fan_in) (norm weights around 1) so that activations stay O(1), rope tables from :func:`rope_tables`."""
    import numpy as np
    rng = np.random.default_rng(seed)
    out = {}
    cos, sin = rope_tables(c, s)
    for n, sh, dt in input_specs(c, s):
        if n == "cos":
            out[n] = cos.astype(dt)
        elif n == "sin":
            out[n] = sin.astype(dt)
        else:
            out[n] = rng.standard_normal(sh, dtype=np.float32).astype(dt)
    for n, sh, dt in weight_specs(c):
        if len(sh) == 1:
            out[n] = (1.0 + 0.1 * rng.standard_normal(sh, dtype=np.float32)).astype(dt)
        else:
            out[n] = (rng.standard_normal(sh, dtype=np.float32) / math.sqrt(sh[1])).astype(dt)
    return out


# ------------------------------------------------------------------------------------------------------
# The Relax model
# ------------------------------------------------------------------------------------------------------

def _module_class():
    from tvm import te, tirx
    from tvm.relax.frontend import nn
    from tvm.relax.frontend.nn import op

    class LlamaBlock(nn.Module):
        def __init__(self, c: LlamaConfig, s: BlockShape):
            self.c, self.s = c, s
            qkv = (c.heads + 2 * c.kv_heads) * c.head_dim
            self.input_layernorm = nn.RMSNorm(c.hidden, -1, c.rms_eps, bias=False, dtype=c.dtype)
            self.qkv_proj = nn.Linear(c.hidden, qkv, bias=False, dtype=c.dtype, out_dtype="float32")
            self.o_proj = nn.Linear(c.heads * c.head_dim, c.hidden, bias=False, dtype=c.dtype, out_dtype="float32")
            self.post_attention_layernorm = nn.RMSNorm(c.hidden, -1, c.rms_eps, bias=False, dtype=c.dtype)
            self.gate_up_proj = nn.Linear(c.hidden, 2 * c.intermediate, bias=False, dtype=c.dtype,
                                          out_dtype="float32")
            self.down_proj = nn.Linear(c.intermediate, c.hidden, bias=False, dtype=c.dtype, out_dtype="float32")

        def _heads(self, qkv, first, count, cos=None, sin=None, name="heads"):
            """Heads first .. first + count - 1 of qkv [b, s, H + 2KV, d], rotated (rotate-half rotary
            embedding with cos/sin [s, d]) when cos is given. One single-output operator per q, k, v:
            MetaSchedule's AutoInline breaks a fused rope + multi-output split in TVM 0.27."""
            c = self.c
            half = c.head_dim // 2

            def f(x, *cs_sn):
                def g(b, i, h, d):
                    if not cs_sn:
                        return x[b, i, first + h, d]
                    cs, sn = cs_sn
                    xf = x[b, i, first + h, d].astype("float32")
                    other = tirx.if_then_else(d < half, -x[b, i, first + h, d + half].astype("float32"),
                                              x[b, i, first + h, d - half].astype("float32"))
                    return (xf * cs[i, d].astype("float32") + other * sn[i, d].astype("float32")).astype(c.dtype)
                return te.compute((x.shape[0], x.shape[1], count, x.shape[3]), g, name=name)
            return op.tensor_expr_op(f, name, [qkv] + ([cos, sin] if cos is not None else []))

        def _masked_scale(self, scores):
            """fp32 scale and causal mask of the grouped scores [b, KV, rep * s, kv]."""
            c, s = self.c, self.s
            scale = 1.0 / math.sqrt(c.head_dim)

            def f(x):
                def g(b, h, r, j):
                    v = x[b, h, r, j] * tirx.const(scale, "float32")
                    if s.seq == 1:
                        return v
                    i = tirx.floormod(r, s.seq)
                    return tirx.if_then_else(j <= i + s.past, v, tirx.min_value("float32"))
                return te.compute(x.shape, g, name="masked_scores")
            return op.tensor_expr_op(f, "masked_scale", [scores])

        def forward(self, x, cos, sin, k_cache=None, v_cache=None):
            c, s = self.c, self.s
            b, n, rep = s.batch, s.seq, c.heads // c.kv_heads
            h = self.input_layernorm(x)
            qkv = op.astype(self.qkv_proj(h), c.dtype)
            qkv = op.reshape(qkv, (b, n, c.heads + 2 * c.kv_heads, c.head_dim))
            q = self._heads(qkv, 0, c.heads, cos, sin, "rope_q")
            k = self._heads(qkv, c.heads, c.kv_heads, cos, sin, "rope_k")
            v = self._heads(qkv, c.heads + c.kv_heads, c.kv_heads, name="take_v")
            if s.past:
                k = op.concat([k_cache, k], dim=1)                         # [b, kv, KV, d]
                v = op.concat([v_cache, v], dim=1)
            q = op.permute_dims(q, [0, 2, 1, 3])                            # [b, H, n, d]
            q = op.reshape(q, (b, c.kv_heads, rep * n, c.head_dim))          # heads of a group stacked
            kt = op.permute_dims(k, [0, 2, 3, 1])                           # [b, KV, d, kv]
            scores = op.matmul(q, kt, out_dtype="float32")                  # [b, KV, rep*n, kv]
            p = op.astype(op.softmax(self._masked_scale(scores), axis=-1), c.dtype)
            vv = op.permute_dims(v, [0, 2, 1, 3])                           # [b, KV, kv, d]
            o = op.astype(op.matmul(p, vv, out_dtype="float32"), c.dtype)   # [b, KV, rep*n, d]
            o = op.reshape(o, (b, c.heads, n, c.head_dim))
            o = op.reshape(op.permute_dims(o, [0, 2, 1, 3]), (b, n, c.heads * c.head_dim))
            x = x + op.astype(self.o_proj(o), c.dtype)
            h = self.post_attention_layernorm(x)
            gate, up = op.split(op.astype(self.gate_up_proj(h), c.dtype), 2, axis=-1)
            return x + op.astype(self.down_proj(op.silu(gate) * up), c.dtype)

    return LlamaBlock


def build(c: LlamaConfig, s: BlockShape):
    """(IRModule with the Relax function ``main``, arg_specs) of one block. ``main`` takes the inputs, then
    the weights, in :func:`arg_specs` order, and returns the new hidden state [batch, seq, hidden] (fp16)."""
    from tvm.relax.frontend import nn

    block = _module_class()(c, s)
    names = {id(p): n for n, p in block.named_parameters()}
    order = [n for n, _, _ in weight_specs(c)]
    assert sorted(order) == sorted(names.values()), (order, names)
    ins = {n: nn.spec.Tensor(list(sh), dt) for n, sh, dt in input_specs(c, s)}
    mod, params = block.export_tvm(spec={"forward": ins}, debug=False)
    got = [n for n, _ in params]
    assert got == order, f"weight order {got} != {order}"
    mod = _rename_main(mod)
    return mod, arg_specs(c, s)


def _rename_main(mod):
    """export_tvm names the function ``forward``; the VM and ``compile_relax`` expect ``main``."""
    import tvm
    from tvm import relax
    out = tvm.IRModule()
    for gv, f in mod.functions_items():
        if gv.name_hint == "forward":
            out["main"] = f.with_attr("global_symbol", "main")
        elif not isinstance(f, relax.Function) or gv.name_hint != "_initialize_effect":
            out[gv] = f
    return out


# ------------------------------------------------------------------------------------------------------
# References
# ------------------------------------------------------------------------------------------------------

def reference_numpy(c: LlamaConfig, s: BlockShape, a: dict):
    """The block in numpy, fp32 math with fp16 rounding where the Relax model casts (for tests)."""
    import numpy as np
    f32, f16 = np.float32, np.float16
    b, n, rep, d = s.batch, s.seq, c.heads // c.kv_heads, c.head_dim

    def rms(x, w):
        x = x.astype(f32)
        return (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + c.rms_eps) * w.astype(f32)).astype(f16)

    def lin(x, w):
        return (x.astype(f32) @ w.astype(f32).T).astype(f16)

    def rope(t):   # t [b, n, heads, d]
        t32 = t.astype(f32)
        rot = np.concatenate([-t32[..., d // 2:], t32[..., :d // 2]], axis=-1)
        cs, sn = a["cos"].astype(f32)[None, :, None, :], a["sin"].astype(f32)[None, :, None, :]
        return (t32 * cs + rot * sn).astype(f16)

    x = a["x"]
    qkv = lin(rms(x, a["input_layernorm.weight"]), a["qkv_proj.weight"]).reshape(b, n, -1, d)
    q = rope(qkv[:, :, :c.heads])
    k = rope(qkv[:, :, c.heads:c.heads + c.kv_heads])
    v = qkv[:, :, c.heads + c.kv_heads:]
    if s.past:
        k = np.concatenate([a["k_cache"], k], axis=1)
        v = np.concatenate([a["v_cache"], v], axis=1)
    q = q.transpose(0, 2, 1, 3).astype(f32)                       # [b, H, n, d]
    kk = np.repeat(k.transpose(0, 2, 1, 3), rep, axis=1).astype(f32)   # [b, H, kv, d]
    vv = np.repeat(v.transpose(0, 2, 1, 3), rep, axis=1).astype(f32)
    sc = q @ kk.transpose(0, 1, 3, 2) / math.sqrt(d)
    allowed = np.arange(s.kv)[None, :] <= (np.arange(n)[:, None] + s.past)
    sc = np.where(allowed, sc, -np.inf)
    p = np.exp(sc - sc.max(-1, keepdims=True))
    p = (p / p.sum(-1, keepdims=True)).astype(f16).astype(f32)
    o = (p @ vv).astype(f16).transpose(0, 2, 1, 3).reshape(b, n, -1)
    h = (x.astype(f32) + lin(o, a["o_proj.weight"]).astype(f32)).astype(f16)
    gu = lin(rms(h, a["post_attention_layernorm.weight"]), a["gate_up_proj.weight"]).astype(f32)
    g, u = gu[..., :c.intermediate], gu[..., c.intermediate:]
    m = (g / (1 + np.exp(-g)) * u).astype(f16)
    return (h.astype(f32) + lin(m, a["down_proj.weight"]).astype(f32)).astype(f16)


def reference_torch(c: LlamaConfig, s: BlockShape, a: dict):
    """The block in torch (what a user runs without TVM): ``a`` maps names to fp16 CUDA tensors.
    Attention is ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels) with GQA."""
    import torch
    import torch.nn.functional as F
    b, n, d = s.batch, s.seq, c.head_dim

    def rms(x, w):
        return F.rms_norm(x, (c.hidden,), w, c.rms_eps)

    def rope(t):   # [b, heads, n, d]
        cs, sn = a["cos"][None, None], a["sin"][None, None]
        rot = torch.cat([-t[..., d // 2:], t[..., :d // 2]], dim=-1)
        return t * cs + rot * sn

    x = a["x"]
    qkv = F.linear(rms(x, a["input_layernorm.weight"]), a["qkv_proj.weight"]).view(b, n, -1, d)
    qkv = qkv.transpose(1, 2)                                        # [b, heads, n, d]
    q = rope(qkv[:, :c.heads])
    k = rope(qkv[:, c.heads:c.heads + c.kv_heads])
    v = qkv[:, c.heads + c.kv_heads:]
    if s.past:
        k = torch.cat([a["k_cache"].transpose(1, 2), k], dim=2)
        v = torch.cat([a["v_cache"].transpose(1, 2), v], dim=2)
    if n == 1:
        o = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    else:
        mask = torch.arange(s.kv, device=x.device)[None, :] <= (torch.arange(n, device=x.device)[:, None] + s.past)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True) if s.past else \
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    h = x + F.linear(o.transpose(1, 2).reshape(b, n, -1), a["o_proj.weight"])
    gate, up = F.linear(rms(h, a["post_attention_layernorm.weight"]), a["gate_up_proj.weight"]).chunk(2, dim=-1)
    return h + F.linear(F.silu(gate) * up, a["down_proj.weight"])
