#!/bin/bash
# natbake-standby: the role of one instance of a warm standby pair.
#
# Installed by the image as /usr/local/sbin/natbake-standby. The same fixed
# code for every site: what differs per instance (its interface and
# address, the peer) comes from instance metadata and the EC2 API, the
# site from /etc/natbake/site.conf, and the few settings from
# /etc/natbake/standby.conf (NAME=VALUE lines, parsed, never sourced).
#
#   natbake-standby start          natbake-standby.service, at boot: find
#                                  the peer and write this instance's part
#                                  of the configurations (keepalived and
#                                  conntrackd start after it); no peer
#                                  yet: become active alone
#   natbake-standby watch          natbake-standby.timer, every few
#                                  seconds: hand over when the Auto
#                                  Scaling group terminates this instance;
#                                  look for a replaced peer now and then
#   natbake-standby discover       look for the peer now (as watch does)
#   natbake-standby peer LOCAL PEER IFACE
#                                  write this instance's part of
#                                  keepalived.conf and conntrackd's
#                                  configuration; reload them
#   natbake-standby active|standby|fault|stopped
#                                  keepalived's notify scripts
#   natbake-standby check          keepalived's vrrp_script: can this
#                                  instance serve?
#   natbake-standby holds          keepalived's vrrp_script that weighs
#                                  the holder of the floating interface up
#   natbake-standby handover       hand the role to the peer before this
#                                  instance goes (stop keepalived, let the
#                                  interface go), then let the Auto Scaling
#                                  group go on terminating (ExecStop)
#   natbake-standby health         the health check's part: repairs a
#                                  stopped keepalived or conntrackd, keeps
#                                  forwarding to the role; prints what it
#                                  cannot repair
#   natbake-standby status         role, peer, sync and takeovers, as
#                                  NAME=VALUE lines (natbake-status)
#
# Becoming active (only ever on keepalived's transition to master, never
# from a periodic check): commit the connection table the peer synced into
# the kernel, take the floating interface over (the boot step's own
# steps, with a forced detach from a peer that may still hold it, within
# the split-brain rule below), then forwarding on; any failure switches
# forwarding off and makes `check` fail, so that keepalived hands the role
# on. Becoming standby or faulty: forwarding off at once, then the table
# back to sync.
#
# The split-brain rule (docs/failover.md): a takeover forces the interface
# away from a running holder only when
#  - that holder is this instance's peer (the one address keepalived hears
#    adverts from: check_unicast_src), and
#  - this instance has heard the peer: keepalived kept it BACKUP, without a
#    break, for HEARD seconds (more than four advert intervals) just before
#    it elected it master. A BACKUP that hears no advert becomes master
#    after VRRP's master-down interval (3 intervals and a skew, under 4),
#    so only adverts keep it BACKUP that long; and
#  - this instance has not itself lost the interface since it last stood
#    by quietly for STABLE seconds.
# Otherwise it yields: forwarding off, and `check` fails for YIELD_HOLD
# seconds (keepalived stays in FAULT). It cannot flap: two peers that
# cannot hear each other but reach the API both become master, but only
# one held the interface; the other, having heard it until the cut, takes
# it once; the loser then sees the loss, and each of its own elections
# comes after less than HEARD seconds of BACKUP (it hears nothing) and
# with the loss kept, so it yields until it hears the peer again. A new
# instance that has never heard anybody (the holder does not know it yet)
# is BACKUP for one master-down interval only: it forces nothing. Once
# the holder has found it, the holder's adverts make keepalived put it
# back to BACKUP (the holder's weight is greater): a takeover that sees
# that (BACKUP_AT later than its election) stands by at once, without
# the hold; one that does not see it within RELEASE_WAIT yields. An
# active that loses the device of the interface sees it at its next
# `check` (every second): forwarding off, the loss kept, FAULT.

# Not -e: the boot step's libraries, sourced for a takeover, test
# failures themselves.
set -u

