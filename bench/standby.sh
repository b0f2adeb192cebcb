#!/usr/bin/env bash
# natbake benchmark part: the warm standby pair (issue 19) in the standby
# lab with the API (tests/it/standby/aws_pair_lab.sh: two instances of the
# standby fixture in network namespaces, booted with the rendered units,
# the AWS client talking to moto through the failover lab's proxy, the
# fabric moving the floating interface where the API says).
#
#   sudo bench/standby.sh                                # 100 kills, 20 handovers, 20 rolling replacements
#   sudo BENCH_STANDBY_RUNS=20 bench/standby.sh          # fewer kills
#   sudo BENCH_STANDBY_PLANNED_RUNS=5 bench/standby.sh   # fewer planned runs
#   sudo BENCH_STANDBY_PARTS="kill" bench/standby.sh     # only some parts (kill lifecycle rolling)
#   sudo BENCH_STANDBY_KEEP=/var/tmp/sb bench/standby.sh # where the lab's folder of a lossy or failed part is kept
#   sudo BENCH_STANDBY_MINUTES=40 bench/standby.sh       # no run of a part starts after 40 minutes; the figures say how many ran
#
# Each part runs in one lab: the first run boots the pair; every later run
# starts from the last run's survivor, paired with the group's next
# instance (the dead or terminated one leaves the lab, as the group
# replaces it), and begins only once the pair is paired and, for a kill,
# the standby may take over and has every flow synced: each run meets a
# steady pair as a fresh lab would, without booting moto and the subnet
# again. BENCH_STANDBY_FRESH=1 makes a whole new lab for every run. The
# instances' standby.conf says discover_every=5 (BENCH_STANDBY_DISCOVER_EVERY;
# the default is 30) in the kill and lifecycle parts: the survivor finds
# the next instance sooner, and their flows start once the pair is
# paired, so no part of what is measured depends on it. The rolling part
# keeps the default: when the active finds a new instance decides whether
# that instance gets the active's table (docs/failover.md).
#
# kill: per run, the active dies abruptly (every process killed, its links
# down) while flows carry data (5 each of TCP through the forward with the
# client talking first, TCP with the target pushing, UDP through the other
# forward, TCP out through the egress NAT with an Internet server
# pushing). Measured: from the kill to the first new connection through the
# elastic IP, split into detection (the kill to the first call of the new
# active to the API: VRRP's master-down interval, the notify script and the
# commit of the synced table), API (that call to the floating device
# arriving in the new active: the forced detach and the attach, and the
# lab's fabric) and configuration (the device's arrival to the first new
# connection: its metadata, address and route, forwarding on, the
# prober's next try); and the flows that lived on. Goals: <= 3 s at p99,
# >= 99 % survive.
# lifecycle: the group terminates the active through its termination hook;
# rolling: both instances replaced one after the other. Goal: 0 flows lost.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LIMIT_STANDBY_S=3.0
LIMIT_STANDBY_SURVIVAL=0.99
RUNS=${BENCH_STANDBY_RUNS:-100}
PLANNED=${BENCH_STANDBY_PLANNED_RUNS:-20}
PARTS=${BENCH_STANDBY_PARTS:-kill lifecycle rolling}
FLOWS=5
KEEP=${BENCH_STANDBY_KEEP:-$REPO/target/bench-standby}
MINUTES=${BENCH_STANDBY_MINUTES:-}
[ -z "$MINUTES" ] || [[ $MINUTES =~ ^[1-9][0-9]{0,3}$ ]] || die "BENCH_STANDBY_MINUTES must be 1..9999"
[[ $RUNS =~ ^[1-9][0-9]{0,2}$ ]] || die "BENCH_STANDBY_RUNS must be 1..999"
[[ $PLANNED =~ ^[1-9][0-9]{0,2}$ ]] || die "BENCH_STANDBY_PLANNED_RUNS must be 1..999"

