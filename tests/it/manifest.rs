//! `manifest.json` as the tests read it: typed, with the crate's own
//! [`Cidr`] and [`Proto`], so every test reads it the same way and a field
//! that goes missing or changes type fails at the read, not deep inside a
//! check. Only what some test looks at is here; serde skips the rest.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use natbake::cidr::Cidr;
use natbake::site::Proto;
use serde::{Deserialize, Deserializer};

/// The parts of `manifest.json` that tests use.
#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    pub site: String,
    pub description: Option<String>,
    #[serde(deserialize_with = "cidrs")]
    pub vpc_cidrs: Vec<Cidr>,
    pub egress: bool,
    pub forwards: Vec<Forward>,
    /// The user data natbake rendered; none when the spec is too big for it.
    pub user_data: Option<UserData>,
    pub artifacts: Vec<Artifact>,
    pub security_groups: SecurityGroups,
    pub targets: Vec<Target>,
    /// `nlb` for a load balancer site; absent for a NAT instance.
    pub deployment: Option<String>,
}

/// One forward.
#[derive(Clone, Debug, Deserialize)]
pub struct Forward {
    pub name: String,
    #[serde(deserialize_with = "proto")]
    pub proto: Proto,
    /// First and last listen port; equal for a single port.
    pub listen_ports: (u16, u16),
    pub target_address: Ipv4Addr,
    pub target_ports: (u16, u16),
    #[serde(deserialize_with = "cidrs")]
    pub from: Vec<Cidr>,
    pub public: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct UserData {
    /// `user-data.yaml`, or `user-data.yaml.gz` when compressed whole.
    pub file: String,
    pub gzip: bool,
}

/// One rendered file.
#[derive(Clone, Debug, Deserialize)]
pub struct Artifact {
    pub path: String,
    /// Where the file goes on the NAT instance; none for files that stay
    /// with the operator (Packer templates, security groups, ...).
    pub install_path: Option<String>,
    /// Octal, as `install -m` and cloud-init's `permissions` take it.
    pub mode: String,
    pub sha256: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SecurityGroups {
    pub nat: NatGroup,
    /// Warnings about EC2's rule quotas.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct NatGroup {
    /// `security-group.json`, when there is any inbound rule.
    pub ingress_file: Option<String>,
    pub inbound_rules: usize,
    /// EC2 IpPermissions for the group's outbound rules.
    pub egress: Vec<serde_json::Value>,
}

/// A forward target and the inbound rules its own security group needs.
#[derive(Clone, Debug, Deserialize)]
pub struct Target {
    pub address: Ipv4Addr,
    pub security_group_ingress: Vec<IpPermission>,
    /// What its subnet's route table must send through the NAT.
    pub routes: Vec<Route>,
}

/// A return route: a forward's sources, through the NAT's interface.
#[derive(Clone, Debug, Deserialize)]
pub struct Route {
    #[serde(deserialize_with = "cidr")]
    pub destination: Cidr,
    pub via: String,
}

/// The part of an EC2 IpPermission that tests look at.
#[derive(Clone, Debug, Deserialize)]
pub struct IpPermission {
    #[serde(rename = "IpRanges")]
    pub ip_ranges: Vec<serde_json::Value>,
}

impl Manifest {
    /// Reads `site_dir/manifest.json`; panics naming the file if it cannot.
    pub fn load(site_dir: &Path) -> Manifest {
        let path = site_dir.join("manifest.json");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        Manifest::parse(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    /// Parses a manifest and checks what the network lab relies on.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_str(text).map_err(|err| err.to_string())?;
        if m.vpc_cidrs.is_empty() {
            return Err("`vpc_cidrs` is empty".into());
        }
        for f in &m.forwards {
            let (l, t) = (f.listen_ports, f.target_ports);
            if l.0 > l.1 || t.0 > t.1 {
                return Err(format!(
                    "forward {}: a port range is not [first, last]",
                    f.name
                ));
            }
            if l.1 - l.0 != t.1 - t.0 {
                return Err(format!(
                    "forward {}: listen and target ranges differ",
                    f.name
                ));
            }
            if f.from.is_empty() {
                return Err(format!("forward {}: empty `from`", f.name));
            }
        }
        // Each target's routes lead every source of its forwards that lies
        // outside the VPC back through the NAT, and nothing else.
        let within = |inner: &Cidr, outer: &Cidr| {
            outer.prefix() <= inner.prefix() && outer.contains(inner.network())
        };
        // Behind a load balancer the replies go back through it: no routes.
        let behind_nlb = m.deployment.as_deref() == Some("nlb");
        for t in &m.targets {
            if behind_nlb {
                if !t.routes.is_empty() {
                    return Err(format!(
                        "target {}: routes behind a load balancer",
                        t.address
                    ));
                }
                continue;
            }
            let sources: Vec<&Cidr> = m
                .forwards
                .iter()
                .filter(|f| f.target_address == t.address)
                .flat_map(|f| &f.from)
                .filter(|c| !m.vpc_cidrs.iter().any(|v| within(c, v)))
                .collect();
            for r in &t.routes {
                if r.via != "nat-interface" || !sources.iter().any(|c| within(c, &r.destination)) {
                    return Err(format!("target {}: route {r:?} is no source's", t.address));
                }
            }
            for c in sources {
                if !t.routes.iter().any(|r| within(c, &r.destination)) {
                    return Err(format!("target {}: no route back to {c}", t.address));
                }
            }
        }
        Ok(m)
    }

    pub fn in_vpc(&self, addr: Ipv4Addr) -> bool {
        self.vpc_cidrs.iter().any(|c| c.contains(addr))
    }
}

impl Forward {
    pub fn listens_on(&self, proto: Proto, port: u16) -> bool {
        self.proto == proto && (self.listen_ports.0..=self.listen_ports.1).contains(&port)
    }

    /// The target port a listen port maps to (ranges map port for port).
    pub fn target_port(&self, listen: u16) -> u16 {
        self.target_ports.0 + (listen - self.listen_ports.0)
    }

    /// The listen ports the checks exercise: the first, and for a range also
    /// the last and one in the middle. Enough to catch an off-by-one or a
    /// range collapsed to one port, without a service per port.
    pub fn sample_listen_ports(&self) -> Vec<u16> {
        let (first, last) = self.listen_ports;
        let mut ports = vec![first, first + (last - first) / 2, last];
        ports.dedup();
        ports
    }
}

/// CIDRs as natbake writes them, read with natbake's own strict parser.
fn cidrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cidr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| Cidr::parse(text).map_err(serde::de::Error::custom))
        .collect()
}

fn cidr<'de, D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
    Cidr::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn proto<'de, D: Deserializer<'de>>(d: D) -> Result<Proto, D::Error> {
    match String::deserialize(d)?.as_str() {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        other => Err(serde::de::Error::custom(format!("unknown proto `{other}`"))),
    }
}
