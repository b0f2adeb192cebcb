#!/bin/bash
# configure-pat.sh: boot step of a natbake NAT instance.
# Comments: natbake's instance/ folder, or `natbake templates dump DIR`.
#
# The same for every site: what the site is (its forwards, its VPC, its
# files' digests) is read from /etc/natbake/site.conf, which natbake
# renders from the spec.
#
# Keeps the shape of the AWS NAT AMI's script of the same name (log, die,
# sanitised PATH) and does what it did, safely:
#   1. checks through instance metadata (IMDSv2 only) that this VPC's CIDR
#      blocks include the spec's vpc_cidrs; a mismatch fails, forwarding off;
#   2. loads the ipsets (/etc/natbake/ipsets.v4), the sets counting each
#      forward's bytes and denials (swapped in whole), then the ruleset
#      (/etc/natbake/rules.v4) with one atomic iptables-restore (both
#      refused unless their digests are those in site.conf), then checks
#      that what the kernel holds for natbake equals the files;
#   3. applies the kernel settings and switches ICMP redirects off;
#   4. only then switches IP forwarding on.
# Any failure switches forwarding off and exits non-zero. Running it again
# gives the same ruleset and keeps established connections; runs never
# overlap (a lock file).
#
# Usage: configure-pat.sh (as root, no arguments). Sourced, it only
# defines its functions (main runs when it is executed), for tests.

# log, log_lines, the site's settings and the ruleset checks, shared with
# natbake-health.
LIB=/usr/local/lib/natbake/natbake-lib.sh
function die {
  [ -n "${1:-}" ] && log "ERROR: $1"
  # shellcheck disable=SC2015 # a failed log line changes nothing here
  forwarding_off && log "Configuration of NAT and port forwarding failed; IP forwarding is off." ||
    log "Configuration of NAT and port forwarding failed. $(forwarding_not_off)"
  declare -F failover_unhealthy >/dev/null && failover_unhealthy
  exit 1
}

# A run stopped half-way (systemd's start timeout, a stop, the health
# check's own limit on a repair) may have left anything half-done: it
# fails closed like any other failure. bash runs the trap once the
# command it waits for has ended, which a stop ends too (systemd signals
# every process of the unit). Further signals are ignored from then on, so
# that the report is not cut short.
# Stopped half-way: fail closed, as any other failure.
# shellcheck disable=SC2317 # run by the traps below
function on_signal {
  trap '' TERM INT HUP
  die "Stopped by SIG$1 before the configuration was complete."
}

# Seconds for all metadata requests together, retries included.
IMDS_BUDGET=5
IMDS=http://169.254.169.254

