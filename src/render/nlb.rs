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
//! Written with the same tree and writer as `stack.cfn.yaml` ([`cfn`]):
//! every string a double-quoted YAML scalar, nothing from the spec inside
//! `Fn::Sub`.

use super::artifact::{Input, Output};
use super::cfn::{
    self, Entries, Node, Parameter, Resource, RouteTarget, Template, Text, att, entries, given,
    map, no_value, r, s, site_tags, when,
};
use super::stack::SITE_TAG;
use crate::site::{Forward, Proto, Site};
use anyhow::Result;
use std::collections::BTreeSet;

/// A named entry of the template.
type Named<T> = Vec<(Text, T)>;

/// Listeners per Network Load Balancer: an AWS quota that cannot be raised.
pub const MAX_LISTENERS: usize = 50;

/// How many zones (public subnets) the template takes: the first is
/// required, the others are parameters left empty when unused.
pub const ZONES: usize = 3;

/// Renders the stack.
pub fn render(i: &mut Input<'_>) -> Result<Option<Output>> {
    let text = template(i.site).to_yaml();
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

fn template(site: &Site) -> Template {
    let mut resources = Vec::new();
    if !site.forwards.is_empty() {
        resources.extend(load_balancer(site));
    }
    if site.egress {
        resources.extend(nat_gateways(site));
    }
    Template {
        description: description(site),
        parameters: parameters(site),
        conditions: conditions(site),
        resources,
        outputs: outputs(site),
    }
}

/// What the stack makes, and the site's description when CloudFormation
/// and its linter take it ([`Template::describe`]).
fn description(site: &Site) -> String {
    let mut parts = Vec::new();
    if !site.forwards.is_empty() {
        parts.push("Network Load Balancer");
    }
    if site.egress {
        parts.push("NAT gateways");
    }
    Template::describe(
        format!("natbake site {}: {}", site.name, parts.join(" and ")),
        site.description.as_deref(),
    )
}

fn parameters(site: &Site) -> Named<Parameter> {
    let mut p: Named<Parameter> = Vec::new();
    // The groups and target groups name the VPC; NAT gateways find it
    // from their subnets.
    if !site.forwards.is_empty() {
        p.push((
            "VpcId".into(),
            Parameter::new("AWS::EC2::VPC::Id").describe("The VPC of the site"),
        ));
    }
    let what = if site.forwards.is_empty() {
        "its NAT gateway"
    } else if site.egress {
        "the load balancer's node and elastic IP there, and its NAT gateway"
    } else {
        "the load balancer's node and elastic IP there"
    };
    p.push((
        "PublicSubnet1".into(),
        Parameter::new("AWS::EC2::Subnet::Id")
            .describe(format!("A public subnet of the first zone: {what}")),
    ));
    for n in 2..=ZONES {
        p.push((
            format!("PublicSubnet{n}").into(),
            Parameter::optional_id(
                "subnet",
                format!("A public subnet of another zone ({what}); empty for none"),
            ),
        ));
    }
    if site.egress {
        for n in 1..=ZONES {
            p.push((
                format!("PrivateRouteTable{n}").into(),
                Parameter::optional_id(
                    "rtb",
                    format!("The private route table in the zone of PublicSubnet{n}, whose 0.0.0.0/0 route goes to that zone's NAT gateway; empty for none"),
                ),
            ));
        }
    }
    p
}

fn conditions(site: &Site) -> Entries {
    let mut c: Entries = Vec::new();
    for n in 2..=ZONES {
        c.push((
            format!("HasZone{n}").into(),
            given(format!("PublicSubnet{n}")),
        ));
    }
    if site.egress {
        for n in 1..=ZONES {
            let table = given(format!("PrivateRouteTable{n}"));
            let cond = if n == 1 {
                table
            } else {
                cfn::all(vec![Node::Condition(format!("HasZone{n}").into()), table])
            };
            c.push((format!("HasPrivateRoute{n}").into(), cond));
        }
    }
    c
}

/// A resource of zone `n`: made only when the zone is given, for zones
/// 2 and up.
fn in_zone(n: usize, kind: &'static str, properties: Entries) -> Resource {
    let resource = Resource::new(kind, properties);
    if n == 1 {
        resource
    } else {
        resource.when(format!("HasZone{n}"))
    }
}

/// The value when zone `n` exists, nothing otherwise.
fn if_zone(n: usize, value: Node) -> Node {
    if n == 1 {
        return value;
    }
    when(format!("HasZone{n}"), value, no_value())
}

fn eip(site: &Site, n: usize) -> Resource {
    in_zone(
        n,
        "AWS::EC2::EIP",
        entries([("Domain", s("vpc")), ("Tags", site_tags(&site.name))]),
    )
}

/// The load balancer's inbound rules: each forward's sources on its port.
fn ingress(site: &Site) -> Vec<Node> {
    let mut rules = Vec::new();
    for f in &site.forwards {
        for c in &f.from {
            rules.push(map([
                ("IpProtocol", s(f.proto.name())),
                ("FromPort", Node::Int(f.ports.first.into())),
                ("ToPort", Node::Int(f.ports.last.into())),
                ("CidrIp", s(c.to_string())),
                (
                    "Description",
                    s(format!("natbake {} {}", site.name, f.name)),
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

fn load_balancer(site: &Site) -> Named<Resource> {
    let tags = site_tags(&site.name);
    let mut out: Named<Resource> = Vec::new();
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
                ("FromPort", Node::Int(port.into())),
                ("ToPort", Node::Int(port.into())),
                ("CidrIp", s(format!("{}/32", f.target))),
                (
                    "Description",
                    s(format!("natbake {} {} to target", site.name, f.name)),
                ),
            ]));
        }
    }
    out.push((
        "LoadBalancerSecurityGroup".into(),
        Resource::new(
            "AWS::EC2::SecurityGroup",
            entries([
                (
                    "GroupDescription",
                    s(format!("natbake {} Network Load Balancer", site.name)),
                ),
                ("VpcId", r("VpcId")),
                ("SecurityGroupIngress", Node::List(ingress(site))),
                ("SecurityGroupEgress", Node::List(egress)),
                ("Tags", tags.clone()),
            ]),
        ),
    ));
    let mut to_targets = BTreeSet::new();
    for f in &site.forwards {
        to_targets.extend(to_target(f));
    }
    let target_rules: Vec<Node> = to_targets
        .into_iter()
        .map(|(proto, port)| {
            map([
                ("IpProtocol", s(proto.name())),
                ("FromPort", Node::Int(port.into())),
                ("ToPort", Node::Int(port.into())),
                (
                    "SourceSecurityGroupId",
                    att("LoadBalancerSecurityGroup", "GroupId"),
                ),
                (
                    "Description",
                    s(format!("natbake {} through the load balancer", site.name)),
                ),
            ])
        })
        .collect();
    out.push((
        "TargetSecurityGroup".into(),
        Resource::new(
            "AWS::EC2::SecurityGroup",
            entries([
                (
                    "GroupDescription",
                    s(format!(
                        "natbake {} targets: clients and health checks through the load balancer",
                        site.name
                    )),
                ),
                ("VpcId", r("VpcId")),
                ("SecurityGroupIngress", Node::List(target_rules)),
                ("Tags", tags.clone()),
            ]),
        ),
    ));
    let mut mappings = Vec::new();
    for n in 1..=ZONES {
        out.push((format!("LoadBalancerElasticIp{n}").into(), eip(site, n)));
        mappings.push(if_zone(
            n,
            map([
                ("SubnetId", r(format!("PublicSubnet{n}"))),
                (
                    "AllocationId",
                    att(format!("LoadBalancerElasticIp{n}"), "AllocationId"),
                ),
            ]),
        ));
    }
    out.push((
        "LoadBalancer".into(),
        Resource::new(
            "AWS::ElasticLoadBalancingV2::LoadBalancer",
            entries([
                ("Type", s("network")),
                ("Scheme", s("internet-facing")),
                ("IpAddressType", s("ipv4")),
                (
                    "SecurityGroups",
                    Node::List(vec![att("LoadBalancerSecurityGroup", "GroupId")]),
                ),
                ("SubnetMappings", Node::List(mappings)),
                // Every zone's address reaches every target: clients dial
                // the elastic IPs directly, and a target lives in one zone.
                (
                    "LoadBalancerAttributes",
                    Node::List(vec![map([
                        ("Key", s("load_balancing.cross_zone.enabled")),
                        ("Value", s("true")),
                    ])]),
                ),
                ("Tags", tags),
            ]),
        ),
    ));
    for l in listeners(site) {
        let id = &l.id;
        let mut group = entries([
            ("TargetType", s("ip")),
            ("Protocol", s(l.protocol)),
            ("Port", Node::Int(l.target_port.into())),
            ("VpcId", r("VpcId")),
            (
                "Targets",
                Node::List(vec![map([
                    ("Id", s(l.target.to_string())),
                    ("Port", Node::Int(l.target_port.into())),
                ])]),
            ),
            ("HealthCheckEnabled", Node::Bool(true)),
            ("HealthCheckProtocol", s("TCP")),
            ("HealthCheckPort", s("traffic-port")),
            ("HealthCheckIntervalSeconds", Node::Int(30)),
            ("HealthyThresholdCount", Node::Int(3)),
            ("UnhealthyThresholdCount", Node::Int(3)),
        ]);
        if l.protocol == "TCP" {
            // On by default (and fixed) for UDP and TCP_UDP; off by
            // default for TCP targets of type ip.
            group.push((
                "TargetGroupAttributes".into(),
                Node::List(vec![map([
                    ("Key", s("preserve_client_ip.enabled")),
                    ("Value", s("true")),
                ])]),
            ));
        }
        group.push((
            "Tags".into(),
            Node::List(vec![
                map([("Key", s(SITE_TAG)), ("Value", s(site.name.clone()))]),
                map([
                    ("Key", s("natbake:forward")),
                    ("Value", s(l.names.join("+"))),
                ]),
            ]),
        ));
        out.push((
            format!("TargetGroup{id}").into(),
            Resource::new("AWS::ElasticLoadBalancingV2::TargetGroup", group),
        ));
        out.push((
            format!("Listener{id}").into(),
            Resource::new(
                "AWS::ElasticLoadBalancingV2::Listener",
                entries([
                    ("LoadBalancerArn", r("LoadBalancer")),
                    ("Port", Node::Int(l.port.into())),
                    ("Protocol", s(l.protocol)),
                    (
                        "DefaultActions",
                        Node::List(vec![map([
                            ("Type", s("forward")),
                            ("TargetGroupArn", r(format!("TargetGroup{id}"))),
                        ])]),
                    ),
                ]),
            ),
        ));
    }
    out
}

fn nat_gateways(site: &Site) -> Named<Resource> {
    let mut out: Named<Resource> = Vec::new();
    for n in 1..=ZONES {
        out.push((format!("NatElasticIp{n}").into(), eip(site, n)));
        out.push((
            format!("NatGateway{n}").into(),
            in_zone(
                n,
                "AWS::EC2::NatGateway",
                entries([
                    ("ConnectivityType", s("public")),
                    ("SubnetId", r(format!("PublicSubnet{n}"))),
                    (
                        "AllocationId",
                        att(format!("NatElasticIp{n}"), "AllocationId"),
                    ),
                    ("Tags", site_tags(&site.name)),
                ]),
            ),
        ));
    }
    for n in 1..=ZONES {
        let gateway = format!("NatGateway{n}");
        out.push((
            format!("PrivateRoute{n}").into(),
            cfn::route(
                format!("PrivateRouteTable{n}").into(),
                format!("HasPrivateRoute{n}").into(),
                "0.0.0.0/0".into(),
                RouteTarget::NatGateway(&gateway),
            ),
        ));
    }
    out
}

fn outputs(site: &Site) -> Named<cfn::Output> {
    let out = |value: Node, description: &'static str| cfn::Output { description, value };
    let mut o: Named<cfn::Output> = Vec::new();
    let addresses = |prefix: &str| -> Node {
        let list: Vec<Node> = (1..=ZONES)
            .map(|n| if_zone(n, r(format!("{prefix}{n}"))))
            .collect();
        Node::Fn("Fn::Join", vec![s(","), Node::List(list)])
    };
    if !site.forwards.is_empty() {
        o.push((
            "LoadBalancerAddresses".into(),
            out(
                addresses("LoadBalancerElasticIp"),
                "The load balancer's public addresses, one per zone, which clients dial",
            ),
        ));
        o.push((
            "LoadBalancerDnsName".into(),
            out(
                att("LoadBalancer", "DNSName"),
                "The load balancer's name in DNS",
            ),
        ));
        o.push((
            "TargetSecurityGroupId".into(),
            out(
                att("TargetSecurityGroup", "GroupId"),
                "Attach to the targets: admits the clients and health checks that come through the load balancer",
            ),
        ));
    }
    if site.egress {
        o.push((
            "NatAddresses".into(),
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

    /// The site's description joins the template's as the instance
    /// stack's does: left out when cfn-lint would read a substitution in
    /// it (E1029), which a template description cannot be.
    #[test]
    fn the_description_is_kept_unless_cfn_lint_would_read_a_substitution() {
        for (text, kept) in [
            ("Oracle $HOME {x}", true),
            ("${AWS::Region}", false),
            ("a ${VpcId} b", false),
        ] {
            let yaml = format!(
                "version: 1\nsite: s\ndeployment: nlb\ndescription: {}\nvpc_cidrs: [10.0.0.0/16]\n",
                crate::render::escape::yaml(text)
            );
            let site =
                crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap();
            let expected = if kept {
                format!("natbake site s: NAT gateways: {text}")
            } else {
                "natbake site s: NAT gateways".to_string()
            };
            assert_eq!(template(&site).description, expected, "{text}");
        }
    }
}
