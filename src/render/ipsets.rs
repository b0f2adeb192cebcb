//! The ipsets (`ipsets.v4`) that count each forward's bytes and denied
//! attempts, as `ipset restore` reads them.
//!
//! Per-forward counting rules would have to be walked by every packet of
//! every forwarded connection. Instead, `NATBAKE-BYTES` holds one rule per
//! direction that matches a set of type `hash:ip,port` with the `counters`
//! extension: one hash lookup per packet, whatever the number of forwards,
//! and the kernel counts packets and bytes on the element that matched.
//! An element is what a forwarded packet carries after DNAT: the target
//! address, protocol and port (a port range gives one element per port).
//! [`SET_IN`] is matched on the destination of packets from the clients,
//! [`SET_OUT`] on the source of the replies; both hold the same elements.
//!
//! Forwards with the same target address, protocol and port have the same
//! element, so they share its bytes: nothing in a packet after DNAT tells
//! them apart. [`shared`] says which forwards do, for natbake-status.
//!
//! Denied attempts (connections to a forward from a source it does not
//! allow) are counted the same way: `NATBAKE-DNAT` ends with one rule per
//! protocol, reached only by a connection's first packet that no forward
//! translated (DNAT ends the chain walk), matching a set of type
//! `bitmap:port` with counters on the destination port ([`denied_set`]).
//! Its elements are the public ports of the forwards that are not public,
//! each carrying its forward's name as the element's comment (a range
//! is one `add` line, one element per port). Forwards of one protocol
//! never share a port (validation refuses overlaps), so a port's counter
//! belongs to exactly one forward, and a forward's denied attempts are the
//! sum over its ports: exactly what a rule per forward after its DNAT
//! rules counted, with no rule per forward to load (half the ruleset) or
//! walk. The port alone is the key: the address the client used is the
//! instance's own, which differs between the instances of a failover
//! pair; `bitmap:port` ignores the protocol, hence one set per protocol.
//!
//! TCP elements are written without their protocol (`10.0.1.5,8080`,
//! which ipset reads as TCP): with `tcp:` ipset looks the name up in
//! /etc/protocols once per element, which was three quarters of the time
//! of loading 20,000 elements.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use crate::site::{Forward, Proto, Site};
use serde::Serialize;

/// The set counting bytes from the clients (`--ctdir ORIGINAL`), matched
/// on destination address and port. One site per instance, so fixed
/// names; ipset allows at most 31 characters.
pub const SET_IN: &str = "natbake-in";
/// The set counting bytes back to the clients (`--ctdir REPLY`), matched
/// on source address and port.
pub const SET_OUT: &str = "natbake-out";
/// The sets counting denied attempts per public port, one per protocol.
pub const SET_DENIED_TCP: &str = "natbake-denied-tcp";
pub const SET_DENIED_UDP: &str = "natbake-denied-udp";
/// ipset's smallest hash size.
const MIN_HASHSIZE: usize = 64;

/// One set as `ipset restore` creates it.
#[derive(Debug, Serialize)]
pub struct IpSet {
    pub name: &'static str,
    /// The set type, which the health check expects to find.
    pub kind: &'static str,
    /// The `create` line's options after the name.
    pub options: String,
    /// The `add` lines' elements: in the byte sets, consecutive ports of
    /// one address and protocol written as one range
    /// (`10.0.1.5,udp:8000-8010`); in the denied sets, a forward's public
    /// ports with its name as the comment (`7000-7003 comment "b"`).
    pub adds: Vec<String>,
    /// How many elements it holds (the ranges in `adds` counted port by
    /// port): what the health check expects to find.
    pub elements: usize,
}

/// One counted element: target address, protocol, port.
type Element = (Ipv4Addr, Proto, u16);

/// Whether the site counts bytes per forward: with forwards, on an os
/// whose ipset has the counters extension (ipset 6.19 and later). The
/// legacy AWS NAT AMI's Amazon Linux 1 predates it and gets no sets; its
/// forwards' bytes are counted together only.
pub fn counts_bytes(site: &Site) -> bool {
    site.os.has_systemd() && !site.forwards.is_empty()
}

/// Whether the site counts denied attempts in sets ([`denied_set`]): on
/// every os whose ipset has the counters extension. The legacy AWS NAT AMI
/// keeps a counting rule per forward after its DNAT rules.
pub fn counts_denied_in_sets(site: &Site) -> bool {
    site.os.has_systemd()
}

/// The set counting denied attempts to the forwards of `proto`.
pub fn denied_set(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => SET_DENIED_TCP,
        Proto::Udp => SET_DENIED_UDP,
    }
}

/// The forwards of `proto` whose denied attempts the site counts in a set
/// (those that are not public), by public port; none when it counts them
/// with rules.
fn denied_forwards(site: &Site, proto: Proto) -> Vec<&Forward> {
    if !counts_denied_in_sets(site) {
        return Vec::new();
    }
    let mut fwds: Vec<&Forward> = site
        .forwards
        .iter()
        .filter(|f| f.proto == proto && !f.public)
        .collect();
    fwds.sort_by_key(|f| f.ports);
    fwds
}

