#!/usr/bin/env bash
# natbake benchmark part: a replacement NAT instance taking over the floating
# interface, in the failover lab of the integration tests (moto behind its
# proxy, two instance namespaces, real traffic through the elastic IP).
#
#   sudo bench/failover.sh
#
# Measures, over 20 boots, the time from the start of the replacement's
# configure-pat.sh to the first connection forwarded through the elastic
# IP, and splits it into the API's own attach time (attach call until the
# device is in the instance) and the script's overhead; then runs 100 of
# the injected races (releases at random moments, API errors, dropped and
# slow answers) and counts how each ended. Needs the moto virtual
# environment scripts/test.sh makes (NATBAKE_MOTO_VENV, or under
# NATBAKE_CACHE_DIR or target/).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_begin "usage: sudo bench/failover.sh   replacement boot to first forwarded connection, and 100 injected races" "$@"
log "== failover"
cd "$REPO"
export NATBAKE_REQUIRE_ROOT_TESTS=1 NATBAKE_FAILOVER_BENCH_ROUNDS=20 NATBAKE_FAILOVER_RACES=100
out=$WORK/failover-timing.txt
cargo test --quiet --test it failover::takeover_timing -- --ignored --nocapture >"$out" 2>&1 ||
    die "the timing run failed: $(tail -n 30 "$out")"
totals=() scripts=() apis=()
while read -r _ _ _ _ _ total _ api _ script; do
    totals+=("$total") apis+=("$api") scripts+=("$script")
done < <(grep '^failover bench: round' "$out")
[ "${#totals[@]}" -eq 20 ] || die "expected 20 timed boots, got ${#totals[@]}"
worst() { printf '%s\n' "$@" | sort -g | tail -n 1; }
med=$(median "${totals[@]}") api=$(median "${apis[@]}") smed=$(median "${scripts[@]}") sworst=$(worst "${scripts[@]}")
detail "failover: boot to first forward median ${med}s, worst $(worst "${totals[@]}")s; API attach median ${api}s; script overhead median ${smed}s, worst ${sworst}s"
record "failover: replacement boot to first forward, beyond the API's attach time (worst of 20)" "<= $LIMIT_FAILOVER_S s" "$sworst" \
    "$(le "$sworst" "$LIMIT_FAILOVER_S" && echo 1 || echo 0)"
reference "reference: same, median of 20 (total ${med}s, API ${api}s)" "" "$smed"

races=$WORK/failover-races.txt
cargo test --quiet --test it failover::injected_races -- --nocapture >"$races" 2>&1 ||
    die "a race ended neither serving nor failed visibly: $(grep -m1 -A20 panicked "$races")"
summary=$(grep '^failover races: [0-9]' "$races") || die "no race summary"
detail "$summary"
record "failover: 100 injected races end serving or failed visibly, none hangs" "100" \
    "$(sed -n 's/^failover races: \([0-9]*\) runs.*/\1/p' <<<"$summary")" 1
bench_end
