//! The JSON artifacts, written with serde_json (which escapes every string):
//! `security-group.json` and `target-security-groups.json`, each the
//! `--ip-permissions` input of `aws ec2 authorize-security-group-ingress`,
//! and `manifest.json`.
//!
//! Security-group rules are EC2 `IpPermission`s. EC2 counts every CIDR of
//! every permission as one rule, and refuses a request that holds the same
//! rule twice, so permissions of equal protocol and ports are merged and
//! their sources kept once. Descriptions use only the site and forward
//! names, which fit the characters AWS allows in rule descriptions.

use super::Artifact;
use super::artifact::{NLB_STACK, SECURITY_GROUP, STACK, TARGET_SECURITY_GROUPS, USER_DATA};
use crate::cidr::Cidr;
use crate::site::{Deployment, Forward, Ports, Proto, Site};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// EC2's default quota of inbound rules per security group.
pub const SG_RULES_DEFAULT_QUOTA: usize = 60;
/// The quota can be raised, but rules per group times groups per network
/// interface may not pass this: the most rules one interface can have.
pub const SG_RULES_PER_INTERFACE: usize = 1_000;

/// One rule source: a CIDR and the rule's description.
pub(super) type Source = (Cidr, String);

/// Permissions keyed by protocol (`None` for all traffic) and ports, in
/// the order first seen, each with its sources once.
#[derive(Default)]
pub(super) struct Permissions {
    order: Vec<(Option<Proto>, Option<Ports>)>,
    sources: BTreeMap<(Option<Proto>, Option<Ports>), Vec<Source>>,
}

impl Permissions {
    fn add(&mut self, proto: Option<Proto>, ports: Option<Ports>, cidr: Cidr, description: String) {
        let key = (proto, ports);
        let list = self.sources.entry(key).or_insert_with(|| {
            self.order.push(key);
            Vec::new()
        });
        if !list.iter().any(|(c, _)| *c == cidr) {
            list.push((cidr, description));
        }
    }

    /// Every rule, as EC2 counts them: protocol (`None` for all
    /// traffic), ports, source and description, in the order of
    /// [`Permissions::to_json`].
    pub(super) fn each(&self) -> impl Iterator<Item = (Option<Proto>, Option<Ports>, &Source)> {
        self.order
            .iter()
            .flat_map(|key| self.sources[key].iter().map(|s| (key.0, key.1, s)))
    }

    /// How many rules EC2 counts.
    #[cfg(test)]
    fn rules(&self) -> usize {
        self.sources.values().map(Vec::len).sum()
    }

    fn to_json(&self) -> Vec<IpPermission<'_>> {
        self.order
            .iter()
            .map(|key| {
                let ranges = self.sources[key]
                    .iter()
                    .map(|(c, d)| IpRange {
                        cidr_ip: c.to_string(),
                        description: d,
                    })
                    .collect();
                let (proto, ports) = match key {
                    (Some(proto), Some(ports)) => (proto.name(), Some(ports)),
                    _ => ("-1", None),
                };
                IpPermission {
                    from_port: ports.map(|p| p.first),
                    ip_protocol: proto,
                    ip_ranges: ranges,
                    to_port: ports.map(|p| p.last),
                }
            })
            .collect()
    }
}

// The JSON files are written from typed values, straight to their bytes:
// building serde_json `Value`s first (a B-tree map per object, a string
// per key) took most of the manifest's time. Fields are declared in
// sorted order, the order `Value`'s maps wrote them in, so the files read
// as before.

/// An EC2 `IpPermission` as the AWS CLI takes it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct IpPermission<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    from_port: Option<u16>,
    ip_protocol: &'static str,
    ip_ranges: Vec<IpRange<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to_port: Option<u16>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct IpRange<'a> {
    cidr_ip: String,
    description: &'a str,
}