bench_begin "usage: sudo bench/standby.sh   the warm standby pair: takeover time, flows that survive a kill, a handover and a rolling replacement" "$@"
for c in keepalived conntrackd conntrack curl nsenter; do need_cmd "$c" || die "missing $c (scripts/test.sh installs it)"; done
venv=${NATBAKE_MOTO_VENV:-${NATBAKE_CACHE_DIR:-$REPO/target}/moto-5.2.5-venv}
[ -x "$venv/bin/moto_server" ] || die "no moto virtual environment at $venv (scripts/test.sh makes it)"
log "== standby"
need_natbake
"$NATBAKE" render "$REPO/tests/fixtures/valid/standby.yaml" -o "$WORK/site" >/dev/null 2>&1 || die "render failed"

# Runs the lab: lab SCENARIO RUNS; one JSON line per run in $WORK/standby-SCENARIO.jsonl.
lab() {
  local scenario=$1 n=$2 every=${BENCH_STANDBY_DISCOVER_EVERY:-5} until=''
  [ "$scenario" != rolling ] || every=''
  STOPPED=''
  [ -z "$MINUTES" ] || until=$(($(date +%s) + MINUTES * 60))
  detail "standby $scenario: load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
  NATBAKE_MOTO_VENV=$venv PAIR_LAB_PREFIX="sbb$(printf %05d $(($$ % 100000)))" PAIR_LAB_FRESH=${BENCH_STANDBY_FRESH:-} \
    PAIR_LAB_DISCOVER_EVERY=$every PAIR_LAB_UNTIL=$until \
    bash "$REPO/tests/it/standby/aws_pair_lab.sh" "$WORK/site/pair" "$scenario" "$n" "$FLOWS" "$WORK/lab-$scenario" \
    >"$WORK/standby-$scenario.jsonl" 2>"$WORK/lab-$scenario.err" || {
    # A run that did not end serving stops the lab: the runs before it
    # still count, and the failure is a figure of its own.
    keep "$scenario"
    log "$(tail -n 40 "$WORK/lab-$scenario.err")"
    [ -s "$WORK/standby-$scenario.jsonl" ] || die "the lab ($scenario) failed in its first run (above)"
    detail "standby $scenario: the lab failed after $(wc -l <"$WORK/standby-$scenario.jsonl") runs: $(grep 'aws_pair_lab:' "$WORK/lab-$scenario.err" | tail -n 1)"
    record "standby: $scenario runs that failed (the lab stopped)" "0" "1" 0
    STOPPED=yes
  }
  detail "standby $scenario: load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
}

# Keeps the lab's folder of a part (its runs' logs, run-N/) out of the
# bench's own, which goes at the end.
keep() {
  mkdir -p "$KEEP"
  rm -rf --one-file-system "${KEEP:?}/lab-$1"
  cp -a "$WORK/lab-$1" "$WORK/lab-$1.err" "$WORK/standby-$1.jsonl" "$KEEP/" 2>/dev/null || true
  log "standby $1: the lab's folder is kept in $KEEP/lab-$1"
}

# survived held lost_runs of a scenario's runs.
flows_of() {
  python3 - "$WORK/standby-$1.jsonl" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
kinds = ("echo", "push", "egress", "udp")
survived = sum(r[k]["survived"] for r in runs for k in kinds)
held = sum(r[k]["held"] for r in runs for k in kinds)
lossy = [r for r in runs if any(r[k]["survived"] < r[k]["held"] for k in kinds)]
print(len(runs), survived, held, len(lossy))
# What each run that lost any said, for the report (the lab's own folder
# goes with the bench's).
for r in lossy:
    lost = {k: "%d of %d, %s" % (r[k]["held"] - r[k]["survived"], r[k]["held"], "; ".join(r[k]["errors"]))
            for k in kinds if r[k]["survived"] < r[k]["held"]}
    print("run %d lost %s" % (r["run"], json.dumps(lost)), file=sys.stderr)
PY
}