CONF_FILE=/etc/natbake/standby.conf
STATE=/run/natbake/standby
KEEPALIVED_LOCAL=$STATE/keepalived-local.conf
CONNTRACKD_TEMPLATE=/etc/natbake/conntrackd.conf.in
CONNTRACKD_CONF=$STATE/conntrackd.conf
ROLE_FILE=$STATE/role
TAKEOVERS_FILE=$STATE/takeovers
LOCK_FILE=$STATE/lock
# "INSTANCE ADDRESS SINCE" of the peer (SINCE: seconds since boot).
PEER_FILE=$STATE/peer
# When this instance lost the interface (seconds since boot).
LOST_FILE=$STATE/lost
# When keepalived last made this instance backup (hundredths of a second
# since boot, written before the lock): later than a takeover's election,
# it means the holder's adverts demoted it.
BACKUP_AT=$STATE/backup-at
# The last takeover: "WHEN(epoch) RESULT SECONDS FROM".
LAST_TAKEOVER=$STATE/last-takeover
# When the EC2 API is next asked for the peer (seconds since boot).
DISCOVER_DUE=$STATE/discover-due
# What the lifecycle hook was completed for (a second handover skips it).
COMPLETED_FILE=$STATE/completed
# Since when conntrackd has not answered `check` (epoch).
SYNC_DOWN=$STATE/sync-down
# A standby's ask for the active's table that failed (its conntrackd did
# not answer yet): the timer asks again.
RESYNC_FILE=$STATE/resync
# The floating interface as the last takeover found it ("ID MAC ADDRESS",
# natbake-failover.sh's FLOATING_STATE).
FLOATING_KEPT=/run/natbake/floating
IP_FORWARD=/proc/sys/net/ipv4/ip_forward
NET_DEVICES=/sys/class/net
UPTIME=/proc/uptime
SYSTEMD_DIR=/run/systemd/system
# Longest wait for the lock: a takeover in progress holds it.
LOCK_WAIT=60
# natbake's library, its boot step and floating interface's steps and its
# one client of the AWS APIs, sourced for a takeover (their code is fixed
# too).
SITE_LIB=/usr/local/lib/natbake/natbake-lib.sh
BOOT_SCRIPT=/usr/local/sbin/configure-pat.sh
AWS_LIB=/usr/local/lib/natbake/natbake-aws.sh
# The stack's termination lifecycle hook, which gives the handover time.
LIFECYCLE_HOOK=natbake-handover
# Seconds the peer gets to take the interface over before this instance
# lets the group terminate it anyway.
HANDOVER_WAIT=30
# The split-brain rule's times (seconds): how long `check` fails after a
# takeover yielded; how long a standby must stand by before an earlier
# loss is forgotten. HEARD, how long keepalived must have kept this
# instance BACKUP before it may force, comes from keepalived.conf's
# advert_int (heard_for).
YIELD_HOLD=30
STABLE=10
KEEPALIVED_CONF=/etc/natbake/keepalived.conf
# Seconds conntrackd may not answer `check` (a restart) before it fails.
SYNC_SILENCE=5
# Seconds a takeover that may not force the interface away waits for its
# holder to let it go (a handover), or for the holder's adverts to make
# it backup again (the holder found it: DISCOVER_ALONE, and its
# keepalived's reload), before it yields.
RELEASE_WAIT=15
# Seconds a bulk send to a new peer gets before the handover goes on.
BULK_SETTLE=2
# How often the EC2 API is asked for the peer: with one, every 30 to 40
# seconds (DISCOVER_EVERY and up to a third more); alone or with a peer
# that is gone, every 10.
DISCOVER_EVERY=30
DISCOVER_ALONE=10

# Settings (standby.conf may change them).
TAKEOVER=''
RELOAD=''

function log {
  local line=${1//$'\n'/ }
  if [ -n "${JOURNAL_STREAM:-}" ]; then
    echo "$line" >&2
  else
    logger -t natbake-standby -- "$line" 2>/dev/null || true
    echo "natbake-standby: $line" >&2
  fi
}

# Forwarding off first, then the reason; `check` fails from now on.
function die {
  forwarding 0 || true
  role failed
  log "ERROR: $1"
  exit 1
}

function forwarding { echo "$1" >"$IP_FORWARD"; }

# Seconds since boot (unmoved by clock steps).
function uptime_now {
  local up=''
  { read -r up _ <"$UPTIME"; } 2>/dev/null
  echo "${up%%.*}"
}

# The same in hundredths of a second.
function uptime_cs {
  local up='' whole part
  { read -r up _ <"$UPTIME"; } 2>/dev/null
  whole=${up%%.*} part=${up#*.}
  [ "$part" != "$up" ] || part=0
  part=${part}00
  echo "$whole${part:0:2}"
}

# The role and when it was taken, for natbake-status and `check`.
# "ROLE EPOCH UPTIME": the epoch for people, the seconds since boot for
# the split-brain rule (a clock step at boot, chrony's makestep, must not
# look like time spent hearing the peer).
function role { printf '%s %s %s\n' "$1" "$(date +%s)" "$(uptime_now)" >"$ROLE_FILE.tmp" && mv -f "$ROLE_FILE.tmp" "$ROLE_FILE"; }

# The role into ROLE and its times into ROLE_AT and ROLE_UP ("none 0 0"
# without one).
function read_role {
  ROLE=none ROLE_AT=0 ROLE_UP=0
  { read -r ROLE ROLE_AT ROLE_UP <"$ROLE_FILE"; } 2>/dev/null || true
  [[ $ROLE_AT =~ ^[0-9]+$ ]] || ROLE_AT=0
  [[ $ROLE_UP =~ ^[0-9]+$ ]] || ROLE_UP=0
  ROLE=${ROLE:-none}
}

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
    takeover | reload)
      [[ $value =~ ^/[A-Za-z0-9_./-]+$ ]] || die "$file:$n: $name must be an absolute path, not '$value'"
      printf -v "${name^^}" '%s' "$value"
      ;;
    join_grace)
      # The split-brain rule's old wait, no longer used: accepted (and
      # ignored) for one release.
      [[ $value =~ ^[0-9]{1,4}$ ]] || die "$file:$n: $name must be whole seconds, not '$value'"
      ;;
    discover_every)
      if ! [[ $value =~ ^[0-9]{1,4}$ ]] || [ $((10#$value)) -lt 1 ] || [ $((10#$value)) -gt 3600 ]; then
        die "$file:$n: $name must be whole seconds from 1 to 3600, not '$value'"
      fi
      printf -v "${name^^}" '%s' "$((10#$value))"
      ;;
    *) die "$file:$n: unknown setting '$name' (known: takeover, reload, join_grace, discover_every)" ;;
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

# The device whose MAC address is $1, by its name now.
function device_with_mac {
  local f
  for f in "$NET_DEVICES"/*/address; do
    [ "$(cat "$f" 2>/dev/null)" = "$1" ] && { f=${f%/address}; echo "${f##*/}"; return 0; }
  done
  return 1
}

# Whether the floating interface the last takeover kept has its device
# here: EC2 removes the device when the interface is detached, forced or
# not. A rename keeps the MAC.
function holds_interface {
  local id mac _
  { read -r id mac _ <"$FLOATING_KEPT"; } 2>/dev/null || return 1
  [[ $mac =~ ^[0-9a-f]{2}(:[0-9a-f]{2}){5}$ ]] || return 1
  device_with_mac "$mac" >/dev/null
}

# conntrackd's client, against the running daemon's socket.
function conntrackd_do { conntrackd -C "$CONNTRACKD_CONF" "$@"; }

function systemd_runs { [ -d "$SYSTEMD_DIR" ]; }

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
  [ -z "${PEER_AT_BOOT:-}" ] || return 0
  if [ -n "$RELOAD" ]; then
    "$RELOAD" || die "$RELOAD failed to reload keepalived and conntrackd with the new peer."
  elif systemd_runs; then
    # conntrackd reads its configuration only at start; a running
    # keepalived rereads its own on SIGHUP and keeps its role, and one that
    # is not running yet (this instance was alone) starts now.
    systemctl restart conntrackd.service || die "conntrackd did not restart with the new peer."
    systemctl reload-or-restart keepalived.service || die "keepalived did not take the new peer."
  fi
}

