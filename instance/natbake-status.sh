#!/bin/bash
# natbake-status: what a natbake NAT instance is doing.
# Comments: natbake's instance/ folder, or `natbake templates dump DIR`.
#
# The same for every site: the site's forwards are read from
# /etc/natbake/site.conf.
#
#   natbake-status          a table of forwards, conntrack, drops, health
#   natbake-status --json   the same as one JSON object, for machines
#
# Every number comes from counters the kernel keeps, read with one
# iptables-save: per forward, new connections (its DNAT rules: the nat
# table sees only a connection's first packet) and denied attempts (per
# public port in the ipsets natbake-denied-*; "-" for a public forward); for all forwards together, bytes in (from the
# clients) and out (back to them). Per forward, bytes in and out come from
# the counters of the ipsets named ipset_in and ipset_out in site.conf, one element per target
# address, protocol and port: forwards that share a target address,
# protocol and port share those bytes, and are marked so ("*" in the
# table, bytes_shared in JSON). Counters start from zero whenever
# configure-pat.sh loads the ruleset and the sets. "Last seen" is the last run of
# natbake-health that found a forward's counters grown; health and
# repairs are natbake-health's findings. Also: the conntrack table's
# fill, packets FORWARD dropped by its policy, and the ENA driver's
# allowance-exceeded counters where the interfaces have them (ethtool -S).

# Usage as below. Sourced, it only defines its functions (main runs when
# it is executed).

LIB=/usr/local/lib/natbake/natbake-lib.sh

function fail { echo "natbake-status: $1" >&2; exit 1; }

