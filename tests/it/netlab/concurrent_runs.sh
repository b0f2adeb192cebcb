#!/bin/sh
# Runs $2 copies of the script $1 at once and prints `<index> <exit code>`
# for each; copy i's stderr goes to $3/i.err.
script=$1 copies=$2 out=$3
i=0
while [ "$i" -lt "$copies" ]; do
  "$script" >/dev/null 2>"$out/$i.err" &
  eval "pid_$i=\$!"
  i=$((i + 1))
done
i=0
while [ "$i" -lt "$copies" ]; do
  eval "wait \$pid_$i"
  echo "$i $?"
  i=$((i + 1))
done
