#!/usr/bin/env bash
# natbake benchmark part: CPU time (user + system, children included) of one
# run of natbake-health at 10,000 forwards, with the ruleset loaded in a
# throwaway network namespace and the check's expected view kept.
#
#   sudo bench/health.sh
#
# The rendered natbake-health and natbake-lib.sh run as they are, with their
# absolute paths (library, ruleset, state folder, lock) pointed into the work
# folder and the repair command replaced by `false`, so nothing outside the
# namespace and the work folder is touched. See bench/README.md; knobs and
# safety are described in bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_begin "usage: sudo bench/health.sh   CPU time of one health check at 10,000 forwards" "$@"
log "== health"
need_natbake
gen specs --out "$WORK/spec-health" --forwards 10000 --prefix health
"$NATBAKE" render "$WORK/spec-health/health-0001.yaml" -o "$WORK/out-health" >/dev/null ||
    die "natbake render of the 10,000-forward spec failed"
site=$WORK/out-health/health-0001
inst=$WORK/health-instance
mkdir -p "$inst/run"
for f in natbake-lib.sh natbake-health.sh; do
    sed -e "s|/usr/local/lib/natbake/natbake-lib.sh|$inst/natbake-lib.sh|" \
        -e "s|/etc/natbake/rules.v4|$site/rules.v4|" \
        -e "s|/etc/natbake/ipsets.v4|$site/ipsets.v4|" \
        -e "s|/run/natbake|$inst/run|" \
        -e "s|/var/lock/natbake.lock|$inst/lock|" \
        -e "s|^SCRIPT=.*|SCRIPT=/bin/false|" \
        "$site/$f" >"$inst/${f%.sh}"
done
mv "$inst/natbake-lib" "$inst/natbake-lib.sh"
out=$(unshare -n bash "$BENCH_DIR/health-in-netns.sh" "$inst" "$site/rules.v4" "$HEALTH_REPS") ||
    die "health check runs failed: $out"
read -r user sys wall <<<"$(tail -n 1 <<<"$out")"
cpu=$(awk -v u="$user" -v s="$sys" -v n="$HEALTH_REPS" 'BEGIN { printf "%.4f", (u + s) / n }')
per_wall=$(awk -v w="$wall" -v n="$HEALTH_REPS" 'BEGIN { printf "%.4f", w / n }')
detail "natbake-health at 10,000 forwards ($(grep -c '^-A' "$site/rules.v4") rules), $HEALTH_REPS runs: user ${user} s, system ${sys} s, wall ${wall} s; per run ${cpu} s CPU, ${per_wall} s wall"
record "health: CPU time of one check at 10,000 forwards (mean of $HEALTH_REPS)" "<= $LIMIT_HEALTH_CPU_S s" "$cpu s" \
    "$(le "$cpu" "$LIMIT_HEALTH_CPU_S" && echo 1 || echo 0)"
bench_end
