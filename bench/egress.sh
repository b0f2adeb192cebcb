#!/usr/bin/env bash
# natbake benchmark part: iperf3 throughput from a private host through
# natbake's NAT (the 10,000-forward ruleset) against a MASQUERADE-only NAT,
# in namespaces of the topology described in bench/lib.sh.
#
#   sudo bench/egress.sh
#
# See bench/README.md; knobs and safety are described in bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

gbit() { awk -v v="$1" 'BEGIN { printf "%.2f\n", v / 1e9 }'; }

iperf_bps() { # iperf_bps TOPO: received bits per second, private host -> Internet
    local json
    json=$(ip netns exec "$(ns "$1" priv)" iperf3 -c "$CLIENT" -p "$IPERF_PORT" -t "$EGRESS_SECONDS" -J) ||
        die "$1: iperf3 failed"
    json_pick --int - end.sum_received.bits_per_second <<<"$json"
}

bench_begin "usage: sudo bench/egress.sh   iperf3 through natbake's NAT versus a MASQUERADE-only NAT" "$@"
log "== egress"
need_rules
need_connrate
need_pkg iperf3 iperf3
topo_up egress-masq "$RULES/masq.v4" iperf
topo_up egress-natbake "$RULES/big.v4" iperf
# iperf3's server needs a moment; a short first run doubles as warm-up.
for i in $(seq 20); do
    ip netns exec "$(ns egress-masq priv)" iperf3 -c "$CLIENT" -p "$IPERF_PORT" -t 1 >/dev/null 2>&1 &&
        ip netns exec "$(ns egress-natbake priv)" iperf3 -c "$CLIENT" -p "$IPERF_PORT" -t 1 >/dev/null 2>&1 && break
    [ "$i" -lt 20 ] || die "iperf3 through the NATs does not work"
    sleep 0.25
done

masq=()
nb=()
# Throughput of one stream varies by 10-20 % from run to run on this shared
# virtual machine, against a 5 % threshold: many short rounds, an even
# number by default so that each side goes first equally often.
for ((r = 1; r <= EGRESS_ROUNDS; r++)); do
    if ((r % 2)); then
        a=$(iperf_bps egress-masq); b=$(iperf_bps egress-natbake)
    else
        b=$(iperf_bps egress-natbake); a=$(iperf_bps egress-masq)
    fi
    masq+=("$a"); nb+=("$b")
    log "   egress round $r: MASQUERADE only $(gbit "$a"), natbake $(gbit "$b") Gbit/s"
done
mm=$(median "${masq[@]}")
mn=$(median "${nb[@]}")
detail "egress, MASQUERADE only (Gbit/s, by round): $(for v in "${masq[@]}"; do gbit "$v"; done | xargs); median $(gbit "$mm")"
detail "egress, natbake with 10,000 forwards (Gbit/s): $(for v in "${nb[@]}"; do gbit "$v"; done | xargs); median $(gbit "$mn")"
r_eg=$(ratio "$mn" "$mm")
record "egress: iperf3 natbake / MASQUERADE-only (ratio of medians of $EGRESS_ROUNDS)" ">= $LIMIT_EGRESS" "$r_eg" \
    "$(ge "$r_eg" "$LIMIT_EGRESS" && echo 1 || echo 0)"
bench_end
