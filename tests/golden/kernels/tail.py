# A 1.05-wave grid on H100: 277 blocks of 1024 threads; 2 blocks fit on an SM (2048 threads), so
# 264 run in the first wave and the last 13 blocks run on 7 of the 132 SMs. Each block does enough
# FMA work that the launch overhead does not dominate.
@I.ir_module
class Module:
    @T.prim_func
    def main(X: T.Buffer((283648,), "float32"), Y: T.Buffer((283648,), "float32")):
        T.func_attr({"global_symbol": "main", "tirx.noalias": True})
        for bx in T.thread_binding(277, thread="blockIdx.x"):
            for tx in T.thread_binding(1024, thread="threadIdx.x"):
                acc = T.alloc_buffer((8,), "float32", scope="local")
                for u in T.unroll(8):
                    acc[u] = X[bx * 1024 + tx]
                for k in range(512):
                    for u in T.unroll(8):
                        acc[u] = acc[u] * acc[u] + T.float32(0.25)
                Y[bx * 1024 + tx] = acc[0] + acc[7]
