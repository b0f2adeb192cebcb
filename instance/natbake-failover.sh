#!/bin/bash
# natbake-failover.sh: the floating interface, at boot and in the health check.
# Comments: natbake's instance/ folder, or `natbake templates dump DIR`.
#
# Installed only on sites with failover (site.conf: failover=yes), and
# sourced (not run) by configure-pat.sh, which calls
# take_floating_interface before it loads the ruleset, and by
# natbake-health, which calls floating_problems; both after natbake-lib.sh
# and natbake-aws.sh. Running it alone does nothing.
#
# Variables shared with the scripts that source this file:
# shellcheck disable=SC2034

# The floating interface: created once outside the instance, tagged
# natbake:site=<site>, with the elastic IP and source/destination check
# off; the private route tables point at it. This instance attaches it as
# device 1 and routes its own default through it, so forwards, replies and
# egress all use the elastic IP. Only then are the rules loaded and
# forwarding switched on. Every wait ends at ATTACH_TIMEOUT; any failure
# goes through die, which also reports the instance unhealthy to its Auto
# Scaling group so that it is replaced.
# The floating interface through the EC2 API and the instance itself
# (natbake-aws.sh's client underneath).

# The site's floating interface ($1: the site) in this availability zone,
# from one DescribeNetworkInterfaces: FLOATING_ID, FLOATING_MAC,
# FLOATING_ADDR, FLOATING_STATUS (the interface's), FLOATING_HOLDER,
# FLOATING_ATTACHMENT and FLOATING_ATTACHED (the attachment's id and
# status); AWS_INSTANCE_ID and AWS_AZ too. Returns like aws_run, with the
# reason in AWS_MESSAGE; not exactly one interface, or one without a MAC
# or address, is a refusal.
# shellcheck disable=SC2034 # its callers read what it sets
function floating_describe {
  FLOATING_ID='' FLOATING_MAC='' FLOATING_ADDR='' FLOATING_STATUS=''
  FLOATING_HOLDER='' FLOATING_ATTACHMENT='' FLOATING_ATTACHED=''
  aws_run describe-floating "$1" || return
  AWS_INSTANCE_ID=${AWS_OUT[instance]:-} AWS_AZ=${AWS_OUT[zone]:-}
  FLOATING_ID=${AWS_OUT[id]:-} FLOATING_MAC=${AWS_OUT[mac]:-} FLOATING_ADDR=${AWS_OUT[address]:-}
  FLOATING_STATUS=${AWS_OUT[status]:-} FLOATING_HOLDER=${AWS_OUT[holder]:-}
  FLOATING_ATTACHMENT=${AWS_OUT[attachment]:-} FLOATING_ATTACHED=${AWS_OUT[attached]:-}
}

# The device whose MAC address is $1, if any, by its name now.
function device_of_mac {
  local f
  for f in /sys/class/net/*/address; do
    [ "$(cat "$f" 2>/dev/null)" = "$1" ] && { f=${f%/address}; echo "${f##*/}"; return 0; }
  done
  return 1
}

# udev renames a new network device (eth1 to ens6, enX1...) a moment after
# the kernel made it, and a kernel that allows renaming a device that is
# up can do it at any time: a name is good only until the next look. Where
# udev runs, it is let finish with the new device first; everywhere, the
# device is looked up by its MAC before each use, and sysfs is read twice
# a moment apart before a device is called missing (a rename moves its
# entry).
# Lets udev finish naming new devices, where it runs (at most 10 s).
function udev_settle {
  [ -S /run/udev/control ] && command -v udevadm >/dev/null 2>&1 || return 0
  udevadm settle --timeout=10 >/dev/null 2>&1 || log "WARNING: udev did not settle in 10 s; finding the floating device by its MAC anyway."
}

# The device with MAC $1 into FLOATING_DEV; fails only when two looks a
# moment apart find none.
# shellcheck disable=SC2034 # its callers read it
function floating_device {
  FLOATING_DEV=$(device_of_mac "$1") && return 0
  sleep 0.2
  FLOATING_DEV=$(device_of_mac "$1")
}

# Whether the default route now leaves through $1 from address $2.
function routes_through {
  local how
  how=$(ip -4 -o route get 198.51.100.1 2>/dev/null) || return 1
  [[ " $how " == *" dev $1 "* && " $how " == *" src $2 "* ]]
}