/// The NAT instance's inbound rules: each forward's sources on its listen
/// ports and, with egress, all traffic from the VPC. natbake's ruleset
/// masquerades whatever the private hosts send out, of any protocol, so
/// the group does not narrow it; what private hosts may send is for their
/// own groups to say.
pub(super) fn nat_ingress(site: &Site) -> Permissions {
    let mut p = Permissions::default();
    for f in &site.forwards {
        for c in &f.from {
            let d = format!("natbake {} {}", site.name, f.name);
            p.add(Some(f.proto), Some(f.ports), *c, d);
        }
    }
    if site.egress {
        for c in &site.vpc_cidrs {
            p.add(None, None, *c, format!("natbake {} egress", site.name));
        }
    }
    p
}

/// What the NAT instance must be allowed to send: with egress, anything
/// anywhere (the private hosts' traffic); without, each forward's traffic
/// to its target. A new security group's default outbound rule allows all
/// of this; AWS's suggested NAT group (ports 80 and 443 only) does not.
fn nat_egress(site: &Site) -> Permissions {
    let mut p = Permissions::default();
    if site.egress {
        let any = Cidr::parse("0.0.0.0/0").expect("a valid CIDR");
        p.add(None, None, any, format!("natbake {} egress", site.name));
    } else {
        for f in &site.forwards {
            let d = format!("natbake {} {}", site.name, f.name);
            p.add(Some(f.proto), Some(f.target_ports), host(f.target), d);
        }
    }
    p
}

/// What a target's own security group must allow: the NAT keeps each
/// client's address, so the target sees the forward's sources, on its
/// target ports, not the NAT.
fn target_ingress<'a>(site: &Site, forwards: impl Iterator<Item = &'a Forward>) -> Permissions {
    let mut p = Permissions::default();
    let via = match site.deployment {
        Deployment::Instance => "NAT",
        Deployment::Nlb => "NLB",
    };
    for f in forwards {
        for c in &f.from {
            let d = format!("natbake {} {} via {via}", site.name, f.name);
            p.add(Some(f.proto), Some(f.target_ports), *c, d);
        }
    }
    p
}

fn host(addr: Ipv4Addr) -> Cidr {
    Cidr::parse(&format!("{addr}/32")).expect("a host is a valid CIDR")
}

/// How many inbound rules the NAT instance has (none without forwards and
/// egress, and then no `security-group.json`: EC2 refuses an empty request):
/// the rules of [`nat_ingress`], counted without writing their
/// descriptions, since a render asks for the count several times.
pub fn nat_inbound_rules(site: &Site) -> usize {
    let forwards = site.forwards.iter().flat_map(|f| {
        f.from
            .iter()
            .map(move |c| (Some(f.proto), Some(f.ports), *c))
    });
    let egress = site
        .vpc_cidrs
        .iter()
        .filter(|_| site.egress)
        .map(|c| (None, None, *c));
    distinct(forwards.chain(egress))
}

/// How many inbound rules the targets need (none without forwards): the
/// rules of [`target_ingress`], counted the same way.
pub fn target_inbound_rules(site: &Site) -> usize {
    distinct(site.forwards.iter().flat_map(|f| {
        f.from
            .iter()
            .map(move |c| (Some(f.proto), Some(f.target_ports), *c))
    }))
}

/// How many different rules: each protocol, ports and source once, as
/// [`Permissions::add`] keeps them.
fn distinct(rules: impl Iterator<Item = (Option<Proto>, Option<Ports>, Cidr)>) -> usize {
    let mut rules: Vec<_> = rules.collect();
    rules.sort_unstable();
    rules.dedup();
    rules.len()
}

/// `security-group.json`, the NAT instance's inbound rules.
pub fn security_group(site: &Site) -> Vec<u8> {
    pretty(&nat_ingress(site).to_json())
}

/// `target-security-groups.json`: every forward's rule for its target, for
/// a security group that the targets share. Targets with groups of their
/// own take their entry in the manifest's `targets` instead.
pub fn target_security_groups(site: &Site) -> Vec<u8> {
    pretty(&target_ingress(site, site.forwards.iter()).to_json())
}

