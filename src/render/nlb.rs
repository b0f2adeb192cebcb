//! `nlb-stack.cfn.yaml`: the site as AWS's own engines, for
//! `deployment: nlb`.
//!
//! Inbound, an internet-facing Network Load Balancer: one elastic IP per
//! public subnet (zone), given to the load balancer through its subnet
//! mappings; per forward one listener and one target group of type `ip`
//! with the forward's target, TCP or UDP (or one TCP_UDP listener for a
//! TCP and a UDP forward on one port to one target), the client's address preserved,
//! a TCP health check on the traffic port. The load balancer's security
//! group admits each forward's sources on its port and nothing else (it is
//! the only filter of sources: no ruleset stands behind it), and may send
//! only to the targets, on their ports. A second group, for the targets,
//! admits the load balancer's group on each target port: the rule that
//! lets both the clients' traffic (addresses preserved) and the health
//! checks in.
//!
//! Outbound, with `egress`, one NAT gateway per zone (zonal mode) in the
//! zone's public subnet, with an elastic IP of its own, and the zone's
//! private route table sent to it. CloudFormation and cfn-lint 1.58 know
//! the regional mode (`AvailabilityMode: regional`), but a regional
//! gateway with fixed addresses needs the zones' names, and moto cannot
//! create one to test; the zonal layout is the one every tool knows.
//!
//! Written with the same tree and emitter as `stack.cfn.yaml`: every
//! string a double-quoted YAML scalar, nothing from the spec inside
//! `Fn::Sub`.

use super::artifact::{Input, Output};
use super::stack::{SITE_TAG, Y, att, emit, map, no_value, r, resource, s, site_tags};
use crate::site::{Forward, Proto, Site};
use anyhow::Result;
use std::collections::BTreeSet;

/// Listeners per Network Load Balancer: an AWS quota that cannot be raised.
pub const MAX_LISTENERS: usize = 50;

/// How many zones (public subnets) the template takes: the first is
/// required, the others are parameters left empty when unused.
pub const ZONES: usize = 3;

/// Renders the stack.
pub fn render(i: &mut Input<'_>) -> Result<Option<Output>> {
    let mut text = String::new();
    emit(&template(i.site), 0, &mut text);
    if text.len() > super::stack::DIRECT_UPLOAD_LIMIT {
        i.notes.push(super::stack::too_large_note(text.len()));
    }
    Ok(Some(i.output(text.into_bytes())))
}

/// The resource name of each forward: its position, then its name in
/// CamelCase. Names start with a letter, so the digits end where the name
/// begins and no two forwards share a resource name (`a-b` and `ab` would
/// both be `AB` without the position).
pub fn forward_ids(site: &Site) -> Vec<String> {
    let camel = |name: &str| -> String {
        name.split('-')
            .map(|part| {
                let mut c = part.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect()
    };
    site.forwards
        .iter()
        .enumerate()
        .map(|(n, f)| format!("{}{}", n + 1, camel(&f.name)))
        .collect()
}

/// One listener and its target group: a forward, or a TCP and a UDP
/// forward on one port to one target and port (`TCP_UDP`).
pub struct Listener<'a> {
    /// The resource name: the first forward's.
    pub id: String,
    pub protocol: &'static str,
    pub port: u16,
    pub target: std::net::Ipv4Addr,
    pub target_port: u16,
    pub names: Vec<&'a str>,
}

/// The listeners of `site`, in the order of its forwards. Validation has
/// refused ranges, and TCP and UDP on one port to different targets.
pub fn listeners(site: &Site) -> Vec<Listener<'_>> {
    let mut out: Vec<Listener<'_>> = Vec::new();
    for (f, id) in site.forwards.iter().zip(forward_ids(site)) {
        if let Some(l) = out.iter_mut().find(|l| l.port == f.ports.first) {
            l.protocol = "TCP_UDP";
            l.names.push(&f.name);
            continue;
        }
        out.push(Listener {
            id,
            protocol: proto_upper(f.proto),
            port: f.ports.first,
            target: f.target,
            target_port: f.target_ports.first,
            names: vec![&f.name],
        });
    }
    out
}