# What the boot step found, kept for later runs of the same boot (the
# health check, a repair): the interface's id, MAC and address. With it, a
# run tells from the instance itself whether the interface is still
# attached here, without the EC2 API: a device has its MAC, and instance
# metadata lists the interface id under that MAC (EC2 removes both when
# the interface is detached). /run is emptied at boot, so a boot always
# asks the API.
# The floating interface as the last takeover of this boot found it.
FLOATING_STATE=$STATE_DIR/floating

# Keeps id $1, MAC $2 and address $3 in FLOATING_STATE; a failure to write
# only costs later runs an API call.
function floating_keep {
  { mkdir -p "${FLOATING_STATE%/*}" && printf '%s %s %s\n' "$1" "$2" "$3" >"$FLOATING_STATE.new" &&
    mv -f "$FLOATING_STATE.new" "$FLOATING_STATE"; } 2>/dev/null ||
    log "WARNING: cannot keep the floating interface in $FLOATING_STATE; later checks ask the EC2 API instead."
}

# Reads FLOATING_STATE into KEPT_ID, KEPT_MAC and KEPT_ADDR; fails when
# there is none (or it is not one).
function floating_kept {
  KEPT_ID='' KEPT_MAC='' KEPT_ADDR=''
  { read -r KEPT_ID KEPT_MAC KEPT_ADDR <"$FLOATING_STATE"; } 2>/dev/null
  [[ $KEPT_ID =~ ^eni-[0-9a-f]{8,17}$ && $KEPT_MAC =~ ^[0-9a-f]{2}(:[0-9a-f]{2}){5}$ && $KEPT_ADDR =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]
}

# EC2 throttles each API per account and Region, so the health check,
# which runs every few seconds on hundreds of sites, looks from the
# instance itself (floating_attached_here) and asks the API only when that
# look fails, and otherwise every 4 to 6 minutes (jittered, so that sites
# do not call together), counted in seconds since boot so that a clock
# step changes nothing. A takeover that just asked counts as an ask.
# When the EC2 API is next to be asked about the floating interface
# (seconds since boot), and how long until then after an answer, or after
# none.
FLOATING_API_DUE=$STATE_DIR/floating-api
FLOATING_API_EVERY=240 FLOATING_API_JITTER=120 FLOATING_API_RETRY=60

# Seconds since boot (the kernel's monotonic clock, unmoved by clock steps).
function uptime_seconds {
  local up=''
  { read -r up _ </proc/uptime; } 2>/dev/null
  echo "${up%%.*}"
}

# Sets when the API is next due, after an ask that returned $1.
function floating_api_asked {
  local up next
  up=$(uptime_seconds)
  [[ $up =~ ^[0-9]+$ ]] || return 0
  if [ "$1" -eq 0 ]; then
    next=$(( up + FLOATING_API_EVERY + RANDOM % FLOATING_API_JITTER ))
  else
    next=$(( up + FLOATING_API_RETRY + RANDOM % (FLOATING_API_RETRY / 2) ))
  fi
  { mkdir -p "${FLOATING_API_DUE%/*}" && echo "$next" >"$FLOATING_API_DUE"; } 2>/dev/null
  return 0
}

# Whether the API is due to be asked (see FLOATING_API_DUE).
function floating_api_due {
  local due='' up
  { read -r due <"$FLOATING_API_DUE"; } 2>/dev/null
  up=$(uptime_seconds)
  [[ $due =~ ^[0-9]+$ && $up =~ ^[0-9]+$ ]] || return 0
  [ "$up" -ge "$due" ]
}

# Whether interface $1 (MAC $2) is attached to this instance as far as
# the instance can see: a device has the MAC (into FLOATING_DEV) and
# instance metadata lists the interface under it. Returns 1 when no device
# has the MAC, 3 when metadata says otherwise or does not answer (the
# reason in AWS_MESSAGE). Further arguments go to the client's imds.
function floating_attached_here {
  floating_device "$2" || { AWS_MESSAGE="no device has the MAC address $2 of $1"; return 1; }
  aws_imds "${@:3}" "meta-data/network/interfaces/macs/$2/interface-id" || {
    AWS_MESSAGE="instance metadata does not list $1 under $2 (${AWS_MESSAGE:-no answer})"
    return 3
  }
  [ "$AWS_BODY" = "$1" ] || { AWS_MESSAGE="instance metadata lists ${AWS_BODY:-nothing}, not $1, under $2"; return 3; }
}

# Asks the Auto Scaling group, if the instance is in one, to replace this
# instance (after a failed boot, or a floating interface lost for good):
# the group's tag on the instance names it.
function failover_unhealthy {
  AWS_DEADLINE=$(( SECONDS + 20 ))
  if aws_run report-unhealthy; then
    if [ -n "${AWS_OUT[group]:-}" ]; then
      log "Reported this instance Unhealthy to its Auto Scaling group ${AWS_OUT[group]:-}, which replaces it."
    else
      log "This instance is not in an Auto Scaling group; nothing to report unhealthy to."
    fi
  elif [ -n "${AWS_OUT[group]:-}" ]; then
    log "$AWS_MESSAGE"
  else
    log "Cannot tell the Auto Scaling group: $AWS_MESSAGE"
  fi
  return 0
}

# Step 1b: take over the floating interface (tag natbake:site=$SITE, this
# instance's availability zone) as device 1 and route through it.
# systemd-networkd's configuration of the floating interface, matched by
# its MAC: the first .network file in lexical order that matches a link
# wins, so 05- comes before Amazon Linux's 70-<if>.network (ec2-net-utils)
# and netplan's 10-netplan-<if>.network. Under /run: written at every boot.
NETWORK_FILE=/run/systemd/network/05-natbake-floating.network
# Seconds the device, its metadata and its configuration get once the
# interface is attached here, however late (a test checks it against
# natbake's own figure, which the unit's start timeout counts).
POST_ATTACH=60
# Quick looks after a detach (see take_floating_interface).
QUICK_LOOKS=20
function write_network_file {
  local text
  text=$(printf '%s\n' "# natbake: the floating interface of site $SITE" \
    '[Match]' "MACAddress=$1" '' '[Network]' 'DHCP=ipv4' 'IPv6AcceptRA=no' 'LinkLocalAddressing=no' '' \
    '[DHCPv4]' 'RouteMetric=10' 'UseDNS=no' 'UseHostname=no' 'UseDomains=no')
  [ "$(cat "$NETWORK_FILE" 2>/dev/null)" != "$text" ] || return 0
  if ! mkdir -p "${NETWORK_FILE%/*}" || ! printf '%s\n' "$text" >"$NETWORK_FILE"; then
    die "Cannot write $NETWORK_FILE."
  fi
  networkctl reload || die "networkctl reload failed after writing $NETWORK_FILE."
}

# Configures the device with MAC $2 as the interface $1 with address $3:
# an address, a default route with metric 10 (under the primary
# interface's: 512 on Amazon Linux 2023, 100 where cloud-init writes
# netplan), loose reverse-path filtering. Through systemd-networkd where it
# manages the links (a .network file matching the MAC, so the route
# survives DHCP renewals and networkd reloads), else with ip from the
# interface's subnet. The device is looked up by MAC before each step, and
# a step that fails because udev renamed the device is done again under
# its new name. Sets FLOATING_DEV to the device's name at the end.
function configure_floating {
  local id=$1 mac=$2 addr=$3 cidr prefix gw net dev errors
  if [ "$FLOATING_CONFIG" = ip ]; then
    # EC2 publishes the metadata of a new attachment a while after the
    # device appears (amazon-ec2-net-utils waits up to a minute for it):
    # a 404 is tried again until the deadline.
    # shellcheck disable=SC2034 # natbake-aws.sh reads it
    AWS_DEADLINE=$FLOATING_DEADLINE
    aws_imds_lagging "meta-data/network/interfaces/macs/$mac/subnet-ipv4-cidr-block" ||
      die "Instance metadata gave no subnet for the floating interface $id ($mac) in time: ${AWS_MESSAGE:-no answer}."
    cidr=$AWS_BODY
    is_cidr "$cidr" || die "Instance metadata gave a malformed subnet for the floating interface $id."
    prefix=${cidr#*/}
    net=$(ip_to_int "${cidr%/*}")
    gw=$(( net + 1 ))
    gw="$(( gw >> 24 & 255 )).$(( gw >> 16 & 255 )).$(( gw >> 8 & 255 )).$(( gw & 255 ))"
  fi
  while :; do
    floating_device "$mac" || die "$id is attached to this instance, but no device has its MAC address $mac any more."
    dev=$FLOATING_DEV
    if [ "$FLOATING_CONFIG" = networkd ]; then
      errors=$(sysctl -q -w "net.ipv4.conf.$dev.rp_filter=2" 2>&1) && break
    elif errors=$(sysctl -q -w "net.ipv4.conf.$dev.rp_filter=2" 2>&1 && ip link set dev "$dev" up 2>&1 &&
      ip -4 addr replace "$addr/$prefix" dev "$dev" 2>&1 &&
      ip -4 route replace default via "$gw" dev "$dev" src "$addr" metric 10 2>&1); then
      break
    fi
    if ! floating_device "$mac" || [ "$FLOATING_DEV" = "$dev" ] || [ "$SECONDS" -ge "$FLOATING_DEADLINE" ]; then
      die "Cannot configure $dev ($id) with $addr${prefix:+/$prefix}${gw:+ and a default route via $gw}: ${errors//$'\n'/ }"
    fi
    log "The floating device $dev was renamed $FLOATING_DEV while being configured; configuring it under its new name."
  done
  if [ "$FLOATING_CONFIG" = networkd ]; then
    networkctl reconfigure "$dev" >/dev/null 2>&1 ||
      log "WARNING: networkctl reconfigure $dev failed; waiting for systemd-networkd anyway."
    while ! { floating_device "$mac" && routes_through "$FLOATING_DEV" "$addr"; }; do
      [ "$SECONDS" -lt "$FLOATING_DEADLINE" ] || die "systemd-networkd did not configure ${FLOATING_DEV:-$dev} ($id, $addr) with the default route in time; see networkctl status ${FLOATING_DEV:-$dev}."
      sleep 0.5
    done
  fi
  { floating_device "$mac" && routes_through "$FLOATING_DEV" "$addr"; } ||
    die "The default route does not leave through ${FLOATING_DEV:-the device of $mac} ($id) from $addr: $(ip -4 -o route show default | tr '\n' ';')"
}

# A later run of the same boot (a repair by the health check, a manual
# restart) whose kept interface is still attached here, as the instance
# itself sees it, goes straight on without the EC2 API: a repair of local
# drift must never wait on an API that is slow or down. Otherwise (a boot,
# /run emptied, the device gone) the API decides, as below.
function take_floating_interface {
  local id mac addr status holder att_id att_status state pause waited='' detached=''
  # A standby pair's interface is taken by natbake-standby when keepalived
  # elects this instance (it sets FLOATING_TAKEOVER), not at boot.
  if [ "$STANDBY" = yes ] && [ -z "${FLOATING_TAKEOVER:-}" ]; then
    log "A standby pair: the floating interface, and forwarding, wait for natbake-standby."
    return 0
  fi
  FLOATING_DEADLINE=$(( SECONDS + ATTACH_TIMEOUT ))
  AWS_DEADLINE=$FLOATING_DEADLINE
  aws_read_env_file || die "$AWS_MESSAGE"
  FLOATING_CONFIG=${NATBAKE_FLOATING_CONFIG:-auto}
  if [ "$FLOATING_CONFIG" = auto ]; then
    FLOATING_CONFIG=ip
    if command -v networkctl >/dev/null 2>&1 && systemctl is-active --quiet systemd-networkd.service 2>/dev/null; then
      FLOATING_CONFIG=networkd
    fi
  fi
  case $FLOATING_CONFIG in ip | networkd) ;; *) die "NATBAKE_FLOATING_CONFIG is $FLOATING_CONFIG; use ip, networkd or auto." ;; esac
  # FLOATING_FRESH: natbake-standby has just described the interface (not
  # attached here); the first turn goes on from that answer.
  if [ -z "${FLOATING_FRESH:-}" ] && floating_kept && floating_attached_here "$KEPT_ID" "$KEPT_MAC"; then
    id=$KEPT_ID mac=$KEPT_MAC addr=$KEPT_ADDR
    log "The floating interface $id is still attached to this instance ($FLOATING_DEV has its MAC, instance metadata lists it); going on without the EC2 API."
    [ "$FLOATING_CONFIG" != networkd ] || write_network_file "$mac"
  else
    local first=yes quick=0 releasing=''
    while :; do
      # Each turn's calls may finish after the deadline; the turn then ends
      # the wait below, with what it found.
      # shellcheck disable=SC2034 # natbake-aws.sh reads it
      AWS_DEADLINE=$(( SECONDS + 10 > FLOATING_DEADLINE ? SECONDS + 10 : FLOATING_DEADLINE ))
      if [ -n "${FLOATING_FRESH:-}" ]; then
        FLOATING_FRESH=''
      else
        floating_describe "$SITE" || die "$AWS_MESSAGE"
      fi
      # The first answer also says who and where this instance is.
      if [ -n "$first" ]; then
        log "Taking over the floating interface of site $SITE in $AWS_AZ (instance $AWS_INSTANCE_ID; waiting at most ${ATTACH_TIMEOUT}s)..."
        first=''
      fi
      id=$FLOATING_ID mac=$FLOATING_MAC addr=$FLOATING_ADDR status=$FLOATING_STATUS
      holder=$FLOATING_HOLDER att_id=$FLOATING_ATTACHMENT att_status=$FLOATING_ATTACHED
      [ "$FLOATING_CONFIG" != networkd ] || write_network_file "$mac"
      # Looks every 1 to 2 s (jittered); after a detach, the first
      # QUICK_LOOKS every 0.3 to 0.5 s, so that the attach follows the
      # release closely (at most 3 DescribeNetworkInterfaces a second,
      # for a few seconds, once per takeover: far inside EC2's request
      # rate for describes, which is per account and Region).
      pause=$(( RANDOM % 2 + 1 ))
      if [ "$quick" -gt 0 ]; then
        pause=0.$(( RANDOM % 3 + 3 )) quick=$(( quick - 1 ))
      fi
      if [ "$holder" = "$AWS_INSTANCE_ID" ] && [ "$att_status" = attached ]; then
        break
      elif [ "$holder" = "$AWS_INSTANCE_ID" ]; then
        pause=0.5
      elif [ -z "$holder" ] && [ "$status" = available ]; then
        log "Attaching $id ($addr) as device 1..."
        pause=0.5
        if aws_run attach "$id"; then
          # Accepted: the device's arrival below is the proof (the
          # attachment reaches the instance as EC2 reports it attached).
          break
        fi
        case $AWS_ERROR in
          # Taken or still held a moment: the next description says by whom.
          InvalidNetworkInterface.InUse | IncorrectState | natbake.NoAnswer) log "Attaching $id did not succeed ($AWS_ERROR); looking again." ;;
          *) die "Cannot attach $id: $AWS_ERROR: $AWS_MESSAGE" ;;
        esac
      elif [ -n "$holder" ] && [ "$holder" != "$AWS_INSTANCE_ID" ]; then
        state=''
        # The holder natbake-standby may force is not asked about: its
        # keepalived fell silent, and a hung instance stays running.
        if [ "$holder" = "${FLOATING_FORCE:-}" ]; then
          state=silent
        elif aws_run instance-state "$holder"; then
          state=${AWS_OUT[state]:-}
        fi
        case $state in
          stopping | stopped)
            # EC2 keeps an interface on a stopped instance for good.
            if [ -z "$detached" ] && [ -n "$att_id" ]; then
              log "$id is held by $holder, which is $state; detaching it from there."
              aws_run detach "$att_id" ||
                log "Detaching $id from $holder failed: $AWS_ERROR: $AWS_MESSAGE"
              detached=yes quick=$QUICK_LOOKS pause=0.3
            fi ;;
          *)
            # A standby's takeover (natbake-standby) may name the one
            # running holder it detaches by force: a hung instance stays
            # `running`.
            # An attachment already detaching (a holder that hands over
            # lets it go itself) is waited for, 10 s at most (a hung
            # instance can keep one detaching): a forced detach is EC2's
            # last resort, after which the old instance may need a stop
            # and start before it can take an interface as device 1 again.
            if [ "$att_status" = detaching ] && [ -z "$releasing" ]; then
              releasing=$SECONDS quick=$QUICK_LOOKS
            fi
            if [ "$holder" = "${FLOATING_FORCE:-}" ] && [ -z "$detached" ] && [ -n "$att_id" ] &&
              { [ "$att_status" != detaching ] || [ $(( SECONDS - releasing )) -ge 10 ]; }; then
              log "$id is held by $holder, which no longer serves; detaching it by force."
              # One that failed is tried again at the next turn.
              if aws_run detach "$att_id" --force; then
                detached=yes quick=$QUICK_LOOKS pause=0.3
              else
                log "Detaching $id from $holder by force failed: $AWS_ERROR: $AWS_MESSAGE"
              fi
            fi
            [ "$waited" = "$holder:$state:$att_status" ] ||
              log "$id is held by $holder (instance ${state:-state unknown}, attachment ${att_status:-unknown}); waiting for it to be released."
            waited="$holder:$state:$att_status" ;;
        esac
      fi
      [ "$SECONDS" -lt "$FLOATING_DEADLINE" ] ||
        die "The floating interface $id is still held by ${holder:-nobody} (attachment ${att_status:-none}, interface $status) after ${ATTACH_TIMEOUT}s; giving up so that a healthy replacement can take it."
      sleep "$pause"
    done
    floating_api_asked 0
  fi
  # The device appears once the attachment has reached this instance, and
  # its metadata a while later: a late attachment still gets POST_ATTACH
  # seconds for both and the configuration.
  [ "$FLOATING_DEADLINE" -ge "$(( SECONDS + POST_ATTACH ))" ] || FLOATING_DEADLINE=$(( SECONDS + POST_ATTACH ))
  while ! FLOATING_DEV=$(device_of_mac "$mac"); do
    [ "$SECONDS" -lt "$FLOATING_DEADLINE" ] ||
      die "$id is attached to this instance, but no device has its MAC address $mac."
    sleep 0.2
  done
  udev_settle
  configure_floating "$id" "$mac" "$addr"
  floating_keep "$id" "$mac" "$addr"
  log "The floating interface $id is $FLOATING_DEV ($addr); the default route and NAT use it."
}


