#!/bin/bash
# The standby pair in the moto-backed failover lab: two (and, as instances
# are replaced, more) instances of a standby site, each in its own network
# namespace and its own view of the installed files (the network lab's
# installed_run.sh), booted by the lab's stand-in for systemd
# (systemd_lab.sh), which runs the rendered units' commands as installed:
# natbake.service, natbake's other services, conntrackd and keepalived with
# natbake's drop-ins, the health timer. The AWS side is moto behind the
# failover lab's proxy (aws_proxy.py, at a VPC endpoint address that each
# instance's /etc/natbake/aws.env names); the fabric (aws_lab.py fabric)
# moves the floating interface's device into the namespace of whichever
# instance the API says holds it. Each instance has its own metadata
# (imds_stub.py: its id, its primary address as EC2 gave it, its role, the
# floating interface once attached, and autoscaling/target-lifecycle-state).
# The instances are launched by the Auto Scaling group in moto, which tags
# them natbake:site=<site>: each finds its peer through the API, no address
# is handed to it.
#
#   subnet (bridge in $p-vpc) ── $p-i1, $p-i2, ... instances (eth0: EC2's address)
#        │                   ── ens6: the floating interface, 10.0.0.100
#        │                   ── $p-api: moto, the proxy at 10.0.0.2, the fabric
#        │                   ── $p-tgt: 10.0.1.25 (TCP forward), 10.0.2.53 (UDP)
#        │                   ── $p-prv: 10.0.3.10, a private host (egress)
#        └── $p-igw: 10.0.0.1, maps 198.51.100.10 1:1 to 10.0.0.100 ── $p-cli:
#            the Internet, 203.0.113.110 (the forwards' allowed source)
#
# Each run: the pair boots (the first instance active, the second standby
# once it has found the first), flows carry data continuously through the
# elastic IP (TCP with the client talking first, TCP with the target
# pushing, UDP) and out through the egress NAT (an Internet server pushing
# to a private host), then the scenario's event, then a new connection is
# probed (forward and egress) and the flows are counted. One JSON line per
# run on stdout; everything it made is removed when it ends, also on
# failure.
#
# Scenarios:
#   kill        the active dies abruptly: every process in its namespace
#               killed, its links down, no goodbye
#   kill-api    the same while the API is slow or failing for a while
#               (the proxy's faults)
#   partition   the two cannot reach each other (the subnet drops what
#               one sends the other) but both reach the API, for
#               PARTITION_S seconds; the interface moves at most once
#   lifecycle   the group terminates the active: target-lifecycle-state
#               Terminated in its metadata and the termination hook
#               waiting; once the instance completes the hook, EC2
#               terminates it (interface detached a second later) and it
#               goes
#   rolling     both instances replaced one after the other as a rolling
#               update does: the standby terminated through the hook and a
#               new instance launched, then the active the same way
#
# Usage: aws_pair_lab.sh SITE_DIR SCENARIO RUNS CONNECTIONS WORK_DIR
# The site must be tests/fixtures/valid/standby.yaml's shape (TCP 51532 to
# 10.0.1.25:1532 and UDP 5353 to 10.0.2.53:53 from 203.0.113.110/32, VPC
# 10.0.0.0/16). NATBAKE_MOTO_VENV names the moto virtual environment.
set -euo pipefail
site=$1 scenario=$2 runs=$3 conns=$4 work=$5
here=$(cd "$(dirname "$0")" && pwd)
netlab=$here/../netlab
failover=$here/../failover
venv=${NATBAKE_MOTO_VENV:?NATBAKE_MOTO_VENV must name the moto virtual environment}
py=$venv/bin/python3
case $scenario in kill | kill-api | partition | lifecycle | rolling) ;; *) echo "unknown scenario $scenario" >&2; exit 2 ;; esac
p=${PAIR_LAB_PREFIX:-sa$$}
[ "${#p}" -le 8 ] || { echo "aws_pair_lab: prefix '$p' is longer than 8 characters" >&2; exit 2; }
# How long a partition lasts; how long the instances get to boot and pair
# (a bound, not a wait: a new instance that its keepalived elected before
# the active knew it stands by once the active's adverts reach it, or,
# when they do not within natbake-standby's RELEASE_WAIT, after its
# YIELD_HOLD of 30 s).
PARTITION_S=${PAIR_LAB_PARTITION_S:-8}
BOOT_S=${PAIR_LAB_BOOT_S:-120}
HOOK=natbake-handover
EIP=198.51.100.10 FLOATING=10.0.0.100 API=10.0.0.2
fixed_ns=(vpc igw cli tgt prv api)
slots=()   # instance slots of the lab now (i1, i2...)
dead=()    # those of them that died or were terminated
retired=() # dead ones gone from the lab (namespace deleted) between runs
next_slot=1
pids=()

function log { echo "aws_pair_lab: $*" >&2; echo "$(date +%s.%N) $*" >>"$work/lab.log"; }

function all_ns { local n; for n in "${fixed_ns[@]}" "${slots[@]}" "${retired[@]}"; do echo "$p-$n"; done; }

