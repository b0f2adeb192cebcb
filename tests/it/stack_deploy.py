#!/usr/bin/env python3
"""Deploys a rendered stack.cfn.yaml into moto's CloudFormation with the
AWS CLI, then checks what it made through the EC2, IAM and Auto Scaling
APIs. Run with the moto virtual environment's Python inside the test's
network namespace, against moto_server on loopback.

  stack_deploy.py --endpoint URL --aws AWS_CLI --site-dir DIR --stack NAME
                  --image-parameter NAME [--roll]

With --roll, it then rolls a new image out as a monthly rebuild would:
the image build's publishing step (the commands of nat-ami.pkr.hcl's
shell-local post-processor, run as rendered with the AWS CLI pointed at
moto) moves the image parameter to a newly registered image, and a stack
update must point the group's launch template at it.

Prints one JSON line of what it saw; exits 1 with the reason on the
first check that fails.
"""

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile

import boto3
import yaml

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account


def fail(why, seen=None):
    print(f"stack_deploy: {why}", file=sys.stderr)
    if seen is not None:
        print(json.dumps(seen, indent=1, default=str), file=sys.stderr)
    sys.exit(1)


def client(name, endpoint):
    return boto3.client(
        name,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def substituted(value):
    """The manifest's policy as CloudFormation's Fn::Sub makes it."""
    if isinstance(value, str):
        return (
            value.replace("${AWS::Partition}", "aws")
            .replace("${AWS::Region}", REGION)
            .replace("${AWS::AccountId}", ACCOUNT)
        )
    if isinstance(value, list):
        return [substituted(v) for v in value]
    if isinstance(value, dict):
        return {k: substituted(v) for k, v in value.items()}
    return value


def ingress_rules(permissions):
    """EC2 IpPermissions as a comparable set of (proto, from, to, cidr, description)."""
    rules = set()
    for p in permissions:
        ports = (p.get("FromPort"), p.get("ToPort"))
        for r in p.get("IpRanges", []):
            rules.add(
                (
                    p["IpProtocol"],
                    *ports,
                    r["CidrIp"],
                    r.get("Description"),
                )
            )
    return rules


def variable_default(lines, name):
    """The default of a string variable of the template."""
    start = lines.index(f'variable "{name}" {{')
    for line in lines[start + 1 :]:
        key, _, value = line.strip().partition(" = ")
        if key.strip() == "default":
            return json.loads(value)
        if line == "}":
            break
    fail(f"variable {name} has no default")


def publish_commands(template):
    """The environment names and inline commands of the build's
    shell-local post-processor, as nat-ami.pkr.hcl renders them (HCL's
    string escapes are JSON's for this text), and the parameter it
    publishes to by default."""
    lines = open(template).read().splitlines()
    start = lines.index('    post-processor "shell-local" {')
    names, script, where = [], [], None
    for line in lines[start + 1 :]:
        text = line.strip()
        if text == "}":
            break
        if text.startswith("environment_vars = ["):
            where = names
        elif text.startswith("inline = ["):
            where = script
        elif text == "]":
            where = None
        elif where is names:
            # "NAME=${expression}": the values are Packer's to fill.
            names.append(text[1:].partition("=")[0])
        elif where is script:
            script.append(json.loads(text.rstrip(",")))
    want = ["NATBAKE_AMI_NAME", "NATBAKE_REGIONS", "NATBAKE_PARAMETER"]
    if sorted(names) != sorted(want) or not script:
        fail(f"the publishing step of {template} takes {names}, not {want}")
    return variable_default(lines, "image_parameter"), "\n".join(script) + "\n"


def publish(aws, endpoint, template, ami_name, regions, env):
    """Runs the publishing step as Packer would, with `aws` pointed at moto
    (Debian's AWS CLI 2.9 has --endpoint-url but not AWS_ENDPOINT_URL)."""
    parameter, script = publish_commands(template)
    with tempfile.TemporaryDirectory() as shim:
        with open(f"{shim}/aws", "w") as f:
            f.write(f'#!/bin/sh\nexec {aws} --endpoint-url {endpoint} "$@"\n')
        os.chmod(f"{shim}/aws", 0o755)
        with open(f"{shim}/step.sh", "w") as f:
            f.write(script)
        run_env = dict(env, PATH=f"{shim}:{env['PATH']}")
        run_env["NATBAKE_AMI_NAME"] = ami_name
        run_env["NATBAKE_REGIONS"] = " ".join(regions)
        run_env["NATBAKE_PARAMETER"] = parameter
        # shell-local's default shebang for inline commands.
        done = subprocess.run(["/bin/sh", "-e", f"{shim}/step.sh"], env=run_env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        fail(f"the publishing step exited {done.returncode}: {done.stdout}{done.stderr}")
    return parameter, done.stdout


def launched_image(ec2, asg, group_name, lt_id):
    """The group's launch template version, its image and user data, and
    the image of the group's instance."""
    g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])["AutoScalingGroups"][0]
    spec = g["LaunchTemplate"]
    if spec["LaunchTemplateId"] != lt_id:
        fail(f"group launch template {spec}, not {lt_id}")
    version = ec2.describe_launch_template_versions(LaunchTemplateId=lt_id, Versions=[str(spec["Version"])])[
        "LaunchTemplateVersions"
    ][0]
    data = version["LaunchTemplateData"]
    instances = [i["InstanceId"] for i in g["Instances"]]
    images = set()
    for i in instances:
        images.add(ec2.describe_instances(InstanceIds=[i])["Reservations"][0]["Instances"][0]["ImageId"])
    tags = {t["Key"]: t["Value"] for t in g["Tags"]}
    return {
        "version": str(spec["Version"]),
        "image": data.get("ImageId"),
        "user_data": bool(data.get("UserData")),
        "instance_images": sorted(images),
        "tag": tags.get("natbake:image-id"),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--aws", required=True)
    ap.add_argument("--site-dir", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--image-parameter", required=True)
    ap.add_argument("--roll", action="store_true")
    a = ap.parse_args()

    ec2 = client("ec2", a.endpoint)
    iam = client("iam", a.endpoint)
    asg = client("autoscaling", a.endpoint)
    cfn = client("cloudformation", a.endpoint)

    manifest = json.load(open(f"{a.site_dir}/manifest.json"))
    failover = "failover" in manifest
    # Without user data (too large for EC2) the stack needs a baked AMI,
    # which it takes from the parameter the image build publishes to: any
    # image moto knows stands for the first one.
    baked = None
    ssm = client("ssm", a.endpoint)
    if manifest["user_data"] is None:
        baked = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ssm.put_parameter(Name=a.image_parameter, Type="String", DataType="aws:ec2:image", Value=baked)

    # What only the user knows: the VPC, a public subnet, two private
    # route tables.
    vpc = ec2.create_vpc(CidrBlock=manifest["vpc_cidrs"][0])["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(
        VpcId=vpc, CidrBlock=manifest["vpc_cidrs"][0].replace("/16", "/24"), AvailabilityZone=f"{REGION}a"
    )["Subnet"]["SubnetId"]
    tables = [ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in range(2)]
    # And a target subnet's table whose egress goes elsewhere: it takes
    # the forwards' sources through the NAT.
    destinations = manifest["stack"]["target_route_destinations"]
    target_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] if destinations else None

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_PAGER": "",
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
    }
    deploy = [
        a.aws,
        "--endpoint-url",
        a.endpoint,
        "cloudformation",
        "deploy",
        "--template-file",
        f"{a.site_dir}/stack.cfn.yaml",
        "--stack-name",
        a.stack,
        "--capabilities",
        "CAPABILITY_IAM",
        "--parameter-overrides",
        f"VpcId={vpc}",
        f"PublicSubnetId={subnet}",
        f"PrivateRouteTable1={tables[0]}",
        f"PrivateRouteTable2={tables[1]}",
    ]
    if target_table:
        deploy.append(f"TargetRouteTable1={target_table}")
    done = subprocess.run(deploy, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        events = cfn.describe_stack_events(StackName=a.stack)["StackEvents"]
        fail(f"aws cloudformation deploy exited {done.returncode}: {done.stdout}{done.stderr}", events)

    stack = cfn.describe_stacks(StackName=a.stack)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        fail(f"stack status {stack['StackStatus']}", stack)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    # moto lists some resources (associations, skipped conditions) without ids.
    resources = {
        r["LogicalResourceId"]: r
        for r in cfn.list_stack_resources(StackName=a.stack)["StackResourceSummaries"]
        if r.get("LogicalResourceId")
    }
    # moto gives a stack made through a change set (as `deploy` makes it)
    # no outputs: read the same ids from the resources.
    physical = {k: r["PhysicalResourceId"] for k, r in resources.items()}
    ids = {
        "SecurityGroupId": physical["SecurityGroup"],
        "ElasticIp": physical["ElasticIp"],
    }
    if failover:
        ids["InterfaceId"] = physical["Interface"]
        ids["AutoScalingGroupName"] = physical["Group"]
    else:
        ids["InstanceId"] = physical["Instance"]
    for k, v in outputs.items():
        if ids.get(k) != v:
            fail(f"output {k} is {v}, the resource is {ids.get(k)}")
    outputs = ids

    # The security group's ingress is security-group.json, rule for rule.
    seen = {"outputs": outputs, "resources": sorted(resources)}
    want = ingress_rules(json.load(open(f"{a.site_dir}/security-group.json")))
    group = ec2.describe_security_groups(GroupIds=[outputs["SecurityGroupId"]])["SecurityGroups"][0]
    got = ingress_rules(group["IpPermissions"])
    # moto's CloudFormation drops rule descriptions; compare them where
    # it keeps them (the template's own are checked against the file by
    # the Rust tests).
    if all(rule[4] is None for rule in got):
        want = {rule[:4] + (None,) for rule in want}
        seen["descriptions"] = "dropped by moto"
    if got != want:
        fail(f"security group ingress {sorted(got, key=str)} is not security-group.json's {sorted(want, key=str)}")
    if group["VpcId"] != vpc:
        fail(f"security group in {group['VpcId']}, not {vpc}")
    seen["ingress_rules"] = len(got)

    # Each private route table sends 0.0.0.0/0 to the interface or instance.
    if failover:
        target_key, target = "NetworkInterfaceId", outputs["InterfaceId"]
    else:
        target_key, target = "InstanceId", outputs["InstanceId"]
    for t in tables:
        routes = ec2.describe_route_tables(RouteTableIds=[t])["RouteTables"][0]["Routes"]
        default = [r for r in routes if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
        if len(default) != 1 or default[0].get(target_key) != target:
            fail(f"{t}: default route {default}, not to {target_key} {target}")
    seen["routes"] = {t: target for t in tables}

    # The target table: one route per destination of the manifest, each to
    # the interface or instance, and no default route; the second target
    # table was left empty, so nothing else has those routes.
    if target_table:
        routes = ec2.describe_route_tables(RouteTableIds=[target_table])["RouteTables"][0]["Routes"]
        got = {r.get("DestinationCidrBlock"): r.get(target_key) for r in routes if r.get("GatewayId") != "local"}
        want = {d: target for d in destinations}
        if got != want:
            fail(f"{target_table}: routes {got}, not {want}")
        for t in tables:
            routes = ec2.describe_route_tables(RouteTableIds=[t])["RouteTables"][0]["Routes"]
            extra = [r for r in routes if r.get("DestinationCidrBlock") in destinations]
            if extra:
                fail(f"{t}: routes of the target tables {extra}")
        per_manifest = {r["destination"] for t in manifest["targets"] for r in t["routes"]}
        if set(destinations) - per_manifest:
            fail(f"stack destinations {destinations} beyond the targets' routes {per_manifest}")
        seen["target_routes"] = len(got)

    # One instance, launched from the launch template, with IMDSv2 only.
    lt_id = resources["LaunchTemplate"]["PhysicalResourceId"]
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=lt_id)["LaunchTemplateVersions"]
    data = versions[-1]["LaunchTemplateData"]
    meta = data.get("MetadataOptions", {})
    if meta.get("HttpTokens") != "required" or meta.get("HttpPutResponseHopLimit") != 1:
        fail(f"launch template metadata options {meta}")
    if baked:
        if data.get("UserData") or data.get("ImageId") != baked:
            fail(f"the launch template should launch the baked AMI {baked} without user data", data)
        seen["image"] = "baked"
    elif not data.get("UserData"):
        fail("the launch template has no user data although ImageId was left empty", data)
    else:
        seen["image"] = "official, with user data"
    # A standby pair: two instances, the rules between them, the hook.
    rendered = yaml.safe_load(open(f"{a.site_dir}/stack.cfn.yaml"))["Resources"]
    standby = "HandoverHook" in rendered
    size = 2 if standby else 1
    if failover:
        name = outputs["AutoScalingGroupName"]
        g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        if (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]) != (size, size, size):
            fail(f"group sizes {g['MinSize']}/{g['MaxSize']}/{g['DesiredCapacity']}")
        if len(g["Instances"]) != size:
            fail(f"group has {len(g['Instances'])} instances", g)
        if standby:
            seen["standby"] = check_standby(ec2, asg, outputs["SecurityGroupId"], name, rendered["HandoverHook"])
        if g["VPCZoneIdentifier"] != subnet:
            fail(f"group in {g['VPCZoneIdentifier']}, not {subnet}")
        tags = {(t["Key"], t["Value"], t["PropagateAtLaunch"]) for t in g["Tags"]}
        if ("natbake:site", manifest["site"], True) not in tags:
            fail(f"group tags {tags}")
        instance_id = g["Instances"][0]["InstanceId"]
        seen["group"] = name
    else:
        instance_id = outputs["InstanceId"]
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    if instance["SubnetId"] != subnet:
        fail(f"instance in {instance['SubnetId']}, not {subnet}")
    # moto launches an instance without its launch template's metadata
    # options; where it applies them, they must be the template's.
    imds = instance.get("MetadataOptions", {})
    if imds.get("HttpTokens") == "required":
        if imds.get("HttpPutResponseHopLimit") != 1:
            fail(f"instance metadata options {imds}")
        seen["instance_metadata"] = imds
    else:
        seen["instance_metadata"] = "not applied by moto"
    if failover:
        # The group launches from the stack's launch template.
        if g["LaunchTemplate"]["LaunchTemplateId"] != lt_id:
            fail(f"group launch template {g['LaunchTemplate']}, not {lt_id}")
        # Its own interface: a public address (to reach the API before it
        # holds the floating interface) and the stack's group. moto does
        # not give the instance the groups of a template's interface.
        nics = data.get("NetworkInterfaces", [])
        if len(nics) != 1 or nics[0].get("Groups") != [outputs["SecurityGroupId"]] or nics[0].get("AssociatePublicIpAddress") is not True:
            fail(f"launch template interfaces {nics}")
        groups = [sg["GroupId"] for sg in instance["SecurityGroups"]]
        if groups and groups != [outputs["SecurityGroupId"]]:
            fail(f"instance groups {instance['SecurityGroups']}")
    seen["instance"] = instance_id

    # The role's policy is the manifest's, and without failover there is
    # no role at all.
    roles = [r for r in resources.values() if r["ResourceType"] == "AWS::IAM::Role"]
    if failover:
        if len(roles) != 1:
            fail(f"{len(roles)} roles", roles)
        role = roles[0]["PhysicalResourceId"]
        names = iam.list_role_policies(RoleName=role)["PolicyNames"]
        if len(names) != 1:
            fail(f"role policies {names}")
        doc = iam.get_role_policy(RoleName=role, PolicyName=names[0])["PolicyDocument"]
        if isinstance(doc, str):
            # moto keeps a policy that CloudFormation gave it as a mapping
            # in Python's notation, not JSON.
            try:
                doc = json.loads(doc)
            except json.JSONDecodeError:
                doc = ast.literal_eval(doc)
        want = substituted(manifest["failover"]["iam_policy"])
        if doc != want:
            fail(f"role policy {json.dumps(doc)} is not the manifest's {json.dumps(want)}")
        # The launch template names the stack's profile of that role; moto
        # does not give a group's instance its template's profile.
        profile = iam.get_instance_profile(InstanceProfileName=physical["InstanceProfile"])["InstanceProfile"]
        if [r["RoleName"] for r in profile["Roles"]] != [role]:
            fail(f"instance profile roles {profile['Roles']}")
        if data.get("IamInstanceProfile", {}).get("Arn") != profile["Arn"]:
            fail(f"launch template profile {data.get('IamInstanceProfile')}, not {profile['Arn']}")
        given = instance.get("IamInstanceProfile", {}).get("Arn")
        if given is not None and given != profile["Arn"]:
            fail(f"the instance has profile {given}, not {profile['Arn']}")
        seen["role"] = role
    else:
        if roles or any(r["ResourceType"] == "AWS::IAM::InstanceProfile" for r in resources.values()):
            fail("a stack without failover has IAM resources", sorted(resources))
        if "IamInstanceProfile" in instance:
            fail(f"the instance has a profile {instance['IamInstanceProfile']}")

    # The elastic IP exists and is the output.
    addresses = ec2.describe_addresses(PublicIps=[outputs["ElasticIp"]])["Addresses"]
    if len(addresses) != 1:
        fail(f"elastic IP {outputs['ElasticIp']}: {addresses}")
    if not failover and addresses[0].get("InstanceId") != instance_id:
        fail(f"elastic IP on {addresses[0].get('InstanceId')}, not {instance_id}")
    seen["address"] = addresses[0]

    alarms = client("cloudwatch", a.endpoint).describe_alarms()["MetricAlarms"]
    seen["alarms"] = sorted(al["MetricName"] for al in alarms)

    if a.roll:
        seen["roll"] = roll(a, ec2, asg, cfn, ssm, env, deploy, outputs["AutoScalingGroupName"], lt_id)
    print(json.dumps(seen, default=str))


