#!/usr/bin/env bash
# natbake benchmark part: `natbake render` of one spec x 10,000 forwards,
# wall time.
#
#   sudo bench/render.sh
#
# See bench/README.md; knobs and safety are described in bench/lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_begin "usage: sudo bench/render.sh   natbake render of one spec x 10,000 forwards (wall)" "$@"
log "== render"
need_natbake
need_pkg hyperfine hyperfine
big=$WORK/specs-big
out_big=$WORK/out-big
gen specs --out "$big" --specs 1 --forwards 10000 --prefix big

# One checked run first: a benchmark of a failing command is void.
"$NATBAKE" render "$big/big-0001.yaml" -o "$out_big" >/dev/null || die "natbake render failed"
[ -s "$out_big/big-0001/rules.v4" ] || die "natbake render wrote no rules.v4"

q_big=$(printf %q "$big/big-0001.yaml")
q_out_big=$(printf %q "$out_big")
hyperfine --style basic --warmup 2 --runs 10 --export-json "$WORK/big.json" \
    --prepare "rm -rf $q_out_big" "$(printf %q "$NATBAKE") render $q_big -o $q_out_big" >&2

read -r med mean sd max <<<"$(hyperfine_stats "$WORK/big.json")"
detail "render 1x10,000: median $(printf %.3f "$med") s, mean $(printf %.3f "$mean") s +- $(printf %.3f "$sd"), max $(printf %.3f "$max") s"
record "render: one spec x 10,000 forwards, wall (median of 10)" "<= $LIMIT_BIG_S s" "$(printf %.3f "$med") s" \
    "$(le "$med" "$LIMIT_BIG_S" && echo 1 || echo 0)"
bench_end
