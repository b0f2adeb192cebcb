#!/bin/bash
# natbake-health: periodic health check of a natbake NAT instance.
# Comments: natbake's instance/ folder, or `natbake templates dump DIR`.
#
# The same for every site: the site's settings are read from
# /etc/natbake/site.conf.
#
# Run every health.interval seconds by natbake-health.timer (by cron,
# /etc/cron.d/natbake-health, where there is no systemd). Checks:
#   - natbake's chains, their rules, the jumps into them and the FORWARD
#     policy equal what configure-pat.sh loaded from /etc/natbake/rules.v4
#     (counters aside), against the view configure-pat.sh kept in
#     /run/natbake; and the jumps and FORWARD's DROP policy exist. One
#     iptables-save does it, skipped while the kernel's nf_tables
#     generation shows nothing changed since the ruleset was last found
#     right, except once a minute, when the counters are read;
#   - the ipsets counting each forward's bytes and denials exist, with counters and
#     as many elements as /etc/natbake/ipsets.v4 has (headers only, at every
#     check: sets are not part of the nf_tables generation);
#   - IP forwarding is on;
#   - the conntrack table is below conntrack_limit_percent of its maximum;
#   - with failover, the floating interface is attached to this instance
#     (its device and instance metadata say so; the EC2 API is asked every
#     few minutes, or when they do not) and carries the default route.
#   Also: nothing decides forwarded traffic before natbake's jumps (they
#   are the first rule of each built-in chain they hook; no rule accepts
#   all that natbake passes on; no NOTRACK in the raw table), and
#   the ruleset and ipsets are still the files whose digests site.conf has.
# Drift in the first three is repaired by running configure-pat.sh again
# (under its lock) and logged with what differed. A repair that fails or
# does not hold, or the same drift back within 10 minutes of its
# repair, FAILS CLOSED: IP forwarding off (read back), the reason in
# /run/natbake/health, one UNHEALTHY line, exit 1, and with failover the
# Auto Scaling group asked to replace this instance. Forwarding stays off
# until configure-pat.sh succeeds again: `systemctl restart natbake`, a
# reboot, or this check's own try 10 minutes later. What a
# repair cannot help (conntrack nearly full, the floating
# interface detached or attached elsewhere) is logged and exits 1, which
# fails the unit; a lost floating interface also asks the Auto
# Scaling group to replace this instance. Findings go to /run/natbake/health for
# natbake-status; each forward's counters are compared with the last run's
# to record when it last carried traffic. With metrics, they go to
# CloudWatch once a minute (by the clock since boot) whether the check
# passes or fails, after natbake's lock is released.
#
# Usage: natbake-health (no arguments; --help prints this and does nothing)
# Exit: 0 healthy (possibly after a repair), 1 unhealthy, 2 usage.
# Sourced, it only defines its functions (main runs when it is executed).

LIB=/usr/local/lib/natbake/natbake-lib.sh

# Checking each forward= and summary= line of site.conf costs about 12 ms
# of CPU at 10,000 forwards, at every check. So a file that passed whole is
# stamped ($STATE_DIR/site.conf.checked) with what stat says of it and of
# this script (natbake's scripts are installed together): device, inode, size, and modification and change
# times to the nanosecond. While both read the same, later runs check the
# named lines only. Writing to a file always moves its change time, which
# no program can set; a file changed in the second before its check is not
# stamped, since a write in the same clock tick could leave the time as it
# was. A stamp counts only as a regular file of this user in a folder of
# this user, neither writable by anyone else, and only for a regular file.
# What stat says of each path, one line each, in SITE_CONF_STAT: owner,
# raw mode (hex), change time (s), device, inode, size, modification and
# change times.
function site_conf_stat {
  mapfile -t SITE_CONF_STAT < <(stat -c '%u %f %Z %d %i %s %y %z' -- "$@" 2>/dev/null)
}

