#!/usr/bin/env python3
"""Breaks the instance scripts one function at a time and checks that the
shell unit tests catch each break: a test that passes whatever the code
does proves nothing.

Run from the repository root after `cargo test --test it --no-run`:

    python3 tests/it/shell_units/mutants.py [FILTER]

For each mutant below (a piece of code, what replaces it, the tests that
must then fail) it finds the one file that holds the piece, among the
instance scripts (`instance/*.sh`) and the templates (`natbake templates
dump`), writes that file with the change into a scratch folder, runs the
named tests with NATBAKE_UNIT_INSTANCE or NATBAKE_UNIT_TEMPLATES pointing
there, and records whether they failed. The unchanged code must pass
first (all of them; with FILTER, the tests of the mutants whose name
contains it). Exits 1 if any mutant survives.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

# (name, original text, replacement, test filter)
MUTANTS = [
    ("view keeps rule counters",
     '    { sub(/^\\[[0-9]+:[0-9]+\\] /, "") }\n    /^-A NATBAKE-/',
     "    /^-A NATBAKE-/",
     "shell_units::ruleset::the_view_ignores"),
    ("view takes every policy",
     'else if (index(builtins, " " table ":" chain " ")) print',
     "else print",
     "shell_units::ruleset::the_view_ignores"),
    ("view numbers rules per table",
     '++n[table " " $2]', "++n[table]",
     "shell_units::ruleset::the_view_ignores"),
    ("differences swap their signs",
     "s/^\\t/+ /; t; s/^/- /", "s/^\\t/- /; t; s/^/+ /",
     "shell_units::ruleset::every_change"),
    ("builtins only ACCEPT policies",
     "/^:[A-Z]+ (ACCEPT|DROP) /", "/^:[A-Z]+ (ACCEPT) /",
     "shell_units::ruleset::the_builtins"),
    ("scratch gets whole sets",
     "awk '\\''$1 == \"create\"'\\'' \"$2\"", "cat \"$2\"",
     "shell_units::ruleset::ruleset_differences_reads"),
    ("stale view kept on a full /run",
     'rm -f "$VIEW_CACHE.new" "$VIEW_CACHE.key.new" "$VIEW_CACHE" "$VIEW_CACHE.key"',
     'rm -f "$VIEW_CACHE.new" "$VIEW_CACHE.key.new"',
     "shell_units::ruleset::a_view_that_cannot"),
    ("a refused read-back is drift",
     "    return 2\n  }\n  loaded=", "    return 1\n  }\n  loaded=",
     "shell_units::ruleset::ruleset_differences_that_cannot"),
    ("cached view of another ruleset",
     '[ "$key" = "$RULES_SHA256" ] || return 2', ":",
     "shell_units::ruleset::cached_differences"),
    ("invariants take any table's policy",
     'table == "filter" && $1 == ":FORWARD" && $2 == "DROP"',
     '$1 == ":FORWARD" && $2 == "DROP"',
     "shell_units::ruleset::the_invariants"),
    ("a comment counts as a condition",
     'gsub(/ -m comment --comment ("[^"]*"|[^ ]+)/, "", r); ', "",
     "shell_units::ruleset::preemptions"),
    ("RETURN does not decide",
     "^(NATBAKE-.*|DROP|REJECT|RETURN)$", "^(NATBAKE-.*|DROP|REJECT)$",
     "shell_units::ruleset::preemptions"),
    ("chains in a loop are followed forever",
     " || d++ > 16", "",
     "shell_units::ruleset::preemptions"),
    ("counters anywhere in the header",
     '[[ " ${line#Header: } " != *" counters "* ]]',
     '[[ " ${line#Header: } " != *"counters"* ]]',
     "shell_units::ipsets::ipset_problems_name"),
    ("old ipset counted as empty",
     "entries=$(ipset list \"$n\" 2>/dev/null | sed '1,/^Members:/d' | grep -c .)",
     "entries=0",
     "shell_units::ipsets::ipset_problems_name"),
    ("swapped elements not found",
     '{ echo "the ipsets hold other elements than loaded"; problems=1; }', ":",
     "shell_units::ipsets::ipset_problems_compare"),
    ("digest includes counters",
     "awk '$1 == \"add\" { print $2, $3 }'", "awk '$1 == \"add\"'",
     "shell_units::ipsets::the_elements_digest"),
    ("digest unsorted",
     "awk '$1 == \"add\" { print $2, $3 }' | LC_ALL=C sort |",
     "awk '$1 == \"add\" { print $2, $3 }' |",
     "shell_units::ipsets::the_elements_digest"),
    ("digest ignores the set",
     "awk '$1 == \"add\" { print $2, $3 }'", "awk '$1 == \"add\" { print $3 }'",
     "shell_units::ipsets::the_elements_digest"),
    ("stale digest kept",
     '|| { rm -f "$IPSETS_LOADED"; return 1; }', "|| { return 1; }",
     "shell_units::ipsets::a_digest_that_cannot"),
    ("sets' file not checked",
     ' "$IPSETS $IPSETS_SHA256 ipsets"', "",
     "shell_units::ipsets::installed_files"),
    ("forward counts as awk numbers",
     'printf "%s %.0f %s\\n", c, conn[c]', 'printf "%s %s %s\\n", c, conn[c]',
     "shell_units::counters::per_forward"),
    ("log prefixes count as forwards",
     'match($0, /--comment "?natbake:[a-z0-9-]+(:denied)?"?/) {\n'
     '      c = substr($0, RSTART, RLENGTH); gsub(/"/, "", c); sub(/^--comment natbake:/, "", c)',
     'match($0, /"?natbake:[a-z0-9-]+(:denied)?"?/) {\n'
     '      c = substr($0, RSTART, RLENGTH); gsub(/"/, "", c); sub(/^natbake:/, "", c)',
     "shell_units::counters::per_forward"),
    ("grouped chains not counted",
     "|^\\[[0-9]+:[0-9]+\\] -A NATBAKE-(TCP|UDP)-/", "/",
     "shell_units::counters::forwards_in_grouped"),
    ("bytes as awk numbers",
     'END { printf "%.0f %.0f\\n", b_in, b_out }', "END { print b_in, b_out }",
     "shell_units::counters::forwarded_bytes"),
    ("drops of any table",
     't == "filter" && $1 == ":FORWARD"', '$1 == ":FORWARD"',
     "shell_units::counters::forward_drops"),
    ("a reload does not restart counts",
     "(restarts && old_reload[key] != reload) || ", "",
     "shell_units::metrics::reloads_and_restarts"),
    ("a reload restarts ENA's counters",
     'delta("ena " f[1], f[2], 0)', 'delta("ena " f[1], f[2], 1)',
     "shell_units::metrics::reloads_and_restarts"),
    ("a smaller counter sent as a difference",
     " || cur + 0 < old[key] + 0", "",
     "shell_units::metrics::reloads_and_restarts"),
    ("broken state lines read",
     'if (split(line, f, " ") != 4) continue', 'split(line, f, " ")',
     "shell_units::metrics::broken_state"),
    ("unsent datums committed",
     'FNR <= sent && $1 != "-"', '$1 != "-"',
     "shell_units::metrics::deltas_are_sent"),
    ("deltas as awk numbers",
     'return sprintf("%.0f", cur - old[key])', "return cur - old[key]",
     "shell_units::metrics::deltas_are_sent"),
    ("stamps of two boots compared",
     '[ "${2%/*}" = "${3%/*}" ] || return 1', ":",
     "shell_units::time_and_log::seconds_between"),
    ("stamps with fractions",
     'printf -v "$1" \'%s/%s\' "${boot:-unknown}" "${up%%.*}"',
     'printf -v "$1" \'%s/%s\' "${boot:-unknown}" "${up}"',
     "shell_units::time_and_log::a_stamp_is"),
    ("any reload id read",
     "[[ $id =~ ^[A-Za-z0-9-]+$ ]] || id=none", '[ -n "$id" ] || id=none',
     "shell_units::time_and_log::reload_ids"),
    ("an old reload id kept",
     '  rm -f "$RELOADED.new" "$RELOADED" 2>/dev/null\n  return 1', "  return 1",
     "shell_units::time_and_log::reload_ids"),
    ("log splits at newlines",
     "local line=${1//$'\\n'/ }", "local line=$1",
     "shell_units::time_and_log::log_lines"),
    ("log message read as options",
     'logger -t natbake -- "$line"', 'logger -t natbake "$line"',
     "shell_units::time_and_log::log_lines"),
    ("log_lines of nothing logs",
     '[ "$#" -gt 0 ] || return 0\n', "",
     "shell_units::time_and_log::log_lines"),
    ("JSON lets a control through",
     "if (b < 32 || b == 127) {", "if (b < 31 || b == 127) {",
     "shell_units::status::status_prints"),
    ("JSON lets DEL through",
     "if (b < 32 || b == 127) {", "if (b < 32) {",
     "shell_units::status::status_prints"),
    ("continuation bytes unchecked",
     "if (b2 < 128 || b2 > 191) ok = 0", "",
     "shell_units::status::status_prints"),
    ("overlong forms pass",
     "(b == 224 && b2 < 160) || ", "",
     "shell_units::status::status_prints"),
    ("surrogates pass",
     "(b == 237 && b2 > 159) || ", "",
     "shell_units::status::status_prints"),
    ("past U+10FFFF passes",
     " || (b == 244 && b2 > 143)", "",
     "shell_units::status::status_prints"),
    ("quotes unescaped",
     '(c == "\\"" || c == "\\\\")', '(c == "\\\\")',
     "shell_units::status::status_prints"),
    ("C1 controls raw",
     "else if (b == 194 && b2 < 160)", "else if (0)",
     "shell_units::status::status_prints"),
    ("the table shows bad bytes raw",
     r'if (!ok) out = out (mode == "json" ? "\\ufffd" : sprintf("\\x%02x", b))',
     r'if (!ok) out = out (mode == "json" ? "\\ufffd" : c)',
     "shell_units::status::status_prints"),
    ("a range's bytes are its first port's",
     "for (p = f[4]; p <= f[5]; p++)", "for (p = f[4]; p <= f[4]; p++)",
     "shell_units::status::status_reports"),
    ("a setting natbake does not know is skipped",
     'if (!(k in re)) no("`" k "` is not a setting natbake knows")',
     "if (!(k in re)) next",
     "shell_units::site_conf::hostile"),
    ("a setting twice is taken",
     'if (k in val) no("`" k "` is there twice")', "",
     "shell_units::site_conf::hostile"),
    ("values unchecked",
     "if (v !~ re[k] || ", "if (0 && v !~ re[k] || ",
     "shell_units::site_conf::hostile"),
    ("missing settings allowed",
     "if (((k = key[i]) in val) != (need[k] == \"\" || val[need[k]] == \"yes\"))",
     "if (0)",
     "shell_units::site_conf::hostile"),
    ("settings evaluated",
     "printf -v \"${key^^}\" '%s' \"${values[i++]}\"",
     "eval \"${key^^}=\\\"${values[i++]}\\\"\"",
     "shell_units::site_conf::text_values"),
    ("address parts read as octal",
     "echo $(( (10#$1 << 24) + (10#$2 << 16) + (10#$3 << 8) + 10#$4 ))",
     "echo $(( ($1 << 24) + ($2 << 16) + ($3 << 8) + $4 ))",
     "shell_units::cidr::addresses"),
    ("address parts past 255",
     "[ $(( 10#$part )) -le 255 ] || return 1", "[ $(( 10#$part )) -le 256 ] || return 1",
     "shell_units::cidr::only_a_network"),
    ("masks past 32",
     "[ $(( 10#${BASH_REMATCH[5]} )) -le 32 ]", "[ $(( 10#${BASH_REMATCH[5]} )) -le 33 ]",
     "shell_units::cidr::only_a_network"),
    ("a wider network within a narrower one",
     '[ "$inner_len" -ge "$outer_len" ] || return 1', ":",
     "shell_units::cidr::a_network_lies"),
    ("the mask a bit short",
     "(0xFFFFFFFF << (32 - outer_len))", "(0xFFFFFFFF << (31 - outer_len))",
     "shell_units::cidr::a_network_lies"),
    ("a finding's newlines kept",
     '"${value//$\'\\n\'/; }"', '"$value"',
     "shell_units::status::the_check_s_findings"),
    ("findings of the same name kept twice",
     '[ -n "${given[${line%%=*}]:-}" ] || printf', "printf",
     "shell_units::status::the_check_s_findings"),
    ("a stamp trusted whoever can write it",
     "[ $(( 16#$mode & 8#22 )) -eq 0 ]", ":",
     "shell_units::site_conf_stamp::a_stamp_that"),
    ("a stamp of any kind of file",
     '[ $(( 16#$mode >> 12 )) -eq "$2" ] || return 1', ":",
     "shell_units::site_conf_stamp::a_stamp_that"),
    ("a stamp with the modification time for the change time",
     "stat -c '%u %f %Z %d %i %s %y %z'", "stat -c '%u %f %Y %d %i %s %y %y'",
     "shell_units::site_conf_stamp::a_stamp_that"),
    ("a fresh file stamped",
     '[ $(( changed + 1 )) -lt "$start" ]', ":",
     "shell_units::site_conf_stamp::a_stamp_that"),
    ("a stamp of another library",
     '[ "$kept_self" = "${SITE_CONF_STAT[1]}" ] &&', "",
     "shell_units::site_conf_stamp::a_stamp_that"),
    ("a stamp of another file",
     '[ "$kept_file" = "${SITE_CONF_STAT[0]}" ] &&', "",
     "shell_units::site_conf_stamp::a_stamp_that"),
    ("a stamp never used",
     'load_site_conf "$file" "$kept"', 'load_site_conf "$file"',
     "shell_units::site_conf_stamp::a_checked_file"),
    ("named lines after the forwards skipped",
     "quick=$(( 2 - ${2#* } ))", "quick=2",
     "shell_units::site_conf_stamp::a_stamped_load"),
    ("named lines unchecked with a stamp",
     "quick && /^(forward|summary)=/", "quick",
     "shell_units::site_conf_stamp::a_checked_file"),
    ("the generation read again when verified",
     '{ [ -n "${1:-}" ] || [ "$(ruleset_generation)" = "$before" ]; }',
     '[ "$(ruleset_generation)" = "$before" ]',
     "shell_units::health_generation::the_generation"),
    ("a verified generation taken as read",
     '{ [ -n "${1:-}" ] || [ "$(ruleset_generation)" = "$before" ]; }', ":",
     "shell_units::health_generation::the_generation"),
    ("the failover look without the generation",
     "gen=(--generation)", "gen=()",
     "shell_units::health_generation::with_failover"),
    ("the failover look made twice",
     '[ -n "${FLOATING_HERE:-}" ] || floating_look', "floating_look",
     "shell_units::health_generation::with_failover"),
]


def run_tests(filter_, env):
    done = subprocess.run(
        ["cargo", "test", "-q", "--test", "it", filter_],
        env=dict(os.environ, **env), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    return done.returncode == 0, done.stdout


def main():
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    natbake = os.path.join("target", "debug", "natbake")
    work = tempfile.mkdtemp(prefix="natbake-mutants-")
    try:
        # Where code lives: the instance scripts (replacing the rendered
        # copies) and the templates (rendered with --templates).
        templates = os.path.join(work, "templates")
        subprocess.run([natbake, "templates", "dump", templates], check=True,
                       stdout=subprocess.DEVNULL)
        sources = {}
        if os.path.isdir("instance"):
            for name in sorted(os.listdir("instance")):
                if name.endswith(".sh"):
                    sources[os.path.join("instance", name)] = "NATBAKE_UNIT_INSTANCE"
        for name in sorted(os.listdir(templates)):
            if name.endswith(".hbs"):
                sources[os.path.join(templates, name)] = "NATBAKE_UNIT_TEMPLATES"
        chosen = [m for m in MUTANTS if only in m[0]]
        for filter_ in ["shell_units"] if not only else sorted({m[3] for m in chosen}):
            passed, out = run_tests(filter_, {})
            if not passed:
                sys.exit(f"the unchanged code fails {filter_}:\n{out}")
        survivors = []
        for name, old, new, filter_ in chosen:
            holders = [f for f in sources if open(f).read().count(old) > 0]
            counts = [open(f).read().count(old) for f in holders]
            if counts != [1]:
                survivors.append(name)
                print(f"{'MISSING':8} {name}: the text to change is in {holders} {counts} times")
                continue
            source = holders[0]
            mutant = os.path.join(work, "mutant")
            shutil.rmtree(mutant, ignore_errors=True)
            if sources[source] == "NATBAKE_UNIT_TEMPLATES":
                shutil.copytree(templates, mutant)
            else:
                os.mkdir(mutant)
            with open(os.path.join(mutant, os.path.basename(source)), "w") as f:
                f.write(open(source).read().replace(old, new))
            started = time.monotonic()
            passed, _ = run_tests(filter_, {sources[source]: mutant})
            verdict = "SURVIVED" if passed else "caught"
            print(f"{verdict:8} {name} ({os.path.basename(source)}; "
                  f"{filter_}, {time.monotonic() - started:.1f} s)", flush=True)
            if passed:
                survivors.append(name)
        if survivors:
            sys.exit(f"{len(survivors)} mutant(s) not caught: {', '.join(survivors)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
