//! The ipsets (`ipsets.v4`) that count each forward's bytes, as
//! `ipset restore` reads them.
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

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use crate::site::{Proto, Site};
use serde::Serialize;

/// The set counting bytes from the clients (`--ctdir ORIGINAL`), matched
/// on destination address and port. One site per instance, so fixed
/// names; ipset allows at most 31 characters.
pub const SET_IN: &str = "natbake-in";
/// The set counting bytes back to the clients (`--ctdir REPLY`), matched
/// on source address and port.
pub const SET_OUT: &str = "natbake-out";
/// ipset's smallest hash size.
const MIN_HASHSIZE: usize = 64;

/// One set as `ipset restore` creates it.
#[derive(Debug, Serialize)]
pub struct IpSet {
    pub name: &'static str,
    /// The `create` line's options after the name.
    pub options: String,
    /// The `add` lines' elements, consecutive ports of one address and
    /// protocol written as one range (`10.0.1.5,tcp:8000-8010`).
    pub adds: Vec<String>,
    /// How many elements it holds (the ranges in `adds` counted port by
    /// port): what the health check expects to find.
    #[serde(skip)]
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

/// How many elements each of `sets` holds (0 without sets).
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

/// The two sets, or none for a site that does not count bytes per forward
/// (see [`counts_bytes`]).
pub fn sets(site: &Site) -> Vec<IpSet> {
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

fn element((ip, proto, first, last): (Ipv4Addr, Proto, u16, u16)) -> String {
    let p = proto.name();
    if first == last {
        format!("{ip},{p}:{first}")
    } else {
        format!("{ip},{p}:{first}-{last}")
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
                "10.0.1.5,tcp:8080",
                "10.0.1.6,tcp:7000-7100",
                "10.0.1.6,udp:7050",
                "10.0.1.7,tcp:7050"
            ]
        );
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
                "10.0.1.5,tcp:80-82",
                "10.0.1.5,tcp:84",
                "10.0.1.5,udp:85",
                "10.0.1.6,tcp:85",
                "10.0.1.6,tcp:65535",
            ]
        );
    }
}
