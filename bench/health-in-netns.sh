#!/usr/bin/env bash
# Times natbake-health in a throwaway network namespace, for bench/health.sh:
#
#   unshare -n bash bench/health-in-netns.sh DIR RULES REPS
#
# Loads the ipsets.v4 next to RULES, then RULES, switches forwarding on (in the namespace), runs DIR/natbake-health
# once (it keeps the expected view of the ruleset, as configure-pat.sh does at
# boot, and the nf_tables generation it found right), then times REPS checks
# back to back as they run most of the time (ruleset unchanged, counters not
# due), then REPS checks that read the ruleset and its counters (as after a
# change, and once a minute), and prints "user sys wall" seconds for each set
# on its own line. Refuses to run anywhere but a fresh namespace.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 3 ] || die "usage: unshare -n bash bench/health-in-netns.sh DIR RULES REPS"
in_fresh_netns || die "refusing to run outside a fresh network namespace (unshare -n)"
dir=$1 rules=$2 reps=$3
ipset restore <"$(dirname "$rules")/ipsets.v4" || die "the ipsets did not load"
iptables-restore --noflush "$rules" || die "the ruleset did not load"
sysctl -q -w net.ipv4.ip_forward=1
# Logs to stderr, not to the host's syslog.
export JOURNAL_STREAM=bench
bash "$dir/natbake-health" || die "the first health check failed"
[ -s "$dir/run/verified" ] || die "the first check kept no nf_tables generation (is python3 there, and iptables on nf_tables?)"
TIMEFORMAT='%3U %3S %3R'
{ time (for ((i = 0; i < reps; i++)); do bash "$dir/natbake-health" || exit 1; done); } 2>&1 ||
    die "a health check failed"
# The counters made due before each run: "counted" a minute old.
{ time (for ((i = 0; i < reps; i++)); do
    echo 0 >"$dir/run/counted"
    bash "$dir/natbake-health" || exit 1
done); } 2>&1 || die "a health check failed"
