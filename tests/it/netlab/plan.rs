//! The lab's address plan: which address each host, client and service
//! gets, worked out from the manifest before anything is created.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use natbake::cidr::Cidr;
use natbake::site::Proto;

use super::INTERNET_SERVER_PORT;
use crate::manifest::Manifest;

/// At most this many forwards of one spec are exercised; a bigger spec gets
/// an evenly spread sample (first and last included), which still crosses
/// every branch of a dispatch tree without a service per forward.
const MAX_TESTED_FORWARDS: usize = 16;

/// Which namespace a service or probe runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Nat,
    Private,
    Internet,
    Peer,
}

/// A test service: answers every contact with `"<peer address> <peer
/// port>"` and logs the same line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceSpec {
    pub role: Role,
    pub proto: Proto,
    pub addr: Ipv4Addr,
    pub port: u16,
}

/// Every address of the lab, worked out from the manifest before anything
/// is created.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The NAT instance's private address (its only interface).
    pub nat_private: Ipv4Addr,
    /// The gateway's VPC-side address: the NAT's default route.
    pub igw_private: Ipv4Addr,
    /// The private host's own address, used for outbound traffic.
    pub private_self: Ipv4Addr,
    /// The NAT instance's public address, held by the Internet gateway.
    pub elastic_ip: Ipv4Addr,
    pub internet_server: Ipv4Addr,
    /// A host on the VPC segment with a non-VPC address that routes VPC
    /// destinations at the NAT: traffic that reaches the NAT's FORWARD chain
    /// without any rule allowing it.
    pub peer: Ipv4Addr,
    /// A client outside every non-public forward's sources.
    pub disallowed_client: Ipv4Addr,
    /// Indices of the forwards the checks exercise (all, unless there are
    /// more than MAX_TESTED_FORWARDS).
    pub tested: Vec<usize>,
    /// Per forward, one client address inside each of its `from` CIDRs.
    pub allowed_clients: Vec<Vec<Ipv4Addr>>,
    /// Per forward, listen ports that no forward of its protocol uses.
    pub unforwarded_ports: Vec<Vec<u16>>,
    /// An address that no lab host uses, for inert rules of "other software".
    pub unused: Ipv4Addr,
    pub services: BTreeSet<ServiceSpec>,
}

/// Documentation addresses (RFC 5737), 198.51.100.0/24 first: the pool for
/// every Internet-side address that is not derived from a `from` list.
fn documentation_addresses() -> impl Iterator<Item = Ipv4Addr> {
    [[198, 51, 100], [203, 0, 113], [192, 0, 2]]
        .into_iter()
        .flat_map(|[a, b, c]| (1..=254).map(move |d| Ipv4Addr::new(a, b, c, d)))
}

