# costpass example: row softmax of Llama-3-8B attention scores at prefill: 32 heads x 512 queries, 512 keys, fp32
# workload softmax_attn_fp32 (schedules/workloads.py); candidate 82135ca24f1cceb5 (random, seed 1740503243).
# Chosen as the lowest analytical estimate on h100 (32.8 us) among 56 MetaSchedule candidates
# (median 36.1 us). Regenerate: python -m costpass.examples.make_examples softmax_attn_fp32
# from tvm.script import ir as I
# from tvm.script import tirx as T
# from tvm.tirx.layout import Axis

@I.ir_module
class Module:
    @T.prim_func(s_tir=True)
    def main(X: T.Buffer((16384, 512), "float32"), Y: T.Buffer((16384, 512), "float32")):
        T.func_attr({"tirx.noalias": True})
        # with T.sblock("root"):
        row_max_shared = T.sblock_alloc_buffer((16384,), scope="shared")
        row_sum_shared = T.sblock_alloc_buffer((16384,), scope="shared")
        for i_fused in T.thread_binding(16384, thread="blockIdx.x", annotations={"pragma_auto_unroll_max_step": 16, "pragma_unroll_explicit": 1}):
            for ax0, ax1_0 in T.grid(1, 16):
                for ax1_1 in T.thread_binding(32, thread="threadIdx.x"):
                    with T.sblock("row_max"):
                        v_i = T.axis.spatial(16384, i_fused + ax0)
                        v_k1 = T.axis.reduce(512, ax1_0 * 32 + ax1_1)
                        T.reads(X[v_i, v_k1])
                        T.writes(row_max_shared[v_i])
                        with T.init():
                            row_max_shared[v_i] = T.float32(-340282346638528859811704183484516925440.0)
                        row_max_shared[v_i] = T.max(row_max_shared[v_i], X[v_i, v_k1])
            for ax0, ax1_0 in T.grid(1, 16):
                for ax1_1 in T.thread_binding(32, thread="threadIdx.x"):
                    with T.sblock("row_sum"):
                        v_i = T.axis.spatial(16384, i_fused + ax0)
                        v_k2 = T.axis.reduce(512, ax1_0 * 32 + ax1_1)
                        T.reads(X[v_i, v_k2], row_max_shared[v_i])
                        T.writes(row_sum_shared[v_i])
                        with T.init():
                            row_sum_shared[v_i] = T.float32(0.0)
                        row_sum_shared[v_i] = row_sum_shared[v_i] + T.exp(X[v_i, v_k2] - row_max_shared[v_i])
            for j_0 in range(16):
                for j_1 in T.thread_binding(32, thread="threadIdx.x"):
                    with T.sblock("Y"):
                        v_i = T.axis.spatial(16384, i_fused)
                        v_j = T.axis.spatial(512, j_0 * 32 + j_1)
                        T.reads(X[v_i, v_j], row_max_shared[v_i], row_sum_shared[v_i])
                        T.writes(Y[v_i, v_j])
                        Y[v_i, v_j] = T.exp(X[v_i, v_j] - row_max_shared[v_i]) / row_sum_shared[v_i]