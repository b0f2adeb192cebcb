#!/bin/bash
# A stand-in for a command that needs root (iptables-save, ipset, unshare,
# logger...), for the shell unit tests: linked under the command's name
# into a folder at the head of PATH. Each call is appended to
# $STUB_DIR/calls as "<scope> <name> <arguments>"; the answer is the file
# $STUB_DIR/<scope>/<name> <arguments> (slashes as %), else
# $STUB_DIR/<scope>/<name>: its bytes on stdout, and beside it, when
# present, .stderr (on stderr), .status (the exit status) and .reads (the
# call's stdin is saved into .read). A call without an answer fails loudly,
# so that no test quietly reaches the real command.
#
# `unshare ... -- CMD...` runs CMD with the scope "scratch": the commands
# it runs answer from $STUB_DIR/scratch/, as if in a fresh network
# namespace.
set -u
name=${0##*/}
dir=${STUB_DIR:?the stubs need STUB_DIR}
scope=${STUB_SCOPE:-host}
printf '%s\n' "$scope $name $*" >>"$dir/calls"
if [ "$name" = unshare ]; then
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do shift; done
  [ "$#" -gt 1 ] || { echo "stub unshare: no command after --" >&2; exit 125; }
  shift
  STUB_SCOPE=scratch exec "$@"
fi
key="$name${*:+ $*}"
key=${key//\//%}
for answer in "$dir/$scope/$key" "$dir/$scope/$name"; do
  [ -e "$answer" ] || continue
  if [ -e "$answer.reads" ]; then cat >"$answer.read"; fi
  cat "$answer"
  [ ! -e "$answer.stderr" ] || cat "$answer.stderr" >&2
  status=0
  [ ! -e "$answer.status" ] || read -r status <"$answer.status"
  exit "$status"
done
echo "stub $name: no answer in $dir/$scope for: $key" >&2
exit 99
