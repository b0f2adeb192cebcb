# Sourced by the standby's shell unit tests after natbake-standby.sh
# (tests/it/shell_units/standby.rs): points every file of the script at
# the scratch folder, the network devices at a scratch sysfs, the clock
# since boot at a file, systemd's presence at a folder that exists, and
# the libraries it sources for a takeover at the wrappers beside this
# file (the site's own libraries, with the AWS client's program a
# stand-in answering from $STUB_DIR/aws and the device steps that need
# root replaced).
# shellcheck shell=bash disable=SC2034,SC2153 # the names are natbake-standby's; SITE_DIR comes from the harness
HELPERS=${BASH_SOURCE[0]%/*}
STATE=$SCRATCH/standby
mkdir -p "$STATE" "$SCRATCH/sys/class/net" "$STUB_DIR/aws"
CONF_FILE=$SCRATCH/standby.conf
KEEPALIVED_LOCAL=$STATE/keepalived-local.conf
CONNTRACKD_TEMPLATE=$SITE_DIR/conntrackd.conf
CONNTRACKD_CONF=$STATE/conntrackd.conf
ROLE_FILE=$STATE/role
TAKEOVERS_FILE=$STATE/takeovers
LOCK_FILE=$STATE/lock
PEER_FILE=$STATE/peer
LOST_FILE=$STATE/lost
LAST_TAKEOVER=$STATE/last-takeover
DISCOVER_DUE=$STATE/discover-due
COMPLETED_FILE=$STATE/completed
SYNC_DOWN=$STATE/sync-down
RESYNC_FILE=$STATE/resync
BACKUP_AT=$STATE/backup-at
KEEPALIVED_CONF=$SITE_DIR/keepalived.conf
FLOATING_KEPT=$SCRATCH/state/floating
IP_FORWARD=$SCRATCH/ip_forward
NET_DEVICES=$SCRATCH/sys/class/net
UPTIME=$SCRATCH/uptime
SYSTEMD_DIR=$SCRATCH/systemd
mkdir -p "$SYSTEMD_DIR"
[ -e "$UPTIME" ] || echo "1000.00 1.00" >"$UPTIME"
[ -e "$IP_FORWARD" ] || echo 0 >"$IP_FORWARD"
SITE_LIB=$HELPERS/standby_lib.sh
AWS_LIB=$HELPERS/standby_awslib.sh
BOOT_SCRIPT=$SITE_DIR/configure-pat.sh
HANDOVER_WAIT=3
RELEASE_WAIT=0
JOURNAL_STREAM=unit

# A network device NAME with MAC into the scratch sysfs.
function unit_device { mkdir -p "$NET_DEVICES/$1"; echo "$2" >"$NET_DEVICES/$1/address"; }
# What the AWS stand-in answers to COMMAND (its NAME=VALUE lines), and
# its exit status.
function unit_aws {
  printf '%s\n' "${@:3}" >"$STUB_DIR/aws/$1"
  echo "$2" >"$STUB_DIR/aws/$1.status"
}
