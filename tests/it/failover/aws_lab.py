#!/usr/bin/env python3
"""The AWS side of the failover lab, run with the moto virtual environment's
Python inside the lab's "api" namespace, against moto_server on loopback.

Subcommands (each prints one JSON line; the proxy offers the same ones,
but the fabric, as control calls, which saves starting Python each time):

  setup --site S --cidr C --address A --az Z
      A VPC and one subnet (C, in zone Z); the floating interface at A,
      tagged natbake:site=S, source/destination check off, an elastic IP
      associated; a launch template requiring IMDSv2; an Auto Scaling group
      of one (tag natbake:site=S propagated at launch), whose instance is
      the first NAT instance.
  launch --group G        one more instance in the group (desired + 1): its
      id and primary private address
  members --group G       the group's pending and running instances (id,
      address, lifecycle state): the replacements it launched itself
  health --instance I     the instance's health as its group records it
  attach --eni E --instance I   attach E to I as device 1 (detaching first)
  detach --eni E          detach E from whoever holds it
  interface --eni E       the interface: status, holder
  tag --eni E --site S [--remove]   put the site tag on E, or take it off
  metrics --namespace N   every metric CloudWatch received in N: its name,
      dimensions, and the sum and count of its data points (the last hour)

  fabric --eni E --device D --park NS --map FILE --log FILE
      Mirrors the API's state onto the namespaces, forever: the veth D (the
      interface's device, its MAC equal to the interface's) is in the
      namespace of the instance the interface is attached to (FILE maps
      instance ids to namespaces, one "id namespace" per line, read at every
      turn), and in NS, down, while attached to nobody. Every move is
      logged with a timestamp. With --kernel-name K --rename-after S, the
      device arrives in an instance as K and is renamed D S seconds later,
      as udev renames a new device (eth1, then ens6). The device is found
      by its MAC wherever it is, whatever its name.
"""

import argparse
import json
import subprocess
import sys
import threading
import time

import boto3

ENDPOINT = "http://127.0.0.1:5000"
REGION = "us-east-1"


def client(service):
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=ENDPOINT,
        aws_access_key_id="AKIALAB0000000000000",
        aws_secret_access_key="lab0secret0lab0secret0lab0secret0lab0sec",
    )


def setup(args):
    ec2 = client("ec2")
    asg = client("autoscaling")
    vpc = ec2.create_vpc(CidrBlock=args.cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=args.cidr, AvailabilityZone=args.az)[
        "Subnet"
    ]["SubnetId"]
    tags = [{"Key": "natbake:site", "Value": args.site}]
    eni = ec2.create_network_interface(
        SubnetId=subnet,
        PrivateIpAddress=args.address,
        Description="natbake floating interface",
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": tags}],
    )["NetworkInterface"]
    ec2.modify_network_interface_attribute(
        NetworkInterfaceId=eni["NetworkInterfaceId"], SourceDestCheck={"Value": False}
    )
    eip = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(
        AllocationId=eip["AllocationId"], NetworkInterfaceId=eni["NetworkInterfaceId"]
    )
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName="natbake-" + args.site,
        LaunchTemplateData={
            "ImageId": image,
            "InstanceType": "t3.micro",
            "MetadataOptions": {"HttpTokens": "required"},
        },
    )
    group = "natbake-" + args.site
    asg.create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateName": "natbake-" + args.site},
        MinSize=1,
        MaxSize=1000,
        DesiredCapacity=1,
        VPCZoneIdentifier=subnet,
        Tags=[
            {
                "Key": "natbake:site",
                "Value": args.site,
                "PropagateAtLaunch": True,
                "ResourceId": group,
                "ResourceType": "auto-scaling-group",
            }
        ],
    )
    first = group_instances(asg, group)
    out = {
        "eni": eni["NetworkInterfaceId"],
        "mac": eni["MacAddress"],
        "address": eni["PrivateIpAddress"],
        "group": group,
        "instance": first[0],
        "instance_address": private_address(ec2, first[0]),
    }
    return out


def private_address(ec2, instance):
    """The primary private address EC2 gave an instance."""
    r = ec2.describe_instances(InstanceIds=[instance])["Reservations"]
    return r[0]["Instances"][0]["PrivateIpAddress"]


def group_instances(asg, group):
    g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    return [i["InstanceId"] for i in g["Instances"]]