# The health check's side.

# A floating interface that is not this instance's any more cannot be
# taken back here: a replacement may be taking it over. The check fails
# and the Auto Scaling group is asked to replace this instance.
function floating_lost {
  log "The floating interface is lost: $1; asking the Auto Scaling group to replace this instance."
  failover_unhealthy
  unhealthy "$1"
}

# EC2 throttles each API per account and Region, so a check every few
# seconds on hundreds of sites must not call DescribeNetworkInterfaces
# each time. Most checks look from the instance itself: the device with
# the interface's MAC exists, and instance metadata lists the interface
# id under that MAC (both go when EC2 detaches it). The API is asked when
# that look fails or finds nothing kept, and otherwise every 4 to 6
# minutes (jittered, so that sites do not call together), counted in
# seconds since boot so that a clock step changes nothing. An API that
# does not answer is a warning: the instance's own look stands, and the
# local repairs never wait on it. Only an answer that the interface is
# elsewhere, or no device with its MAC, makes it lost.
# This run's answer from the API (asked at most once a run): its return
# and, on a refusal, the reason.
FLOATING_API_RC='' FLOATING_API_MESSAGE=''
# An unrepairable finding about the floating interface that does not make
# it lost (the API refuses to say); reported once the local repairs ran.
FLOATING_FAILURE=''

