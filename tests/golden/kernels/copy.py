# Memory-bound copy: B = A, 2^24 fp32 (64 MB each way), one element per thread, coalesced.
# Expected bottleneck: DRAM bandwidth.
@I.ir_module
class Module:
    @T.prim_func
    def main(A: T.Buffer((16777216,), "float32"), B: T.Buffer((16777216,), "float32")):
        T.func_attr({"global_symbol": "main", "tirx.noalias": True})
        for bx in T.thread_binding(65536, thread="blockIdx.x"):
            for tx in T.thread_binding(256, thread="threadIdx.x"):
                B[bx * 256 + tx] = A[bx * 256 + tx]