# An address as a number; the caller has checked it is a dotted quad.
function ip_to_int {
  local IFS=.
  # shellcheck disable=SC2086 # splitting on dots is the point
  set -- $1
  echo $(( (10#$1 << 24) + (10#$2 << 16) + (10#$3 << 8) + 10#$4 ))
}

function is_cidr {
  [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]] || return 1
  local part
  for part in "${BASH_REMATCH[@]:1:4}"; do
    [ $(( 10#$part )) -le 255 ] || return 1
  done
  [ $(( 10#${BASH_REMATCH[5]} )) -le 32 ]
}

# Whether network $1 lies inside network $2.
function cidr_within {
  local inner_len=$(( 10#${1#*/} )) outer_len=$(( 10#${2#*/} ))
  [ "$inner_len" -ge "$outer_len" ] || return 1
  local mask=$(( outer_len == 0 ? 0 : (0xFFFFFFFF << (32 - outer_len)) & 0xFFFFFFFF ))
  [ $(( $(ip_to_int "${1%/*}") & mask )) -eq $(( $(ip_to_int "${2%/*}") & mask )) ]
}

# One request to instance metadata; leaves the body of a 200 answer in
# IMDS_BODY and the last HTTP status (000: no answer) in IMDS_STATUS.
# A transient failure (no connection, a timeout, a dropped connection, a
# 5xx or 429 answer) is tried again, briefly, until IMDS_BUDGET runs out.
# Returns 0 on 200, 1 on a definite refusal (any other status), 2 when every
# try was transient.
# One metadata request, retried while transient: 0 answered (IMDS_BODY),
# 1 refused, 2 no answer within the budget (last status in IMDS_STATUS).
function imds_request {
  local out code left
  IMDS_BODY='' IMDS_STATUS=000
  while :; do
    left=$(( imds_deadline - SECONDS ))
    [ "$left" -gt 0 ] || return 2
    [ "$left" -le 2 ] || left=2
    out=$(curl --silent --noproxy '*' --connect-timeout 1 --max-time "$left" \
      --write-out '\n%{http_code}' "$@" 2>/dev/null)
    code=${out##*$'\n'}
    case $code in
      200) IMDS_STATUS=200 IMDS_BODY=${out%$'\n'*}; return 0 ;;
      5[0-9][0-9] | 429 | 000 | '') IMDS_STATUS=${code:-000} ;;
      *) IMDS_STATUS=$code; return 1 ;;
    esac
    sleep 0.2
  done
}

# Step 1: the VPC's CIDR blocks, through IMDSv2 only (a token first; no
# IMDSv1 request is ever made). Metadata that does not answer, or answers
# only with transient errors within IMDS_BUDGET seconds, is a warning: the
# checks below still stand, and there is no fallback to 0.0.0.0/0, ever.
# A definite answer that is wrong (a refusal, a malformed value, a spec
# CIDR outside this VPC) fails.
# Step 1: the VPC's CIDR blocks, through IMDSv2 only. No answer is a
# warning (no fallback to 0.0.0.0/0, ever); a wrong answer fails.
function check_vpc_cidrs {
  local token mac blocks block cidr found rc
  local imds_deadline=$(( SECONDS + IMDS_BUDGET ))
  local unchecked="the VPC's CIDR blocks were not compared with the spec's (${VPC_CIDRS[*]})"
  imds_request -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "$IMDS/latest/api/token"
  rc=$? token=$IMDS_BODY
  if [ "$rc" -ne 0 ] || [ -z "$token" ]; then
    log "WARNING: instance metadata (IMDSv2) gave no token (HTTP status $IMDS_STATUS); $unchecked."
    return 0
  fi
  local auth=(-H "X-aws-ec2-metadata-token: $token")
  imds_request "${auth[@]}" "$IMDS/latest/meta-data/mac"
  rc=$? mac=$IMDS_BODY
  case $rc in
    0) ;;
    2) log "WARNING: instance metadata did not answer for this instance's MAC address in ${IMDS_BUDGET}s (HTTP status $IMDS_STATUS); $unchecked."
       return 0 ;;
    *) die "Instance metadata refused this instance's MAC address (HTTP status $IMDS_STATUS)." ;;
  esac
  [[ $mac =~ ^[0-9a-f]{2}(:[0-9a-f]{2}){5}$ ]] || die "Instance metadata gave a malformed MAC address."
  imds_request "${auth[@]}" "$IMDS/latest/meta-data/network/interfaces/macs/$mac/vpc-ipv4-cidr-blocks"
  rc=$? blocks=$IMDS_BODY
  case $rc in
    0) ;;
    2) log "WARNING: instance metadata did not answer for the VPC's CIDR blocks in ${IMDS_BUDGET}s (HTTP status $IMDS_STATUS); $unchecked."
       return 0 ;;
    *) die "Instance metadata refused the VPC's CIDR blocks (HTTP status $IMDS_STATUS)." ;;
  esac
  local list=()
  mapfile -t list <<<"$blocks"
  for block in "${list[@]}"; do
    [ -z "$block" ] || is_cidr "$block" || die "Instance metadata gave a malformed VPC CIDR block."
  done
  blocks="${list[*]}"
  for cidr in "${VPC_CIDRS[@]}"; do
    found=no
    for block in "${list[@]}"; do
      if [ -n "$block" ] && cidr_within "$cidr" "$block"; then found=yes; fi
    done
    [ "$found" = yes ] ||
      die "The spec's VPC CIDR $cidr is not inside this VPC's CIDR blocks ($blocks); is this the right site spec for this VPC?"
  done
  log "The VPC's CIDR blocks ($blocks) include the spec's (${VPC_CIDRS[*]})."
}

# natbake's chains in an iptables-save output (stdin): "table chain" lines.
function natbake_chains { awk '/^\*/ { table = substr($0, 2) } /^:NATBAKE-/ { print table, substr($1, 2) }'; }

function main {
  set -u
  # shellcheck source=/dev/null
  . "$LIB" || {
    sysctl -q -w net.ipv4.ip_forward=0 >/dev/null 2>&1
    logger -t natbake -- "ERROR: cannot read $LIB; IP forwarding is off." 2>/dev/null
    echo "natbake: ERROR: cannot read $LIB; IP forwarding is off." >&2
    exit 1
  }
  trap 'on_signal TERM' TERM
  trap 'on_signal INT' INT
  trap 'on_signal HUP' HUP

  # Sanitize PATH
  PATH="/usr/sbin:/sbin:/usr/bin:/bin"
  export PATH

  load_site_conf || die "$SITE_CONF_ERROR"
  # With failover, the AWS client and the floating interface's steps
  # (and die reports a failure to the Auto Scaling group from here on).
  if [ "$FAILOVER" = yes ]; then
    # shellcheck source=/dev/null
    . "$AWS_LIB" || die "Cannot read $AWS_LIB."
    # shellcheck source=/dev/null
    . "$FAILOVER_LIB" || die "Cannot read $FAILOVER_LIB."
  fi
  # The site's text, as data: logged, never run.
  log "Configuring NAT and port forwarding for site $SITE..."
  [ -z "$DESCRIPTION" ] || log "$DESCRIPTION"

  [ "$(id -u)" -eq 0 ] || die "configure-pat.sh must run as root."
  local tools=(iptables iptables-restore iptables-save sysctl curl flock sha256sum unshare) tool
  [ "$BYTE_SETS" = no ] || tools+=(ipset)
  [ "$FAILOVER" = no ] || tools+=(ip)
  for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed."
  done

  # One run at a time: two runs side by side would both see a jump missing
  # and both add it. The lock goes with the process, so a killed run does
  # not leave it held.
  # One run at a time (two would both add a missing jump).
  exec 9>>"$LOCK" || die "Cannot open the lock file $LOCK."
  flock -w 60 9 || die "Another configure-pat.sh has held $LOCK for 60 seconds; not waiting longer."

  [ -r "$RULES" ] || die "The ruleset $RULES is missing."
  [ -r "$IPSETS" ] || die "The ipsets $IPSETS are missing."
  [ -r "$SYSCTL_CONF" ] || die "The kernel settings $SYSCTL_CONF are missing."
  # An empty, cut or edited file would load "successfully" and leave the
  # instance forwarding without natbake's rules.
  # An empty, cut or edited file would load "successfully".
  wrong=$(installed_files_problems) || die "$wrong"

  check_vpc_cidrs

  # Step 1b, with failover: take over the floating interface.
  [ "$FAILOVER" = no ] || take_floating_interface

  # The sets are loaded under temporary names (<name>-new) and then swapped
  # with the live ones, which the loaded rules keep matching: a packet meets
  # either the old set or the new one, never a missing or half-filled set.
  # The old contents, and so their counters, are then destroyed: like the
  # rules' counters, the bytes per forward start from zero at every load.
  # A live set that cannot be swapped (another type, made by another
  # version) is replaced when nothing uses it, else the run fails.
  # Step 2a: the sets counting each forward's bytes and denials, before the ruleset that
  # matches them (iptables-restore refuses a rule naming a missing set):
  # loaded under temporary names, then swapped with the live sets.
  if [ "$BYTE_SETS" = yes ]; then
  log "Loading the ipsets $IPSETS..."
  sets=$(awk '$1 == "create" { print $2 }' "$IPSETS") || die "Cannot read $IPSETS."
  for set in $sets; do
    # Left by a run that was stopped half-way.
    ipset destroy "$set-new" >/dev/null 2>&1
  done
  errors=$(awk '$1 == "create" || $1 == "add" { $2 = $2 "-new" } { print }' "$IPSETS" | ipset restore 2>&1) ||
    die "ipset restore refused $IPSETS: $errors"
  for set in $sets; do
    if ! ipset list -n "$set" >/dev/null 2>&1; then
      errors=$(ipset rename "$set-new" "$set" 2>&1) || die "Cannot rename the ipset $set-new to $set: $errors"
    elif ! ipset swap "$set-new" "$set" >/dev/null 2>&1; then
      errors=$(ipset destroy "$set" 2>&1) ||
        die "Cannot replace the ipset $set, which is not like the one in $IPSETS and still in use: $errors"
      errors=$(ipset rename "$set-new" "$set" 2>&1) || die "Cannot rename the ipset $set-new to $set: $errors"
    else
      errors=$(ipset destroy "$set-new" 2>&1) || die "Cannot destroy the old contents of the ipset $set: $errors"
    fi
  done
  else
  # This site has no forwards: no sets.
  sets=''
  fi

  # natbake's jumps go FIRST in the built-in chains they hook: whatever
  # comes before them could decide a forwarded or translated packet before
  # natbake does (another tool's ACCEPT, DNAT or chain). Other software's
  # rules stay, after them. A jump that is already the first rule is left
  # alone (so a second run adds nothing); one that is further down is moved
  # to the top (deleted and inserted again, in the same transaction); a
  # missing one is inserted at the top. Decided from one iptables-save of
  # what is loaded, read by the same awk before the file. A plain `-A FORWARD -j ACCEPT`
  # accepts everything natbake's chain passes on, which makes FORWARD's
  # DROP policy void: it is the policy in another form, and goes like an
  # ACCEPT policy does. All of it in the one iptables-restore.
  # Step 2: one iptables-restore. natbake's chains are declared in the file,
  # which replaces them whole; each jump from a built-in chain into them is
  # made the chain's first rule (left alone when it is), and a plain
  # `-A FORWARD -j ACCEPT` is removed, so a second run changes nothing.
  log "Loading the ruleset $RULES..."
  jumps=$(awk '/^\*/ { table = substr($0, 2) }
    /^-A (PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) -j NATBAKE-[A-Z0-9-]+$/ { print table, $2, $4 }' "$RULES") ||
    die "Cannot read $RULES."
  # What is loaded now (first), then $RULES with each jump's line made a
  # move to the top where needed, and the plain ACCEPTs deleted.
  loaded=$(iptables-save) || die "iptables-save failed."
  input=$(awk '
    BEGIN {
      while ((getline l < "/dev/stdin") > 0)
        if (l ~ /^\*/) t = substr(l, 2)
        else if (l ~ /^-A /) { split(l, w, " "); if (!((t w[2]) in top)) top[t w[2]] = l; has[t l]++ }
    }
    /^\*/ { t = substr($0, 2) }
    /^-A [A-Z]+ -j NATBAKE-[A-Z0-9-]+$/ {
      if (t $2 == "filterFORWARD") while (has["filter-A FORWARD -j ACCEPT"]-- > 0) print "-D FORWARD -j ACCEPT"
      if (top[t $2] == $0) next
      if (has[t $0]) print "-D " $2 " -j " $4
      print "-I " $2 " 1 -j " $4
      next
    }
    { print }' "$RULES" <<<"$loaded") || die "Cannot read $RULES."
  grep -q -x -e '-D FORWARD -j ACCEPT' <<<"$input" && log "Removing \`-A FORWARD -j ACCEPT\` (an open router)."
  grep -q -x -e '-D [A-Z]* -j NATBAKE-[A-Z0-9-]*' <<<"$input" && log "Moving natbake's jumps first."
  errors=$(iptables-restore --noflush 2>&1 <<<"$input") || die "iptables-restore refused $RULES: $errors"
  # The rules' counters restarted: readers of them must know (see mark_reload).
  mark_reload || log "WARNING: cannot record this load in $RELOADED; the next metrics count every counter as restarted."

  # A jump that is there more than once (left by runs that overlapped
  # before runs took the lock) is kept once: its first occurrence, the one
  # that takes effect.
  # A jump that is there more than once is kept once, where it first is.
  while read -r table chain target; do
    [ -n "$table" ] || continue
    numbers=$(iptables -t "$table" -S "$chain" |
      awk -v rule="-A $chain -j $target" '/^-A / { n++ } $0 == rule { print n }' | sed 1d | sort -rn) ||
      die "Cannot list the $table table's $chain chain."
    [ -n "$numbers" ] || continue
    for number in $numbers; do
      iptables -t "$table" -D "$chain" "$number" ||
        die "Cannot remove a duplicate jump from $chain to $target ($table table, rule $number)."
    done
    log "Removed $(echo "$numbers" | wc -l) duplicate jump(s) from $chain to $target ($table table)."
  done <<<"$jumps"

  # natbake chains that an earlier, larger ruleset made and this one does not
  # declare: nothing of natbake's jumps to them any more, so they are
  # removed. Each removal is checked: a chain that something else still
  # jumps to stays, and the run fails naming it.
  # natbake chains that this ruleset no longer declares are removed, each checked.
  tables=$(awk '/^\*/ { print substr($0, 2) }' "$RULES")
  stale=$(comm -23 <(while read -r table; do
    iptables-save -t "$table" | natbake_chains
  done <<<"$tables" | sort) <(natbake_chains <"$RULES" | sort))
  if [ -n "$stale" ]; then
    # All are emptied first: stale chains may jump to one another.
    while read -r table chain; do iptables -t "$table" -F "$chain" 2>/dev/null; done <<<"$stale"
    removed=() kept=()
    while read -r table chain; do
      if reason=$(iptables -t "$table" -X "$chain" 2>&1); then
        removed+=("$chain ($table)")
      else
        kept+=("$chain ($table): ${reason//$'\n'/ }")
      fi
    done <<<"$stale"
    [ "${#removed[@]}" -eq 0 ] ||
      log "Removed natbake chains that the ruleset no longer has: $(printf '%s, ' "${removed[@]}" | sed 's/, $//')"
    [ "${#kept[@]}" -eq 0 ] ||
      die "Cannot remove natbake chains that the ruleset no longer has: $(printf '%s; ' "${kept[@]}" | sed 's/; $//')"
  fi

  # natbake's sets that these files no longer have (the site lost its
  # forwards, or a run stopped half-way left a temporary set): the rules
  # loaded above do not match them any more.
  if [ "$SYSTEMD" = yes ]; then
  # natbake ipsets that $IPSETS does not have are destroyed, each checked.
  stale_sets=''
  if command -v ipset >/dev/null 2>&1; then
    stale_sets=$(comm -23 <(ipset list -n | grep '^natbake-' | LC_ALL=C sort) <(LC_ALL=C sort <<<"$sets"))
  fi
  if [ -n "$stale_sets" ]; then
    kept=()
    for set in $stale_sets; do
      reason=$(ipset destroy "$set" 2>&1) || kept+=("$set: ${reason//$'\n'/ }")
    done
    [ "${#kept[@]}" -eq 0 ] ||
      die "Cannot destroy natbake ipsets that $IPSETS no longer has: $(printf '%s; ' "${kept[@]}" | sed 's/; $//')"
    log "Destroyed natbake ipsets that $IPSETS no longer has: ${stale_sets//$'\n'/ }"
  fi
  fi

  differences=$(ruleset_differences)
  case $? in
    0) ;;
    1) die "What is loaded differs from $RULES: $(echo "$differences" | head -n 20 | tr '\n' ';')" ;;
    *) die "Cannot check what is loaded against $RULES: $differences" ;;
  esac
  saved=$(iptables-save) || die "iptables-save failed."
  missing=$(ruleset_invariants <<<"$saved") || die "The loaded ruleset is incomplete: $(echo "$missing" | tr '\n' ';')"
  # natbake's chains being right is not enough: what the kernel does to a
  # forwarded packet also depends on what comes before natbake's jumps and
  # on the raw table (see ruleset_preemptions).
  # Whether anything else decides forwarded traffic before natbake's rules.
  missing=$(ruleset_preemptions <<<"$saved") || die "Other rules decide forwarded traffic before natbake's: $(echo "$missing" | tr '\n' ';')"
  rm -f "$IPSETS_LOADED"
  missing=$(ipset_problems) || die "The loaded ipsets are not those of $IPSETS: $(echo "$missing" | tr '\n' ';')"
  keep_ipsets_loaded || log "WARNING: cannot keep $IPSETS_LOADED (/run full?)"
  log "The loaded ruleset equals $RULES."

  # Step 3: kernel settings, then no ICMP redirects on any interface
  # (including those that existed before the defaults were set).
  errors=$(sysctl -q -p "$SYSCTL_CONF" 2>&1) || die "Cannot apply $SYSCTL_CONF: $errors"
  for setting in /proc/sys/net/ipv4/conf/*/send_redirects; do
    echo 0 >"$setting" || die "Cannot switch off ICMP redirects in $setting."
  done

  # Step 4: forwarding, now that the rules are in place. A hold the health
  # check put on forwarding (it failed closed) ends with this run.
  rm -f "$CLOSED"
  # A standby pair's role decides (natbake-standby).
  [ "$STANDBY" = yes ] || sysctl -q -w net.ipv4.ip_forward=1 >/dev/null || die "Cannot switch IP forwarding on."

  # What each forward does, from site.conf: one line each.
  mapfile -t FORWARDS < <(site_conf_records summary)
  log_lines ${FORWARDS[@]+"${FORWARDS[@]}"}
  log "Configuration of NAT and port forwarding complete."
  exit 0

}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