# Asks the EC2 API about the site's floating interface, once a run, and
# sets when it is next due; returns like floating_describe.
function floating_ask_api {
  if [ -z "$FLOATING_API_RC" ]; then
    floating_describe "$SITE"
    FLOATING_API_RC=$?
    FLOATING_API_MESSAGE=$AWS_MESSAGE
    floating_api_asked "$FLOATING_API_RC"
  fi
  return "$FLOATING_API_RC"
}

# Adds to PROBLEMS what configure-pat.sh repairs (the interface's address
# or default route gone); reports a lost interface at once (see
# floating_lost), and keeps in FLOATING_FAILURE what can only be reported.
# The health check looks when it reads the nf_tables generation, before
# its ruleset read: a Python start costs more CPU than the rest of the
# look, so one run of the AWS client answers both (with "generation").
# The look from the instance itself (floating_attached_here on what
# floating_kept finds) into FLOATING_HERE (what that returned; 4: nothing
# kept) and FLOATING_HERE_MESSAGE; with "generation", also GENERATION as
# ruleset_generation would give it.
# shellcheck disable=SC2120 # natbake-health passes "generation"
function floating_look {
  local gen=()
  [ "${1:-}" != generation ] || case $(iptables -V 2>/dev/null) in *nf_tables*) gen=(--generation) ;; esac
  # shellcheck disable=SC2034 # natbake-aws.sh reads it
  AWS_DEADLINE=$(( SECONDS + 20 ))
  AWS_OUT=()
  # A malformed /etc/natbake/aws.env is refused by every call of the AWS
  # client: the look and the API's then fail with its line number.
  if floating_kept; then
    floating_attached_here "$KEPT_ID" "$KEPT_MAC" "${gen[@]}"
    FLOATING_HERE=$?
  else
    FLOATING_HERE=4 AWS_MESSAGE="nothing is kept in $FLOATING_STATE"
  fi
  FLOATING_HERE_MESSAGE=$AWS_MESSAGE
  [ -n "${1:-}" ] || return 0
  GENERATION=${AWS_OUT[generation]-}
  [ "${#gen[@]}" -eq 0 ] || [ -n "${AWS_OUT[generation]+set}" ] || GENERATION=$(ruleset_generation)
}