fn proto_upper(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
    }
}

fn template(site: &Site) -> Y {
    let mut top = vec![
        ("AWSTemplateFormatVersion".to_string(), s("2010-09-09")),
        ("Description".to_string(), s(&description(site))),
        ("Parameters".to_string(), Y::Map(parameters(site))),
        ("Conditions".to_string(), Y::Map(conditions(site))),
    ];
    let mut resources = Vec::new();
    if !site.forwards.is_empty() {
        resources.extend(load_balancer(site));
    }
    if site.egress {
        resources.extend(nat_gateways(site));
    }
    top.push(("Resources".into(), Y::Map(resources)));
    top.push(("Outputs".into(), Y::Map(outputs(site))));
    Y::Map(top)
}

fn description(site: &Site) -> String {
    let mut parts = Vec::new();
    if !site.forwards.is_empty() {
        parts.push("Network Load Balancer");
    }
    if site.egress {
        parts.push("NAT gateways");
    }
    let mut d = format!("natbake site {}: {}", site.name, parts.join(" and "));
    if let Some(text) = &site.description
        && d.len() + 2 + text.len() <= 1024
    {
        d = format!("{d}: {text}");
    }
    d
}

fn parameters(site: &Site) -> Vec<(String, Y)> {
    let mut p = Vec::new();
    // The groups and target groups name the VPC; NAT gateways find it
    // from their subnets.
    if !site.forwards.is_empty() {
        p.push((
            "VpcId".to_string(),
            map([
                ("Type", s("AWS::EC2::VPC::Id")),
                ("Description", s("The VPC of the site")),
            ]),
        ));
    }
    for n in 1..=ZONES {
        let what = if site.forwards.is_empty() {
            "its NAT gateway"
        } else if site.egress {
            "the load balancer's node and elastic IP there, and its NAT gateway"
        } else {
            "the load balancer's node and elastic IP there"
        };
        if n == 1 {
            p.push((
                "PublicSubnet1".into(),
                map([
                    ("Type", s("AWS::EC2::Subnet::Id")),
                    (
                        "Description",
                        s(&format!("A public subnet of the first zone: {what}")),
                    ),
                ]),
            ));
        } else {
            p.push((
                format!("PublicSubnet{n}"),
                map([
                    ("Type", s("String")),
                    ("Default", s("")),
                    ("AllowedPattern", s("^(subnet-[0-9a-f]+)?$")),
                    (
                        "Description",
                        s(&format!(
                            "A public subnet of another zone ({what}); empty for none"
                        )),
                    ),
                ]),
            ));
        }
    }
    if site.egress {
        for n in 1..=ZONES {
            p.push((
                format!("PrivateRouteTable{n}"),
                map([
                    ("Type", s("String")),
                    ("Default", s("")),
                    ("AllowedPattern", s("^(rtb-[0-9a-f]+)?$")),
                    (
                        "Description",
                        s(&format!("The private route table in the zone of PublicSubnet{n}, whose 0.0.0.0/0 route goes to that zone's NAT gateway; empty for none")),
                    ),
                ]),
            ));
        }
    }
    p
}

fn is_empty(param: &str) -> Y {
    map([("Fn::Equals", Y::List(vec![r(param), s("")]))])
}

fn not(c: Y) -> Y {
    map([("Fn::Not", Y::List(vec![c]))])
}

