# shellcheck shell=bash disable=SC2034 # the settings here are used by the scripts that source it
# Shared by every natbake benchmark part (bench/<part>.sh) and by run.sh.
# Sourcing it only defines settings and functions; a part then calls
#
#   bench_begin PART "$@"   root, tools, knobs, work folder, cleanup trap, and
#                           a fingerprint of the host's firewall and ip_forward
#   ...measure, with record / detail / reference...
#   bench_end               checks the host is unchanged, prints the report
#                           (or hands its rows to run.sh), exits 0 or 1
#
# Safety: every firewall rule and sysctl is applied inside a network
# namespace a part creates (ip netns add / unshare -n); traffic flows only
# between addresses inside them; everything is deleted on exit, failure or
# Ctrl-C. Only net.* sysctls are set, and only in those namespaces.
#
# Knobs (environment): NATBAKE_BIN (use this binary, skip the build),
# BENCH_CYCLES (data-plane cycles, default 40, 1..999), BENCH_BLOCK_MS
# (milliseconds per data-plane block, default 100, 10..1000),
# BENCH_DATAPLANE_COMPARE (more rulesets for the data plane, NAME=FILE.v4
# ...), BENCH_DATAPLANE_CPUS (pin the data plane: a taskset -c list),
# BENCH_EGRESS_ROUNDS (iperf3 rounds, default 30), BENCH_EGRESS_SECONDS (seconds per iperf3 run, default 1),
# BENCH_THREADS (connrate client threads, default 2), BENCH_APPLY_REPS
# (iptables-restore repetitions, default 5), BENCH_PERCALL_REPS (per-call
# rounds, default 3), BENCH_HEALTH_REPS (health checks timed, default 20).
#
# Set by run.sh for the parts it runs, not by hand: BENCH_SHARED (a folder
# where the rendered rulesets are made once for all parts) and BENCH_COLLECT
# (a folder where each part leaves its rows for run.sh's single report).

export LC_ALL=C # EPOCHREALTIME and awk must use a decimal point

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")

CYCLES=${BENCH_CYCLES:-40}
BLOCK_MS=${BENCH_BLOCK_MS:-100}
EGRESS_ROUNDS=${BENCH_EGRESS_ROUNDS:-30}
EGRESS_SECONDS=${BENCH_EGRESS_SECONDS:-1}
THREADS=${BENCH_THREADS:-2}
APPLY_REPS=${BENCH_APPLY_REPS:-5}
PERCALL_REPS=${BENCH_PERCALL_REPS:-3}
HEALTH_REPS=${BENCH_HEALTH_REPS:-20}

# The scaling goals; each limit is one PASS/FAIL line of the report.
LIMIT_BUILD_S=2.0           # natbake build, 1,000 specs x 50 forwards, wall
LIMIT_BUILD_BYTES=200000000 # ... peak RSS, 200 MB
LIMIT_BIG_S=0.5             # natbake render, one spec x 10,000 forwards
LIMIT_RESTORE_S=0.5         # iptables-restore of the 10,000-forward ruleset
LIMIT_APPLY_S=0.3           # ipset restore + iptables-restore of the same
LIMIT_PERCALL_X=50          # restore vs one call per rule at 1,000 forwards
LIMIT_DATAPLANE=0.97        # rate to the last of 10,000 forwards / single forward
LIMIT_EGRESS=0.95           # iperf3 through natbake / MASQUERADE-only
LIMIT_FAILOVER_S=5.0        # replacement boot to first forward, beyond the API's attach time
LIMIT_HEALTH_CPU_S=0.1      # CPU time of one health check, 10,000 forwards

# Addresses of the test topology (all inside our namespaces).
NAT_PUB=203.0.113.1         # the NAT instance's address, as clients see it
CLIENT=203.0.113.110        # allowed source of every generated forward
STRANGER=203.0.113.111      # a source no forward allows
PRIV=10.0.0.2               # private host; also answers for 10.0.64.0/18
FIRST_PORT=20000            # gen-specs.py: forward i listens on FIRST_PORT+i
TARGET_PORT=8080            # gen-specs.py: every target's port
IPERF_PORT=5201

