#!/usr/bin/env bash
# natbake benchmark part: a warm standby pair taking over from an active
# that dies abruptly, in the standby lab of the integration tests
# (tests/it/standby/pair_lab.sh: two instances in network namespaces with
# the rendered keepalived.conf and conntrackd.conf and the installed
# natbake-standby, the floating interface moved by the lab's fabric).
#
#   sudo bench/standby.sh            # 20 runs
#   sudo BENCH_STANDBY_RUNS=100 bench/standby.sh
#
# Measures, per run, the time from the kill of every process of the active
# (its links then taken down) to the first new connection through the
# elastic IP, and when the fabric moved the interface (detection by VRRP
# plus the commit of the synced table); and counts the established
# connections of three kinds (10 of each per run) that lived on: through
# the forward with the client talking first, through the forward with the
# target pushing, out through the egress NAT with an Internet server
# pushing. Goals (issue 19): takeover <= 3 s at p99, >= 99% survive.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LIMIT_STANDBY_S=3.0
LIMIT_STANDBY_SURVIVAL=0.99
RUNS=${BENCH_STANDBY_RUNS:-20}
[[ $RUNS =~ ^[1-9][0-9]{0,2}$ ]] || die "BENCH_STANDBY_RUNS must be 1..999"

bench_begin "usage: sudo bench/standby.sh   abrupt death of the active of a standby pair: takeover time and surviving connections" "$@"
for c in keepalived conntrackd conntrack bc; do need_cmd "$c" || die "missing $c (scripts/test.sh installs it)"; done
log "== standby"
need_natbake
"$NATBAKE" render "$REPO/tests/fixtures/valid/standby.yaml" -o "$WORK/site" >/dev/null 2>&1 || die "render failed"
out=$WORK/standby-runs.jsonl
PAIR_LAB_SETTLE=1 bash "$REPO/tests/it/standby/pair_lab.sh" "$WORK/site/pair" "$RUNS" 10 "$WORK/lab" >"$out" 2>"$WORK/lab.err" ||
  die "the lab failed: $(tail -n 30 "$WORK/lab.err")"
read -r n p50 p99 worst moved survived held < <(python3 - "$out" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
t = sorted(r["takeover_s"] for r in runs)
m = sorted(r["moved_after_s"] for r in runs if r["moved_after_s"] is not None)
def pct(v, p):
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
kinds = ("echo", "push", "egress")
survived = sum(r[k]["survived"] for r in runs for k in kinds)
held = sum(r[k]["held"] for r in runs for k in kinds)
print(len(runs), pct(t, 50), pct(t, 99), t[-1], pct(m, 50), survived, held)
PY
)
[ "$n" -eq "$RUNS" ] || die "expected $RUNS runs, got $n"
detail "standby: kill to first new connection over $n runs: median ${p50}s, p99 ${p99}s, worst ${worst}s; interface moved after ${moved}s (median: detection and commit)"
detail "standby: established connections that lived on: $survived of $held"
record "standby: kill of the active to the first new forwarded connection (p99 of $n)" "<= $LIMIT_STANDBY_S s" "$p99" \
  "$(le "$p99" "$LIMIT_STANDBY_S" && echo 1 || echo 0)"
share=$(ratio "$survived" "$held")
record "standby: established connections that survive the active's death" ">= $LIMIT_STANDBY_SURVIVAL" "$share" \
  "$(ge "$share" "$LIMIT_STANDBY_SURVIVAL" && echo 1 || echo 0)"
bench_end
