#!/bin/bash
# Tuning-time latency vs re-timed latency of the same kernels on the same machine, minutes apart: 64-trial
# runs of costpass and XGBModel on the prefill GEMM and the decode GEMV (4 at once, as the 256-trial batches
# ran), then their 3 best schedules each re-timed by gpu_run.py (outputs checked) and by
# benchmarks/harness_compare.py (events, time_evaluator, MetaSchedule's runner). Needs the full TVM wheel in
# /tmp/site (stage1.sh, stage2.sh, stage3.sh). Carry carry/tune/models_v3. Everything comes back in $OUT/all.tgz.
set -u
R=$OUT/res; mkdir -p $R/wd; T0=$(date +%s)
export PYTHONPATH=/tmp/site:$PWD COSTPASS_CUBIN_CACHE=/tmp/cubins PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > $R/gpu.txt
timeout 330 python3 benchmarks/tune_bench.py run --tasks llama3_8b_qkv_fp16,gemv_llama3_8b_qkv_fp16 \
  --models costpass,xgb --seeds 0 --trials 64 --population 128 --parallel 4 --cores 20 --budget-s 290 \
  --grace-s 20 --model-dir carry/tune/models_v3 --out /tmp/sm --work-root /tmp/smw --commit ${1:-unknown} > $R/tune.log 2>&1
echo "tune rc=$? at $(( $(date +%s) - T0 )) s"; grep "\[tune\]" $R/tune.log
for d in /tmp/smw/*/; do n=$(basename $d); mkdir -p $R/wd/$n; cp $d/database_*.json $R/wd/$n/; done
cp -r /tmp/sm/runs $R/ 2>/dev/null
timeout 150 python3 benchmarks/tune_bench.py retime-bundle --db-dirs /tmp/smw --top 3 --out /tmp/smb > $R/bundle.log 2>&1
echo "bundle rc=$?"; tail -2 $R/bundle.log
bash costpass/measure/compile_missing.sh /tmp/smb 16
timeout 120 python3 costpass/measure/gpu_run.py --bundle /tmp/smb --out $R/measure.jsonl --budget-s 90 --tag same_machine \
  --check-all > $R/gpu_run.log 2>&1
echo "gpu_run rc=$?"; tail -5 $R/gpu_run.log
timeout 150 python3 benchmarks/harness_compare.py --bundle /tmp/smb --out $R/harness.jsonl > $R/harness.log 2>&1
echo "harness rc=$?"; grep -E "ms_runner|tvm_alloc" $R/harness.log | head -30
cp /tmp/smb/runs.json /tmp/smb/duplicates.jsonl /tmp/smb/manifest.jsonl $R/
tar czf $OUT/all.tgz -C $OUT res
echo "done at $(( $(date +%s) - T0 )) s"
