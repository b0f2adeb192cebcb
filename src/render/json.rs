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
use serde_json::{Value, json};
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
    fn rules(&self) -> usize {
        self.sources.values().map(Vec::len).sum()
    }

    fn to_json(&self) -> Vec<Value> {
        self.order
            .iter()
            .map(|key| {
                let ranges: Vec<Value> = self.sources[key]
                    .iter()
                    .map(|(c, d)| json!({"CidrIp": c.to_string(), "Description": d}))
                    .collect();
                match key {
                    (Some(proto), Some(ports)) => json!({
                        "IpProtocol": proto.name(),
                        "FromPort": ports.first,
                        "ToPort": ports.last,
                        "IpRanges": ranges,
                    }),
                    _ => json!({"IpProtocol": "-1", "IpRanges": ranges}),
                }
            })
            .collect()
    }
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
/// egress, and then no `security-group.json`: EC2 refuses an empty request).
pub fn nat_inbound_rules(site: &Site) -> usize {
    nat_ingress(site).rules()
}

/// How many inbound rules the targets need (none without forwards).
pub fn target_inbound_rules(site: &Site) -> usize {
    target_ingress(site, site.forwards.iter()).rules()
}

/// `security-group.json`, the NAT instance's inbound rules.
pub fn security_group(site: &Site) -> Vec<u8> {
    pretty(&Value::Array(nat_ingress(site).to_json()))
}

/// `target-security-groups.json`: every forward's rule for its target, for
/// a security group that the targets share. Targets with groups of their
/// own take their entry in the manifest's `targets` instead.
pub fn target_security_groups(site: &Site) -> Vec<u8> {
    pretty(&Value::Array(
        target_ingress(site, site.forwards.iter()).to_json(),
    ))
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
fn targets(site: &Site) -> Vec<Value> {
    let mut by_target: BTreeMap<Ipv4Addr, Vec<&Forward>> = BTreeMap::new();
    for f in &site.forwards {
        by_target.entry(f.target).or_default().push(f);
    }
    by_target
        .into_iter()
        .map(|(addr, forwards)| {
            json!({
                "address": addr.to_string(),
                "forwards": forwards.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
                "security_group_ingress": target_ingress(site, forwards.iter().copied()).to_json(),
                "routes": match site.deployment {
                    Deployment::Instance => return_routes(site, forwards.iter().copied())
                        .iter()
                        .map(|d| json!({"destination": d.to_string(), "via": NAT_INTERFACE}))
                        .collect::<Vec<_>>(),
                    // The load balancer carries the replies back itself,
                    // whatever the subnet's own routes.
                    Deployment::Nlb => Vec::new(),
                },
            })
        })
        .collect()
}

/// What was rendered from what: natbake's version, the spec's digest, the
/// forwards as machine-readable data, and every artifact's path, install
/// path, mode, size and SHA-256.
pub fn manifest(site: &Site, artifacts: &[Artifact]) -> Vec<u8> {
    let forwards: Vec<Value> = site
        .forwards
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "proto": f.proto.name(),
                "listen_ports": [f.ports.first, f.ports.last],
                "target_address": f.target.to_string(),
                "target_ports": [f.target_ports.first, f.target_ports.last],
                "from": f.from.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "public": f.public,
                "log": f.log,
                "description": f.description,
            })
        })
        .collect();
    let user_data = artifacts
        .iter()
        .find(|a| a.name.starts_with(USER_DATA))
        .map(|a| json!({"file": a.name, "gzip": a.name.ends_with(".gz"), "bytes": a.bytes.len()}));
    // Whether `aws cloudformation deploy` can upload the stack directly.
    let stack = artifacts
        .iter()
        .find(|a| a.name == STACK || a.name == NLB_STACK)
        .map(|a| {
            let too_large = a.bytes.len() > super::stack::DIRECT_UPLOAD_LIMIT;
            let mut stack = json!({
                "file": a.name,
                "bytes": a.bytes.len(),
                "needs_s3_bucket": too_large,
                "note": too_large.then(|| super::stack::too_large_note(a.bytes.len())),
            });
            // The load balancer answers its clients itself; only the NAT
            // instance's targets need routes back through it.
            if a.name == STACK {
                stack["target_route_destinations"] = super::stack::target_route_destinations(site)
                    .iter()
                    .map(|c| c.to_string())
                    .collect();
            }
            stack
        });
    let files: Vec<Value> = artifacts
        .iter()
        .map(|a| {
            json!({
                "path": a.name,
                "install_path": a.install_path,
                "mode": format!("{:04o}", a.mode),
                "size": a.bytes.len(),
                "sha256": a.sha256,
            })
        })
        .collect();
    let mut manifest = json!({
        "natbake_version": env!("CARGO_PKG_VERSION"),
        "site": site.name,
        "description": site.description,
        "spec_sha256": site.spec_sha256,
        "os": site.os.name(),
        "arch": site.arch.name(),
        "vpc_cidrs": site.vpc_cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "egress": site.egress,
        "forwards": forwards,
        "security_groups": {
            "nat": {
                "ingress_file": artifacts.iter().any(|a| a.name == SECURITY_GROUP).then_some(SECURITY_GROUP),
                "inbound_rules": nat_inbound_rules(site),
                "egress": nat_egress(site).to_json(),
            },
            "targets_file": artifacts.iter().any(|a| a.name == TARGET_SECURITY_GROUPS).then_some(TARGET_SECURITY_GROUPS),
            "target_inbound_rules": target_inbound_rules(site),
            "notes": security_group_notes(site),
        },
        "targets": targets(site),
        "user_data": user_data,
        "stack": stack,
        "artifacts": files,
    });
    // Only with a floating interface: a spec without `failover` gets
    // neither the key nor any permission.
    if let (Some(f), Some(map)) = (site.failover, manifest.as_object_mut()) {
        map.insert(
            "failover".into(),
            json!({
                "floating_eni": true,
                "attach_timeout": f.attach_timeout,
                "interface_tag": {"key": "natbake:site", "value": site.name},
                "iam_policy": crate::failover::iam_policy(site),
            }),
        );
    }
    // Only with `deployment: nlb`: instance specs keep their manifest. There
    // is no NAT instance's group then (no rules in or out); the forwards'
    // rules are the load balancer's, in its stack.
    if let (Deployment::Nlb, Some(map)) = (site.deployment, manifest.as_object_mut()) {
        map.insert("deployment".into(), json!(site.deployment.name()));
        if let Some(groups) = map
            .get_mut("security_groups")
            .and_then(Value::as_object_mut)
        {
            groups.insert(
                "nat".into(),
                json!({"ingress_file": null, "inbound_rules": 0, "egress": []}),
            );
            groups.insert(
                "load_balancer".into(),
                json!({
                    "in_file": NLB_STACK,
                    "inbound_rules": site.forwards.iter().map(|f| f.from.len()).sum::<usize>(),
                }),
            );
        }
    }
    if let (Some(m), Some(map)) = (crate::metrics::manifest(site), manifest.as_object_mut()) {
        map.insert("metrics".into(), m);
    }
    pretty(&manifest)
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
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
