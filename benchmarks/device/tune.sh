#!/bin/bash
# 256-trial tuning runs on the GPU machine (full TVM in /tmp/site); resumable: run again on the warm machine, or on a
# fresh one after restore.sh. Args: COMMIT TAG. env: TASKS MODELS SEEDS MODEL_DIR PAR CORES TMO BUDGET; output: $OUT/t4_TAG.tgz
# (the databases under t4/db, run records under t4/runs, the driver log) -- bring them back with `tune_bench.py collect`.
# OUTD: the folder's name under /tmp (default t4; output $OUT/OUTD_TAG.tgz), so that two variants can run at once in
# one call, each with its own state; all runs share one GPU lock (/tmp/gpu.lock), so that no two time at once.
# EPS: the search's random share (default 0.05, MetaSchedule's); a variant goes to its own state and report folder.
# ZS_DIR (optional): zero-shot picks (`tune_bench.py zero-shot`) to time once the runs are done (t4/zero_shot.json).
export PYTHONPATH=/tmp/site:$PWD COSTPASS_CUBIN_CACHE=/tmp/cubins COSTPASS_GPU_LOCK=/tmp/gpu.lock
O=${OUTD:-t4}; W=/tmp/costpass_tune4; [ "$O" != t4 ] && W=/tmp/costpass_tune4_$O
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
T=${TASKS:-llama3_8b_qkv_fp16,conv_r50_c3_3x3_fp16,attn_pv_fp16,gemm_fp32_1024,gemv_llama3_8b_qkv_fp16,softmax_attn_fp32}
timeout ${TMO:-575} python3 benchmarks/tune_bench.py run --tasks $T --models ${MODELS:-costpass,xgb} --seeds ${SEEDS:-2} \
  --trials 256 --population 128 --parallel ${PAR:-12} --cores ${CORES:-32} --budget-s ${BUDGET:-480} --grace-s 40 \
  --check-outputs --eps-greedy ${EPS:-0.05} --model-dir ${MODEL_DIR:-carry/tune/models_v4} --out /tmp/$O --work-root $W \
  --commit $1 ${ZS_DIR:+--zero-shot-dir $ZS_DIR} > /tmp/${O}_$2.log 2>&1
echo rc=$?
cp /tmp/${O}_$2.log /tmp/$O/
tar czf $OUT/${O}_$2.tgz -C /tmp $O
grep "\[tune\]\|\[zero-shot\]" /tmp/${O}_$2.log
for d in $W/*/; do echo "$(basename $d) $(cat $d/database_tuning_record.json 2>/dev/null | wc -l)"; done
