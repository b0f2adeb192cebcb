"""Canned instance metadata and AWS Query APIs on 127.0.0.1, for the unit
tests of natbake-aws (test_natbake_aws.py) and its moto test.

One threaded HTTP server answers both: `/latest/...` as IMDSv2 (a token
first; identity, role and credentials as EC2 writes them, more paths per
test), and POST / as the Query APIs, from a list of steps the test sets:
each step is (action, status, body, times) or a callable; "cut" as the
status sends a 200 whose body stops half way with the connection closed,
"stall" sends nothing for 20 s. Every API call is recorded with its form
fields and headers.
"""

import http.server
import json
import threading
import time
import urllib.parse

INSTANCE = "i-0123456789abcdef0"
KEY = "ASIAQEXAMPLE00000000"
SECRET = "wJalrXUtnFEMI0K7MDENG0bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLEsessionToken0000000000000000000000000000=="


def credentials_json(code="Success"):
    return json.dumps(
        {
            "Code": code,
            "LastUpdated": "2026-12-06T08:00:00Z",
            "Type": "AWS-HMAC",
            "AccessKeyId": KEY,
            "SecretAccessKey": SECRET,
            "Token": TOKEN,
            "Expiration": "2026-12-06T14:00:00Z",
        },
        indent=2,
    )


def identity(region="us-east-1", zone="us-east-1a", domain="amazonaws.com", role="natbake-role"):
    return {
        "meta-data/instance-id": INSTANCE,
        "meta-data/placement/region": region,
        "meta-data/placement/availability-zone": zone,
        "meta-data/services/domain": domain,
        "meta-data/services/partition": "aws",
        "meta-data/local-ipv4": "10.0.1.10",
        "meta-data/mac": "0e:aa:bb:cc:dd:01",
        "meta-data/iam/security-credentials/": role + "\n",
        "meta-data/iam/security-credentials/" + role: credentials_json(),
    }


class Server:
    def __init__(self):
        self.metadata = identity()
        # path -> list of statuses to give first (then the value), e.g. [404, 500]
        self.metadata_faults = {}
        self.token_status = 200
        self.steps = []
        self.calls = []
        self.imds_calls = []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def send(self, status, body, headers=()):
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            def do_PUT(self):
                if self.path != "/latest/api/token":
                    return self.send(404, "")
                if server.token_status != 200:
                    return self.send(server.token_status, "")
                self.send(200, "canned-imds-token")

            def do_GET(self):
                path = self.path[len("/latest/"):]
                with server.lock:
                    server.imds_calls.append(path)
                    faults = server.metadata_faults.get(path)
                    fault = faults.pop(0) if faults else None
                if self.headers.get("X-aws-ec2-metadata-token") != "canned-imds-token":
                    return self.send(401, "")
                if fault is not None:
                    return self.send(fault, "")
                if path not in server.metadata:
                    return self.send(404, "")
                self.send(200, server.metadata[path])

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                fields = {k: v[0] for k, v in form.items()}
                action = fields.get("Action", "")
                with server.lock:
                    server.calls.append((fields, dict(self.headers)))
                    answer = None
                    for step in server.steps:
                        if callable(step):
                            answer = step(fields)
                            if answer:
                                break
                            continue
                        if step[0] == action and step[3] > 0:
                            step[3] -= 1
                            answer = step[1], step[2]
                            break
                if answer is None:
                    return self.send(400, ec2_error("InvalidAction", "no canned answer for " + action))
                status, body = answer
                if status == "cut":
                    data = body.encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if status == "stall":
                    time.sleep(20)
                    return
                self.send(status, body, [("Content-Type", "text/xml;charset=UTF-8")])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def step(self, action, status, body, times=1):
        self.steps.append([action, status, body, times])

    def actions(self):
        return [f.get("Action", "") for f, _ in self.calls]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def ec2_error(code, message):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>%s</Code>'
        "<Message>%s</Message></Error></Errors><RequestID>4a3c1d2e-0000</RequestID></Response>"
        % (code, message)
    )


def query_error(code, message, namespace="http://autoscaling.amazonaws.com/doc/2011-01-01/"):
    return (
        '<ErrorResponse xmlns="%s">\n  <Error>\n    <Type>Sender</Type>\n    <Code>%s</Code>\n'
        "    <Message>%s</Message>\n  </Error>\n  <RequestId>5e1b0c3d-0000</RequestId>\n</ErrorResponse>\n"
        % (namespace, code, message)
    )


