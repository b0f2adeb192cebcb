//! The iptables ruleset (`rules.v4`), as `iptables-restore` reads it.
//!
//! This module decides the rules; `templates/rules.v4.hbs` lays them out.
//! Nothing from the spec reaches a rule as free text: names, ports and
//! networks are validated, so the one comment per forward
//! (`natbake:<name>`) needs no quoting beyond its double quotes.
//!
//! Layout, chosen so that a new connection's cost does not grow with the
//! number of forwards:
//! - `nat PREROUTING` jumps to `NATBAKE-PREROUTING`, which sends packets
//!   addressed to the instance itself (`addrtype LOCAL`, so no interface
//!   names) to `NATBAKE-DNAT`.
//! - `NATBAKE-DNAT` dispatches by protocol and port through a tree of
//!   chains with at most [`FANOUT`] rules each; the leaves hold one DNAT
//!   rule per forward and source. `NATBAKE-DNAT` sets natbake's conntrack
//!   mark ([`DNAT_MARK`]) on the way in and clears it again at its end,
//!   which only a packet that no forward translated reaches (DNAT ends the
//!   chain walk): so the mark means exactly "translated by a natbake rule",
//!   at the cost of two rules in all rather than one per forward. Before
//!   clearing it, one rule per protocol counts the denied attempts (first
//!   packets to a forward's port that no DNAT rule took) per port in a
//!   set ([`ipsets::denied_set`]): one rule, not one per forward.
//! - `filter FORWARD` (policy DROP) jumps to `NATBAKE-FORWARD`, which
//!   accepts established traffic, connections marked by natbake's DNAT
//!   rules ([`DNAT_MARK`]), and egress from the VPC to outside it.
//! - `nat POSTROUTING` masquerades only what leaves the VPC.
//!
//! The file is loaded with `iptables-restore --noflush`: declaring a
//! natbake chain flushes it, built-in chains keep other software's rules,
//! and configure-pat.sh skips the jump lines that already exist.

use crate::render::ipsets::{self, SET_IN, SET_OUT};
use crate::site::{Forward, Proto, Site};
use serde::Serialize;

/// Most rules in one dispatch chain.
pub const FANOUT: usize = 16;
/// The conntrack mark bit set on connections natbake's DNAT rules translated.
pub const DNAT_MARK: &str = "0x1000000/0x1000000";
/// The same bit, cleared.
const DNAT_UNMARK: &str = "0x0/0x1000000";
/// Comment suffix of a forward's counter of connections from sources it
/// does not allow (the forward's own DNAT rules carry `natbake:<name>`).
pub const DENIED: &str = ":denied";
/// Comment of the counter of bytes that forwarded clients sent.
pub const FORWARDED_IN: &str = "natbake:forwarded:in";
/// Comment of the counter of bytes sent back to forwarded clients.
pub const FORWARDED_OUT: &str = "natbake:forwarded:out";
/// Packets per minute logged per forward when `log: true`.
const LOG_LIMIT: &str = "-m limit --limit 6/min --limit-burst 5";
/// iptables refuses longer log prefixes.
const LOG_PREFIX_MAX: usize = 29;

