#!/bin/sh
# Runs a command with the state folder (/run/natbake, bind-mounted by
# installed_run.sh from the lab's kept folder) replaced by a tiny tmpfs that
# holds a copy of what was there, filled up to the last block: /run full.
# Run by the network lab inside the run's own private mount namespace
# (never the host's); the tmpfs is unmounted again before it exits.
# Arguments: the state folder, then the command. Prints the full tmpfs's df
# line first, and exits with the command's exit code (97 if the setup failed).
set -u
state=$1
shift
copy=/run/natbake-before-full
mkdir -p "$copy" && cp -a "$state/." "$copy/" || exit 97
mount -t tmpfs -o size=16k natbake-full "$state" || exit 97
cp -a "$copy/." "$state/" 2>/dev/null
dd if=/dev/zero of="$state/filler" bs=1k 2>/dev/null
: >"$state/filler-tail"
df -k "$state" | sed -n 2p
"$@"
rc=$?
umount "$state" || exit 97
exit "$rc"
