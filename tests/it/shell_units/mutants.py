#!/usr/bin/env python3
"""Breaks the instance scripts one function at a time and checks that the
shell unit tests catch each break: a test that passes whatever the code
does proves nothing.

Run from the repository root after `cargo test --test it --no-run`:

    python3 tests/it/shell_units/mutants.py [FILTER]

For each mutant below (a file of `natbake templates dump`, a piece of it
and what replaces it, the tests that must then fail), it writes the
templates with that one change into a scratch folder, runs the named tests
with NATBAKE_UNIT_TEMPLATES pointing there, and records whether they
failed. The unchanged templates must pass first. Exits 1 if any mutant
survives. FILTER keeps the mutants whose name contains it.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

LIB = "natbake-lib.sh.hbs"
STATUS = "natbake-status.sh.hbs"

# (name, file, original text, replacement, test filter)
MUTANTS = [
    ("view keeps rule counters", LIB,
     '    { sub(/^\\[[0-9]+:[0-9]+\\] /, "") }\n    /^-A NATBAKE-/',
     "    /^-A NATBAKE-/",
     "shell_units::ruleset::the_view_ignores"),
    ("view takes every policy", LIB,
     'else if (index(builtins, " " table ":" chain " ")) print',
     "else print",
     "shell_units::ruleset::the_view_ignores"),
    ("view numbers rules per table", LIB,
     '++n[table " " $2]', "++n[table]",
     "shell_units::ruleset::the_view_ignores"),
    ("differences swap their signs", LIB,
     "s/^\\t/+ /; t; s/^/- /", "s/^\\t/- /; t; s/^/+ /",
     "shell_units::ruleset::every_change"),
    ("builtins only ACCEPT policies", LIB,
     "/^:[A-Z]+ (ACCEPT|DROP) /", "/^:[A-Z]+ (ACCEPT) /",
     "shell_units::ruleset::the_builtins"),
    ("scratch gets whole sets", LIB,
     "awk '\\''$1 == \"create\"'\\'' \"$2\"", "cat \"$2\"",
     "shell_units::ruleset::ruleset_differences_reads"),
    ("stale view kept on a full /run", LIB,
     'rm -f "$VIEW_CACHE.new" "$VIEW_CACHE.key.new" "$VIEW_CACHE" "$VIEW_CACHE.key"',
     'rm -f "$VIEW_CACHE.new" "$VIEW_CACHE.key.new"',
     "shell_units::ruleset::a_view_that_cannot"),
    ("a refused read-back is drift", LIB,
     "    return 2\n  }\n  loaded=", "    return 1\n  }\n  loaded=",
     "shell_units::ruleset::ruleset_differences_that_cannot"),
    ("cached view of another ruleset", LIB,
     '[ "$key" = "$RULES_SHA256" ] || return 2', ":",
     "shell_units::ruleset::cached_differences"),
    ("invariants take any table's policy", LIB,
     'table == "filter" && $1 == ":FORWARD" && $2 == "DROP"',
     '$1 == ":FORWARD" && $2 == "DROP"',
     "shell_units::ruleset::the_invariants"),
    ("a comment counts as a condition", LIB,
     'gsub(/ -m comment --comment ("[^"]*"|[^ ]+)/, "", r); ', "",
     "shell_units::ruleset::preemptions"),
    ("RETURN does not decide", LIB,
     "^(NATBAKE-.*|DROP|REJECT|RETURN)$", "^(NATBAKE-.*|DROP|REJECT)$",
     "shell_units::ruleset::preemptions"),
    ("chains in a loop are followed forever", LIB,
     " || d++ > 16", "",
     "shell_units::ruleset::preemptions"),
    ("counters anywhere in the header", LIB,
     '[[ " ${line#Header: } " != *" counters "* ]]',
     '[[ " ${line#Header: } " != *"counters"* ]]',
     "shell_units::ipsets::ipset_problems_name"),
    ("old ipset counted as empty", LIB,
     "entries=$(ipset list \"$n\" 2>/dev/null | sed '1,/^Members:/d' | grep -c .)",
     "entries=0",
     "shell_units::ipsets::ipset_problems_name"),
    ("swapped elements not found", LIB,
     '{ echo "the ipsets hold other elements than loaded"; problems=1; }', ":",
     "shell_units::ipsets::ipset_problems_compare"),
    ("digest includes counters", LIB,
     "awk '$1 == \"add\" { print $2, $3 }'", "awk '$1 == \"add\"'",
     "shell_units::ipsets::the_elements_digest"),
    ("digest unsorted", LIB,
     "awk '$1 == \"add\" { print $2, $3 }' | LC_ALL=C sort |",
     "awk '$1 == \"add\" { print $2, $3 }' |",
     "shell_units::ipsets::the_elements_digest"),
    ("digest ignores the set", LIB,
     "awk '$1 == \"add\" { print $2, $3 }'", "awk '$1 == \"add\" { print $3 }'",
     "shell_units::ipsets::the_elements_digest"),
    ("stale digest kept", LIB,
     '|| { rm -f "$IPSETS_LOADED"; return 1; }', "|| { return 1; }",
     "shell_units::ipsets::a_digest_that_cannot"),
    ("sets' file not checked", LIB,
     ' "$IPSETS $IPSETS_SHA256 ipsets"', "",
     "shell_units::ipsets::installed_files"),
    ("forward counts as awk numbers", LIB,
     'printf "%s %.0f %s\\n", c, conn[c]', 'printf "%s %s %s\\n", c, conn[c]',
     "shell_units::counters::per_forward"),
    ("log prefixes count as forwards", LIB,
     'match($0, /--comment "?natbake:[a-z0-9-]+(:denied)?"?/) {\n'
     '      c = substr($0, RSTART, RLENGTH); gsub(/"/, "", c); sub(/^--comment natbake:/, "", c)',
     'match($0, /"?natbake:[a-z0-9-]+(:denied)?"?/) {\n'
     '      c = substr($0, RSTART, RLENGTH); gsub(/"/, "", c); sub(/^natbake:/, "", c)',
     "shell_units::counters::per_forward"),
    ("grouped chains not counted", LIB,
     "|^\\[[0-9]+:[0-9]+\\] -A NATBAKE-(TCP|UDP)-/", "/",
     "shell_units::counters::forwards_in_grouped"),
    ("bytes as awk numbers", LIB,
     'END { printf "%.0f %.0f\\n", b_in, b_out }', "END { print b_in, b_out }",
     "shell_units::counters::forwarded_bytes"),
    ("drops of any table", LIB,
     't == "filter" && $1 == ":FORWARD"', '$1 == ":FORWARD"',
     "shell_units::counters::forward_drops"),
    ("a reload does not restart counts", LIB,
     "(restarts && old_reload[key] != reload) || ", "",
     "shell_units::metrics::reloads_and_restarts"),
    ("a reload restarts ENA's counters", LIB,
     'delta("ena " f[1], f[2], 0)', 'delta("ena " f[1], f[2], 1)',
     "shell_units::metrics::reloads_and_restarts"),
    ("a smaller counter sent as a difference", LIB,
     " || cur + 0 < old[key] + 0", "",
     "shell_units::metrics::reloads_and_restarts"),
    ("broken state lines read", LIB,
     'if (split(line, f, " ") != 4) continue', 'split(line, f, " ")',
     "shell_units::metrics::broken_state"),
    ("unsent datums committed", LIB,
     'FNR <= sent && $1 != "-"', '$1 != "-"',
     "shell_units::metrics::deltas_are_sent"),
    ("deltas as awk numbers", LIB,
     'return sprintf("%.0f", cur - old[key])', "return cur - old[key]",
     "shell_units::metrics::deltas_are_sent"),
    ("stamps of two boots compared", LIB,
     '[ "${2%/*}" = "${3%/*}" ] || return 1', ":",
     "shell_units::time_and_log::seconds_between"),
    ("stamps with fractions", LIB,
     '"${up%%.*}"', '"${up}"',
     "shell_units::time_and_log::a_stamp_is"),
    ("any reload id read", LIB,
     "[[ $id =~ ^[A-Za-z0-9-]+$ ]] || id=none", '[ -n "$id" ] || id=none',
     "shell_units::time_and_log::reload_ids"),
    ("an old reload id kept", LIB,
     '  rm -f "$RELOADED.new" "$RELOADED" 2>/dev/null\n  return 1', "  return 1",
     "shell_units::time_and_log::reload_ids"),
    ("log splits at newlines", LIB,
     "local line=${1//$'\\n'/ }", "local line=$1",
     "shell_units::time_and_log::log_lines"),
    ("log message read as options", LIB,
     'logger -t natbake -- "$line"', 'logger -t natbake "$line"',
     "shell_units::time_and_log::log_lines"),
    ("log_lines of nothing logs", LIB,
     '[ "$#" -gt 0 ] || return 0\n', "",
     "shell_units::time_and_log::log_lines"),
    ("JSON lets a control through", STATUS,
     "if (b < 32 || b == 127) {", "if (b < 31 || b == 127) {",
     "shell_units::status::status_prints"),
    ("JSON lets DEL through", STATUS,
     "if (b < 32 || b == 127) {", "if (b < 32) {",
     "shell_units::status::status_prints"),
    ("continuation bytes unchecked", STATUS,
     "if (b2 < 128 || b2 > 191) ok = 0", "",
     "shell_units::status::status_prints"),
    ("overlong forms pass", STATUS,
     "(b == 224 && b2 < 160) || ", "",
     "shell_units::status::status_prints"),
    ("surrogates pass", STATUS,
     "(b == 237 && b2 > 159) || ", "",
     "shell_units::status::status_prints"),
    ("past U+10FFFF passes", STATUS,
     " || (b == 244 && b2 > 143)", "",
     "shell_units::status::status_prints"),
    ("quotes unescaped", STATUS,
     '(c == "\\"" || c == "\\\\")', '(c == "\\\\")',
     "shell_units::status::status_prints"),
    ("C1 controls raw", STATUS,
     "else if (b == 194 && b2 < 160)", "else if (0)",
     "shell_units::status::status_prints"),
    ("the table shows bad bytes raw", STATUS,
     r'if (!ok) out = out (mode == "json" ? "\\ufffd" : sprintf("\\x%02x", b))',
     r'if (!ok) out = out (mode == "json" ? "\\ufffd" : c)',
     "shell_units::status::status_prints"),
    ("a range's bytes are its first port's", STATUS,
     "for (p = f[4]; p <= f[5]; p++)", "for (p = f[4]; p <= f[4]; p++)",
     "shell_units::status::status_reports"),
]


def run_tests(filter_, templates):
    env = dict(os.environ, NATBAKE_UNIT_TEMPLATES=templates)
    done = subprocess.run(
        ["cargo", "test", "-q", "--test", "it", filter_],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return done.returncode == 0, done.stdout


def main():
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    natbake = os.path.join("target", "debug", "natbake")
    work = tempfile.mkdtemp(prefix="natbake-mutants-")
    try:
        clean = os.path.join(work, "clean")
        subprocess.run([natbake, "templates", "dump", clean], check=True,
                       stdout=subprocess.DEVNULL)
        passed, out = run_tests("shell_units", clean)
        if not passed:
            sys.exit("the unchanged templates fail the shell unit tests:\n" + out)
        survivors = []
        for name, file, old, new, filter_ in MUTANTS:
            if only not in name:
                continue
            text = open(os.path.join(clean, file)).read()
            if text.count(old) != 1:
                survivors.append(name)
                print(f"{name}: the text to change occurs {text.count(old)} times in {file}")
                continue
            mutant = os.path.join(work, "mutant")
            shutil.rmtree(mutant, ignore_errors=True)
            shutil.copytree(clean, mutant)
            with open(os.path.join(mutant, file), "w") as f:
                f.write(text.replace(old, new))
            started = time.monotonic()
            passed, _ = run_tests(filter_, mutant)
            verdict = "SURVIVED" if passed else "caught"
            print(f"{verdict:8} {name} ({filter_}, {time.monotonic() - started:.1f} s)")
            if passed:
                survivors.append(name)
        if survivors:
            sys.exit(f"{len(survivors)} mutant(s) not caught: {', '.join(survivors)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
