#!/bin/bash
# second call on a fresh machine: reassemble the TVM wheel (part_aa and the tvm-ffi wheel came in call 1) and install
set -e
cp carry/wheel/part_ab carry/wheel/part_ac /tmp/parts/
cd /tmp/parts && cat part_aa part_ab part_ac > apache_tvm-0.27.0.post1-py3-none-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
sed 's#/tmp/w/#/tmp/parts/#' whl.sha256 | sha256sum -c -
rm -f part_aa part_ab part_ac
cd - >/dev/null
pip install -q --no-index --no-deps --target /tmp/site /tmp/parts/*.whl carry/wheel2/*.whl 2>&1 | tail -2
PYTHONPATH=/tmp/site python3 -c "import tvm, xgboost; print('tvm', tvm.__version__, 'xgboost', xgboost.__version__)"
