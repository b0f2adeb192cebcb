#!/usr/bin/env bash
# natbake benchmark part: one iptables-restore against one iptables call per
# rule, at 1,000 forwards: the seed's rules one call each (the goal) and
# natbake's own rules one call each (reference).
#
#   sudo bench/percall.sh
#
# See bench/README.md; knobs and safety are described in bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_begin "usage: sudo bench/percall.sh   restore versus one iptables call per rule at 1,000 forwards" "$@"
log "== percall"
need_rules

# The seed's way: the same 1,000-forward ruleset, one iptables call per
# rule, against one restore; interleaved, the order rotating each round.
# For reference, also the seed's own layout (the plain list: a DNAT and a
# FORWARD rule per forward) applied one call per rule. The generated scripts
# refuse to run in any namespace with an interface other than loopback.
python3 "$BENCH_DIR/restore-to-calls.py" "$RULES/mid.v4" >"$WORK/calls.sh"
gen plain --out "$WORK/plain-1000.v4" --forwards 1000
python3 "$BENCH_DIR/restore-to-calls.py" "$WORK/plain-1000.v4" >"$WORK/calls-plain.sh"
ratios=()
pratios=()
calls=$(grep -c '^iptables ' "$WORK/calls.sh")
pcalls=$(grep -c '^iptables ' "$WORK/calls-plain.sh")
for ((i = 1; i <= PERCALL_REPS; i++)); do
    # The three steps in a rotating order: each goes first once every three
    # rounds, so slow drift of the machine favours none of them.
    order=(restore calls plain)
    case $((i % 3)) in
        2) order=(calls plain restore) ;;
        0) order=(plain restore calls) ;;
    esac
    for step in "${order[@]}"; do
        case $step in
            restore) tr=$(BENCH_IPSETS=$RULES/mid.ipsets timed_in_fresh_ns "$WORK/save-restore.txt" iptables-restore --noflush "$RULES/mid.v4") ;;
            calls) tc=$(BENCH_IPSETS=$RULES/mid.ipsets timed_in_fresh_ns "$WORK/save-calls.txt" bash "$WORK/calls.sh") ;;
            plain) tp=$(timed_in_fresh_ns "$WORK/save-plain.txt" bash "$WORK/calls-plain.sh") ;;
        esac
        sleep 0.3 # let the previous namespace's teardown finish
    done
    # Both ways must have produced the same ruleset.
    cmp -s <(sed 's/\[[0-9]*:[0-9]*\]//' "$WORK/save-restore.txt") \
        <(sed 's/\[[0-9]*:[0-9]*\]//' "$WORK/save-calls.txt") ||
        die "per-call and restore produced different rulesets (see $WORK/save-*.txt)"
    ratios+=("$(ratio "$tc" "$tr")")
    pratios+=("$(ratio "$tp" "$tr")")
    detail "1,000 forwards round $i: restore $tr s; same rules as $calls iptables calls $tc s (ratio ${ratios[-1]}); plain list as $pcalls calls $tp s (ratio ${pratios[-1]})"
done
# The goal compares natbake's way with the seed's way: the blog post's rules
# (a DNAT and a FORWARD rule per forward) added one iptables call at a time.
# The same comparison with natbake's own rules added one call at a time is
# shown for reference: per-call cost here is about 1.4 ms and restore's about
# 45 us per rule, so that ratio stays near 30.
med=$(median "${pratios[@]}")
record "apply: restore vs the seed's way (its rules, one iptables call each), 1,000 forwards (median ratio)" ">= ${LIMIT_PERCALL_X}x" "$(printf %.1f "$med")x" \
    "$(ge "$med" "$LIMIT_PERCALL_X" && echo 1 || echo 0)"
reference "reference: restore vs natbake's own rules, one call per rule" "(none)" "$(printf %.1f "$(median "${ratios[@]}")")x"
bench_end