/// Warnings about EC2's rule quotas, for render and check to print and
/// the manifest to keep.
pub fn security_group_notes(site: &Site) -> Vec<String> {
    let mut notes = Vec::new();
    // With `deployment: nlb` the forwards' rules are the load balancer's
    // group, in the NLB stack, and there is no instance's group.
    let nat = match site.deployment {
        Deployment::Instance => (SECURITY_GROUP, nat_inbound_rules(site)),
        Deployment::Nlb => (NLB_STACK, site.forwards.iter().map(|f| f.from.len()).sum()),
    };
    for (file, rules) in [nat, (TARGET_SECURITY_GROUPS, target_inbound_rules(site))] {
        if rules > SG_RULES_PER_INTERFACE {
            notes.push(format!(
                "{file} holds {rules} inbound rules (one per source CIDR of each forward); EC2 allows at most \
                 {SG_RULES_PER_INTERFACE} per network interface, so they cannot all be applied: use fewer, wider \
                 sources or spread the forwards over several NAT instances"
            ));
        } else if rules > SG_RULES_DEFAULT_QUOTA {
            notes.push(format!(
                "{file} holds {rules} inbound rules (one per source CIDR of each forward), more than EC2's default \
                 quota of {SG_RULES_DEFAULT_QUOTA} per security group: raise the quota \"Inbound or outbound rules per \
                 security group\" (rules per group times groups per interface may not pass {SG_RULES_PER_INTERFACE}) \
                 before applying it"
            ));
        }
    }
    notes
}

/// How the manifest names the route target of a return route: the NAT
/// instance's network interface (the floating one with failover).
pub const NAT_INTERFACE: &str = "nat-interface";

/// The destinations a target subnet's route table must send through the
/// NAT when its general egress goes elsewhere (a NAT gateway): the
/// forwards' sources, since the target replies to the client's own
/// address and the NAT must see the reply to translate it back. A public
/// forward needs `0.0.0.0/0`, which covers the rest. Sources inside
/// `vpc_cidrs` get none (the VPC's local route cannot be overridden for
/// them), and a source inside another is covered by it. Sorted by address.
pub fn return_routes<'a>(
    site: &Site,
    forwards: impl IntoIterator<Item = &'a Forward>,
) -> Vec<Cidr> {
    let mut sources: Vec<Cidr> = forwards
        .into_iter()
        .flat_map(|f| f.from.iter().copied())
        .filter(|c| !site.vpc_cidrs.iter().any(|v| within(c, v)))
        .collect();
    // Two networks are nested or apart; sorted by first address, larger
    // first, each is covered by the last one kept or by none.
    sources.sort_by_key(|c| (c.network(), c.prefix()));
    let mut kept: Vec<Cidr> = Vec::new();
    for c in sources {
        if kept.last().is_none_or(|k| !within(&c, k)) {
            kept.push(c);
        }
    }
    kept
}

/// Whether `inner` lies wholly inside `outer`.
fn within(inner: &Cidr, outer: &Cidr) -> bool {
    outer.prefix() <= inner.prefix() && outer.contains(inner.network())
}

/// Per target address: its forwards, the rules its security group needs
/// and the routes its subnet needs back through the NAT (none behind a
/// load balancer).
fn targets(site: &Site) -> Vec<TargetEntry<'_>> {
    let mut by_target: BTreeMap<Ipv4Addr, Vec<&Forward>> = BTreeMap::new();
    for f in &site.forwards {
        by_target.entry(f.target).or_default().push(f);
    }
    by_target
        .into_iter()
        .map(|(addr, forwards)| TargetEntry {
            address: addr.to_string(),
            security_group_ingress: target_ingress(site, forwards.iter().copied()),
            routes: match site.deployment {
                Deployment::Instance => return_routes(site, forwards.iter().copied())
                    .iter()
                    .map(|d| Route {
                        destination: d.to_string(),
                        via: NAT_INTERFACE,
                    })
                    .collect(),
                // The load balancer carries the replies back itself,
                // whatever the subnet's own routes.
                Deployment::Nlb => Vec::new(),
            },
            forwards: forwards.iter().map(|f| f.name.as_str()).collect(),
        })
        .collect()
}