/// Whether the site has a set counting denied attempts to forwards of
/// `proto` (and so the rule that matches it).
pub fn has_denied_set(site: &Site, proto: Proto) -> bool {
    counts_denied_in_sets(site) && site.forwards.iter().any(|f| f.proto == proto && !f.public)
}

/// Every element of the site's forwards, each once, in order (none when
/// the site does not count bytes per forward).
fn elements(site: &Site) -> BTreeSet<Element> {
    if !counts_bytes(site) {
        return BTreeSet::new();
    }
    site.forwards
        .iter()
        .flat_map(|f| {
            (f.target_ports.first..=f.target_ports.last).map(move |port| (f.target, f.proto, port))
        })
        .collect()
}

/// How many elements each byte set holds (0 without sets).
pub fn element_count(sets: &[IpSet]) -> usize {
    sets.first().map_or(0, |s| s.elements)
}

/// Per forward, in the spec's order: whether another forward has one of
/// its elements, and so counts into the same bytes.
pub fn shared(site: &Site) -> Vec<bool> {
    let mut users: HashMap<Element, usize> = HashMap::new();
    for f in &site.forwards {
        for port in f.target_ports.first..=f.target_ports.last {
            *users.entry((f.target, f.proto, port)).or_default() += 1;
        }
    }
    site.forwards
        .iter()
        .map(|f| {
            (f.target_ports.first..=f.target_ports.last)
                .any(|port| users[&(f.target, f.proto, port)] > 1)
        })
        .collect()
}

/// The two byte sets, or none for a site that does not count bytes per
/// forward (see [`counts_bytes`]), then the denied sets of the protocols
/// that have forwards counting denied attempts.
pub fn sets(site: &Site) -> Vec<IpSet> {
    let mut out = byte_sets(site);
    for proto in [Proto::Tcp, Proto::Udp] {
        let fwds = denied_forwards(site, proto);
        let (Some(first), Some(last)) = (fwds.first(), fwds.last()) else {
            continue;
        };
        out.push(IpSet {
            name: denied_set(proto),
            kind: "bitmap:port",
            options: format!(
                "bitmap:port range {}-{} counters comment",
                first.ports.first, last.ports.last
            ),
            adds: fwds
                .iter()
                .map(|f| {
                    let ports = if f.ports.is_range() {
                        format!("{}-{}", f.ports.first, f.ports.last)
                    } else {
                        f.ports.first.to_string()
                    };
                    format!("{ports} comment \"{}\"", f.name)
                })
                .collect(),
            elements: fwds
                .iter()
                .map(|f| usize::from(f.ports.last - f.ports.first) + 1)
                .sum(),
        });
    }
    out
}

fn byte_sets(site: &Site) -> Vec<IpSet> {
    let all = elements(site);
    if all.is_empty() {
        return Vec::new();
    }
    // Buckets for every element: ipset grows a fuller table on its own,
    // but this one never changes after the load.
    let hashsize = all.len().max(MIN_HASHSIZE).next_power_of_two();
    let options = format!(
        "hash:ip,port family inet hashsize {hashsize} maxelem {} counters",
        all.len().max(MIN_HASHSIZE)
    );
    let adds = runs(&all);
    [SET_IN, SET_OUT]
        .into_iter()
        .map(|name| IpSet {
            name,
            kind: "hash:ip,port",
            options: options.clone(),
            adds: adds.clone(),
            elements: all.len(),
        })
        .collect()
}

/// The elements in `ipset add` syntax, one line per run of consecutive
/// ports of the same address and protocol.
fn runs(all: &BTreeSet<Element>) -> Vec<String> {
    let mut out = Vec::new();
    let mut run: Option<(Ipv4Addr, Proto, u16, u16)> = None;
    for &(ip, proto, port) in all {
        match &mut run {
            Some((rip, rproto, _, last))
                if *rip == ip && *rproto == proto && u32::from(*last) + 1 == u32::from(port) =>
            {
                *last = port;
            }
            _ => {
                out.extend(run.map(element));
                run = Some((ip, proto, port, port));
            }
        }
    }
    out.extend(run.map(element));
    out
}

