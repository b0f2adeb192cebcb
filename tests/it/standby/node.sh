#!/bin/sh
# One instance of the standby lab's pair, run by installed_run.sh in the
# instance's own network and mount namespaces with natbake's standby files
# installed: writes this instance's part of the configurations with the
# installed natbake-standby, then runs conntrackd and keepalived with them
# as their drop-ins do, until killed.
# Arguments: this instance's primary address, the peer's, the interface.
set -eu
natbake-standby peer "$1" "$2" "$3"
conntrackd -C /run/natbake/standby/conntrackd.conf -d
i=0
until [ -S /run/natbake/standby/conntrackd.ctl ]; do
  i=$((i + 1))
  [ "$i" -lt 100 ] || { echo "conntrackd did not start" >&2; exit 1; }
  sleep 0.05
done
exec keepalived --dont-fork --log-console --use-file=/etc/natbake/keepalived.conf
