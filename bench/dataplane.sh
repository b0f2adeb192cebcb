#!/usr/bin/env bash
# natbake benchmark part: new-connection rate through the NAT to the last of
# 10,000 forwards against a single forward (and the plain list, for
# reference), in namespaces of the topology described in bench/lib.sh.
#
#   sudo bench/dataplane.sh
#
# See bench/README.md; knobs and safety are described in bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rate() { # rate TOPO PORT SECONDS: connections per second through the NAT
    local out
    out=$(ip netns exec "$(ns "$1" inet)" "$CONNRATE" client "$NAT_PUB:$2" --seconds "$3" --threads "$THREADS") ||
        die "$1: connrate client failed: $out"
    log "      $1:$2 $out"
    [[ $out =~ ^rate=([0-9.]+)\ .*failed=([0-9]+) ]] || die "$1: cannot read connrate output: $out"
    echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
}

bench_begin "usage: sudo bench/dataplane.sh   new-connection rate to the last of 10,000 forwards versus a single forward" "$@"
log "== dataplane"
need_rules
need_connrate
last=$((FIRST_PORT + 9999))
topo_up one "$RULES/one.v4"
topo_up big "$RULES/big.v4"
topo_up plain "$RULES/plain.v4"
check_forward one "$FIRST_PORT"
check_forward big "$FIRST_PORT"
check_forward big "$last"
check_forward plain "$last"
if probe big "$((last + 1))"; then die "big: port $((last + 1)) is not forwarded but accepted"; fi

# Warm-up, discarded.
rate one "$FIRST_PORT" 1 >/dev/null
rate big "$last" 1 >/dev/null
rate plain "$last" 1 >/dev/null

# Interleaved rounds, the order reversed every other round.
fails=0
ratios=()
plain_ratios=()
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order=(one big plain); else order=(plain big one); fi
    for t in "${order[@]}"; do
        case $t in
            one) res=$(rate one "$FIRST_PORT" "$RUN_SECONDS"); rate_one=${res% *} ;;
            big) res=$(rate big "$last" "$RUN_SECONDS"); rate_big=${res% *} ;;
            plain) res=$(rate plain "$last" "$RUN_SECONDS"); rate_plain=${res% *} ;;
        esac
        failed=${res#* }
        fails=$((fails + failed))
    done
    ratios+=("$(ratio "$rate_big" "$rate_one")")
    plain_ratios+=("$(ratio "$rate_plain" "$rate_one")")
    detail "data plane round $r: single forward $rate_one/s, last of 10,000 $rate_big/s (ratio ${ratios[-1]}), plain list $rate_plain/s (ratio ${plain_ratios[-1]})"
done
[ "$fails" = 0 ] || detail "data plane: $fails connection attempts timed out (dropped SYNs) over all runs"
med=$(median "${ratios[@]}")
pmed=$(median "${plain_ratios[@]}")
record "dataplane: conn/s to last of 10,000 / single forward (median of $ROUNDS)" ">= $LIMIT_DATAPLANE" "$med" \
    "$(ge "$med" "$LIMIT_DATAPLANE" && echo 1 || echo 0)"
# Reference only: shows what the layout saves; no goal attached.
reference "reference: plain list of 10,000 DNAT + FORWARD rules, same ratio" "(est. ~0.4)" "$pmed"
bench_end