/// One `add` element; TCP without its protocol, which ipset assumes (see
/// the module's header).
fn element((ip, proto, first, last): (Ipv4Addr, Proto, u16, u16)) -> String {
    let p = match proto {
        Proto::Tcp => "",
        Proto::Udp => "udp:",
    };
    if first == last {
        format!("{ip},{p}{first}")
    } else {
        format!("{ip},{p}{first}-{last}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[(&str, Proto, u16)]) -> BTreeSet<Element> {
        items
            .iter()
            .map(|&(ip, p, port)| (ip.parse().unwrap(), p, port))
            .collect()
    }

    fn site(forwards: &str) -> Site {
        let yaml = format!(
            "version: 1\nsite: s\nos: debian-12\nvpc_cidrs: [10.0.0.0/16]\nforwards:\n{forwards}"
        );
        crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap()
    }

    #[test]
    fn forwards_to_the_same_target_port_share_their_bytes() {
        let s = site(concat!(
            "  - {name: a, port: 80, to: '10.0.1.5:8080', from: [0.0.0.0/0], public: true}\n",
            "  - {name: b, port: 8080, to: '10.0.1.5:8080', from: [0.0.0.0/0], public: true}\n",
            "  - {name: c, port: 7000-7100, to: 10.0.1.6, from: [0.0.0.0/0], public: true}\n",
            "  - {name: d, port: 9000, to: '10.0.1.6:7050', from: [0.0.0.0/0], public: true}\n",
            "  - {name: e, port: 9001, to: '10.0.1.6:7050', proto: udp, from: [0.0.0.0/0], public: true}\n",
            "  - {name: f, port: 9002, to: '10.0.1.7:7050', from: [0.0.0.0/0], public: true}\n",
        ));
        // a and b: the same element; d: inside c's range; e: another
        // protocol; f: another address.
        assert_eq!(shared(&s), [true, true, true, true, false, false]);
        // 10.0.1.5 tcp 8080, 101 ports of 10.0.1.6, udp 7050, 10.0.1.7.
        let sets = sets(&s);
        assert_eq!(element_count(&sets), 1 + 101 + 1 + 1);
        assert_eq!(
            sets.iter().map(|s| s.name).collect::<Vec<_>>(),
            [SET_IN, SET_OUT]
        );
        assert_eq!(
            sets[0].options,
            "hash:ip,port family inet hashsize 128 maxelem 104 counters"
        );
        assert_eq!(
            sets[0].adds,
            [
                "10.0.1.5,8080",
                "10.0.1.6,7000-7100",
                "10.0.1.6,udp:7050",
                "10.0.1.7,7050"
            ]
        );
        // Every forward is public: no denied sets.
        assert_eq!(sets.len(), 2);
    }

    #[test]
    fn denied_attempts_are_counted_per_public_port_of_forwards_that_are_not_public() {
        let s = site(concat!(
            "  - {name: d, port: 7005, to: '10.0.1.6:81', from: [192.0.2.7/32]}\n",
            "  - {name: a, port: 2222, to: '10.0.1.5:22', from: [192.0.2.0/24]}\n",
            "  - {name: b, port: 7000-7003, to: 10.0.1.6, from: [192.0.2.0/24, 198.51.100.0/24]}\n",
            "  - {name: c, port: 7004, to: '10.0.1.6:80', from: [0.0.0.0/0], public: true}\n",
            "  - {name: e, port: 53, to: '10.0.1.7:53', proto: udp, from: [0.0.0.0/0], public: true}\n",
        ));
        let sets = sets(&s);
        assert_eq!(
            sets.iter().map(|s| s.name).collect::<Vec<_>>(),
            [SET_IN, SET_OUT, SET_DENIED_TCP]
        );
        let denied = &sets[2];
        assert_eq!(denied.kind, "bitmap:port");
        assert_eq!(
            denied.options,
            "bitmap:port range 2222-7005 counters comment"
        );
        // By port; c is public, so its port is not counted.
        assert_eq!(
            denied.adds,
            [
                "2222 comment \"a\"",
                "7000-7003 comment \"b\"",
                "7005 comment \"d\""
            ]
        );
        assert_eq!(denied.elements, 1 + 4 + 1);
        assert!(has_denied_set(&s, Proto::Tcp));
        assert!(!has_denied_set(&s, Proto::Udp));
    }

    #[test]
    fn the_legacy_ami_has_no_sets() {
        let yaml = concat!(
            "version: 1\nsite: s\nos: amzn-ami-vpc-nat\nvpc_cidrs: [10.0.0.0/16]\nforwards:\n",
            "  - {name: a, port: 2222, to: '10.0.1.5:22', from: [192.0.2.0/24]}\n"
        );
        let s = crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap();
        assert!(sets(&s).is_empty());
        assert!(!has_denied_set(&s, Proto::Tcp));
    }

    #[test]
    fn a_site_without_forwards_has_no_sets() {
        let yaml = "version: 1\nsite: s\nos: debian-12\nvpc_cidrs: [10.0.0.0/16]\n";
        let s = crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap();
        assert!(sets(&s).is_empty());
        assert_eq!(element_count(&sets(&s)), 0);
    }

    #[test]
    fn consecutive_ports_of_one_target_make_one_range() {
        let all = set(&[
            ("10.0.1.5", Proto::Tcp, 80),
            ("10.0.1.5", Proto::Tcp, 81),
            ("10.0.1.5", Proto::Tcp, 82),
            ("10.0.1.5", Proto::Tcp, 84),
            ("10.0.1.5", Proto::Udp, 85),
            ("10.0.1.6", Proto::Tcp, 85),
            ("10.0.1.6", Proto::Tcp, 65535),
        ]);
        assert_eq!(
            runs(&all),
            [
                "10.0.1.5,80-82",
                "10.0.1.5,84",
                "10.0.1.5,udp:85",
                "10.0.1.6,85",
                "10.0.1.6,65535",
            ]
        );
    }
}
