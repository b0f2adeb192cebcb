#!/bin/bash
# natbake-metrics.sh: the health check's CloudWatch metrics.
# Comments: natbake's instance/ folder, or `natbake templates dump DIR`.
#
# Installed only on sites with metrics (site.conf: metrics=yes), and
# sourced (not run) by natbake-health after natbake-lib.sh and
# natbake-aws.sh: the counts become datums (metrics_datums, a pure
# function of its files and readings), published at most once a minute
# (publish_metrics). Running it alone does nothing.
#
# Variables shared with the scripts that source this file:
# shellcheck disable=SC2153,SC2154

# The datums of one publish, for aws_put_metrics, from this check's
# readings: counts go out as what was added since the last publish of the
# same datum. Each counted datum keeps its own state line ("<key> <value>
# <reload id>"), so that a publish whose later requests fail commits the
# datums that went out and only those: nothing is sent twice, nothing
# lost. A counter read under another reload id than its kept one
# restarted at that load, and all of it is new; a counter below its kept
# value without a reload (zeroed by hand) likewise. ENA's counters belong
# to the driver, not the ruleset: only the second rule applies to them.
# Every number is printed with %.0f (mawk prints awk numbers of 2^31 and
# more rounded, as 2.14748e+09).
# Arguments: the natbake_counters file, the kept state, the output file
# (its .keys twin gets, line for line, the state line to keep once that
# datum is sent, or "-" for a gauge), then the readings as NAME=VALUE
# words: healthy (1 or 0), per_forward (yes or no), site, reload (see
# reload_id), bin and bout (forwarded_bytes), drops (forward_drops),
# count and fill (conntrack entries and percent), ena ("counter total"
# lines), ena_metrics (ENA's counter names = metric names). Without bin,
# no counts are published; without count, no conntrack gauges.
# Writes the datums of one publish to $3 and their state lines to $3.keys,
# from the counters in file $1, the state kept in file $2 and the readings
# $4... (NAME=VALUE; see above).
function metrics_datums {
  local counters=$1 state=$2 out=$3 reading vars=()
  shift 3
  for reading in "$@"; do vars+=(-v "$reading"); done
  LC_ALL=C awk -v state="$state" -v out="$out" -v keys="$out.keys" "${vars[@]}" '
    function delta(key, cur, restarts) {
      kept = key " " sprintf("%.0f", cur) " " reload
      if (!(key in old)) return sprintf("%.0f", cur)
      if ((restarts && old_reload[key] != reload) || cur + 0 < old[key] + 0) return sprintf("%.0f", cur)
      return sprintf("%.0f", cur - old[key])
    }
    function datum(metric, unit, value, dims) { print metric, unit, value, "Site=" site dims > out; print kept > keys; kept = "-" }
    BEGIN {
      kept = "-"
      while ((getline line < state) > 0) {
        if (split(line, f, " ") != 4) continue
        old[f[1] " " f[2]] = f[3]; old_reload[f[1] " " f[2]] = f[4]
      }
    }
    {
      conns += $2
      if (per_forward == "yes") datum("NewConnections", "Count", delta("conn " $1, $2, 1), " Forward=" $1)
      if ($3 == "-") next
      denied += $3
      if (per_forward == "yes") datum("DeniedAttempts", "Count", delta("denied " $1, $3, 1), " Forward=" $1)
    }
    END {
      if (bin != "") {
        datum("NewConnections", "Count", delta("conn *", conns, 1))
        datum("DeniedAttempts", "Count", delta("denied *", denied, 1))
        datum("ForwardedBytesIn", "Bytes", delta("bytes in", bin, 1))
        datum("ForwardedBytesOut", "Bytes", delta("bytes out", bout, 1))
        datum("ForwardDrops", "Count", delta("drops -", drops, 1))
      }
      if (count != "") {
        datum("ConntrackEntries", "Count", count)
        datum("ConntrackFillPercent", "Percent", fill)
      }
      # ENA allowance counters this driver has, among those published.
      n = split(ena_metrics, pairs, " ")
      for (i = 1; i <= n; i++) { split(pairs[i], kv, "="); metric[kv[1]] = kv[2] }
      n = split(ena, lines, "\n")
      for (i = 1; i <= n; i++) {
        if (split(lines[i], f, " ") == 2 && (f[1] in metric))
          datum(metric[f[1]], "Count", delta("ena " f[1], f[2], 0))
      }
      datum("Healthy", "None", healthy)
    }' "$counters"
}

# The kept state after a publish that sent the first $3 lines of the
# datums: the state lines of those ($2, the .keys file) replace the kept
# ones of the same key; the others stay as they were. Writes $1.new.
# Merges into the kept metrics state $1 the first $3 state lines of file $2.
function metrics_commit {
  LC_ALL=C awk -v sent="$3" -v state="$1" '
    FNR <= sent && $1 != "-" { now[$1 " " $2] = $0; order[++n] = $1 " " $2 }
    END {
      while ((getline line < state) > 0)
        if (split(line, f, " ") == 4 && !((f[1] " " f[2]) in now)) print line
      for (i = 1; i <= n; i++) print now[order[i]]
    }' "$2" >"$1.new" && mv -f "$1.new" "$1"
}

