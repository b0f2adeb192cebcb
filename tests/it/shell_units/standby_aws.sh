#!/bin/bash
# A stand-in for natbake-aws in natbake-standby's tests: records each
# call as "aws COMMAND ARGS" in $STUB_DIR/calls and answers from
# $STUB_DIR/aws: the file "COMMAND ARGS" (slashes as %), else "COMMAND.N"
# (its Nth call), else "COMMAND"; beside it .status (the exit status).
# After answering, "COMMAND.do" (bash), when present, is run: what the
# API's action does to the instance (an attach makes a device).
set -u
while [ "$#" -gt 0 ] && [[ $1 == --* ]]; do shift 2; done
dir=$STUB_DIR/aws
command=$1
echo "aws $*" >>"$STUB_DIR/calls"
n=$(grep -c "^aws $command\( \|$\)" "$STUB_DIR/calls")
key="$*"
key=${key//\//%}
status=99
for answer in "$dir/$key" "$dir/$command.$n" "$dir/$command"; do
  [ -e "$answer" ] || continue
  cat "$answer"
  status=0
  [ ! -e "$answer.status" ] || read -r status <"$answer.status"
  break
done
[ "$status" -ne 99 ] || { echo "error=natbake.Test"; echo "message=no canned answer for: $*"; }
[ ! -e "$dir/$command.do" ] || bash "$dir/$command.do"
exit "$status"