# ---- The peer, through the EC2 API ------------------------------------

# Loads natbake's library and site.conf, and the AWS client; the AWS
# deadline is $1 seconds from now.
function load_aws {
  # shellcheck source=/dev/null
  . "$SITE_LIB" || die "Cannot read $SITE_LIB."
  load_site_conf || die "$SITE_CONF_ERROR"
  [ "${STANDBY:-no}" = yes ] || die "$SITE_CONF says this site has no standby (standby=yes)."
  # shellcheck source=/dev/null
  . "$AWS_LIB" || die "Cannot read $AWS_LIB."
  redefine_own
  # shellcheck disable=SC2034 # natbake-aws.sh reads it
  AWS_DEADLINE=$((SECONDS + $1))
}

# The sourced files define their own log and die: this script's win.
function redefine_own {
  function log {
    local line=${1//$'\n'/ }
    if [ -n "${JOURNAL_STREAM:-}" ]; then echo "$line" >&2; else
      logger -t natbake-standby -- "$line" 2>/dev/null || true
      echo "natbake-standby: $line" >&2
    fi
  }
  function die { forwarding 0 || true; role failed; log "ERROR: $1"; exit 1; }
}

# The peer this instance pairs with, from `natbake-aws peers`: the holder
# of the interface pairs with the newest running instance (a replacement
# is newer than what it replaces), any other with the oldest (the one that
# has served longest, most likely the holder); a pending one only when
# none runs. Sets PEER_ID and PEER_ADDRESS (empty: none).
function choose_peer {
  local n=${AWS_OUT[peers]:-0} i line id address state running=() pending=()
  PEER_ID='' PEER_ADDRESS=''
  [[ $n =~ ^[0-9]+$ ]] || n=0
  for ((i = 1; i <= n; i++)); do
    line=${AWS_OUT[peer$i]:-}
    read -r id address state <<<"$line"
    if ! [[ $id =~ ^i-[0-9a-f]{8,17}$ ]] || ! is_ipv4 "$address"; then continue; fi
    case $state in
    running) running+=("$id $address") ;;
    pending) pending+=("$id $address") ;;
    esac
  done
  local pick=("${running[@]}")
  [ "${#pick[@]}" -gt 0 ] || pick=("${pending[@]}")
  [ "${#pick[@]}" -gt 0 ] || return 0
  if holds_interface; then
    line=${pick[${#pick[@]} - 1]}
  else
    line=${pick[0]}
  fi
  read -r PEER_ID PEER_ADDRESS <<<"$line"
}

# Sets when the EC2 API is next asked for the peer.
function discover_next {
  local up
  up=$(uptime_now)
  [[ $up =~ ^[0-9]+$ ]] || return 0
  echo $((up + $1)) >"$DISCOVER_DUE" 2>/dev/null || true
}

function discover_due {
  local due='' up
  { read -r due <"$DISCOVER_DUE"; } 2>/dev/null || true
  up=$(uptime_now)
  [[ $due =~ ^[0-9]+$ && $up =~ ^[0-9]+$ ]] || return 0
  [ "$up" -ge "$due" ]
}

# Asks the EC2 API for the site's other instances here and pairs with one
# (do_peer; a peer that is the same as before changes nothing). Returns 3
# when there is none. The API not answering keeps the peer there is.
function do_discover {
  local iface old_id='' old_address='' since=''
  load_aws 20
  if ! aws_run peers "$SITE"; then
    discover_next "$DISCOVER_ALONE"
    log "WARNING: cannot look for the peer: ${AWS_ERROR:-}: ${AWS_MESSAGE:-no answer}; keeping what there is."
    return 2
  fi
  choose_peer
  { read -r old_id old_address since <"$PEER_FILE"; } 2>/dev/null || true
  if [ -z "$PEER_ID" ]; then
    discover_next "$DISCOVER_ALONE"
    [ -z "$old_id" ] || log "The peer $old_id ($old_address) is gone and no other instance of site $SITE is here yet; keeping its configuration until one comes."
    return 3
  fi
  discover_next $((DISCOVER_EVERY + RANDOM % (DISCOVER_EVERY / 3 + 1)))
  iface=$(device_with_mac "${AWS_OUT[mac]:-none}") ||
    die "No device has this instance's MAC address ${AWS_OUT[mac]:-} (instance metadata's)."
  do_peer "${AWS_OUT[address]:-}" "$PEER_ADDRESS" "$iface"
  if [ "$PEER_ID" != "$old_id" ] || [ "$PEER_ADDRESS" != "$old_address" ]; then
    printf '%s %s %s\n' "$PEER_ID" "$PEER_ADDRESS" "$(uptime_now)" >"$PEER_FILE"
    log "Paired with $PEER_ID ($PEER_ADDRESS)."
    # Adverts heard so far were not this peer's: the split-brain rule's
    # "heard the peer" starts again.
    read_role
    [ "$ROLE" != standby ] || role standby
  fi
}

# At boot, before keepalived and conntrackd (their units come after this
# one and start only once the configuration exists): the peer, or, with
# none yet, this instance alone as the candidate active. An API that does
# not answer is asked again for a minute.
function do_start {
  local tries=0 rc
  rm -f "$LOST_FILE"
  role starting
  PEER_AT_BOOT=yes
  while :; do
    rc=0
    do_discover || rc=$?
    [ "$rc" -eq 2 ] || break
    tries=$((tries + 1))
    if [ "$tries" -ge 6 ]; then
      role no-peer
      log "The EC2 API did not say who the peer is for a minute; forwarding stays off, the timer keeps asking."
      return 0
    fi
    sleep 10
  done
  PEER_AT_BOOT=''
  if [ "$rc" -eq 3 ]; then
    serve_alone
  else
    # Not yet standby: that is keepalived's to say (notify_backup), and
    # the split-brain rule counts from it.
    role paired
  fi
}

# No peer has ever been found: no election runs, and this instance takes
# the interface as a boot would (never by force: may_force knows no
# peer). A failure leaves it to the timer, which keeps looking.
function serve_alone {
  log "No other instance of site $SITE here yet: this one serves alone until one comes."
  (do_active) || log "Serving alone failed (above); looking again in ${DISCOVER_ALONE}s."
}

# ---- The takeover -----------------------------------------------------

# Loads the boot step's own steps (natbake-lib.sh, configure-pat.sh's
# address arithmetic, natbake-aws.sh, natbake-failover.sh), with this
# script's log and die.
function load_takeover {
  load_aws 0
  # shellcheck source=/dev/null
  . "$BOOT_SCRIPT" || die "Cannot read $BOOT_SCRIPT."
  # shellcheck source=/dev/null
  . "$FAILOVER_LIB" || die "Cannot read $FAILOVER_LIB."
  redefine_own
}

# Seconds of BACKUP that only the peer's adverts explain: more than four
# advert intervals (VRRP's master-down interval is three and a skew of at
# most one), in whole seconds, one more for the role's whole-second
# clock. Without a readable advert_int, VRRP's longest here (5 s).
function heard_for {
  local a
  a=$(awk '$1 == "advert_int" && $2 ~ /^[0-9.]+$/ { print int($2 * 4 + 0.999) + 1; exit }' "$KEEPALIVED_CONF" 2>/dev/null)
  [[ $a =~ ^[0-9]+$ ]] && [ "$a" -ge 2 ] || a=21
  echo "$a"
}

# Whether the split-brain rule lets this instance force the interface away
# from running instance $1; the reason it does not in YIELD_WHY. BEFORE
# and BEFORE_UP: the role before this takeover and since when; ELECTED_UP:
# when keepalived ran `active` (before the lock: a run that held it must
# not lengthen the BACKUP time); both in seconds since boot.
function may_force {
  local peer='' address='' since='' heard
  YIELD_WHY=''
  if [ -e "$LOST_FILE" ]; then
    YIELD_WHY="this instance lost the interface to $1 and has not stood by quietly since"
    return 1
  fi
  { read -r peer address since <"$PEER_FILE"; } 2>/dev/null || true
  if [ "$peer" != "$1" ]; then
    YIELD_WHY="$1 is not this instance's peer (${peer:-none}), so it may not know this one yet"
    return 1
  fi
  heard=$(heard_for)
  if [ "${BEFORE:-}" != standby ] || [ $((${ELECTED_UP:-0} - ${BEFORE_UP:-0})) -lt "$heard" ]; then
    YIELD_WHY="keepalived had not kept this instance standby on $1's adverts (${BEFORE:-none} for $((${ELECTED_UP:-0} - ${BEFORE_UP:-0}))s before it was elected, less than ${heard}s), so $1 may not know it yet"
    return 1
  fi
}

# Whether keepalived made this instance backup after it elected it for
# this takeover (ELECTED_CS): only adverts of a holder that outweighs it
# do that.
function demoted {
  local at=''
  { read -r at <"$BACKUP_AT"; } 2>/dev/null || true
  [[ $at =~ ^[0-9]+$ && ${ELECTED_CS:-} =~ ^[0-9]+$ ]] && [ "$at" -gt "$ELECTED_CS" ]
}

# Whether the holder lets the interface go within RELEASE_WAIT seconds:
# a holder that hands over (its keepalived stopped, which is what made
# this instance master) detaches it a moment later. Looks again every
# second (floating_describe's answer, from natbake-failover.sh); stops
# early once the holder's adverts demoted this instance.
function released_soon {
  local until=$((SECONDS + RELEASE_WAIT))
  while :; do
    case $FLOATING_ATTACHED in detaching | detached) return 0 ;; esac
    [ -n "$FLOATING_HOLDER" ] && [ "$FLOATING_HOLDER" != "$AWS_INSTANCE_ID" ] || return 0
    ! demoted || return 1
    [ "$SECONDS" -lt "$until" ] || return 1
    sleep 1
    floating_describe "$SITE" || return 1
  done
}

# The takeover itself: the boot step's take_floating_interface (attach,
# wait, configure, route, under its deadline, with its fail-closed die),
# told which holder it may detach by force. Returns 3 when it yields.
function take_over {
  load_takeover
  FLOATING_FORCE=''
  FLOATING_DEADLINE=$((SECONDS + ATTACH_TIMEOUT))
  AWS_DEADLINE=$FLOATING_DEADLINE
  aws_read_env_file || die "$AWS_MESSAGE"
  FLOATING_FRESH=''
  if ! { floating_kept && device_with_mac "$KEPT_MAC" >/dev/null; }; then
    floating_describe "$SITE" || die "$AWS_MESSAGE"
    # take_floating_interface's first turn goes on from this answer.
    FLOATING_FRESH=yes
    # The peer this instance heard until a moment ago is forced at once,
    # whatever EC2 says of its state (a hung instance stays running);
    # only a holder that may not be forced is asked about.
    if [ -n "$FLOATING_HOLDER" ] && [ "$FLOATING_HOLDER" != "$AWS_INSTANCE_ID" ] && may_force "$FLOATING_HOLDER"; then
      FLOATING_FORCE=$FLOATING_HOLDER
    elif [ -n "$FLOATING_HOLDER" ] && [ "$FLOATING_HOLDER" != "$AWS_INSTANCE_ID" ]; then
      local state=''
      if aws_run instance-state "$FLOATING_HOLDER"; then
        state=${AWS_OUT[state]:-}
      fi
      case $state in
      stopping | stopped | shutting-down | terminated) FLOATING_FRESH='' ;;
      *)
        # Running, pending, or the API cannot say: it may be serving.
        if ! released_soon; then
          forwarding 0
          record_takeover yielded "$FLOATING_HOLDER"
          if demoted; then
            # keepalived has made it backup already: it hears the holder.
            role standby
            log "Not taking $FLOATING_ID from $FLOATING_HOLDER (${state:-state unknown}): $YIELD_WHY. Its adverts reach this instance now; standing by."
          else
            role yielded
            log "Not taking $FLOATING_ID from $FLOATING_HOLDER (${state:-state unknown}): $YIELD_WHY. Standing by; keepalived tries again in ${YIELD_HOLD}s."
          fi
          return 3
        fi
        FLOATING_FRESH=''
        ;;
      esac
    fi
  fi
  # natbake-failover.sh reads them.
  export FLOATING_FORCE FLOATING_FRESH FLOATING_TAKEOVER=yes
  take_floating_interface
  TAKEN_FROM=$FLOATING_FORCE
}

