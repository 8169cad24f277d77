# SFU-heavy: each thread applies exp 256 times to a value held in a register. 2^20 threads.
# Expected bottleneck: the special-function unit (XU).
@I.ir_module
class Module:
    @T.prim_func
    def main(X: T.Buffer((1048576,), "float32"), Y: T.Buffer((1048576,), "float32")):
        T.func_attr({"global_symbol": "main", "tirx.noalias": True})
        for bx in T.thread_binding(4096, thread="blockIdx.x"):
            for tx in T.thread_binding(256, thread="threadIdx.x"):
                v = T.alloc_buffer((1,), "float32", scope="local")
                v[0] = X[bx * 256 + tx]
                for k in T.unroll(256):
                    v[0] = T.exp2(v[0])
                Y[bx * 256 + tx] = v[0]
