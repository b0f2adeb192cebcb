#!/bin/sh
# The standby lab's `takeover` command (standby.conf): what the API's
# attach is in the lab. It asks the lab's fabric for the floating
# interface (force-detached from the other instance, as EC2's
# DetachNetworkInterface with Force does), waits for the device, and
# configures it as natbake's boot does: the address, loose reverse-path
# filtering, the default route through it at metric 10.
set -eu
node=$(cat /etc/natbake-lab/node)
share=/run/natbake-lab
echo "$node" >"$share/want.$node.tmp"
mv "$share/want.$node.tmp" "$share/want.$node"
i=0
until ip link show flt >/dev/null 2>&1; do
  i=$((i + 1))
  [ "$i" -lt 200 ] || { echo "the floating interface did not arrive" >&2; exit 1; }
  sleep 0.02
done
ip addr replace 10.0.0.100/16 dev flt
echo 2 >/proc/sys/net/ipv4/conf/flt/rp_filter
ip link set flt up
ip route replace default via 10.0.0.1 dev flt metric 10
