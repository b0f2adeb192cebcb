"""Replays an NLB stack (nlb-stack.cfn.yaml) into moto and reads it back.

moto 5.2.5's CloudFormation makes an application load balancer of every
AWS::ElasticLoadBalancingV2::LoadBalancer (it ignores Type and
SubnetMappings), so the load balancer's part of the template is replayed
here, resource by resource, through the EC2 and Elastic Load Balancing v2
APIs, which model network load balancers, TCP and UDP listeners and
target groups of type ip. The egress part (elastic IPs, NAT gateways,
routes) goes through moto's CloudFormation as it is, cut out of the
template with its parameters and conditions.

Everything runs in this process against moto's in-memory backends
(mock_aws): no server, no network. A VPC with public and private subnets
and a route table per zone is made first, and its ids are the stack's
parameters. The script fails on any resource type or intrinsic function
it does not know, so a template that grows one is not half replayed.

Usage: nlb_replay.py SITE_DIR ZONES
Prints what AWS would hold, as JSON, on stdout.
"""

import ipaddress
import json
import sys

import boto3
import yaml
from moto import mock_aws

REGION = "us-east-1"

# The template's resources that go through moto's CloudFormation.
EGRESS_TYPES = {"AWS::EC2::NatGateway", "AWS::EC2::Route"}


def die(message):
    print(f"nlb_replay.py: {message}", file=sys.stderr)
    sys.exit(1)


class Replay:
    def __init__(self, template, params):
        self.t = template
        self.params = params
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.elb = boto3.client("elbv2", region_name=REGION)
        self.made = {}  # logical id -> dict of attributes (Ref, GroupId, ...)
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self.t["Conditions"][name]))
        return self.conditions[name]

    def value(self, v):
        if isinstance(v, list):
            return [x for x in (self.value(i) for i in v) if x is not NoValue]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (key, arg), = v.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return NoValue
                if arg in self.params:
                    return self.params[arg]
                return self.made[arg]["Ref"]
            if key == "Fn::GetAtt":
                return self.made[arg[0]][arg[1]]
            if key == "Fn::Equals":
                a, b = (self.value(x) for x in arg)
                return a == b
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(x) for x in arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Join":
                return arg[0].join(str(x) for x in self.value(arg[1]))
            if key.startswith("Fn::"):
                die(f"unknown function {key}")
        return {k: x for k, x in ((k, self.value(x)) for k, x in v.items()) if x is not NoValue}

    def wanted(self, resource):
        cond = resource.get("Condition")
        return cond is None or self.condition(cond)

    def security_group(self, name, props):
        gid = self.ec2.create_security_group(
            GroupName=f"{name}-{len(self.made)}",
            Description=props["GroupDescription"],
            VpcId=props["VpcId"],
        )["GroupId"]
        self.made[name] = {"Ref": gid, "GroupId": gid}
        ingress = [permission(r) for r in props.get("SecurityGroupIngress", [])]
        if ingress:
            self.ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=ingress)
        if "SecurityGroupEgress" in props:
            # A group's own outbound rules replace the default allow-all.
            self.ec2.revoke_security_group_egress(
                GroupId=gid,
                IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
            )
            self.ec2.authorize_security_group_egress(
                GroupId=gid,
                IpPermissions=[permission(r) for r in props["SecurityGroupEgress"]],
            )

    def eip(self, name, props):
        a = self.ec2.allocate_address(Domain=props["Domain"])
        self.made[name] = {"Ref": a["PublicIp"], "AllocationId": a["AllocationId"]}

    def load_balancer(self, name, props):
        lb = self.elb.create_load_balancer(
            Name=f"natbake-{len(self.made)}",
            Type=props["Type"],
            Scheme=props["Scheme"],
            IpAddressType=props["IpAddressType"],
            SecurityGroups=props["SecurityGroups"],
            SubnetMappings=props["SubnetMappings"],
            Tags=props["Tags"],
        )["LoadBalancers"][0]
        self.elb.modify_load_balancer_attributes(
            LoadBalancerArn=lb["LoadBalancerArn"], Attributes=props["LoadBalancerAttributes"]
        )
        self.made[name] = {"Ref": lb["LoadBalancerArn"], "DNSName": lb["DNSName"]}
        self.sent_mappings = props["SubnetMappings"]

    def target_group(self, name, props):
        tg = self.elb.create_target_group(
            Name=f"natbake-tg-{len(self.made)}",
            Protocol=props["Protocol"],
            Port=props["Port"],
            VpcId=props["VpcId"],
            TargetType=props["TargetType"],
            HealthCheckEnabled=props["HealthCheckEnabled"],
            HealthCheckProtocol=props["HealthCheckProtocol"],
            HealthCheckPort=props["HealthCheckPort"],
            HealthCheckIntervalSeconds=props["HealthCheckIntervalSeconds"],
            HealthyThresholdCount=props["HealthyThresholdCount"],
            UnhealthyThresholdCount=props["UnhealthyThresholdCount"],
            Tags=props["Tags"],
        )["TargetGroups"][0]
        arn = tg["TargetGroupArn"]
        self.elb.register_targets(TargetGroupArn=arn, Targets=props["Targets"])
        if props.get("TargetGroupAttributes"):
            self.elb.modify_target_group_attributes(
                TargetGroupArn=arn, Attributes=props["TargetGroupAttributes"]
            )
        self.made[name] = {"Ref": arn}

    def listener(self, name, props):
        listener = self.elb.create_listener(
            LoadBalancerArn=props["LoadBalancerArn"],
            Protocol=props["Protocol"],
            Port=props["Port"],
            DefaultActions=props["DefaultActions"],
        )["Listeners"][0]
        self.made[name] = {"Ref": listener["ListenerArn"]}

    def run(self):
        handlers = {
            "AWS::EC2::SecurityGroup": self.security_group,
            "AWS::EC2::EIP": self.eip,
            "AWS::ElasticLoadBalancingV2::LoadBalancer": self.load_balancer,
            "AWS::ElasticLoadBalancingV2::TargetGroup": self.target_group,
            "AWS::ElasticLoadBalancingV2::Listener": self.listener,
        }
        for name, res in self.t["Resources"].items():
            kind = res["Type"]
            if kind in EGRESS_TYPES or name.startswith("NatElasticIp"):
                continue
            if kind not in handlers:
                die(f"{name}: no replay for {kind}")
            if self.wanted(res):
                handlers[kind](name, self.value(res["Properties"]))