function floating_problems {
  local here id='' mac='' addr='' rc
  [ "$STANDBY" != yes ] || { FLOATING_HERE=''; standby_problems; return 0; }
  [ -n "${FLOATING_HERE:-}" ] || floating_look
  here=$FLOATING_HERE AWS_MESSAGE=$FLOATING_HERE_MESSAGE FLOATING_HERE=''
  [ "$here" -eq 4 ] || id=$KEPT_ID mac=$KEPT_MAC addr=$KEPT_ADDR
  # shellcheck disable=SC2034 # natbake-aws.sh reads it
  AWS_DEADLINE=$(( SECONDS + 20 ))
  if [ "$here" -ne 0 ] || floating_api_due; then
    [ "$here" -eq 0 ] || log "The floating interface needs the EC2 API: $AWS_MESSAGE."
    floating_ask_api
    rc=$?
    case $rc in
      0)
        if [ -z "$FLOATING_HOLDER" ]; then
          floating_lost "$FLOATING_ID is not attached to any instance (it is $FLOATING_STATUS)"
        elif [ "$FLOATING_HOLDER" != "$AWS_INSTANCE_ID" ] || [ "$FLOATING_ATTACHED" != attached ]; then
          floating_lost "$FLOATING_ID is attached to $FLOATING_HOLDER (${FLOATING_ATTACHED:-state unknown}), this instance is $AWS_INSTANCE_ID"
        fi
        id=$FLOATING_ID mac=$FLOATING_MAC addr=$FLOATING_ADDR
        floating_device "$mac" ||
          floating_lost "$id is attached to this instance, but no device has its MAC address $mac"
        [ "$here" -ne 3 ] || log "WARNING: EC2 says $id is attached here, but $AWS_MESSAGE."
        [ "$here" -eq 0 ] || floating_keep "$id" "$mac" "$addr"
        ;;
      *)
        if [ "$rc" -eq 2 ]; then
          log "WARNING: the EC2 API did not answer about the floating interface ($FLOATING_API_MESSAGE); asking again in about ${FLOATING_API_RETRY}s."
        else
          FLOATING_FAILURE="cannot tell whether the floating interface is attached: $FLOATING_API_MESSAGE"
        fi
        case $here in
          0) ;;
          1) floating_lost "no device has the MAC address $mac of $id, and the EC2 API cannot say more (${FLOATING_API_MESSAGE})" ;;
          3) log "WARNING: going by the device $FLOATING_DEV, which has the MAC of $id, though $AWS_MESSAGE." ;;
          *) log "WARNING: the floating interface is not checked this time: nothing is kept in $FLOATING_STATE and the EC2 API cannot say."
             return 0 ;;
        esac
        ;;
    esac
  fi
  routes_through "$FLOATING_DEV" "$addr" ||
    PROBLEMS+=("the default route does not leave through the floating interface $id ($FLOATING_DEV, $addr)")
}


# A standby pair's part of the health check: the role, not this check,
# decides forwarding and the interface, so forwarding found off is no
# drift; natbake-standby repairs keepalived and conntrackd and keeps
# forwarding to the role, and says what it cannot repair.
STANDBY_SCRIPT=/usr/local/sbin/natbake-standby
function standby_problems {
  local p kept=() out
  for p in ${PROBLEMS[@]+"${PROBLEMS[@]}"}; do
    [ "$p" = "IP forwarding is off" ] || kept+=("$p")
  done
  PROBLEMS=(${kept[@]+"${kept[@]}"})
  if ! out=$("$STANDBY_SCRIPT" health); then
    FLOATING_FAILURE="standby: ${out:-natbake-standby health failed}"
    FLOATING_FAILURE=${FLOATING_FAILURE//$'\n'/; }
  fi
}
