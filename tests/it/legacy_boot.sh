#!/bin/bash
# The boot of the AWS NAT AMI (Amazon Linux AMI 2018.03: upstart as init,
# SysV-style rc scripts), as far as networking is concerned, run inside a
# chroot of a staged root in a network namespace of its own:
#   1. rc.sysinit applies every /etc/sysctl.d/*.conf in name order (only
#      `net.` keys here: the others belong to the host kernel);
#   2. the network service brings eth0 up and upstart emits
#      `started network`, which starts the jobs in /etc/init waiting for it
#      (the AMI's nat.conf runs /usr/sbin/configure-pat.sh);
#   3. rc.local runs last.
# After each step it prints one line
#   state after STEP: ip_forward=N natbake_chains=N masquerade_eth0=N
# and each step's stderr follows as `| ` lines, for the test to judge.
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

function state {
  local forward natbake masq
  forward=$(cat /proc/sys/net/ipv4/ip_forward)
  natbake=$(iptables-save | grep -c '^:NATBAKE-')
  masq=$(iptables-save -t nat | grep -c -- '-A POSTROUTING -o eth0.* -j MASQUERADE$')
  echo "state after $1: ip_forward=$forward natbake_chains=$natbake masquerade_eth0=$masq"
}
function run_step {
  local name=$1 out status
  shift
  out=$("$@" 2>&1)
  status=$?
  echo "step $name: exit $status"
  [ -z "$out" ] || printf '| %s\n' "${out//$'\n'/$'\n'| }"
  state "$name"
}

# The kernel as the AMI's init finds it: forwarding off, sysfs showing this
# namespace's interfaces, an eth0.
sysctl -q -w net.ipv4.ip_forward=0
mount -t sysfs sysfs /sys
ip link set lo up
# A veth pair: its driver is at hand wherever network namespaces are.
ip link add eth0 type veth peer name eth0-peer || exit 1
# rc.local touches /var/lock/subsys/local, as on Amazon Linux.
mkdir -p "$(readlink -f /var/lock)/subsys"
state boot

function sysinit_sysctl {
  local file
  for file in /etc/sysctl.d/*.conf; do
    [ -e "$file" ] || continue
    grep -E '^[[:space:]]*net\.' "$file" >/tmp/net-keys.conf || continue
    sysctl -q -p /tmp/net-keys.conf || echo "sysctl refused $file" >&2
  done
}
run_step sysctl sysinit_sysctl

ip link set eth0 up
for job in /etc/init/*.conf; do
  [ -e "$job" ] || continue
  grep -Eq '^start on started network$' "$job" || continue
  dir=$(sed -n 's/^chdir //p' "$job")
  cmd=$(sed -n 's/^exec //p' "$job")
  run_step "job $(basename "$job")" sh -c "cd '${dir:-/}' && exec $cmd"
done

if [ -x /etc/rc.d/rc.local ]; then
  run_step rc.local /etc/rc.d/rc.local
fi

# The health check as cron starts it: the first line of its cron file
# (the one without a delay), its command as cron's shell runs it.
if [ -r /etc/cron.d/natbake-health ]; then
  cmd=$(awk '$6 == "root" && $7 != "sleep" { for (i = 1; i <= 6; i++) $i = ""; sub(/^ +/, ""); print; exit }' /etc/cron.d/natbake-health)
  sh -c "$cmd"
  echo "health check from cron: exit $?"
  /usr/local/sbin/natbake-status | grep '^health:'
fi

echo "--- iptables-save ---"
iptables-save
