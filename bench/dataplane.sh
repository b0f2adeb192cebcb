#!/usr/bin/env bash
# natbake benchmark part: new-connection rate through the NAT to the last of
# 10,000 forwards against a single forward (and, for reference, the first of
# the 10,000 and the plain list), in namespaces of the topology described in
# bench/lib.sh.
#
#   sudo bench/dataplane.sh
#   sudo BENCH_DATAPLANE_COMPARE="old=/path/rules.v4" bench/dataplane.sh
#
# One connrate client measures every target in the same cycles: its threads
# connect to one target for BENCH_BLOCK_MS, then move to the next, forward
# and back (A B C D D C B A), BENCH_CYCLES times after two warm-up cycles.
# Each target's ratio is its rate over the single forward's in the same
# cycle; the figure is the median of those ratios, with quartiles and a 95 %
# bootstrap interval. BENCH_DATAPLANE_COMPARE adds rulesets (NAME=FILE.v4,
# FILE.ipsets loaded first if it exists, at most four), each measured at the
# last of the 10,000 forwards in the same cycles: a ruleset from another
# commit, or one with rules taken out. See bench/README.md.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# BENCH_DATAPLANE_CPUS: a CPU list (taskset -c) for this part and all it
# starts (servers, client, the softirq work they do); empty: not pinned.
CPUS=${BENCH_DATAPLANE_CPUS:-}
bench_begin "usage: sudo bench/dataplane.sh   new-connection rate to the last of 10,000 forwards versus a single forward" "$@"
log "== dataplane"
need_rules
need_connrate
if [ -n "$CPUS" ]; then
    [[ $CPUS =~ ^[0-9]+([-,][0-9]+)*$ ]] || die "BENCH_DATAPLANE_CPUS: want a CPU list such as 1 or 0-1, got $CPUS"
    need_cmd taskset || die "missing taskset"
    taskset -cp "$CPUS" $$ >/dev/null || die "taskset -cp $CPUS failed"
fi
last=$((FIRST_PORT + 9999))

