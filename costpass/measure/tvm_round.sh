#!/usr/bin/env bash
# A measurement round of TVM's own build on the GPU machine (the full TVM wheel installed in $FULL, the
# runtime-only one in carry/runtime with tvm-ffi in $SITE; $FULL is not needed for snapshots packed with TVM's
# cubins already, e.g. by tvm_build.py here with NVRTC 13.0.88: byte for byte the GPU machine's). Resumable across device calls while the machine
# stays warm: each snapshot is unpacked once into /tmp/tb/<name> with its cubins/ emptied, compiled by
# tvm_build.py (TVM's tvm_callback_cuda_compile, 16 at a time), then measured by gpu_run.py into one
# /tmp/tb/measure.jsonl (a candidate already there is skipped). Copies records and logs to $OUT at the end.
# usage: tvm_round.sh TAG BUDGET_S SNAPSHOT.tar.xz...
set -u
TAG=$1; BUDGET=$2; shift 2
FULL=${FULL:-/tmp/full}; SITE=${SITE:-/tmp/site}
T0=$(date +%s); mkdir -p /tmp/tb
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,pstate,temperature.gpu,power.draw --format=csv >>/tmp/tb/gpu.txt
for SNAP in "$@"; do
  N=$(basename "$SNAP" .tar.xz)
  if [ ! -d /tmp/tb/$N ]; then
    mkdir -p /tmp/tb/$N.part && tar xJf "$SNAP" -C /tmp/tb/$N.part || exit 1
    D=/tmp/tb/$N.part/$(ls /tmp/tb/$N.part | head -1)
    # a snapshot packed with TVM's cubins (BUILD.json, made by tvm_build.py anywhere) is measured as it is;
    # one holding nvcc cubins is emptied and compiled here
    [ -f "$D/BUILD.json" ] || rm -rf "$D/cubins"
    mv "$D" /tmp/tb/$N && rm -rf /tmp/tb/$N.part
  fi
  if [ ! -f /tmp/tb/$N/BUILD.json ] && [ "$(left)" -gt 60 ]; then
    echo "[tvm_round] compiling $N with TVM's callback ($(left) s left)"
    PYTHONPATH=$FULL:$PWD timeout $(( $(left) - 30 )) python3 -m costpass.measure.tvm_build /tmp/tb/$N --jobs 16 \
      >>/tmp/tb/build_$N.log 2>&1; tail -1 /tmp/tb/build_$N.log
  fi
  if [ -f /tmp/tb/$N/BUILD.json ] && [ "$(left)" -gt 60 ]; then
    echo "[tvm_round] measuring $N ($(left) s left)"
    PYTHONPATH=$SITE:$PWD/carry/runtime PYTHONUNBUFFERED=1 timeout $(( $(left) - 10 )) python3 costpass/measure/gpu_run.py \
      --bundle /tmp/tb/$N --out /tmp/tb/measure.jsonl --budget-s $(( $(left) - 40 )) --tag $TAG >>/tmp/tb/gpu_run_$N.log 2>&1
    echo "gpu_run rc=$?"; tail -2 /tmp/tb/gpu_run_$N.log
  fi
done
cp /tmp/tb/measure.jsonl $OUT/ 2>/dev/null; xz -k -T0 -f $OUT/measure.jsonl 2>/dev/null && rm -f $OUT/measure.jsonl
tar czf $OUT/logs.tgz -C /tmp/tb --exclude='*/libs' --exclude='*/cubins' --exclude='*/sources' . 2>/dev/null
ls -la $OUT; echo "records: $(wc -l < /tmp/tb/measure.jsonl 2>/dev/null)"