/// A target's entry in the manifest.
struct TargetEntry<'a> {
    address: String,
    forwards: Vec<&'a str>,
    routes: Vec<Route>,
    security_group_ingress: Permissions,
}

impl Serialize for TargetEntry<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut t = s.serialize_struct("TargetEntry", 4)?;
        t.serialize_field("address", &self.address)?;
        t.serialize_field("forwards", &self.forwards)?;
        t.serialize_field("routes", &self.routes)?;
        t.serialize_field(
            "security_group_ingress",
            &self.security_group_ingress.to_json(),
        )?;
        t.end()
    }
}

#[derive(Serialize)]
struct Route {
    destination: String,
    via: &'static str,
}

/// `manifest.json`, as written: keys in sorted order.
#[derive(Serialize)]
struct Manifest<'a> {
    arch: &'static str,
    artifacts: Vec<FileEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment: Option<&'static str>,
    description: &'a Option<String>,
    egress: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    failover: Option<FailoverEntry<'a>>,
    forwards: Vec<ForwardEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<Value>,
    natbake_version: &'static str,
    os: &'static str,
    security_groups: SecurityGroups,
    site: &'a str,
    spec_sha256: &'a str,
    stack: Option<StackEntry<'a>>,
    targets: Vec<TargetEntry<'a>>,
    user_data: Option<UserDataEntry<'a>>,
    vpc_cidrs: Vec<String>,
}

#[derive(Serialize)]
struct FileEntry<'a> {
    install_path: Option<&'static str>,
    mode: String,
    path: &'a str,
    sha256: &'a str,
    size: usize,
}

#[derive(Serialize)]
struct FailoverEntry<'a> {
    attach_timeout: u32,
    floating_eni: bool,
    iam_policy: Value,
    interface_tag: Tag<'a>,
}

#[derive(Serialize)]
struct Tag<'a> {
    key: &'static str,
    value: &'a str,
}

#[derive(Serialize)]
struct ForwardEntry<'a> {
    description: &'a Option<String>,
    from: Vec<String>,
    listen_ports: [u16; 2],
    log: bool,
    name: &'a str,
    proto: &'static str,
    public: bool,
    target_address: String,
    target_ports: [u16; 2],
}

struct SecurityGroups {
    /// Only with `deployment: nlb`.
    load_balancer: Option<LoadBalancerGroup>,
    nat: NatGroup,
    notes: Vec<String>,
    target_inbound_rules: usize,
    targets_file: Option<&'static str>,
}

impl Serialize for SecurityGroups {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut t = s.serialize_struct("SecurityGroups", 5)?;
        if let Some(lb) = &self.load_balancer {
            t.serialize_field("load_balancer", lb)?;
        }
        t.serialize_field("nat", &self.nat)?;
        t.serialize_field("notes", &self.notes)?;
        t.serialize_field("target_inbound_rules", &self.target_inbound_rules)?;
        t.serialize_field("targets_file", &self.targets_file)?;
        t.end()
    }
}

#[derive(Serialize)]
struct LoadBalancerGroup {
    in_file: &'static str,
    inbound_rules: usize,
}

/// The NAT instance's group.
struct NatGroup {
    egress: Permissions,
    inbound_rules: usize,
    ingress_file: Option<&'static str>,
}

impl Serialize for NatGroup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut t = s.serialize_struct("NatGroup", 3)?;
        t.serialize_field("egress", &self.egress.to_json())?;
        t.serialize_field("inbound_rules", &self.inbound_rules)?;
        t.serialize_field("ingress_file", &self.ingress_file)?;
        t.end()
    }
}

#[derive(Serialize)]
struct StackEntry<'a> {
    bytes: usize,
    file: &'a str,
    needs_s3_bucket: bool,
    note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_route_destinations: Option<Vec<String>>,
}

#[derive(Serialize)]
struct UserDataEntry<'a> {
    bytes: usize,
    file: &'a str,
    gzip: bool,
}