fn conditions(site: &Site) -> Vec<(String, Y)> {
    let mut c = Vec::new();
    for n in 2..=ZONES {
        c.push((
            format!("HasZone{n}"),
            not(is_empty(&format!("PublicSubnet{n}"))),
        ));
    }
    if site.egress {
        for n in 1..=ZONES {
            let table = not(is_empty(&format!("PrivateRouteTable{n}")));
            let cond = if n == 1 {
                table
            } else {
                map([(
                    "Fn::And",
                    Y::List(vec![map([("Condition", s(&format!("HasZone{n}")))]), table]),
                )])
            };
            c.push((format!("HasPrivateRoute{n}"), cond));
        }
    }
    c
}

/// `resource` with a condition, for the resources of zones 2 and up.
fn in_zone(n: usize, kind: &str, properties: Y) -> Y {
    if n == 1 {
        return resource(kind, properties);
    }
    map([
        ("Type", s(kind)),
        ("Condition", s(&format!("HasZone{n}"))),
        ("Properties", properties),
    ])
}

/// The value when zone `n` exists, nothing otherwise.
fn if_zone(n: usize, value: Y) -> Y {
    if n == 1 {
        return value;
    }
    map([(
        "Fn::If",
        Y::List(vec![s(&format!("HasZone{n}")), value, no_value()]),
    )])
}

fn eip(site: &Site, n: usize) -> Y {
    in_zone(
        n,
        "AWS::EC2::EIP",
        map([("Domain", s("vpc")), ("Tags", site_tags(site))]),
    )
}

/// The load balancer's inbound rules: each forward's sources on its port.
fn ingress(site: &Site) -> Vec<Y> {
    let mut rules = Vec::new();
    for f in &site.forwards {
        for c in &f.from {
            rules.push(map([
                ("IpProtocol", s(f.proto.name())),
                ("FromPort", Y::Num(f.ports.first.into())),
                ("ToPort", Y::Num(f.ports.last.into())),
                ("CidrIp", s(&c.to_string())),
                (
                    "Description",
                    s(&format!("natbake {} {}", site.name, f.name)),
                ),
            ]));
        }
    }
    rules
}

/// What the load balancer sends a forward's target: its traffic, and the
/// TCP health check on the same port (UDP target groups are checked
/// over TCP too).
fn to_target(f: &Forward) -> Vec<(Proto, u16)> {
    let mut v = vec![(f.proto, f.target_ports.first)];
    if f.proto == Proto::Udp {
        v.push((Proto::Tcp, f.target_ports.first));
    }
    v
}

