#!/usr/bin/python3 -IS
"""natbake-aws: natbake's one client of instance metadata and the AWS APIs.

Installed as /usr/local/lib/natbake/natbake-aws where failover or metrics
are on, and run (never imported) by configure-pat.sh and natbake-health.
Python 3.9 or later, standard library only; isolated mode (-I: no user
site, no PYTHON* variables, no script folder on the path) without site (-S).

    natbake-aws [--deadline SECONDS] [--env-file FILE] COMMAND [ARGS]

Commands:
  config                   the endpoint overrides and NATBAKE_FLOATING_CONFIG
  identity                 instance id, region, zone, partition domain
  imds [--lag] [--generation] PATH
                           one metadata value (PATH under /latest/); --lag
                           waits out a 404 (a new interface's metadata);
                           --generation first the nf_tables generation
                           (empty when it cannot tell), for the health check
  describe-floating SITE   the interface tagged natbake:site=SITE in this zone
  attach ENI               attach ENI to this instance as device 1
  detach ATTACHMENT [--force]
  instance-state INSTANCE  the instance's state, Auto Scaling group and
                           number of attached network interfaces
  report-unhealthy         SetInstanceHealth Unhealthy, if in a group
  complete-lifecycle HOOK  CompleteLifecycleAction CONTINUE for this
                           instance's HOOK, if in a group
  put-metrics NAMESPACE PER   datums on stdin, "NAME UNIT VALUE DIM=VALUE..."

Output: one NAME=VALUE line per fact on stdout, the value on one line of
printable characters (checked where the caller relies on its form); never
meant to be sourced or evaluated. "warning=" lines are for the log. A
failure ends with "error=CODE" and "message=TEXT".

Exit: 0 done; 1 a definite refusal; 2 no answer before the deadline
(error natbake.NoAnswer); 3 wrong usage; 4 a failure of the program
itself (error natbake.Crash).

Every call is bounded by the deadline (default 30 s from start): one
request takes at most 10 s (metadata 2 s), and transient failures (no
answer, an answer cut short, 5xx, 429, throttling) are tried again until
it. Credentials come from the instance's role through IMDSv2 and live only
in this process. Endpoints are https://SERVICE.REGION.DOMAIN/, the domain
from metadata (services/domain), unless NATBAKE_EC2_ENDPOINT,
NATBAKE_AUTOSCALING_ENDPOINT or NATBAKE_CLOUDWATCH_ENDPOINT (environment,
else the env file, parsed, never sourced) say otherwise; the signing scope
stays REGION/SERVICE.
"""

import os
import sys
import time

# Modules are loaded where they are needed: `config` and the metadata
# commands start without ssl, hashlib, json or xml, which cost more CPU
# than the rest of such a run. main loads re and random (load_aws_modules)
# for every command but `imds`, the health check's, which needs them only
# to read an env file; the tests load them the same way.


def load_aws_modules():
    global random, re
    import random
    import re


ENV_FILE = "/etc/natbake/aws.env"
IMDS = os.environ.get("NATBAKE_IMDS_ADDRESS", "169.254.169.254")
KNOWN_ENV = (
    "NATBAKE_EC2_ENDPOINT",
    "NATBAKE_AUTOSCALING_ENDPOINT",
    "NATBAKE_CLOUDWATCH_ENDPOINT",
    "NATBAKE_FLOATING_CONFIG",
)
# Query API services: endpoint variable, name in the default endpoint and
# in the signing scope, API version.
SERVICES = {
    "ec2": ("NATBAKE_EC2_ENDPOINT", "2016-11-15"),
    "autoscaling": ("NATBAKE_AUTOSCALING_ENDPOINT", "2011-01-01"),
    "monitoring": ("NATBAKE_CLOUDWATCH_ENDPOINT", "2010-08-01"),
}
# The API actions each command calls: a site's IAM policy grants those of
# the commands its scripts run (a contract test reads this table).
ACTIONS = {
    "describe-floating": ("DescribeNetworkInterfaces",),
    "attach": ("AttachNetworkInterface",),
    "detach": ("DetachNetworkInterface",),
    "instance-state": ("DescribeInstances",),
    "report-unhealthy": ("DescribeInstances", "SetInstanceHealth"),
    "complete-lifecycle": ("DescribeInstances", "CompleteLifecycleAction"),
    "peers": ("DescribeInstances",),
    "put-metrics": ("PutMetricData",),
}
TRANSIENT_CODES = {"RequestLimitExceeded", "Throttling", "ThrottlingException"}
# A new instance profile is not usable at once (IAM is eventually
# consistent): these refusals are tried again for AUTH_PATIENCE seconds.
AUTH_CODES = {
    "AuthFailure",
    "UnauthorizedOperation",
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
}
AUTH_PATIENCE = 60.0
MAX_DATUMS = 1000

