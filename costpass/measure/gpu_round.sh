#!/usr/bin/env bash
# One measurement round on the GPU machine (run from the repo root there, $OUT set by the device tool).
# usage: gpu_round.sh SNAPSHOT.tar.xz TAG MEASURE_BUDGET_S NCU_FIRST NCU_BUDGET_S [NOISE_IDS_FILE [MAIN_IDS_FILE]]
# Unpacks the snapshot, compiles missing cubins with 16 nvcc, measures every candidate (gpu_run.py),
# profiles NCU_FIRST candidates per workload with Nsight Compute (ncu.py), optionally re-measures the ids
# in NOISE_IDS_FILE in a separate run, and returns records, counters, logs and the cubins under $OUT.
# env GPU_RUN_EXTRA: more gpu_run.py options (e.g. --check-all for a re-timing bundle).
set -u
SNAP=$1; TAG=$2; BUDGET=$3; NCU_FIRST=$4; NCU_BUDGET=$5; NOISE=${6:-}; MAIN=${7:-}
MAIN_ARG=""; [ -n "$MAIN" ] && MAIN_ARG="--ids $MAIN"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/carry/runtime PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
mkdir -p /tmp/b && tar xJf "$SNAP" -C /tmp/b || exit 1
B=/tmp/b/$(ls /tmp/b | head -1)
t0=$(date +%s)
bash costpass/measure/compile_missing.sh "$B" 16
echo "compile took $(( $(date +%s) - t0 )) s"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,pstate,temperature.gpu,power.draw --format=csv >$OUT/gpu.txt; cat $OUT/gpu.txt
timeout $((BUDGET + 60)) python3 costpass/measure/gpu_run.py --bundle "$B" --out $OUT/measure.jsonl --budget-s $BUDGET --tag $TAG $MAIN_ARG ${GPU_RUN_EXTRA:-} >$OUT/gpu_run.log 2>&1
echo "gpu_run rc=$?"; tail -6 $OUT/gpu_run.log
if [ -n "$NOISE" ]; then
  timeout 120 python3 costpass/measure/gpu_run.py --bundle "$B" --out $OUT/noise.jsonl --ids "$NOISE" --budget-s 60 --tag ${TAG}_noise >$OUT/noise.log 2>&1
  echo "noise rc=$?"; tail -3 $OUT/noise.log
fi
if [ "$NCU_FIRST" -gt 0 ]; then
  timeout $((NCU_BUDGET + 60)) python3 costpass/measure/ncu.py --bundle "$B" --out $OUT/ncu.jsonl --from-records $OUT/measure.jsonl --first $NCU_FIRST --budget-s $NCU_BUDGET --raw-out $OUT/ncu_raw.txt --tag $TAG >$OUT/ncu.log 2>&1
  echo "ncu rc=$?"; tail -4 $OUT/ncu.log
fi
tar cJf $OUT/cubins_$TAG.tar.xz -C "$B" cubins
for f in $OUT/*.jsonl $OUT/ncu_raw.txt $OUT/*.log; do [ -f $f ] && [ $(stat -c%s $f) -gt 8000000 ] && xz -T0 -f $f; done
ls -la $OUT