# Keeps the last takeover: when, how it ended, how long, from whom.
function record_takeover {
  printf '%s %s %s %s\n' "$(date +%s)" "$1" "$((SECONDS - ${TAKEOVER_START:-$SECONDS}))" "${2:--}" \
    >"$LAST_TAKEOVER" 2>/dev/null || true
}

# The synced table into the kernel. Each step is worth doing even if
# another failed: without the synced table established connections are
# lost, but new ones still work. Fails if any step failed.
function commit_synced {
  local ok=0
  conntrackd_do -c || { ok=1; log "WARNING: committing the external cache failed."; }
  conntrackd_do -f || { ok=1; log "WARNING: flushing conntrackd's caches failed."; }
  conntrackd_do -R || { ok=1; log "WARNING: resyncing with the kernel's table failed."; }
  conntrackd_do -B || { ok=1; log "WARNING: the bulk send to the peer failed."; }
  return "$ok"
}

function do_active {
  local ok=1 takeovers rc=0 commit=''
  TAKEOVER_START=$SECONDS TAKEN_FROM=''
  read_role
  if [ "$ROLE" = active ] && holds_interface && [ -z "$TAKEOVER" ]; then
    forwarding 1
    log "Active again (keepalived restarted): this instance holds the interface; forwarding."
    return 0
  fi
  # The role keepalived kept this instance in until it elected it (the
  # split-brain rule's "heard the peer").
  BEFORE=$ROLE BEFORE_UP=$ROLE_UP ELECTED_UP=${ELECTED_UP:-$(uptime_now)} ELECTED_CS=${ELECTED_CS:-$(uptime_cs)}
  role taking-over
  # The commit runs while the interface moves (forwarding is off until
  # both are done). Alone (no peer yet) there is no conntrackd and nothing
  # to commit.
  if [ -e "$CONNTRACKD_CONF" ]; then
    log "Becoming active: committing the synced connections while taking the interface."
    commit_synced &
    commit=$!
  else
    log "Becoming active."
  fi
  if [ -n "$TAKEOVER" ]; then
    log "Taking the floating interface over ($TAKEOVER)."
    "$TAKEOVER" || { record_takeover failed; die "Taking the floating interface over failed; forwarding is off."; }
  else
    take_over || rc=$?
    [ "$rc" -eq 0 ] || { [ -z "$commit" ] || wait "$commit"; return "$rc"; }
  fi
  [ -z "$commit" ] || wait "$commit" || ok=0
  forwarding 1
  takeovers=$(cat "$TAKEOVERS_FILE" 2>/dev/null || echo 0)
  [[ $takeovers =~ ^[0-9]+$ ]] || takeovers=0
  echo $((takeovers + 1)) >"$TAKEOVERS_FILE"
  rm -f "$LOST_FILE"
  record_takeover ok "$TAKEN_FROM"
  role active
  if [ "$ok" -eq 1 ]; then
    log "Active: forwarding, with the peer's connections (took $((SECONDS - TAKEOVER_START))s)."
  else
    log "Active: forwarding; some synced connections may be lost (see above)."
  fi
}