INSTANCE_ID = r"i-[0-9a-f]{8,17}"
# Regions as the spec takes them (eusc-de-east-1 too); zones of the region:
# us-east-1a, a Local Zone's us-west-2-lax-1a, a Wavelength Zone's
# us-east-1-wl1-bos-wlz-1.
REGION = r"([a-z]{2}|eusc)(-[a-z]+)+-[0-9]{1,2}"
DOMAIN = r"[a-z0-9.-]+"
ROLE = r"[A-Za-z0-9+=,.@_-]+"
KEY_ID = r"[A-Z0-9]{16,128}"
SECRET = r"[A-Za-z0-9+/=]{16,256}"
TOKEN = r"[A-Za-z0-9+/=]{16,}"
ENI = r"eni-[0-9a-f]{8,17}"
ATTACHMENT = r"eni-attach-[0-9a-f]{8,17}"
MAC = r"[0-9a-f]{2}(:[0-9a-f]{2}){5}"
IPV4 = r"[0-9]{1,3}(\.[0-9]{1,3}){3}"
WORD = r"[A-Za-z0-9._-]*"
ENV_VALUE = r"[A-Za-z0-9:/._-]+"
METRIC_NAME = r"[A-Za-z0-9._:/#-]{1,255}"
UNIT = r"[A-Za-z/]{1,40}"
NUMBER = r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?"


class Failure(Exception):
    """The call's end: a refusal (status 1) or no answer in time (status 2)."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def refused(message, code="natbake.Refused"):
    return Failure(1, code, message)


def one_line(text):
    """Text as one line of printable characters, for NAME=VALUE output."""
    text = "".join(c if c.isprintable() else " " for c in str(text))
    return text[:1000]


def say(name, value):
    sys.stdout.write("%s=%s\n" % (name, one_line(value)))
    sys.stdout.flush()


def check(pattern, value, what):
    if not re.fullmatch(pattern, value):
        raise refused("instance metadata gave a malformed %s" % what)
    return value


class Clock:
    """The call's deadline, by the monotonic clock."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds

    def left(self, most):
        """Seconds left, at most `most`; 0 when none are."""
        return max(0.0, min(most, self.deadline - time.monotonic()))


# ---------------------------------------------------------------------------
# /etc/natbake/aws.env: data, never shell.


