# Sourced by bash before each shell unit test's own lines: loads the site's
# natbake-lib.sh (from the rendered site folder $SITE_DIR) and its
# site.conf as the scripts do, then points natbake's state at the test's
# scratch folder ($SCRATCH/state), its files at the site folder and the
# network devices at an empty folder, so that nothing reads or writes the
# host's /run/natbake, /etc/natbake or /sys/class/net.
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
  if [ -e "$SITE_DIR/site.conf" ]; then
    SITE_CONF=$SITE_DIR/site.conf
    return
  fi
  # Scripts rendered per site carry the digests themselves (read, not run).
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
if [ -e "$SITE_DIR/site.conf" ]; then
  load_site_conf || { echo "prelude: $SITE_CONF_ERROR" >&2; exit 100; }
  # load_site_conf sets what the file says: the paths stay the scratch ones.
  unit_relocate
fi
cd "$SCRATCH" || exit 100
