#!/bin/bash
# Checks the standby lab's stand-in for systemd (systemd_lab.sh) on its
# own, in a private mount and pid namespace (run by lab_aws.rs under
# `unshare -m -p --fork --mount-proc --propagation private`): a service
# whose unit has an EnvironmentFile= (as Debian's keepalived.service
# does) is restarted again and again; after each restart exactly one of
# its main processes runs, the one the stand-in knows as its main pid
# (the pid a stop signals and $MAINPID gives a reload). Prints "ok".
#
# Usage: systemd_lab_check.sh SYSTEMD_LAB RESTARTS
set -euo pipefail
lab=$1 restarts=$2
# The unit directory and /run are this namespace's own.
mount -t tmpfs lab-units /etc/systemd/system
mount -t tmpfs lab-run /run
export LAB_LOG=/run/lab-check/units.log
mkdir -p /run/lab-check
printf 'ARGS=3600\n' >/run/lab-check/env
cat >/etc/systemd/system/labcheck.service <<'UNIT'
[Service]
EnvironmentFile=-/run/lab-check/env
EnvironmentFile=-/run/lab-check/missing
ExecStart=/bin/sleep $ARGS
Restart=on-failure
UNIT
function mains { pgrep -fx '/bin/sleep 3600' | sort | tr '\n' ' ' | sed 's/ $//'; }
bash "$lab" start labcheck.service
for i in $(seq 1 "$restarts"); do
  bash "$lab" restart labcheck.service
  # The new main process may still be starting on a busy machine: up to
  # 10 s for exactly one, the known one.
  for _ in $(seq 1 100); do
    known=$(cat /run/lab-systemd/labcheck.service.pid 2>/dev/null || true)
    running=$(mains)
    [ "$running" != "$known" ] || break
    sleep 0.1
  done
  if [ "$running" != "$known" ]; then
    echo "restart $i: the stand-in knows $known as the main pid, running: $running" >&2
    exit 1
  fi
done
bash "$lab" stop labcheck.service
[ -z "$(mains)" ] || { echo "still running after the stop: $(mains)" >&2; exit 1; }
echo ok
