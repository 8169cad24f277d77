#!/bin/bash
# 256-trial runs; resumable: run again on the warm machine. Args: COMMIT TAG; env TASKS MODELS SEEDS BUDGET PAR
export PYTHONPATH=/tmp/site:$PWD COSTPASS_CUBIN_CACHE=/tmp/cubins
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
timeout ${TMO:-575} python3 benchmarks/tune_bench.py run --tasks $TASKS --models $MODELS --seeds $SEEDS --trials 256 \
  --population 128 --parallel ${PAR:-10} --cores ${CORES:-20} --budget-s ${BUDGET:-480} --grace-s 40 \
  --model-dir carry/tune/models_v3 --out /tmp/t256 --work-root /tmp/costpass_tune256 --commit $1 > /tmp/t256_$2.log 2>&1
echo rc=$?
for d in /tmp/costpass_tune256/*/; do n=$(basename $d); mkdir -p /tmp/t256/wd/$n; cp $d/database_*.json /tmp/t256/wd/$n/ 2>/dev/null; done
cp /tmp/t256_$2.log /tmp/t256/
tar czf $OUT/t256_$2.tgz -C /tmp t256
grep "\[tune\]" /tmp/t256_$2.log
for d in /tmp/costpass_tune256/*/; do echo "$(basename $d) $(cat $d/database_tuning_record.json 2>/dev/null | wc -l)"; done