def check_standby(ec2, asg, group_id, group_name, hook):
    """The pair's own rules (VRRP, conntrackd's port), from the group to
    itself, and the termination hook on the group. moto 5.2.5's
    CloudFormation does not make lifecycle hooks: the template's hook is
    put through the Auto Scaling API as CloudFormation would, which proves
    that API takes its properties, and read back."""
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    pair = set()
    for p in group["IpPermissions"]:
        for g in p.get("UserIdGroupPairs", []):
            if g.get("GroupId") != group_id:
                fail(f"a rule from another group {g}", p)
            pair.add((p["IpProtocol"], p.get("FromPort"), p.get("ToPort")))
    # EC2 writes a protocol without ports with -1, or none at all.
    pair = {(proto, None, None) if f in (None, -1) else (proto, f, t) for proto, f, t in pair}
    want = {("112", None, None), ("udp", 3780, 3780)}
    if pair != want:
        fail(f"the pair's rules are {sorted(pair, key=str)}, not {sorted(want, key=str)}", group)
    hooks = asg.describe_lifecycle_hooks(AutoScalingGroupName=group_name)["LifecycleHooks"]
    if not hooks:
        props = dict(hook["Properties"])
        if props.pop("AutoScalingGroupName") != {"Ref": "Group"}:
            fail(f"the hook is not on the stack's group: {hook}")
        asg.put_lifecycle_hook(AutoScalingGroupName=group_name, **props)
        hooks = asg.describe_lifecycle_hooks(AutoScalingGroupName=group_name)["LifecycleHooks"]
    got = [(h["LifecycleHookName"], h["LifecycleTransition"], h.get("DefaultResult"), h.get("HeartbeatTimeout")) for h in hooks]
    if got != [("natbake-handover", "autoscaling:EC2_INSTANCE_TERMINATING", "CONTINUE", 120)]:
        fail(f"lifecycle hooks {got}")
    return {"pair_rules": sorted(pair, key=str), "hook": got[0][0]}


