#!/bin/bash
# The standby lab: two instances of a site's standby pair in network
# namespaces, each running the rendered keepalived.conf and conntrackd.conf
# with the installed natbake-standby, on a VPC-shaped network: a bridge for
# the subnet, a floating interface (a veth whose other end is on the
# bridge) that the fabric moves between the two as EC2's attach does, an
# Internet gateway mapping the elastic IP 1:1 to the floating address, a
# target behind the forward and a client on the Internet.
#
# Each run: the pair comes up (A active, B standby), long-lived TCP
# connections carry data (the client's echoed through the forward, the
# target pushing to the client through the forward, an Internet server
# pushing to a private host through the egress NAT), A dies abruptly (every
# process killed, its links down), and a prober measures when a new
# connection through the elastic IP works again. One JSON line per run on
# stdout. Everything it makes is removed when it ends, also on failure.
#
# Usage: pair_lab.sh SITE_DIR RUNS CONNECTIONS WORK_DIR
# The site must forward TCP port 51532 to 10.0.1.25:1532 from
# 203.0.113.110/32 (tests/fixtures/valid/standby.yaml does).
set -euo pipefail
site=$1 runs=$2 conns=$3 work=$4
here=$(cd "$(dirname "$0")" && pwd)
netlab=$here/../netlab
# Namespace names start with PAIR_LAB_PREFIX (the test's own, so that
# it can remove them even if this script is killed); at most 8
# characters, so that the host-side link names fit 15.
p=${PAIR_LAB_PREFIX:-sb$$}
[ "${#p}" -le 8 ] || { echo "pair_lab: prefix '$p' is longer than 8 characters" >&2; exit 2; }
ns_all=("$p-vpc" "$p-a" "$p-b" "$p-tgt" "$p-prv" "$p-igw" "$p-cli")
pids=()

function log { echo "pair_lab: $*" >&2; }

function cleanup {
  local ns pid
  for ns in "${ns_all[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  sleep 0.2
  for ns in "${ns_all[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  for d in "$work"/stage-*/ovl; do umount "$d" 2>/dev/null || true; done
}
trap cleanup EXIT

function in_ns { local ns=$1; shift; ip netns exec "$ns" "$@"; }

function topology {
  local ns
  for ns in "${ns_all[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    in_ns "$ns" sysctl -qw net.ipv4.ip_forward=0
  done
  ip -n "$p-vpc" link add br0 type bridge
  ip -n "$p-vpc" link set br0 up
  # name in its namespace, address, bridge port
  local spec
  for spec in "a eth0 10.0.0.11/16" "b eth0 10.0.0.12/16" "tgt eth0 10.0.1.25/16" "prv eth0 10.0.3.10/16" "igw in 10.0.0.1/16"; do
    set -- $spec
    ip link add "$p-v-$1" type veth peer name "$2" netns "$p-$1"
    ip link set "$p-v-$1" netns "$p-vpc"
    ip -n "$p-vpc" link set "$p-v-$1" master br0 up
    ip -n "$p-$1" addr add "$3" dev "$2"
    ip -n "$p-$1" link set "$2" up
  done
  # The floating interface, attached to A to begin with (unconfigured:
  # A's takeover configures it).
  ip link add "$p-v-flt" type veth peer name flt netns "$p-a"
  ip link set "$p-v-flt" netns "$p-vpc"
  ip -n "$p-vpc" link set "$p-v-flt" master br0 up
  # The Internet: the client behind the gateway.
  ip link add "$p-inet" type veth peer name out netns "$p-igw"
  ip link set "$p-inet" netns "$p-cli"
  ip -n "$p-cli" link set "$p-inet" name eth0
  ip -n "$p-cli" addr add 203.0.113.110/24 dev eth0
  ip -n "$p-cli" link set eth0 up
  ip -n "$p-cli" route add default via 203.0.113.1
  ip -n "$p-igw" addr add 203.0.113.1/24 dev out
  ip -n "$p-igw" link set out up
  in_ns "$p-igw" sysctl -qw net.ipv4.ip_forward=1
  # The elastic IP, 198.51.100.10, mapped 1:1 to the floating address.
  in_ns "$p-igw" iptables -t nat -A PREROUTING -d 198.51.100.10 -j DNAT --to-destination 10.0.0.100
  in_ns "$p-igw" iptables -t nat -A POSTROUTING -s 10.0.0.100 -o out -j SNAT --to-source 198.51.100.10
  # The route table: the target's default route is the floating interface.
  ip -n "$p-tgt" route add default via 10.0.0.100
  ip -n "$p-prv" route add default via 10.0.0.100
  ip -n "$p-a" route add default via 10.0.0.1 dev eth0 metric 100
  ip -n "$p-b" route add default via 10.0.0.1 dev eth0 metric 100
  for ns in "$p-a" "$p-b"; do
    in_ns "$ns" sh -c "ipset restore <'$site/ipsets.v4' && iptables-restore --noflush '$site/rules.v4'"
  done
}

# A stage for installed_run.sh: the instance's files, its name, the
# fabric's shared folder.
function stage {
  local node=$1 dir=$work/stage-$1
  mkdir -p "$dir/ovl" "$work/share"
  echo "$node" >"$dir/node"
  echo "takeover=/usr/local/sbin/lab-takeover" >"$dir/standby.conf"
  cat >"$dir/install.list" <<LIST
0644 $site/keepalived.conf /etc/natbake/keepalived.conf
0644 $site/conntrackd.conf /etc/natbake/conntrackd.conf.in
0755 $site/natbake-standby.sh /usr/local/sbin/natbake-standby
0644 $dir/standby.conf /etc/natbake/standby.conf
0644 $dir/node /etc/natbake-lab/node
0755 $here/lab_takeover.sh /usr/local/sbin/lab-takeover
0755 $here/node.sh /usr/local/sbin/lab-node
LIST
  echo "$work/share /run/natbake-lab" >"$dir/keep.list"
  rm -f "$dir/devlog.sock"
  python3 "$netlab/devlog_sink.py" "$dir/devlog.sock" "$work/syslog-$node.txt" &
  pids+=($!)
  wait_for "the syslog socket" 10 test -S "$dir/devlog.sock"
}

