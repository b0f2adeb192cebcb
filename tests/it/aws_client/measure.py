"""The API work of one health check, done by natbake-aws (Python) and by
the bash client it replaced (natbake-aws.sh sourced by bash, with curl
--aws-sigv4), against canned answers on 127.0.0.1 (canned_aws.py) so that
the client's own cost is what is measured: metadata identity and role
credentials, one DescribeNetworkInterfaces, one publish of 1,208 datums
(two PutMetricData requests).

Prints, per client, the CPU time (user + system of the client's processes)
and the wall time of each round, and their medians, as JSON.

Usage: measure.py --program natbake-aws.py [--bash-client natbake-aws.sh]
                  [--rounds N] [--datums N]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import canned_aws as canned  # noqa: E402

SITE = "corp"
BASH = """set -u
function log { :; }
STATE_DIR=$(mktemp -d)
. "$1"
AWS_IMDS=http://$2
AWS_ENV_FILE=$3
AWS_DEADLINE=$(( SECONDS + 30 ))
aws_read_env_file && aws_identity || exit 1
floating_describe corp || exit 1
aws_put_metrics natbake-bench 1000 <"$4" || exit 1
rm -rf "$STATE_DIR"
"""


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--program", required=True)
    p.add_argument("--bash-client")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--datums", type=int, default=1208)
    args = p.parse_args()

    server = canned.Server()
    eni = ("eni-0a1b2c3d4e5f60718", "0e:11:22:33:44:55", "10.0.0.2", canned.INSTANCE, "attached")
    server.step("DescribeNetworkInterfaces", 200, canned.interfaces(eni), times=10**6)
    server.step("PutMetricData", 200, canned.ok("PutMetricData", canned.MONITORING), times=10**6)
    imds = "127.0.0.1:%d" % server.port
    with tempfile.TemporaryDirectory() as d:
        env_file = os.path.join(d, "aws.env")
        with open(env_file, "w") as f:
            for name in ("EC2", "AUTOSCALING", "CLOUDWATCH"):
                f.write("NATBAKE_%s_ENDPOINT=http://%s/\n" % (name, imds))
        data = os.path.join(d, "datums")
        with open(data, "w") as f:
            for i in range(args.datums):
                f.write("Forward%04d Count %d Site=%s Forward=f%d\n" % (i, i + 1, SITE, i))

        def python():
            env = {"PATH": "/usr/bin:/bin", "NATBAKE_IMDS_ADDRESS": imds}
            base = ["/usr/bin/python3", "-IS", args.program, "--deadline", "30", "--env-file", env_file]
            subprocess.run(base + ["describe-floating", SITE], env=env, check=True, capture_output=True)
            with open(data) as f:
                subprocess.run(base + ["put-metrics", "natbake-bench", "1000"], stdin=f, env=env, check=True, capture_output=True)

        def bash():
            subprocess.run(["bash", "-c", BASH, "bench", args.bash_client, imds, env_file, data], check=True, capture_output=True)

        ways = {"python": python}
        if args.bash_client:
            ways["bash+curl"] = bash
        results = {}
        for name, way in ways.items():
            way()  # warm the page cache
            cpu, wall = [], []
            for _ in range(args.rounds):
                c, w = children_cpu(), time.monotonic()
                way()
                cpu.append(children_cpu() - c)
                wall.append(time.monotonic() - w)
            results[name] = {
                "cpu_median_s": round(statistics.median(cpu), 3),
                "cpu_min_s": round(min(cpu), 3),
                "wall_median_s": round(statistics.median(wall), 3),
                "wall_min_s": round(min(wall), 3),
            }
    server.close()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
