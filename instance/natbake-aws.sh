#!/bin/bash
# natbake-aws.sh: AWS helpers for natbake's scripts on the instance.
# Comments: natbake's instance/ folder, or `natbake templates dump DIR`.
#
# The same for every site. Installed as /usr/local/lib/natbake/natbake-aws.sh
# on sites with failover or metrics, and sourced (not run) by
# configure-pat.sh and natbake-health, after natbake-lib.sh (whose log it
# uses).
#
# Needs only bash, curl >= 7.75 (for --aws-sigv4), sed, tr and grep: the AWS
# CLI is not on every image. Every call is bounded: one request takes at most
# 10 seconds, and a call retries transient failures (no answer, 5xx,
# throttling) only until AWS_DEADLINE (a value of $SECONDS), which the
# caller sets.
#
# Instance metadata is read through IMDSv2 only (a token first). Credentials
# of the instance's role come from metadata and never appear on a command
# line: curl reads them from its standard input as a config.
#
# Endpoints are https://<service>.<region>.<domain>/, the domain being the
# partition's (metadata `services/domain`: amazonaws.com, amazonaws.com.cn).
# NATBAKE_EC2_ENDPOINT, NATBAKE_AUTOSCALING_ENDPOINT and
# NATBAKE_CLOUDWATCH_ENDPOINT override them (for
# VPC endpoints without private DNS); they are taken from the environment,
# else from /etc/natbake/aws.env (NAME=VALUE lines, parsed, never sourced;
# a name natbake does not know or a malformed line is refused).
# The signing scope stays <region>/<service> whatever the endpoint's name.
#
# A function's result is in AWS_BODY; its return is 0 for success, 1 for a
# definite refusal (AWS_ERROR holds the error code and AWS_MESSAGE the
# message), 2 when no answer came before AWS_DEADLINE.

AWS_IMDS=http://169.254.169.254
AWS_ENV_FILE=/etc/natbake/aws.env
AWS_DEADLINE=${AWS_DEADLINE:-$(( SECONDS + 30 ))}
AWS_BODY='' AWS_STATUS='' AWS_ERROR='' AWS_MESSAGE=''
AWS_IMDS_TOKEN='' AWS_INSTANCE_ID='' AWS_REGION='' AWS_AZ='' AWS_DOMAIN=''
AWS_KEY='' AWS_SECRET='' AWS_TOKEN=''
# A brand-new instance profile is not usable at once: for a while the
# first calls of a new instance can find no role in metadata, credentials
# that are not ready, or AuthFailure/UnauthorizedOperation from the API
# (IAM is eventually consistent). Such refusals are tried again, loudly,
# for at most AWS_AUTH_PATIENCE seconds after the first one (and never past
# AWS_DEADLINE); a policy that is really wrong still fails soon.
# Seconds after the first refusal of credentials or permission during which
# calls keep trying (a new role takes a moment); when that first refusal was.
AWS_AUTH_PATIENCE=60
AWS_AUTH_SINCE=''

# The seconds left before AWS_DEADLINE, at most $2, into the variable $1;
# fails when none are left. One reading serves both the check and curl's
# --max-time, for which 0 would mean no limit at all.
function aws_left {
  local aws_seconds=$(( AWS_DEADLINE - SECONDS ))
  [ "$aws_seconds" -le "$2" ] || aws_seconds=$2
  printf -v "$1" '%s' "$aws_seconds"
  [ "$aws_seconds" -gt 0 ]
}

# Whether a refusal of credentials or permission ($1, for the log) may be
# tried again: only within AWS_AUTH_PATIENCE seconds of the first one.
function aws_auth_retry {
  if [ -z "$AWS_AUTH_SINCE" ]; then
    AWS_AUTH_SINCE=$SECONDS
    log "WARNING: $1; a new instance's role can take a moment to be usable, trying again for up to ${AWS_AUTH_PATIENCE}s."
  fi
  [ $(( SECONDS - AWS_AUTH_SINCE )) -lt "$AWS_AUTH_PATIENCE" ]
}