/// What was rendered from what: natbake's version, the spec's digest, the
/// forwards as machine-readable data, and every artifact's path, install
/// path, mode, size and SHA-256.
pub fn manifest(site: &Site, artifacts: &[Artifact]) -> Vec<u8> {
    let forwards = site
        .forwards
        .iter()
        .map(|f| ForwardEntry {
            name: &f.name,
            proto: f.proto.name(),
            listen_ports: [f.ports.first, f.ports.last],
            target_address: f.target.to_string(),
            target_ports: [f.target_ports.first, f.target_ports.last],
            from: f.from.iter().map(|c| c.to_string()).collect(),
            public: f.public,
            log: f.log,
            description: &f.description,
        })
        .collect();
    let user_data = artifacts
        .iter()
        .find(|a| a.name.starts_with(USER_DATA))
        .map(|a| UserDataEntry {
            file: &a.name,
            gzip: a.name.ends_with(".gz"),
            bytes: a.bytes.len(),
        });
    // Whether `aws cloudformation deploy` can upload the stack directly.
    let stack = artifacts
        .iter()
        .find(|a| a.name == STACK || a.name == NLB_STACK)
        .map(|a| {
            let too_large = a.bytes.len() > super::stack::DIRECT_UPLOAD_LIMIT;
            StackEntry {
                file: &a.name,
                bytes: a.bytes.len(),
                needs_s3_bucket: too_large,
                note: too_large.then(|| super::stack::too_large_note(a.bytes.len())),
                // The load balancer answers its clients itself; only the NAT
                // instance's targets need routes back through it.
                target_route_destinations: (a.name == STACK).then(|| {
                    super::stack::target_route_destinations(site)
                        .iter()
                        .map(|c| c.to_string())
                        .collect()
                }),
            }
        });
    let files = artifacts
        .iter()
        .map(|a| FileEntry {
            path: &a.name,
            install_path: a.install_path,
            mode: format!("{:04o}", a.mode),
            size: a.bytes.len(),
            sha256: &a.sha256,
        })
        .collect();
    let has = |name| artifacts.iter().any(|a| a.name == name).then_some(name);
    // With `deployment: nlb` there is no NAT instance's group (no rules in
    // or out); the forwards' rules are the load balancer's, in its stack.
    let nlb = site.deployment == Deployment::Nlb;
    let nat = if nlb {
        NatGroup {
            egress: Permissions::default(),
            inbound_rules: 0,
            ingress_file: None,
        }
    } else {
        NatGroup {
            egress: nat_egress(site),
            inbound_rules: nat_inbound_rules(site),
            ingress_file: has(SECURITY_GROUP),
        }
    };
    let manifest = Manifest {
        natbake_version: env!("CARGO_PKG_VERSION"),
        site: &site.name,
        description: &site.description,
        spec_sha256: &site.spec_sha256,
        os: site.os.name(),
        arch: site.arch.name(),
        vpc_cidrs: site.vpc_cidrs.iter().map(|c| c.to_string()).collect(),
        egress: site.egress,
        forwards,
        security_groups: SecurityGroups {
            load_balancer: nlb.then(|| LoadBalancerGroup {
                in_file: NLB_STACK,
                inbound_rules: site.forwards.iter().map(|f| f.from.len()).sum(),
            }),
            nat,
            targets_file: has(TARGET_SECURITY_GROUPS),
            target_inbound_rules: target_inbound_rules(site),
            notes: security_group_notes(site),
        },
        targets: targets(site),
        user_data,
        stack,
        artifacts: files,
        // Only with a floating interface: a spec without `failover` gets
        // neither the key nor any permission.
        failover: site.failover.map(|f| FailoverEntry {
            floating_eni: true,
            attach_timeout: f.attach_timeout,
            interface_tag: Tag {
                key: "natbake:site",
                value: &site.name,
            },
            iam_policy: crate::failover::iam_policy(site),
        }),
        // Only with `deployment: nlb`: instance specs keep their manifest.
        deployment: nlb.then(|| site.deployment.name()),
        metrics: crate::metrics::manifest(site),
    };
    pretty(&manifest)
}

