# Sourced by bash before each shell unit test's own lines: loads the
# rendered natbake-lib.sh of the site in $SITE_DIR as the scripts do, then
# points natbake's state at the test's scratch folder ($SCRATCH/state) and
# its files at the site folder, so that nothing reads or writes the host's
# /run/natbake or /etc/natbake.
# shellcheck shell=bash disable=SC2034
. "$SITE_DIR/natbake-lib.sh" || { echo "prelude: cannot load $SITE_DIR/natbake-lib.sh" >&2; exit 100; }
STATE_DIR=$SCRATCH/state
VIEW_CACHE=$STATE_DIR/ruleset.view
HEALTH_STATE=$STATE_DIR/health
SEEN_STATE=$STATE_DIR/seen
CLOSED=$STATE_DIR/closed
IPSETS_LOADED=$STATE_DIR/ipsets.loaded
RELOADED=$STATE_DIR/reloaded
RULES=$SITE_DIR/rules.v4
IPSETS=$SITE_DIR/ipsets.v4
# The digests the boot step was rendered with (read, not run).
RULES_SHA256=$(sed -n 's/^RULES_SHA256=//p' "$SITE_DIR/configure-pat.sh")
IPSETS_SHA256=$(sed -n 's/^IPSETS_SHA256=//p' "$SITE_DIR/configure-pat.sh")
cd "$SCRATCH" || exit 100