/// One table of the ruleset.
#[derive(Debug, Serialize)]
pub struct Table {
    pub name: &'static str,
    /// Built-in chains whose policy natbake sets, as `(name, policy)`.
    pub builtin: Vec<Builtin>,
    /// natbake's own chains, declared (and so flushed) on every load.
    pub chains: Vec<String>,
    /// Jumps from built-in chains into natbake's; loaded only when missing.
    pub jumps: Vec<String>,
    /// Everything else, in order.
    pub rules: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Builtin {
    pub name: &'static str,
    pub policy: &'static str,
}

/// Builds the nat and filter tables for a site.
pub fn tables(site: &Site) -> Vec<Table> {
    vec![nat(site), filter(site)]
}

fn nat(site: &Site) -> Table {
    let mut t = Table {
        name: "nat",
        builtin: vec![
            Builtin {
                name: "PREROUTING",
                policy: "ACCEPT",
            },
            Builtin {
                name: "POSTROUTING",
                policy: "ACCEPT",
            },
        ],
        chains: vec![
            "NATBAKE-PREROUTING".into(),
            "NATBAKE-DNAT".into(),
            "NATBAKE-POSTROUTING".into(),
        ],
        jumps: vec![
            "-A PREROUTING -j NATBAKE-PREROUTING".into(),
            "-A POSTROUTING -j NATBAKE-POSTROUTING".into(),
        ],
        rules: vec!["-A NATBAKE-PREROUTING -m addrtype --dst-type LOCAL -j NATBAKE-DNAT".into()],
    };
    let mut leaves = Vec::new();
    if !site.forwards.is_empty() {
        t.rules.push(format!(
            "-A NATBAKE-DNAT -j CONNMARK --set-xmark {DNAT_MARK}"
        ));
    }
    let denied_rules = !ipsets::counts_denied_in_sets(site);
    for proto in [Proto::Tcp, Proto::Udp] {
        let mut fwds: Vec<&Forward> = site.forwards.iter().filter(|f| f.proto == proto).collect();
        fwds.sort_by_key(|f| f.ports);
        dispatch(&mut t, &mut leaves, proto, &fwds, denied_rules);
    }
    for proto in [Proto::Tcp, Proto::Udp] {
        if ipsets::has_denied_set(site, proto) {
            t.rules.push(format!(
                "-A NATBAKE-DNAT -p {} -m set --match-set {} dst",
                proto.name(),
                ipsets::denied_set(proto)
            ));
        }
    }
    if !site.forwards.is_empty() {
        t.rules.push(format!(
            "-A NATBAKE-DNAT -j CONNMARK --set-xmark {DNAT_UNMARK}"
        ));
    }
    t.rules.extend(leaves);
    if site.egress {
        for c in &site.vpc_cidrs {
            t.rules
                .push(format!("-A NATBAKE-POSTROUTING -d {c} -j RETURN"));
        }
        for c in &site.vpc_cidrs {
            t.rules
                .push(format!("-A NATBAKE-POSTROUTING -s {c} -j MASQUERADE"));
        }
    }
    t
}

/// A node of the dispatch tree: a chain (or, at the bottom, a forward)
/// covering the ports `first..=last`.
struct Node {
    first: u16,
    last: u16,
    target: Target,
}

enum Target {
    Forward(usize),
    Chain(String),
}

/// Adds the rules that take a packet of `proto` from `NATBAKE-DNAT` to its
/// forward in at most log16(n) jumps.
fn dispatch(
    t: &mut Table,
    leaves: &mut Vec<String>,
    proto: Proto,
    fwds: &[&Forward],
    denied_rules: bool,
) {
    let p = proto.name();
    let upper = p.to_ascii_uppercase();
    let mut nodes: Vec<Node> = fwds
        .iter()
        .enumerate()
        .map(|(i, f)| Node {
            first: f.ports.first,
            last: f.ports.last,
            target: Target::Forward(i),
        })
        .collect();
    // Group until the root has room for every node. Chains are numbered in
    // the order made, so the output only depends on the spec.
    let mut made = 0;
    let mut chain_rules: Vec<(String, Vec<String>)> = Vec::new();
    while nodes.len() > FANOUT {
        let mut parents = Vec::new();
        for group in balanced_groups(&nodes) {
            made += 1;
            let name = format!("NATBAKE-{upper}-{made}");
            let rules = group
                .iter()
                .flat_map(|n| node_rules(&name, p, n, fwds, denied_rules))
                .collect();
            chain_rules.push((name.clone(), rules));
            parents.push(Node {
                first: group[0].first,
                last: group[group.len() - 1].last,
                target: Target::Chain(name),
            });
        }
        nodes = parents;
    }
    for n in &nodes {
        t.rules
            .extend(node_rules("NATBAKE-DNAT", p, n, fwds, denied_rules));
    }
    // Chains in the order made (leaves first), each chain's rules together.
    for (name, rules) in chain_rules {
        t.chains.push(name);
        leaves.extend(rules);
    }
}

/// Splits `nodes` into the fewest groups of at most [`FANOUT`], of sizes
/// that differ by at most one, so that no chain is left holding a single
/// jump (625 nodes: 25 groups of 16 and 15 of 15, not 39 of 16 and 1 of 1).
fn balanced_groups(nodes: &[Node]) -> Vec<&[Node]> {
    let groups = nodes.len().div_ceil(FANOUT);
    let (base, extra) = (nodes.len() / groups, nodes.len() % groups);
    let mut out = Vec::with_capacity(groups);
    let mut rest = nodes;
    for i in 0..groups {
        let (group, tail) = rest.split_at(base + usize::from(i < extra));
        out.push(group);
        rest = tail;
    }
    out
}

fn node_rules(
    chain: &str,
    p: &str,
    n: &Node,
    fwds: &[&Forward],
    denied_rules: bool,
) -> Vec<String> {
    match &n.target {
        Target::Chain(name) => {
            let ports = if n.first == n.last {
                n.first.to_string()
            } else {
                format!("{}:{}", n.first, n.last)
            };
            vec![format!("-A {chain} -p {p} --dport {ports} -j {name}")]
        }
        Target::Forward(i) => forward_rules(chain, fwds[*i], denied_rules),
    }
}

/// Per source: an optional log rule, then the DNAT. Then, with
/// `denied_rules` (the legacy AMI, whose ipset has no counters) and unless
/// any source is allowed, a rule without a target that counts the
/// connections from other sources ([`DENIED`]): DNAT ends the walk, so an
/// allowed connection never reaches it, and the nat table sees only a
/// connection's first packet, so it counts attempts, not packets.
/// Elsewhere one rule per protocol at the end of `NATBAKE-DNAT` counts
/// them per port in a set (see [`crate::render::ipsets`]).
fn forward_rules(chain: &str, f: &Forward, denied_rules: bool) -> Vec<String> {
    let p = f.proto.name();
    let dport = f.ports.iptables();
    let to = if f.ports.is_range() {
        f.target.to_string()
    } else {
        format!("{}:{}", f.target, f.target_ports.first)
    };
    let mut prefix = format!("natbake:{}", f.name);
    prefix.truncate(LOG_PREFIX_MAX - 1);
    prefix.push(' ');
    let mut out = Vec::new();
    for src in &f.from {
        let m = if src.is_any() {
            format!("-A {chain} -p {p} --dport {dport}")
        } else {
            format!("-A {chain} -p {p} -s {src} --dport {dport}")
        };
        if f.log {
            out.push(format!("{m} {LOG_LIMIT} -j LOG --log-prefix \"{prefix}\""));
        }
        out.push(format!(
            "{m} -m comment --comment \"natbake:{}\" -j DNAT --to-destination {to}",
            f.name
        ));
    }
    if denied_rules && !f.public {
        out.push(format!(
            "-A {chain} -p {p} --dport {dport} -m comment --comment \"natbake:{}{DENIED}\"",
            f.name
        ));
    }
    out
}

/// Bytes of forwarded connections, both ways: a fixed cost per packet
/// (egress pays one mark test). One rule per direction, whose counters
/// give the whole site's bytes and whose set match (one hash lookup, see
/// [`crate::render::ipsets`]) counts them per target address and port.
/// Counting rules per forward would need a dispatch tree walked by every
/// packet of every forwarded connection, which cost 30% of the
/// new-connection rate at 10,000 forwards.
fn filter(site: &Site) -> Table {
    let mut chains = vec!["NATBAKE-FORWARD".to_string()];
    let mut rules = Vec::new();
    if !site.forwards.is_empty() {
        chains.push("NATBAKE-BYTES".into());
        rules.push(format!(
            "-A NATBAKE-FORWARD -m connmark --mark {DNAT_MARK} -j NATBAKE-BYTES"
        ));
    }
    rules.extend([
        "-A NATBAKE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".to_string(),
        "-A NATBAKE-FORWARD -m conntrack --ctstate INVALID -j DROP".to_string(),
        format!(
            "-A NATBAKE-FORWARD -m conntrack --ctstate DNAT -m connmark --mark {DNAT_MARK} -j ACCEPT"
        ),
    ]);
    if site.egress {
        for c in &site.vpc_cidrs {
            rules.push(format!("-A NATBAKE-FORWARD -d {c} -j RETURN"));
        }
        for c in &site.vpc_cidrs {
            rules.push(format!("-A NATBAKE-FORWARD -s {c} -j ACCEPT"));
        }
    }
    if !site.forwards.is_empty() {
        let per_forward = ipsets::counts_bytes(site);
        for (dir, set, flags, comment) in [
            ("ORIGINAL", SET_IN, "dst,dst", FORWARDED_IN),
            ("REPLY", SET_OUT, "src,src", FORWARDED_OUT),
        ] {
            let matched = if per_forward {
                format!(" -m set --match-set {set} {flags}")
            } else {
                String::new()
            };
            rules.push(format!(
                "-A NATBAKE-BYTES -m conntrack --ctdir {dir}{matched} -m comment --comment \"{comment}\""
            ));
        }
    }
    Table {
        name: "filter",
        builtin: vec![Builtin {
            name: "FORWARD",
            policy: "DROP",
        }],
        chains,
        jumps: vec!["-A FORWARD -j NATBAKE-FORWARD".into()],
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<Node> {
        (0..n)
            .map(|i| Node {
                first: i as u16,
                last: i as u16,
                target: Target::Forward(i),
            })
            .collect()
    }

    fn nat_rules(os: &str) -> Vec<String> {
        let yaml = format!(
            "version: 1\nsite: s\nos: {os}\nvpc_cidrs: [10.0.0.0/16]\nforwards:\n\
             - {{name: a, port: 2222, to: '10.0.1.5:22', from: [192.0.2.0/24, 198.51.100.7/32]}}\n\
             - {{name: b, port: 53, proto: udp, to: '10.0.1.6:53', from: [0.0.0.0/0], public: true}}\n"
        );
        let site = crate::validate::parse(std::path::Path::new("t.yaml"), yaml.as_bytes()).unwrap();
        nat(&site).rules
    }

    /// Denied attempts: one rule per protocol matching the protocol's set
    /// (only where a forward of it counts them), placed after every DNAT
    /// rule and before the mark is cleared; the legacy AMI, without sets,
    /// keeps a counting rule per forward that is not public.
    #[test]
    fn denied_attempts_are_counted_by_one_set_rule_per_protocol() {
        let rules = nat_rules("debian-12");
        assert!(rules.iter().all(|r| !r.contains(DENIED)), "{rules:#?}");
        let set_rule = "-A NATBAKE-DNAT -p tcp -m set --match-set natbake-denied-tcp dst";
        let at = rules.iter().position(|r| r == set_rule).expect(set_rule);
        assert!(!rules.iter().any(|r| r.contains("natbake-denied-udp")));
        assert!(rules[..at].iter().filter(|r| r.contains("-j DNAT")).count() == 3);
        assert_eq!(
            rules[at + 1],
            format!("-A NATBAKE-DNAT -j CONNMARK --set-xmark {DNAT_UNMARK}")
        );
        let legacy = nat_rules("amzn-ami-vpc-nat");
        assert!(!legacy.iter().any(|r| r.contains("-m set")), "{legacy:#?}");
        assert_eq!(
            legacy
                .iter()
                .filter(|r| r.contains(DENIED))
                .collect::<Vec<_>>(),
            ["-A NATBAKE-DNAT -p tcp --dport 2222 -m comment --comment \"natbake:a:denied\""]
        );
    }

    #[test]
    fn groups_are_balanced_and_cover_every_node() {
        for n in [17, 32, 33, 625, 10_000] {
            let all = nodes(n);
            let groups = balanced_groups(&all);
            let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|&s| s <= FANOUT), "{n}: {sizes:?}");
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{n}: {sizes:?}"
            );
            assert_eq!(groups.len(), n.div_ceil(FANOUT));
        }
    }
}
