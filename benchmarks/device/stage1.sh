#!/bin/bash
# Fresh GPU machine, call 1 of 3: the first third of the full TVM wheel and the small wheels into /tmp/parts.
# carry: carry/wheel3/part_aa carry/wheel3/whl.sha256 .whl carry/wheel2 (the wheel split in three so that each call's
# tree + carry stays under 64 MiB: `split -b 33554432 -a 2 apache_tvm-...whl carry/wheel3/part_`)
set -e
mkdir -p /tmp/parts && cp carry/wheel3/part_aa carry/wheel3/whl.sha256 /tmp/parts/ && cp .whl/*.whl carry/wheel2/*.whl /tmp/parts/
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
ls /tmp/parts | wc -l