function cleanup {
  local ns pid d
  for ns in $(all_ns); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  sleep 0.2
  for ns in $(all_ns); do ip netns del "$ns" 2>/dev/null || true; done
  for d in "$work"/stage-*/ovl; do umount "$d" 2>/dev/null || true; done
}
trap cleanup EXIT

function in_ns { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Namespaces of this prefix that an earlier lab left (one killed outright:
# SIGKILL runs no EXIT trap): their processes, then the namespaces, go
# before this lab makes its own.
function clear_stale {
  local ns pid
  for ns in $(ip netns list | awk -v p="$p-" 'index($1, p) == 1 { print $1 }'); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    log "removed $ns, which an earlier lab left"
  done
}

function wait_for {
  local what=$1 limit=$2
  local deadline=$((SECONDS + limit))
  shift 2
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || { log "timed out after ${limit}s waiting for $what"; diagnostics; exit 1; }
    sleep 0.1
  done
}

function diagnostics {
  local f s
  # PAIR_LAB_HOLD: seconds to leave a failed lab up for a look.
  sleep "${PAIR_LAB_HOLD:-0}"
  for s in "${slots[@]}"; do
    ip netns pids "$p-$s" >/dev/null 2>&1 || continue
    echo "--- $s: addresses, routes, forwarding, counters, connections" >&2
    {
      ip -n "$p-$s" -br addr
      ip -n "$p-$s" route
      in_ns "$p-$s" cat /proc/sys/net/ipv4/ip_forward
      in_ns "$p-$s" iptables-save -c | grep -v '^#'
      in_ns "$p-$s" conntrack -L 2>/dev/null | grep -v 'dport=80 ' | head -n 40
    } >&2 2>&1 || true
  done
  for f in "$work"/lab.log "$work"/syslog-*.txt "$work"/units-*.log "$work"/fabric.log "$work"/api.log; do
    [ -f "$f" ] || continue
    echo "--- $f" >&2
    tail -n 40 "$f" >&2
  done
}

# A control call to the proxy (aws_lab.py's operations, faults, terminate,
# lifecycle); prints its JSON answer.
function control {
  in_ns "$p-api" curl -sS --fail-with-body --noproxy '*' -m 30 --data "$2" "http://$API/__lab/$1"
}

function json { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

function link_to_subnet {
  local name=$1 inner=$2 ns=$3
  ip link add "$p-v-$name" type veth peer name "$inner" netns "$ns"
  ip link set "$p-v-$name" netns "$p-vpc"
  ip -n "$p-vpc" link set "$p-v-$name" master br0 up
}

function topology {
  local n
  for n in "${fixed_ns[@]}"; do
    ip netns add "$p-$n"
    ip -n "$p-$n" link set lo up
    in_ns "$p-$n" sysctl -qw net.ipv4.ip_forward=0
  done
  ip -n "$p-vpc" link add br0 type bridge
  ip -n "$p-vpc" link set br0 up
  link_to_subnet tgt eth0 "$p-tgt"
  ip -n "$p-tgt" addr add 10.0.1.25/16 dev eth0
  ip -n "$p-tgt" addr add 10.0.2.53/16 dev eth0
  link_to_subnet prv eth0 "$p-prv"
  ip -n "$p-prv" addr add 10.0.3.10/16 dev eth0
  link_to_subnet igw in "$p-igw"
  ip -n "$p-igw" addr add 10.0.0.1/16 dev in
  link_to_subnet api eth0 "$p-api"
  ip -n "$p-api" addr add "$API/16" dev eth0
  for n in tgt prv igw api; do
    ip -n "$p-$n" link set "$([ "$n" = igw ] && echo in || echo eth0)" up
  done
  # The route tables: the private subnets' default route is the floating
  # interface's address.
  ip -n "$p-tgt" route add default via "$FLOATING"
  ip -n "$p-prv" route add default via "$FLOATING"
  # The Internet, behind the gateway.
  ip link add "$p-inet" type veth peer name out netns "$p-igw"
  ip link set "$p-inet" netns "$p-cli"
  ip -n "$p-cli" link set "$p-inet" name eth0
  ip -n "$p-cli" addr add 203.0.113.110/24 dev eth0
  ip -n "$p-cli" link set eth0 up
  ip -n "$p-cli" route add default via 203.0.113.1
  ip -n "$p-igw" addr add 203.0.113.1/24 dev out
  ip -n "$p-igw" link set out up
  in_ns "$p-igw" sysctl -qw net.ipv4.ip_forward=1
  # The elastic IP, mapped 1:1 to the floating address; nothing else of the
  # VPC reaches the Internet unmasqueraded.
  in_ns "$p-igw" iptables -t nat -A PREROUTING -d "$EIP" -j DNAT --to-destination "$FLOATING"
  in_ns "$p-igw" iptables -t nat -A POSTROUTING -s "$FLOATING" -o out -j SNAT --to-source "$EIP"
  in_ns "$p-igw" iptables -A FORWARD -i in -o out ! -s "$FLOATING" -j DROP
}

# moto, the account's resources (the floating interface with the elastic
# IP, the Auto Scaling group and its termination hook), the proxy and the
# fabric, in $p-api.
function api {
  in_ns "$p-api" "$venv/bin/moto_server" -H 127.0.0.1 -p 5000 >"$work/moto.out" 2>&1 &
  pids+=($!)
  wait_for "moto" 30 bash -c "ip netns exec '$p-api' ss -Hlnt | grep -q '127.0.0.1:5000'"
  local setup
  setup=$(in_ns "$p-api" "$py" "$failover/aws_lab.py" setup --site "$site_name" --cidr 10.0.0.0/16 \
    --address "$FLOATING" --az us-east-1a)
  eni=$(json eni <<<"$setup")
  eni_mac=$(json mac <<<"$setup")
  group=$(json group <<<"$setup")
  first_instance=$(json instance <<<"$setup")
  first_address=$(json instance_address <<<"$setup")
  # The floating interface's device, parked in $p-api while attached to nobody.
  ip link add "$p-v-flt" type veth peer name ens6 netns "$p-api"
  ip -n "$p-api" link set ens6 address "$eni_mac"
  ip link set "$p-v-flt" netns "$p-vpc"
  ip -n "$p-vpc" link set "$p-v-flt" master br0 up
  : >"$work/instances.map"
  in_ns "$p-api" "$py" "$failover/aws_proxy.py" --bind "$API" --port 80 \
    --moto http://127.0.0.1:5000 --log "$work/api.log" >"$work/proxy.out" 2>&1 &
  pids+=($!)
  in_ns "$p-api" "$py" "$failover/aws_lab.py" fabric --eni "$eni" --device ens6 --park "$p-api" \
    --map "$work/instances.map" --log "$work/fabric.log" >"$work/fabric.out" 2>&1 &
  pids+=($!)
  wait_for "the proxy" 30 bash -c "ip netns exec '$p-api' ss -Hlnt | grep -q '$API:80'"
  in_ns "$p-api" "$py" - "$group" "$HOOK" <<'PY'
import sys, boto3
asg = boto3.client("autoscaling", region_name="us-east-1", endpoint_url="http://127.0.0.1:5000",
                   aws_access_key_id="AKIALAB0000000000000",
                   aws_secret_access_key="lab0secret0lab0secret0lab0secret0lab0sec")
asg.put_lifecycle_hook(LifecycleHookName=sys.argv[2], AutoScalingGroupName=sys.argv[1],
                       LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                       HeartbeatTimeout=120, DefaultResult="CONTINUE")
PY
  printf 'NATBAKE_EC2_ENDPOINT=http://%s/\nNATBAKE_AUTOSCALING_ENDPOINT=http://%s/\nNATBAKE_CLOUDWATCH_ENDPOINT=http://%s/\nNATBAKE_FLOATING_CONFIG=ip\n' \
    "$API" "$API" "$API" >"$work/aws.env"
}

# Addresses that are the lab's own: an instance that EC2 gave one of them
# is terminated and another launched.
function taken {
  local a=$1 s
  case $a in 10.0.0.0 | 10.0.0.1 | 10.0.0.2 | "$FLOATING" | 10.0.1.25 | 10.0.2.53 | 10.0.3.10 | 10.0.255.255) return 0 ;; esac
  for s in "${slots[@]}"; do [ "$(cat "$work/address-$s" 2>/dev/null)" = "$a" ] && return 0; done
  return 1
}

# The group's next instance into id and address: a replacement the group
# launched itself (for an instance that EC2 terminated: moto's group
# keeps its desired capacity), or else one more (desired capacity one
# more). Launching one more while the group has a replacement of its
# own would leave that one running outside the lab, and the serving
# instance may pair with it.
function group_member {
  local out
  # shellcheck disable=SC2046 # one id a word
  out=$(control members "{\"group\": \"$group\"}" | python3 -c '
import json, sys
known = set(sys.argv[1:])
new = [m for m in json.load(sys.stdin)["members"] if m["instance"] not in known]
print(json.dumps(new[0]) if new else "")' $(cat "$work"/id-* 2>/dev/null))
  [ -n "$out" ] || out=$(control launch "{\"group\": \"$group\"}")
  id=$(json instance <<<"$out") address=$(json address <<<"$out")
}

# A new instance of the group in slot $1 (its own namespace, metadata and
# files), booted. The first slot is the group's first instance; later ones
# are launched (desired capacity one more).
function instance {
  local slot=$1 id address mac
  if [ -n "$first_instance" ]; then
    id=$first_instance address=$first_address first_instance=''
  else
    group_member
  fi
  while taken "$address"; do
    log "EC2 gave $id the lab's address $address; terminating it and taking the group's next"
    control terminate "{\"instance\": \"$id\", \"detach_after\": 0}" >/dev/null
    group_member
  done
  slots+=("$slot")
  echo "$id" >"$work/id-$slot"
  echo "$address" >"$work/address-$slot"
  echo "$id $p-$slot" >>"$work/instances.map"
  local ns=$p-$slot
  ip netns add "$ns"
  in_ns "$ns" sysctl -qw net.ipv4.ip_forward=0
  # In a VPC the fabric answers ARP, with the MAC of the interface that has
  # the address; here the instances' own kernels answer, and by default
  # any interface answers for any of the host's addresses (the primary
  # interface for the floating address too), which the subnet would then
  # keep sending to a dead instance. Answering only on the interface that
  # has the address gives the subnet the VPC's answers.
  in_ns "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  ip -n "$ns" link set lo up
  link_to_subnet "$slot" eth0 "$ns"
  ip -n "$ns" addr add "$address/16" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" addr add 169.254.169.254/32 dev lo
  ip -n "$ns" route add default via 10.0.0.1 dev eth0 metric 100
  mac=$(in_ns "$ns" cat /sys/class/net/eth0/address)
  echo InService >"$work/lifecycle-$slot"
  in_ns "$ns" python3 "$netlab/imds_stub.py" --bind 169.254.169.254 --port 80 --mac "$mac" \
    --local-ipv4 "$address" --log "$work/imds-$slot.log" --instance-id "$id" --region us-east-1 \
    --az us-east-1a --role natbake-lab-instance --interface "$eni_mac=10.0.0.0/16=$eni" \
    --attach-lag 0.2 --cidr 10.0.0.0/16 --lifecycle-file "$work/lifecycle-$slot" \
    >"$work/imds-$slot.out" 2>&1 &
  pids+=($!)
  wait_for "the metadata of $slot" 20 bash -c "ip netns exec '$ns' ss -Hlnt | grep -q '169.254.169.254:80'"
  # Its files: every installed artifact, the lab's aws.env, the stand-in for systemd.
  local dir=$work/stage-$slot
  mkdir -p "$dir/ovl" "$work/share-$slot"
  python3 - "$site" "$dir/install.list" <<'PY'
import json, sys
site, out = sys.argv[1:]
m = json.load(open(f"{site}/manifest.json"))
with open(out, "w") as f:
    for a in m["artifacts"]:
        if a["install_path"]:
            f.write(f"{a['mode']} {site}/{a['path']} {a['install_path']}\n")
PY
  [ ! -s "$work/standby.conf" ] || echo "0644 $work/standby.conf /etc/natbake/standby.conf" >>"$dir/install.list"
  cat >>"$dir/install.list" <<LIST
0644 $work/aws.env /etc/natbake/aws.env
0755 $here/systemd_lab.sh /usr/local/sbin/lab-systemd
LIST
  echo "$work/share-$slot /run/natbake-lab" >"$dir/keep.list"
  rm -f "$dir/devlog.sock"
  python3 "$netlab/devlog_sink.py" "$dir/devlog.sock" "$work/syslog-$slot.txt" &
  pids+=($!)
  wait_for "the syslog socket of $slot" 10 test -S "$dir/devlog.sock"
  # shellcheck disable=SC2046 # one unit a word
  in_ns "$ns" unshare -m --propagation private sh "$netlab/installed_run.sh" "$dir" "$dir/devlog.sock" \
    env LAB_LOG=/run/natbake-lab/units.log /usr/local/sbin/lab-systemd boot $(enabled_units) >>"$work/boot-$slot.log" 2>&1 &
  pids+=($!)
  log "instance $slot: $id at $address"
}

# The units enabled on the image: those the rendered provision.sh enables,
# and keepalived's and conntrackd's, which Debian's packages enable when
# they are installed.
function enabled_units {
  local line
  line=$(grep -E '^systemctl enable ' "$site/provision.sh") || { log "provision.sh enables nothing"; exit 1; }
  echo "${line#systemctl enable } keepalived.service conntrackd.service"
}

# The slot of the instance the API says holds the floating interface.
function holder_slot {
  local holder s
  holder=$(control interface "{\"eni\": \"$eni\"}" | json holder)
  for s in "${slots[@]}"; do [ "$(cat "$work/id-$s")" = "$holder" ] && { echo "$s"; return 0; }; done
  return 1
}

function forwarding { in_ns "$p-$1" cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo gone; }

# Serving: the API says it holds the interface, its device is there, it forwards.
function serving {
  local s=$1
  [ "$(holder_slot 2>/dev/null)" = "$s" ] && ip -n "$p-$s" link show ens6 >/dev/null 2>&1 &&
    [ "$(forwarding "$s")" = 1 ]
}

# A command inside the instance in slot $1 (its mount and network
# namespaces, as its own processes see them).
function on_instance {
  local s=$1 init
  shift
  init=$(cat "$work/share-$s/init.pid" 2>/dev/null) || return 1
  nsenter -t "$init" -m -n "$@"
}

# The role natbake-standby keeps (active, standby, fault...) and the peer
# in this instance's part of keepalived.conf.
function role_of { on_instance "$1" cat /run/natbake/standby/role 2>/dev/null | awk '{print $1}'; }
function peer_of {
  on_instance "$1" cat /run/natbake/standby/keepalived-local.conf 2>/dev/null |
    awk '/unicast_peer/ {p = 1; next} p && NF {print $1; exit}'
}

# Slot $1 is serving and paired with slot $2, which is a standby that does
# not forward: each names the other as its peer. Holds twice, 2 s apart.
function paired_once {
  local a=$1 b=$2
  serving "$a" && [ "$(role_of "$a")" = active ] && [ "$(role_of "$b")" = standby ] &&
    [ "$(forwarding "$b")" = 0 ] &&
    [ "$(peer_of "$a")" = "$(cat "$work/address-$b")" ] && [ "$(peer_of "$b")" = "$(cat "$work/address-$a")" ]
}
function paired { paired_once "$1" "$2" && sleep 2 && paired_once "$1" "$2"; }

# The split-brain rule of the instance in slot $1 (natbake-standby's own
# may_force, its script sourced there) lets it force the interface away
# from the instance in slot $2 now, were keepalived to elect it master.
function may_force_now {
  local holder
  holder=$(cat "$work/id-$2")
  # shellcheck disable=SC2016 # expanded by the instance's shell
  on_instance "$1" bash -c '. /usr/local/sbin/natbake-standby && read_conf "$CONF_FILE" && read_role &&
    BEFORE=$ROLE BEFORE_AT=$ROLE_AT BEFORE_UP=${ROLE_UP:-} ELECTED_AT=$(date +%s) ELECTED_UP=$(uptime_now) &&
    may_force "$0"' "$holder" >/dev/null 2>&1
}

# The elastic IP's public address and the interface it is associated with.
function eip_state {
  in_ns "$p-api" "$py" - <<'PY'
import boto3
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url="http://127.0.0.1:5000",
                   aws_access_key_id="AKIALAB0000000000000",
                   aws_secret_access_key="lab0secret0lab0secret0lab0secret0lab0sec")
print(" ".join("%s@%s" % (a["PublicIp"], a.get("NetworkInterfaceId")) for a in ec2.describe_addresses()["Addresses"]))
PY
}

# Moves of the floating interface into an instance (not to the lab's
# parking place, where a detached interface waits).
function moves { grep -c " moved .* -> $p-i" "$work/fabric.log" 2>/dev/null || true; }

function start_flows {
  local n=$1 k
  rm -f "$work"/hold-*.json "$work"/hold-*.json.stop
  in_ns "$p-cli" python3 "$here/flows.py" hold "$EIP" 51532 "$conns" "$n" "$work/hold-echo.json" &
  flows=($!)
  in_ns "$p-cli" python3 "$here/flows.py" hold "$EIP" 51532 "$conns" "$n" "$work/hold-push.json" push &
  flows+=($!)
  in_ns "$p-prv" python3 "$here/flows.py" hold 203.0.113.110 9000 "$conns" "$n" "$work/hold-egress.json" push &
  flows+=($!)
  in_ns "$p-cli" python3 "$here/flows.py" udphold "$EIP" 5353 "$conns" "$n" "$work/hold-udp.json" &
  flows+=($!)
  for k in "${flows[@]}"; do pids+=("$k"); done
}

function stop_flows {
  local k
  for k in echo push egress udp; do touch "$work/hold-$k.json.stop"; done
  wait "${flows[@]}" || true
}

# A new connection through the elastic IP, and one out through the egress
# NAT, each within 30 s: the times they first worked.
function probe {
  rm -f "$work/probe.txt" "$work/probe-egress.txt"
  in_ns "$p-cli" timeout 30 python3 "$here/flows.py" probe "$EIP" 51532 "$work/probe.txt" &
  local a=$!
  in_ns "$p-prv" timeout 30 python3 "$here/flows.py" probe 203.0.113.110 9000 "$work/probe-egress.txt" &
  local b=$!
  wait "$a" || { log "no new connection through the elastic IP within 30 s"; return 1; }
  wait "$b" || { log "no new egress connection within 30 s"; return 1; }
}

# The instance in slot $1 dies: every process in its namespace, then its links.
function kill_instance {
  local s=$1 pid
  dead+=("$s")
  for pid in $(ip netns pids "$p-$s"); do kill -9 "$pid" 2>/dev/null || true; done
  ip -n "$p-$s" link set eth0 down 2>/dev/null || true
  ip -n "$p-$s" link set ens6 down 2>/dev/null || true
}

# The group terminates the instance in slot $1 through its termination
# hook: the instance's metadata says Terminated, the hook waits; once the
# instance completes it (or after 60 s, the lab's bound), EC2 terminates
# it, shutting it down cleanly (its units stopped), its interfaces
# detached a second later.
function group_terminates {
  local s=$1 id i=0
  id=$(cat "$work/id-$s")
  control lifecycle "{\"instance\": \"$id\", \"group\": \"$group\", \"hook\": \"$HOOK\"}" >/dev/null
  echo Terminated >"$work/lifecycle-$s"
  log "the group terminates $s ($id): target lifecycle state Terminated"
  until grep -q "lifecycle-completed $id" "$work/api.log" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 600 ] || { log "$s did not complete the lifecycle hook within 60 s"; hook_missed=$((hook_missed + 1)); break; }
    sleep 0.1
  done
  control terminate "{\"instance\": \"$id\", \"detach_after\": 1}" >/dev/null
  # The shutdown: its units stopped as at a clean shutdown, then it is gone.
  local init i=0
  init=$(cat "$work/share-$s/init.pid" 2>/dev/null || true)
  if [ -n "$init" ] && kill -TERM "$init" 2>/dev/null; then
    while kill -0 "$init" 2>/dev/null && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
  fi
  kill_instance "$s"
  log "$s terminated"
}

function count {
  python3 - "$work" "$@" <<'PY'
import json, sys
work, *extra = sys.argv[1:]
out = {}
for kind in ("echo", "push", "egress", "udp"):
    r = json.load(open(f"{work}/hold-{kind}.json"))
    out[kind] = {"held": len(r), "survived": sum(x["alive"] for x in r),
                 "longest_wait_s": round(max(x["longest_wait"] for x in r), 3),
                 "errors": sorted({x["error"] for x in r if x["error"] and not x["alive"]})}
for pair in extra:
    k, v = pair.split("=", 1)
    try:
        out[k] = json.loads(v)
    except ValueError:
        out[k] = v
print(json.dumps(out))
PY
}

# What each living instance has of the flows, for the lab's log: the
# kernel's entries and conntrackd's caches (internal: its own table;
# external: what the peer synced) of the forwards and the egress flows.
function sync_snapshot {
  local s k dump
  for s in "${slots[@]}"; do
    [[ " ${dead[*]} " == *" $s "* ]] && continue
    dump=''
    for k in kernel internal external; do
      case $k in
      kernel) dump+="$k=$(on_instance "$s" conntrack -L 2>/dev/null | flow_entries) " ;;
      internal) dump+="$k=$(on_instance "$s" conntrackd -C /run/natbake/standby/conntrackd.conf -i 2>/dev/null | flow_entries) " ;;
      external) dump+="$k=$(on_instance "$s" conntrackd -C /run/natbake/standby/conntrackd.conf -e 2>/dev/null | flow_entries) " ;;
      esac
    done
    log "$1: $s ($(role_of "$s")) flows $dump"
  done
}

