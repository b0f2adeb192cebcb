#!/bin/bash
# natbake-standby: the role of one instance of a warm standby pair.
#
# Installed by the image as /usr/local/sbin/natbake-standby. The same fixed
# code for every site: what differs per instance (its interface and
# address, the peer's address) is passed in by whoever finds it, and the
# few settings come from /etc/natbake/standby.conf (NAME=VALUE lines,
# parsed, never sourced).
#
#   natbake-standby peer LOCAL PEER IFACE  write this instance's part of
#                                           keepalived.conf and conntrackd's
#                                           configuration; reload them
#   natbake-standby active|standby|fault    keepalived's notify scripts
#   natbake-standby check                   keepalived's vrrp_script: can
#                                           this instance serve?
#   natbake-standby handover                hand the role to the peer before
#                                           this instance goes (stop
#                                           keepalived), then let the Auto
#                                           Scaling group go on terminating
#
# Becoming active: commit the connection table the peer synced into the
# kernel, take the floating interface over (the `takeover` command), then
# forwarding on; any failure switches forwarding off and makes `check`
# fail, so that keepalived hands the role to the peer. Becoming standby or
# faulty: forwarding off at once, then the table back to sync.

set -euo pipefail

PATH="/usr/sbin:/sbin:/usr/bin:/bin"
export PATH

CONF_FILE=/etc/natbake/standby.conf
STATE=/run/natbake/standby
KEEPALIVED_LOCAL=$STATE/keepalived-local.conf
CONNTRACKD_TEMPLATE=/etc/natbake/conntrackd.conf.in
CONNTRACKD_CONF=$STATE/conntrackd.conf
ROLE_FILE=$STATE/role
TAKEOVERS_FILE=$STATE/takeovers
LOCK_FILE=$STATE/lock
# Longest wait for the lock: a takeover in progress holds it.
LOCK_WAIT=60
# natbake's one client of the AWS APIs, sourced (its code is fixed too).
AWS_LIB=/usr/local/lib/natbake/natbake-aws.sh
# The stack's termination lifecycle hook, which gives the handover time.
LIFECYCLE_HOOK=natbake-handover
# Seconds the peer gets to take the interface over before this instance
# lets the group terminate it anyway.
HANDOVER_WAIT=30

# Settings (standby.conf may change them).
TAKEOVER=/usr/local/sbin/configure-pat.sh

function log {
  logger -t natbake-standby -- "$1" 2>/dev/null || true
  echo "natbake-standby: $1" >&2
}

# Forwarding off first, then the reason; `check` fails from now on.
function die {
  forwarding 0 || true
  role failed
  log "ERROR: $1"
  exit 1
}

function forwarding { echo "$1" >/proc/sys/net/ipv4/ip_forward; }

# The role and when it was taken, for natbake-status and `check`.
function role { printf '%s %s\n' "$1" "$(date +%s)" >"$ROLE_FILE.tmp" && mv -f "$ROLE_FILE.tmp" "$ROLE_FILE"; }

# Reads standby.conf: blank lines and # comments; NAME=VALUE of a known
# name; anything else stops with the file's line number.
function read_conf {
  local file=$1 n=0 line name value
  [ -f "$file" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
    [[ $line =~ ^([a-z_]+)=(.*)$ ]] || die "$file:$n: not NAME=VALUE: $line"
    name=${BASH_REMATCH[1]}
    value=${BASH_REMATCH[2]}
    case $name in
    takeover)
      [[ $value =~ ^/[A-Za-z0-9_./-]+$ ]] || die "$file:$n: takeover must be an absolute path, not '$value'"
      TAKEOVER=$value
      ;;
    *) die "$file:$n: unknown setting '$name' (known: takeover)" ;;
    esac
  done <"$file"
}