def launch(args):
    asg = client("autoscaling")
    before = set(group_instances(asg, args.group))
    asg.set_desired_capacity(AutoScalingGroupName=args.group, DesiredCapacity=len(before) + 1)
    new = [i for i in group_instances(asg, args.group) if i not in before]
    return {"instance": new[0], "address": private_address(client("ec2"), new[0])}


def members(args):
    """The group's instances (not terminated ones), oldest first: id,
    primary private address, lifecycle state."""
    asg = client("autoscaling")
    ec2 = client("ec2")
    g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[args.group])["AutoScalingGroups"][0]
    out = []
    for i in g["Instances"]:
        r = ec2.describe_instances(InstanceIds=[i["InstanceId"]])["Reservations"][0]["Instances"][0]
        if r["State"]["Name"] in ("pending", "running"):
            out.append({"instance": i["InstanceId"], "address": r["PrivateIpAddress"], "lifecycle": i["LifecycleState"]})
    return {"members": out}


def health(args):
    asg = client("autoscaling")
    found = asg.describe_auto_scaling_instances(InstanceIds=[args.instance])[
        "AutoScalingInstances"
    ]
    return {"health": found[0]["HealthStatus"] if found else None}


def metrics(args):
    import datetime

    cw = client("cloudwatch")
    now = datetime.datetime.now(datetime.timezone.utc)
    found, seen = [], set()
    # Only these forwards' metrics (and the site's), when given.
    forwards = getattr(args, "forwards", None)
    listed = [
        m
        for page in cw.get_paginator("list_metrics").paginate(Namespace=args.namespace)
        for m in page["Metrics"]
    ]
    for m in listed:
        forward = [d["Value"] for d in m["Dimensions"] if d["Name"] == "Forward"]
        if forwards is not None and forward and forward[0] not in forwards:
            continue
        # moto 5.2.5 lists a metric of two or more dimensions once per
        # PutMetricData that sent it.
        key = (m["MetricName"], frozenset((d["Name"], d["Value"]) for d in m["Dimensions"]))
        if key in seen:
            continue
        seen.add(key)
        points = cw.get_metric_statistics(
            Namespace=args.namespace,
            MetricName=m["MetricName"],
            Dimensions=m["Dimensions"],
            StartTime=now - datetime.timedelta(hours=1),
            EndTime=now + datetime.timedelta(minutes=5),
            Period=7200,
            Statistics=["Sum", "SampleCount"],
        )["Datapoints"]
        found.append(
            {
                "name": m["MetricName"],
                "dimensions": {d["Name"]: d["Value"] for d in m["Dimensions"]},
                "sum": sum(p["Sum"] for p in points),
                "count": sum(p["SampleCount"] for p in points),
            }
        )
    # moto 5.2.5 answers GetMetricStatistics for dimensions D with the data
    # of every metric whose dimensions include D (CloudWatch matches them
    # exactly): take out what belongs to the metrics with more dimensions,
    # most dimensions first.
    found.sort(key=lambda m: -len(m["dimensions"]))
    for i, m in enumerate(found):
        for wider in found[:i]:
            if (
                wider["name"] == m["name"]
                and len(wider["dimensions"]) > len(m["dimensions"])
                and m["dimensions"].items() <= wider["dimensions"].items()
            ):
                m["sum"] -= wider["sum"]
                m["count"] -= wider["count"]
    return {"metrics": found}


def interface(ec2, eni):
    return ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]


def detach_eni(ec2, eni):
    att = interface(ec2, eni).get("Attachment")
    if att and att.get("Status") != "detached":
        try:
            ec2.detach_network_interface(AttachmentId=att["AttachmentId"], Force=True)
        except ec2.exceptions.ClientError:
            pass  # detached in the meantime (the proxy detaches dead holders)


def attach(args):
    ec2 = client("ec2")
    detach_eni(ec2, args.eni)
    ec2.attach_network_interface(
        NetworkInterfaceId=args.eni, InstanceId=args.instance, DeviceIndex=1
    )
    return {"attached": args.instance}


def detach(args):
    detach_eni(client("ec2"), args.eni)
    return {"detached": True}


def show(args):
    i = interface(client("ec2"), args.eni)
    att = i.get("Attachment") or {}
    return {"status": i["Status"], "holder": att.get("InstanceId")}


