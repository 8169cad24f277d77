# FMA-bound: each thread keeps 16 accumulators in registers and runs 512 x 16 dependent-free FMAs
# (unrolled inner loop), then writes them out (coalesced). 2^20 threads.
# Expected bottleneck: the FP32 FMA pipe (on H100 the issue slot is exactly as fast: a tie).
@I.ir_module
class Module:
    @T.prim_func
    def main(X: T.Buffer((1048576,), "float32"), Y: T.Buffer((16777216,), "float32")):
        T.func_attr({"global_symbol": "main", "tirx.noalias": True})
        for bx in T.thread_binding(4096, thread="blockIdx.x"):
            for tx in T.thread_binding(256, thread="threadIdx.x"):
                acc = T.alloc_buffer((16,), "float32", scope="local")
                x = T.alloc_buffer((1,), "float32", scope="local")
                x[0] = X[bx * 256 + tx]
                for u in T.unroll(16):
                    acc[u] = T.float32(u)
                for k in T.unroll(512):
                    for u in T.unroll(16):
                        acc[u] = acc[u] * x[0] + T.float32(0.5)
                for u in T.unroll(16):
                    Y[u * 1048576 + bx * 256 + tx] = acc[u]
