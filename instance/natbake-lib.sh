#!/bin/bash
# natbake-lib.sh: functions shared by natbake's scripts; reads site.conf.
# Comments: natbake's instance/ folder, or `natbake templates dump DIR`.
#
# Sourced by configure-pat.sh (boot), natbake-health (the periodic check)
# and natbake-status, so that the boot step and the check compare the
# ruleset the same way. Running it alone does nothing. The same bytes on
# every site: what differs between sites is read from SITE_CONF by
# load_site_conf, which the callers run first.
#
# The names below are natbake's, the same on every site: a test checks
# each against natbake's own definition (the artifact table's install
# paths, the ruleset's comments, the sets' names).

# The settings below are read by the scripts that source this file.
# shellcheck disable=SC2034
SITE_CONF=/etc/natbake/site.conf
RULES=/etc/natbake/rules.v4
IPSETS=/etc/natbake/ipsets.v4
SYSCTL_CONF=/etc/sysctl.d/90-natbake.conf
SCRIPT=/usr/local/sbin/configure-pat.sh
AWS_LIB=/usr/local/lib/natbake/natbake-aws.sh
FAILOVER_LIB=/usr/local/lib/natbake/natbake-failover.sh
METRICS_LIB=/usr/local/lib/natbake/natbake-metrics.sh
# The sets counting forwarded bytes, and the comments of the rules that
# count them, each way.
IPSET_IN=natbake-in
IPSET_OUT=natbake-out
FORWARDED_IN=natbake:forwarded:in
FORWARDED_OUT=natbake:forwarded:out
# Conntrack fill, in percent of its maximum, that fails the health check.
CONNTRACK_LIMIT_PERCENT=90
# One run at a time: configure-pat.sh and a repair both take it.
LOCK=/var/lock/natbake.lock
# Volatile state: the expected view of the ruleset, the health check's
# findings and when each forward was last seen. Gone at reboot, when the
# boot step writes it again.
STATE_DIR=/run/natbake
VIEW_CACHE=$STATE_DIR/ruleset.view
HEALTH_STATE=$STATE_DIR/health
SEEN_STATE=$STATE_DIR/seen
# Present while the health check holds IP forwarding off (see
# natbake-health): written by the check when it fails closed, removed by
# every run of configure-pat.sh that succeeds.
CLOSED=$STATE_DIR/closed
# The natbake ipsets as configure-pat.sh loaded them: a digest of all
# their elements, for the health check.
IPSETS_LOADED=$STATE_DIR/ipsets.loaded

# The names site.conf holds, each with the extended regular expression
# its value must match whole and, for a feature's settings, the setting
# that must be yes for them to be there (they must be there then, and must
# not be otherwise). In the expressions, @ip stands for an IPv4 address,
# @net for a network a.b.c.d/n, @port for a port (1 to 65535), @sha for a
# SHA-256 in lowercase hex, and _ for a space. Each NAME becomes the shell variable of that
# name in capitals: the names come from this list, never from the file.
# natbake's SiteConf (src/render/site_conf.rs) writes exactly these; a test
# checks that the two lists agree. (attach_timeout takes 1 s up, though
# the spec's least is 30: the failover tests race with shorter waits.)
SITE_CONF_KEYS='site ^[a-z][a-z0-9-]*$
description ^[^[:cntrl:]]*$
spec_sha256 ^@sha$
rules_sha256 ^@sha$
ipsets_sha256 ^@sha$
vpc_cidrs ^@net(_@net)*$
systemd ^(yes|no)$
byte_sets ^(yes|no)$
ipset_names ^([a-z0-9-]+(_[a-z0-9-]+)*)?$
ipset_elements ^(@n(_@n)*)?$
failover ^(yes|no)$
attach_timeout ^([1-9][0-9]?|[1-8][0-9][0-9]|900)$ failover
standby ^(yes|no)$ failover
metrics ^(yes|no)$
per_forward ^(yes|no)$ metrics'
# Besides those, per forward, in the spec's order, "forward=NAME TARGET
# PROTO FIRST LAST own|shared" (what its bytes are counted on: target
# address, protocol, first and last target port, and whether another
# forward counts some of the same) then "summary=TEXT" (what it does, for
# the log). They are checked here with the rest, and read where needed by
# site_conf_records: nothing loops over them in bash, however many.