function is_ipv4 {
  local IFS=. octet
  [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
  for octet in $1; do
    [[ $octet =~ ^(0|[1-9][0-9]*)$ ]] && [ "$octet" -le 255 ] || return 1
  done
}

function is_interface { [[ $1 =~ ^[A-Za-z0-9_.-]{1,15}$ ]]; }

# conntrackd's client, against the running daemon's socket.
function conntrackd_do { conntrackd -C "$CONNTRACKD_CONF" "$@"; }

# Replaces FILE by the text on stdin when it differs; true if it changed.
function replace_file {
  local file=$1
  cat >"$file.tmp"
  if [ -f "$file" ] && cmp -s "$file.tmp" "$file"; then
    rm -f "$file.tmp"
    return 1
  fi
  mv -f "$file.tmp" "$file"
}

function do_peer {
  local local_address=$1 peer=$2 interface=$3 changed=0
  is_ipv4 "$local_address" || die "'$local_address' is not an IPv4 address (this instance's)."
  is_ipv4 "$peer" || die "'$peer' is not an IPv4 address (the peer's)."
  [ "$peer" != "$local_address" ] || die "The peer's address is this instance's own ($peer)."
  is_interface "$interface" || die "'$interface' is not an interface name."
  [ -r "$CONNTRACKD_TEMPLATE" ] || die "$CONNTRACKD_TEMPLATE is missing; the image was not built for a standby."
  if printf 'interface %s\nunicast_src_ip %s\nunicast_peer {\n  %s\n}\n' \
    "$interface" "$local_address" "$peer" | replace_file "$KEEPALIVED_LOCAL"; then
    changed=1
  fi
  # The values are checked above, so they cannot break out of sed's text.
  if sed -e "s/@LOCAL_ADDRESS@/$local_address/g" -e "s/@PEER_ADDRESS@/$peer/g" \
    -e "s/@INTERFACE@/$interface/g" "$CONNTRACKD_TEMPLATE" | replace_file "$CONNTRACKD_CONF"; then
    changed=1
  fi
  if [ "$changed" -eq 0 ]; then
    log "Peer $peer unchanged."
    return 0
  fi
  log "Peer is $peer, from $local_address on $interface."
  if [ -d /run/systemd/system ]; then
    # A running keepalived rereads its configuration on SIGHUP and keeps
    # its role; conntrackd reads its own only at start.
    systemctl try-reload-or-restart keepalived.service || die "keepalived did not take the new peer."
    systemctl try-restart conntrackd.service || die "conntrackd did not restart with the new peer."
  fi
}

function do_active {
  local ok=1 takeovers
  log "Becoming active: committing the synced connections."
  # Each step is worth doing even if another failed: without the synced
  # table established connections are lost, but new ones still work.
  conntrackd_do -c || { ok=0; log "WARNING: committing the external cache failed."; }
  conntrackd_do -f || { ok=0; log "WARNING: flushing conntrackd's caches failed."; }
  conntrackd_do -R || { ok=0; log "WARNING: resyncing with the kernel's table failed."; }
  conntrackd_do -B || { ok=0; log "WARNING: the bulk send to the peer failed."; }
  log "Taking the floating interface over ($TAKEOVER)."
  "$TAKEOVER" || die "Taking the floating interface over failed; forwarding is off."
  forwarding 1
  takeovers=$(cat "$TAKEOVERS_FILE" 2>/dev/null || echo 0)
  [[ $takeovers =~ ^[0-9]+$ ]] || takeovers=0
  echo $((takeovers + 1)) >"$TAKEOVERS_FILE"
  role active
  if [ "$ok" -eq 1 ]; then
    log "Active: forwarding, with the peer's connections."
  else
    log "Active: forwarding; some synced connections may be lost (see above)."
  fi
}

function do_standby {
  local name=$1
  forwarding 0
  role "$name"
  # Entries of the connections this instance forwarded expire soon
  # (PurgeTimeout); ask the active for its whole table.
  conntrackd_do -t || log "WARNING: shortening the kernel's timeouts failed."
  conntrackd_do -n || log "WARNING: asking the peer for its table failed."
  log "Now $name: forwarding off, receiving the peer's connections."
}

function do_check {
  local what
  read -r what _ <"$ROLE_FILE" 2>/dev/null || what=none
  [ "$what" != failed ] || { echo "a takeover failed" >&2; return 1; }
  iptables -w 5 -t nat -S NATBAKE-PREROUTING >/dev/null 2>&1 ||
    { echo "natbake's ruleset is not loaded" >&2; return 1; }
  conntrackd_do -s >/dev/null 2>&1 || { echo "conntrackd does not answer" >&2; return 1; }
}

# This instance is going (the group terminates it, or a clean shutdown):
# keepalived stopping sends VRRP's priority-0 advert, on which the peer
# becomes active at once; then, when the Auto Scaling group is waiting on
# the lifecycle hook, tell it to go on.
function do_handover {
  local state group me waited=0
  log "Handing over to the peer."
  if [ -d /run/systemd/system ]; then
    systemctl stop keepalived.service || log "WARNING: stopping keepalived failed."
  fi
  # notify_stop has run `standby`; this is for a keepalived that was not running.
  forwarding 0
  role handed-over
  [ -r "$AWS_LIB" ] || { log "No AWS client ($AWS_LIB); not telling the Auto Scaling group."; return 0; }
  # shellcheck source=/dev/null
  . "$AWS_LIB"
  # shellcheck disable=SC2034 # natbake-aws.sh reads it
  AWS_DEADLINE=$((SECONDS + HANDOVER_WAIT + 20))
  aws_read_env_file || die "$AWS_MESSAGE"
  aws_imds meta-data/autoscaling/target-lifecycle-state || { log "No target lifecycle state: not in an Auto Scaling group."; return 0; }
  state=$AWS_BODY
  [ "$state" = Terminated ] || { log "Target lifecycle state is '$state'; the group is not terminating this instance."; return 0; }
  aws_run identity || die "Cannot read this instance's identity: $AWS_MESSAGE."
  me=${AWS_OUT[instance]}
  # The peer attaches the interface as it becomes active; wait for it to
  # leave this instance (or for the time to run out).
  while [ "$waited" -lt "$HANDOVER_WAIT" ]; do
    aws_run instance-state "$me" || break
    [ "${AWS_OUT[interfaces]:-0}" -le 1 ] && break
    sleep 1
    waited=$((waited + 1))
  done
  aws_run complete-lifecycle "$LIFECYCLE_HOOK" ||
    die "CompleteLifecycleAction failed ($AWS_ERROR: $AWS_MESSAGE); the hook's timeout ends the wait."
  group=${AWS_OUT[group]:-}
  [ -n "$group" ] || { log "This instance is not in an Auto Scaling group."; return 0; }
  log "Handed over; $group may terminate this instance."
}

function main {
  [ $# -ge 1 ] || die "usage: natbake-standby peer LOCAL PEER IFACE | active | standby | fault | check | handover"
  local action=$1
  shift
  mkdir -p "$STATE"
  read_conf "$CONF_FILE"
  if [ "$action" = check ]; then
    do_check
    return
  fi
  exec 9>>"$LOCK_FILE"
  flock -w "$LOCK_WAIT" 9 || die "Another natbake-standby held the lock for ${LOCK_WAIT}s."
  case $action in
  peer)
    [ $# -eq 3 ] || die "usage: natbake-standby peer LOCAL PEER IFACE"
    do_peer "$@"
    ;;
  active) do_active ;;
  handover) do_handover ;;
  standby | fault) do_standby "$action" ;;
  *) die "unknown action '$action'" ;;
  esac
}

# Sourced (by a test), it only defines its functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