# Entries of the lab's flows on stdin, counted per kind: echo/push (TCP
# 51532), egress (TCP 9000), udp (UDP 5353).
function flow_entries {
  awk '/dport=51532 / && /tcp/ {t++} /dport=9000 / && /tcp/ {e++} /dport=5353 / {u++}
    END {printf "tcp:%d,egress:%d,udp:%d", t, e, u}'
}

function stamp_of { awk -v w="$2" 'index($0, w) {print $1; exit}' "$1" 2>/dev/null; }

# A new instance of the group in the next free slot, booted; its slot in NEW.
function new_instance {
  NEW=i$next_slot
  next_slot=$((next_slot + 1))
  instance "$NEW"
}

# The lab's lasting part, made once: the subnet and the Internet, the API,
# the servers, the first instance serving alone (the active A).
function lab_up {
  local d
  for d in "$work"/stage-*/ovl; do umount "$d" 2>/dev/null || true; done
  rm -rf --one-file-system "$work"/share-* "$work"/stage-* "$work"/syslog-*.txt "$work"/fabric.log "$work"/api.log \
    "$work"/lab.log "$work"/imds-*.log "$work"/lifecycle-* "$work"/id-* "$work"/address-*
  topology
  api
  in_ns "$p-tgt" python3 "$here/flows.py" server 1532 &
  pids+=($!)
  in_ns "$p-tgt" python3 "$here/flows.py" udpserver 10.0.2.53 53 &
  pids+=($!)
  in_ns "$p-cli" python3 "$here/flows.py" server 9000 &
  pids+=($!)
  new_instance
  a=$NEW b=''
  wait_for "$a serving" "$BOOT_S" serving "$a"
  log "$a serving"
}