# Whether line $1 of SITE_CONF_STAT is of type $2 (8 a regular file, 4 a
# folder) and, with $3, owned by this user and writable by no one else.
function site_conf_stat_is {
  local owner mode
  read -r owner mode _ <<<"${SITE_CONF_STAT[$1]:-}"
  [[ $mode =~ ^[0-9a-f]+$ ]] && [ $(( 16#$mode >> 12 )) -eq "$2" ] || return 1
  [ -z "${3:-}" ] || { [ "$owner" = "$EUID" ] && [ $(( 16#$mode & 8#22 )) -eq 0 ]; }
}

# load_site_conf of file $1 (SITE_CONF if not given) through its stamp.
# shellcheck disable=SC2120 # the tests pass a file
function load_site_conf_stamped {
  local file=${1:-$SITE_CONF} start stamp=$STATE_DIR/site.conf.checked kept_file='' kept_self='' kept='' changed
  printf -v start '%(%s)T' -1
  site_conf_stat "$file" "${BASH_SOURCE[0]}" "$STATE_DIR" "$stamp"
  if [ "${#SITE_CONF_STAT[@]}" -eq 4 ] && site_conf_stat_is 0 8 && site_conf_stat_is 1 8 &&
    site_conf_stat_is 2 4 mine && site_conf_stat_is 3 8 mine; then
    { read -r kept_file && read -r kept_self && read -r kept; } <"$stamp" 2>/dev/null
    if [ "$kept_file" = "${SITE_CONF_STAT[0]}" ] && [ "$kept_self" = "${SITE_CONF_STAT[1]}" ] &&
      [[ $kept =~ ^(0|[1-9][0-9]*)\ [01]$ ]]; then
      load_site_conf "$file" "$kept"
      return
    fi
  fi
  load_site_conf "$file" || return
  # Checked whole: stamped, unless the file changed in the last second.
  read -r _ _ changed _ <<<"${SITE_CONF_STAT[0]:-}"
  if [ "${#SITE_CONF_STAT[@]}" -ge 3 ] && site_conf_stat_is 0 8 && site_conf_stat_is 1 8 &&
    site_conf_stat_is 2 4 mine && [[ $changed =~ ^[0-9]+$ ]] && [ $(( changed + 1 )) -lt "$start" ]; then
    { printf '%s\n' "${SITE_CONF_STAT[0]}" "${SITE_CONF_STAT[1]}" "$SITE_CONF_FORWARDS" >"$stamp.new" &&
      mv -f "$stamp.new" "$stamp"; } 2>/dev/null || rm -f "$stamp.new" 2>/dev/null
  fi
  return 0
}

# The first line of file $2 into variable $1; empty when unreadable.
function read_file {
  printf -v "$1" '%s' ''
  { read -r "$1" <"$2"; } 2>/dev/null
  return 0
}

# Whether a minute has passed since the monotonic stamp $1 (55 seconds: a
# timer may fire a little early); also when $1 is no stamp of this boot
# (never, unreadable, or from before a reboot).
function a_minute_since {
  local elapsed
  stamp_seconds elapsed "${1:-}" "$mono" || return 0
  [ "$elapsed" -ge 55 ] || [ "$elapsed" -lt 0 ]
}

# Rewrites one key=value line of the health state, keeping the others.
function set_state {
  local key value line
  local -A given=()
  [ -d "$STATE_DIR" ] || mkdir -p "$STATE_DIR" || return 1
  for key in "$@"; do given[${key%%=*}]=1; done
  {
    if [ -r "$HEALTH_STATE" ]; then
      while IFS= read -r line; do
        [ -n "${given[${line%%=*}]:-}" ] || printf '%s\n' "$line"
      done <"$HEALTH_STATE"
    fi
    for key in "$@"; do
      value=${key#*=}
      printf '%s=%s\n' "${key%%=*}" "${value//$'\n'/; }"
    done
  } 2>/dev/null >"$HEALTH_STATE.new" && mv -f "$HEALTH_STATE.new" "$HEALTH_STATE"
}

# A failing check still records what the counters say and, with metrics,
# publishes every metric (Healthy 0): the conntrack alarm and the counts
# are wanted most when something is wrong. Once only: a failure while
# doing so just ends the run.
function unhealthy {
  log "UNHEALTHY: $1"
  set_state state=failed "checked=$now" "last_failure=$now" "last_failure_reason=$1"
  if [ -z "$FAILING" ]; then
    FAILING=yes
    [ -n "$COUNTERS_READ" ] || ! declare -F record_counters >/dev/null || record_counters ||
      log "WARNING: cannot read each forward's counters: their last-seen times and metrics wait for the next check"
    declare -F publish_metrics >/dev/null && publish_metrics 0
  fi
  exit 1
}

# The run-time rule: natbake never leaves an open router. When the
# ruleset cannot be made right (a repair fails or does not hold, or the
# same drift keeps coming back), forwarding goes off, as at a failed boot,
# and stays off (the hold in $CLOSED, an empty file will do on a full
# /run) until configure-pat.sh succeeds again. Never "UNHEALTHY" with
# forwarding on and the ruleset unknown.
# Fails closed: IP forwarding off (read back), the hold kept in $CLOSED,
# the reason in the health state, one line logged, exit 1.
function fail_closed {
  local line="IP forwarding is off until configure-pat.sh succeeds (systemctl restart natbake, or this check in 10 minutes)."
  if forwarding_off; then
    { echo "$1" >"$CLOSED"; } 2>/dev/null
  else
    line=$(forwarding_not_off)
  fi
  log "UNHEALTHY: $1; $line"
  set_state state=failed "checked=$now" "last_failure=$now" "last_failure_reason=$1; IP forwarding is off"
  declare -F failover_unhealthy >/dev/null && failover_unhealthy
  declare -F publish_unhealthy >/dev/null && publish_unhealthy
  exit 1
}

# Whether the time $1 is less than 10 minutes (the recurrence window and
# the hold) ago, and not ahead.
function lately {
  [[ ${1:-} =~ ^[0-9]+$ ]] && [ "$now" -ge "$1" ] && [ $(( now - $1 )) -lt 600 ]
}
function private_workdir {
  [ -n "$WORKDIR" ] && return 0
  WORKDIR=$(mktemp -d) || return 1
  log "WARNING: $STATE_DIR full, using $WORKDIR for this check's working files"
}

# "Last seen": a forward was seen by the check whose reading found its
# connections or denied attempts grown since the last reading, or, after
# a reload (another reload id, see mark_reload), above zero: a counter
# that restarted can grow past its old value in between. The reading is
# recorded here, before the conntrack test, so that a failing check
# records it too.
# Reads each forward's counters from $SAVED into $COUNTERS and records in
# $SEEN_STATE when each was last seen. Returns 1 if anything fails.
function record_counters {
  [ -n "$SAVED_NOW" ] || return 0
  [ -z "$COUNTERS_READ" ] || return 0
  if [ "$FORWARD_COUNT" -gt 0 ]; then
    # Tried once a run: a failure is reported once.
    [ -z "${COUNTERS_FAILED:-}" ] || return 1
    COUNTERS_FAILED=yes
    natbake_counters <(site_conf_records forward) <"$SAVED" >"$COUNTERS" 2>/dev/null || {
      rm -f "$COUNTERS" && private_workdir && COUNTERS=$WORKDIR/counters &&
        natbake_counters <(site_conf_records forward) <"$SAVED" >"$COUNTERS"
    } || return 1
    if LC_ALL=C awk -v now="$now" -v seen="$SEEN_STATE" -v reload="$SAVED_RELOAD" '
      BEGIN {
        while ((getline line < seen) > 0) {
          split(line, f, " ")
          if (f[1] == "#reload") kept_reload = f[2]
          else { old[f[1]] = f[2] + f[3]; last[f[1]] = f[4] }
        }
        print "#reload", reload
      }
      {
        s = $2 + $3
        grew = (($1 in old) && kept_reload == reload) ? (s > old[$1] || (s < old[$1] && s > 0)) : (s > 0)
        print $1, $2, $3, grew ? now : (($1 in last) ? last[$1] : "-")
      }' "$COUNTERS" >"$SEEN_STATE.new" 2>/dev/null; then
      mv -f "$SEEN_STATE.new" "$SEEN_STATE"
    else
      # The counters were read; only keeping "last seen" failed (a full /run): no reason to fail the check.
      rm -f "$SEEN_STATE.new"
      log "WARNING: cannot keep the forwards' last-seen times in $SEEN_STATE ($STATE_DIR full?)"
    fi
    COUNTERS_FAILED=''
  fi
  COUNTERS_READ=yes
  { echo "$mono" >"$COUNTED"; } 2>/dev/null || rm -f "$COUNTED"
}

# The conntrack count and maximum into count and max.
function read_conntrack {
  read_file count /proc/sys/net/netfilter/nf_conntrack_count
  read_file max /proc/sys/net/netfilter/nf_conntrack_max
  [[ $count =~ ^[0-9]+$ && $max =~ ^[0-9]+$ ]]
}

# Whether the counters are due: read at least once a minute, however
# short the interval, and whenever metrics are.
function counters_due {
  local last
  if [ "$METRICS" = yes ] && metrics_due; then return 0; fi
  read_file last "$COUNTED"
  a_minute_since "$last"
}

# Whether the ruleset is unchanged since it was last found right: same
# nf_tables generation, same rendered ruleset. Sets GENERATION (with
# failover, the floating interface's look reads it: see floating_look).
function unchanged_since_verified {
  local key gen
  if [ "$FAILOVER" = yes ]; then
    floating_look generation
  else
    GENERATION=$(ruleset_generation)
  fi
  [ -n "$GENERATION" ] && [ -r "$VERIFIED" ] && read -r key gen <"$VERIFIED" &&
    [ "$key" = "$RULES_SHA256" ] && [ "$gen" = "$GENERATION" ]
}

# Fills PROBLEMS (what is wrong and can be repaired by loading the ruleset
# again). The ruleset is read (into $SAVED) and compared unless its
# generation shows it unchanged since it was last found right and the
# counters are not due.
function inspect {
  PROBLEMS=()
  local same=''
  unchanged_since_verified && same=yes
  if [ -n "$same" ] && ! counters_due; then
    :
  else
    compare_ruleset "$same"
  fi
  local missing elements=''
  # Every element only when the ruleset is read, at most every 10 minutes
  # (since the sets were loaded or last found right): a full listing of the
  # sets costs more than that read.
  [ -z "$SAVED_NOW" ] || lately "$(stat -c %Y "$IPSETS_LOADED" 2>/dev/null)" || elements=elements
  missing=$(ipset_problems $elements) || PROBLEMS+=("$(tr '\n' ';' <<<"$missing" | sed 's/;$//')")
  local forwarding
  read_file forwarding /proc/sys/net/ipv4/ip_forward
  [ "$forwarding" = 1 ] || PROBLEMS+=("IP forwarding is off")
  [ "$FAILOVER" = no ] || floating_problems
}

# Reads the ruleset into $SAVED and adds to PROBLEMS how natbake's part
# differs from $RULES; with none, keeps the generation it was read at
# (read again after the read, unless $1 says it was already verified:
# the counters' read once a minute then costs no second Python start).
function compare_ruleset {
  local before=$GENERATION found=${#PROBLEMS[@]} differences missing
  rm -f "$VERIFIED"
  # A full /run must not fail the check (and so turn drift into a repair
  # that fails): this run's working files go to a folder in /tmp then.
  iptables-save -c >"$SAVED" 2>"$SAVED.err" || {
    rm -f "$SAVED" "$SAVED.err" && private_workdir && SAVED=$WORKDIR/save LOADED_VIEW=$WORKDIR/view &&
      iptables-save -c >"$SAVED" 2>"$SAVED.err"
  } || unhealthy "iptables-save failed: $(tr '\n' ' ' <"$SAVED.err" 2>/dev/null)"
  SAVED_NOW=yes
  reload_id SAVED_RELOAD
  differences=$(cached_differences "$LOADED_VIEW" <"$SAVED")
  case $? in
    0) ;;
    1) PROBLEMS+=("natbake's rules differ from $RULES: $(head -n 20 <<<"$differences" | tr '\n' ';')") ;;
    *)
      # No kept view (a configure-pat.sh of another render ran, or /run
      # was emptied): compare the slow way, which keeps one again.
      differences=$(ruleset_differences)
      case $? in
        0) ;;
        1) PROBLEMS+=("natbake's rules differ from $RULES: $(head -n 20 <<<"$differences" | tr '\n' ';')") ;;
        *) unhealthy "cannot compare the loaded rules with $RULES: $differences" ;;
      esac
      ;;
  esac
  missing=$(ruleset_invariants <"$SAVED") || PROBLEMS+=("$(tr '\n' ';' <<<"$missing")")
  missing=$(ruleset_preemptions <"$SAVED") || PROBLEMS+=("$(tr '\n' ';' <<<"$missing" | sed 's/;$//')")
  # Kept only if nothing changed while it was read, or if it was right at
  # that generation already (whatever changed since, it was right then).
  if [ "${#PROBLEMS[@]}" -eq "$found" ] && [ -n "$before" ] &&
    { [ -n "${1:-}" ] || [ "$(ruleset_generation)" = "$before" ]; }; then
    printf '%s %s\n' "$RULES_SHA256" "$before" >"$VERIFIED"
  fi
}
# shellcheck disable=SC2317 # run by the traps below
function on_signal {
  trap '' TERM INT HUP
  [ -z "$REPAIRING" ] || unhealthy "stopped by SIG$1 during the repair, which switches IP forwarding off when stopped; drift was: $REPAIRING"
  unhealthy "stopped by SIG$1 before the check was complete"
}

function main {
  set -u
  # Arguments first, before anything is read or locked: --help must not run
  # a check, let alone a repair.
  case ${1:-} in
    '') ;;
    -h | --help) echo "Usage: natbake-health (as root, no arguments)"; exit 0 ;;
    *) echo "Usage: natbake-health (as root, no arguments)" >&2; exit 2 ;;
  esac

  PATH="/usr/sbin:/sbin:/usr/bin:/bin"
  export PATH

  # shellcheck source=/dev/null
  . "$LIB" || {
    logger -t natbake -- "UNHEALTHY: cannot read $LIB" 2>/dev/null
    echo "natbake: UNHEALTHY: cannot read $LIB" >&2
    exit 1
  }
  # Settings that cannot be read: fail closed, as configure-pat.sh would.
  if ! load_site_conf_stamped; then
    forwarding_off || log "$(forwarding_not_off)"
    log "UNHEALTHY: $SITE_CONF_ERROR; IP forwarding is off"
    exit 1
  fi

  # The check runs every few seconds: what bash can do itself (the time,
  # reading a number from a file) it does without starting a program.
  # `now` (the wall clock) is for the times people read; `mono` (see
  # monotonic_stamp) for "a minute since", which a wall clock set back
  # would stall.
  [ "$EUID" -eq 0 ] || { echo "natbake-health must run as root." >&2; exit 1; }
  printf -v now '%(%s)T' -1
  mono=''
  monotonic_stamp mono
  # Set once this run has read the ruleset and its counters into $SAVED (and
  # the reload id they were read under), and once it has read each forward's
  # counters from it into $COUNTERS; FAILING once the check fails.
  SAVED_NOW='' SAVED_RELOAD=none COUNTERS_READ='' FAILING=''
  [ -d "$STATE_DIR" ] || mkdir -p "$STATE_DIR" || { echo "natbake-health: cannot create $STATE_DIR" >&2; exit 1; }

  # The AWS client, and the floating interface's and the metrics' parts.
  if [ "$AWS" = yes ]; then
    # shellcheck source=/dev/null
    . "$AWS_LIB" || unhealthy "cannot read $AWS_LIB"
  fi
  if [ "$FAILOVER" = yes ]; then
    # shellcheck source=/dev/null
    . "$FAILOVER_LIB" || unhealthy "cannot read $FAILOVER_LIB"
  fi
  if [ "$METRICS" = yes ]; then
    # shellcheck source=/dev/null
    . "$METRICS_LIB" || unhealthy "cannot read $METRICS_LIB"
  fi
  # One iptables-save -c, kept in a file that every step reads (a ruleset of
  # 10,000 forwards is 1.5 MB: no copies through shell variables), when the
  # ruleset may have changed or the counters are due.
  SAVED=$STATE_DIR/iptables-save
  LOADED_VIEW=$STATE_DIR/loaded.view
  # These and $COUNTERS are working files of this run only: gone when it
  # ends, so that between checks /run holds only the small state and the
  # kept view. With /run full they move to a folder of this run's in /tmp.
  WORKDIR=''
  trap 'rm -f "$SAVED" "$SAVED.err" "$LOADED_VIEW" "$COUNTERS"; [ -z "$WORKDIR" ] || rm -rf --one-file-system "$WORKDIR"' EXIT
  # "<rules sha256> <generation>": the nf_tables generation at which the
  # loaded ruleset was last found equal to $RULES (see ruleset_generation).
  VERIFIED=$STATE_DIR/verified
  # The monotonic stamp of the last reading of the counters (for "last seen"
  # and the metrics), and each forward's counters of this run's reading.
  COUNTED=$STATE_DIR/counted
  COUNTERS=$STATE_DIR/counters

  # Stopped half-way (systemd's start timeout, a stop): the check says so.
  # A repair stopped with it fails closed by itself (configure-pat.sh
  # switches forwarding off on the same signal).
  # Stopped half-way: reported; a repair stopped with it fails closed itself.
  REPAIRING=''
  trap 'on_signal TERM' TERM
  trap 'on_signal INT' INT
  trap 'on_signal HUP' HUP

  # Not while configure-pat.sh loads the ruleset: it would look like drift.
  exec 9>>"$LOCK" || unhealthy "cannot open the lock file $LOCK"
  flock -w 60 9 || unhealthy "configure-pat.sh has held $LOCK for 60 seconds"

  # Forwarding held off by an earlier check: it stays off (switched off
  # again if someone switched it on by hand) until configure-pat.sh
  # succeeds, which removes the hold, or until 10 minutes have
  # passed, when this check tries the repair once more. A clock that went
  # back ends the hold too.
  if [ -e "$CLOSED" ]; then
    read_file held "$CLOSED"
    # shellcheck disable=SC2154 # read_file sets it
    if lately "$(stat -c %Y "$CLOSED" 2>/dev/null)"; then
      forwarding_off || log "$(forwarding_not_off)"
      unhealthy "IP forwarding held off since the check failed closed: $held"
    fi
    log "Trying the repair again: $held"
  fi

  inspect
  repaired=''
  if [ "${#PROBLEMS[@]}" -gt 0 ]; then
    repaired=$(printf '%s; ' "${PROBLEMS[@]}")
    repaired=${repaired%; }
    repaired=${repaired//$'\n'/; }
    # The same drift again soon after its repair: something keeps undoing
    # natbake's rules (a service, a cron job, a person), and repairing it
    # forever would leave it open between checks. Forwarding off instead.
    # Forwarding found off is left out of the comparison: it is no opening,
    # and a hold switched it off itself.
    drift=${repaired/; IP forwarding is off/}
    drift=${drift#IP forwarding is off}
    read -r last_repair last_drift < <(awk -F= '$1 == "last_repair" { r = $2 } $1 == "last_drift" { d = substr($0, 12) } END { print r "-", d }' "$HEALTH_STATE" 2>/dev/null)
    [ -z "$drift" ] || [ "$drift" != "$last_drift" ] || ! lately "${last_repair%-}" ||
      fail_closed "the same drift came back within 10 minutes of its repair: $repaired"
    log "Drift found, loading the ruleset again: $repaired"
    flock -u 9
    REPAIRING=$repaired
    "$SCRIPT" 9>&- || fail_closed "the repair failed (configure-pat.sh exited $?, reason above); drift was: $repaired"
    flock -w 60 9 || unhealthy "configure-pat.sh has held $LOCK for 60 seconds"
    inspect
    [ "${#PROBLEMS[@]}" -eq 0 ] ||
      fail_closed "the repair did not hold: $(printf '%s; ' "${PROBLEMS[@]}")"
    route=''
    [ "$FAILOVER" = no ] || route=", the floating interface's route"
    log "Repaired: natbake's ruleset, ipsets$route and forwarding are as configure-pat.sh sets them."
  fi
  REPAIRING=''
  # Forwarding is on with the ruleset found right: any hold is over (the
  # repair's configure-pat.sh removed it; this catches one left behind).
  rm -f "$CLOSED" 2>/dev/null

  # The installed files against the digests this render carries: an edited
  # file or a half-done upgrade does not change what is loaded, but the next
  # repair or boot would refuse it and switch forwarding off. So it fails
  # the check now, while the NAT still works. Hashed when the ruleset is
  # read in full (after a change, and at least once a minute).
  [ -z "$SAVED_NOW" ] || problems=$(installed_files_problems) || unhealthy "$problems"
  [ -z "${FLOATING_FAILURE:-}" ] || unhealthy "$FLOATING_FAILURE"

  record_counters || unhealthy "cannot read each forward's counters from the iptables-save in $SAVED"

  # Conntrack near full drops new connections; loading rules again cannot help.
  count='' max=''
  read_conntrack || unhealthy "cannot read the conntrack count and maximum"
  if [ "$max" -gt 0 ] && [ $(( count * 100 )) -ge $(( max * CONNTRACK_LIMIT_PERCENT )) ]; then
    unhealthy "the conntrack table holds $count of $max entries (at least ${CONNTRACK_LIMIT_PERCENT}%); new connections will be dropped when it is full"
  fi

  # When the ruleset was last read and compared (not at every check: see
  # unchanged_since_verified).
  read_now=()
  [ -z "$SAVED_NOW" ] || read_now=("compared=$now")
  if [ -n "$repaired" ]; then
    set_state state=repaired "checked=$now" ${read_now[@]+"${read_now[@]}"} "last_repair=$now" "last_repair_reason=$repaired" "last_drift=$drift"
  else
    set_state state=ok "checked=$now" ${read_now[@]+"${read_now[@]}"}
  fi
  [ "$METRICS" = no ] || publish_metrics 1
  exit 0
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