function do_standby {
  local name=$1
  read_role
  # keepalived starts as backup, and says so, also on the instance that
  # holds the interface (it was alone, or keepalived was restarted): that
  # one goes on forwarding, and its greater weight makes it master within
  # a few adverts. A real demotion comes with a loss (see check) or a fault.
  if [ "$name" = standby ] && [ "$ROLE" = active ] && holds_interface; then
    log "keepalived started as backup on the holder of the interface; forwarding on until it decides."
    return 0
  fi
  forwarding 0
  # The FAULT that a yielded takeover's failing check brings keeps the
  # yield (and its hold); any other change of role is written.
  if [ "$ROLE" != yielded ] || [ $(($(date +%s) - ROLE_AT)) -ge "$YIELD_HOLD" ]; then
    role "$name"
  fi
  [ -e "$CONNTRACKD_CONF" ] || { log "Now $name: forwarding off."; return 0; }
  # Entries of the connections this instance forwarded expire soon
  # (PurgeTimeout); ask the active for its whole table.
  conntrackd_do -t || log "WARNING: shortening the kernel's timeouts failed."
  ask_for_table "$name"
  log "Now $name: forwarding off, receiving the peer's connections."
}

# Asks the peer for its whole table (conntrackd -n). keepalived may make
# this instance backup before its own conntrackd answers (a new instance
# that hears the active at once): then the timer asks again (RESYNC_FILE)
# until it is answered, or the active's connections would never reach it.
function ask_for_table {
  if conntrackd_do -n; then
    rm -f "$RESYNC_FILE"
  else
    echo "$1" >"$RESYNC_FILE"
    log "WARNING: asking the peer for its table failed; asking again in a few seconds."
    return 1
  fi
}

