#!/bin/bash
# A fresh machine: put back the finished run records and the databases of the runs to resume.
# Arg: a tar.xz of a t4/ folder as tune.sh returns it (t4/runs/*.json, t4/db/RUN/database_*.json,
# t4/zero_shot.partial.json if any). Optional arg 2: the folder's name (OUTD of tune.sh; default t4)
O=${2:-t4}; W=/tmp/costpass_tune4; [ "$O" != t4 ] && W=/tmp/costpass_tune4_$O
mkdir -p /tmp/state /tmp/$O/runs $W && tar xJf "$1" -C /tmp/state
cp -n /tmp/state/$O/runs/*.json /tmp/$O/runs/ 2>/dev/null
cp -n /tmp/state/$O/zero_shot.partial.json /tmp/$O/ 2>/dev/null  # zero-shot picks timed before a call was cut short
for d in /tmp/state/$O/db/*/; do n=$(basename $d); mkdir -p $W/$n; cp -n $d/database_*.json $W/$n/; done
ls /tmp/$O/runs/*.json 2>/dev/null | wc -l; wc -l $W/*/database_tuning_record.json | tail -20