fn load_balancer(site: &Site) -> Vec<(String, Y)> {
    let tags = site_tags(site);
    let mut out = Vec::new();
    let mut egress = Vec::new();
    // Two forwards may lead to one target and port (and a UDP forward's
    // health check is the TCP of its port): EC2 refuses a rule twice.
    let mut seen = BTreeSet::new();
    for f in &site.forwards {
        for (proto, port) in to_target(f) {
            if !seen.insert((proto, port, f.target)) {
                continue;
            }
            egress.push(map([
                ("IpProtocol", s(proto.name())),
                ("FromPort", Y::Num(port.into())),
                ("ToPort", Y::Num(port.into())),
                ("CidrIp", s(&format!("{}/32", f.target))),
                (
                    "Description",
                    s(&format!("natbake {} {} to target", site.name, f.name)),
                ),
            ]));
        }
    }
    out.push((
        "LoadBalancerSecurityGroup".to_string(),
        resource(
            "AWS::EC2::SecurityGroup",
            map([
                (
                    "GroupDescription",
                    s(&format!("natbake {} Network Load Balancer", site.name)),
                ),
                ("VpcId", r("VpcId")),
                ("SecurityGroupIngress", Y::List(ingress(site))),
                ("SecurityGroupEgress", Y::List(egress)),
                ("Tags", tags.clone()),
            ]),
        ),
    ));
    let mut to_targets = BTreeSet::new();
    for f in &site.forwards {
        to_targets.extend(to_target(f));
    }
    let target_rules: Vec<Y> = to_targets
        .into_iter()
        .map(|(proto, port)| {
            map([
                ("IpProtocol", s(proto.name())),
                ("FromPort", Y::Num(port.into())),
                ("ToPort", Y::Num(port.into())),
                (
                    "SourceSecurityGroupId",
                    att("LoadBalancerSecurityGroup", "GroupId"),
                ),
                (
                    "Description",
                    s(&format!("natbake {} through the load balancer", site.name)),
                ),
            ])
        })
        .collect();
    out.push((
        "TargetSecurityGroup".into(),
        resource(
            "AWS::EC2::SecurityGroup",
            map([
                (
                    "GroupDescription",
                    s(&format!(
                        "natbake {} targets: clients and health checks through the load balancer",
                        site.name
                    )),
                ),
                ("VpcId", r("VpcId")),
                ("SecurityGroupIngress", Y::List(target_rules)),
                ("Tags", tags.clone()),
            ]),
        ),
    ));
    let mut mappings = Vec::new();
    for n in 1..=ZONES {
        out.push((format!("LoadBalancerElasticIp{n}"), eip(site, n)));
        mappings.push(if_zone(
            n,
            map([
                ("SubnetId", r(&format!("PublicSubnet{n}"))),
                (
                    "AllocationId",
                    att(&format!("LoadBalancerElasticIp{n}"), "AllocationId"),
                ),
            ]),
        ));
    }
    out.push((
        "LoadBalancer".into(),
        resource(
            "AWS::ElasticLoadBalancingV2::LoadBalancer",
            map([
                ("Type", s("network")),
                ("Scheme", s("internet-facing")),
                ("IpAddressType", s("ipv4")),
                (
                    "SecurityGroups",
                    Y::List(vec![att("LoadBalancerSecurityGroup", "GroupId")]),
                ),
                ("SubnetMappings", Y::List(mappings)),
                // Every zone's address reaches every target: clients dial
                // the elastic IPs directly, and a target lives in one zone.
                (
                    "LoadBalancerAttributes",
                    Y::List(vec![map([
                        ("Key", s("load_balancing.cross_zone.enabled")),
                        ("Value", s("true")),
                    ])]),
                ),
                ("Tags", tags.clone()),
            ]),
        ),
    ));
    for l in listeners(site) {
        let id = &l.id;
        let mut attributes = Vec::new();
        if l.protocol == "TCP" {
            // On by default (and fixed) for UDP and TCP_UDP; off by
            // default for TCP targets of type ip.
            attributes.push(map([
                ("Key", s("preserve_client_ip.enabled")),
                ("Value", s("true")),
            ]));
        }
        let mut group = vec![
            ("TargetType".to_string(), s("ip")),
            ("Protocol".into(), s(l.protocol)),
            ("Port".into(), Y::Num(l.target_port.into())),
            ("VpcId".into(), r("VpcId")),
            (
                "Targets".into(),
                Y::List(vec![map([
                    ("Id", s(&l.target.to_string())),
                    ("Port", Y::Num(l.target_port.into())),
                ])]),
            ),
            ("HealthCheckEnabled".into(), Y::Bool(true)),
            ("HealthCheckProtocol".into(), s("TCP")),
            ("HealthCheckPort".into(), s("traffic-port")),
            ("HealthCheckIntervalSeconds".into(), Y::Num(30)),
            ("HealthyThresholdCount".into(), Y::Num(3)),
            ("UnhealthyThresholdCount".into(), Y::Num(3)),
        ];
        if !attributes.is_empty() {
            group.push(("TargetGroupAttributes".into(), Y::List(attributes)));
        }
        group.push((
            "Tags".into(),
            Y::List(vec![
                map([("Key", s(SITE_TAG)), ("Value", s(&site.name))]),
                map([
                    ("Key", s("natbake:forward")),
                    ("Value", s(&l.names.join("+"))),
                ]),
            ]),
        ));
        out.push((
            format!("TargetGroup{id}"),
            resource("AWS::ElasticLoadBalancingV2::TargetGroup", Y::Map(group)),
        ));
        out.push((
            format!("Listener{id}"),
            resource(
                "AWS::ElasticLoadBalancingV2::Listener",
                map([
                    ("LoadBalancerArn", r("LoadBalancer")),
                    ("Port", Y::Num(l.port.into())),
                    ("Protocol", s(l.protocol)),
                    (
                        "DefaultActions",
                        Y::List(vec![map([
                            ("Type", s("forward")),
                            ("TargetGroupArn", r(&format!("TargetGroup{id}"))),
                        ])]),
                    ),
                ]),
            ),
        ));
    }
    out
}

