#!/usr/bin/env bash
# natbake benchmark part: `natbake build` of 1,000 specs x 50 forwards, wall
# time (on disk, and into tmpfs for reference) and peak memory.
#
#   sudo bench/build.sh
#
# See bench/README.md; knobs and safety are described in bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SPECS_BUILD=""

# time_build OUT JSON RUNS: hyperfine of `natbake build` of the 1,000 specs
# into OUT. Before each run the previous output is moved aside, not deleted,
# and dirty pages are written back (`sync`): deleting 12,000 files on a disk
# mounted with `discard` keeps the disk busy well into the next run, and
# neither that nor the previous run's writeback is natbake's cost. The moved
# folders are deleted with the work folder at exit.
time_build() {
    local q_out q_trash q_cmd
    q_out=$(printf %q "$1")
    q_trash=$(printf %q "$(mktemp -d -p "$(dirname "$1")" trash.XXXXXX)")
    q_cmd="$(printf %q "$NATBAKE") build $(printf %q "$SPECS_BUILD") -o $q_out"
    hyperfine --style basic --warmup 1 --runs "$3" --export-json "$2" \
        --prepare "if [ -e $q_out ]; then mv $q_out \"\$(mktemp -u -p $q_trash)\"; fi; sync" "$q_cmd" >&2
}

bench_begin "usage: sudo bench/build.sh   natbake build of 1,000 specs x 50 forwards (wall, peak RSS)" "$@"
log "== build"
need_natbake
need_pkg hyperfine hyperfine
need_pkg /usr/bin/time time
SPECS_BUILD=$WORK/specs-build
out=$WORK/out-build
gen specs --out "$SPECS_BUILD" --specs 1000 --forwards 50 --prefix bench

# One checked run first: a benchmark of a failing command is void.
"$NATBAKE" build "$SPECS_BUILD" -o "$out" >/dev/null || die "natbake build failed"
n=$(find "$out" -name rules.v4 | wc -l)
[ "$n" = 1000 ] || die "natbake build wrote $n rules.v4 files, expected 1000"
files=$(find "$out" -type f | wc -l)
size=$(du -sm "$out" | cut -f1)

# Wall time, output on the disk (the work folder, under /tmp).
time_build "$out" "$WORK/build.json" 5

# Peak memory: the largest maximum RSS of three runs.
peak_kb=0
for i in 1 2 3; do
    mv "$out" "$(mktemp -u -p "$WORK" trash-rss.XXXXXX)"
    /usr/bin/time -v -o "$WORK/time-$i.txt" "$NATBAKE" build "$SPECS_BUILD" -o "$out" >/dev/null
    kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/time-$i.txt")
    if ((kb > peak_kb)); then peak_kb=$kb; fi
done

# Reference: the same build into memory (tmpfs), which separates natbake's
# own work from this machine's disk.
shm=""
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    shm=$(mktemp -d -p /dev/shm natbake-bench.XXXXXX)
    SHM_DIRS+=("$shm")
    time_build "$shm/out" "$WORK/build-shm.json" 5
fi

read -r med mean sd max <<<"$(hyperfine_stats "$WORK/build.json")"
detail "build 1,000x50 ($files files, $size MB, on disk): median $(printf %.3f "$med") s, mean $(printf %.3f "$mean") s +- $(printf %.3f "$sd"), max $(printf %.3f "$max") s; peak RSS $peak_kb KiB"
record "render: build 1,000 specs x 50 forwards, wall (median of 5)" "<= $LIMIT_BUILD_S s" "$(printf %.3f "$med") s" \
    "$(le "$med" "$LIMIT_BUILD_S" && echo 1 || echo 0)"
mb=$(awk -v k="$peak_kb" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }')
record "render: build 1,000 x 50, peak RSS (max of 3)" "<= 200 MB" "$mb MB" \
    "$(le "$((peak_kb * 1024))" "$LIMIT_BUILD_BYTES" && echo 1 || echo 0)"
if [ -n "$shm" ]; then
    read -r med mean sd max <<<"$(hyperfine_stats "$WORK/build-shm.json")"
    detail "build 1,000x50 into tmpfs: median $(printf %.3f "$med") s, mean $(printf %.3f "$mean") s +- $(printf %.3f "$sd"), max $(printf %.3f "$max") s"
    reference "reference: the same build into tmpfs (no disk)" "(none)" "$(printf %.3f "$med") s"
fi
bench_end
