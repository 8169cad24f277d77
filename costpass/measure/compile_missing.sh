#!/usr/bin/env bash
# On the GPU machine: compile every CUDA source of a bundle that has no cubin yet, 16 at a time,
# with the measuring code's one nvcc command (costpass/measure/nvcc_cmd.py), so gpu_run finds every cubin by hash.
# usage: compile_missing.sh BUNDLE_DIR [JOBS]
set -u
B=$1; J=${2:-16}
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
FLAGS=$(python3 "$(dirname "$0")/nvcc_cmd.py") || exit 1
mkdir -p "$B/cubins"
ls "$B/sources" 2>/dev/null | grep '\.cu$' | sed 's/\.cu$//' | \
  xargs -P "$J" -I{} sh -c "[ -f '$B/cubins/{}.cubin' ] || $NVCC $FLAGS -arch=sm_90a -w -o '$B/cubins/{}.cubin.tmp' '$B/sources/{}.cu' >/dev/null 2>&1 && mv '$B/cubins/{}.cubin.tmp' '$B/cubins/{}.cubin'"
echo "cubins: $(ls $B/cubins | grep -c cubin$) of $(ls $B/sources | grep -c '\.cu$') sources"
