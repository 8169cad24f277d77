#!/bin/bash
# One call on a machine where the full TVM wheel is staged in /tmp/site (stage1.sh, stage2.sh, stage3.sh). Carry .whl,
# carry/cw_prefill (the prefill library's tuning database, 192 trials measured with --runner local),
# carry/oc_failed.tar.xz (the 5 failed and 3 best trials of the output-checked attention tuning run) and
# carry/retime256.tar.xz. Everything comes back in $OUT/all.tgz.
#  1. the prefill block rebuilt from its database (nothing left to tune) with every tuned kernel's output
#     checked against DLight's schedule of it on the GPU (costpass compile's check), then run_relax.py;
#  2. the attention trials re-run with their outputs checked (gpu_run.py --check-all): why they failed;
#  3. the harness comparison again, now with the TVM-allocation and LocalRunner rows.
set -u
R=$OUT/res; mkdir -p $R; T0=$(date +%s)
export PYTHONPATH=/tmp/site:$PWD COSTPASS_CUBIN_CACHE=/tmp/cubins PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > $R/gpu.txt
rm -rf /tmp/cwp && cp -r carry/cw_prefill/h100_prefill /tmp/cwp
timeout 300 python3 -m costpass compile llama_block --shape prefill --seq 512 --gpu h100,h200 --runner local \
  --trials 192 --trials-per-iter 16 --population 128 --genetic-iters 2 --work-dir /tmp/cwp -o /tmp/cwp.so \
  > $R/prefill_checked.txt 2> $R/prefill_checked.err
echo "compile rc=$? at $(( $(date +%s) - T0 )) s"; grep -i "wrong\|checked\|default!" $R/prefill_checked.err $R/prefill_checked.txt | head -30
cp /tmp/cwp.so.json $R/ 2>/dev/null
timeout 120 python3 costpass/measure/run_relax.py /tmp/cwp.so --out $R/prefill_checked.run.json > $R/run_relax.txt 2>&1
echo "run_relax rc=$?"; tail -2 $R/run_relax.txt
(OUT=$R/oc GPU_RUN_EXTRA=--check-all; mkdir -p $OUT; export OUT GPU_RUN_EXTRA; bash costpass/measure/gpu_round.sh carry/oc_failed.tar.xz ocf 60 0 0 2>&1 | tail -12)
export PYTHONPATH=/tmp/site:$PWD
rm -rf /tmp/hb2 && mkdir -p /tmp/hb2 && tar xJf carry/retime256.tar.xz -C /tmp/hb2
timeout 300 python3 benchmarks/harness_compare.py --bundle /tmp/hb2/retime256 --out $R/harness2.jsonl > $R/harness2.log 2>&1
echo "harness rc=$? at $(( $(date +%s) - T0 )) s"; grep -c . $R/harness2.jsonl; grep "ms_runner" $R/harness2.log | head -60
rm -f $R/oc/cubins_ocf.tar.xz
tar czf $OUT/all.tgz -C $OUT res
echo "done at $(( $(date +%s) - T0 )) s"
