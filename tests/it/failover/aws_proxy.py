#!/usr/bin/env python3
"""A thin proxy in front of moto_server that adds the EC2 behaviour moto
5.2.5 does not model, and nothing else. Every request is passed to moto
unchanged, and moto's answer is passed back, except:

- AttachNetworkInterface of an interface that is attached to another
  instance is refused as EC2 refuses it: HTTP 400,
  InvalidNetworkInterface.InUse (moto would silently move it).
- An instance terminated through the control call /__lab/terminate stays
  "shutting-down" in DescribeInstances, and its attachments "detaching" in
  DescribeNetworkInterfaces, for the given number of seconds; then the proxy
  detaches its interfaces in moto, as EC2 does for an instance that ends
  (moto leaves them attached to the terminated instance for good).
- PutMetricData goes to moto through boto3 (see put_metric_data).
- CompleteLifecycleAction, which moto 5.2.5 does not have, is answered
  as Auto Scaling answers it: accepted for an instance whose group waits
  on that hook (armed through the control call /__lab/lifecycle, as the
  group does when it starts terminating the instance), once; refused
  with ValidationError ("No active Lifecycle Action found") otherwise.
- Faults armed through /__lab/faults: the next N calls of an action (or of
  any action, "*"), after the first "skip" (default 0: those pass
  unchanged), answer HTTP 400 (InvalidParameterValue: a refusal, not
  retried), HTTP 500 (InternalError), HTTP 503 (RequestLimitExceeded),
  drop the connection, answer only after a delay ("slow:SECONDS"), send
  moto's answer cut in the middle of its body and then reset the
  connection ("cut"), stall for SECONDS in the middle of the body
  ("stall:SECONDS"), or refuse as a role that is not usable yet
  ("AuthFailure", HTTP 401; "UnauthorizedOperation", HTTP 403).

The lab's own operations (launch, attach, detach, health, interface, tag:
see aws_lab.py) are control calls too, /__lab/<operation> with the
arguments as JSON.

Every API call is logged as "<unix time> <Action> <HTTP status>".

Usage: aws_proxy.py --bind ADDR --port N --moto URL --log FILE
"""

import argparse
import json
import re
import socket
import socketserver
import struct
import threading
import time
import urllib.parse
import urllib.request
import http.server

import boto3

import aws_lab

lock = threading.Lock()
faults = []  # [{"action", "count", "kind"}]
detaching = {}  # instance id -> time the detach happens
waiting = {}  # instance id -> (group, hook): a lifecycle action waits