def parse_env_file(text, path=ENV_FILE):
    """NAME=VALUE lines as people write them (blank lines, comments, leading
    blanks, `export `, matching quotes, CRLF, no newline at the end); what
    is not understood is refused with its line number, never skipped."""
    load_aws_modules()
    values = {}
    for n, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        if re.fullmatch(r"[ \t]*(#.*)?", line):
            continue
        m = re.fullmatch(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        if not m:
            raise refused("%s line %d is not NAME=VALUE" % (path, n))
        name, value = m.group(1), m.group(2).rstrip(" \t")
        q = re.fullmatch(r'"(.*)"|\'(.*)\'', value)
        if q:
            value = q.group(1) if q.group(1) is not None else q.group(2)
        if name not in KNOWN_ENV:
            raise refused(
                "%s line %d sets %s, which natbake does not know (it knows %s and %s)"
                % (path, n, name, ", ".join(KNOWN_ENV[:-1]), KNOWN_ENV[-1])
            )
        if not re.fullmatch(ENV_VALUE, value):
            raise refused("%s line %d: the value of %s is not a URL or word" % (path, n, name))
        values[name] = value
    return values


def settings(path):
    """The known NATBAKE_* values: the environment's, else the file's."""
    values = {}
    try:
        with open(path, "rb") as f:
            raw = f.read(65536)
    except FileNotFoundError:
        raw = None
    except OSError:
        raise refused("%s cannot be read" % path)
    if raw is not None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise refused("%s is not UTF-8 text" % path)
        values = parse_env_file(text, path)
    for name in KNOWN_ENV:
        if os.environ.get(name):
            load_aws_modules()
            values[name] = os.environ[name]
            if not re.fullmatch(ENV_VALUE, values[name]):
                raise refused("the value of %s in the environment is not a URL or word" % name)
    return values


# ---------------------------------------------------------------------------
# HTTP: one request, bounded; (status, body) or None for no whole answer.


def http_request(url, method, headers, body, timeout, proxy_ok):
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    port = parts.port
    host = parts.hostname or ""
    path = parts.path or "/"
    proxy = None
    if proxy_ok:
        import urllib.request

        if not urllib.request.proxy_bypass_environment(host):
            proxy = urllib.request.getproxies_environment().get(parts.scheme)
    if parts.scheme == "https":
        import ssl
    try:
        if proxy:
            p = urllib.parse.urlsplit(proxy)
            conn = http.client.HTTPConnection(p.hostname, p.port or 80, timeout=timeout)
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(
                    p.hostname, p.port or 80, timeout=timeout, context=ssl.create_default_context()
                )
                conn.set_tunnel(host, port or 443)
            else:
                path = url
        elif parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port or 443, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(host, port or 80, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, data
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError):
        return None


# ---------------------------------------------------------------------------
# Instance metadata, IMDSv2 only.


def imds_request(method, path, headers, timeout):
    """One HTTP/1.0 exchange with instance metadata (plain HTTP on a link-
    local address, an answer of a few bytes): (status, body), or None
    without a whole answer. Not http.client, whose imports (email, ssl)
    cost three times the rest of a metadata look, which the health check
    makes every few seconds."""
    import _socket

    host, port = IMDS, 80
    if not IMDS.endswith("]") and IMDS.count(":") == 1:
        host, port = IMDS.split(":")
    host = host.strip("[]")
    request = ["%s /latest/%s HTTP/1.0" % (method, path), "Host: " + IMDS, "Connection: close"]
    request += ["%s: %s" % field for field in headers.items()]
    if method == "PUT":
        request.append("Content-Length: 0")
    data = b""
    try:
        s = _socket.socket(_socket.AF_INET6 if ":" in host else _socket.AF_INET, _socket.SOCK_STREAM)
        try:
            s.settimeout(timeout)
            s.connect((host, int(port)))
            s.sendall(("\r\n".join(request) + "\r\n\r\n").encode("ascii"))
            while len(data) < 1 << 20:
                got = s.recv(65536)
                if not got:
                    break
                data += got
        finally:
            s.close()
    except (OSError, ValueError):
        return None
    head, blank, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    first = lines[0].split(b" ", 2)
    if not blank or len(first) < 2 or not first[0].startswith(b"HTTP/1.") or not first[1].isdigit():
        return None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            # An answer cut short is no answer.
            if not value.isdigit() or len(body) < int(value):
                return None
            body = body[: int(value)]
    return int(first[1]), body




class Metadata:
    def __init__(self, clock):
        self.clock = clock
        self.token = None

    def _token(self):
        while self.token is None:
            left = self.clock.left(2)
            if left <= 0:
                raise Failure(2, "natbake.NoAnswer", "instance metadata gave no IMDSv2 token")
            got = imds_request("PUT", "api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}, left)
            if got and got[0] == 200:
                token = got[1].decode("ascii", "replace").strip()
                if not token:
                    raise refused("instance metadata gave an empty token")
                self.token = token
            elif got and got[0] < 500 and got[0] != 429:
                raise refused("instance metadata refused a token (HTTP status %d)" % got[0])
            else:
                time.sleep(min(0.2, self.clock.left(0.2)))
        return self.token

    def get(self, path, lag=False):
        """The value at /latest/PATH, retried while transient; with lag a
        404 too (a new interface's metadata appears after its device)."""
        token = self._token()
        last = "no answer"
        while True:
            left = self.clock.left(2)
            if left <= 0:
                raise Failure(2, "natbake.NoAnswer", "instance metadata: %s for %s" % (last, path))
            got = imds_request("GET", path, {"X-aws-ec2-metadata-token": token}, left)
            if got and got[0] == 200:
                return got[1].decode("utf-8", "replace")
            if got:
                last = "HTTP status %d" % got[0]
                if got[0] == 404 and not lag:
                    raise Failure(1, "natbake.NotFound", "instance metadata answered 404 for %s" % path)
                if got[0] not in (404, 429) and got[0] < 500:
                    raise refused("instance metadata answered %d for %s" % (got[0], path))
            time.sleep(min(0.2, self.clock.left(0.2)))


class Identity:
    def __init__(self, imds):
        self.instance_id = check(INSTANCE_ID, imds.get("meta-data/instance-id").strip(), "instance id")
        self.region = check(REGION, imds.get("meta-data/placement/region").strip(), "region")
        az = imds.get("meta-data/placement/availability-zone").strip()
        zone = re.escape(self.region) + r"([a-z]|(-[a-z0-9]+)+)"
        self.az = check(zone, az, "availability zone")
        self.domain = check(DOMAIN, imds.get("meta-data/services/domain").strip(), "partition domain")


class Patience:
    """Refusals of credentials or permission are tried again for a while
    after the first one (a new role), with one warning."""

    def __init__(self):
        self.since = None

    def allows(self, reason):
        now = time.monotonic()
        if self.since is None:
            self.since = now
            say(
                "warning",
                "%s; a new instance's role can take a moment to be usable, "
                "trying again for up to %ds." % (reason, AUTH_PATIENCE),
            )
        return now - self.since < AUTH_PATIENCE


def credentials(imds, clock, patience):
    """The role's (key id, secret, token), waiting for a new role a while."""
    import json

    while True:
        try:
            role = imds.get("meta-data/iam/security-credentials/").split("\n")[0].strip()
        except Failure as f:
            if f.code != "natbake.NotFound":
                raise Failure(
                    f.status,
                    f.code,
                    "this instance's IAM role cannot be read from instance metadata (%s)" % f.message,
                )
            reason = "instance metadata shows no IAM role for this instance"
        else:
            if not re.fullmatch(ROLE, role):
                raise refused("instance metadata gave a malformed role name")
            text = imds.get("meta-data/iam/security-credentials/" + role)
            try:
                creds = json.loads(text)
            except ValueError:
                creds = {}
            if not isinstance(creds, dict):
                creds = {}
            code = creds.get("Code")
            if code == "Success":
                key, secret, token = (
                    creds.get("AccessKeyId"),
                    creds.get("SecretAccessKey"),
                    creds.get("Token"),
                )
                # An empty or odd value is refused here rather than signed.
                if not all(
                    isinstance(v, str) and re.fullmatch(p, v)
                    for v, p in ((key, KEY_ID), (secret, SECRET), (token, TOKEN))
                ):
                    raise refused("instance metadata gave incomplete credentials for role %s" % role)
                return key, secret, token
            reason = "the credentials of role %s are not ready (metadata Code is %s)" % (
                role,
                code if isinstance(code, str) and code else "missing",
            )
        if not patience.allows(reason):
            raise refused(
                "%s; attach the instance profile that natbake's policy belongs to" % reason,
                "natbake.NoCredentials",
            )
        if clock.left(1) <= 0:
            raise Failure(2, "natbake.NoAnswer", "%s, until the deadline" % reason)
        time.sleep(clock.left(1))


# ---------------------------------------------------------------------------
# Signature Version 4.


def _hmac(key, text):
    import hashlib
    import hmac

    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def quote(text):
    import urllib.parse

    return urllib.parse.quote(text, safe="-_.~")


def sign(method, url, headers, body, region, service, key, secret, amz_date):
    """The Authorization header of a request (headers without it, lowercase
    names), for SigV4 with scope DATE/REGION/SERVICE/aws4_request."""
    import hashlib
    import hmac
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join("%s=%s" % kv for kv in sorted((quote(k), quote(v)) for k, v in pairs))
    names = sorted(headers)
    canonical = "\n".join(
        [
            method,
            quote_path(parts.path or "/"),
            query,
            "".join("%s:%s\n" % (n, " ".join(headers[n].split())) for n in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = "%s/%s/%s/aws4_request" % (amz_date[:8], region, service)
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
    )
    k = _hmac(("AWS4" + secret).encode("utf-8"), amz_date[:8])
    for part in (region, service, "aws4_request"):
        k = _hmac(k, part)
    signature = hmac.new(k, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        key,
        scope,
        ";".join(names),
        signature,
    )


def quote_path(path):
    import urllib.parse

    return "/".join(quote(urllib.parse.unquote(p)) for p in path.split("/"))


# ---------------------------------------------------------------------------
# XML answers, read with a parser; element names without their namespace.


def local(tag):
    return tag.rsplit("}", 1)[-1]


def parse_xml(body):
    """The answer's root element, or None when it is not whole XML."""
    import xml.etree.ElementTree as ET

    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        return None
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        return None


def children(element, name):
    return [c for c in element if local(c.tag) == name]


def child_text(element, name):
    for c in element:
        if local(c.tag) == name:
            return (c.text or "").strip()
    return ""


def path_text(element, *names):
    """The text at a path of child names, or ''."""
    for name in names[:-1]:
        found = children(element, name)
        if not found:
            return ""
        element = found[0]
    return child_text(element, names[-1])


def error_of(root):
    """(code, message) of an error answer: EC2's Response/Errors/Error or
    the other services' ErrorResponse/Error."""
    if root is None:
        return "", ""
    for e in root.iter():
        if local(e.tag) == "Error":
            return child_text(e, "Code"), child_text(e, "Message")
    return "", ""


# ---------------------------------------------------------------------------
# The Query APIs.


class Aws:
    def __init__(self, clock, env_file):
        self.clock = clock
        self.settings = settings(env_file)
        self.imds = Metadata(clock)
        self.patience = Patience()
        self._identity = None
        self._creds = None

    @property
    def identity(self):
        if self._identity is None:
            self._identity = Identity(self.imds)
        return self._identity

    def endpoint(self, service):
        name = SERVICES[service][0]
        if self.settings.get(name):
            return self.settings[name]
        return "https://%s.%s.%s/" % (service, self.identity.region, self.identity.domain)

    def query(self, service, action, params):
        """One signed call, POST form; the answer's root element.

        Transient failures are tried again until the deadline; refusals of
        credentials or permission for a while (Patience)."""
        import urllib.parse

        ident = self.identity
        if self._creds is None:
            self._creds = credentials(self.imds, self.clock, self.patience)
        key, secret, token = self._creds
        url = self.endpoint(service)
        host = urllib.parse.urlsplit(url).netloc
        form = [("Action", action), ("Version", SERVICES[service][1])] + list(params)
        body = urllib.parse.urlencode(form, quote_via=urllib.parse.quote).encode("ascii")
        last = "none"
        while True:
            left = self.clock.left(10)
            if left <= 0:
                raise Failure(
                    2,
                    "natbake.NoAnswer",
                    "no complete answer to %s from %s in time (last try: %s)" % (action, url, last),
                )
            amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            headers = {
                "content-type": "application/x-www-form-urlencoded; charset=utf-8",
                "host": host,
                "x-amz-date": amz_date,
                "x-amz-security-token": token,
            }
            headers["authorization"] = sign(
                "POST", url, headers, body, ident.region, service, key, secret, amz_date
            )
            got = http_request(url, "POST", headers, body, left, True)
            pause = 0.0
            if got is None:
                last = "no whole answer"
            else:
                status, data = got
                root = parse_xml(data)
                if status == 200:
                    if root is not None and local(root.tag) == action + "Response":
                        return root
                    last = "an answer without its end (HTTP status 200)"
                else:
                    code, message = error_of(root)
                    last = "HTTP status %d%s%s" % (
                        status,
                        ", " + code if code else "",
                        ": " + message if message else "",
                    )
                    if status >= 500 or status == 429 or code in TRANSIENT_CODES:
                        pause = 1.0
                    elif code in AUTH_CODES:
                        if not self.patience.allows("%s was refused (%s: %s)" % (action, code, message)):
                            raise refused(message, code)
                        pause = 1.0
                    else:
                        raise refused(message or last, code or "natbake.HTTP%d" % status)
            time.sleep(min(random.randint(1, 9) / 10 + pause, self.clock.left(10)))


# ---------------------------------------------------------------------------
# Commands.


def cmd_config(aws, args):
    for name in KNOWN_ENV:
        say(name, aws.settings.get(name, ""))


def cmd_identity(aws, args):
    i = aws.identity
    say("instance", i.instance_id)
    say("region", i.region)
    say("zone", i.az)
    say("domain", i.domain)


# The nf_tables generation, or None: the program of ruleset_generation in
# natbake-lib.sh, which returns where that prints (a test keeps the two
# equal).
def generation():
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
            return struct.unpack_from("!I", m, o + 4)[0]
        o += (a + 3) & ~3


IMDS_PATH = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/:._-"


def cmd_imds(aws, args):
    lag = gen = False
    while args and args[0] in ("--lag", "--generation"):
        lag, gen = lag or args[0] == "--lag", gen or args[0] == "--generation"
        args = args[1:]
    if len(args) != 1 or not args[0] or args[0].strip(IMDS_PATH) or ".." in args[0]:
        raise usage("imds [--lag] [--generation] PATH")
    if gen:
        try:
            g = generation()
        except OSError:
            g = None
        say("generation", "" if g is None else str(g))
    for line in aws.imds.get(args[0], lag).split("\n"):
        if line.strip():
            say("value", line.strip())


def site_filters(site, zone):
    """The EC2 filters for what belongs to SITE in ZONE: the stack's tag and the zone."""
    return [
        ("Filter.1.Name", "tag:natbake:site"),
        ("Filter.1.Value.1", site),
        ("Filter.2.Name", "availability-zone"),
        ("Filter.2.Value.1", zone),
    ]


def cmd_describe_floating(aws, args):
    if len(args) != 1 or not re.fullmatch(r"[a-z][a-z0-9-]{0,39}", args[0]):
        raise usage("describe-floating SITE")
    site, zone = args[0], aws.identity.az
    where = "tagged natbake:site=%s in %s" % (site, zone)
    try:
        root = aws.query("ec2", "DescribeNetworkInterfaces", site_filters(site, zone))
    except Failure as f:
        f.message = "Cannot list the network interfaces %s: %s: %s" % (where, f.code, f.message)
        raise
    items = [i for s in children(root, "networkInterfaceSet") for i in children(s, "item")]
    if len(items) != 1:
        raise refused(
            "Found %d network interfaces %s; exactly one must exist there "
            "(created with the elastic IP, outside the instance)." % (len(items), where)
        )
    eni = items[0]
    found = {
        "id": child_text(eni, "networkInterfaceId"),
        "mac": child_text(eni, "macAddress"),
        "address": child_text(eni, "privateIpAddress"),
        "status": child_text(eni, "status"),
        "holder": path_text(eni, "attachment", "instanceId"),
        "attachment": path_text(eni, "attachment", "attachmentId"),
        "attached": path_text(eni, "attachment", "status"),
    }
    if not re.fullmatch(ENI, found["id"]):
        raise refused("The description of the interface %s has no valid id." % where)
    if not (re.fullmatch(MAC, found["mac"]) and re.fullmatch(IPV4, found["address"])):
        raise refused("The description of %s (%s) lacks a MAC or private address." % (found["id"], where))
    checks = (("holder", INSTANCE_ID), ("attachment", ATTACHMENT), ("status", WORD), ("attached", WORD))
    for name, pattern in checks:
        if found[name] and not re.fullmatch(pattern, found[name]):
            raise refused("The description of %s has a malformed %s." % (found["id"], name))
    say("instance", aws.identity.instance_id)
    say("zone", zone)
    for name in ("id", "mac", "address", "status", "holder", "attachment", "attached"):
        say(name, found[name])


def cmd_attach(aws, args):
    if len(args) != 1 or not re.fullmatch(ENI, args[0]):
        raise usage("attach ENI")
    root = aws.query(
        "ec2",
        "AttachNetworkInterface",
        [
            ("NetworkInterfaceId", args[0]),
            ("InstanceId", aws.identity.instance_id),
            ("DeviceIndex", "1"),
            ("NetworkCardIndex", "0"),
        ],
    )
    att = child_text(root, "attachmentId")
    say("attachment", att if re.fullmatch(ATTACHMENT, att) else "")


def cmd_detach(aws, args):
    force = "--force" in args
    rest = [a for a in args if a != "--force"]
    if len(rest) != 1 or not re.fullmatch(ATTACHMENT, rest[0]):
        raise usage("detach ATTACHMENT [--force]")
    params = [("AttachmentId", rest[0])]
    if force:
        params.append(("Force", "true"))
    aws.query("ec2", "DetachNetworkInterface", params)
    say("detached", rest[0])


def describe_instance(aws, instance):
    """(state name, Auto Scaling group or '') of an instance."""
    state, group, _ = describe_instance_interfaces(aws, instance)
    return state, group


def describe_instance_interfaces(aws, instance):
    """(state name, Auto Scaling group or '', attached network interfaces)
    of an instance."""
    root = aws.query("ec2", "DescribeInstances", [("InstanceId.1", instance)])
    for r in children(root, "reservationSet"):
        for res in children(r, "item"):
            for s in children(res, "instancesSet"):
                for inst in children(s, "item"):
                    if child_text(inst, "instanceId") != instance:
                        continue
                    state = path_text(inst, "instanceState", "name")
                    interfaces = sum(len(children(n, "item")) for n in children(inst, "networkInterfaceSet"))
                    group = ""
                    for tags in children(inst, "tagSet"):
                        for tag in children(tags, "item"):
                            if child_text(tag, "key") == "aws:autoscaling:groupName":
                                group = child_text(tag, "value")
                    return state, group, interfaces
    return "", "", 0


def cmd_instance_state(aws, args):
    if len(args) != 1 or not re.fullmatch(INSTANCE_ID, args[0]):
        raise usage("instance-state INSTANCE")
    state, group, interfaces = describe_instance_interfaces(aws, args[0])
    say("state", state if re.fullmatch(WORD, state) else "")
    say("group", group)
    say("interfaces", interfaces)


def my_group(aws):
    """(this instance's id, its Auto Scaling group or ''), the group said."""
    me = aws.identity.instance_id
    try:
        _, group = describe_instance(aws, me)
    except Failure as f:
        f.message = "DescribeInstances failed (%s: %s)" % (f.code, f.message)
        raise
    say("group", group)
    return me, group


def cmd_report_unhealthy(aws, args):
    if args:
        raise usage("report-unhealthy")
    me, group = my_group(aws)
    if not group:
        return
    try:
        aws.query(
            "autoscaling",
            "SetInstanceHealth",
            [("InstanceId", me), ("HealthStatus", "Unhealthy"), ("ShouldRespectGracePeriod", "false")],
        )
    except Failure as f:
        f.message = "Cannot report this instance Unhealthy to %s: %s: %s" % (group, f.code, f.message)
        raise
    say("reported", "Unhealthy")


def cmd_complete_lifecycle(aws, args):
    if len(args) != 1 or not re.fullmatch(r"[A-Za-z0-9._/-]{1,255}", args[0]):
        raise usage("complete-lifecycle HOOK")
    me, group = my_group(aws)
    if not group:
        return
    aws.query(
        "autoscaling",
        "CompleteLifecycleAction",
        [
            ("AutoScalingGroupName", group),
            ("LifecycleHookName", args[0]),
            ("InstanceId", me),
            ("LifecycleActionResult", "CONTINUE"),
        ],
    )
    say("completed", args[0])


def cmd_peers(aws, args):
    if len(args) != 1 or not re.fullmatch(r"[a-z][a-z0-9-]{0,39}", args[0]):
        raise usage("peers SITE")
    site, zone = args[0], aws.identity.az
    me = aws.identity.instance_id
    address = aws.imds.get("meta-data/local-ipv4").strip()
    mac = aws.imds.get("meta-data/mac").strip()
    if not (re.fullmatch(IPV4, address) and re.fullmatch(MAC, mac)):
        raise refused("Instance metadata gave a malformed primary address or MAC (%r, %r)." % (address, mac))
    where = "tagged natbake:site=%s in %s" % (site, zone)
    try:
        root = aws.query(
            "ec2",
            "DescribeInstances",
            site_filters(site, zone)
            + [
                ("Filter.3.Name", "instance-state-name"),
                ("Filter.3.Value.1", "pending"),
                ("Filter.3.Value.2", "running"),
            ],
        )
    except Failure as f:
        f.message = "Cannot list the instances %s: %s: %s" % (where, f.code, f.message)
        raise
    found = []
    for r in children(root, "reservationSet"):
        for res in children(r, "item"):
            for s in children(res, "instancesSet"):
                for inst in children(s, "item"):
                    group = ""
                    for tags in children(inst, "tagSet"):
                        for tag in children(tags, "item"):
                            if child_text(tag, "key") == "aws:autoscaling:groupName":
                                group = child_text(tag, "value")
                    found.append(
                        (
                            child_text(inst, "launchTime"),
                            child_text(inst, "instanceId"),
                            child_text(inst, "privateIpAddress"),
                            path_text(inst, "instanceState", "name"),
                            group,
                        )
                    )
    # This instance's group, when the answer has it: peers are of the same
    # group only (a second stack of the same site is not this pair).
    mine = [f[4] for f in found if f[1] == me]
    group = mine[0] if mine else ""
    peers = []
    for launched, instance, peer, state, their_group in sorted(found):
        if instance == me or state not in ("pending", "running"):
            continue
        if group and their_group != group:
            continue
        if not (re.fullmatch(INSTANCE_ID, instance) and re.fullmatch(IPV4, peer)):
            # An instance without a private address yet (pending) is found
            # again at the next look.
            continue
        peers.append("%s %s %s" % (instance, peer, state))
    say("instance", me)
    say("zone", zone)
    say("address", address)
    say("mac", mac)
    say("group", group)
    say("peers", len(peers))
    for n, text in enumerate(peers, 1):
        say("peer%d" % n, text)


def datums(lines):
    """(line number, [(name, value)...]) per datum line of "NAME UNIT VALUE
    DIMENSION=VALUE..."; blank lines are counted and skipped."""
    for n, line in enumerate(lines, 1):
        words = line.split()
        if not words:
            yield n, None
            continue
        if len(words) < 3:
            raise refused("datum line %d is not NAME UNIT VALUE [DIMENSION=VALUE...]" % n)
        name, unit, value = words[:3]
        if not (re.fullmatch(METRIC_NAME, name) and re.fullmatch(UNIT, unit) and re.fullmatch(NUMBER, value)):
            raise refused("datum line %d has a malformed name, unit or value" % n)
        fields = [("MetricName", name), ("Unit", unit), ("Value", value)]
        for d, dim in enumerate(words[3:], 1):
            dname, eq, dvalue = dim.partition("=")
            if not eq or not dname or not dvalue:
                raise refused("datum line %d has a malformed dimension" % n)
            fields += [("Dimensions.member.%d.Name" % d, dname), ("Dimensions.member.%d.Value" % d, dvalue)]
        yield n, fields


def cmd_put_metrics(aws, args):
    if len(args) != 2 or not re.fullmatch(r"[A-Za-z0-9._/#:-]{1,255}", args[0]) or not args[1].isdigit():
        raise usage("put-metrics NAMESPACE PER")
    namespace, per = args[0], min(int(args[1]), MAX_DATUMS)
    if per < 1:
        raise usage("put-metrics NAMESPACE PER (PER 1..1000)")
    lines = sys.stdin.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    batch, read, sent = [], 0, 0

    def put():
        params = [("Namespace", namespace)]
        for m, fields in enumerate(batch, 1):
            params += [("MetricData.member.%d.%s" % (m, k), v) for k, v in fields]
        aws.query("monitoring", "PutMetricData", params)

    try:
        for n, fields in datums(lines):
            read = n
            if fields is None:
                continue
            batch.append(fields)
            if len(batch) >= per:
                put()
                batch, sent = [], read
                say("sent", sent)
        if batch:
            put()
        sent = len(lines)
    finally:
        say("sent", sent)


COMMANDS = {
    "config": cmd_config,
    "identity": cmd_identity,
    "imds": cmd_imds,
    "describe-floating": cmd_describe_floating,
    "attach": cmd_attach,
    "detach": cmd_detach,
    "instance-state": cmd_instance_state,
    "report-unhealthy": cmd_report_unhealthy,
    "complete-lifecycle": cmd_complete_lifecycle,
    "peers": cmd_peers,
    "put-metrics": cmd_put_metrics,
}


class Usage(Exception):
    pass


def usage(text):
    return Usage(text)


def main(argv):
    deadline, env_file = 30.0, ENV_FILE
    try:
        while argv and argv[0].startswith("--"):
            whole, dot, part = argv[1].partition(".") if len(argv) > 1 else ("", "", "")
            if argv[0] == "--deadline" and all(x.isascii() and x.isdigit() for x in [whole] + [part][: len(dot)]):
                deadline, argv = float(argv[1]), argv[2:]
            elif argv[0] == "--env-file" and len(argv) > 1:
                env_file, argv = argv[1], argv[2:]
            else:
                raise usage("natbake-aws [--deadline SECONDS] [--env-file FILE] COMMAND [ARGS]")
        if not argv or argv[0] not in COMMANDS:
            raise usage("natbake-aws [--deadline SECONDS] [--env-file FILE] COMMAND [ARGS]; commands: " + ", ".join(COMMANDS))
        command = COMMANDS[argv[0]]
        if command is not cmd_imds:
            load_aws_modules()
        command(Aws(Clock(deadline), env_file), argv[1:])
        return 0
    except Usage as u:
        say("error", "natbake.Usage")
        say("message", "usage: %s" % u)
        return 3
    except Failure as f:
        say("error", f.code)
        say("message", f.message)
        return f.status
    except Exception as e:  # a bug, or a Python without a module it needs
        say("error", "natbake.Crash")
        say("message", "%s: %s" % (type(e).__name__, e))
        return 4


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