# Lost: the active's device of the interface is gone (the peer forced it
# away). Forwarding off at once; the loss is kept for the split-brain rule.
function lost {
  forwarding 0 || true
  uptime_now >"$LOST_FILE" 2>/dev/null || true
  role lost
  log "The floating interface's device is gone: another instance took it. Forwarding off; standing by."
}

function do_check {
  read_role
  case $ROLE in
  failed) echo "a takeover failed" >&2; return 1 ;;
  lost) echo "this instance lost the floating interface" >&2; return 1 ;;
  yielded)
    if [ $(($(date +%s) - ROLE_AT)) -lt "$YIELD_HOLD" ]; then
      echo "a takeover yielded to a running holder" >&2
      return 1
    fi
    ;;
  active)
    if [ -z "$TAKEOVER" ] && ! holds_interface; then
      lost
      echo "this instance lost the floating interface" >&2
      return 1
    fi
    ;;
  esac
  iptables -w 5 -t nat -S NATBAKE-PREROUTING >/dev/null 2>&1 ||
    { echo "natbake's ruleset is not loaded" >&2; return 1; }
  # conntrackd restarts when the peer is replaced: silence counts only
  # once it has lasted SYNC_SILENCE seconds.
  local since now
  if conntrackd_do -s >/dev/null 2>&1; then
    rm -f "$SYNC_DOWN"
    return 0
  fi
  now=$(date +%s)
  { read -r since <"$SYNC_DOWN"; } 2>/dev/null || { since=$now; echo "$now" >"$SYNC_DOWN"; }
  [[ $since =~ ^[0-9]+$ ]] || since=$now
  [ $((now - since)) -lt "$SYNC_SILENCE" ] || { echo "conntrackd does not answer" >&2; return 1; }
}

# ---- Leaving ----------------------------------------------------------