impl Plan {
    pub fn new(m: &Manifest) -> Plan {
        let n = m.forwards.len();
        let tested: Vec<usize> = if n <= MAX_TESTED_FORWARDS {
            (0..n).collect()
        } else {
            let mut picks: Vec<usize> = (0..MAX_TESTED_FORWARDS)
                .map(|k| k * (n - 1) / (MAX_TESTED_FORWARDS - 1))
                .collect();
            picks.dedup();
            picks
        };
        let mut used: BTreeSet<Ipv4Addr> = m.forwards.iter().map(|f| f.target_address).collect();

        // VPC side: the first free host addresses of the VPC's CIDRs.
        let mut vpc_hosts = m.vpc_cidrs.iter().flat_map(|c| c.hosts());
        let mut next_vpc = |used: &mut BTreeSet<Ipv4Addr>| -> Ipv4Addr {
            let addr = vpc_hosts
                .by_ref()
                .find(|a| !used.contains(a))
                .unwrap_or_else(|| panic!("{}: the VPC CIDRs have no room for the lab", m.site));
            used.insert(addr);
            addr
        };
        let igw_private = next_vpc(&mut used);
        let nat_private = next_vpc(&mut used);
        let private_self = next_vpc(&mut used);

        // Internet side. The fixed roles avoid every non-public source CIDR,
        // so the one disallowed client really is outside them all, and no
        // derived client can collide with them.
        let restricted: Vec<Cidr> = m
            .forwards
            .iter()
            .filter(|f| !f.public)
            .flat_map(|f| f.from.iter().copied())
            .collect();
        let next_doc = |used: &mut BTreeSet<Ipv4Addr>| -> Ipv4Addr {
            let addr = documentation_addresses()
                .find(|a| {
                    !used.contains(a) && !m.in_vpc(*a) && !restricted.iter().any(|c| c.contains(*a))
                })
                .unwrap_or_else(|| panic!("{}: no free documentation address for the lab", m.site));
            used.insert(addr);
            addr
        };
        let elastic_ip = next_doc(&mut used);
        let internet_server = next_doc(&mut used);
        let peer = next_doc(&mut used);
        let disallowed_client = next_doc(&mut used);
        let unused = next_doc(&mut used);
        let public_client = next_doc(&mut used);

        let allowed_clients: Vec<Vec<Ipv4Addr>> = m
            .forwards
            .iter()
            .map(|f| {
                let mut clients: Vec<Ipv4Addr> = Vec::new();
                for cidr in &f.from {
                    let addr = if f.public && cidr.is_any() {
                        public_client
                    } else {
                        client_in(cidr, m, &used)
                    };
                    if !clients.contains(&addr) {
                        clients.push(addr);
                    }
                }
                clients
            })
            .collect();

        let unforwarded_ports: Vec<Vec<u16>> = m
            .forwards
            .iter()
            .map(|f| {
                let (first, last) = f.listen_ports;
                // Next to the forwarded range (catches off-by-one port
                // matches) and the target port itself (catches a DNAT rule
                // that forgot --dport and maps "anything" to the target).
                let candidates = [
                    last.checked_add(1),
                    first.checked_sub(1),
                    Some(f.target_ports.0),
                ];
                let mut ports: Vec<u16> = candidates
                    .into_iter()
                    .flatten()
                    .filter(|&p| p != 0 && !m.forwards.iter().any(|g| g.listens_on(f.proto, p)))
                    .collect();
                ports.dedup();
                ports
            })
            .collect();

        let mut services = BTreeSet::new();
        for &i in &tested {
            let (f, unforwarded) = (&m.forwards[i], &unforwarded_ports[i]);
            for listen in f.sample_listen_ports() {
                services.insert(ServiceSpec {
                    role: Role::Private,
                    proto: f.proto,
                    addr: f.target_address,
                    port: f.target_port(listen),
                });
            }
            // Canaries on the target at the unforwarded ports: if a wrong
            // rule forwarded one of them "port for port", it would answer.
            for &port in unforwarded {
                services.insert(ServiceSpec {
                    role: Role::Private,
                    proto: f.proto,
                    addr: f.target_address,
                    port,
                });
            }
        }
        for proto in [Proto::Tcp, Proto::Udp] {
            services.insert(ServiceSpec {
                role: Role::Internet,
                proto,
                addr: internet_server,
                port: INTERNET_SERVER_PORT,
            });
        }

        Plan {
            nat_private,
            igw_private,
            private_self,
            elastic_ip,
            internet_server,
            peer,
            disallowed_client,
            tested,
            allowed_clients,
            unforwarded_ports,
            unused,
            services,
        }
    }

    /// Every address the internet namespace holds.
    pub fn internet_addresses(&self) -> BTreeSet<Ipv4Addr> {
        let mut all: BTreeSet<Ipv4Addr> = self
            .tested
            .iter()
            .flat_map(|&i| self.allowed_clients[i].iter().copied())
            .collect();
        all.insert(self.disallowed_client);
        all.insert(self.internet_server);
        all
    }
}

/// A client address inside `cidr` that is usable on the Internet side: not
/// in the VPC and not one of the lab's fixed addresses.
fn client_in(cidr: &Cidr, m: &Manifest, used: &BTreeSet<Ipv4Addr>) -> Ipv4Addr {
    let last = u32::from(cidr.broadcast());
    let mut candidate = cidr.hosts().next().map(u32::from);
    // Walk the CIDR, jumping over VPC ranges rather than stepping through
    // them (a `from` of 10.0.0.0/8 around a 10.0.0.0/16 VPC is legitimate).
    for _ in 0..4096 {
        let Some(c) = candidate else { break };
        if c > last {
            break;
        }
        let addr = Ipv4Addr::from(c);
        if let Some(vpc) = m.vpc_cidrs.iter().find(|v| v.contains(addr)) {
            candidate = u32::from(vpc.broadcast()).checked_add(1);
        } else if used.contains(&addr) || (cidr.prefix() < 31 && c == last) {
            candidate = c.checked_add(1);
        } else {
            return addr;
        }
    }
    panic!("{}: no usable client address in {cidr}", m.site)
}