fn pretty(v: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    // Serializing these types cannot fail: no map has keys that are not
    // strings, and writing to a vector does not fail.
    let _ = serde_json::to_writer_pretty(&mut out, v);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(forwards: &str) -> Site {
        let yaml = format!(
            "version: 1\nsite: s\nvpc_cidrs: [10.0.0.0/16, 10.1.0.0/16]\nforwards:\n{forwards}"
        );
        crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap()
    }

    /// The counts, made without descriptions, are the rules written.
    #[test]
    fn rule_counts_are_the_rules_written() {
        for (egress, forwards) in [
            ("true", ""),
            ("false", ""),
            (
                "true",
                concat!(
                    "  - {name: a, port: 1001, to: 10.0.1.5:80, from: [203.0.113.7/32, 192.0.2.0/24]}\n",
                    "  - {name: b, port: 1002, to: 10.0.1.5:80, from: [203.0.113.7/32]}\n",
                    "  - {name: c, port: 1002, to: 10.0.1.6:80, proto: udp, from: [203.0.113.7/32]}\n",
                    "  - {name: d, port: 1003-1004, to: 10.0.1.6, from: [0.0.0.0/0], public: true}\n",
                ),
            ),
            (
                "false",
                "  - {name: a, port: 1001, to: 10.0.1.5:80, from: [203.0.113.7/32, 10.0.0.0/16]}\n",
            ),
        ] {
            let yaml = format!(
                "version: 1\nsite: s\negress: {egress}\nvpc_cidrs: [10.0.0.0/16, 10.1.0.0/16]\nforwards:\n{forwards}"
            );
            let s =
                crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap();
            assert_eq!(nat_inbound_rules(&s), nat_ingress(&s).rules(), "{yaml}");
            assert_eq!(
                target_inbound_rules(&s),
                target_ingress(&s, s.forwards.iter()).rules(),
                "{yaml}"
            );
        }
    }

    fn routes(site: &Site, target: &str) -> Vec<String> {
        let target: Ipv4Addr = target.parse().unwrap();
        return_routes(site, site.forwards.iter().filter(|f| f.target == target))
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    /// Each target gets its own forwards' sources, once, sorted, without
    /// those inside another or inside the VPC; a public forward's target
    /// gets 0.0.0.0/0 alone.
    #[test]
    fn return_routes_are_each_targets_sources_once() {
        let s = site(concat!(
            "  - {name: a, port: 1001, to: 10.0.1.5:22, from: [198.51.100.0/24, 203.0.113.7/32, 192.0.2.0/24]}\n",
            "  - {name: b, port: 1002, to: 10.0.1.5:80, from: [198.51.100.128/25, 203.0.113.7/32, 10.1.2.0/24, 10.0.0.0/8]}\n",
            "  - {name: c, port: 1003, to: 10.0.1.6:80, from: [203.0.113.0/24]}\n",
            "  - {name: d, port: 1004, to: 10.0.1.7:80, from: [0.0.0.0/0], public: true}\n",
            "  - {name: e, port: 1005, to: 10.0.1.7:81, from: [203.0.113.0/24]}\n",
            "  - {name: f, port: 1006, to: 10.0.1.8:81, from: [10.1.0.0/16]}\n",
        ));
        assert_eq!(
            routes(&s, "10.0.1.5"),
            [
                "10.0.0.0/8",
                "192.0.2.0/24",
                "198.51.100.0/24",
                "203.0.113.7/32"
            ]
        );
        assert_eq!(routes(&s, "10.0.1.6"), ["203.0.113.0/24"]);
        assert_eq!(routes(&s, "10.0.1.7"), ["0.0.0.0/0"]);
        assert!(routes(&s, "10.0.1.8").is_empty(), "a source in the VPC");
        // The stack's tables: every restricted forward's sources.
        assert_eq!(
            super::super::stack::target_route_destinations(&s)
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>(),
            [
                "10.0.0.0/8",
                "192.0.2.0/24",
                "198.51.100.0/24",
                "203.0.113.0/24"
            ]
        );
    }
}