def roll(a, ec2, asg, cfn, ssm, env, deploy, group_name, lt_id):
    """A monthly rebuild's rollout: the build publishes a new image, and a
    stack update takes the group to it."""
    before = launched_image(ec2, asg, group_name, lt_id)
    # The new image, in the build region and one copy region, named as
    # the build names it.
    # (EC2 keeps AMI names unique per account and region; moto does not.)
    ami_name = f"{a.stack}-20260101000000"
    regions = [REGION, "us-west-2"]
    new = {}
    for region in regions:
        r_ec2 = boto3.client(
            "ec2", region_name=region, endpoint_url=a.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        new[region] = r_ec2.register_image(Name=ami_name, Description="natbake rollout")["ImageId"]
    parameter, said = publish(a.aws, a.endpoint, f"{a.site_dir}/nat-ami.pkr.hcl", ami_name, regions, env)
    if parameter != a.image_parameter:
        fail(f"the build publishes to {parameter}, the stack reads {a.image_parameter}")
    for region in regions:
        r_ssm = boto3.client(
            "ssm", region_name=region, endpoint_url=a.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        p = r_ssm.get_parameter(Name=parameter)["Parameter"]
        if p["Value"] != new[region] or p.get("DataType") != "aws:ec2:image":
            fail(f"{parameter} in {region} is {p}, not the new image {new[region]}")
    # The update. AWS resolves the parameter again at every update, and
    # a change set sees its new value; moto's change sets compare the
    # parameters only as given, so the update names the parameter
    # explicitly (the same name the first deploy took by default, or, on
    # a stack that ran the official image, the published one).
    # moto also takes a parameter left at its previous value for the value
    # it resolved to, not for the parameter's name: every SSM-typed
    # parameter is named again (as AWS does by itself).
    template = yaml.safe_load(open(f"{a.site_dir}/stack.cfn.yaml"))
    names = {
        k: v["Default"]
        for k, v in template["Parameters"].items()
        if v["Type"].startswith("AWS::SSM::Parameter::Value<")
    }
    names["ImageParameter"] = parameter
    update = deploy + [f"{k}={v}" for k, v in names.items()]
    done = subprocess.run(update, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        fail(f"the update exited {done.returncode}: {done.stdout}{done.stderr}")
    # moto makes the group anew on an update: its name is the stack's now.
    group_name = next(
        r["PhysicalResourceId"]
        for r in cfn.list_stack_resources(StackName=a.stack)["StackResourceSummaries"]
        if r.get("LogicalResourceId") == "Group"
    )
    after = launched_image(ec2, asg, group_name, lt_id)
    if int(after["version"]) <= int(before["version"]):
        fail(f"the group stays at launch template version {after['version']}", [before, after])
    if after["image"] != new[REGION] or after["tag"] != new[REGION]:
        fail(f"after the update the group launches {after}, not {new[REGION]}", [before, after])
    if after["user_data"]:
        fail("a baked image is launched with the user data", after)
    if after["instance_images"] and after["instance_images"] != [new[REGION]]:
        fail(f"the group's instance runs {after['instance_images']}", after)
    resolved = {
        p["ParameterKey"]: p.get("ResolvedValue")
        for p in cfn.describe_stacks(StackName=a.stack)["Stacks"][0].get("Parameters", [])
    }
    return {"before": before, "after": after, "published": said.strip().splitlines(), "resolved": resolved.get("ImageParameter")}


if __name__ == "__main__":
    main()