# This instance is going (the group terminates it, or a clean shutdown):
# keepalived stopping sends VRRP's priority-0 advert, on which the peer
# becomes active at once; the holder then lets the interface go, so that
# the peer attaches it without forcing it away; then, when the Auto
# Scaling group is waiting on the lifecycle hook, tell it to go on. An
# instance that did not hold the interface waits for nobody.
function do_handover {
  local state='' me held=0 waited=0
  log "Handing over to the peer."
  holds_interface && held=1
  [ "$held" -eq 0 ] || sync_peer
  if systemd_runs; then
    systemctl stop keepalived.service || log "WARNING: stopping keepalived failed."
  fi
  # notify_stop has run `stopped`; this is for a keepalived that was not running.
  forwarding 0
  role handed-over
  if [ ! -r "$AWS_LIB" ]; then
    log "No AWS client ($AWS_LIB); not letting the interface go, not telling the Auto Scaling group."
    return 0
  fi
  load_takeover
  # shellcheck disable=SC2034 # natbake-aws.sh reads it
  AWS_DEADLINE=$((SECONDS + HANDOVER_WAIT + 20))
  aws_read_env_file || die "$AWS_MESSAGE"
  if [ "$held" -eq 1 ] && floating_describe "$SITE" && [ "$FLOATING_HOLDER" = "$AWS_INSTANCE_ID" ] &&
    [ -n "$FLOATING_ATTACHMENT" ]; then
    log "Letting $FLOATING_ID go ($FLOATING_ATTACHMENT) for the peer."
    aws_run detach "$FLOATING_ATTACHMENT" ||
      log "WARNING: detaching $FLOATING_ID failed ($AWS_ERROR: $AWS_MESSAGE); the peer detaches it by force."
  fi
  if aws_imds meta-data/autoscaling/target-lifecycle-state; then
    state=$AWS_BODY
  fi
  [ "$state" = Terminated ] || { log "Target lifecycle state is '${state:-none}'; the group is not terminating this instance."; return 0; }
  [ ! -e "$COMPLETED_FILE" ] || { log "The lifecycle action was already completed."; return 0; }
  aws_run identity || die "Cannot read this instance's identity: $AWS_MESSAGE."
  me=${AWS_OUT[instance]}
  # The peer attaches the interface as it becomes active; wait for it to
  # leave this instance (or for the time to run out).
  while [ "$held" -eq 1 ] && [ "$waited" -lt "$HANDOVER_WAIT" ]; do
    aws_run instance-state "$me" || break
    [ "${AWS_OUT[interfaces]:-0}" -le 1 ] && break
    sleep 1
    waited=$((waited + 1))
  done
  if ! aws_run complete-lifecycle "$LIFECYCLE_HOOK"; then
    # Still handed over: the hook's heartbeat timeout ends the group's wait.
    log "ERROR: CompleteLifecycleAction failed ($AWS_ERROR: $AWS_MESSAGE); the hook's timeout ends the wait."
    return 1
  fi
  date +%s >"$COMPLETED_FILE" 2>/dev/null || true
  [ -n "${AWS_OUT[group]:-}" ] || { log "This instance is not in an Auto Scaling group."; return 0; }
  log "Handed over; ${AWS_OUT[group]} may terminate this instance."
}

# Before the holder hands over: a peer that replaced the last one (a
# rolling replacement) may not be known here yet, and would take over
# without this instance's connections. Looks now (a new peer is paired
# with: conntrackd restarted, keepalived reloaded), then sends the peer
# the whole table (`conntrackd -B`), with a moment for it to arrive: also
# a known peer, which may have missed some (its conntrackd started after
# this one's last sent everything).
function sync_peer {
  local after='' i
  (do_discover) || true
  { read -r after _ <"$PEER_FILE"; } 2>/dev/null || true
  [ -n "$after" ] || return 0
  log "Sending the connection table to the peer $after before handing over."
  for i in 1 2 3 4 5 6 7 8 9 10; do
    conntrackd_do -s >/dev/null 2>&1 && break
    sleep 0.5
  done
  conntrackd_do -B || log "WARNING: the bulk send to the peer failed."
  sleep "$BULK_SETTLE"
}

# ---- The timer --------------------------------------------------------

# Every few seconds: the group's target lifecycle state (Terminated: hand
# over); an earlier loss forgotten once this instance has stood by
# quietly (it hears the peer again); the peer looked for when due. Never a
# takeover: that is keepalived's alone.
function do_watch {
  read_role
  [ "$ROLE" != handed-over ] || return 0
  if [ -e "$LOST_FILE" ] && [ "$ROLE" = standby ] && [ $(($(date +%s) - ROLE_AT)) -ge "$STABLE" ]; then
    rm -f "$LOST_FILE"
    log "Standing by quietly for ${STABLE}s: the peer is heard again; the earlier loss is forgotten."
  fi
  if [ -e "$RESYNC_FILE" ]; then
    case $ROLE in standby | fault) ask_for_table "$ROLE" && log "Asked the peer for its table again." ;; *) rm -f "$RESYNC_FILE" ;; esac
  fi
  load_aws 4
  if aws_imds meta-data/autoscaling/target-lifecycle-state && [ "$AWS_BODY" = Terminated ]; then
    log "The Auto Scaling group is terminating this instance (target lifecycle state Terminated)."
    do_handover
    return
  fi
  if discover_due; then
    local rc=0
    do_discover || rc=$?
    # Never paired (alone, or the API did not answer at boot) and not
    # serving: the boot's step, late.
    if [ "$rc" -eq 3 ] && [ ! -e "$PEER_FILE" ]; then
      read_role
      case $ROLE in active | taking-over) ;; *) serve_alone ;; esac
    fi
  fi
}

# ---- What the health check and natbake-status read ---------------------

# The health check's part. Prints what it cannot repair, one line each,
# and then fails; a repair is logged.
function do_health {
  local problems=() unit forwarding=''
  read_role
  [ "$ROLE" != handed-over ] || return 0
  if [ -s "$KEEPALIVED_LOCAL" ] && systemd_runs; then
    for unit in conntrackd keepalived; do
      systemctl is-active --quiet "$unit.service" && continue
      log "$unit.service is not running; starting it."
      systemctl start "$unit.service" || true
      systemctl is-active --quiet "$unit.service" || problems+=("$unit.service does not start")
    done
  fi
  { read -r forwarding <"$IP_FORWARD"; } 2>/dev/null || true
  case $ROLE in
  active)
    if [ -z "$TAKEOVER" ] && ! holds_interface; then
      lost
    elif [ "$forwarding" != 1 ]; then
      problems+=("active, but IP forwarding is off")
    elif [ -z "$TAKEOVER" ]; then
      repair_route || problems+=("the default route does not leave through the floating interface")
    fi
    ;;
  taking-over | starting) ;;
  *)
    if [ "$forwarding" = 1 ]; then
      forwarding 0
      log "IP forwarding was on while $ROLE; switched it off."
    fi
    ;;
  esac
  [ "${#problems[@]}" -eq 0 ] || { printf '%s\n' "${problems[@]}"; return 1; }
}

