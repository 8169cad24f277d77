#!/bin/bash
# a fresh machine: put back the finished run records and the databases of the runs to resume
mkdir -p /tmp/t256/runs /tmp/costpass_tune256
cp -n carry/tune/state/t256/runs/*.json /tmp/t256/runs/
cp -rn carry/tune/state/wd/* /tmp/costpass_tune256/
ls /tmp/t256/runs | wc -l; wc -l /tmp/costpass_tune256/*/database_tuning_record.json
