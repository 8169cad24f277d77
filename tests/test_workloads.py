"""Workload registry: every workload lowers to a PrimFunc; FLOP / byte counts checked by hand and by TIR."""
import math

import pytest

from schedules import workloads as W

_B = {"float16": 2, "bfloat16": 2, "float32": 4}


def test_registry_size_and_families():
    names = W.names()
    assert len(names) >= 34
    assert len(set(names)) == len(names)
    fams = {W.get(n).family for n in names}
    assert {"llm", "cnn", "blas"} <= fams
    dts = {W.get(n).dtype for n in names}
    assert {"float16", "bfloat16", "float32"} <= dts


@pytest.mark.parametrize("name", W.names())
def test_workload_builds_primfunc(name):
    wl = W.get(name)
    mod = wl.mod()
    f = mod["main"]
    specs = wl.arg_specs()
    assert len(f.params) == len(specs)
    for p, (shape, dtype) in zip(f.params, specs):
        buf = f.buffer_map[p] if hasattr(f, "buffer_map") else p  # TVM 0.27: params are buffer vars
        assert tuple(int(s) for s in buf.shape) == tuple(shape)
        assert str(buf.dtype) == dtype
    assert wl.min_bytes == sum(math.prod(s) * _B[d] for s, d in specs)
    assert wl.flops >= 0 and wl.min_bytes > 0


def _reduction_iterations(mod):
    """Iteration counts (product of iterator extents) of the blocks that have a reduction iterator."""
    from tvm import s_tir

    sch = s_tir.Schedule(mod)
    found = []
    for b in sch.get_child_blocks(sch.get_sblock("root", func_name="main")):
        ivs = list(sch.get(b).iter_vars)
        if any(int(iv.iter_type) == 2 for iv in ivs):  # kCommReduce
            found.append(math.prod(int(iv.dom.extent) for iv in ivs))
    return found


@pytest.mark.parametrize("name", [n for n in W.names() if "K" in W.get(n).params or n.startswith("conv")
                                  or n == "attn_pv_fp16"])
def test_matmul_like_flops_equal_twice_the_reduction_iterations(name):
    wl = W.get(name)
    its = _reduction_iterations(wl.mod())
    assert len(its) == 1, its
    assert wl.flops == 2 * its[0]


def test_hand_checked_counts():
    # Llama-3 8B fused QKV at 512 tokens: N = 32*128 + 2*8*128 = 6144
    q = W.get("llama3_8b_qkv_fp16")
    assert q.flops == 2 * 512 * 6144 * 4096 == 25_769_803_776
    assert q.min_bytes == 2 * (512 * 4096 + 6144 * 4096 + 512 * 6144) == 60_817_408
    # ResNet-50 conv2_x 3x3, batch 8, fp32: X and Y are 8x56x56x64, W is 3x3x64x64
    c = W.get("conv_r50_c2_3x3_fp32")
    assert c.flops == 2 * 8 * 56 * 56 * 64 * 64 * 9 == 1_849_688_064
    assert c.min_bytes == 4 * (2 * 8 * 56 * 56 * 64 + 9 * 64 * 64) == 12_992_512
    # RMSNorm 2048 x 4096 fp16: x, weight, y; 4 ops per element + 3 per row
    r = W.get("rmsnorm_4096_fp16")
    assert r.flops == 4 * 2048 * 4096 + 3 * 2048
    assert r.min_bytes == 2 * (2 * 2048 * 4096 + 4096) == 33_562_624
    # GQA QK^T: K has 8 heads (read once), scores fp32
    a = W.get("attn_qk_gqa_fp16")
    assert a.min_bytes == 2 * 32 * 512 * 128 + 2 * 8 * 512 * 128 + 4 * 32 * 512 * 512


def test_get_suggests_names():
    with pytest.raises(KeyError) as e:
        W.get("llama3_8b_qkv")
    assert "llama3_8b_qkv_fp16" in str(e.value)
    assert isinstance(e.value, W.UnknownWorkload)