def interfaces(*items):
    """A DescribeNetworkInterfaces answer as EC2 writes it, one item per
    (eni, mac, address, holder or None, attachment status)."""
    out = []
    for eni, mac, address, holder, attached in items:
        attachment = ""
        status = "available"
        if holder:
            status = "in-use"
            attachment = (
                "<attachment><attachmentId>eni-attach-0123456789abcdef0</attachmentId>"
                "<instanceId>%s</instanceId><instanceOwnerId>123456789012</instanceOwnerId>"
                "<deviceIndex>1</deviceIndex><status>%s</status>"
                "<attachTime>2026-12-06T08:00:00.000Z</attachTime>"
                "<deleteOnTermination>false</deleteOnTermination></attachment>" % (holder, attached)
            )
        out.append(
            """
        <item>
            <networkInterfaceId>%s</networkInterfaceId>
            <subnetId>subnet-0123456789abcdef0</subnetId>
            <vpcId>vpc-0123456789abcdef0</vpcId>
            <availabilityZone>us-east-1a</availabilityZone>
            <description>natbake floating interface</description>
            <ownerId>123456789012</ownerId>
            <requesterManaged>false</requesterManaged>
            <status>%s</status>
            <macAddress>%s</macAddress>
            <privateIpAddress>%s</privateIpAddress>
            <sourceDestCheck>false</sourceDestCheck>
            <groupSet><item><groupId>sg-0123456789abcdef0</groupId><groupName>nat</groupName></item></groupSet>
            %s
            <association><publicIp>198.51.100.7</publicIp><ipOwnerId>123456789012</ipOwnerId></association>
            <tagSet><item><key>natbake:site</key><value>corp</value></item></tagSet>
            <privateIpAddressesSet><item><privateIpAddress>%s</privateIpAddress><primary>true</primary></item></privateIpAddressesSet>
            <interfaceType>interface</interfaceType>
        </item>"""
            % (eni, status, mac, address, attachment, address)
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<DescribeNetworkInterfacesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">\n'
        "    <requestId>4a3c1d2e-0000-4000-8000-000000000000</requestId>\n"
        "    <networkInterfaceSet>%s\n    </networkInterfaceSet>\n"
        "</DescribeNetworkInterfacesResponse>" % "".join(out)
    )


def instances(instance, state, group=None):
    tags = ""
    if group:
        tags = (
            "<tagSet><item><key>Name</key><value>nat</value></item>"
            "<item><key>aws:autoscaling:groupName</key><value>%s</value></item></tagSet>" % group
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">\n'
        "  <requestId>8f7e0000-0000</requestId>\n  <reservationSet><item>\n"
        "    <reservationId>r-0123456789abcdef0</reservationId><ownerId>123456789012</ownerId>\n"
        "    <groupSet/>\n    <instancesSet><item>\n      <instanceId>%s</instanceId>\n"
        "      <imageId>ami-0123456789abcdef0</imageId>\n"
        "      <instanceState><code>16</code><name>%s</name></instanceState>\n"
        "      <networkInterfaceSet><item><networkInterfaceId>eni-0fff</networkInterfaceId>"
        "<status>in-use</status></item></networkInterfaceSet>\n"
        "      %s\n    </item></instancesSet>\n  </item></reservationSet>\n"
        "</DescribeInstancesResponse>" % (instance, state, tags)
    )


def instance_items(*items):
    """A DescribeInstances answer of several instances, each (id, state,
    private address or None, launch time, group or None), in that order."""
    out = []
    for instance, state, address, launched, group in items:
        tags = "<item><key>natbake:site</key><value>corp</value></item>"
        if group:
            tags += "<item><key>aws:autoscaling:groupName</key><value>%s</value></item>" % group
        out.append(
            "<item><reservationId>r-0123456789abcdef0</reservationId><ownerId>123456789012</ownerId>"
            "<groupSet/><instancesSet><item><instanceId>%s</instanceId>"
            "<instanceState><code>16</code><name>%s</name></instanceState>%s"
            "<launchTime>%s</launchTime><tagSet>%s</tagSet></item></instancesSet></item>"
            % (instance, state, "<privateIpAddress>%s</privateIpAddress>" % address if address else "", launched, tags)
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        "<requestId>8f7e0000-0001</requestId><reservationSet>%s</reservationSet>"
        "</DescribeInstancesResponse>" % "".join(out)
    )


def ok(action, namespace):
    return (
        '<%sResponse xmlns="%s">\n  <ResponseMetadata><RequestId>0c9f0000-0000</RequestId>'
        "</ResponseMetadata>\n</%sResponse>\n" % (action, namespace, action)
    )


EC2 = "http://ec2.amazonaws.com/doc/2016-11-15/"
AUTOSCALING = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
MONITORING = "http://monitoring.amazonaws.com/doc/2010-08-01/"
