"""natbake-aws against moto, without root: run with the moto virtual
environment's Python; the program itself runs as on the instance
(/usr/bin/python3 -IS), its metadata from canned_aws.py's server on
127.0.0.1 and its APIs from moto's server on 127.0.0.1 (through aws.env).

What moto's state must show afterwards: the floating interface found by
its site tag and zone, attached to the instance as device 1 and detached
again (with Force), the instance's group told it is Unhealthy, 1,208
datums in CloudWatch from two PutMetricData requests.

moto takes seconds to store a thousand datums, more than the 10 s a
request may take when the machine is busy: the publish here goes in parts
of 300 (five requests), each call with 60 s; the parts of 1,000 are proven
on canned answers (test_natbake_aws.py) and in the failover lab.
"""

import argparse
import os
import socket
import subprocess
import sys

import boto3
from moto.server import ThreadedMotoServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import canned_aws as canned  # noqa: E402

REGION, ZONE, SITE = "us-east-1", "us-east-1a", "corp"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(service, endpoint):
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=canned.KEY,
        aws_secret_access_key=canned.SECRET,
    )


def setup(endpoint):
    ec2 = client("ec2", endpoint)
    asg = client("autoscaling", endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24", AvailabilityZone=ZONE)["Subnet"]["SubnetId"]
    other = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]
    eni = ec2.create_network_interface(
        SubnetId=subnet,
        PrivateIpAddress="10.0.0.10",
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "natbake:site", "Value": SITE}]}],
    )["NetworkInterface"]
    # The site's interface in another zone, and another site's here: neither is ours.
    ec2.create_network_interface(
        SubnetId=other,
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "natbake:site", "Value": SITE}]}],
    )
    ec2.create_network_interface(
        SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "natbake:site", "Value": "other"}]}],
    )
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    asg.create_launch_configuration(LaunchConfigurationName="nat", ImageId=image, InstanceType="t3.micro")
    asg.create_auto_scaling_group(
        AutoScalingGroupName="nat-group",
        LaunchConfigurationName="nat",
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        VPCZoneIdentifier=subnet,
    )
    instance = asg.describe_auto_scaling_groups()["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
    return ec2, asg, eni, instance


class Program:
    def __init__(self, program, imds, env_file):
        self.program, self.imds, self.env_file = program, imds, env_file

    def __call__(self, *argv, stdin=""):
        done = subprocess.run(
            ["/usr/bin/python3", "-IS", self.program, "--deadline", "60", "--env-file", self.env_file] + list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "NATBAKE_IMDS_ADDRESS": self.imds},
            timeout=120,
        )
        if done.returncode != 0:
            raise SystemExit("natbake-aws %s: exit %d\n%s%s" % (" ".join(argv), done.returncode, done.stdout, done.stderr))
        return [tuple(line.split("=", 1)) for line in done.stdout.splitlines()]


def datums(n):
    return "".join("Forward%04d Count %d Site=%s Forward=f%d\n" % (i, i + 1, SITE, i) for i in range(n))


def prove(run, ec2, asg, eni, instance, endpoint):
    found = dict(run("describe-floating", SITE))
    want = {"id": eni["NetworkInterfaceId"], "mac": eni["MacAddress"], "address": "10.0.0.10", "holder": "", "instance": instance}
    assert {k: found[k] for k in want} == want, (found, want)

    got = dict(run("attach", eni["NetworkInterfaceId"]))
    att = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])["NetworkInterfaces"][0]["Attachment"]
    assert (att["InstanceId"], att["DeviceIndex"], att["AttachmentId"]) == (instance, 1, got["attachment"]), (att, got)
    found = dict(run("describe-floating", SITE))
    assert (found["holder"], found["attachment"], found["attached"]) == (instance, att["AttachmentId"], "attached"), found

    state = dict(run("instance-state", instance))
    assert state == {"state": "running", "group": "nat-group", "interfaces": "2"}, state

    run("detach", att["AttachmentId"], "--force")
    after = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])["NetworkInterfaces"][0]
    assert "Attachment" not in after or after["Attachment"].get("Status") in ("detached", "detaching"), after

    reported = run("report-unhealthy")
    assert reported == [("group", "nat-group"), ("reported", "Unhealthy")], reported
    health = asg.describe_auto_scaling_instances(InstanceIds=[instance])["AutoScalingInstances"][0]["HealthStatus"]
    assert health.upper() == "UNHEALTHY", health

    # A standby's peers: the site's other running instances in this zone.
    me = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    site_tag = [{"Key": "natbake:site", "Value": SITE}]
    ec2.create_tags(Resources=[instance], Tags=site_tag)
    asg.update_auto_scaling_group(AutoScalingGroupName="nat-group", MaxSize=2, DesiredCapacity=2)
    group = asg.describe_auto_scaling_groups()["AutoScalingGroups"][0]["Instances"]
    peer_id = [i["InstanceId"] for i in group if i["InstanceId"] != instance][0]
    ec2.create_tags(Resources=[peer_id], Tags=site_tag)
    peer = ec2.describe_instances(InstanceIds=[peer_id])["Reservations"][0]["Instances"][0]
    # The site's instance outside the group (another stack), and one without the tag.
    ec2.run_instances(
        ImageId=me["ImageId"], MinCount=1, MaxCount=1, SubnetId=me["SubnetId"],
        TagSpecifications=[{"ResourceType": "instance", "Tags": site_tag}],
    )
    ec2.run_instances(ImageId=me["ImageId"], MinCount=1, MaxCount=1, SubnetId=me["SubnetId"])
    found = dict(run("peers", SITE))
    want = {"peers": "1", "peer1": "%s %s running" % (peer["InstanceId"], peer["PrivateIpAddress"])}
    assert {k: found.get(k) for k in want} == want, (found, want)

    sent = run("put-metrics", "natbake-test", "300", stdin=datums(1208))
    assert [v for k, v in sent if k == "sent"] == ["300", "600", "900", "1200", "1208"], sent
    cw = client("cloudwatch", endpoint)
    names = set()
    for page in cw.get_paginator("list_metrics").paginate(Namespace="natbake-test"):
        names.update(m["MetricName"] for m in page["Metrics"])
    assert len(names) == 1208, len(names)
    return "describe, attach, instance-state, detach --force, report-unhealthy, peers, put-metrics (1,208 in 5 requests): moto agrees"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--program", required=True)
    p.add_argument("--dir", required=True)
    args = p.parse_args()

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    imds = canned.Server()
    try:
        endpoint = "http://127.0.0.1:%d/" % port
        env_file = os.path.join(args.dir, "aws.env")
        with open(env_file, "w") as f:
            for name in ("EC2", "AUTOSCALING", "CLOUDWATCH"):
                f.write("NATBAKE_%s_ENDPOINT=%s\n" % (name, endpoint))
        ec2, asg, eni, instance = setup(endpoint)
        imds.metadata["meta-data/instance-id"] = instance
        run = Program(args.program, "127.0.0.1:%d" % imds.port, env_file)
        print(prove(run, ec2, asg, eni, instance, endpoint))
    finally:
        imds.close()
        moto.stop()


if __name__ == "__main__":
    main()
