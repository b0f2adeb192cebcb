#!/bin/bash
# natbake-aws.sh: the AWS side of natbake's scripts on the instance.
# Comments: natbake's instance/ folder, or `natbake templates dump DIR`.
#
# The same for every site. Installed as /usr/local/lib/natbake/natbake-aws.sh
# on sites with failover or metrics, and sourced (not run) by
# configure-pat.sh and natbake-health, after natbake-lib.sh (whose log it
# uses).
#
# Every call to instance metadata and the AWS APIs goes through one
# program, /usr/local/lib/natbake/natbake-aws (Python 3, standard library
# only): IMDSv2, the role's credentials, SigV4, retries, answers read with
# an XML parser.
# This file runs it with the seconds left before AWS_DEADLINE (a value of
# $SECONDS, which the caller sets) and reads its NAME=VALUE lines into
# variables; nothing it prints is evaluated.
#
# A function returns 0 for success, 1 for a definite refusal (AWS_ERROR
# holds the error code and AWS_MESSAGE the message), 2 when no answer came
# before AWS_DEADLINE.

AWS_PROGRAM=/usr/local/lib/natbake/natbake-aws
AWS_ENV_FILE=/etc/natbake/aws.env
AWS_DEADLINE=${AWS_DEADLINE:-$(( SECONDS + 30 ))}
AWS_ERROR='' AWS_MESSAGE=''
declare -gA AWS_OUT=()

# The program's output is data: NAME=VALUE lines, the value on one line of
# printable characters, checked by the program where a caller relies on its
# form. warning= lines go to the log as they are; error= and message= end
# a failure. A status past 2 (a crash, a usage error) is a refusal.
# Runs the program: aws_run COMMAND [ARGS]... (stdin passes through); its
# values into AWS_OUT, warnings to the log; returns its status (0, 1, 2).
function aws_run {
  local out line rc left=$(( AWS_DEADLINE - SECONDS ))
  AWS_ERROR='' AWS_MESSAGE='' AWS_OUT=()
  if [ "$left" -le 0 ]; then
    AWS_ERROR=natbake.NoAnswer AWS_MESSAGE="no time left for $1"
    return 2
  fi
  out=$("$AWS_PROGRAM" --deadline "$left" --env-file "$AWS_ENV_FILE" "$@")
  rc=$?
  while IFS= read -r line; do
    case $line in
      warning=*) log "WARNING: ${line#warning=}" ;;
      error=*) AWS_ERROR=${line#error=} ;;
      message=*) AWS_MESSAGE=${line#message=} ;;
      ?*=*) AWS_OUT[${line%%=*}]=${line#*=} ;;
    esac
  done <<<"$out"
  case $rc in
    0 | 1 | 2) return "$rc" ;;
    *) AWS_MESSAGE="$AWS_PROGRAM $1 failed (exit $rc)${AWS_MESSAGE:+: $AWS_MESSAGE}"
       AWS_ERROR=${AWS_ERROR:-natbake.Failed}
       return 1 ;;
  esac
}

# Checks /etc/natbake/aws.env (the program parses it, never sourced) and
# sets NATBAKE_FLOATING_CONFIG from it, unless the environment has it.
function aws_read_env_file {
  aws_run config || return 1
  NATBAKE_FLOATING_CONFIG=${AWS_OUT[NATBAKE_FLOATING_CONFIG]:-}
}

# One metadata value (PATH under /latest/) into AWS_BODY, one line each;
# aws_imds_lagging also waits out a 404 (a new interface's metadata).
function aws_imds {
  AWS_BODY=''
  aws_run imds "$@" || return
  AWS_BODY=${AWS_OUT[value]:-}
}
function aws_imds_lagging { aws_imds --lag "$1"; }

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
# reason in AWS_MESSAGE).
function floating_attached_here {
  floating_device "$2" || { AWS_MESSAGE="no device has the MAC address $2 of $1"; return 1; }
  aws_imds "meta-data/network/interfaces/macs/$2/interface-id" || {
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

# The caller learns how far it got: AWS_PUT_SENT counts the lines of stdin
# up to the last request that succeeded, so that it can keep the state of
# exactly the datums that went out.
# Publishes to CloudWatch namespace $1 the data on stdin, one datum a line:
# "NAME UNIT VALUE DIMENSION=VALUE...", at most $2 metrics per request.
# Returns like aws_run, at the first request that fails; AWS_PUT_SENT is
# the number of lines read up to the last request that succeeded.
# shellcheck disable=SC2034 # its caller reads AWS_PUT_SENT
function aws_put_metrics {
  local rc=0
  aws_run put-metrics "$1" "$2" || rc=$?
  AWS_PUT_SENT=${AWS_OUT[sent]:-0}
  [[ $AWS_PUT_SENT =~ ^[0-9]+$ ]] || AWS_PUT_SENT=0
  return "$rc"
}
