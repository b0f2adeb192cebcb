#!/usr/bin/env bash
# natbake scaling benchmark: runs the parts, in order, and prints one report.
#
#   sudo bench/run.sh [PART]...     PART: build render restore percall
#                                         dataplane egress (default: all)
#
# Each part is its own script, bench/PART.sh, runnable alone with the same
# checks; bench/lib.sh has what they share and the knobs. This builds natbake
# once for all parts, lets them share the rendered rulesets, and prints one
# table (goal, limit, measured, PASS/FAIL) and the machine. Exits 0 if every
# goal was met, 1 if one was missed or a part failed, 2 on a usage error.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage="usage: sudo bench/run.sh [PART]...   PART: ${BENCH_PARTS[*]} (default: all, in this order)"
parts=()
for arg in "$@"; do
    case " ${BENCH_PARTS[*]} all -h --help " in
        *" $arg "*) ;;
        *) printf '%s\n' "$usage" >&2; exit 2 ;;
    esac
    case $arg in
        -h | --help) printf '%s\n' "$usage" >&2; exit 0 ;;
        all) parts+=("${BENCH_PARTS[@]}") ;;
        *) parts+=("$arg") ;;
    esac
done
[ ${#parts[@]} -gt 0 ] || parts=("${BENCH_PARTS[@]}")

bench_begin "$usage"
need_natbake
export NATBAKE_BIN=$NATBAKE BENCH_SHARED=$WORK BENCH_COLLECT=$WORK/collect
mkdir -p "$BENCH_COLLECT"

# A part that missed a goal says FAIL in its row; one that stopped on an
# error left no rows (a part hands them over only at its end). Either way
# the remaining parts still run.
rows() { if [ -f "$BENCH_COLLECT/results" ]; then wc -l <"$BENCH_COLLECT/results"; else echo 0; fi; }
failed=()
for part in "${parts[@]}"; do
    before=$(rows)
    status=0
    bash "$BENCH_DIR/$part.sh" || status=$?
    if [ "$status" != 0 ]; then
        MISSED=1
        [ "$(rows)" != "$before" ] || failed+=("$part (exit $status)")
    fi
done

[ ! -s "$BENCH_COLLECT/details" ] || mapfile -t DETAILS <"$BENCH_COLLECT/details"
[ ! -s "$BENCH_COLLECT/results" ] || mapfile -t RESULTS <"$BENCH_COLLECT/results"
unset BENCH_COLLECT
[ ${#failed[@]} = 0 ] || log "run.sh: parts that stopped on an error, with no figures: ${failed[*]}"
for f in "${failed[@]}"; do RESULTS+=("part ${f%% *}: stopped on an error (see the log above)|-|-|FAIL"); done
bench_end
