#!/usr/bin/env bash
# natbake benchmark part: iptables-restore of the 10,000-forward ruleset,
# and its sets and ruleset together (ipset restore, then iptables-restore),
# each time into a fresh network namespace.
#
#   sudo bench/restore.sh
#
# See bench/README.md; knobs and safety are described in bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_begin "usage: sudo bench/restore.sh   iptables-restore of the 10,000-forward ruleset" "$@"
log "== restore"
need_rules
times=()
both=()
for ((i = 1; i <= APPLY_REPS; i++)); do
    t=$(BENCH_IPSETS=$RULES/big.ipsets timed_in_fresh_ns "$WORK/save-big.txt" iptables-restore --noflush "$RULES/big.v4")
    times+=("$t")
    sleep 0.3 # let the previous namespace's teardown finish
    # What the boot applies: the sets, then the ruleset that matches them.
    # shellcheck disable=SC2016 # $1 and $2 are the inner shell's
    t=$(timed_in_fresh_ns "$WORK/save-both.txt" sh -c 'ipset restore <"$1" && iptables-restore --noflush "$2"' sh "$RULES/big.ipsets" "$RULES/big.v4")
    both+=("$t")
    sleep 0.3
done
# The load must really have happened: every rule is in the namespace.
[ "$(grep -c '^-A' "$WORK/save-big.txt")" = "$(grep -c '^-A' "$RULES/big.v4")" ] ||
    die "the 10,000-forward ruleset did not load completely (see $WORK/save-big.txt)"
cmp -s "$WORK/save-big.txt" "$WORK/save-both.txt" || die "the sets and ruleset together left another ruleset than the ruleset alone"
med=$(median "${times[@]}")
detail "iptables-restore, 10,000 forwards ($(grep -c '^-A' "$RULES/big.v4") rules): ${times[*]} s"
record "apply: iptables-restore of 10,000 forwards (median of $APPLY_REPS)" "<= $LIMIT_RESTORE_S s" "$(printf %.3f "$med") s" \
    "$(le "$med" "$LIMIT_RESTORE_S" && echo 1 || echo 0)"
med=$(median "${both[@]}")
detail "ipset restore + iptables-restore, 10,000 forwards ($(grep -c '^add' "$RULES/big.ipsets") lines of sets): ${both[*]} s"
record "apply: sets and ruleset of 10,000 forwards (median of $APPLY_REPS)" "<= $LIMIT_APPLY_S s" "$(printf %.3f "$med") s" \
    "$(le "$med" "$LIMIT_APPLY_S" && echo 1 || echo 0)"
bench_end