# Between runs of one lab: what died or was terminated leaves it (the
# group terminates an instance that failed its health check; its
# namespace goes), and the serving instance is the next run's active.
function retire_dead {
  local s id keep=()
  for s in "${slots[@]}"; do
    if [[ " ${dead[*]} " == *" $s "* ]]; then
      id=$(cat "$work/id-$s")
      control terminate "{\"instance\": \"$id\", \"detach_after\": 0}" >/dev/null || true
      for pid in $(ip netns pids "$p-$s" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
      umount "$work/stage-$s/ovl" 2>/dev/null || true
      ip netns del "$p-$s" 2>/dev/null || true
      retired+=("$s")
      log "$s ($id) left the lab"
    else
      keep+=("$s")
    fi
  done
  slots=("${keep[@]}") dead=()
  a=$(holder_slot) || { log "nobody holds the floating interface between runs"; diagnostics; exit 1; }
  b=''
  for s in "${slots[@]}"; do [ "$s" = "$a" ] || b=$s; done
}

# The standby's external cache holds every flow of this run (conntrackd
# synced it): each flow's source port, as its client's socket has it, in
# an entry there (entries of earlier runs' closed flows do not count).
function synced {
  local ports cache port
  ports=$({
    in_ns "$p-cli" ss -Htn state established dst "$EIP" dport = 51532
    in_ns "$p-cli" ss -Hun dst "$EIP" dport = 5353
    in_ns "$p-prv" ss -Htn state established dst 203.0.113.110 dport = 9000
  } | awk '{n = split($3, a, ":"); print a[n]}')
  [ "$(wc -w <<<"$ports")" -eq $((4 * conns)) ] || return 1
  cache=$(on_instance "$1" conntrackd -C /run/natbake/standby/conntrackd.conf -e 2>/dev/null) || return 1
  for port in $ports; do
    grep -q "sport=$port " <<<"$cache" || return 1
  done
}

function one_run {
  local run=$1 t_event t_first t_egress moved_at attach_at detach_at active end_state api_first_at arrived_at
  hook_missed=0
  local t_run=$SECONDS
  if [ "$run" -eq 1 ] || [ -n "$fresh" ]; then
    lab_up
  else
    retire_dead
  fi
  # The pair: the active and a standby, paired. A run that starts from the
  # last one's survivor pairs it with the group's next instance (or with
  # the standby the last run left paired).
  if [ -z "$b" ]; then
    new_instance
    b=$NEW
  fi
  wait_for "$a active and $b standby, paired" "$BOOT_S" paired "$a" "$b"
  log "$a and $b paired"
  # By the split-brain rule a standby forces the interface away from a
  # running holder only once the pair is steady (natbake-standby's
  # may_force): the abrupt events meet a steady pair. A condition, asked
  # of the instance's own rule, not a time.
  case $scenario in
  kill | kill-api | partition)
    wait_for "$b allowed to take over by force" 120 may_force_now "$b" "$a"
    log "$b may take over by force"
    ;;
  esac
  sleep "${PAIR_LAB_SETTLE:-1}"
  # The flows last until the run says stop (at most 10 minutes).
  start_flows 600
  sleep 2
  local before_moves eip_before first_slot=$next_slot
  # The pair as it was found, still: the event meets an active and a standby.
  paired_once "$a" "$b" || { log "the pair changed before the event: $a is $(role_of "$a"), $b is $(role_of "$b")"; diagnostics; exit 1; }
  case $scenario in
  kill | kill-api | partition)
    # An abrupt event meets a standby that has the flows (for a planned
    # one, the handover's own sync is what is tested).
    local i=0
    until synced "$b"; do
      i=$((i + 1))
      [ "$i" -lt 100 ] || { log "$b has not all the flows after 10 s"; break; }
      sleep 0.1
    done
    log "$b has the flows"
    ;;
  esac
  before_moves=$(moves)
  eip_before=$(eip_state)
  sync_snapshot "before $scenario"
  t_event=$(date +%s.%N)
  log "event: $scenario"
  case $scenario in
  kill)
    kill_instance "$a"
    ;;
  kill-api)
    # Slow answers for every call, then the first attach and detach refused
    # as EC2's own errors do, while the standby takes over.
    control faults '[{"action": "*", "count": 3, "kind": "slow:1"}, {"action": "DetachNetworkInterface", "count": 1, "kind": "500"}, {"action": "AttachNetworkInterface", "count": 1, "kind": "503"}, {"action": "DescribeNetworkInterfaces", "count": 1, "kind": "drop"}]' >/dev/null
    kill_instance "$a"
    ;;
  partition)
    # In the subnet, not in the instances: a route inside an instance
    # would not stop keepalived, whose socket is bound to its interface.
    local aa ab
    aa=$(cat "$work/address-$a") ab=$(cat "$work/address-$b")
    in_ns "$p-vpc" nft -f - <<NFT