class NoValueType:
    pass


NoValue = NoValueType()


def permission(rule):
    p = {"IpProtocol": rule["IpProtocol"], "FromPort": rule["FromPort"], "ToPort": rule["ToPort"]}
    if "CidrIp" in rule:
        p["IpRanges"] = [{"CidrIp": rule["CidrIp"], "Description": rule["Description"]}]
    else:
        p["UserIdGroupPairs"] = [
            {"GroupId": rule["SourceSecurityGroupId"], "Description": rule["Description"]}
        ]
    return p


def egress_template(t):
    """The template's egress resources with the parameters and conditions they use."""
    resources = {
        k: v
        for k, v in t["Resources"].items()
        if v["Type"] in EGRESS_TYPES or k.startswith("NatElasticIp")
    }
    params = {k: v for k, v in t["Parameters"].items() if k != "VpcId"}
    return {
        "AWSTemplateFormatVersion": t["AWSTemplateFormatVersion"],
        "Parameters": params,
        "Conditions": t["Conditions"],
        "Resources": resources,
    }


def network(vpc_cidrs, zones):
    """A VPC shaped like the README's: per zone a public subnet (with the
    Internet gateway) and a private subnet with its own route table."""
    ec2 = boto3.client("ec2", region_name=REGION)
    first = ipaddress.ip_network(vpc_cidrs[0])
    vpc = ec2.create_vpc(CidrBlock=str(first))["Vpc"]["VpcId"]
    for extra in vpc_cidrs[1:]:
        ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock=extra)
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    blocks = first.subnets(new_prefix=min(first.prefixlen + 4, 28))
    params = {"VpcId": vpc}
    for n in range(1, zones + 1):
        zone = f"{REGION}{'abc'[n - 1]}"
        public = ec2.create_subnet(VpcId=vpc, CidrBlock=str(next(blocks)), AvailabilityZone=zone)
        private = ec2.create_subnet(VpcId=vpc, CidrBlock=str(next(blocks)), AvailabilityZone=zone)
        rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.associate_route_table(RouteTableId=rtb, SubnetId=private["Subnet"]["SubnetId"])
        params[f"PublicSubnet{n}"] = public["Subnet"]["SubnetId"]
        params[f"PrivateRouteTable{n}"] = rtb
    return params


