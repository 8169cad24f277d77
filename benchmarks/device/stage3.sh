#!/bin/bash
# call 3 of 3: the last third (carry carry/wheel3/part_ac), checked against whl.sha256, installed with the small wheels
# into /tmp/site; then tune.sh for the time left. Args: COMMIT TAG [STATE.tar.xz to restore]; env as tune.sh, and
# REST: seconds of the call to keep for a second job after this one (default 0)
T0=$(date +%s)
cp carry/wheel3/part_ac /tmp/parts/
( cd /tmp/parts && cat part_aa part_ab part_ac > apache_tvm-0.27.0.post1-py3-none-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl \
  && sed 's#/tmp/w/#/tmp/parts/#' whl.sha256 | sha256sum -c - && rm -f part_aa part_ab part_ac ) || exit 3
python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/parts/*.whl 2>&1 | grep -v -i warn | tail -2
PYTHONPATH=/tmp/site python3 -c "import tvm, xgboost; print('tvm', tvm.__version__, 'xgboost', xgboost.__version__)" || exit 4
if [ -n "$3" ]; then bash benchmarks/device/restore.sh "$3" "${OUTD:-t4}"; fi
REM=$(( 580 - ${REST:-0} - ($(date +%s) - T0) ))
TMO=$REM BUDGET=$((REM - 70)) bash benchmarks/device/tune.sh "$1" "$2"