# name|ruleset|port|label, the reference (the single forward) first.
targets=(
    "one|$RULES/one.v4|$FIRST_PORT|single forward"
    "big|$RULES/big.v4|$FIRST_PORT|first of 10,000"
    "big|$RULES/big.v4|$last|last of 10,000"
    "plain|$RULES/plain.v4|$last|last of the plain list"
)
read -r -a compare <<<"${BENCH_DATAPLANE_COMPARE:-}"
[ ${#compare[@]} -le 4 ] || die "BENCH_DATAPLANE_COMPARE: at most four rulesets"
for c in "${compare[@]}"; do
    [[ $c =~ ^([a-z][a-z0-9]{0,7})=(/.+\.v4)$ ]] || die "BENCH_DATAPLANE_COMPARE: want NAME=/absolute/path.v4 (NAME a-z0-9, 8 at most), got $c"
    cname=${BASH_REMATCH[1]} cfile=${BASH_REMATCH[2]}
    case $cname in one | big | plain) die "BENCH_DATAPLANE_COMPARE: $c: that name is taken" ;; esac
    [ -f "$cfile" ] || die "BENCH_DATAPLANE_COMPARE: no file $cfile"
    targets+=("$cname|$cfile|$last|last of 10,000, $cname")
done

up=" "
args=()
for t in "${targets[@]}"; do
    IFS='|' read -r name rules port label <<<"$t"
    if [[ $up != *" $name "* ]]; then
        topo_up "$name" "$rules"
        up+="$name "
    fi
    check_forward "$name" "$port"
    args+=(--target "$NAT_PUB:$port@$(ns "$name" inet)")
done
if probe big "$((last + 1))"; then die "big: port $((last + 1)) is not forwarded but accepted"; fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "   connrate cycle: ${#targets[@]} targets, $CYCLES cycles of $((2 * ${#targets[@]})) blocks of $BLOCK_MS ms, $THREADS threads (load average $load_before)"
out=$("$CONNRATE" cycle "${args[@]}" --cycles "$CYCLES" --warmup-cycles 2 --block-ms "$BLOCK_MS" --threads "$THREADS") ||
    die "connrate cycle failed: $out"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
grep '^cycle=' <<<"$out" >&2 || true
detail "data plane: $CYCLES cycles of ${#targets[@]} targets, $BLOCK_MS ms blocks, $THREADS client threads, CPUs ${CPUS:-not pinned}; load average (1, 5, 15 min) $load_before before, $load_after after"

# target=N ... median_rate=R median_ratio=M q1=A q3=B ci95=L..H
#   median_cpu_us=U cpu_ratio=M cpu_q1=A cpu_q3=B cpu_ci95=L..H cycles=C failed=F
num='([0-9.]+)'
declare -A med ci_lo ci_hi cpu
fails=0
i=0
while read -r line; do
    [[ $line =~ ^target=([0-9]+)\ .*median_rate=([0-9]+)\ median_ratio=$num\ q1=$num\ q3=$num\ ci95=$num\.\.$num\ median_cpu_us=$num\ cpu_ratio=$num\ cpu_q1=$num\ cpu_q3=$num\ cpu_ci95=$num\.\.$num\ cycles=[0-9]+\ failed=([0-9]+)$ ]] ||
        die "cannot read connrate output: $line"
    m=("${BASH_REMATCH[@]}")
    i=${m[1]}
    IFS='|' read -r _ _ port label <<<"${targets[i - 1]}"
    med[$i]=${m[3]} ci_lo[$i]=${m[6]} ci_hi[$i]=${m[7]} cpu[$i]=${m[9]}
    fails=$((fails + m[14]))
    detail "data plane: $label (port $port): median ${m[2]} conn/s; ÷ single forward: median ${m[3]}, quartiles ${m[4]}-${m[5]}, 95 % interval of the median ${m[6]}-${m[7]}; client CPU ${m[8]} µs per connection, single forward's ÷ this: median ${m[9]}, quartiles ${m[10]}-${m[11]}, 95 % interval ${m[12]}-${m[13]}"
done < <(grep '^target=' <<<"$out")
[ "$i" = ${#targets[@]} ] || die "connrate gave figures for $i of ${#targets[@]} targets"
[ "$fails" = 0 ] || detail "data plane: $fails connection attempts timed out (dropped SYNs) over all blocks"

if ge "${ci_lo[3]}" "$LIMIT_DATAPLANE"; then where="above the limit"
elif ge "${ci_hi[3]}" "$LIMIT_DATAPLANE"; then where="straddles the limit: not resolved, run more cycles or on a quieter machine"
else where="below the limit"; fi
detail "data plane: the 95 % interval of the last of 10,000's median ratio (${ci_lo[3]}-${ci_hi[3]}) lies $where ($LIMIT_DATAPLANE)"
record "dataplane: conn/s to last of 10,000 / single forward (median of $CYCLES cycles)" ">= $LIMIT_DATAPLANE" "${med[3]}" \
    "$(ge "${med[3]}" "$LIMIT_DATAPLANE" && echo 1 || echo 0)"
# Reference only, no goal: the first forward walks the tree's first rules,
# and the plain list shows what the layout saves.
reference "reference: client CPU per connection, single forward ÷ last of 10,000" "-" "${cpu[3]}"
reference "reference: first of the same 10,000 forwards, same ratio" "-" "${med[2]}"
reference "reference: plain list of 10,000 DNAT + FORWARD rules, same ratio" "(est. ~0.4)" "${med[4]}"
for ((i = 5; i <= ${#targets[@]}; i++)); do
    IFS='|' read -r name _ _ _ <<<"${targets[i - 1]}"
    reference "reference: last of 10,000 with ruleset '$name', same ratio" "-" "${med[$i]}"
    reference "reference: the same, client CPU per connection" "-" "${cpu[$i]}"
done
bench_end
