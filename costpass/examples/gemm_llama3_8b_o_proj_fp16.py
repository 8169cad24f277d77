# costpass example: Llama-3-8B attention output projection at prefill: Y[512,4096] = X[512,4096] @ W[4096,4096]^T, fp16 in, fp32 accumulate, tensor cores (wmma)
# workload llama3_8b_o_proj_fp16 (schedules/workloads.py); candidate 463ba5e87b9362b9 (evolved, seed 7).
# Chosen as the lowest analytical estimate on h100 (64.3 us) among 56 MetaSchedule candidates
# (median 96.2 us). Regenerate: python -m costpass.examples.make_examples gemm_llama3_8b_o_proj_fp16
# from tvm.script import ir as I
# from tvm.script import tirx as T
# from tvm.tirx.layout import Axis

@I.ir_module
class Module:
    @T.prim_func(s_tir=True)
    def main(X: T.Buffer((512, 4096), "float16"), W: T.Buffer((4096, 4096), "float16"), out: T.Buffer((512, 4096), "float16")):
        T.func_attr({"tirx.noalias": True})
        # with T.sblock("root"):
        C_reindex_shared_dyn = T.sblock_alloc_buffer((16, 64, 2, 4, 16, 16), scope="shared.dyn")
        C_reindex_shared_dyn_wmma_accumulator = T.sblock_alloc_buffer((16, 64, 2, 4, 16, 16), scope="wmma.accumulator")
        X_reindex_shared_dyn = T.sblock_alloc_buffer((512, 4096), "float16", scope="shared.dyn")
        W_reindex_shared_dyn = T.sblock_alloc_buffer((4096, 4096), "float16", scope="shared.dyn")
        X_reindex_shared_dyn_wmma_matrix_a = T.sblock_alloc_buffer((512, 4096), "float16", scope="wmma.matrix_a")
        W_reindex_shared_dyn_wmma_matrix_b = T.sblock_alloc_buffer((4096, 4096), "float16", scope="wmma.matrix_b")
        for ax0_0_0_ax1_0_0_fused in T.thread_binding(64, thread="blockIdx.y", annotations={"pragma_auto_unroll_max_step": 256, "pragma_unroll_explicit": 1}):
            for ax0_0_1_ax1_0_1_fused in T.thread_binding(2, thread="blockIdx.x"):
                for ax0_0_2_ax1_0_2_fused in T.thread_binding(8, thread="threadIdx.y"):
                    for ax0_0_3_init, ax1_0_3_init, ax0_0_4_init, ax1_0_4_init in T.grid(2, 2, 1, 2):
                        with T.sblock("C_o_init"):
                            v0_o = T.axis.spatial(32, ax0_0_0_ax1_0_0_fused // 32 * 16 + ax0_0_2_ax1_0_2_fused * 2 + ax0_0_3_init + ax0_0_4_init)
                            v1_o = T.axis.spatial(256, ax0_0_0_ax1_0_0_fused % 32 * 8 + ax0_0_1_ax1_0_1_fused * 4 + ax1_0_3_init * 2 + ax1_0_4_init)
                            T.reads()
                            T.writes(C_reindex_shared_dyn_wmma_accumulator[v0_o // 2, v1_o // 4, v0_o % 2, v1_o % 4, 0:16, 0:16])
                            T.sblock_attr({"meta_schedule.thread_extent_high_inclusive": 1024, "meta_schedule.thread_extent_low_inclusive": 32, "warp_execution": 1})
                            C = T.match_buffer(C_reindex_shared_dyn_wmma_accumulator[v0_o // 2, v1_o // 4, v0_o % 2, v1_o % 4, 0:16, 0:16], (16, 16), strides=("d1", "d0"), scope="wmma.accumulator", offset_factor=16)
                            T.tvm_fill_fragment(C.data, 16, 16, 16, C.elem_offset // C.strides[0] // 16 * (C.strides[0] // 16) + C.elem_offset % C.strides[0] // 16, T.float32(0.0))
                    for ax2_0_0 in range(128):
                        for ax0_ax1_fused_0 in range(4):
                            for ax0_ax1_fused_1 in T.thread_binding(8, thread="threadIdx.y"):
                                for ax0_ax1_fused_2 in T.thread_binding(32, thread="threadIdx.x"):
                                    for ax0_ax1_fused_3 in T.vectorized(8):
                                        with T.sblock("X_reindex_shared.dyn"):
                                            v0 = T.axis.spatial(512, ax0_0_0_ax1_0_0_fused // 32 * 256 + (ax0_ax1_fused_0 * 2048 + ax0_ax1_fused_1 * 256 + ax0_ax1_fused_2 * 8 + ax0_ax1_fused_3) // 32)
                                            v1 = T.axis.spatial(4096, ax2_0_0 * 32 + (ax0_ax1_fused_0 * 2048 + ax0_ax1_fused_1 * 256 + ax0_ax1_fused_2 * 8 + ax0_ax1_fused_3) % 32)
                                            T.reads(X[v0, v1])
                                            T.writes(X_reindex_shared_dyn[v0, v1])
                                            T.sblock_attr({"buffer_dim_align": [[0, 0, 32, 8]]})
                                            X_reindex_shared_dyn[v0, v1] = X[v0, v1]
                        for ax0_ax1_fused_0 in range(1):
                            for ax0_ax1_fused_1 in T.thread_binding(8, thread="threadIdx.y"):
                                for ax0_ax1_fused_2 in T.thread_binding(32, thread="threadIdx.x"):
                                    for ax0_ax1_fused_3 in T.vectorized(8):
                                        with T.sblock("W_reindex_shared.dyn"):
                                            v0 = T.axis.spatial(4096, ax0_0_0_ax1_0_0_fused % 32 * 128 + ax0_0_1_ax1_0_1_fused * 64 + (ax0_ax1_fused_0 * 2048 + ax0_ax1_fused_1 * 256 + ax0_ax1_fused_2 * 8 + ax0_ax1_fused_3) // 32)
                                            v1 = T.axis.spatial(4096, ax2_0_0 * 32 + (ax0_ax1_fused_0 * 2048 + ax0_ax1_fused_1 * 256 + ax0_ax1_fused_2 * 8 + ax0_ax1_fused_3) % 32)
                                            T.reads(W[v0, v1])
                                            T.writes(W_reindex_shared_dyn[v0, v1])
                                            T.sblock_attr({"buffer_dim_align": [[0, 0, 32, 8]]})
                                            W_reindex_shared_dyn[v0, v1] = W[v0, v1]
                        for ax2_0_1 in range(2):
                            for ax0_0, ax1_0 in T.grid(2, 1):
                                with T.sblock("X_reindex_shared.dyn_wmma.matrix_a_o"):
                                    v0_o = T.axis.spatial(32, ax0_0_0_ax1_0_0_fused // 32 * 16 + ax0_0_2_ax1_0_2_fused * 2 + ax0_0)
                                    v1_o = T.axis.spatial(256, ax2_0_0 * 2 + ax2_0_1 + ax1_0)
                                    T.reads(X_reindex_shared_dyn[v0_o * 16:v0_o * 16 + 16, v1_o * 16:v1_o * 16 + 16])
                                    T.writes(X_reindex_shared_dyn_wmma_matrix_a[v0_o * 16:v0_o * 16 + 16, v1_o * 16:v1_o * 16 + 16])
                                    A = T.match_buffer(X_reindex_shared_dyn[v0_o * 16:v0_o * 16 + 16, v1_o * 16:v1_o * 16 + 16], (16, 16), "float16", strides=("s1", "s0"), scope="shared.dyn", offset_factor=16)
                                    C = T.match_buffer(X_reindex_shared_dyn_wmma_matrix_a[v0_o * 16:v0_o * 16 + 16, v1_o * 16:v1_o * 16 + 16], (16, 16), "float16", strides=("d1", "d0"), scope="wmma.matrix_a", offset_factor=16)
                                    T.tvm_load_matrix_sync(C.data, 16, 16, 16, C.elem_offset // C.strides[0] // 16 * (C.strides[0] // 16) + C.elem_offset % C.strides[0] // 16, T.tvm_access_ptr(T.type_annotation("float16"), A.data, A.elem_offset, A.strides[0] * 16, 1), A.strides[0], "row_major")
                            for ax0_0, ax1_0 in T.grid(4, 1):
                                with T.sblock("W_reindex_shared.dyn_wmma.matrix_b_o"):
                                    v0_o = T.axis.spatial(256, ax0_0_0_ax1_0_0_fused % 32 * 8 + ax0_0_1_ax1_0_1_fused * 4 + ax0_0)
                                    v1_o = T.axis.spatial(256, ax2_0_0 * 2 + ax2_0_1 + ax1_0)
                                    T.reads(W_reindex_shared_dyn[v0_o * 16:v0_o * 16 + 16, v1_o * 16:v1_o * 16 + 16])
                                    T.writes(W_reindex_shared_dyn_wmma_matrix_b[v0_o * 16:v0_o * 16 + 16, v1_o * 16:v1_o * 16 + 16])
                                    A = T.match_buffer(W_reindex_shared_dyn[v0_o * 16:v0_o * 16 + 16, v1_o * 16:v1_o * 16 + 16], (16, 16), "float16", strides=("s1", "s0"), scope="shared.dyn", offset_factor=16)
                                    C = T.match_buffer(W_reindex_shared_dyn_wmma_matrix_b[v0_o * 16:v0_o * 16 + 16, v1_o * 16:v1_o * 16 + 16], (16, 16), "float16", strides=("d1", "d0"), scope="wmma.matrix_b", offset_factor=16)
                                    T.tvm_load_matrix_sync(C.data, 16, 16, 16, C.elem_offset // C.strides[0] // 16 * (C.strides[0] // 16) + C.elem_offset % C.strides[0] // 16, T.tvm_access_ptr(T.type_annotation("float16"), A.data, A.elem_offset, A.strides[0] * 16, 1), A.strides[0], "col_major")
                            for ax0_0_3, ax1_0_3, ax2_0_2, ax0_0_4, ax1_0_4 in T.grid(2, 2, 1, 1, 2):
                                with T.sblock("C_o_update"):
                                    v0_o = T.axis.spatial(32, ax0_0_0_ax1_0_0_fused // 32 * 16 + ax0_0_2_ax1_0_2_fused * 2 + ax0_0_3 + ax0_0_4)
                                    v1_o = T.axis.spatial(256, ax0_0_0_ax1_0_0_fused % 32 * 8 + ax0_0_1_ax1_0_1_fused * 4 + ax1_0_3 * 2 + ax1_0_4)
                                    v2_o = T.axis.reduce(256, ax2_0_0 * 2 + ax2_0_1 + ax2_0_2)
                                    T.reads(C_reindex_shared_dyn_wmma_accumulator[v0_o // 2, v1_o // 4, v0_o % 2, v1_o % 4, 0:16, 0:16], X_reindex_shared_dyn_wmma_matrix_a[v0_o * 16:v0_o * 16 + 16, v2_o * 16:v2_o * 16 + 16], W_reindex_shared_dyn_wmma_matrix_b[v1_o * 16:v1_o * 16 + 16, v2_o * 16:v2_o * 16 + 16])
                                    T.writes(C_reindex_shared_dyn_wmma_accumulator[v0_o // 2, v1_o // 4, v0_o % 2, v1_o % 4, 0:16, 0:16])
                                    T.sblock_attr({"meta_schedule.thread_extent_high_inclusive": 1024, "meta_schedule.thread_extent_low_inclusive": 32, "warp_execution": 1})
                                    A = T.match_buffer(X_reindex_shared_dyn_wmma_matrix_a[v0_o * 16:v0_o * 16 + 16, v2_o * 16:v2_o * 16 + 16], (16, 16), "float16", strides=("a1", "a0"), scope="wmma.matrix_a", offset_factor=16)
                                    B = T.match_buffer(W_reindex_shared_dyn_wmma_matrix_b[v1_o * 16:v1_o * 16 + 16, v2_o * 16:v2_o * 16 + 16], (16, 16), "float16", strides=("b1", "b0"), scope="wmma.matrix_b", offset_factor=16)
                                    C = T.match_buffer(C_reindex_shared_dyn_wmma_accumulator[v0_o // 2, v1_o // 4, v0_o % 2, v1_o % 4, 0:16, 0:16], (16, 16), strides=("c1", "c0"), scope="wmma.accumulator", offset_factor=16)
                                    T.tvm_mma_sync(C.data, C.elem_offset // C.strides[0] // 16 * (C.strides[0] // 16) + C.elem_offset % C.strides[0] // 16, A.data, A.elem_offset // A.strides[0] // 16 * (A.strides[0] // 16) + A.elem_offset % A.strides[0] // 16, B.data, B.elem_offset // B.strides[0] // 16 * (B.strides[0] // 16) + B.elem_offset % B.strides[0] // 16, C.data, C.elem_offset // C.strides[0] // 16 * (C.strides[0] // 16) + C.elem_offset % C.strides[0] // 16)
                for ax2 in range(2):
                    for ax0_ax1_fused in T.thread_binding(8, thread="threadIdx.y"):
                        for ax2_1, ax3 in T.grid(1, 4):
                            with T.sblock("C_reindex_shared.dyn_wmma.accumulator_o"):
                                v0_o = T.axis.spatial(16, ax0_0_0_ax1_0_0_fused // 32 * 8 + ax0_ax1_fused)
                                v1_o = T.axis.spatial(64, ax0_0_0_ax1_0_0_fused % 32 * 2 + ax0_0_1_ax1_0_1_fused)
                                v2_o = T.axis.spatial(2, ax2 + ax2_1)
                                v3_o = T.axis.spatial(4, ax3)
                                v4_o = T.axis.spatial(1, 0)
                                v5_o = T.axis.spatial(1, 0)
                                T.reads(C_reindex_shared_dyn_wmma_accumulator[v0_o, v1_o, v2_o, v3_o, 0:16, 0:16])
                                T.writes(C_reindex_shared_dyn[v0_o, v1_o, v2_o, v3_o, 0:16, 0:16])
                                A = T.match_buffer(C_reindex_shared_dyn_wmma_accumulator[v0_o, v1_o, v2_o, v3_o, 0:16, 0:16], (16, 16), strides=("d1", "d0"), scope="wmma.accumulator", offset_factor=16)
                                C = T.match_buffer(C_reindex_shared_dyn[v0_o, v1_o, v2_o, v3_o, 0:16, 0:16], (16, 16), strides=("s1", "s0"), scope="shared.dyn", offset_factor=16)
                                T.tvm_store_matrix_sync(A.data, 16, 16, 16, A.elem_offset // A.strides[0] // 16 * (A.strides[0] // 16) + A.elem_offset % A.strides[0] // 16, T.tvm_access_ptr(T.type_annotation("float32"), C.data, C.elem_offset, C.strides[0] * 16, 2), C.strides[0], "row_major")
                    for ax0_ax1_ax3_ax4_ax5_fused_0 in range(8):
                        for ax0_ax1_ax3_ax4_ax5_fused_1 in T.thread_binding(8, thread="threadIdx.y"):
                            for ax0_ax1_ax3_ax4_ax5_fused_2 in T.thread_binding(32, thread="threadIdx.x"):
                                for ax0_ax1_ax3_ax4_ax5_fused_3 in T.vectorized(4):
                                    with T.sblock("C_reindex_shared.dyn"):
                                        v0 = T.axis.spatial(16, ax0_0_0_ax1_0_0_fused // 32 * 8 + (ax0_ax1_ax3_ax4_ax5_fused_0 * 1024 + ax0_ax1_ax3_ax4_ax5_fused_1 * 128 + ax0_ax1_ax3_ax4_ax5_fused_2 * 4 + ax0_ax1_ax3_ax4_ax5_fused_3) // 1024)
                                        v1 = T.axis.spatial(64, ax0_0_0_ax1_0_0_fused % 32 * 2 + ax0_0_1_ax1_0_1_fused)
                                        v2 = T.axis.spatial(2, ax2)
                                        v3 = T.axis.spatial(4, (ax0_ax1_ax3_ax4_ax5_fused_0 * 1024 + ax0_ax1_ax3_ax4_ax5_fused_1 * 128 + ax0_ax1_ax3_ax4_ax5_fused_2 * 4 + ax0_ax1_ax3_ax4_ax5_fused_3) % 1024 // 256)
                                        v4 = T.axis.spatial(16, (ax0_ax1_ax3_ax4_ax5_fused_0 * 1024 + ax0_ax1_ax3_ax4_ax5_fused_1 * 128 + ax0_ax1_ax3_ax4_ax5_fused_2 * 4 + ax0_ax1_ax3_ax4_ax5_fused_3) % 256 // 16)
                                        v5 = T.axis.spatial(16, (ax0_ax1_ax3_ax4_ax5_fused_0 * 1024 + ax0_ax1_ax3_ax4_ax5_fused_1 * 128 + ax0_ax1_ax3_ax4_ax5_fused_2 * 4 + ax0_ax1_ax3_ax4_ax5_fused_3) % 16)
                                        T.reads(C_reindex_shared_dyn[v0, v1, v2, v3, v4, v5])
                                        T.writes(out[v4 + v2 * 16 + v0 * 32, v5 + v3 * 16 + v1 * 64])
                                        out[v4 + v2 * 16 + v0 * 32, v5 + v3 * 16 + v1 * 64] = T.Cast("float16", C_reindex_shared_dyn[v0, v1, v2, v3, v4, v5])