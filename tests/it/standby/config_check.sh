#!/bin/sh
# Checks a standby site's keepalived.conf and conntrackd.conf with their
# own programs, as an instance has them after `natbake-standby peer`. Run
# inside `unshare -m -n` (a private mount and network namespace): it mounts
# a tmpfs over /run and overlays over /etc and /usr/local there, so nothing it writes
# reaches the host, and makes the interface.
# Argument: the rendered site folder.
set -eu
site=$1
mount -t tmpfs natbake-check /run
mkdir -p /run/etc-upper /run/etc-work
mount -t overlay natbake-check -o lowerdir=/etc,upperdir=/run/etc-upper,workdir=/run/etc-work /etc
mkdir -p /run/local-upper /run/local-work
mount -t overlay natbake-check -o lowerdir=/usr/local,upperdir=/run/local-upper,workdir=/run/local-work /usr/local
mkdir -p /etc/natbake /usr/local/sbin
# keepalived checks that the scripts it runs exist and only root can change them.
install -m 0755 "$site/natbake-standby.sh" /usr/local/sbin/natbake-standby
install -m 0644 "$site/keepalived.conf" /etc/natbake/keepalived.conf
install -m 0644 "$site/conntrackd.conf" /etc/natbake/conntrackd.conf.in
ip link add eth0 type veth peer name eth0-peer
ip addr add 10.0.0.11/16 dev eth0
ip link set eth0 up
ip link set lo up
bash "$site/natbake-standby.sh" peer 10.0.0.11 10.0.0.12 eth0
keepalived -t -f /etc/natbake/keepalived.conf
echo "keepalived ok"
# conntrackd parses the whole file, then fails to reach the daemon (none
# runs here): only that failure is expected.
if out=$(conntrackd -C /run/natbake/standby/conntrackd.conf -s 2>&1); then
  echo "conntrackd answered, but none runs here: $out" >&2
  exit 1
fi
case $out in
*"can't connect"*) echo "conntrackd ok" ;;
*) echo "conntrackd refused the file: $out" >&2; exit 1 ;;
esac