function main {
  set -u
  PATH="/usr/sbin:/sbin:/usr/bin:/bin"
  export PATH

  # shellcheck source=/dev/null
  . "$LIB" || { echo "natbake-status: cannot read $LIB" >&2; exit 1; }
  load_site_conf || fail "$SITE_CONF_ERROR"

  # One pass of awk makes the whole output from files, at any number of
  # forwards: no program per forward (10,000 forwards in well under a
  # second), and nothing large on a command line, where the kernel takes at
  # most 128 KiB per argument. Any step that fails stops the run with exit
  # 1 and a message; nothing is printed half.
  json=no
  case "${1:-}" in
    '') ;;
    --json) json=yes ;;
    -h | --help) echo "usage: natbake-status [--json]"; exit 0 ;;
    *) echo "usage: natbake-status [--json]" >&2; exit 2 ;;
  esac
  [ "$(id -u)" -eq 0 ] || { echo "natbake-status must run as root (it reads the firewall's counters)." >&2; exit 1; }

  tmp=$(mktemp -d "${TMPDIR:-/tmp}/natbake-status.XXXXXX") || fail "cannot make a scratch folder"
  trap 'rm -rf "$tmp"' EXIT

  iptables-save -c >"$tmp/saved" 2>"$tmp/err" || fail "iptables-save failed: $(tr '\n' ' ' <"$tmp/err")"
  printf -v now '%(%s)T' -1
  # Per forward, in the spec's order: name, what its bytes are counted on
  # (target address, protocol, first and last target port), and whether
  # another forward counts some of the same (shared) or not (own).
  site_conf_records forward >"$tmp/counted" || fail "cannot write to $tmp"
  : >"$tmp/counters"
  if [ "$FORWARD_COUNT" -gt 0 ]; then
    natbake_counters "$tmp/counted" <"$tmp/saved" >"$tmp/counters" || fail "cannot read the forwards' counters from iptables-save"
  fi
  # Each forward's bytes: the sum of its elements' counters, from one
  # listing of each set (ipset save prints "add SET ELEMENT packets N bytes
  # M"). A set that cannot be listed gives "-" for every forward; an os
  # without sets counts bytes for all forwards together only.
  bytes=none
  : >"$tmp/set-in"
  : >"$tmp/set-out"
  if [ "${#IPSET_NAMES[@]}" -gt 0 ]; then
    bytes=sets
    ipset save "$IPSET_IN" >"$tmp/set-in" 2>/dev/null || echo missing >"$tmp/set-in"
    ipset save "$IPSET_OUT" >"$tmp/set-out" 2>/dev/null || echo missing >"$tmp/set-out"
  fi
  read -r bytes_in bytes_out < <(forwarded_bytes <"$tmp/saved")
  read -r drop_packets drop_bytes < <(forward_drops <"$tmp/saved")
  ct_count='' ct_max=''
  { read -r ct_count </proc/sys/net/netfilter/nf_conntrack_count; } 2>/dev/null
  { read -r ct_max </proc/sys/net/netfilter/nf_conntrack_max; } 2>/dev/null
  # ENA's allowance counters: packets the instance's limits dropped or queued.
  ena_allowance >"$tmp/ena" || fail "cannot write to $tmp"

  # Text from files (the health check's reasons quote rule comments, which
  # anyone with root can write; interface names may hold any byte but "/"
  # and blanks) is cleaned before it is printed: in JSON, control
  # characters escaped and bytes that are not UTF-8 replaced by U+FFFD, so
  # the output is always valid JSON in UTF-8; in the table, control
  # characters (C0, DEL, C1) and bytes that are not UTF-8 shown as \xNN, so
  # no raw escape reaches the terminal. Counts are printed as the kernel
  # wrote them, or with %.0f: never as awk numbers, which mawk rounds from
  # 2^31 on. clean() takes as UTF-8 a lead byte and 1 to 3 continuation
  # bytes, no overlong form, no surrogate, nothing above U+10FFFF;
  # set_bytes() reads the bytes of the elements of one set listing (file f)
  # into b[ELEMENT]. (Comments inside the awk program would be installed:
  # they are kept here, where the installer strips them.)
  LC_ALL=C awk -v json="$json" -v site="$SITE" -v now="$now" -v bytes="$bytes" \
    -v health="$HEALTH_STATE" -v seen="$SEEN_STATE" -v counted="$tmp/counted" -v counters="$tmp/counters" \
    -v set_in="$tmp/set-in" -v set_out="$tmp/set-out" -v ena="$tmp/ena" \
    -v bytes_in="$bytes_in" -v bytes_out="$bytes_out" -v drop_packets="$drop_packets" -v drop_bytes="$drop_bytes" \
    -v ct_count="$ct_count" -v ct_max="$ct_max" '
    function clean(s, mode,   out, i, n, c, b, b2, need, j, ok) {
      if (s !~ /[^ -~]/ && (mode != "json" || s !~ /["\\]/)) return s
      out = ""; n = length(s)
      for (i = 1; i <= n; i++) {
        c = substr(s, i, 1); b = ord[c]
        if (b >= 32 && b < 127) { out = out ((mode == "json" && (c == "\"" || c == "\\")) ? "\\" c : c); continue }
        if (b < 32 || b == 127) { out = out sprintf(mode == "json" ? "\\u%04x" : "\\x%02x", b); continue }
        need = (b >= 194 && b <= 223) ? 1 : (b >= 224 && b <= 239) ? 2 : (b >= 240 && b <= 244) ? 3 : 0
        ok = need > 0 && i + need <= n
        for (j = 1; ok && j <= need; j++) { b2 = ord[substr(s, i + j, 1)]; if (b2 < 128 || b2 > 191) ok = 0 }
        if (ok) {
          b2 = ord[substr(s, i + 1, 1)]
          if ((b == 224 && b2 < 160) || (b == 237 && b2 > 159) || (b == 240 && b2 < 144) || (b == 244 && b2 > 143)) ok = 0
        }
        if (!ok) out = out (mode == "json" ? "\\ufffd" : sprintf("\\x%02x", b))
        else if (b == 194 && b2 < 160) { out = out (mode == "json" ? sprintf("\\u%04x", b2) : sprintf("\\x%02x\\x%02x", b, b2)); i++ }
        else { out = out substr(s, i, need + 1); i += need }
      }
      return out
    }
    function jstr(s) { return "\"" clean(s, "json") "\"" }
    function jtext(s) { return s == "" ? "null" : jstr(s) }
    function jnum(s) { return (s ~ /^[0-9]+(\.[0-9]+)?$/) ? s : "null" }
    function when(t) { return (t ~ /^[0-9]+$/) ? strftime("%Y-%m-%d %H:%M:%S", t) : "-" }
    function fail(m) { print "natbake-status: " m > "/dev/stderr"; failed = 1; exit 1 }
    function set_bytes(f, b,   line, x, n, i) {
      while ((getline line < f) > 0) {
        if (line == "missing") return 0
        n = split(line, x, " ")
        if (x[1] != "add") continue
        for (i = 4; i < n; i++) if (x[i] == "bytes") b[x[3]] = x[i + 1]
      }
      return 1
    }
    BEGIN {
      for (i = 1; i < 256; i++) ord[sprintf("%c", i)] = i
      while ((getline line < health) > 0) {
        if (!(k = index(line, "="))) continue
        h[substr(line, 1, k - 1)] = substr(line, k + 1)
      }
      while ((getline line < seen) > 0) { split(line, f, " "); if (f[1] != "#reload") last[f[1]] = f[4] }
      while ((getline line < counters) > 0) {
        if (split(line, f, " ") != 3) fail("cannot read the counters of a forward: " clean(line, "text"))
        conn[f[1]] = f[2]; den[f[1]] = f[3]
      }
      if (bytes == "sets") { have_in = set_bytes(set_in, bin); have_out = set_bytes(set_out, bout) }
      n = 0
      while ((getline line < counted) > 0) {
        if (split(line, f, " ") < 6) continue
        name = f[1]
        if (!(name in conn)) fail("no counters read for the forward " name)
        i_b = "-"; o_b = "-"
        if (bytes == "sets") {
          ib = 0; ob = 0
          for (p = f[4]; p <= f[5]; p++) { k = f[2] "," f[3] ":" p; ib += bin[k]; ob += bout[k] }
          if (have_in) i_b = sprintf("%.0f", ib)
          if (have_out) o_b = sprintf("%.0f", ob)
        }
        fw[++n] = name; fin[n] = i_b; fout[n] = o_b; fshared[n] = (f[6] == "shared")
      }
      nena = 0
      while ((getline line < ena) > 0) if (split(line, f, " ") == 3) { edev[++nena] = f[1]; ekey[nena] = f[2]; eval[nena] = f[3] }
      fill = (ct_max + 0 > 0) ? sprintf("%.1f", 100 * ct_count / ct_max) : "0.0"
      if (json == "yes") {
        printf "{\"site\":%s,\"time\":%s,", jstr(site), now
        printf "\"health\":{\"state\":%s,\"checked\":%s,\"compared\":%s,\"last_repair\":%s,\"last_repair_reason\":%s,\"last_failure\":%s,\"last_failure_reason\":%s},", \
          jstr(("state" in h) ? h["state"] : "unknown"), jnum(h["checked"]), jnum(h["compared"]), jnum(h["last_repair"]), \
          jtext(h["last_repair_reason"]), jnum(h["last_failure"]), jtext(h["last_failure_reason"])
        printf "\"conntrack\":{\"entries\":%s,\"max\":%s,\"fill_percent\":%s},", jnum(ct_count), jnum(ct_max), fill
        printf "\"forwarded_bytes\":{\"in\":%s,\"out\":%s},", jnum(bytes_in), jnum(bytes_out)
        printf "\"forward_drops\":{\"packets\":%s,\"bytes\":%s},", jnum(drop_packets), jnum(drop_bytes)
        printf "\"ena\":["
        for (i = 1; i <= nena; i++)
          printf "%s{\"interface\":%s,\"counter\":%s,\"value\":%s}", (i > 1 ? "," : ""), jstr(edev[i]), jstr(ekey[i]), jnum(eval[i])
        printf "],\"forwards\":["
        for (i = 1; i <= n; i++)
          printf "%s{\"name\":%s,\"connections\":%s,\"denied\":%s,\"bytes_in\":%s,\"bytes_out\":%s,\"bytes_shared\":%s,\"last_seen\":%s}", \
            (i > 1 ? "," : ""), jstr(fw[i]), jnum(conn[fw[i]]), jnum(den[fw[i]]), jnum(fin[i]), jnum(fout[i]), \
            (fshared[i] ? "true" : "false"), jnum(last[fw[i]])
        printf "]}\n"
        exit 0
      }
      printf "natbake site %s, %s\n", site, when(now)
      printf "health: %s, checked %s, ruleset read %s\n", \
        ("state" in h && h["state"] != "") ? clean(h["state"], "text") : "unknown (natbake-health has not run)", when(h["checked"]), when(h["compared"])
      printf "last repair: %s%s\n", when(h["last_repair"]), h["last_repair_reason"] != "" ? " (" clean(h["last_repair_reason"], "text") ")" : ""
      printf "last failure: %s%s\n", when(h["last_failure"]), h["last_failure_reason"] != "" ? " (" clean(h["last_failure_reason"], "text") ")" : ""
      printf "conntrack: %s of %s entries (%s%%)\n", clean(ct_count, "text"), clean(ct_max, "text"), fill
      printf "forwarded bytes: %s in, %s out\n", bytes_in, bytes_out
      printf "FORWARD dropped: %s packets, %s bytes\n", drop_packets, drop_bytes
      for (i = 1; i <= nena; i++) printf "ENA %s %s: %s\n", clean(edev[i], "text"), clean(ekey[i], "text"), clean(eval[i], "text")
      if (n == 0) exit 0
      printf "\n%-24s %12s %10s %16s %16s  %s\n", "FORWARD", "CONNECTIONS", "DENIED", "BYTES IN", "BYTES OUT", "LAST SEEN"
      any_shared = 0
      for (i = 1; i <= n; i++) {
        mark = fshared[i] ? "*" : ""
        if (fshared[i]) any_shared = 1
        printf "%-24s %12s %10s %16s %16s  %s\n", fw[i], conn[fw[i]], den[fw[i]], fin[i] mark, fout[i] mark, when(last[fw[i]])
      }
      if (any_shared)
        print "* bytes shared with another forward to the same target address, protocol and port: they count the traffic of all of them."
    }' >"$tmp/out" || fail "cannot make the report (see above)"
  # A standby pair's role, peer, sync and last takeover: natbake-standby
  # adds them to the report (only standby sites carry that code).
  if [ "$STANDBY" = yes ]; then /usr/local/sbin/natbake-standby status $json <"$tmp/out"; else cat "$tmp/out"; fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
