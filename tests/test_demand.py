"""Demand of tiny kernels counted by hand (see the docstrings in tests/kernels.py)."""
import json

import pytest
import tvm
from tvm import te

import kernels
from costpass import demand


def one(mod):
    ds = demand.extract(mod)
    assert len(ds) == 1
    return ds[0]


def test_vector_add_counts():
    n, threads = 1 << 20, 256
    d = one(kernels.vector_add(n, threads))
    warps = n // 32
    assert d.launch.grid == (n // threads, 1, 1) and d.launch.block == (threads, 1, 1)
    assert d.inst["fp32_add"] == warps
    assert d.inst["ld_global"] == 2 * warps
    assert d.inst["st_global"] == warps
    # a warp reads 32 consecutive floats = 128 bytes = 4 sectors per load
    assert d.memory["global_load_sectors"] == 2 * warps * 4
    assert d.memory["global_store_sectors"] == warps * 4
    assert d.memory["global_load_bytes"] == 2 * n * 4
    assert d.memory["dram_bytes"] == 3 * n * 4
    assert d.inst["mma"] == 0 and d.inst["sfu"] == 0


def test_uncoalesced_loads_touch_one_sector_per_lane():
    n = 1 << 20
    d = one(kernels.strided_copy(n, stride=32))
    warps = n // 32
    assert d.memory["global_load_sectors"] == warps * 32     # 32 distinct sectors per request
    assert d.memory["global_store_sectors"] == warps * 4
    assert d.memory["dram_bytes"] == 2 * n * 4                # each byte still read once from DRAM


def test_sectors_reread_by_a_warps_inner_loop_reach_l2_once():
    n, chunk = 1 << 20, 8
    d = one(kernels.chunked_copy(n, chunk))
    warps = n // chunk // 32
    # each load: 32 lanes x 4 bytes, lanes 32 bytes apart -> 32 sectors at L1, for each of the 8 iterations
    assert d.inst["ld_global"] == warps * chunk
    assert d.memory["global_load_sectors"] == warps * chunk * 32
    # over the inner loop a warp touches those same 32 sectors only: L2 sees each once
    assert d.global_buffers["A"]["load_sectors"] == warps * 32
    assert d.global_buffers["B"]["store_sectors"] == warps * chunk * 32   # stores are not merged in L1
    assert d.memory["l2_bytes"] == warps * 32 * 32 + warps * chunk * 32 * 32
    assert d.memory["dram_bytes"] == 2 * n * 4


def test_tiled_fp32_gemm_counts():
    M = N = K = 256
    d = one(kernels.tiled_gemm_fp32(M, N, K, tile=32, ktile=16, thread=16))
    warps = (M // 32) * (N // 32) * (16 * 16 // 32)          # 64 blocks x 8 warps
    assert d.launch.static_smem_bytes == 2 * 32 * 16 * 4
    assert d.inst["fp32_fma"] == M * N * K / 32
    assert d.inst["ld_global"] == warps * 4 * (K // 16)       # 2 A + 2 B loads per thread per k-tile
    assert d.inst["st_shared"] == warps * 4 * (K // 16)
    assert d.inst["st_global"] == warps * 4                   # 2x2 outputs per thread
    # inner product: A_shared depends on i (2 values), B_shared on j (2 values): 4 LDS per k
    assert d.inst["ld_shared"] == warps * 4 * K
    assert d.inst["barrier"] == warps * 2 * (K // 16)
    assert d.inst["ld_local"] == 0 and d.inst["st_local"] == 0   # 2x2 accumulators stay in registers
    # A_shared[ty*32 + ...]: the warp's two threadIdx.y rows hit the same bank: 2 wavefronts;
    # B_shared[k*32 + 2*tx + j]: 16 distinct banks: 1 wavefront. (2*2 + 2*1) per 4 requests
    assert d.memory["shared_load_wavefronts"] == warps * K * 6
    assert d.memory["dram_bytes"] == (M * K + K * N + M * N) * 4


def test_shared_bank_conflict_and_padding():
    blocks = 1024
    conflict = one(kernels.shared_transpose(pad=0, blocks=blocks))
    padded = one(kernels.shared_transpose(pad=1, blocks=blocks))
    reads = blocks * 32        # one warp per block, 32 column reads each
    assert conflict.inst["ld_shared"] == reads
    assert conflict.memory["shared_load_wavefronts"] == reads * 32   # 32-way conflict
    assert padded.memory["shared_load_wavefronts"] == reads * 1
    assert padded.memory["shared_store_wavefronts"] == reads * 1


def test_multi_kernel_module_gives_one_record_per_kernel_in_launch_order():
    rows, cols = 256, 1024
    ds = demand.extract(kernels.softmax_rows(rows, cols))
    assert [d.name for d in ds] == ["main_kernel", "main_kernel_1", "main_kernel_2", "main_kernel_3"]
    exp_kernel = ds[1]
    assert exp_kernel.inst["sfu"] == rows * cols / 32                # one MUFU.EX2 per element
    assert exp_kernel.launch.grid == (rows * cols // 128, 1, 1)
    # the k == 0 initialisation store runs once per row, not once per iteration
    assert ds[0].inst["st_global"] == pytest.approx(rows * cols / 32 + rows / 32, rel=1e-6)


def test_wmma_gemm_counts_tensor_core_instructions():
    from tvm.s_tir import meta_schedule as ms
    import tvm.s_tir as s_tir
    M = N = K = 512
    A = te.placeholder((M, K), "float16", name="A")
    B = te.placeholder((K, N), "float16", name="B")
    k = te.reduce_axis((0, K), "k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k].astype("float32") * B[k, j].astype("float32"), axis=k), name="C")
    mod = tvm.IRModule({"main": te.create_prim_func([A, B, C])})
    target = demand.default_target()
    ctx = ms.TuneContext(mod=mod, target=target, space_generator="post-order-apply",
                         search_strategy="evolutionary", task_name="mm", rand_state=1, num_threads=1)
    space = ctx.space_generator.generate_design_space(mod)[0]
    found = None
    for seed in range(1, 400):
        tr = s_tir.Trace(space.trace.simplified(remove_postproc=True).insts, {})
        sch = s_tir.Schedule(mod, seed=seed)
        tr.apply_to_schedule(sch, remove_postproc=True)
        sch.enter_postproc()
        if all(p.apply(sch) for p in ctx.space_generator.postprocs):
            found = sch
            break
    assert found is not None
    d = one(found.mod)
    # any schedule of this GEMM executes 2*M*N*K FLOP on tensor cores = that / 4096 m16n8k16 HMMAs
    assert d.tensor_flops == {"fp16": 2 * M * N * K}
    assert d.inst["mma"] == 2 * M * N * K / 4096
    assert d.mma == {"m16n8k16.fp16.f32": 2 * M * N * K / 4096}
    assert d.memory["dram_bytes"] == M * K * 2 + K * N * 2 + M * N * 4


def test_demand_pass_in_sequential_attaches_records():
    mod = kernels.vector_add(1 << 12)
    seq = tvm.transform.Sequential([demand.demand_pass()])
    out = seq(mod)
    recs = demand.demands_of(out)
    assert len(recs) == 1 and recs[0].inst["fp32_add"] == (1 << 12) / 32
    assert json.loads(str(out.attrs["costpass.demand"]))[0]["launch"]["block"] == [256, 1, 1]


def test_module_without_thread_bindings_is_refused():
    A = te.placeholder((1024,), "float32", name="A")
    B = te.compute((1024,), lambda i: A[i] * 2.0, name="B")
    mod = tvm.IRModule({"main": te.create_prim_func([A, B])})
    with pytest.raises(demand.DemandError):
        demand.extract(mod)


def test_symbolic_extent_is_refused():
    import tvm.s_tir as s_tir
    n = te.var("n")
    A = te.placeholder((n,), "float32", name="A")
    B = te.compute((n,), lambda i: A[i] + 1.0, name="B")
    sch = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([A, B])}))
    (i,) = sch.get_loops(sch.get_sblock("B"))
    bx, tx = sch.split(i, [None, 128])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    with pytest.raises(demand.DemandError, match="symbolic"):
        demand.extract(sch.mod)


def test_record_round_trip():
    d = one(kernels.vector_add(1 << 12))
    again = type(d).from_dict(json.loads(json.dumps(d.to_dict())))
    assert again == d