function start_node {
  local node=$1 local_address=$2 peer=$3
  ip netns exec "$p-$node" unshare -m --propagation private \
    sh "$netlab/installed_run.sh" "$work/stage-$node" "$work/stage-$node/devlog.sock" \
    lab-node "$local_address" "$peer" eth0 >>"$work/node-$node.log" 2>&1 &
  pids+=($!)
}

# The fabric: moves the floating interface where a takeover asks for it,
# from wherever it is.
function fabric {
  local want node other
  while :; do
    for want in "$work"/share/want.a "$work"/share/want.b; do
      [ -f "$want" ] || continue
      node=${want##*.}
      other=a
      [ "$node" = a ] && other=b
      if ip -n "$p-$other" link show flt >/dev/null 2>&1; then
        ip -n "$p-$other" link set flt netns "$p-$node"
        echo "$(date +%s.%N) moved to $node" >>"$work/fabric.log"
      fi
      rm -f "$want"
    done
    sleep 0.01
  done
}


function wait_for {
  local what=$1 limit=$2 i=0
  shift 2
  until "$@"; do
    i=$((i + 1))
    [ "$i" -lt $((limit * 20)) ] || { log "timed out waiting for $what"; tail -n 30 "$work"/node-*.log "$work"/syslog-*.txt >&2 || true; exit 1; }
    sleep 0.05
  done
}

function one_run {
  local run=$1 t_kill t_first t_take t_conf survived held longest
  rm -rf "$work/share" "$work"/syslog-*.txt "$work"/fabric.log "$work"/hold-*.json "$work"/probe.txt
  topology
  stage a
  stage b
  fabric &
  pids+=($!)
  in_ns "$p-tgt" python3 "$here/flows.py" server 1532 &
  pids+=($!)
  in_ns "$p-cli" python3 "$here/flows.py" server 9000 &
  pids+=($!)
  start_node a 10.0.0.11 10.0.0.12
  wait_for "A active" 20 bash -c "grep -q 'Active: forwarding' '$work/syslog-a.txt' 2>/dev/null"
  start_node b 10.0.0.12 10.0.0.11
  wait_for "B standby" 20 bash -c "grep -q 'Now standby' '$work/syslog-b.txt' 2>/dev/null"
  sleep "${PAIR_LAB_SETTLE:-0}"
  # Long-lived connections: through the forward via the elastic IP, the
  # client talking first and the target pushing; and out through the
  # egress NAT, an Internet server pushing to a private host.
  in_ns "$p-cli" python3 "$here/flows.py" hold 198.51.100.10 51532 "$conns" 8 "$work/hold-echo.json" &
  local h1=$!
  in_ns "$p-cli" python3 "$here/flows.py" hold 198.51.100.10 51532 "$conns" 8 "$work/hold-push.json" push &
  local h2=$!
  in_ns "$p-prv" python3 "$here/flows.py" hold 203.0.113.110 9000 "$conns" 8 "$work/hold-egress.json" push &
  local h3=$!
  sleep 2
  # A dies: every process at once, then its links.
  t_kill=$(date +%s.%N)
  for pid in $(ip netns pids "$p-a"); do kill -9 "$pid" 2>/dev/null || true; done
  ip -n "$p-a" link set eth0 down
  ip -n "$p-a" link set flt down 2>/dev/null || true
  in_ns "$p-cli" timeout 20 python3 "$here/flows.py" probe 198.51.100.10 51532 "$work/probe.txt" || { log "no new connection within 20 s"; exit 1; }
  t_first=$(cat "$work/probe.txt")
  if [ -n "${PAIR_LAB_DEBUG:-}" ]; then
    sleep 3
    { in_ns "$p-b" conntrack -L; in_ns "$p-b" iptables-save -c; in_ns "$p-b" ip route; in_ns "$p-b" sysctl net.ipv4.ip_forward; } >"$work/debug.txt" 2>&1 || true
  fi
  wait "$h1" "$h2" "$h3" || true
  t_conf=$(awk '/moved to b/ {print $1; exit}' "$work/fabric.log" 2>/dev/null || true)
  python3 - "$run" "$t_kill" "$t_first" "${t_conf:-0}" "$work" <<'PY'
import json, sys
run, kill, first, moved, work = sys.argv[1:]
kill, first, moved = float(kill), float(first), float(moved)
out = {"run": int(run), "takeover_s": round(first - kill, 3),
       "moved_after_s": round(moved - kill, 3) if moved else None}
for kind in ("echo", "push", "egress"):
    r = json.load(open(f"{work}/hold-{kind}.json"))
    out[kind] = {"held": len(r), "survived": sum(x["alive"] for x in r),
                 "longest_wait_s": round(max(x["longest_wait"] for x in r), 3),
                 "errors": sorted({x["error"] for x in r if x["error"]})}
print(json.dumps(out))
PY
  cp "$work/syslog-b.txt" "$work/run-$run-syslog-b.txt" 2>/dev/null || true
  cp "$work/syslog-a.txt" "$work/run-$run-syslog-a.txt" 2>/dev/null || true
  cleanup
  pids=()
}

mkdir -p "$work"
for run in $(seq 1 "$runs"); do
  one_run "$run"
done