# The parts, in the order run.sh runs them.
BENCH_PARTS=(build render restore percall dataplane egress failover health)

# ---------------------------------------------------------------- logging

BENCH_NAME=$(basename "$0")
log() { printf '%s\n' "$*" >&2; }
die() { log "$BENCH_NAME: $*"; exit 1; }

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", a / b }'; }
# le A B / ge A B: numeric comparisons for verdicts.
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

RESULTS=()   # table rows: goal|limit|measured|verdict
DETAILS=()   # every individual measurement, printed before the table
MISSED=0
record() { # record GOAL LIMIT MEASURED PASS?(0/1)
    local verdict=PASS
    if [ "$4" != 1 ]; then verdict=FAIL; MISSED=1; fi
    RESULTS+=("$1|$2|$3|$verdict")
    log "   => $1: $3 ($verdict, limit $2)"
}
reference() { RESULTS+=("$1|$2|$3|info"); } # reference GOAL LIMIT MEASURED: no goal
detail() { DETAILS+=("$*"); log "   $*"; }

# ----------------------------------------------------------- host safety

# Succeeds only in a throwaway network namespace: one that has no interface
# but loopback (a fresh `unshare -n`). Fails closed if `ip` cannot tell.
in_fresh_netns() {
    local links
    links=$(ip -o link show 2>/dev/null) || return 1
    [ "$(grep -c ': lo:' <<<"$links")" = 1 ] && [ "$(grep -vc ': lo:' <<<"$links")" = 0 ]
}

# A fingerprint of the host's own firewall and forwarding switch, compared at
# the end to prove the benchmark left them alone.
host_state() { { iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'; cat /proc/sys/net/ipv4/ip_forward; } | sha256sum; }

# -------------------------------------------------------- setup and cleanup

WORK=""
NS_PREFIX="nbb$$"
NAMESPACES=() # every namespace we created, deleted on exit
BG_PIDS=()    # every background server we started, killed on exit
SHM_DIRS=()   # tmpfs folders we made, deleted on exit
HOST_STATE_BEFORE=""
HOST_CHECKED=""

# shellcheck disable=SC2317 # only ever called by the EXIT trap
bench_cleanup() {
    local status=$? pid ns dir
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    for dir in "${SHM_DIRS[@]}"; do rm -rf --one-file-system "$dir"; done
    [ -z "$WORK" ] || rm -rf --one-file-system "$WORK"
    # bench_end checks a finished run; this catches one that stopped early.
    if [ "$status" != 0 ] && [ -n "$HOST_STATE_BEFORE" ] && [ -z "$HOST_CHECKED" ] &&
        [ "$(host_state)" != "$HOST_STATE_BEFORE" ]; then
        log "$BENCH_NAME: the host's firewall or ip_forward changed during the run"
        exit 1
    fi
}

need_cmd() { command -v "$1" >/dev/null 2>&1; }
# Installs Debian packages that are missing (time, iperf3, hyperfine).
need_pkg() { # need_pkg COMMAND PACKAGE
    need_cmd "$1" && return 0
    log "installing $2 (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null || die "cannot install $2"
}

# bench_begin USAGE-LINE "$@": the common start of every part and of run.sh.
# A part takes no arguments but -h; run.sh reads its own before calling this
# with none.
bench_begin() {
    local usage=$1 arg n c
    shift
    for arg in "$@"; do
        case $arg in
            -h | --help) printf '%s\n' "$usage" >&2; exit 0 ;;
            *) printf '%s\n' "$usage" >&2; exit 2 ;;
        esac
    done
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, iptables)"
    for n in "$EGRESS_ROUNDS" "$EGRESS_SECONDS" "$THREADS" "$APPLY_REPS" "$PERCALL_REPS"; do
        [[ $n =~ ^[1-9][0-9]?$ ]] || die "BENCH_* knobs must be integers 1..99"
    done
    [[ $CYCLES =~ ^[1-9][0-9]{0,2}$ ]] || die "BENCH_CYCLES must be an integer 1..999"
    if [[ ! $BLOCK_MS =~ ^[1-9][0-9]{1,3}$ ]] || [ "$BLOCK_MS" -gt 1000 ]; then
        die "BENCH_BLOCK_MS must be an integer 10..1000"
    fi
    for c in ip unshare iptables iptables-restore iptables-save ipset python3 awk sha256sum; do
        need_cmd "$c" || die "missing $c"
    done
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    WORK=$(mktemp -d /tmp/natbake-bench.XXXXXX)
    HOST_STATE_BEFORE=$(host_state)
}

