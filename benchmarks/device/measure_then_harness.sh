#!/bin/bash
# One call on a machine where the full TVM wheel is staged in /tmp/site (stage1.sh, stage2.sh, stage3.sh): the harness comparison on
# the seed-0 re-timing bundle, then the checked re-timing of all 43 runs' bests. Carry .whl,
# carry/retime256.tar.xz, carry/retime256b.tar.xz. Results under $OUT/harness and $OUT/retime256b.
set -u
ROOT=$OUT; T0=$(date +%s)
mkdir -p /tmp/hb $ROOT/harness && tar xJf carry/retime256.tar.xz -C /tmp/hb || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > $ROOT/harness/gpu.txt
PYTHONPATH=/tmp/site:$PWD timeout 240 python3 benchmarks/harness_compare.py --bundle /tmp/hb/retime256 \
  --out $ROOT/harness/harness.jsonl > $ROOT/harness/harness.log 2>&1
echo "harness rc=$? at $(( $(date +%s) - T0 )) s"; tail -5 $ROOT/harness/harness.log
rm -rf /tmp/b; mkdir -p $ROOT/retime256b
OUT=$ROOT/retime256b GPU_RUN_EXTRA=--check-all bash costpass/measure/gpu_round.sh carry/retime256b.tar.xz retime256b 120 0 0 2>&1 | tail -12
rm -f $ROOT/retime256b/cubins_retime256b.tar.xz
echo "done at $(( $(date +%s) - T0 )) s"
