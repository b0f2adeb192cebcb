# Sourced by bash before each shell unit test's own lines: loads the
# rendered natbake-lib.sh of the site in $SITE_DIR as the scripts do, then
# points natbake's state at the test's scratch folder ($SCRATCH/state), its
# files at the site folder and the network devices at an empty folder, so
# that nothing reads or writes the host's /run/natbake, /etc/natbake or
# /sys/class/net.
# shellcheck shell=bash disable=SC2034,SC2153 # the state names are the library's; SITE_DIR and SCRATCH come from the harness
# shellcheck source=/dev/null

# Where the library's settings point, moved into the scratch folder; run
# again whenever the library is loaded again.
function unit_relocate {
  STATE_DIR=$SCRATCH/state
  VIEW_CACHE=$STATE_DIR/ruleset.view
  HEALTH_STATE=$STATE_DIR/health
  SEEN_STATE=$STATE_DIR/seen
  CLOSED=$STATE_DIR/closed
  IPSETS_LOADED=$STATE_DIR/ipsets.loaded
  RELOADED=$STATE_DIR/reloaded
  SYSFS_NET=$SCRATCH/sys/class/net
  RULES=$SITE_DIR/rules.v4
  IPSETS=$SITE_DIR/ipsets.v4
  # The digests the boot step was rendered with (read, not run).
  local line
  while IFS= read -r line; do
    case $line in
      RULES_SHA256=*) RULES_SHA256=${line#*=} ;;
      IPSETS_SHA256=*) IPSETS_SHA256=${line#*=} ;;
    esac
  done <"$SITE_DIR/configure-pat.sh"
}

. "$SITE_DIR/natbake-lib.sh" || { echo "prelude: cannot load $SITE_DIR/natbake-lib.sh" >&2; exit 100; }
unit_relocate
cd "$SCRATCH" || exit 100