def read_back(replay, params):
    ec2, elb = replay.ec2, replay.elb
    out = {"load_balancers": [], "security_groups": {}, "nat_gateways": [], "routes": []}
    for lb in elb.describe_load_balancers()["LoadBalancers"]:
        arn = lb["LoadBalancerArn"]
        attributes = {
            a["Key"]: a["Value"]
            for a in elb.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
        }
        listeners = []
        for listener in elb.describe_listeners(LoadBalancerArn=arn)["Listeners"]:
            (action,) = listener["DefaultActions"]
            tg_arn = action["TargetGroupArn"]
            (tg,) = elb.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"]
            health = elb.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
            tg_attributes = {
                a["Key"]: a["Value"]
                for a in elb.describe_target_group_attributes(TargetGroupArn=tg_arn)["Attributes"]
            }
            listeners.append(
                {
                    "protocol": listener["Protocol"],
                    "port": listener["Port"],
                    "action": action["Type"],
                    "target_group": {
                        "protocol": tg["Protocol"],
                        "port": tg["Port"],
                        "target_type": tg["TargetType"],
                        "vpc": tg["VpcId"] == params["VpcId"],
                        "health_check": [tg["HealthCheckProtocol"], tg["HealthCheckPort"]],
                        "targets": sorted(
                            [h["Target"]["Id"], h["Target"]["Port"]] for h in health
                        ),
                        "preserve_client_ip": tg_attributes.get("preserve_client_ip.enabled"),
                    },
                }
            )
        out["load_balancers"].append(
            {
                "type": lb["Type"],
                "scheme": lb["Scheme"],
                "subnets": sorted(z["SubnetId"] for z in lb["AvailabilityZones"]),
                "security_groups": lb.get("SecurityGroups", []),
                "cross_zone": attributes.get("load_balancing.cross_zone.enabled"),
                "listeners": sorted(listeners, key=lambda x: (x["protocol"], x["port"])),
                # moto keeps no allocation id per zone: what was sent.
                "sent_subnet_mappings": replay.sent_mappings,
            }
        )
    names = {v["GroupId"]: k for k, v in replay.made.items() if "GroupId" in v}
    groups = ec2.describe_security_groups(GroupIds=list(names))["SecurityGroups"] if names else []
    for g in groups:
        rules = {"ingress": [], "egress": []}
        for key, perms in (("ingress", g["IpPermissions"]), ("egress", g["IpPermissionsEgress"])):
            for p in perms:
                for r in p.get("IpRanges", []):
                    rules[key].append([p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), r["CidrIp"]])
                for r in p.get("UserIdGroupPairs", []):
                    rules[key].append(
                        [p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), "sg:" + names.get(r["GroupId"], r["GroupId"])]
                    )
            rules[key].sort()
        out["security_groups"][names[g["GroupId"]]] = rules
    for nat in ec2.describe_nat_gateways()["NatGateways"]:
        out["nat_gateways"].append(
            {
                "subnet": nat["SubnetId"],
                "allocations": [a.get("AllocationId") for a in nat["NatGatewayAddresses"]],
                "id": nat["NatGatewayId"],
            }
        )
    for rt in ec2.describe_route_tables()["RouteTables"]:
        for route in rt["Routes"]:
            if route.get("NatGatewayId"):
                out["routes"].append(
                    [rt["RouteTableId"], route["DestinationCidrBlock"], route["NatGatewayId"]]
                )
    out["routes"].sort()
    out["parameters"] = params
    return out


def main():
    site_dir, zones = sys.argv[1], int(sys.argv[2])
    with open(f"{site_dir}/nlb-stack.cfn.yaml") as f:
        template = yaml.safe_load(f)
    with open(f"{site_dir}/manifest.json") as f:
        manifest = json.load(f)
    with mock_aws():
        params = network(manifest["vpc_cidrs"], zones)
        for n in range(zones + 1, 4):
            params[f"PublicSubnet{n}"] = ""
            params[f"PrivateRouteTable{n}"] = ""
        template_params = {k: v for k, v in params.items() if k in template["Parameters"]}
        replay = Replay(template, template_params)
        replay.sent_mappings = []
        replay.run()
        egress = egress_template(template)
        if egress["Resources"]:
            cfn = boto3.client("cloudformation", region_name=REGION)
            cfn.create_stack(
                StackName="natbake-egress",
                TemplateBody=json.dumps(egress),
                Parameters=[
                    {"ParameterKey": k, "ParameterValue": v}
                    for k, v in template_params.items()
                    if k in egress["Parameters"]
                ],
            )
            stack = cfn.describe_stacks(StackName="natbake-egress")["Stacks"][0]
            if stack["StackStatus"] != "CREATE_COMPLETE":
                die(f"egress stack: {stack['StackStatus']} {stack.get('StackStatusReason')}")
        print(json.dumps(read_back(replay, params), indent=1))


if __name__ == "__main__":
    main()
