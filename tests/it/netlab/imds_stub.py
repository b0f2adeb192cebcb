#!/usr/bin/env python3
"""A stand-in for the EC2 instance metadata service, IMDSv2 only.

The real-network tests start it inside the NAT instance's network namespace
at 169.254.169.254:80, so the rendered configure-pat.sh talks to it exactly
as it would on EC2. Only the token flow is accepted: a GET without a valid
token gets 401, like an instance whose metadata options say
"HttpTokens: required". Every request is appended to a log file so a test
can check how the script used the service.

A fault mode stands for the service's hiccups: `--fault PATH=N:KIND`
makes the first N requests of PATH fail (`{mac}` in PATH stands for
the MAC address), KIND being an HTTP status (500,
404, ...) or `drop` (the connection is closed without an answer). Then
the path answers normally. Faults are logged like answers, with the
status or `drop`.

For instances that call AWS APIs, it also answers for the instance's
identity (`--instance-id`), placement (`--region`, `--az`), the partition
and its domain (`services/partition`, `services/domain`: `--partition`,
`--domain`), the credentials of its role (`--role`; pretty-
printed JSON as EC2 writes it, with fixed lab keys; with `--role-after S`,
a new instance profile: no role at all until S seconds after the first
request for it) and, per
`--interface MAC=CIDR[=ENI]`, another interface: its subnet, interface id
and device number, listed under `network/interfaces/macs/`. As on EC2,
such an interface has metadata only while it is attached, which here
means while a device with its MAC is in this namespace (watched every
50 ms), and only from `--attach-lag` seconds after that device appeared:
EC2 publishes a new attachment's metadata a while after the device.

Usage: imds_stub.py --bind ADDR --port N --mac MAC --log FILE [--cidr CIDR]...
                    [--fault PATH=N:KIND]... [--instance-id ID --region R
                    --az AZ --role NAME [--role-after S]]
                    [--interface MAC=CIDR[=ENI]]... [--attach-lag S]
                    [--lifecycle-file FILE]

With --lifecycle-file, meta-data/autoscaling/target-lifecycle-state
answers the file's text (what the Auto Scaling group wants of the
instance: InService, Terminated...), 404 while there is no file.
"""

import argparse
import glob
import http.server
import json
import secrets
import socketserver
import threading
import time

TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--mac", required=True)
    parser.add_argument("--local-ipv4", default="")
    parser.add_argument("--log", required=True)
    # The VPC's CIDR blocks, primary first, as AWS lists them.
    parser.add_argument("--cidr", action="append", default=[])
    parser.add_argument("--fault", action="append", default=[])
    parser.add_argument("--instance-id")
    parser.add_argument("--region")
    parser.add_argument("--az")
    parser.add_argument("--domain", default="amazonaws.com")
    parser.add_argument("--partition", default="aws")
    parser.add_argument("--role")
    parser.add_argument("--role-after", type=float, default=0.0)
    parser.add_argument("--interface", action="append", default=[])
    parser.add_argument("--attach-lag", type=float, default=0.0)
    # An instance of an Auto Scaling group: the file holds its target
    # lifecycle state (InService, Terminated...), read at every request.
    parser.add_argument("--lifecycle-file")
    args = parser.parse_args()
    # When the role's credentials were first asked for.
    asked = {}

    # path -> [failures left, kind]
    faults = {}
    for fault in args.fault:
        path, _, rest = fault.rpartition("=")
        count, _, kind = rest.partition(":")
        faults[path.replace("{mac}", args.mac)] = [int(count), kind]

    tokens = set()
    log = open(args.log, "a", buffering=1)
    mac_prefix = "/latest/meta-data/network/interfaces/macs/%s/" % args.mac
    answers = {
        "/latest/meta-data/mac": args.mac,
        "/latest/meta-data/local-ipv4": args.local_ipv4,
        # AWS separates the blocks with newlines and ends without one.
        mac_prefix + "vpc-ipv4-cidr-blocks": "\n".join(args.cidr),
        mac_prefix + "vpc-ipv4-cidr-block": args.cidr[0] if args.cidr else "",
        mac_prefix + "vpc-id": "vpc-0natbake0lab0000",
    }
    if args.instance_id:
        md = "/latest/meta-data/"
        answers[md + "instance-id"] = args.instance_id
        answers[md + "placement/region"] = args.region
        answers[md + "placement/availability-zone"] = args.az
        answers[md + "services/domain"] = args.domain
        answers[md + "services/partition"] = args.partition
    if args.role:
        creds = md + "iam/security-credentials/"
        answers[creds] = args.role
        answers[creds + args.role] = json.dumps(
            {
                "Code": "Success",
                "LastUpdated": "2026-01-01T00:00:00Z",
                "Type": "AWS-HMAC",
                "AccessKeyId": "ASIALAB0000000000000",
                "SecretAccessKey": "lab0secret0lab0secret0lab0secret0lab0sec",
                "Token": "labSessionToken0" + args.instance_id.replace("-", ""),
                "Expiration": "2099-01-01T00:00:00Z",
            },
            indent=2,
        )
    # Answers that exist only while that MAC's device is here, and since
    # when it has been (monotonic seconds).
    attached = {}
    present = {}
    for interface in args.interface:
        mac, _, rest = interface.partition("=")
        cidr, _, eni = rest.partition("=")
        prefix = "/latest/meta-data/network/interfaces/macs/%s/" % mac
        attached[mac] = {prefix + "subnet-ipv4-cidr-block": cidr, prefix + "device-number": "1"}
        if eni:
            attached[mac][prefix + "interface-id"] = eni

    def watch():
        while True:
            here = set()
            for path in glob.glob("/sys/class/net/*/address"):
                try:
                    with open(path) as f:
                        here.add(f.read().strip())
                except OSError:
                    pass  # renamed or gone between the listing and the read
            now = time.monotonic()
            for mac in attached:
                if mac not in here:
                    present.pop(mac, None)
                elif mac not in present:
                    present[mac] = now
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()

    def lookup(path):
        """The answer for path now, or None."""
        if args.lifecycle_file and path == "/latest/meta-data/autoscaling/target-lifecycle-state":
            try:
                with open(args.lifecycle_file) as f:
                    return f.read().strip()
            except OSError:
                return None
        if path in answers:
            if args.role and path.startswith(creds):
                asked.setdefault("creds", time.monotonic())
                if time.monotonic() - asked["creds"] < args.role_after:
                    return None
            return answers[path]
        visible = [
            m for m, since in list(present.items()) if time.monotonic() - since >= args.attach_lag
        ]
        if path == "/latest/meta-data/network/interfaces/macs/":
            return "\n".join([args.mac + "/"] + [m + "/" for m in visible])
        for mac in visible:
            if path in attached[mac]:
                return attached[mac][path]
        return None

    class Handler(http.server.BaseHTTPRequestHandler):
        def fault(self):
            """Fails this request if a fault is armed for its path."""
            armed = faults.get(self.path)
            if not armed or armed[0] <= 0:
                return False
            armed[0] -= 1
            if armed[1] == "drop":
                token = "token" if self.headers.get(TOKEN_HEADER) else "no-token"
                log.write("%s %s %s drop\n" % (self.command, self.path, token))
                self.close_connection = True
            else:
                self.reply(int(armed[1]))
            return True

        def reply(self, code, body=""):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            token = "token" if self.headers.get(TOKEN_HEADER) else "no-token"
            log.write("%s %s %s %d\n" % (self.command, self.path, token, code))

        def do_PUT(self):
            if self.fault():
                return
            if self.path != TOKEN_PATH:
                return self.reply(405)
            # The real service refuses requests that look forwarded (the
            # protection IMDSv2 exists for) and a missing or bad TTL.
            if self.headers.get("X-Forwarded-For"):
                return self.reply(403)
            try:
                ttl = int(self.headers.get(TTL_HEADER, ""))
            except ValueError:
                return self.reply(400)
            if not 1 <= ttl <= 21600:
                return self.reply(400)
            token = secrets.token_urlsafe(32)
            tokens.add(token)
            self.reply(200, token)

        def do_GET(self):
            if self.fault():
                return
            if self.headers.get(TOKEN_HEADER) not in tokens:
                return self.reply(401)
            answer = lookup(self.path)
            if answer is not None:
                return self.reply(200, answer)
            self.reply(404)

        def log_message(self, *_):
            # Requests are logged to the log file; keep stderr quiet.
            pass

    # Not http.server.HTTPServer: its bind looks up the host name, a DNS
    # query that would leave the lab (and time out there).
    socketserver.TCPServer.allow_reuse_address = True
    server = socketserver.TCPServer((args.bind, args.port), Handler)
    # The test waits for the socket to be listening, not for this line; it
    # helps when reading a kept lab directory.
    log.write("ready %s:%d %s\n" % (args.bind, args.port, ",".join(args.cidr)))
    server.serve_forever()


if __name__ == "__main__":
    main()
