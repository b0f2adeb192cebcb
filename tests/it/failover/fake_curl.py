#!/usr/bin/env python3
"""Stands in for curl in the unit tests of natbake-aws.sh (client.rs).

Answers from a scenario, a JSON list of steps in $FAKE_CURL_SCENARIO:
{"match": REGEX, "times": N, "rc": EXIT, "status": "200", "body": TEXT}.
Each call takes the first step whose regex matches "<URL> <Action>" and
that has times left, prints its body and then its status as curl's
--write-out '\\n%{http_code}' would, and exits with its exit code (curl's
own: 0, 7 for no connection, 18 for a body cut short, 28 for the time
limit). A call that matches nothing answers 000 with exit 7. Every call
is logged to $FAKE_CURL_LOG as "<Action or URL> max-time=<value>".
"""

import json
import os
import re
import sys

args = sys.argv[1:]
url = [a for a in args if a.startswith("http")][-1]
max_time = args[args.index("--max-time") + 1] if "--max-time" in args else "none"
action = ""
for i, a in enumerate(args[:-1]):
    if a == "--data-urlencode" and args[i + 1].startswith("Action="):
        action = args[i + 1][len("Action="):]
if "--config" in args:
    sys.stdin.read()

path = os.environ["FAKE_CURL_SCENARIO"]
with open(path) as f:
    steps = json.load(f)
with open(os.environ["FAKE_CURL_LOG"], "a") as log:
    log.write("%s max-time=%s\n" % (action or url, max_time))
key = "%s %s" % (url, action)
for step in steps:
    if step.get("times", 1) > 0 and re.search(step["match"], key):
        step["times"] = step.get("times", 1) - 1
        with open(path + ".new", "w") as f:
            json.dump(steps, f)
        os.replace(path + ".new", path)
        sys.stdout.write("%s\n%s" % (step.get("body", ""), step["status"]))
        sys.exit(step.get("rc", 0))
sys.stdout.write("\n000")
sys.exit(7)
