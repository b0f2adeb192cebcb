#!/usr/bin/env python3
"""Print values out of a JSON document, for the benchmark's shell scripts
(python3 standard library only).

  json-pick.py [--int] FILE|- KEY.PATH...

Each KEY.PATH is a dotted path; a number selects a list item
(results.0.median is the median of hyperfine's first benchmark). The values
are printed on one line, separated by spaces; --int prints them as whole
numbers (iperf3's bits per second).
"""

import json
import sys


def pick(doc, path):
    value = doc
    for key in path.split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def main():
    args = sys.argv[1:]
    as_int = bool(args) and args[0] == "--int"
    if as_int:
        args = args[1:]
    if len(args) < 2:
        sys.exit("usage: json-pick.py [--int] FILE|- KEY.PATH...")
    if args[0] == "-":
        doc = json.load(sys.stdin)
    else:
        with open(args[0], encoding="utf-8") as f:
            doc = json.load(f)
    try:
        values = [pick(doc, path) for path in args[1:]]
    except (KeyError, IndexError, ValueError, TypeError) as e:
        sys.exit("json-pick: %s: no such value (%r)" % (args[0], e))
    print(" ".join(str(int(v)) if as_int else str(v) for v in values))


if __name__ == "__main__":
    main()
