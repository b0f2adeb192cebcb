#!/usr/bin/env bash
# Times one command in a throwaway network namespace, for the apply parts:
#
#   unshare -n bash bench/timed-in-netns.sh SAVE CMD...
#
# Runs CMD, prints its wall time in seconds, then dumps the resulting ruleset
# to SAVE (outside the timed window). Refuses to run anywhere but a fresh
# namespace (nothing but loopback), so CMD can never touch the host's
# firewall; lib.sh's timed_in_fresh_ns calls it that way. With BENCH_IPSETS
# set, that file is loaded with `ipset restore` first, untimed: natbake's
# rules match its sets, and a rule naming a missing set is refused.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 2 ] || die "usage: unshare -n bash bench/timed-in-netns.sh SAVE CMD..."
in_fresh_netns || die "refusing to run outside a fresh network namespace (unshare -n)"
save=$1
shift
if [ -n "${BENCH_IPSETS:-}" ]; then
    ipset restore <"$BENCH_IPSETS" || die "ipset restore of $BENCH_IPSETS failed"
fi
start=$EPOCHREALTIME
"$@" >/dev/null || die "$* failed"
end=$EPOCHREALTIME
awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f\n", e - s }'
iptables-save | grep -v '^#' >"$save"
