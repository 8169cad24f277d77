#!/bin/bash
# A fresh machine: put back the finished run records and the databases of the runs to resume.
# Arg: a tar.xz of a t4/ folder as tune.sh returns it (t4/runs/*.json, t4/db/RUN/database_*.json,
# t4/zero_shot.partial.json if any)
mkdir -p /tmp/state /tmp/t4/runs /tmp/costpass_tune4 && tar xJf "$1" -C /tmp/state
cp -n /tmp/state/t4/runs/*.json /tmp/t4/runs/ 2>/dev/null
cp -n /tmp/state/t4/zero_shot.partial.json /tmp/t4/ 2>/dev/null  # zero-shot picks timed before a call was cut short
for d in /tmp/state/t4/db/*/; do n=$(basename $d); mkdir -p /tmp/costpass_tune4/$n; cp -n $d/database_*.json /tmp/costpass_tune4/$n/; done
ls /tmp/t4/runs/*.json 2>/dev/null | wc -l; wc -l /tmp/costpass_tune4/*/database_tuning_record.json | tail -20