table bridge partition {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ip saddr $aa ip daddr $ab drop
    ip saddr $ab ip daddr $aa drop
  }
}
NFT
    sleep "$PARTITION_S"
    in_ns "$p-vpc" nft delete table bridge partition
    # A health interval or two to settle.
    sleep 10
    ;;
  lifecycle)
    group_terminates "$a"
    ;;
  rolling)
    # A rolling update of a group of two that keeps one in service: the
    # standby goes first and a new instance takes its place; then the
    # active, whose role the new one takes.
    group_terminates "$b"
    new_instance
    local c=$NEW
    if [ "${PAIR_LAB_EARLY_LOOK:-1}" = 1 ]; then
      # The active's own look for its peer (its timer's) happening while
      # the new instance boots, before its keepalived and conntrackd run.
      on_instance "$a" /usr/local/sbin/natbake-standby discover >>"$work/lab.log" 2>&1 || true
      log "$a looked for its peer while $c boots"
    fi
    wait_for "$a active and $c standby, paired" "$BOOT_S" paired "$a" "$c"
    sleep "${PAIR_LAB_SETTLE:-1}"
    sync_snapshot "before the active's termination"
    group_terminates "$a"
    wait_for "$c serving" "$BOOT_S" serving "$c"
    log "$c serving"
    new_instance
    wait_for "$c active and $NEW standby, paired" "$BOOT_S" paired "$c" "$NEW"
    log "$c and $NEW paired"
    ;;
  esac
  if ! probe; then
    stop_flows
    diagnostics
    exit 1
  fi
  t_first=$(cat "$work/probe.txt")
  t_egress=$(cat "$work/probe-egress.txt")
  log "new connections work"
  sleep 2
  stop_flows
  log "flows stopped"
  active=$(holder_slot || echo none)
  end_state=serving
  if [ "$active" = none ] || ! serving "$active"; then end_state=not-serving; fi
  # The run's instances: its pair and those it launched.
  local forwarding_list='' s
  for s in "${slots[@]}"; do
    [ "$s" = "$a" ] || [ "$s" = "$b" ] || [ "${s#i}" -ge "$first_slot" ] || continue
    if [[ " ${dead[*]} " == *" $s "* ]]; then
      forwarding_list+="\"$s=dead\","
    else
      forwarding_list+="\"$s=$(forwarding "$s")\","
    fi
  done
  attach_at=$(awk -v t="$t_event" '$1 >= t && $2 == "AttachNetworkInterface" && $3 == 200 {print $1; exit}' "$work/api.log")
  detach_at=$(awk -v t="$t_event" '$1 >= t && $2 == "DetachNetworkInterface" {print $1; exit}' "$work/api.log")
  moved_at=$(awk -v t="$t_event" '$1 >= t && / moved / {print $1; exit}' "$work/fabric.log")
  # The device's arrival in an instance (a move off an instance goes to
  # the parking place first).
  arrived_at=$(awk -v t="$t_event" -v to="-> $p-i" '$1 >= t && / moved / && index($0, to) {print $1; exit}' "$work/fabric.log")
  # The first call any instance made to the API after the event (not the
  # lab's own control calls): the end of detection.
  api_first_at=$(awk -v t="$t_event" '$1 >= t && $2 != "control" && $2 ~ /^[A-Z]/ {print $1; exit}' "$work/api.log")
  count "run=$run" "scenario=\"$scenario\"" \
    "takeover_s=$(awk -v a="$t_first" -v b="$t_event" 'BEGIN {printf "%.3f", a - b}')" \
    "egress_after_s=$(awk -v a="$t_egress" -v b="$t_event" 'BEGIN {printf "%.3f", a - b}')" \
    "event_at=$t_event" "first_at=$t_first" \
    "api_first_at=${api_first_at:-null}" "api_detach_at=${detach_at:-null}" "api_attach_at=${attach_at:-null}" "moved_at=${moved_at:-null}" "arrived_at=${arrived_at:-null}" \
    "moves=$(($(moves) - before_moves))" "active=\"$active\"" "end=\"$end_state\"" \
    "forwarding=[${forwarding_list%,}]" "hooks_missed=$hook_missed" \
    "eip_before=\"$eip_before\"" "eip_after=\"$(eip_state)\"" "run_s=$((SECONDS - t_run))"
  mkdir -p "$work/run-$run"
  cp "$work"/syslog-*.txt "$work"/fabric.log "$work"/api.log "$work"/lab.log "$work/run-$run/" 2>/dev/null || true
  for s in "${slots[@]}"; do cp "$work/share-$s/units.log" "$work/run-$run/units-$s.log" 2>/dev/null || true; done
  if [ -n "$fresh" ] || [ "$run" -eq "$runs" ]; then
    cleanup
    pids=() slots=() dead=() retired=() next_slot=1
  fi
}

mkdir -p "$work"
clear_stale
# PAIR_LAB_DISCOVER_EVERY=N: the instances' standby.conf sets
# discover_every (the serving instance's look for a replaced peer, 30 s by
# default): the benchmark's runs after the first pair their survivor with
# the next instance sooner. It plays no part in a takeover.
rm -f "$work/standby.conf"
[ -z "${PAIR_LAB_DISCOVER_EVERY:-}" ] || echo "discover_every=$PAIR_LAB_DISCOVER_EVERY" >"$work/standby.conf"
site_name=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["site"])' "$site/manifest.json")
# Runs after the first start from the last run's survivor, paired with the
# group's next instance, in the same lab (PAIR_LAB_FRESH=1: a whole new lab
# for each run).
fresh=${PAIR_LAB_FRESH:-}
# PAIR_LAB_UNTIL=EPOCH: no run starts after that time (the benchmark's
# budget); the runs made are printed as always.
for run in $(seq 1 "$runs"); do
  if [ -n "${PAIR_LAB_UNTIL:-}" ] && [ "$(date +%s)" -ge "$PAIR_LAB_UNTIL" ]; then
    log "time is up: $((run - 1)) of $runs runs made"
    break
  fi
  one_run "$run"
done