# Prints the report: every measurement, the table, the machine.
print_report() {
    local row g l m v
    echo
    echo "Measurements"
    [ ${#DETAILS[@]} = 0 ] || printf '  %s\n' "${DETAILS[@]}"
    echo
    echo "Results"
    printf '  %-72s %-12s %-10s %s\n' GOAL LIMIT MEASURED RESULT
    for row in "${RESULTS[@]}"; do
        IFS='|' read -r g l m v <<<"$row"
        printf '  %-72s %-12s %-10s %s\n' "$g" "$l" "$m" "$v"
    done
    echo
    echo "Machine"
    echo "  cpus:      $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "  memory:    $(awk '/^MemTotal/ { printf "%.1f GB", $2 / 1e6 }' /proc/meminfo)"
    echo "  kernel:    $(uname -r)"
    echo "  load:      $(cut -d' ' -f1-3 /proc/loadavg) (load average over 1, 5, 15 min, at the end; $(nproc) CPUs)"
    echo "  os:        $(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)"
    echo "  iptables:  $(iptables --version)"
    echo "  natbake:   $("${NATBAKE:-false}" --version 2>/dev/null || echo "${NATBAKE:-not used}")"
    echo "  knobs:     cycles=$CYCLES block_ms=$BLOCK_MS egress_rounds=$EGRESS_ROUNDS egress_seconds=$EGRESS_SECONDS threads=$THREADS apply_reps=$APPLY_REPS percall_reps=$PERCALL_REPS"
    echo "  host firewall and ip_forward unchanged: yes"
    if [ "$MISSED" = 0 ]; then echo "All goals met."; else echo "Some goals were MISSED."; fi
}

# The end of every part: the host must be as it was; then the report, or,
# under run.sh, the rows handed over for its one report. Exits 0 if every
# goal was met, 1 if one was missed.
bench_end() {
    HOST_CHECKED=1
    [ "$(host_state)" = "$HOST_STATE_BEFORE" ] || die "the host's firewall or ip_forward changed during the run"
    if [ -n "${BENCH_COLLECT:-}" ]; then
        [ ${#DETAILS[@]} = 0 ] || printf '%s\n' "${DETAILS[@]}" >>"$BENCH_COLLECT/details"
        [ ${#RESULTS[@]} = 0 ] || printf '%s\n' "${RESULTS[@]}" >>"$BENCH_COLLECT/results"
    else
        print_report
    fi
    exit "$MISSED"
}

# ------------------------------------------------------------ natbake, inputs

NATBAKE=""
need_natbake() {
    [ -z "$NATBAKE" ] || return 0
    if [ -n "${NATBAKE_BIN:-}" ]; then
        NATBAKE=$NATBAKE_BIN
    else
        need_cmd cargo || die "missing cargo"
        log "== cargo build --release"
        (cd "$REPO" && cargo build --release --quiet) || die "cargo build failed"
        NATBAKE=$REPO/target/release/natbake
    fi
    [ -x "$NATBAKE" ] || die "no natbake binary at $NATBAKE"
}

gen() { python3 "$BENCH_DIR/gen-specs.py" "$@" --first-port "$FIRST_PORT" --target-port "$TARGET_PORT"; }

# Renders the rulesets the network parts need, once (once per run.sh run,
# through BENCH_SHARED):
#   one.v4  1 forward (port 20000)   mid.v4  1,000 forwards   big.v4  10,000
#   (each with its ipsets.v4 as one.ipsets, mid.ipsets, big.ipsets)
#   plain.v4  the plain list of 10,000   masq.v4  MASQUERADE only
RULES=""
need_rules() {
    RULES=${BENCH_SHARED:-$WORK}/rules
    [ ! -d "$RULES" ] || return 0
    need_natbake
    local tmp=$WORK/rules.tmp name count
    mkdir -p "$tmp"
    for name in one:1 mid:1000 big:10000; do
        count=${name#*:}
        name=${name%%:*}
        gen specs --out "$WORK/spec-$name" --forwards "$count" --prefix "$name"
        "$NATBAKE" render "$WORK/spec-$name/$name-0001.yaml" -o "$WORK/out-$name" >/dev/null ||
            die "natbake render of the $count-forward spec failed"
        cp "$WORK/out-$name/$name-0001/rules.v4" "$tmp/$name.v4"
        cp "$WORK/out-$name/$name-0001/ipsets.v4" "$tmp/$name.ipsets"
    done
    gen plain --out "$tmp/plain.v4" --forwards 10000
    # The reference for egress: what common NAT images ship.
    printf '%s\n' '*nat' "-A POSTROUTING -s 10.0.0.0/16 -j MASQUERADE" COMMIT \
        '*filter' ':FORWARD ACCEPT [0:0]' COMMIT >"$tmp/masq.v4"
    detail "rules.v4 sizes (lines): 1 forward $(wc -l <"$tmp/one.v4"), 1,000 $(wc -l <"$tmp/mid.v4"), 10,000 $(wc -l <"$tmp/big.v4"), plain list $(wc -l <"$tmp/plain.v4")"
    # Complete or absent: a part that stopped half-way leaves nothing to reuse.
    mv "$tmp" "$RULES"
}

# json_pick FILE|- KEY.PATH...: the values, space separated (json-pick.py).
json_pick() { python3 "$BENCH_DIR/json-pick.py" "$@"; }

# hyperfine_stats JSON: "median mean stddev max" of the one benchmark in it.
hyperfine_stats() { json_pick "$1" results.0.median results.0.mean results.0.stddev results.0.max; }

# timed_in_fresh_ns SAVE CMD...: times CMD in a fresh namespace (namespace
# creation not included) and prints the seconds; the resulting ruleset goes
# to SAVE. timed-in-netns.sh refuses to run anywhere but a fresh namespace.
timed_in_fresh_ns() { unshare -n bash "$BENCH_DIR/timed-in-netns.sh" "$@"; }

# ------------------------------------------------------------ the topology
#
# Three namespaces per topology T:
#
#   T-inet  "the Internet": client 203.0.113.110 (+ .111, a stranger) and
#           the iperf3 server; no route to 10.0.0.0/16, so a private host can
#           only reach it masqueraded
#   T-nat   the NAT instance: 203.0.113.1 toward the Internet, 10.0.0.1
#           toward the VPC; loads the ruleset, then turns forwarding on
#   T-priv  the VPC side: 10.0.0.2, and every address of 10.0.64.0/18 as a
#           local address (so all DNAT targets of gen-specs.py land here);
#           runs the connrate server on port 8080
#
#   inet:pub0 <-veth-> pub1:nat:prv1 <-veth-> prv0:priv

ns() { echo "$NS_PREFIX-$1-$2"; }
# connrate.rs, built once (once per run.sh run, through BENCH_SHARED).
CONNRATE=""
need_connrate() {
    CONNRATE=${BENCH_SHARED:-$WORK}/connrate
    [ ! -x "$CONNRATE" ] || return 0
    need_cmd rustc || die "missing rustc"
    rustc -O --edition 2021 -o "$WORK/connrate" "$BENCH_DIR/connrate.rs" || die "rustc connrate.rs failed"
    [ "$WORK/connrate" = "$CONNRATE" ] || mv "$WORK/connrate" "$CONNRATE"
}

topo_up() { # topo_up NAME RULESET [iperf]
    local name=$1 rules=$2 inet nat priv i
    inet=$(ns "$name" inet); nat=$(ns "$name" nat); priv=$(ns "$name" priv)
    for i in "$inet" "$nat" "$priv"; do
        ip netns add "$i"
        NAMESPACES+=("$i")
        ip -n "$i" link set lo up
    done
    # veth pairs are created inside our namespaces, never in the host's.
    ip -n "$inet" link add pub0 type veth peer name pub1 netns "$nat"
    ip -n "$nat" link add prv1 type veth peer name prv0 netns "$priv"

    ip -n "$inet" addr add "$CLIENT/24" dev pub0
    ip -n "$inet" addr add "$STRANGER/24" dev pub0
    ip -n "$nat" addr add "$NAT_PUB/24" dev pub1
    ip -n "$nat" addr add 10.0.0.1/24 dev prv1
    ip -n "$priv" addr add "$PRIV/24" dev prv0
    for i in "$inet:pub0" "$nat:pub1" "$nat:prv1" "$priv:prv0"; do
        ip -n "${i%%:*}" link set "${i#*:}" up
    done
    ip -n "$nat" route add 10.0.64.0/18 via "$PRIV"
    ip -n "$priv" route add default via 10.0.0.1
    # AnyIP: the private host owns all of 10.0.64.0/18.
    ip -n "$priv" route add local 10.0.64.0/18 dev lo
    # More source ports for the client, so tuples are reused less often.
    ip netns exec "$inet" sysctl -qw net.ipv4.ip_local_port_range="1024 65000"

    # The NAT: natbake's ipsets (which its rules match), the ruleset, then
    # forwarding (never forwarding without them).
    if [ -f "${rules%.v4}.ipsets" ]; then
        ip netns exec "$nat" ipset restore <"${rules%.v4}.ipsets" || die "$name: ipset restore failed"
    fi
    ip netns exec "$nat" iptables-restore --noflush "$rules" || die "$name: iptables-restore failed"
    ip netns exec "$nat" sysctl -qw net.ipv4.ip_forward=1

    ip netns exec "$priv" "$CONNRATE" server "0.0.0.0:$TARGET_PORT" --threads 2 &
    BG_PIDS+=("$!")
    if [ "${3:-}" = iperf ]; then
        ip netns exec "$inet" iperf3 -s -B "$CLIENT" -p "$IPERF_PORT" >"$WORK/iperf3-$name.log" 2>&1 &
        BG_PIDS+=("$!")
    fi
    # Wait (at most 5 s) until the server answers locally.
    for i in $(seq 50); do
        ip netns exec "$priv" "$CONNRATE" probe "10.0.64.2:$TARGET_PORT" --timeout-ms 200 && return 0
        sleep 0.1
    done
    die "$name: connrate server did not start"
}

probe() { # probe TOPO PORT [SRC]: 0 if a connection through the NAT succeeds
    local extra=()
    [ -z "${3:-}" ] || extra=(--bind "$3")
    ip netns exec "$(ns "$1" inet)" "$CONNRATE" probe "$NAT_PUB:$2" --timeout-ms 500 "${extra[@]}"
}

# Sanity: the forward works from the allowed source and not from another.
check_forward() { # check_forward TOPO PORT
    probe "$1" "$2" || die "$1: no connection to port $2 from $CLIENT through the NAT"
    if probe "$1" "$2" "$STRANGER"; then
        die "$1: port $2 accepted a connection from $STRANGER, which no forward allows"
    fi
}