def ec2_error(code, message, status):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>%s</Code>'
        "<Message>%s</Message></Error></Errors><RequestID>lab-proxy</RequestID></Response>"
        % (code, message)
    )
    return status, body.encode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--moto", required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()
    log = open(args.log, "a", buffering=1)
    ec2 = boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=args.moto,
        aws_access_key_id="AKIALAB0000000000000",
        aws_secret_access_key="lab0secret0lab0secret0lab0secret0lab0sec",
    )

    cloudwatch = boto3.client(
        "cloudwatch",
        region_name="us-east-1",
        endpoint_url=args.moto,
        aws_access_key_id="AKIALAB0000000000000",
        aws_secret_access_key="lab0secret0lab0secret0lab0secret0lab0sec",
    )

    def put_metric_data(params):
        """PutMetricData of the Query API, passed to moto through boto3:
        moto's own Query API parser takes time quadratic in the number of
        datums (a request of 1,000, CloudWatch's limit, takes it longer than
        the scripts wait), its boto3 protocol does not. boto3 checks each
        datum against the API's model on the way."""
        data = {}
        for key, value in params.items():
            m = re.fullmatch(r"MetricData\.member\.(\d+)\.(.+)", key)
            if not m:
                continue
            datum = data.setdefault(int(m.group(1)), {"Dimensions": {}})
            d = re.fullmatch(r"Dimensions\.member\.(\d+)\.(Name|Value)", m.group(2))
            if d:
                datum["Dimensions"].setdefault(int(d.group(1)), {})[d.group(2)] = value
            elif m.group(2) == "Value":
                datum["Value"] = float(value)
            else:
                datum[m.group(2)] = value
        metric_data = []
        for _, datum in sorted(data.items()):
            datum["Dimensions"] = [v for _, v in sorted(datum["Dimensions"].items())]
            metric_data.append(datum)
        try:
            cloudwatch.put_metric_data(Namespace=params.get("Namespace", ""), MetricData=metric_data)
        except Exception as e:
            return ec2_error("InvalidParameterValue", str(e).replace("<", "").replace("&", ""), 400)
        return 200, (
            '<PutMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">'
            "<ResponseMetadata><RequestId>lab-proxy</RequestId></ResponseMetadata></PutMetricDataResponse>"
        ).encode()

    def complete_lifecycle(params):
        instance = params.get("InstanceId", "")
        key = (params.get("AutoScalingGroupName", ""), params.get("LifecycleHookName", ""))
        with lock:
            found = waiting.get(instance) == key
            if found:
                waiting.pop(instance)
        if not found or params.get("LifecycleActionResult") not in ("CONTINUE", "ABANDON"):
            # Auto Scaling's own error shape, not EC2's.
            body = (
                '<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error>'
                "<Type>Sender</Type><Code>ValidationError</Code>"
                "<Message>No active Lifecycle Action found with instance ID %s</Message>"
                "</Error><RequestId>lab-proxy</RequestId></ErrorResponse>" % instance
            )
            return 400, body.encode()
        log.write("%.3f lifecycle-completed %s %s\n" % (time.time(), instance, params["LifecycleActionResult"]))
        return 200, (
            '<CompleteLifecycleActionResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
            "<CompleteLifecycleActionResult/><ResponseMetadata><RequestId>lab-proxy</RequestId>"
            "</ResponseMetadata></CompleteLifecycleActionResponse>"
        ).encode()

    def holder_of(eni):
        try:
            i = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
        except Exception:
            return None
        att = i.get("Attachment") or {}
        return att.get("InstanceId") if att.get("Status") == "attached" else None

    def detach_later(instance, seconds):
        time.sleep(seconds)
        for i in ec2.describe_network_interfaces()["NetworkInterfaces"]:
            att = i.get("Attachment") or {}
            if att.get("InstanceId") == instance and att.get("Status") == "attached":
                try:
                    ec2.detach_network_interface(AttachmentId=att["AttachmentId"], Force=True)
                except ec2.exceptions.ClientError:
                    pass  # the lab moved it on in the meantime
        with lock:
            detaching.pop(instance, None)
        log.write("%.3f detached-after-termination %s\n" % (time.time(), instance))

    def take_fault(action):
        with lock:
            for f in faults:
                if f["count"] > 0 and f["action"] in (action, "*"):
                    if f.get("skip", 0) > 0:
                        f["skip"] -= 1
                        return None
                    f["count"] -= 1
                    return f["kind"]
        return None

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def send(self, status, body, ctype="text/xml"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def control(self, body):
            req = json.loads(body or b"{}")
            if self.path == "/__lab/faults":
                with lock:
                    faults[:] = req
            elif self.path == "/__lab/lifecycle":
                with lock:
                    waiting[req["instance"]] = (req["group"], req["hook"])
            elif self.path == "/__lab/terminate":
                instance, seconds = req["instance"], float(req["detach_after"])
                ec2.terminate_instances(InstanceIds=[instance])
                with lock:
                    detaching[instance] = time.time() + seconds
                threading.Thread(
                    target=detach_later, args=(instance, seconds), daemon=True
                ).start()
            elif self.path[len("/__lab/"):] in set(aws_lab.COMMANDS) - {"fabric", "setup"}:
                cmd = self.path[len("/__lab/"):]
                try:
                    result = aws_lab.COMMANDS[cmd](argparse.Namespace(**req))
                except Exception as e:
                    return self.send(500, json.dumps({"error": str(e)}).encode(), "application/json")
                log.write("%.3f control %s %s\n" % (time.time(), self.path, body.decode()))
                return self.send(200, json.dumps(result).encode(), "application/json")
            else:
                return self.send(404, b"{}", "application/json")
            log.write("%.3f control %s %s\n" % (time.time(), self.path, body.decode()))
            self.send(200, b"{}", "application/json")

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path.startswith("/__lab/"):
                return self.control(body)
            params = dict(urllib.parse.parse_qsl(body.decode()))
            action = params.get("Action", "?")
            kind = take_fault(action)
            status, answer = self.answer(action, params, body, kind)
            if status is None:
                log.write("%.3f %s drop\n" % (time.time(), action))
                self.close_connection = True
                return
            if kind == "cut" or (kind or "").startswith("stall:"):
                return self.send_broken(action, status, answer, kind)
            log.write("%.3f %s %d\n" % (time.time(), action, status))
            self.send(status, answer)

        def send_broken(self, action, status, answer, kind):
            """The status line, the headers and half the body; then a reset
            ("cut") or a pause and the rest ("stall:SECONDS")."""
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            half = len(answer) // 2
            self.wfile.write(answer[:half])
            self.wfile.flush()
            if kind == "cut":
                log.write("%.3f %s cut\n" % (time.time(), action))
                # A reset, not an orderly end: close with SO_LINGER 0.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                return
            log.write("%.3f %s stall\n" % (time.time(), action))
            time.sleep(float(kind[len("stall:"):]))
            try:
                self.wfile.write(answer[half:])
            except OSError:
                pass  # the client gave up first
            self.close_connection = True

        def answer(self, action, params, body, kind):
            if kind == "drop":
                return None, b""
            if kind == "500":
                return ec2_error("InternalError", "An internal error has occurred", 500)
            if kind == "400":
                return ec2_error("InvalidParameterValue", "Refused by the lab.", 400)
            if kind == "503":
                return ec2_error("RequestLimitExceeded", "Request limit exceeded.", 503)
            if kind == "AuthFailure":
                return ec2_error("AuthFailure", "AWS was not able to validate the provided access credentials", 401)
            if kind == "UnauthorizedOperation":
                return ec2_error("UnauthorizedOperation", "You are not authorized to perform this operation.", 403)
            if kind and kind.startswith("slow:"):
                time.sleep(float(kind[5:]))
            if action == "PutMetricData":
                return put_metric_data(params)
            if action == "CompleteLifecycleAction":
                return complete_lifecycle(params)
            if action == "AttachNetworkInterface":
                held = holder_of(params.get("NetworkInterfaceId", ""))
                if held and held != params.get("InstanceId"):
                    return ec2_error(
                        "InvalidNetworkInterface.InUse",
                        "Interface: [%s] in use." % params["NetworkInterfaceId"],
                        400,
                    )
            headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
            req = urllib.request.Request(args.moto + "/", data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    status, answer = r.status, r.read()
            except urllib.error.HTTPError as e:
                status, answer = e.code, e.read()
            with lock:
                dying = {i for i, t in detaching.items() if t > time.time()}
            text = answer.decode()
            if action == "DescribeInstances" and params.get("InstanceId.1") in dying:
                text = text.replace("<code>48</code>", "<code>32</code>").replace(
                    "<name>terminated</name>", "<name>shutting-down</name>"
                )
            if action == "DescribeNetworkInterfaces" and dying:

                def mark(m):
                    block = m.group(0)
                    if any("<instanceId>%s</instanceId>" % i in block for i in dying):
                        block = block.replace("<status>attached</status>", "<status>detaching</status>")
                    return block

                text = re.sub(r"<attachment>.*?</attachment>", mark, text, flags=re.S)
            return status, text.encode()

        def log_message(self, *_):
            pass

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    server = socketserver.ThreadingTCPServer((args.bind, args.port), Handler)
    log.write("ready %s:%d\n" % (args.bind, args.port))
    server.serve_forever()


if __name__ == "__main__":
    main()