# How long a scenario's runs took: the median and the sum, seconds.
run_times() {
  python3 - "$WORK/standby-$1.jsonl" <<'PY'
import json, statistics, sys
t = [json.loads(l)["run_s"] for l in open(sys.argv[1])]
print("%d %d" % (statistics.median(t), sum(t)))
PY
}

for part in $PARTS; do
  case $part in
  kill)
    lab kill "$RUNS"
    read -r n p50 p99 worst det api conf < <(python3 - "$WORK/standby-kill.jsonl" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")
t = [r["takeover_s"] for r in runs]
split = [(r["api_first_at"] - r["event_at"], r["arrived_at"] - r["api_first_at"], r["first_at"] - r["arrived_at"])
         for r in runs if r["api_first_at"] and r["arrived_at"]]
print(len(runs), pct(t, 50), pct(t, 99), max(t),
      *("%.3f" % pct([s[i] for s in split], 50) for i in range(3)))
PY
)
    [ "$n" -eq "$RUNS" ] || [ -n "$MINUTES$STOPPED" ] || die "expected $RUNS runs, got $n"
    [ "$n" -eq "$RUNS" ] || [ -n "$STOPPED" ] || detail "standby kill: $n of the $RUNS runs asked for fitted in $MINUTES minutes"
    read -r _ survived held lossy < <(flows_of kill 2>"$WORK/lossy-kill.txt")
    while read -r l; do detail "standby kill: $l"; done <"$WORK/lossy-kill.txt"
    [ "$lossy" -eq 0 ] || keep kill
    read -r med total < <(run_times kill)
    detail "standby kill: a run took ${med}s (median), ${total}s in all"
    detail "standby kill: kill to first new connection through the elastic IP over $n runs: median ${p50}s, p99 ${p99}s, worst ${worst}s"
    detail "standby kill: medians of detection ${det}s (to the new active's first API call), API ${api}s (to the device in the new active), configuration ${conf}s (to the first new connection)"
    detail "standby kill: flows that lived on: $survived of $held ($lossy runs lost any)"
    record "standby: kill of the active to the first new forwarded connection (p99 of $n)" "<= $LIMIT_STANDBY_S s" "$p99" \
      "$(le "$p99" "$LIMIT_STANDBY_S" && echo 1 || echo 0)"
    share=$(ratio "$survived" "$held")
    record "standby: flows that survive the active's death" ">= $LIMIT_STANDBY_SURVIVAL" "$share" \
      "$(ge "$share" "$LIMIT_STANDBY_SURVIVAL" && echo 1 || echo 0)"
    ;;
  lifecycle | rolling)
    lab "$part" "$PLANNED"
    read -r n survived held lossy < <(flows_of "$part" 2>"$WORK/lossy-$part.txt")
    while read -r l; do detail "standby $part: $l"; done <"$WORK/lossy-$part.txt"
    [ "$lossy" -eq 0 ] || keep "$part"
    read -r med total < <(run_times "$part")
    detail "standby $part: a run took ${med}s (median), ${total}s in all"
    [ "$n" -eq "$PLANNED" ] || [ -n "$MINUTES$STOPPED" ] || die "expected $PLANNED runs, got $n"
    [ "$n" -eq "$PLANNED" ] || [ -n "$STOPPED" ] || detail "standby $part: $n of the $PLANNED runs asked for fitted in $MINUTES minutes"
    what=$([ "$part" = lifecycle ] && echo "the group terminating the active" || echo "a rolling replacement of both")
    detail "standby $part: flows that lived on through $what: $survived of $held over $n runs"
    record "standby: flows lost to $what ($n runs)" "0" "$((held - survived))" \
      "$([ "$survived" -eq "$held" ] && echo 1 || echo 0)"
    ;;
  *) die "unknown part '$part' (kill lifecycle rolling)" ;;
  esac
done
bench_end