def tag(args):
    ec2 = client("ec2")
    tags = [{"Key": "natbake:site", "Value": args.site}]
    if args.remove:
        ec2.delete_tags(Resources=[args.eni], Tags=tags)
    else:
        ec2.create_tags(Resources=[args.eni], Tags=tags)
    return {"tagged": not args.remove}


def device_in(ns, mac):
    """The name of the device with MAC in namespace ns, or None."""
    r = subprocess.run(["ip", "-n", ns, "-o", "link"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if "link/ether %s " % mac in line + " ":
            return line.split(":")[1].strip().split("@")[0]
    return None


def ip(ns, *words):
    return subprocess.run(["ip", "-n", ns, *words], capture_output=True, text=True)


def rename_later(ns, mac, name, seconds, log):
    time.sleep(seconds)
    now = device_in(ns, mac)
    r = ip(ns, "link", "set", "dev", now or name, "name", name)
    if r.returncode == 0:
        log.write("%.3f renamed %s -> %s in %s\n" % (time.time(), now, name, ns))
    else:
        log.write("%.3f cannot rename %s -> %s in %s: %s\n" % (time.time(), now, name, ns, r.stderr.strip()))


def fabric(args):
    ec2 = client("ec2")
    log = open(args.log, "a", buffering=1)
    where = args.park
    mac = None
    log.write("%.3f start %s\n" % (time.time(), where))
    while True:
        try:
            described = interface(ec2, args.eni)
            mac = described["MacAddress"]
            att = described.get("Attachment") or {}
        except Exception as e:  # moto restarting or busy: try again
            log.write("%.3f describe failed: %s\n" % (time.time(), e))
            time.sleep(0.2)
            continue
        holder = att.get("InstanceId") if att.get("Status") in ("attaching", "attached") else None
        mapping = {}
        try:
            for line in open(args.map):
                parts = line.split()
                if len(parts) == 2:
                    mapping[parts[0]] = parts[1]
        except OSError:
            pass
        # An instance without a namespace (terminated, or not a lab host)
        # holds the interface where no lab host can see it.
        target = mapping.get(holder, args.park) if holder else args.park
        if target != where:
            name = device_in(where, mac) or args.device
            arriving = args.device
            if args.kernel_name and target != args.park:
                arriving = args.kernel_name
            if name != arriving:
                ip(where, "link", "set", "dev", name, "down")
                r = ip(where, "link", "set", "dev", name, "name", arriving)
                name = arriving if r.returncode == 0 else name
            r = ip(where, "link", "set", "dev", name, "netns", target)
            if r.returncode == 0:
                log.write("%.3f moved %s -> %s (%s) as %s\n" % (time.time(), where, target, holder, name))
                where = target
                if name != args.device:
                    threading.Thread(
                        target=rename_later,
                        args=(target, mac, args.device, args.rename_after, log),
                        daemon=True,
                    ).start()
            else:
                log.write("%.3f cannot move to %s: %s\n" % (time.time(), target, r.stderr.strip()))
        time.sleep(0.05)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    for a in ("--site", "--cidr", "--address", "--az"):
        s.add_argument(a, required=True)
    sub.add_parser("launch").add_argument("--group", required=True)
    sub.add_parser("members").add_argument("--group", required=True)
    sub.add_parser("health").add_argument("--instance", required=True)
    s = sub.add_parser("attach")
    s.add_argument("--eni", required=True)
    s.add_argument("--instance", required=True)
    sub.add_parser("detach").add_argument("--eni", required=True)
    sub.add_parser("interface").add_argument("--eni", required=True)
    s = sub.add_parser("tag")
    s.add_argument("--eni", required=True)
    s.add_argument("--site", required=True)
    s.add_argument("--remove", action="store_true")
    sub.add_parser("metrics").add_argument("--namespace", required=True)
    s = sub.add_parser("fabric")
    for a in ("--eni", "--device", "--park", "--map", "--log"):
        s.add_argument(a, required=True)
    s.add_argument("--kernel-name")
    s.add_argument("--rename-after", type=float, default=0.05)
    args = p.parse_args()
    result = COMMANDS[args.cmd](args)
    print(json.dumps(result))


COMMANDS = {
        "setup": setup,
        "launch": launch,
        "members": members,
        "health": health,
        "attach": attach,
        "detach": detach,
        "interface": show,
        "tag": tag,
        "metrics": metrics,
        "fabric": fabric,
}


if __name__ == "__main__":
    sys.exit(main())