# The active's default route through the floating interface, as the
# boot step's health part checks it elsewhere: gone (a DHCP client, a
# person), the takeover's own steps configure it again (from what this
# instance keeps, without the EC2 API while the interface is here). A
# takeover that fails switches forwarding off (its die), and keepalived
# hands the role on.
function repair_route {
  load_takeover
  floating_kept && floating_device "$KEPT_MAC" || return 0
  routes_through "$FLOATING_DEV" "$KEPT_ADDR" && return 0
  log "The default route does not leave through the floating interface $KEPT_ID ($FLOATING_DEV); configuring it again."
  (take_over) || return 1
  floating_device "$KEPT_MAC" && routes_through "$FLOATING_DEV" "$KEPT_ADDR"
}

# `status` alone: NAME=VALUE lines. `status no|yes` (natbake-status, with
# its report on stdin, a table or JSON): the report with this part added,
# as "standby NAME: VALUE" lines or as the JSON object's "standby" member
# (every value a string, or null when empty).
function do_status {
  local lines line name value members='' report
  [ $# -gt 0 ] || { status_lines; return; }
  lines=$(status_lines)
  case $1 in
  no)
    cat
    printf '\n'
    while IFS= read -r line; do
      value=${line#*=}
      printf 'standby %s: %s\n' "${line%%=*}" "${value//[[:cntrl:]]/?}"
    done <<<"$lines"
    ;;
  yes)
    report=$(cat)
    # Never die here: die switches forwarding off.
    [[ $report == *'}' ]] || { echo "natbake-standby: natbake-status's report is not a JSON object" >&2; return 1; }
    while IFS= read -r line; do
      name=${line%%=*} value=${line#*=}
      value=${value//[[:cntrl:]]/}
      value=${value//\\/\\\\}
      value=${value//\"/\\\"}
      [ -n "$value" ] && value="\"$value\"" || value=null
      members+="${members:+,}\"$name\":$value"
    done <<<"$lines"
    printf '%s,"standby":{%s}}\n' "${report%\}}" "$members"
    ;;
  *) echo "usage: natbake-standby status [no|yes]" >&2; return 2 ;;
  esac
}

function status_lines {
  local peer='' address='' since='' when='' result='' took='' from='' sync=no line
  read_role
  { read -r peer address since <"$PEER_FILE"; } 2>/dev/null || true
  { read -r when result took from <"$LAST_TAKEOVER"; } 2>/dev/null || true
  echo "role=$ROLE"
  echo "role_since=$ROLE_AT"
  echo "peer=${peer:-none}"
  echo "peer_address=$address"
  echo "takeovers=$(cat "$TAKEOVERS_FILE" 2>/dev/null || echo 0)"
  echo "last_takeover=$when"
  echo "last_takeover_result=$result"
  echo "last_takeover_seconds=$took"
  echo "last_takeover_from=${from#-}"
  if [ -e "$CONNTRACKD_CONF" ] && line=$(conntrackd_do -s 2>/dev/null); then
    sync=yes
    # conntrackd's own counters of the sync link and its caches.
    awk '
      /^cache internal:/ { c = "internal" } /^cache external:/ { c = "external" }
      c != "" && /current active connections:/ { print "sync_" c "=" $NF; c = "" }
      /Pckts sent/ { print "sync_sent=" $(NF - 3); print "sync_received=" $NF }' <<<"$line" 2>/dev/null | tr -d ' ' || true
  fi
  echo "sync=$sync"
}

function main {
  PATH="/usr/sbin:/sbin:/usr/bin:/bin"
  export PATH
  [ $# -ge 1 ] || die "usage: natbake-standby start | watch | discover | peer LOCAL PEER IFACE | active | standby | fault | stopped | check | holds | handover | health | status"
  local action=$1
  shift
  mkdir -p "$STATE"
  read_conf "$CONF_FILE"
  case $action in
  check) do_check; return ;;
  holds) holds_interface; return ;;
  status) do_status "$@"; return ;;
  esac
  [ "$action" != active ] || ELECTED_UP=$(uptime_now) ELECTED_CS=$(uptime_cs)
  [ "$action" != standby ] || uptime_cs >"$BACKUP_AT" 2>/dev/null || true
  exec 9>>"$LOCK_FILE"
  if [ "$action" = watch ] || [ "$action" = health ]; then
    # Another run (a takeover) is at work: its turn; the next comes soon.
    flock -w 2 9 || return 0
  else
    flock -w "$LOCK_WAIT" 9 || die "Another natbake-standby held the lock for ${LOCK_WAIT}s."
  fi
  case $action in
  start) do_start ;;
  watch) do_watch ;;
  discover) do_discover ;;
  peer)
    [ $# -eq 3 ] || die "usage: natbake-standby peer LOCAL PEER IFACE"
    do_peer "$@"
    ;;
  active) do_active ;;
  handover) do_handover ;;
  health) do_health ;;
  standby | fault | stopped) do_standby "$action" ;;
  *) die "unknown action '$action'" ;;
  esac
}

# Sourced (by a test), it only defines its functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
