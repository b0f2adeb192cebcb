# Sourced after prelude.sh by the tests that run natbake-status whole. It
# sets PATH itself and loads the library by its installed path, so the
# stand-ins are bash functions here (PATH does not hide a function), `id`
# says root, and `.` of an installed natbake file loads the site's copy
# and moves the state into the scratch folder again.
# shellcheck shell=bash

# (The file's own arguments, if any, follow it; shifted off first, so that
# a file given none sees none, not this function's.)
function . {
  local file=$1
  shift
  case $file in
    /usr/local/lib/natbake/*) builtin . "$SITE_DIR/${file##*/}" "$@" && unit_relocate ;;
    *) builtin . "$file" "$@" ;;
  esac
}
function id { if [ "${1:-}" = -u ]; then echo 0; else command id "$@"; fi; }
function iptables-save { "$SCRATCH/bin/iptables-save" "$@"; }
function ipset { "$SCRATCH/bin/ipset" "$@"; }
function ethtool { "$SCRATCH/bin/ethtool" "$@"; }
function logger { "$SCRATCH/bin/logger" "$@"; }