# The file is data, never shell: it is parsed here, never sourced. What
# people (and tools) write in such files is accepted: blank lines,
# comments, leading and trailing blanks, an `export ` prefix, a value in
# matching single or double quotes, a last line without a newline. What
# is not understood is refused with the line number, never skipped: a
# misspelt name would otherwise quietly send the calls elsewhere.
# Endpoint overrides from /etc/natbake/aws.env (NAME=VALUE lines), unless
# set in the environment. The file is parsed, never sourced; a line that
# is not a known name with a URL or word is refused (AWS_MESSAGE).
function aws_read_env_file {
  local line name value n=0
  [ -e "$AWS_ENV_FILE" ] || return 0
  [ -r "$AWS_ENV_FILE" ] || { AWS_MESSAGE="$AWS_ENV_FILE cannot be read"; return 1; }
  while IFS= read -r line || [ -n "$line" ]; do
    n=$(( n + 1 ))
    line=${line%$'\r'}
    [[ $line =~ ^[[:blank:]]*(#.*)?$ ]] && continue
    if ! [[ $line =~ ^[[:blank:]]*(export[[:blank:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
      AWS_MESSAGE="$AWS_ENV_FILE line $n is not NAME=VALUE"
      return 1
    fi
    name=${BASH_REMATCH[2]} value=${BASH_REMATCH[3]}
    [[ $value =~ ^(.*[^[:blank:]])?[[:blank:]]*$ ]] && value=${BASH_REMATCH[1]}
    if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
    case $name in
      NATBAKE_EC2_ENDPOINT | NATBAKE_AUTOSCALING_ENDPOINT | NATBAKE_CLOUDWATCH_ENDPOINT | NATBAKE_FLOATING_CONFIG) ;;
      *) AWS_MESSAGE="$AWS_ENV_FILE line $n sets $name, which natbake does not know (it knows NATBAKE_EC2_ENDPOINT, NATBAKE_AUTOSCALING_ENDPOINT, NATBAKE_CLOUDWATCH_ENDPOINT and NATBAKE_FLOATING_CONFIG)"; return 1 ;;
    esac
    [[ $value =~ ^[A-Za-z0-9:/._-]+$ ]] || { AWS_MESSAGE="$AWS_ENV_FILE line $n: the value of $name is not a URL or word"; return 1; }
    [ -n "${!name:-}" ] || printf -v "$name" '%s' "$value"
  done <"$AWS_ENV_FILE"
}

# A curl that fails (connection reset, or slower than --max-time) may
# still have printed the status line it got: 200 with half a body. Only a
# curl that succeeded gave a whole answer; anything else is no answer.
# One metadata GET (path under /latest/), retried while transient (no
# whole answer, 5xx, 429). Metadata of a newly attached interface appears
# a while after its device: aws_imds_lagging also retries a 404.
function aws_imds {
  local out code rc left
  AWS_BODY='' AWS_STATUS=000
  while :; do
    aws_left left 2 || return 2
    out=$(curl --silent --noproxy '*' --connect-timeout 1 --max-time "$left" \
      -H "X-aws-ec2-metadata-token: $AWS_IMDS_TOKEN" \
      --write-out '\n%{http_code}' "$AWS_IMDS/latest/$1" 2>/dev/null)
    rc=$? code=${out##*$'\n'}
    [ "$rc" -eq 0 ] || code=000
    case $code in
      200) AWS_STATUS=200 AWS_BODY=${out%$'\n'*}; return 0 ;;
      5[0-9][0-9] | 429 | 000 | '') AWS_STATUS=${code:-000} ;;
      404) AWS_STATUS=404
        [ -n "${AWS_IMDS_LAG:-}" ] || { AWS_MESSAGE="instance metadata answered 404 for $1"; return 1; } ;;
      *) AWS_STATUS=$code AWS_MESSAGE="instance metadata answered $code for $1"; return 1 ;;
    esac
    sleep 0.2
  done
}
function aws_imds_lagging {
  local AWS_IMDS_LAG=yes
  aws_imds "$1"
}

# An IMDSv2 token, unless this process has one.
function aws_imds_token {
  local out code rc left
  [ -z "$AWS_IMDS_TOKEN" ] || return 0
  while :; do
    aws_left left 2 || { AWS_MESSAGE="instance metadata gave no IMDSv2 token"; return 2; }
    out=$(curl --silent --noproxy '*' --connect-timeout 1 --max-time "$left" -X PUT \
      -H "X-aws-ec2-metadata-token-ttl-seconds: 21600" \
      --write-out '\n%{http_code}' "$AWS_IMDS/latest/api/token" 2>/dev/null)
    rc=$? code=${out##*$'\n'}
    [ "$rc" -eq 0 ] || code=000
    [ "$code" != 200 ] || { AWS_IMDS_TOKEN=${out%$'\n'*}; break; }
    case $code in
      5[0-9][0-9] | 429 | 000 | '') sleep 0.2 ;;
      *) AWS_MESSAGE="instance metadata refused a token (HTTP status $code)"; return 1 ;;
    esac
  done
  [ -n "$AWS_IMDS_TOKEN" ] || { AWS_MESSAGE="instance metadata gave an empty token"; return 1; }
}

# This instance's id, region, availability zone, partition domain and role
# credentials, through IMDSv2.
function aws_identity {
  aws_imds_token || return
  aws_imds meta-data/instance-id || return
  AWS_INSTANCE_ID=$AWS_BODY
  aws_imds meta-data/placement/region || return
  AWS_REGION=$AWS_BODY
  aws_imds meta-data/placement/availability-zone || return
  AWS_AZ=$AWS_BODY
  aws_imds meta-data/services/domain || return
  AWS_DOMAIN=$AWS_BODY
  [[ $AWS_INSTANCE_ID =~ ^i-[0-9a-f]{8,17}$ ]] || { AWS_MESSAGE="instance metadata gave a malformed instance id"; return 1; }
  # Regions as natbake's spec takes them (eusc-de-east-1 included); zones
  # of the region: us-east-1a, a Local Zone's us-west-2-lax-1a, a
  # Wavelength Zone's us-east-1-wl1-bos-wlz-1.
  [[ $AWS_REGION =~ ^([a-z]{2}|eusc)(-[a-z]+)+-[0-9]{1,2}$ ]] || { AWS_MESSAGE="instance metadata gave a malformed region"; return 1; }
  [[ $AWS_AZ =~ ^${AWS_REGION}([a-z]|(-[a-z0-9]+)+)$ ]] || { AWS_MESSAGE="instance metadata gave a malformed availability zone"; return 1; }
  [[ $AWS_DOMAIN =~ ^[a-z0-9.-]+$ ]] || { AWS_MESSAGE="instance metadata gave a malformed partition domain"; return 1; }
  aws_credentials
}

# The role's credentials from metadata. No role yet, or credentials not
# ready, is tried again for a while (see AWS_AUTH_PATIENCE).
function aws_credentials {
  local role creds code rc reason left
  while :; do
    if aws_imds meta-data/iam/security-credentials/; then
      role=${AWS_BODY%%$'\n'*}
      [[ $role =~ ^[A-Za-z0-9+=,.@_-]+$ ]] || { AWS_MESSAGE="instance metadata gave a malformed role name"; return 1; }
      aws_imds "meta-data/iam/security-credentials/$role" || return
      creds=$(printf '%s' "$AWS_BODY" | tr -d '\n')
      code=$(aws_json_string Code <<<"$creds")
      if [ "$code" = Success ]; then
        AWS_KEY=$(aws_json_string AccessKeyId <<<"$creds")
        AWS_SECRET=$(aws_json_string SecretAccessKey <<<"$creds")
        AWS_TOKEN=$(aws_json_string Token <<<"$creds")
        # curl would sign an empty token header without sending it, which AWS
        # refuses; an empty or odd value is refused here instead.
        [[ $AWS_KEY =~ ^[A-Z0-9]{16,128}$ && $AWS_SECRET =~ ^[A-Za-z0-9+/=]{16,256}$ && $AWS_TOKEN =~ ^[A-Za-z0-9+/=]{16,}$ ]] ||
          { AWS_MESSAGE="instance metadata gave incomplete credentials for role $role"; return 1; }
        return 0
      fi
      reason="the credentials of role $role are not ready (metadata Code is ${code:-missing})"
    else
      rc=$?
      if [ "$rc" -ne 1 ] || [ "$AWS_STATUS" != 404 ]; then
        AWS_MESSAGE="this instance's IAM role cannot be read from instance metadata (${AWS_MESSAGE:-no answer})"
        return "$rc"
      fi
      reason="instance metadata shows no IAM role for this instance"
    fi
    aws_auth_retry "$reason" || { AWS_MESSAGE="$reason; attach the instance profile that natbake's policy belongs to"; return 1; }
    aws_left left 1 || { AWS_MESSAGE="$reason, until the deadline"; return 2; }
    sleep 1
  done
}

# The string value of a top-level key of a one-level JSON object (stdin).
function aws_json_string {
  sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p"
}

# One signed Query API call: aws_query SERVICE Action=<action> [NAME=VALUE]...
# Parameters go in the POST body, so curl's handling of query strings plays
# no part in the signature. Transient failures (no whole answer, 5xx,
# throttling) are tried again until AWS_DEADLINE, and so are refusals of
# credentials or permission for a while (see AWS_AUTH_PATIENCE); at the
# deadline AWS_ERROR is natbake.NoAnswer and AWS_MESSAGE says what the
# last try got.
function aws_query {
  local service=$1 action=${2#Action=} endpoint version out code rc args left last=''
  shift
  case $service in
    ec2) endpoint=${NATBAKE_EC2_ENDPOINT:-https://ec2.$AWS_REGION.$AWS_DOMAIN/} version=2016-11-15 ;;
    autoscaling) endpoint=${NATBAKE_AUTOSCALING_ENDPOINT:-https://autoscaling.$AWS_REGION.$AWS_DOMAIN/} version=2011-01-01 ;;
    monitoring) endpoint=${NATBAKE_CLOUDWATCH_ENDPOINT:-https://monitoring.$AWS_REGION.$AWS_DOMAIN/} version=2010-08-01 ;;
    *) AWS_ERROR=natbake.UnknownService AWS_MESSAGE="no endpoint for $service"; return 1 ;;
  esac
  args=(--data-urlencode "Version=$version")
  for p in "$@"; do args+=(--data-urlencode "$p"); done
  AWS_BODY='' AWS_STATUS=000 AWS_ERROR='' AWS_MESSAGE=''
  while :; do
    aws_left left 10 || {
      AWS_ERROR=natbake.NoAnswer
      AWS_MESSAGE="no complete answer to $action from $endpoint in time (last try: ${last:-none})"
      return 2
    }
    out=$(printf 'user = "%s:%s"\nheader = "X-Amz-Security-Token: %s"\n' "$AWS_KEY" "$AWS_SECRET" "$AWS_TOKEN" |
      curl --silent --show-error --config - --aws-sigv4 "aws:amz:$AWS_REGION:$service" \
        --connect-timeout 3 --max-time "$left" --write-out '\n%{http_code}' \
        "${args[@]}" "$endpoint" 2>/dev/null)
    rc=$? code=${out##*$'\n'}
    AWS_STATUS=${code:-000} AWS_BODY=${out%$'\n'*}
    # A whole answer is one curl finished without an error (a connection
    # reset, or the --max-time limit, mid-body is exit 18, 56 or 28 with
    # the status line already read) and, for a 200, the action's closing
    # element.
    if [ "$rc" -ne 0 ]; then
      last="no whole answer (curl exit $rc, HTTP status $AWS_STATUS)" AWS_STATUS=000
    elif [ "$AWS_STATUS" = 200 ]; then
      [[ $AWS_BODY == *"</${action}Response>"* ]] && return 0
      last="an answer without its end (HTTP status 200)" AWS_STATUS=000
    else
      AWS_ERROR=$(aws_xml_flat <<<"$AWS_BODY" | aws_xml_value Code)
      AWS_MESSAGE=$(aws_xml_flat <<<"$AWS_BODY" | aws_xml_value Message)
      last="HTTP status $AWS_STATUS${AWS_ERROR:+, $AWS_ERROR}${AWS_MESSAGE:+: $AWS_MESSAGE}"
      case $AWS_STATUS:$AWS_ERROR in
        5[0-9][0-9]:* | 429:* | *:RequestLimitExceeded | *:Throttling | *:ThrottlingException) ;;
        *:AuthFailure | *:UnauthorizedOperation | *:AccessDenied | *:AccessDeniedException | *:InvalidClientTokenId)
          aws_auth_retry "$action was refused ($AWS_ERROR: $AWS_MESSAGE)" || return 1 ;;
        *) AWS_ERROR=${AWS_ERROR:-natbake.HTTP$AWS_STATUS}; return 1 ;;
      esac
    fi
    sleep "0.$(( RANDOM % 9 + 1 ))"
    [ "$AWS_STATUS" = 000 ] || sleep 1
  done
}