fn nat_gateways(site: &Site) -> Vec<(String, Y)> {
    let mut out = Vec::new();
    for n in 1..=ZONES {
        out.push((format!("NatElasticIp{n}"), eip(site, n)));
        out.push((
            format!("NatGateway{n}"),
            in_zone(
                n,
                "AWS::EC2::NatGateway",
                map([
                    ("ConnectivityType", s("public")),
                    ("SubnetId", r(&format!("PublicSubnet{n}"))),
                    (
                        "AllocationId",
                        att(&format!("NatElasticIp{n}"), "AllocationId"),
                    ),
                    ("Tags", site_tags(site)),
                ]),
            ),
        ));
    }
    for n in 1..=ZONES {
        out.push((
            format!("PrivateRoute{n}"),
            map([
                ("Type", s("AWS::EC2::Route")),
                ("Condition", s(&format!("HasPrivateRoute{n}"))),
                (
                    "Properties",
                    map([
                        ("RouteTableId", r(&format!("PrivateRouteTable{n}"))),
                        ("DestinationCidrBlock", s("0.0.0.0/0")),
                        ("NatGatewayId", r(&format!("NatGateway{n}"))),
                    ]),
                ),
            ]),
        ));
    }
    out
}

fn outputs(site: &Site) -> Vec<(String, Y)> {
    let out =
        |value: Y, description: &str| map([("Description", s(description)), ("Value", value)]);
    let mut o = Vec::new();
    let addresses = |prefix: &str| -> Y {
        let list: Vec<Y> = (1..=ZONES)
            .map(|n| if_zone(n, r(&format!("{prefix}{n}"))))
            .collect();
        map([("Fn::Join", Y::List(vec![s(","), Y::List(list)]))])
    };
    if !site.forwards.is_empty() {
        o.push((
            "LoadBalancerAddresses".to_string(),
            out(
                addresses("LoadBalancerElasticIp"),
                "The load balancer's public addresses, one per zone, which clients dial",
            ),
        ));
        o.push((
            "LoadBalancerDnsName".to_string(),
            out(
                att("LoadBalancer", "DNSName"),
                "The load balancer's name in DNS",
            ),
        ));
        o.push((
            "TargetSecurityGroupId".to_string(),
            out(
                att("TargetSecurityGroup", "GroupId"),
                "Attach to the targets: admits the clients and health checks that come through the load balancer",
            ),
        ));
    }
    if site.egress {
        o.push((
            "NatAddresses".to_string(),
            out(
                addresses("NatElasticIp"),
                "The NAT gateways' public addresses, one per zone, which the private hosts' traffic comes from",
            ),
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_ids_are_unique() {
        let yaml = "version: 1\nsite: s\ndeployment: nlb\nvpc_cidrs: [10.0.0.0/16]\nforwards:\n  - {name: a-b, port: 1000, to: 10.0.0.9, from: [192.0.2.0/24]}\n  - {name: ab, port: 1001, to: 10.0.0.9, from: [192.0.2.0/24]}\n  - {name: a--b, port: 1002, to: 10.0.0.9, from: [192.0.2.0/24]}\n";
        let site = crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap();
        assert_eq!(forward_ids(&site), ["1AB", "2Ab", "3AB"]);
    }
}
