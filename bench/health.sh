#!/usr/bin/env bash
# natbake benchmark part: CPU time (user + system, children included) of one
# run of natbake-health at 10,000 forwards, with the ruleset loaded in a
# throwaway network namespace and the check's expected view kept: as it runs
# most of the time (the ruleset unchanged since it was last found right), and
# when it reads the ruleset and its counters (after a change, and once a
# minute); the goal is met by both the first and the mean per check at the
# default interval.
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
        -e "s|/etc/natbake/site.conf|$site/site.conf|" \
        -e "s|/run/natbake|$inst/run|" \
        -e "s|/var/lock/natbake.lock|$inst/lock|" \
        -e "s|^SCRIPT=.*|SCRIPT=/bin/false|" \
        "$site/$f" >"$inst/${f%.sh}"
done
mv "$inst/natbake-lib" "$inst/natbake-lib.sh"
out=$(unshare -n bash "$BENCH_DIR/health-in-netns.sh" "$inst" "$site/rules.v4" "$HEALTH_REPS") ||
    die "health check runs failed: $out"
# Two lines: checks with the ruleset unchanged, checks that read it.
read -r user sys wall <<<"$(tail -n 2 <<<"$out" | head -n 1)"
read -r fuser fsys fwall <<<"$(tail -n 1 <<<"$out")"
cpu=$(awk -v u="$user" -v s="$sys" -v n="$HEALTH_REPS" 'BEGIN { printf "%.4f", (u + s) / n }')
full=$(awk -v u="$fuser" -v s="$fsys" -v n="$HEALTH_REPS" 'BEGIN { printf "%.4f", (u + s) / n }')
# At the default interval of 15 s, one check a minute reads the counters.
mean=$(awk -v c="$cpu" -v f="$full" 'BEGIN { printf "%.4f", (3 * c + f) / 4 }')
rules_count=$(grep -c '^-A' "$site/rules.v4")
detail "natbake-health at 10,000 forwards ($rules_count rules), $HEALTH_REPS runs each:"
detail "  ruleset unchanged (nf_tables generation as last verified): user ${user} s, system ${sys} s, wall ${wall} s; per run ${cpu} s CPU"
detail "  ruleset read and compared, counters read (after a change; once a minute): user ${fuser} s, system ${fsys} s, wall ${fwall} s; per run ${full} s CPU"
detail "  mean per check at the default 15 s interval (3 unchanged + 1 reading per minute): ${mean} s CPU"
record "health: CPU time of one check at 10,000 forwards, ruleset unchanged (mean of $HEALTH_REPS)" "<= $LIMIT_HEALTH_CPU_S s" "$cpu s" \
    "$(le "$cpu" "$LIMIT_HEALTH_CPU_S" && echo 1 || echo 0)"
record "health: CPU time per check at 10,000 forwards, counting the once-a-minute read (15 s interval)" "<= $LIMIT_HEALTH_CPU_S s" "$mean s" \
    "$(le "$mean" "$LIMIT_HEALTH_CPU_S" && echo 1 || echo 0)"
bench_end
