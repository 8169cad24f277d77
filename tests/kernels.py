"""Tiny hand-scheduled kernels whose demand can be counted by hand (shared by several tests)."""
import tvm
from tvm import te
import tvm.s_tir as s_tir


def _mod(*tensors):
    return tvm.IRModule({"main": te.create_prim_func(list(tensors))})


def vector_add(n=1 << 20, threads=256):
    """C[i] = A[i] + B[i]: one fp32 add, two coalesced loads, one store per thread."""
    A = te.placeholder((n,), "float32", name="A")
    B = te.placeholder((n,), "float32", name="B")
    C = te.compute((n,), lambda i: A[i] + B[i], name="C")
    sch = s_tir.Schedule(_mod(A, B, C))
    (i,) = sch.get_loops(sch.get_sblock("C"))
    bx, tx = sch.split(i, [None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return sch.mod


def strided_copy(n=1 << 20, stride=32, threads=256):
    """B[i] = A[(i % (n/stride)) * stride + i / (n/stride)]: each lane of a warp reads another sector."""
    rows = n // stride
    A = te.placeholder((n,), "float32", name="A")
    B = te.compute((n,), lambda i: A[(i % rows) * stride + i // rows], name="B")
    sch = s_tir.Schedule(_mod(A, B))
    (i,) = sch.get_loops(sch.get_sblock("B"))
    bx, tx = sch.split(i, [None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return sch.mod


def chunked_copy(n=1 << 20, chunk=8, threads=256):
    """B[i] = A[i], each thread copying ``chunk`` consecutive floats, one per iteration of an inner loop:
    a warp's load touches one sector per lane (lanes are ``chunk`` floats apart), and the next iterations
    touch the same sectors again (hits in L1)."""
    A = te.placeholder((n,), "float32", name="A")
    B = te.compute((n,), lambda i: A[i], name="B")
    sch = s_tir.Schedule(_mod(A, B))
    (i,) = sch.get_loops(sch.get_sblock("B"))
    bx, tx, j = sch.split(i, [None, threads, chunk])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return sch.mod


def tiled_gemm_fp32(M=256, N=256, K=256, tile=32, ktile=16, thread=16):
    """C = A @ B in fp32: blocks of tile x tile outputs, thread x thread threads (2x2 outputs each),
    A and B tiles staged through shared memory."""
    A = te.placeholder((M, K), "float32", name="A")
    B = te.placeholder((K, N), "float32", name="B")
    k = te.reduce_axis((0, K), "k")
    C = te.compute((M, N), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    sch = s_tir.Schedule(_mod(A, B, C))
    blk = sch.get_sblock("C")
    i, j, kk = sch.get_loops(blk)
    per = tile // thread
    bi, ti, ii = sch.split(i, [None, thread, per])
    bj, tj, jj = sch.split(j, [None, thread, per])
    ko, ki = sch.split(kk, [None, ktile])
    sch.reorder(bi, bj, ti, tj, ko, ki, ii, jj)
    sch.bind(bi, "blockIdx.y")
    sch.bind(bj, "blockIdx.x")
    sch.bind(ti, "threadIdx.y")
    sch.bind(tj, "threadIdx.x")
    for idx in (0, 1):
        cache = sch.cache_read(blk, idx, "shared")
        sch.compute_at(cache, ko)
        fused = sch.fuse(*sch.get_loops(cache)[-2:])
        _, cy, cx = sch.split(fused, [None, thread, thread])
        sch.bind(cy, "threadIdx.y")
        sch.bind(cx, "threadIdx.x")
    cw = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(cw, tj)
    sch.decompose_reduction(blk, ko)
    return sch.mod


def shared_transpose(n=32, pad=0, blocks=1024):
    """Each block copies a 32x32 tile into shared memory row-wise and reads it back column-wise;
    with pad=0 the column reads hit one bank 32 times (32-way conflict), with pad=1 none."""
    A = te.placeholder((blocks, n, n), "float32", name="A")
    B = te.compute((blocks, n, n), lambda b, i, j: A[b, j, i], name="B")
    sch = s_tir.Schedule(_mod(A, B))
    blk = sch.get_sblock("B")
    b, i, j = sch.get_loops(blk)
    sch.bind(b, "blockIdx.x")
    sch.bind(j, "threadIdx.x")
    cache = sch.cache_read(blk, 0, "shared")
    sch.compute_at(cache, b)
    _, ci, cj = sch.get_loops(cache)
    sch.bind(cj, "threadIdx.x")
    if pad:
        sch.storage_align(cache, 0, axis=1, factor=n, offset=pad)
    return sch.mod


def softmax_rows(rows=256, cols=1024, threads=128):
    """Four-stage softmax, one kernel per stage: row max and row sum with one thread per row
    (serial loop over cols), exp and normalise elementwise."""
    X = te.placeholder((rows, cols), "float32", name="X")
    k = te.reduce_axis((0, cols), "k")
    mx = te.compute((rows,), lambda r: te.max(X[r, k], axis=k), name="row_max")
    k2 = te.reduce_axis((0, cols), "k2")
    ex = te.compute((rows, cols), lambda r, c: te.exp(X[r, c] - mx[r]), name="exp")
    sm = te.compute((rows,), lambda r: te.sum(ex[r, k2], axis=k2), name="row_sum")
    out = te.compute((rows, cols), lambda r, c: ex[r, c] / sm[r], name="out")
    sch = s_tir.Schedule(_mod(X, out))
    for name in ("row_max", "row_sum"):
        blk = sch.get_sblock(name)
        r, _ = sch.get_loops(blk)
        bx, tx = sch.split(r, [None, threads])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
    for name in ("exp", "out"):
        blk = sch.get_sblock(name)
        fused = sch.fuse(*sch.get_loops(blk))
        bx, tx = sch.split(fused, [None, threads])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
    return sch.mod