# CloudWatch metrics, at most once a minute by the monotonic clock,
# whether the check passes (Healthy 1) or not (Healthy 0). Counts go out
# as what was added since the last publish: see metrics_datums. Each
# datum's state is committed once the request that carried it succeeded,
# so a publish of several requests (1,000 datums each) that fails half
# way sends nothing twice, and the next publish carries the rest. The
# readings are taken under natbake's lock; the publish itself, which may
# wait 20 seconds on the API, runs after it is released, under a lock of
# its own (a second publisher would send the same counts again).
# CloudWatch metrics (namespace $METRICS_NAMESPACE), at most once a minute:
# counts as what was added since the last publish (state in $METRICS_STATE,
# the last complete publish in $METRICS_PUBLISHED). A failed publish is
# logged and does not fail the check; what it did not send, the next sends.
METRICS_STATE=$STATE_DIR/metrics
# The namespace (the IAM permission is limited to it), the most datums in
# one PutMetricData request, and ENA's allowance counters with the metric
# each becomes: natbake's own, checked by a test against its definition.
METRICS_NAMESPACE=natbake
METRICS_PER_REQUEST=1000
ENA_METRICS='bw_in_allowance_exceeded=BwInAllowanceExceeded bw_out_allowance_exceeded=BwOutAllowanceExceeded pps_allowance_exceeded=PpsAllowanceExceeded conntrack_allowance_exceeded=ConntrackAllowanceExceeded linklocal_allowance_exceeded=LinklocalAllowanceExceeded'
METRICS_PUBLISHED=$STATE_DIR/metrics.published
METRICS_LOCK=$STATE_DIR/metrics.lock

# Whether a minute has passed since the last complete publish.
function metrics_due {
  local last
  read_file last "$METRICS_PUBLISHED"
  a_minute_since "${last%% *}"
}

# Sends the datums on stdin (see aws_put_metrics); AWS_PUT_SENT tells how
# many of its lines went out.
function put_metrics {
  AWS_PUT_SENT=0
  # shellcheck disable=SC2034 # natbake-aws.sh reads it
  AWS_DEADLINE=$(( SECONDS + 20 ))
  if [ -z "$AWS_TOKEN" ]; then
    if ! aws_read_env_file || ! aws_identity; then
      log "WARNING: metrics not published: $AWS_MESSAGE"
      return 1
    fi
  fi
  aws_put_metrics "$METRICS_NAMESPACE" "$METRICS_PER_REQUEST" || {
    local sent=''
    [ "$AWS_PUT_SENT" -eq 0 ] || sent=" past the first $AWS_PUT_SENT datums (those went out)"
    log "WARNING: metrics not published$sent: ${AWS_ERROR:+$AWS_ERROR: }$AWS_MESSAGE"
    return 1
  }
}

# Every metric, with Healthy $1, from this run's readings (the counters
# are read now if this run has not read them), when a minute has passed.
function publish_metrics {
  local data=$STATE_DIR/metrics.data counters=/dev/null filled readings
  readings=("healthy=$1" "per_forward=$PER_FORWARD" "site=$SITE" "ena_metrics=$ENA_METRICS")
  metrics_due || return 0
  if [ -z "$SAVED_NOW" ] && iptables-save -c >"$SAVED" 2>/dev/null; then
    SAVED_NOW=yes
    reload_id SAVED_RELOAD
  fi
  [ -z "$SAVED_NOW" ] || [ -n "$COUNTERS_READ" ] || record_counters ||
    log "WARNING: cannot read each forward's counters; metrics published without counts"
  if [ -n "$COUNTERS_READ" ]; then
    local bytes_in bytes_out drops
    read -r bytes_in bytes_out < <(forwarded_bytes <"$SAVED")
    read -r drops _ < <(forward_drops <"$SAVED")
    readings+=("reload=$SAVED_RELOAD" "bin=$bytes_in" "bout=$bytes_out" "drops=$drops")
    [ "$FORWARD_COUNT" -eq 0 ] || counters=$COUNTERS
  fi
  if [[ ${count:-} =~ ^[0-9]+$ && ${max:-} =~ ^[0-9]+$ ]] || read_conntrack; then
    filled=0
    [ "$max" -eq 0 ] || filled=$(( (count * 20000 + max) / (2 * max) ))
    readings+=("count=$count" "fill=$(( filled / 100 )).$(( filled % 100 / 10 ))$(( filled % 10 ))")
  fi
  readings+=("ena=$(ena_allowance | awk '{ t[$2] += $3 } END { for (k in t) printf "%s %.0f\n", k, t[k] }')")
  # The readings are taken: natbake's lock is not needed any more.
  flock -u 9 2>/dev/null
  if ! { exec 8>>"$METRICS_LOCK" && flock -n 8; } 2>/dev/null; then
    log "WARNING: metrics not published now: another run is publishing (the next publish carries these counts)"
    return 0
  fi
  if ! metrics_datums "$counters" "$METRICS_STATE" "$data" "${readings[@]}" || ! [ -s "$data" ]; then
    log "WARNING: metrics not published: cannot write $data"
    return 0
  fi
  if put_metrics <"$data"; then
    printf '%s %s\n' "$mono" "$now" >"$METRICS_PUBLISHED.new" && mv -f "$METRICS_PUBLISHED.new" "$METRICS_PUBLISHED"
  fi
  [ "$AWS_PUT_SENT" -eq 0 ] || metrics_commit "$METRICS_STATE" "$data.keys" "$AWS_PUT_SENT" ||
    log "WARNING: cannot keep the metrics state in $METRICS_STATE: the next publish counts from the one before"
  flock -u 8
}