# Reads the site's settings from file $1 (SITE_CONF if not given) into
# the variables of SITE_CONF_KEYS, FORWARD_COUNT and AWS (yes with
# failover or metrics). A line that is not NAME=VALUE with a known name
# and a valid value, a name given twice, missing or out of place, is
# refused: returns 1, and the reason, naming the file and line, is in
# SITE_CONF_ERROR. The file is data: never sourced, never evaluated.
# $2, "COUNT 0|1", is what a whole check of this very file found (see
# natbake-health's stamp): the forwards' count, and whether a named line
# follows them. With it, only the named lines are checked (the forwards'
# cost 12 ms at 10,000). After a whole check, SITE_CONF_FORWARDS has it.
function load_site_conf {
  local file=${1:-$SITE_CONF} out key i=0 values quick=0
  [ -z "${2:-}" ] || quick=$(( 2 - ${2#* } ))
  out=$(LC_ALL=C awk -v quick="$quick" -v keys="$SITE_CONF_KEYS
forward ^[a-z][a-z0-9-]*_@ip_(tcp|udp)_@port_@port_(own|shared)$
summary ^[^[:cntrl:]]*$" '
    function no(m) { print FILENAME ": " (end ? "" : "line " FNR ": ") m; exit bad = 1 }
    BEGIN {
      o = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
      p = "([1-9][0-9]?[0-9]?[0-9]?|[1-5][0-9][0-9][0-9][0-9]|6[0-4][0-9][0-9][0-9]|65[0-4][0-9][0-9]|655[0-2][0-9]|6553[0-5])"
      while (length(h) < 512) h = h "[0-9a-f]"
      n = split(keys, l, "\n")
      for (i = 1; i <= n; i++) {
        split(l[i], w, " "); key[i] = k = w[1]; need[k] = w[3]
        gsub(/@net/, "@ip/([12]?[0-9]|3[0-2])", w[2]); gsub(/@ip/, o "[.]" o "[.]" o "[.]" o, w[2])
        gsub(/@port/, p, w[2]); gsub(/@sha/, h, w[2]); gsub(/@n/, "(0|[1-9][0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?[0-9]?)", w[2]); gsub(/_/, " ", w[2]); re[k] = w[2]
      }
    }
    /^(#|$)/ { next }
    quick && /^(forward|summary)=/ { if (quick == 2) exit; next }
    {
      k = $0; sub(/=.*/, "", k); v = substr($0, length(k) + 2)
      if (k == $0) no("not NAME=VALUE")
      if (!(k in re)) no("`" k "` is not a setting natbake knows")
      if (k in val) no("`" k "` is there twice")
      if (v !~ re[k] || (k == "forward" && split(v, w, " ") && w[4] + 0 > w[5] + 0))
        no("`" k "` cannot be " (v ~ /[[:cntrl:]]/ ? "text with control characters" : "`" v "`"))
      if (k == "forward") { if (f++ != s) no("a forward without its summary") }
      else if (k == "summary") { if (++s != f) no("a summary without its forward") }
      else { val[k] = v; if (f) late = 1 }
    }
    END {
      if (bad) exit 1
      end = 1
      if (f != s) no("a forward without its summary")
      for (i = 1; i < n - 1; i++)
        if (((k = key[i]) in val) != (need[k] == "" || val[need[k]] == "yes"))
          no("`" k "` is " ((k in val) ? "there without `" need[k] "=yes`" : "missing"))
      for (i = 1; i < n - 1; i++) print val[key[i]]
      print f + 0, late + 0
    }' "$file" 2>&1) || {
    SITE_CONF_ERROR=${out:-cannot read $file}
    return 1
  }
  mapfile -t values <<<"$out"
  while read -r key _; do
    printf -v "${key^^}" '%s' "${values[i++]}"
  done <<<"$SITE_CONF_KEYS"
  SITE_CONF_FORWARDS=${values[i]}
  FORWARD_COUNT=${2:-${values[i]}}
  FORWARD_COUNT=${FORWARD_COUNT% *}
  AWS=no
  [ "$FAILOVER$METRICS" = nono ] || AWS=yes
  # The lists among them that the scripts walk, as arrays.
  read -r -a IPSET_NAMES <<<"$IPSET_NAMES"
  read -r -a IPSET_ELEMENTS <<<"$IPSET_ELEMENTS"
  read -r -a VPC_CIDRS <<<"$VPC_CIDRS"
}

# The values of the "$1=..." lines of the site's settings (forward or
# summary), in order, for the awk programs that read them.
function site_conf_records {
  LC_ALL=C awk -v k="$1=" 'index($0, k) == 1 { print substr($0, length(k) + 1) }' "${2:-$SITE_CONF}"
}

# Under systemd, stderr is the journal (as SyslogIdentifier=natbake);
# elsewhere lines go to syslog through logger and to stderr. Messages are
# kept on one line, so that a syslog reader sees all of each.
function log {
  local line=${1//$'\n'/ }
  if [ -n "${JOURNAL_STREAM:-}" ]; then
    echo "$line" >&2
  else
    logger -t natbake -- "$line" 2>/dev/null
    echo "natbake: $line" >&2
  fi
}
# Many lines at once: a spec may hold thousands of forwards.
function log_lines {
  [ "$#" -gt 0 ] || return 0
  if [ -n "${JOURNAL_STREAM:-}" ]; then
    printf '%s\n' "$@" >&2
  else
    printf '%s\n' "$@" | logger -t natbake 2>/dev/null
    printf 'natbake: %s\n' "$@" >&2
  fi
}

# Switching forwarding off is what makes a failure safe, so it is never
# assumed: written (what sysctl -w does), then read back. A container or
# a read-only /proc/sys can refuse the write.
# Switches IP forwarding off and reads it back: returns 0 when it is off,
# 1 (FORWARDING_NOW says what it reads) when it is not.
function forwarding_off {
  FORWARDING_NOW=''
  { echo 0 >/proc/sys/net/ipv4/ip_forward; read -r FORWARDING_NOW </proc/sys/net/ipv4/ip_forward; } 2>/dev/null
  [ "$FORWARDING_NOW" = 0 ]
}

# The line to log when forwarding_off failed.
function forwarding_not_off {
  echo "CRITICAL: IP forwarding could NOT be switched off (it reads ${FORWARDING_NOW:-nothing})."
}

# What the kernel holds for natbake, one line per item, comparable between
# two iptables-save outputs of the same iptables: the policies of the
# built-in chains that $RULES sets, natbake's chains, their rules in
# order, and every jump from a built-in chain into them. Counters aside,
# so `iptables-save -c` output gives the same view.
# Argument: "table:chain" words of the built-in chains whose policy counts.
# natbake's part of an iptables-save (stdin), counters aside; $1 lists the
# table:chain built-ins whose policy counts.
function natbake_view {
  awk -v builtins=" $1 " '
    /^\*/ { table = substr($0, 2); next }
    /^:/ {
      chain = substr($1, 2)
      if (chain ~ /^NATBAKE-/) print table, chain, "0 chain"
      else if (index(builtins, " " table ":" chain " ")) print table, chain, "0 policy", $2
      next
    }
    { sub(/^\[[0-9]+:[0-9]+\] /, "") }
    /^-A NATBAKE-/ || /^-A [A-Z]+ -j NATBAKE-[A-Z0-9-]+$/ { print table, $2, "1 rule", ++n[table " " $2], $0 }
  ' | LC_ALL=C sort -k1,1 -k2,2 -k3,3 -k5,5n
}

# The built-in chains whose policy $RULES sets, as table:chain words.
function ruleset_builtins {
  awk '/^\*/ { table = substr($0, 2) } /^:[A-Z]+ (ACCEPT|DROP) / { print table ":" substr($1, 2) }' "$RULES" | tr '\n' ' '
}

# The nf_tables generation of this network namespace: a number the kernel
# raises with every change to any nftables ruleset, which with the
# nf_tables backend includes every iptables change (counters aside). Two
# equal readings mean nothing changed between them, so a ruleset found
# right at one generation is still right while it lasts: the health
# check skips its iptables-save then. Asked with one netlink request
# (NFT_MSG_GETGEN) from Python, started isolated and without site (about
# 13 ms of CPU; perl, which did it before, took 3 ms, but is not on every
# image, while python3 is wherever cloud-init runs); no tool prints it.
# Prints nothing (and the caller compares the slow way) with the legacy
# x_tables backend, whose changes it does not count, or without python3.
# The nf_tables ruleset generation (raised by every change), or nothing
# when it cannot tell or iptables does not use nf_tables.
function ruleset_generation {
  case $(iptables -V 2>/dev/null) in *nf_tables*) ;; *) return 0 ;; esac
  command -v python3 >/dev/null 2>&1 || return 0
  # AF_NETLINK 16, SOCK_RAW 3, NETLINK_NETFILTER 12; request type
  # NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN, answer ... | NFT_MSG_NEWGEN;
  # attribute NFTA_GEN_ID (1, its type without the two flag bits), big-endian.
  python3 -IS -c '
import _socket, struct
s = _socket.socket(16, 3, 12)
s.settimeout(2)
s.bind((0, 0))
s.send(struct.pack("=IHHII", 20, 10 << 8 | 16, 1, 1, 0) + struct.pack("!BBH", 0, 0, 0))
m = s.recv(8192)
n, t = struct.unpack_from("=IH", m) if len(m) >= 20 else (0, 0)
o = 20
while t == 10 << 8 | 15 and n <= len(m) and o + 8 <= n:
    a, k = struct.unpack_from("=HH", m, o)
    if a < 4:
        break
    if k & 0x3FFF == 1 and a >= 8:
        print(struct.unpack_from("!I", m, o + 4)[0])
        raise SystemExit(0)
    o += (a + 3) & ~3
raise SystemExit(1)' 2>/dev/null
}

# Prints the differences between two views (- missing, + unexpected).
function view_differences {
  LC_ALL=C comm -3 <(LC_ALL=C sort <<<"$1") <(LC_ALL=C sort <<<"$2") | sed 's/^\t/+ /; t; s/^/- /'
}

# Whether what is loaded equals $RULES for everything natbake owns: each
# natbake chain holds exactly the file's rules in the file's order, no
# other natbake chain exists, each jump into them is there exactly once,
# and the built-in policies are the file's. The file is read back in this
# system's iptables spelling by loading it into a scratch network
# namespace; that view is kept in $VIEW_CACHE (with $RULES_SHA256), so
# that the health check compares against it without doing this again.
# Keeping it is a shortcut, not a condition: when $STATE_DIR cannot take
# it (a full /run), a warning says so and the comparison stands.
# The scratch namespace gets empty copies of the sets of $IPSETS first:
# iptables-restore refuses a rule that matches a set it cannot find.
# Prints the differences (- missing, + unexpected); returns 1 if there are
# any, 2 if the check itself could not run.
# Whether what is loaded for natbake equals $RULES; prints the differences
# (- missing, + unexpected). Returns 1 if any, 2 if it cannot tell. Keeps
# the expected view in $VIEW_CACHE for the health check when it can.
function ruleset_differences {
  local builtins expected loaded
  builtins=$(ruleset_builtins) || return 2
  # shellcheck disable=SC2016 # $1, $2 and $3 are the inner shell's
  expected=$(unshare --net -- /bin/sh -c '{ [ -z "$3" ] || awk '\''$1 == "create"'\'' "$2" | ipset restore; } && iptables-restore <"$1" && iptables-save' sh "$RULES" "$IPSETS" "${IPSET_NAMES[*]:-}" 2>&1) || {
    echo "cannot read $RULES back through a scratch network namespace: ${expected//$'\n'/ }"
    return 2
  }
  loaded=$(iptables-save 2>&1) || { echo "iptables-save failed: ${loaded//$'\n'/ }"; return 2; }
  expected=$(natbake_view "$builtins" <<<"$expected")
  loaded=$(natbake_view "$builtins" <<<"$loaded")
  if mkdir -p "$STATE_DIR" && printf '%s\n' "$expected" >"$VIEW_CACHE.new" &&
    printf '%s %s\n' "$RULES_SHA256" "$builtins" >"$VIEW_CACHE.key.new" &&
    mv -f "$VIEW_CACHE.new" "$VIEW_CACHE" && mv -f "$VIEW_CACHE.key.new" "$VIEW_CACHE.key"; then :; else
    # Only a shortcut for the health check, which then compares this
    # slow way: never a reason to fail (a full /run).
    rm -f "$VIEW_CACHE.new" "$VIEW_CACHE.key.new" "$VIEW_CACHE" "$VIEW_CACHE.key"
    log "WARNING: cannot keep $VIEW_CACHE (/run full?)"
  fi
  [ "$expected" != "$loaded" ] || return 0
  view_differences "$expected" "$loaded"
  return 1
}

# The same comparison against the view kept by the last run of
# ruleset_differences, for an iptables-save output on stdin: no scratch
# namespace, no second listing, files compared with cmp (the view of
# 10,000 forwards is 1.5 MB). $1 is a scratch file for the loaded view.
# Returns 2, printing nothing, when no view for this $RULES_SHA256 is kept.
# Like ruleset_differences, for the iptables-save output on stdin, against
# the kept view ($1: a scratch file); returns 2 (printing nothing) when there
# is none for this ruleset.
function cached_differences {
  local key builtins
  [ -r "$VIEW_CACHE" ] && [ -r "$VIEW_CACHE.key" ] || return 2
  read -r key builtins <"$VIEW_CACHE.key" || return 2
  [ "$key" = "$RULES_SHA256" ] || return 2
  natbake_view "$builtins" >"$1" || return 2
  cmp -s "$VIEW_CACHE" "$1" && return 0
  view_differences "$(cat "$VIEW_CACHE")" "$(cat "$1")"
  return 1
}

# The sets that count each forward's bytes and denied attempts: each
# must exist, be of its type with counters (natbake-denied-* a
# bitmap:port, the others hash:ip,port), and hold exactly the rendered
# number of elements. Only the headers are listed (ipset list -t), never the
# elements, so that this stays cheap at 10,000 forwards. An ipset too old
# to print the number of entries in the header is counted the slow way.
# With $1 = elements, the digest of all their elements must also be the
# one configure-pat.sh kept at load ($IPSETS_LOADED): a set swapped in
# under natbake's name, of the same type and size, or edited in place,
# holds other elements. When they match, the file's time is renewed.
# What is wrong with natbake's ipsets; prints it and returns 1 if anything.
# $1 = elements: also compare every element with what was loaded.
function ipset_problems {
  local line name='' n i kind entries problems=0
  local -A type=() counters=() count=()
  [ "${#IPSET_NAMES[@]}" -gt 0 ] || return 0
  while IFS= read -r line; do
    case $line in
      "Name: "*) name=${line#Name: } ;;
      "Type: "*) [ -z "$name" ] || type[$name]=${line#Type: } ;;
      "Header: "*) [ -z "$name" ] || [[ " ${line#Header: } " != *" counters "* ]] || counters[$name]=counters ;;
      "Number of entries: "*) [ -z "$name" ] || count[$name]=${line#Number of entries: } ;;
    esac
  done < <(ipset list -t 2>/dev/null)
  for i in "${!IPSET_NAMES[@]}"; do
    n=${IPSET_NAMES[$i]} kind=hash:ip,port
    [[ $n != natbake-denied-* ]] || kind=bitmap:port
    if [ -z "${type[$n]:-}" ]; then
      echo "the ipset $n is missing"
      problems=1
      continue
    fi
    entries=${count[$n]:-}
    if [ -z "$entries" ]; then
      entries=$(ipset list "$n" 2>/dev/null | sed '1,/^Members:/d' | grep -c .)
    fi
    if [ "${type[$n]}" != "$kind" ] || [ -z "${counters[$n]:-}" ]; then
      echo "the ipset $n is a ${type[$n]} without the counters natbake loads"
      problems=1
    elif [ "$entries" != "${IPSET_ELEMENTS[$i]}" ]; then
      echo "the ipset $n holds $entries elements, not ${IPSET_ELEMENTS[$i]}"
      problems=1
    fi
  done
  [ "$problems${1:-}" != 0elements ] || [ ! -s "$IPSETS_LOADED" ] ||
    { [ "$(ipset_elements_digest)" = "$(cat "$IPSETS_LOADED")" ] && touch "$IPSETS_LOADED"; } ||
    { echo "the ipsets hold other elements than loaded"; problems=1; }
  return "$problems"
}

# Rules every rendered ruleset has, whatever the file says: FORWARD drops
# what natbake does not accept, and the jumps into natbake's chains exist.
# Read from an iptables-save output (stdin), so that a check that already
# has one lists nothing again.
# What every rendered ruleset has, in the iptables-save output on stdin:
# FORWARD policy DROP and natbake's jumps. Prints what is missing; returns 1 if any.
function ruleset_invariants {
  awk '
    { sub(/^\[[0-9]+:[0-9]+\] /, "") }
    /^\*/ { table = substr($0, 2); next }
    table == "filter" && $1 == ":FORWARD" && $2 == "DROP" { drop = 1 }
    table == "filter" && $0 == "-A FORWARD -j NATBAKE-FORWARD" { f = 1 }
    table == "nat" && $0 == "-A PREROUTING -j NATBAKE-PREROUTING" { pre = 1 }
    table == "nat" && $0 == "-A POSTROUTING -j NATBAKE-POSTROUTING" { post = 1 }
    END {
      if (!drop) print "the FORWARD policy is not DROP"
      if (!f) print "no jump from FORWARD to NATBAKE-FORWARD (filter table)"
      if (!pre) print "no jump from PREROUTING to NATBAKE-PREROUTING (nat table)"
      if (!post) print "no jump from POSTROUTING to NATBAKE-POSTROUTING (nat table)"
      exit (drop && f && pre && post) ? 0 : 1
    }'
}

# Whether $RULES and $IPSETS are the files of this render (their digests
# RULES_SHA256 and IPSETS_SHA256); prints what is wrong if not.
function installed_files_problems {
  local f sum
  for f in "$RULES $RULES_SHA256 ruleset" "$IPSETS $IPSETS_SHA256 ipsets"; do
    # shellcheck disable=SC2086 # three words
    set -- $f
    sum=$(sha256sum <"$1" 2>/dev/null)
    [ "${sum%% *}" = "$2" ] || { echo "$1 is not the $3 this script was rendered with (sha256 ${sum%% *})"; return 1; }
  done
}

# What the kernel will do to traffic through the instance, beyond
# natbake's own chains being intact (ruleset_differences):
# - natbake's jump is the FIRST rule of each built-in chain it hooks
# (filter FORWARD, nat PREROUTING, nat POSTROUTING): anything before it
# could decide a forwarded or translated packet first (an ACCEPT, a
# DNAT, a jump into a chain that does). configure-pat.sh puts the jumps
# first, so this is drift that a reload repairs;
# - after natbake's chain, filter FORWARD sees only what natbake did not
# accept, and must not accept all of it: a rule there without any
# condition whose target is ACCEPT, or a jump into another chain that
# accepts everything that way, would make the DROP policy void (an open
# router). configure-pat.sh removes the plain `-A FORWARD -j ACCEPT`,
# which is the policy in another form; anything else of that kind is
# other software's chain, which natbake does not edit: it fails;
# - nothing in the raw table's PREROUTING switches connection tracking
# off (NOTRACK, CT --notrack): untracked packets skip the nat table, so
# no forward and no masquerade applies to them. natbake cannot put
# itself ahead of that without editing other software's rules: it fails.
# Conditional rules after natbake's jumps are other software's business
# and stay. Reads an iptables-save output (stdin); prints one line per
# finding and returns 1 if any.
# In the awk below: bare(r) is whether rule r has no condition (a comment
# is none); all(r) whether bare rule r accepts every packet: its
# target is ACCEPT, or a chain whose first deciding bare rule does (1);
# a bare DROP, REJECT or RETURN decides the other way (0); a chain with
# no deciding bare rule passes the packet on ("").
# What could decide forwarded traffic before (or instead of) natbake's
# rules, in the iptables-save output on stdin. Prints it; returns 1 if any.
function ruleset_preemptions {
  awk '
    { sub(/^\[[0-9]+:[0-9]+\] /, "") }
    /^\*/ { t = substr($0, 2); next }
    /^-A / { k = t " " $2; rule[k, ++n[k]] = $0 }
    function bare(r) { gsub(/ -m comment --comment ("[^"]*"|[^ ]+)/, "", r); return r ~ /^-A [^ ]+ -[jg] [^ ]+$/ }
    function all(r,   c, i, v) {
      c = r; sub(/.* -[jg] /, "", c)
      if (c == "ACCEPT") return 1
      if (c ~ /^(NATBAKE-.*|DROP|REJECT|RETURN)$/ || d++ > 16) return 0
      for (i = 1; i <= n["filter " c]; i++) if (bare(rule["filter " c, i]) && (v = all(rule["filter " c, i])) != "") return v
    }
    function say(m) { print m; bad = 1 }
    END {
      split("filter FORWARD nat PREROUTING nat POSTROUTING", w)
      for (h = 1; h < 7; h += 2) {
        k = w[h] " " w[h + 1]; j = "-A " w[h + 1] " -j NATBAKE-" w[h + 1]
        for (i = 1; i <= n[k] && rule[k, i] != j; i++);
        if (i > 1 && i <= n[k]) say(j " comes after `" rule[k, 1] "`")
      }
      for (i = 1; i <= n["filter FORWARD"]; i++)
        if (bare(r = rule["filter FORWARD", i]) && (d = 0) + all(r)) say("`" r "` accepts all: an open router")
      for (i = 1; i <= n["raw PREROUTING"]; i++)
        if ((r = rule["raw PREROUTING", i]) ~ / -j (NOTRACK|CT .*--notrack)( |$)/) say("raw `" r "` turns off conntrack: no NAT")
      exit bad
    }'
}

# The natbake ipsets as loaded, kept by configure-pat.sh in
# $IPSETS_LOADED: one digest of all their elements with their comments
# (the forward a denied set's port counts for), sorted, counters aside. The check compares it when it reads the ruleset in full, at most
# every 10 minutes (the file's time says when the sets were loaded or
# last found right): a full listing costs about 0.13 s of CPU per set of
# 10,000 elements, too much for every check.
# One digest of the elements of natbake's sets, sorted, counters aside.
function ipset_elements_digest {
  local n
  for n in "${IPSET_NAMES[@]}"; do ipset save "$n" 2>/dev/null; done |
    awk '$1 == "add" { print $2, $3, ($(NF - 1) == "comment") ? $NF : "" }' | LC_ALL=C sort | sha256sum | awk '{ print $1 }'
}

# Keeps the digest of what the sets hold now in $IPSETS_LOADED; returns 1
# if it cannot.
function keep_ipsets_loaded {
  [ "${#IPSET_NAMES[@]}" -gt 0 ] || return 0
  { ipset_elements_digest >"$IPSETS_LOADED"; } 2>/dev/null || { rm -f "$IPSETS_LOADED"; return 1; }
}

# Each forward's counters: its connections from the rules that carry its
# name in their comment, natbake:<name> (its DNAT rules: the nat table
# sees only a connection's first packet, so packets are connections);
# its denied attempts (connections from other sources; none for a public
# forward, printed as -) from the sets natbake-denied-tcp and -udp,
# listed here, whose elements are its public ports with its name as
# their comment (a set that cannot be listed gives - too), or, on the
# legacy AMI, whose ipset has no counters, from a rule per forward,
# natbake:<name>:denied. One line per forward, in the order of the
# names in file $1, from the iptables-save -c output on stdin. The names
# come in a file, not as arguments: 20,000 of them are more than the
# kernel takes as one argument (128 KiB). Counts are printed with %.0f,
# never as awk numbers, which mawk rounds from 2^31 on.
# Per forward, from the iptables-save -c output on stdin, in the order of
# the names in file $1 (one a line): "name connections denied".
function natbake_counters {
  LC_ALL=C awk -v names="$1" '
    FILENAME == names { order[++n] = $1; next }
    $1 == "add" { c = $NF; gsub(/"/, "", c); denied[c] += $5; has_denied[c] = 1; next }
    /^\[[0-9]+:[0-9]+\] -A NATBAKE-DNAT|^\[[0-9]+:[0-9]+\] -A NATBAKE-(TCP|UDP)-/ && match($0, /--comment "?natbake:[a-z0-9-]+(:denied)?"?/) {
      c = substr($0, RSTART, RLENGTH); gsub(/"/, "", c); sub(/^--comment natbake:/, "", c)
      packets = substr($1, 2, index($1, ":") - 2)
      if (sub(/:denied$/, "", c)) { denied[c] += packets; has_denied[c] = 1 } else conn[c] += packets
    }
    END {
      for (i = 1; i <= n; i++) {
        c = order[i]
        printf "%s %.0f %s\n", c, conn[c], (c in has_denied) ? sprintf("%.0f", denied[c]) : "-"
      }
    }' "$1" <(for s in tcp udp; do ipset save "natbake-denied-$s"; done 2>/dev/null) -
}

# Every load of the ruleset restarts the counters of natbake's rules (and
# of FORWARD's policy) from zero. configure-pat.sh records a new id in
# $RELOADED right after each load, under the lock; a reader that kept a
# counter with the id it was read under knows, when the id differs, that
# the counter restarted since, even if it has grown past the kept value.
# No id (never recorded, or it could not be written) reads as "none",
# which differs from any kept id: the counters then count as restarted.
RELOADED=$STATE_DIR/reloaded
# Records that the ruleset was just loaded (its counters restarted).
function mark_reload {
  local id
  { read -r id </proc/sys/kernel/random/uuid; } 2>/dev/null || id=$RANDOM$RANDOM-$$-$SECONDS
  mkdir -p "$STATE_DIR" 2>/dev/null && printf '%s\n' "$id" 2>/dev/null >"$RELOADED.new" &&
    mv -f "$RELOADED.new" "$RELOADED" 2>/dev/null && return 0
  rm -f "$RELOADED.new" "$RELOADED" 2>/dev/null
  return 1
}
# The id of the last load into variable $1 ("none" when unknown).
function reload_id {
  local id=''
  { read -r id <"$RELOADED"; } 2>/dev/null
  [[ $id =~ ^[A-Za-z0-9-]+$ ]] || id=none
  printf -v "$1" '%s' "$id"
}

# Intervals (once a minute: the counters, the metrics) are measured on a
# clock that never steps: the seconds since boot (/proc/uptime), with the
# boot id, since the count starts again at every boot. The wall clock,
# which NTP or an operator may set back, is only for the times shown to
# people. A stamp is "<boot id>/<seconds>", one word.
# The monotonic stamp of now into variable $1: "<boot id>/<seconds since boot>".
function monotonic_stamp {
  local boot='' up=''
  { read -r boot </proc/sys/kernel/random/boot_id; } 2>/dev/null
  { read -r up _ </proc/uptime; } 2>/dev/null
  printf -v "$1" '%s/%s' "${boot:-unknown}" "${up%%.*}"
}
# Seconds from stamp $2 to stamp $3 into variable $1; fails when they are
# of different boots or not stamps.
function stamp_seconds {
  [[ ${2:-} =~ ^[0-9a-z-]+/[0-9]+$ && ${3:-} =~ ^[0-9a-z-]+/[0-9]+$ ]] || return 1
  [ "${2%/*}" = "${3%/*}" ] || return 1
  printf -v "$1" '%s' $(( ${3##*/} - ${2##*/} ))
}


# Bytes of forwarded connections, from the iptables-save -c output on stdin:
# "in out" (sent by the clients, sent back to them).
function forwarded_bytes {
  awk -v fin="$FORWARDED_IN" -v fout="$FORWARDED_OUT" '
    /^\[[0-9]+:[0-9]+\] -A NATBAKE-BYTES / {
      split(substr($1, 2, length($1) - 2), pb, ":")
      if (index($0, fin)) b_in += pb[2]
      else if (index($0, fout)) b_out += pb[2]
    }
    END { printf "%.0f %.0f\n", b_in, b_out }'
}

# Network devices, as the kernel lists them.
SYSFS_NET=/sys/class/net

# ENA (the Elastic Network Adapter driver, every Nitro instance) counts
# packets it dropped or queued because the instance went over a limit of
# its type: bandwidth in and out, packets per second, tracked connections,
# link-local traffic (DNS, metadata). Older drivers lack the counters, and
# other drivers have none: then nothing is printed.
# ENA's allowance counters (packets dropped or queued over the instance's
# limits), one "device counter value" line each; nothing without ENA.
function ena_allowance {
  local dev
  command -v ethtool >/dev/null 2>&1 || return 0
  for dev in "$SYSFS_NET"/*; do
    [ "$(basename "$(readlink -f "$dev/device/driver" 2>/dev/null)")" = ena ] || continue
    ethtool -S "${dev##*/}" 2>/dev/null |
      awk -v dev="${dev##*/}" '$1 ~ /^[a-z_]+_allowance_exceeded:$/ && $2 ~ /^[0-9]+$/ { print dev, substr($1, 1, length($1) - 1), $2 }'
  done
}

# Packets dropped by FORWARD's policy, from the iptables-save -c output on
# stdin: "packets bytes".
function forward_drops {
  awk '/^\*/ { t = substr($0, 2) }
    t == "filter" && $1 == ":FORWARD" { gsub(/[][]/, "", $3); split($3, pb, ":"); print pb[1], pb[2]; exit }'
}