# XML on one line, without white space between elements.
function aws_xml_flat { tr -d '\r' | tr '\n' ' ' | sed -e 's/>[[:space:]]*</></g'; }
# The text of the first <NAME> element.
function aws_xml_value { grep -o "<$1>[^<]*</$1>" | head -n 1 | sed -e "s:^<$1>::" -e "s:</$1>\$::"; }
# How many <NAME> elements there are.
function aws_xml_count { grep -o "<$1>[^<]*</$1>" | wc -l; }
# The inside of the <NAME> element (the outermost, if nested).
function aws_xml_block { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p"; }
# The document without any <NAME> element.
function aws_xml_without { sed -e "s:<$1>.*</$1>::"; }

# The site's floating interface ($1: the site) in this availability zone,
# from one DescribeNetworkInterfaces: FLOATING_ID, FLOATING_MAC,
# FLOATING_ADDR, FLOATING_STATUS (the interface's), FLOATING_HOLDER,
# FLOATING_ATTACHMENT and FLOATING_ATTACHED (the attachment's id and
# status). Returns like aws_query, with the reason in AWS_MESSAGE; not
# exactly one interface, or one without a MAC or address, is a refusal.
# shellcheck disable=SC2034 # its callers read what it sets
function floating_describe {
  local body eni att count rc
  FLOATING_ID='' FLOATING_MAC='' FLOATING_ADDR='' FLOATING_STATUS=''
  FLOATING_HOLDER='' FLOATING_ATTACHMENT='' FLOATING_ATTACHED=''
  aws_query ec2 Action=DescribeNetworkInterfaces \
    Filter.1.Name=tag:natbake:site "Filter.1.Value.1=$1" \
    Filter.2.Name=availability-zone "Filter.2.Value.1=$AWS_AZ" || {
    rc=$?
    AWS_MESSAGE="Cannot list the network interfaces tagged natbake:site=$1 in $AWS_AZ: $AWS_ERROR: $AWS_MESSAGE"
    return "$rc"
  }
  body=$(aws_xml_flat <<<"$AWS_BODY")
  count=$(aws_xml_count networkInterfaceId <<<"$body")
  [ "$count" -eq 1 ] || {
    AWS_MESSAGE="Found $count network interfaces tagged natbake:site=$1 in $AWS_AZ; exactly one must exist there (created with the elastic IP, outside the instance)."
    return 1
  }
  eni=$(aws_xml_block networkInterfaceSet <<<"$body")
  FLOATING_ID=$(aws_xml_value networkInterfaceId <<<"$eni")
  FLOATING_MAC=$(aws_xml_value macAddress <<<"$eni")
  FLOATING_ADDR=$(aws_xml_value privateIpAddress <<<"$eni")
  att=$(aws_xml_block attachment <<<"$eni")
  FLOATING_STATUS=$(aws_xml_without attachment <<<"$eni" | aws_xml_value status)
  FLOATING_HOLDER=$(aws_xml_value instanceId <<<"$att")
  FLOATING_ATTACHMENT=$(aws_xml_value attachmentId <<<"$att")
  FLOATING_ATTACHED=$(aws_xml_value status <<<"$att")
  [[ $FLOATING_MAC =~ ^[0-9a-f]{2}(:[0-9a-f]{2}){5}$ && $FLOATING_ADDR =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || {
    AWS_MESSAGE="The description of $FLOATING_ID (tagged natbake:site=$1 in $AWS_AZ) lacks a MAC or private address."
    return 1
  }
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
  { aws_imds_token && aws_imds "meta-data/network/interfaces/macs/$2/interface-id"; } || {
    AWS_MESSAGE="instance metadata does not list $1 under $2 (${AWS_MESSAGE:-no answer})"
    return 3
  }
  [ "$AWS_BODY" = "$1" ] || { AWS_MESSAGE="instance metadata lists ${AWS_BODY:-nothing}, not $1, under $2"; return 3; }
}

# Asks the Auto Scaling group, if the instance is in one, to replace this
# instance (after a failed boot, or a floating interface lost for good):
# the group's tag on the instance names it.
function failover_unhealthy {
  local group
  AWS_DEADLINE=$(( SECONDS + 20 ))
  [ -n "$AWS_TOKEN" ] || aws_identity || {
    log "Cannot tell the Auto Scaling group: this instance's identity or credentials are unknown ($AWS_MESSAGE)."
    return 0
  }
  if ! aws_query ec2 Action=DescribeInstances "InstanceId.1=$AWS_INSTANCE_ID"; then
    log "Cannot tell the Auto Scaling group: DescribeInstances failed ($AWS_ERROR: $AWS_MESSAGE)."
    return 0
  fi
  group=$(aws_xml_flat <<<"$AWS_BODY" | grep -o '<key>aws:autoscaling:groupName</key><value>[^<]*</value>' | sed -n 's:.*<value>\(.*\)</value>:\1:p')
  if [ -z "$group" ]; then
    log "This instance is not in an Auto Scaling group; nothing to report unhealthy to."
    return 0
  fi
  if aws_query autoscaling Action=SetInstanceHealth "InstanceId=$AWS_INSTANCE_ID" HealthStatus=Unhealthy ShouldRespectGracePeriod=false; then
    log "Reported this instance Unhealthy to its Auto Scaling group $group, which replaces it."
  else
    log "Cannot report this instance Unhealthy to $group: $AWS_ERROR: $AWS_MESSAGE"
  fi
}

# The caller learns how far it got: AWS_PUT_SENT counts the lines of stdin
# up to the last request that succeeded, so that it can keep the state of
# exactly the datums that went out.
# Publishes to CloudWatch namespace $1 the data on stdin, one datum a line:
# "NAME UNIT VALUE DIMENSION=VALUE...", at most $2 metrics per request.
# Returns like aws_query, at the first request that fails; AWS_PUT_SENT is
# the number of lines read up to the last request that succeeded.
# shellcheck disable=SC2034 # its caller reads AWS_PUT_SENT
function aws_put_metrics {
  local namespace=$1 per=$2 name unit value dims dim n=0 d params=() lines=0
  AWS_PUT_SENT=0
  while read -r name unit value dims; do
    lines=$(( lines + 1 ))
    [ -n "$name" ] || continue
    n=$(( n + 1 )) d=0
    params+=("MetricData.member.$n.MetricName=$name" "MetricData.member.$n.Unit=$unit" "MetricData.member.$n.Value=$value")
    for dim in $dims; do
      d=$(( d + 1 ))
      params+=("MetricData.member.$n.Dimensions.member.$d.Name=${dim%%=*}" "MetricData.member.$n.Dimensions.member.$d.Value=${dim#*=}")
    done
    if [ "$n" -ge "$per" ]; then
      aws_query monitoring Action=PutMetricData "Namespace=$namespace" "${params[@]}" || return
      AWS_PUT_SENT=$lines n=0 params=()
    fi
  done
  if [ "$n" -gt 0 ]; then
    aws_query monitoring Action=PutMetricData "Namespace=$namespace" "${params[@]}" || return
  fi
  AWS_PUT_SENT=$lines
}
