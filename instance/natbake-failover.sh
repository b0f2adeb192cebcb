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
  if floating_kept && floating_attached_here "$KEPT_ID" "$KEPT_MAC"; then
    id=$KEPT_ID mac=$KEPT_MAC addr=$KEPT_ADDR
    log "The floating interface $id is still attached to this instance ($FLOATING_DEV has its MAC, instance metadata lists it); going on without the EC2 API."
    [ "$FLOATING_CONFIG" != networkd ] || write_network_file "$mac"
  else
    aws_identity || die "Cannot read this instance's identity and role credentials from instance metadata: $AWS_MESSAGE."
    log "Taking over the floating interface of site $SITE in $AWS_AZ (instance $AWS_INSTANCE_ID; waiting at most ${ATTACH_TIMEOUT}s)..."
    while :; do
      # Each turn's calls may finish after the deadline; the turn then ends
      # the wait below, with what it found.
      # shellcheck disable=SC2034 # natbake-aws.sh reads it
      AWS_DEADLINE=$(( SECONDS + 10 > FLOATING_DEADLINE ? SECONDS + 10 : FLOATING_DEADLINE ))
      floating_describe "$SITE" || die "$AWS_MESSAGE"
      id=$FLOATING_ID mac=$FLOATING_MAC addr=$FLOATING_ADDR status=$FLOATING_STATUS
      holder=$FLOATING_HOLDER att_id=$FLOATING_ATTACHMENT att_status=$FLOATING_ATTACHED
      [ "$FLOATING_CONFIG" != networkd ] || write_network_file "$mac"
      pause=$(( RANDOM % 2 + 1 ))
      if [ "$holder" = "$AWS_INSTANCE_ID" ] && [ "$att_status" = attached ]; then
        break
      elif [ "$holder" = "$AWS_INSTANCE_ID" ]; then
        pause=0.5
      elif [ -z "$holder" ] && [ "$status" = available ]; then
        log "Attaching $id ($addr) as device 1..."
        pause=0.5
        if ! aws_query ec2 Action=AttachNetworkInterface "NetworkInterfaceId=$id" \
          "InstanceId=$AWS_INSTANCE_ID" DeviceIndex=1 NetworkCardIndex=0; then
          case $AWS_ERROR in
            # Taken or still held a moment: the next description says by whom.
            InvalidNetworkInterface.InUse | IncorrectState | natbake.NoAnswer) log "Attaching $id did not succeed ($AWS_ERROR); looking again." ;;
            *) die "Cannot attach $id: $AWS_ERROR: $AWS_MESSAGE" ;;
          esac
        fi
      elif [ -n "$holder" ] && [ "$holder" != "$AWS_INSTANCE_ID" ]; then
        state=''
        if aws_query ec2 Action=DescribeInstances "InstanceId.1=$holder"; then
          state=$(aws_xml_flat <<<"$AWS_BODY" | aws_xml_block instanceState | aws_xml_value name)
        fi
        case $state in
          stopping | stopped)
            # EC2 keeps an interface on a stopped instance for good.
            if [ -z "$detached" ] && [ -n "$att_id" ]; then
              log "$id is held by $holder, which is $state; detaching it from there."
              aws_query ec2 Action=DetachNetworkInterface "AttachmentId=$att_id" ||
                log "Detaching $id from $holder failed: $AWS_ERROR: $AWS_MESSAGE"
              detached=yes
            fi ;;
          *)
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
    if [ -n "$AWS_TOKEN" ] || aws_identity; then
      floating_describe "$SITE"
      FLOATING_API_RC=$?
    else
      FLOATING_API_RC=$?
      AWS_MESSAGE="cannot read this instance's identity and role credentials from instance metadata: $AWS_MESSAGE"
    fi
    FLOATING_API_MESSAGE=$AWS_MESSAGE
    floating_api_asked "$FLOATING_API_RC"
  fi
  return "$FLOATING_API_RC"
}

# Adds to PROBLEMS what configure-pat.sh repairs (the interface's address
# or default route gone); reports a lost interface at once (see
# floating_lost), and keeps in FLOATING_FAILURE what can only be reported.
function floating_problems {
  local here=0 id mac addr rc
  # shellcheck disable=SC2034 # natbake-aws.sh reads it
  AWS_DEADLINE=$(( SECONDS + 20 ))
  aws_read_env_file || { FLOATING_FAILURE=$AWS_MESSAGE; return 0; }
  if floating_kept; then
    id=$KEPT_ID mac=$KEPT_MAC addr=$KEPT_ADDR
    floating_attached_here "$id" "$mac"
    here=$?
  else
    here=4 AWS_MESSAGE="nothing is kept in $FLOATING_STATE"
  fi
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

