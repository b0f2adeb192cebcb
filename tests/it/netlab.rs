//! A VPC-shaped network lab built from Linux network namespaces, for proving
//! natbake's rendered artifacts with real traffic.
//!
//! ```text
//!                        "vpc" namespace: bridge br0 (the VPC's network)
//!      +----------------+----------------+----------------+
//!      |                |                |                |
//!   NAT instance    Internet gateway   private host     peer
//!   eth0 only       vpc0 | inet0       eth0             eth0
//!   default via     1:1 elastic IP     default via      a non-VPC source
//!   the gateway     <-> NAT private    the NAT          routed at the NAT
//!                          |
//!                   "internet" namespace: allowed and disallowed clients,
//!                   an Internet server (documentation addresses only)
//! ```
//!
//! The shape follows EC2: the NAT instance has ONE interface, so forwarded
//! traffic enters and leaves on it; the Internet gateway maps the elastic IP
//! 1:1 to the NAT's private address and drops traffic from every other
//! private address, which is why the NAT has to masquerade. The private host
//! carries every forward target address and runs socat services that answer
//! with the source address and port they see, and log every contact.
//!
//! Nothing here touches the host's network: every address, route, rule and
//! sysctl lives in namespaces the lab created, and [`Lab`]'s `Drop` kills the
//! lab's processes and deletes its namespaces, also when a test panics.
//!
//! The lab can be started without running `configure-pat.sh` (see
//! [`Lab::start`]), and the traffic checks are free functions taking the lab,
//! so a boot test can let a booted image configure the NAT namespace (found
//! at [`Lab::netns_path`]) and then run the same checks:
//!
//! ```text
//! let lab = Lab::start(&manifest, LabOptions::matching(&manifest));
//! // boot with --network-namespace-path=lab.netns_path(&lab.ns.nat) ...
//! let mut f = Findings::new("boot 1");
//! check_all_up(&lab, &mut f);
//! f.assert_clean(&lab);
//! lab.reset_nat(); // before the next "boot" in the same namespace
//! ```

// Parts of the lab exist for other tests (the boot test) and are unused in
// some builds.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, Finished, ScratchDir};

/// Where the metadata service lives, on EC2 and in the lab.
pub const IMDS_ADDRESS: &str = "169.254.169.254";

/// Port of the Internet server that private hosts talk to (TCP and UDP).
pub const INTERNET_SERVER_PORT: u16 = 8080;

/// How long a probe that is expected to get an answer may take. Generous:
/// the machine may be busy, and a probe that answers returns at once.
const ANSWER_WAIT: Duration = Duration::from_secs(4);

/// How long a probe that is expected to get nothing waits before concluding
/// that nothing came. Refused connections return at once; only silently
/// dropped packets cost this long.
const SILENCE_WAIT: Duration = Duration::from_millis(1500);

/// Upper bound on any run of configure-pat.sh, so a hanging script fails the
/// test instead of hanging it.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// At most this many forwards of one spec are exercised; a bigger spec gets
/// an evenly spread sample (first and last included), which still crosses
/// every branch of a dispatch tree without a service per forward.
const MAX_TESTED_FORWARDS: usize = 16;

/// How many probes run at once. Probes are independent (each has its own
/// source port), so running them together keeps the silent waits short;
/// most of the time they only wait.
const PROBE_PARALLELISM: usize = 12;

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

/// An IPv4 network in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`; panics on anything else, since the input comes
    /// from a manifest that natbake has already validated.
    pub fn parse(text: &str) -> Cidr {
        let (addr, len) = text
            .split_once('/')
            .unwrap_or_else(|| panic!("`{text}` is not a CIDR"));
        let addr: Ipv4Addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("bad address in `{text}`"));
        let len: u8 = len
            .parse()
            .unwrap_or_else(|_| panic!("bad prefix length in `{text}`"));
        assert!(len <= 32, "bad prefix length in `{text}`");
        let cidr = Cidr { network: addr, len };
        assert_eq!(
            u32::from(addr) & cidr.mask(),
            u32::from(addr),
            "`{text}` is not a network address"
        );
        cidr
    }

    fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }

    fn first(&self) -> u32 {
        u32::from(self.network)
    }

    fn last(&self) -> u32 {
        self.first() | !self.mask()
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == self.first()
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// Usable host addresses in order: without the network and broadcast
    /// addresses, except in /31 and /32 where every address is a host.
    fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let (first, last) = if self.len >= 31 {
            (self.first(), self.last())
        } else {
            (self.first() + 1, self.last() - 1)
        };
        (first..=last).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

// ---------------------------------------------------------------------------
// The manifest, as far as the lab needs it
// ---------------------------------------------------------------------------

/// The crate's own protocol type; the manifest spells it `tcp` or `udp`.
pub use natbake::site::Proto;

/// One forward from `manifest.json`.
#[derive(Clone, Debug)]
pub struct Forward {
    pub name: String,
    pub proto: Proto,
    /// First and last listen port; equal for a single port.
    pub listen_ports: (u16, u16),
    pub target_address: Ipv4Addr,
    pub target_ports: (u16, u16),
    pub from: Vec<Cidr>,
    pub public: bool,
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

/// The parts of `manifest.json` that the lab and the checks use.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub site: String,
    pub vpc_cidrs: Vec<Cidr>,
    pub egress: bool,
    pub forwards: Vec<Forward>,
    /// `(file name, gzip)` of the user data, when rendered.
    pub user_data: Option<(String, bool)>,
    pub artifacts: Vec<Artifact>,
}

#[derive(Clone, Debug)]
pub struct Artifact {
    pub path: String,
    pub install_path: Option<String>,
    pub mode: String,
}

impl Manifest {
    pub fn load(site_dir: &Path) -> Manifest {
        let path = site_dir.join("manifest.json");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        Manifest::parse(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Manifest, String> {
        let doc: Value = serde_json::from_str(text).map_err(|err| err.to_string())?;
        let str_field = |v: &Value, key: &str| -> Result<String, String> {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("`{key}` missing or not a string"))
        };
        let port_pair = |v: &Value, key: &str| -> Result<(u16, u16), String> {
            let ports: Vec<u16> = v
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_u64()?.try_into().ok())
                        .collect()
                })
                .unwrap_or_default();
            match ports[..] {
                [first, last] if first <= last => Ok((first, last)),
                _ => Err(format!("`{key}` is not [first, last]")),
            }
        };
        let cidrs = |v: Option<&Value>| -> Vec<Cidr> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(Cidr::parse)
                        .collect()
                })
                .unwrap_or_default()
        };

        let mut forwards = Vec::new();
        for f in doc
            .get("forwards")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = str_field(f, "name")?;
            let proto = match str_field(f, "proto")?.as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                other => return Err(format!("forward {name}: unknown proto {other}")),
            };
            let target = str_field(f, "target_address")?;
            let forward = Forward {
                proto,
                listen_ports: port_pair(f, "listen_ports")?,
                target_address: target
                    .parse()
                    .map_err(|_| format!("forward {name}: bad target_address {target}"))?,
                target_ports: port_pair(f, "target_ports")?,
                from: cidrs(f.get("from")),
                public: f.get("public").and_then(Value::as_bool).unwrap_or(false),
                name,
            };
            let (l, t) = (forward.listen_ports, forward.target_ports);
            if l.1 - l.0 != t.1 - t.0 {
                return Err(format!(
                    "forward {}: listen and target ranges differ",
                    forward.name
                ));
            }
            if forward.from.is_empty() {
                return Err(format!("forward {}: empty `from`", forward.name));
            }
            forwards.push(forward);
        }

        let user_data = match doc.get("user_data") {
            Some(Value::Object(u)) => Some((
                u.get("file")
                    .and_then(Value::as_str)
                    .unwrap_or("user-data.yaml")
                    .to_owned(),
                u.get("gzip").and_then(Value::as_bool).unwrap_or(false),
            )),
            _ => None,
        };
        let artifacts = doc
            .get("artifacts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| {
                Ok(Artifact {
                    path: str_field(a, "path")?,
                    install_path: a
                        .get("install_path")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    mode: a
                        .get("mode")
                        .and_then(Value::as_str)
                        .unwrap_or("0644")
                        .to_owned(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;

        let vpc_cidrs = cidrs(doc.get("vpc_cidrs"));
        if vpc_cidrs.is_empty() {
            return Err("`vpc_cidrs` missing or empty".into());
        }
        Ok(Manifest {
            site: str_field(&doc, "site")?,
            vpc_cidrs,
            egress: doc.get("egress").and_then(Value::as_bool).unwrap_or(true),
            forwards,
            user_data,
            artifacts,
        })
    }

    fn in_vpc(&self, addr: Ipv4Addr) -> bool {
        self.vpc_cidrs.iter().any(|c| c.contains(addr))
    }
}

// ---------------------------------------------------------------------------
// The address plan
// ---------------------------------------------------------------------------

/// Prints a timestamped progress line when NATBAKE_NETLAB_TRACE is set, for
/// finding out where a slow or stuck lab spends its time.
pub fn trace(what: &str) {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    if std::env::var_os("NATBAKE_NETLAB_TRACE").is_some() {
        let start = START.get_or_init(Instant::now);
        eprintln!("netlab {:>7.2?} {what}", start.elapsed());
    }
}

/// Which namespace a service or probe runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Nat,
    Igw,
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
                    let addr = if f.public && cidr.len == 0 {
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
    fn internet_addresses(&self) -> BTreeSet<Ipv4Addr> {
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
    let mut candidate = cidr.hosts().next().map(u32::from);
    // Walk the CIDR, jumping over VPC ranges rather than stepping through
    // them (a `from` of 10.0.0.0/8 around a 10.0.0.0/16 VPC is legitimate).
    for _ in 0..4096 {
        let Some(c) = candidate else { break };
        if c > cidr.last() {
            break;
        }
        let addr = Ipv4Addr::from(c);
        if let Some(vpc) = m.vpc_cidrs.iter().find(|v| v.contains(addr)) {
            candidate = vpc.last().checked_add(1);
        } else if used.contains(&addr) || (cidr.len < 31 && c == cidr.last()) {
            candidate = c.checked_add(1);
        } else {
            return addr;
        }
    }
    panic!("{}: no usable client address in {cidr}", m.site)
}

// ---------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------

/// How the metadata stub in the NAT namespace behaves.
#[derive(Clone, Debug)]
pub enum Imds {
    /// IMDSv2 stub reporting these CIDR blocks.
    Stub(Vec<String>),
    /// No metadata service: packets to 169.254.169.254 vanish at the
    /// gateway, the worst case for a script's time-outs.
    Absent,
}

#[derive(Clone, Debug)]
pub struct LabOptions {
    pub imds: Imds,
    /// Hiccups of the metadata stub, as its `--fault` takes them:
    /// `PATH=N:KIND`, the first N requests of PATH failing with the HTTP
    /// status KIND, or with the connection dropped when KIND is `drop`.
    pub imds_faults: Vec<String>,
}

impl LabOptions {
    /// The usual case: a VPC whose CIDR blocks are the spec's plus one more,
    /// so "include" is tested rather than "equal".
    pub fn matching(m: &Manifest) -> LabOptions {
        let mut cidrs: Vec<String> = m.vpc_cidrs.iter().map(Cidr::to_string).collect();
        cidrs.push(cidr_outside(m).to_string());
        LabOptions {
            imds: Imds::Stub(cidrs),
            imds_faults: Vec::new(),
        }
    }

    /// A VPC that has none of the spec's CIDR blocks.
    pub fn mismatching(m: &Manifest) -> LabOptions {
        LabOptions {
            imds: Imds::Stub(vec![cidr_outside(m).to_string()]),
            imds_faults: Vec::new(),
        }
    }

    /// The same, with the metadata stub failing as `faults` say.
    pub fn with_imds_faults(mut self, faults: &[String]) -> LabOptions {
        self.imds_faults = faults.to_vec();
        self
    }
}

/// A private CIDR that overlaps none of the spec's.
pub fn cidr_outside(m: &Manifest) -> Cidr {
    [
        "172.31.0.0/16",
        "100.64.0.0/16",
        "192.168.0.0/16",
        "10.255.0.0/16",
    ]
    .into_iter()
    .map(Cidr::parse)
    .find(|c| !m.vpc_cidrs.iter().any(|v| v.overlaps(c)))
    .expect("some private CIDR is outside the spec's VPC")
}

/// The lab's namespace names.
#[derive(Clone, Debug)]
pub struct Namespaces {
    /// Holds the bridge that stands for the VPC's network.
    pub vpc: String,
    pub nat: String,
    pub igw: String,
    pub private: String,
    pub internet: String,
    pub peer: String,
}

impl Namespaces {
    pub fn of(&self, role: Role) -> &str {
        match role {
            Role::Nat => &self.nat,
            Role::Igw => &self.igw,
            Role::Private => &self.private,
            Role::Internet => &self.internet,
            Role::Peer => &self.peer,
        }
    }

    /// Every namespace of the lab, in the order they are made.
    pub fn all(&self) -> [&String; 6] {
        [
            &self.vpc,
            &self.nat,
            &self.igw,
            &self.private,
            &self.internet,
            &self.peer,
        ]
    }
}

/// A process the lab started; killed (with its process group, which holds
/// socat's forked children) when dropped.
struct Background {
    what: String,
    child: Child,
}

impl Drop for Background {
    fn drop(&mut self) {
        support::kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

/// A running lab. Dropping it removes everything it created.
pub struct Lab {
    pub manifest: Manifest,
    pub plan: Plan,
    pub ns: Namespaces,
    pub options: LabOptions,
    /// MAC address of the NAT's eth0, as the metadata stub reports it.
    pub nat_mac: String,
    created: Vec<String>,
    procs: Vec<Background>,
    next_source_port: AtomicU32,
    runs: AtomicU32,
    python: String,
    keep_dir: AtomicBool,
    // Declared last so it is removed after processes and namespaces.
    dir: ScratchDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        trace(&format!("{}: removing the lab", self.manifest.site));
        // Processes first: a namespace with processes in it outlives its name.
        self.procs.clear();
        for ns in self.created.iter().rev() {
            let out = Command::new("ip")
                .args(["netns", "del", ns])
                .stdin(Stdio::null())
                .output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!(
                    "netlab: cannot delete namespace {ns}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(err) => eprintln!("netlab: cannot run `ip netns del {ns}`: {err}"),
            }
        }
        if self.keep_dir.load(Ordering::Relaxed) {
            eprintln!("netlab: kept {}", self.dir.path().display());
            self.dir.disarm();
        }
    }
}

/// A command run inside a namespace.
pub fn in_ns(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    cmd
}

fn python() -> String {
    // The system interpreter has PyYAML on Debian; a pyenv shim may not.
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

impl Lab {
    /// Builds the topology, starts the services and the metadata stub, and
    /// leaves the NAT instance unconfigured: no rules, forwarding off, and
    /// redirects on, like a freshly booted stock image.
    pub fn start(manifest: &Manifest, options: LabOptions) -> Lab {
        let id = support::unique_id();
        let name = |role: &str| format!("nbt{id}-{role}");
        let mut lab = Lab {
            manifest: manifest.clone(),
            plan: Plan::new(manifest),
            ns: Namespaces {
                vpc: name("vpc"),
                nat: name("nat"),
                igw: name("igw"),
                private: name("prv"),
                internet: name("inet"),
                peer: name("peer"),
            },
            options,
            nat_mac: String::new(),
            created: Vec::new(),
            procs: Vec::new(),
            next_source_port: AtomicU32::new(20000),
            runs: AtomicU32::new(0),
            python: python(),
            keep_dir: AtomicBool::new(false),
            dir: ScratchDir::new(&format!("lab-{}", manifest.site)),
        };
        // From here on, a panic drops `lab`, which removes whatever exists.
        trace(&format!("{}: building {}", lab.manifest.site, lab.ns.nat));
        lab.build_topology();
        trace(&format!("{}: topology built", lab.manifest.site));
        lab.start_services();
        trace(&format!("{}: services up", lab.manifest.site));
        lab
    }

    /// The forwards the checks exercise, with their index in the manifest.
    pub fn tested_forwards(&self) -> impl Iterator<Item = (usize, &Forward)> {
        self.plan
            .tested
            .iter()
            .map(|&i| (i, &self.manifest.forwards[i]))
    }

    /// The lab's scratch directory (service logs, metadata log, syslog).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// With NATBAKE_NETLAB_KEEP set, the lab directory (service logs,
    /// script output, metadata and syslog) outlives the lab, for a
    /// post-mortem. The namespaces are still removed.
    pub fn keep_dir_if_asked(&self) {
        if std::env::var_os("NATBAKE_NETLAB_KEEP").is_some() {
            self.keep_dir.store(true, Ordering::Relaxed);
        }
    }

    /// `/run/netns/NAME`, for tools that take a namespace path, such as
    /// `systemd-nspawn --network-namespace-path`.
    pub fn netns_path(&self, ns: &str) -> PathBuf {
        Path::new("/run/netns").join(ns)
    }

    fn add_namespace(&mut self, ns: &str) {
        support::run(Command::new("ip").args(["netns", "add", ns]));
        self.created.push(ns.to_owned());
    }

    /// Runs `ip -batch` in a namespace: one process for many commands.
    fn ip_batch(&self, ns: &str, lines: &[String]) {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", ns, "-batch", "-"]);
        let done = support::run_bounded(
            &mut cmd,
            lines.join("\n").as_bytes(),
            Duration::from_secs(20),
        );
        assert!(
            done.success(),
            "ip batch in {ns} failed\n--- batch ---\n{}\n{}",
            lines.join("\n"),
            done.explain()
        );
    }

    fn sysctls(&self, ns: &str, settings: &[&str]) {
        // Only net.* keys: anything else is not namespaced and would change
        // the host.
        assert!(
            settings.iter().all(|s| s.starts_with("net.")),
            "non-net sysctl in the lab"
        );
        support::run(in_ns(ns, "sysctl").arg("-qw").args(settings));
    }

    fn build_topology(&mut self) {
        let ns = self.ns.clone();
        let p = self.plan.clone();
        for name in ns.all() {
            self.add_namespace(name);
        }

        // A new namespace inherits the host's IPv4 settings, which may have
        // forwarding on. Pin every namespace to a known state before any
        // interface exists, so interfaces inherit it too. The NAT starts as
        // a fresh instance would: forwarding off, redirects on (the kernel
        // default), so the script has to change both.
        for name in [&ns.vpc, &ns.internet] {
            self.sysctls(name, &["net.ipv4.ip_forward=0"]);
        }
        // The private host accepts redirects, as Linux hosts do by default:
        // a NAT that sent them would be bypassed, and the tests would notice.
        // The peer is a probe and must always go through the NAT.
        for (name, accept) in [(&ns.private, "1"), (&ns.peer, "0")] {
            let all = format!("net.ipv4.conf.all.accept_redirects={accept}");
            let default = format!("net.ipv4.conf.default.accept_redirects={accept}");
            self.sysctls(name, &["net.ipv4.ip_forward=0", &all, &default]);
        }
        self.sysctls(
            &ns.nat,
            &[
                "net.ipv4.ip_forward=0",
                "net.ipv4.conf.all.send_redirects=1",
                "net.ipv4.conf.default.send_redirects=1",
            ],
        );
        self.sysctls(&ns.igw, &["net.ipv4.ip_forward=1"]);
        // IPv6 plays no part; switched off, its link-local chatter cannot
        // muddy a failure. `-e`: a kernel without IPv6 has no such keys.
        for name in [
            &ns.vpc,
            &ns.nat,
            &ns.igw,
            &ns.private,
            &ns.internet,
            &ns.peer,
        ] {
            support::run(in_ns(name, "sysctl").args([
                "-qew",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]));
        }

        // The VPC's network: a bridge, with one veth per attached host. Each
        // pair is created inside the vpc namespace with its peer placed
        // straight into the host's namespace, so no interface ever appears
        // in the host's own namespace.
        let mut vpc = vec![
            "link add br0 type bridge".to_owned(),
            "link set br0 up".to_owned(),
        ];
        for (port, peer_ns, peer_if) in [
            ("nat0", &ns.nat, "eth0"),
            ("igw0", &ns.igw, "vpc0"),
            ("prv0", &ns.private, "eth0"),
            ("peer0", &ns.peer, "eth0"),
        ] {
            vpc.push(format!(
                "link add {port} type veth peer name {peer_if} netns {peer_ns}"
            ));
            vpc.push(format!("link set {port} master br0 up"));
        }
        self.ip_batch(&ns.vpc, &vpc);
        self.ip_batch(
            &ns.igw,
            &[format!(
                "link add inet0 type veth peer name eth0 netns {}",
                ns.internet
            )],
        );

        // NAT instance: one interface, the VPC on-link, default route via the
        // gateway (on EC2 the VPC router, which hands it to the gateway).
        let mut nat = vec![
            "link set lo up".to_owned(),
            "link set eth0 up".to_owned(),
            format!("addr add {}/32 dev eth0", p.nat_private),
        ];
        nat.extend(self.vpc_routes("eth0", p.nat_private));
        nat.push(format!(
            "route add default via {} dev eth0 src {}",
            p.igw_private, p.nat_private
        ));
        // The peer's replies go back on the VPC segment.
        nat.push(format!(
            "route add {}/32 dev eth0 src {}",
            p.peer, p.nat_private
        ));
        if matches!(self.options.imds, Imds::Stub(_)) {
            nat.push(format!("addr add {IMDS_ADDRESS}/32 dev lo"));
        }
        self.ip_batch(&ns.nat, &nat);
        self.nat_mac =
            support::run_stdout(in_ns(&ns.nat, "cat").arg("/sys/class/net/eth0/address"))
                .trim()
                .to_owned();

        // Internet gateway: VPC on one side, the elastic IP on the other.
        let mut igw = vec![
            "link set lo up".to_owned(),
            "link set vpc0 up".to_owned(),
            "link set inet0 up".to_owned(),
            format!("addr add {}/32 dev vpc0", p.igw_private),
            format!("addr add {}/32 dev inet0", p.elastic_ip),
            // Every non-VPC address is "the Internet", directly on inet0.
            "route add default dev inet0".to_owned(),
        ];
        igw.extend(self.vpc_routes("vpc0", p.igw_private));
        self.ip_batch(&ns.igw, &igw);
        support::run(
            in_ns(&ns.igw, "iptables-restore")
                .arg(self.write_file("igw-rules.v4", &self.igw_rules())),
        );

        // Private host: every forward target plus its own address; default
        // route via the NAT instance, as a private subnet's route table says.
        let mut private = vec![
            "link set lo up".to_owned(),
            "link set eth0 up".to_owned(),
            format!("addr add {}/32 dev eth0", p.private_self),
        ];
        let targets: BTreeSet<Ipv4Addr> = p
            .tested
            .iter()
            .map(|&i| self.manifest.forwards[i].target_address)
            .collect();
        for t in &targets {
            private.push(format!("addr add {t}/32 dev eth0"));
        }
        private.extend(self.vpc_routes("eth0", p.private_self));
        private.push(format!(
            "route add default via {} dev eth0 src {}",
            p.nat_private, p.private_self
        ));
        self.ip_batch(&ns.private, &private);

        // The Internet: clients and a server, all on one link to the gateway.
        let mut internet = vec!["link set lo up".to_owned(), "link set eth0 up".to_owned()];
        for addr in p.internet_addresses() {
            internet.push(format!("addr add {addr}/32 dev eth0"));
        }
        internet.push(format!("route add {}/32 dev eth0", p.elastic_ip));
        self.ip_batch(&ns.internet, &internet);

        // The peer: a non-VPC source on the VPC segment that sends VPC-bound
        // traffic to the NAT instance.
        let mut peer = vec![
            "link set lo up".to_owned(),
            "link set eth0 up".to_owned(),
            format!("addr add {}/32 dev eth0", p.peer),
        ];
        for c in &self.manifest.vpc_cidrs {
            peer.push(format!(
                "route add {c} via {} dev eth0 onlink",
                p.nat_private
            ));
        }
        self.ip_batch(&ns.peer, &peer);
    }

    /// On-link routes for every VPC CIDR, with a fixed source address.
    fn vpc_routes(&self, dev: &str, src: Ipv4Addr) -> Vec<String> {
        self.manifest
            .vpc_cidrs
            .iter()
            .map(|c| format!("route add {c} dev {dev} src {src}"))
            .collect()
    }

    /// The gateway's rules: 1:1 NAT between the elastic IP and the NAT's
    /// private address, and nothing else out of the VPC. Metadata traffic is
    /// dropped silently so that "no metadata service" means time-outs.
    fn igw_rules(&self) -> String {
        let p = &self.plan;
        format!(
            "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i inet0 -d {eip}/32 -j DNAT --to-destination {nat}
-A POSTROUTING -o inet0 -s {nat}/32 -j SNAT --to-source {eip}
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -d 169.254.0.0/16 -j DROP
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i vpc0 -o inet0 -s {nat}/32 -j ACCEPT
-A FORWARD -i inet0 -o vpc0 -d {nat}/32 -m conntrack --ctstate DNAT -j ACCEPT
COMMIT
",
            eip = p.elastic_ip,
            nat = p.nat_private
        )
    }

    fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir().join(name);
        fs::write(&path, content)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    fn spawn(&mut self, what: &str, ns: &str, program: &str, args: &[String]) {
        let log = self
            .dir()
            .join(format!("{}.out", what.replace([' ', '/', ':'], "_")));
        let out = fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        let mut cmd = in_ns(ns, program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", support::describe(&cmd)));
        self.procs.push(Background {
            what: what.to_owned(),
            child,
        });
    }

    /// The log file of a service: one `"<peer address> <peer port>"` line per
    /// contact.
    pub fn service_log(&self, s: &ServiceSpec) -> PathBuf {
        self.dir()
            .join(format!("svc-{}-{}-{}.log", s.proto.name(), s.addr, s.port))
    }

    fn start_services(&mut self) {
        let mut expected: Vec<(String, Proto, String)> = Vec::new();
        for s in self.plan.services.clone() {
            let log = self.service_log(&s);
            fs::write(&log, "").expect("create service log");
            // The service answers with the source it sees, logs it, and
            // for TCP then echoes, so a connection can be kept open and used
            // again later.
            let report = format!(
                "echo \"$SOCAT_PEERADDR $SOCAT_PEERPORT\" >> {log}; echo \"$SOCAT_PEERADDR $SOCAT_PEERPORT\"",
                log = log.display()
            );
            let (listen, system) = match s.proto {
                Proto::Tcp => (
                    format!("TCP4-LISTEN:{},bind={},reuseaddr,fork", s.port, s.addr),
                    format!("SYSTEM:{report}; exec cat"),
                ),
                // Read the datagram first: socat hands it to the shell, and
                // a shell that exited before that makes socat fail with
                // EPIPE instead of sending the answer.
                Proto::Udp => (
                    format!("UDP4-RECVFROM:{},bind={},fork", s.port, s.addr),
                    format!("SYSTEM:read -r _; {report}"),
                ),
            };
            let ns = self.ns.of(s.role).to_owned();
            // -T: idle connections end after a minute, long enough to keep
            // one open across a rerun of the script.
            let args = vec!["-T".into(), "60".into(), listen, system];
            self.spawn(
                &format!("svc {} {}:{}", s.proto.name(), s.addr, s.port),
                &ns,
                "socat",
                &args,
            );
            expected.push((ns, s.proto, format!("{}:{}", s.addr, s.port)));
        }

        if let Imds::Stub(cidrs) = self.options.imds.clone() {
            let script = self.write_file("imds_stub.py", include_str!("imds_stub.py"));
            let mut args = vec![
                script.display().to_string(),
                "--bind".into(),
                IMDS_ADDRESS.into(),
                "--port".into(),
                "80".into(),
                "--mac".into(),
                self.nat_mac.clone(),
                "--local-ipv4".into(),
                self.plan.nat_private.to_string(),
                "--log".into(),
                self.dir().join("imds.log").display().to_string(),
            ];
            for c in cidrs {
                args.push("--cidr".into());
                args.push(c);
            }
            for fault in &self.options.imds_faults {
                args.push("--fault".into());
                args.push(fault.clone());
            }
            let (nat, python) = (self.ns.nat.clone(), self.python.clone());
            self.spawn("imds stub", &nat, &python, &args);
            expected.push((nat, Proto::Tcp, format!("{IMDS_ADDRESS}:80")));
        }

        // A syslog receiver. configure-pat.sh runs with it mounted on
        // /dev/log (in its private mount namespace), so `logger -t natbake`
        // lines land in syslog.txt, one per line.
        let sink = self.dir().join("devlog.sock");
        let args = vec![
            "-c".into(),
            "import socket, sys\n\
             s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
             s.bind(sys.argv[1])\n\
             out = open(sys.argv[2], 'ab', 0)\n\
             while True:\n    out.write(s.recv(65536).rstrip(b'\\n') + b'\\n')\n"
                .into(),
            sink.display().to_string(),
            self.dir().join("syslog.txt").display().to_string(),
        ];
        let (nat, python) = (self.ns.nat.clone(), self.python.clone());
        self.spawn("syslog sink", &nat, &python, &args);

        self.wait_until_ready(&expected, &sink);
    }

    /// Waits until every service listens (per `ss`) and the syslog socket
    /// exists; reports which process did not come up.
    fn wait_until_ready(&mut self, expected: &[(String, Proto, String)], sink: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let namespaces: BTreeSet<&String> = expected.iter().map(|(ns, _, _)| ns).collect();
        loop {
            let mut missing = Vec::new();
            for ns in &namespaces {
                let out = support::output_of(in_ns(ns, "ss").args(["-Hlntu"]));
                let listening = String::from_utf8_lossy(&out.stdout).into_owned();
                let seen: BTreeSet<(String, String)> = listening
                    .lines()
                    .filter_map(|l| {
                        let cols: Vec<&str> = l.split_whitespace().collect();
                        Some((cols.first()?.to_string(), cols.get(4)?.to_string()))
                    })
                    .collect();
                for (ens, proto, local) in expected.iter().filter(|(e, _, _)| e == *ns) {
                    if !seen.contains(&(proto.name().to_owned(), local.clone())) {
                        missing.push(format!("{} {local} in {ens}", proto.name()));
                    }
                }
            }
            if !sink.exists() {
                missing.push("syslog socket".into());
            }
            if missing.is_empty() {
                return;
            }
            trace(&format!("waiting for {}", missing.join(", ")));
            if Instant::now() > deadline {
                let exited: Vec<String> = self
                    .procs
                    .iter_mut()
                    .filter_map(|p| Some(format!("{} ({})", p.what, p.child.try_wait().ok()??)))
                    .collect();
                panic!(
                    "lab services did not come up: {}\nexited: {}\n(see *.out in {})",
                    missing.join(", "),
                    exited.join(", "),
                    self.dir().display()
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    // -----------------------------------------------------------------------
    // Running configure-pat.sh as installed
    // -----------------------------------------------------------------------

    /// Installs `files` into a private view of the file system and runs the
    /// installed configure-pat.sh in the NAT namespace, as systemd would: as
    /// root, with an empty environment, no arguments.
    ///
    /// The view is a mount namespace private to this run: overlays on /etc,
    /// /usr/local, /var, /run and /dev (so /etc/natbake can be created and
    /// /dev/log can be the lab's syslog socket without touching the host),
    /// and a read-only /proc/sys except /proc/sys/net, so no sysctl outside
    /// the namespace's own network settings can be changed, whatever the
    /// script tries.
    pub fn run_configure_pat(&self, files: &InstallSet) -> Finished {
        self.run_installed(files, &[files.script_path()])
    }

    /// Runs `copies` copies of the installed configure-pat.sh at the same
    /// moment, in one view of the file system (so they share its lock
    /// file), as two starts of the boot step that overlap would. Returns
    /// each copy's exit code and stderr.
    pub fn run_configure_pat_concurrently(
        &self,
        files: &InstallSet,
        copies: usize,
    ) -> Vec<(i32, String)> {
        let count = copies.to_string();
        let out = self
            .dir()
            .join(format!("concurrent-{}", support::unique_id()));
        fs::create_dir_all(&out).expect("create the output folder");
        let out_arg = out.display().to_string();
        let done = self.run_installed(
            files,
            &[
                "/bin/sh",
                "-c",
                CONCURRENT_RUNS,
                "sh",
                files.script_path(),
                &count,
                &out_arg,
            ],
        );
        assert!(done.success(), "concurrent runs: {}", done.explain());
        // `<index> <exit code>` lines, then each copy's stderr in a file.
        done.stdout
            .lines()
            .map(|line| {
                let (index, code) = line.split_once(' ').expect("index and exit code");
                let stderr = fs::read_to_string(out.join(format!("{index}.err")));
                (
                    code.parse().expect("an exit code"),
                    stderr.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Installs `files` as [`Lab::run_configure_pat`] does and runs
    /// `command` there.
    fn run_installed(&self, files: &InstallSet, command: &[&str]) -> Finished {
        self.run_installed_in(&self.ns.nat, files, command)
    }

    /// [`Lab::run_configure_pat`] in namespace `ns`: another instance on
    /// the lab's VPC segment (the failover tests have two).
    pub fn run_configure_pat_in(&self, ns: &str, files: &InstallSet) -> Finished {
        self.run_installed_in(ns, files, &[files.script_path()])
    }

    fn run_installed_in(&self, ns: &str, files: &InstallSet, command: &[&str]) -> Finished {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let stage = self.dir().join(format!("run-{run}"));
        fs::create_dir_all(stage.join("ovl")).expect("create stage dir");
        let mut list = String::new();
        for f in &files.files {
            for path in [&f.install_path, &f.source.display().to_string()] {
                assert!(
                    !path.contains(char::is_whitespace),
                    "install path with white space: {path:?}"
                );
            }
            assert!(
                ["/etc/", "/usr/local/", "/var/", "/run/"]
                    .iter()
                    .any(|top| f.install_path.starts_with(top)),
                "the lab can only install under /etc, /usr/local, /var and /run, not {}",
                f.install_path
            );
            list.push_str(&format!(
                "{} {} {}\n",
                f.mode,
                f.source.display(),
                f.install_path
            ));
        }
        fs::write(stage.join("install.list"), list).expect("write install list");

        let mut cmd = in_ns(ns, "unshare");
        cmd.args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            INSTALLED_RUN,
            "natbake-lab",
        ])
        .arg(&stage)
        .arg(self.dir().join("devlog.sock"))
        .args(command);
        trace(&format!(
            "{}: running {} from {}",
            self.manifest.site,
            files.script_path(),
            files.origin
        ));
        let done = support::run_bounded(&mut cmd, b"", SCRIPT_LIMIT);
        trace(&format!(
            "{}: script finished in {:.2?}",
            self.manifest.site, done.elapsed
        ));
        assert!(
            done.status.and_then(|s| s.code()) != Some(SETUP_FAILED),
            "the lab could not install the files\n{}",
            done.explain()
        );
        // Keep the script's output with the lab, for a post-mortem.
        let _ = fs::write(stage.join("stdout"), &done.stdout);
        let _ = fs::write(stage.join("stderr"), &done.stderr);
        done
    }

    /// Returns the NAT namespace to its unconfigured state: tables empty,
    /// natbake's and anyone else's chains gone, forwarding off, redirects on.
    /// For tests that "reboot" the NAT instance in the same namespace.
    pub fn reset_nat(&self) {
        let mut tables = String::new();
        for (table, chains) in [
            ("filter", &["INPUT", "FORWARD", "OUTPUT"][..]),
            ("nat", &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"][..]),
            (
                "mangle",
                &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"][..],
            ),
            ("raw", &["PREROUTING", "OUTPUT"][..]),
        ] {
            tables.push_str(&format!("*{table}\n"));
            for c in chains {
                tables.push_str(&format!(":{c} ACCEPT [0:0]\n"));
            }
            tables.push_str("COMMIT\n");
        }
        // Without --noflush, restoring a table replaces it whole.
        support::run(
            in_ns(&self.ns.nat, "iptables-restore").arg(self.write_file("reset.v4", &tables)),
        );
        let mut settings = vec![
            "net.ipv4.ip_forward=0".to_owned(),
            "net.ipv4.conf.all.send_redirects=1".to_owned(),
            "net.ipv4.conf.default.send_redirects=1".to_owned(),
        ];
        for iface in ["lo", "eth0"] {
            settings.push(format!("net.ipv4.conf.{iface}.send_redirects=1"));
        }
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        self.sysctls(&self.ns.nat, &settings);
        // Connections tracked before the "reboot" would otherwise carry over.
        // Best effort: the conntrack tool is not installed everywhere.
        let _ = in_ns(&self.ns.nat, "conntrack")
            .arg("-F")
            .stdin(Stdio::null())
            .output();
    }

    // -----------------------------------------------------------------------
    // Looking at the NAT instance
    // -----------------------------------------------------------------------

    /// `iptables-save` of the NAT namespace without counters and comments,
    /// so two snapshots compare equal exactly when the rules are the same.
    pub fn iptables_save(&self) -> String {
        let text = support::run_stdout(&mut in_ns(&self.ns.nat, "iptables-save"));
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match (l.starts_with(':'), l.rfind(" [")) {
                (true, Some(at)) => &l[..at],
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `iptables-save -c` of a namespace, for failure reports.
    pub fn iptables_save_counters(&self, ns: &str) -> String {
        String::from_utf8_lossy(&support::output_of(in_ns(ns, "iptables-save").arg("-c")).stdout)
            .into_owned()
    }

    /// A sysctl of the NAT namespace, read from /proc/sys.
    pub fn nat_sysctl(&self, key: &str) -> String {
        assert!(key.starts_with("net."));
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        support::run_stdout(in_ns(&self.ns.nat, "cat").arg(path))
            .trim()
            .to_owned()
    }

    /// Every `send_redirects` of the NAT namespace, as `(name, value)`.
    pub fn nat_send_redirects(&self) -> Vec<(String, String)> {
        let out = support::run_stdout(
            in_ns(&self.ns.nat, "sh")
                .args(["-c", "grep -H . /proc/sys/net/ipv4/conf/*/send_redirects"]),
        );
        out.lines()
            .filter_map(|l| {
                let (path, value) = l.split_once(':')?;
                Some((path.to_owned(), value.trim().to_owned()))
            })
            .collect()
    }

    /// What `logger` wrote during script runs.
    pub fn syslog(&self) -> String {
        fs::read_to_string(self.dir().join("syslog.txt")).unwrap_or_default()
    }

    /// The metadata stub's request log: `METHOD PATH token|no-token STATUS`.
    pub fn imds_requests(&self) -> Vec<String> {
        fs::read_to_string(self.dir().join("imds.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("GET ") || l.starts_with("PUT "))
            .map(str::to_owned)
            .collect()
    }

    /// Adds rules the way other software does (its own chains, jumped to
    /// from the built-in chains), for checking that a rerun leaves them be.
    /// Inert: they match only an address no lab host uses.
    pub fn add_foreign_rules(&self) {
        let a = self.plan.unused;
        let rules = format!(
            "*filter
:OTHERSW-INPUT - [0:0]
:OTHERSW-FORWARD - [0:0]
-A OTHERSW-INPUT -s {a}/32 -p tcp --dport 9 -j DROP
-A OTHERSW-FORWARD -s {a}/32 -j DROP
-I INPUT 1 -j OTHERSW-INPUT
-I FORWARD 1 -j OTHERSW-FORWARD
COMMIT
*nat
:OTHERSW-POSTROUTING - [0:0]
-A OTHERSW-POSTROUTING -s {a}/32 -j RETURN
-A POSTROUTING -j OTHERSW-POSTROUTING
COMMIT
"
        );
        self.restore_noflush("foreign.v4", &rules);
    }

    /// Loads `rules` into the NAT namespace with `iptables-restore
    /// --noflush`, keeping what is there, as other software (or an earlier
    /// run) would have left it.
    pub fn restore_noflush(&self, name: &str, rules: &str) {
        let file = self.write_file(name, rules);
        support::run(
            in_ns(&self.ns.nat, "iptables-restore")
                .arg("--noflush")
                .arg(file),
        );
    }

    /// State of both firewalls and the NAT's forwarding, for failure reports.
    pub fn diagnostics(&self) -> String {
        format!(
            "lab directory: {}\nplan: {:#?}\nNAT ip_forward: {}\n--- NAT iptables-save -c ---\n{}\n--- gateway iptables-save -c ---\n{}\n--- syslog ---\n{}\n--- metadata requests ---\n{}",
            self.dir().display(),
            self.plan,
            self.nat_sysctl("net.ipv4.ip_forward"),
            self.iptables_save_counters(&self.ns.nat),
            self.iptables_save_counters(&self.ns.igw),
            self.syslog(),
            self.imds_requests().join("\n"),
        )
    }

    // -----------------------------------------------------------------------
    // Traffic
    // -----------------------------------------------------------------------

    /// A source port no other probe of this lab uses. Servers log the peer's
    /// port, so a probe's traces can be told apart from every other probe's.
    fn source_port(&self) -> u16 {
        let port = self.next_source_port.fetch_add(1, Ordering::Relaxed);
        assert!(port < 60000, "the lab ran out of probe source ports");
        port as u16
    }

    /// Sends one probe and returns what came back: the first line of the
    /// answer, if any.
    pub fn send_probe(&self, probe: &Probe) -> ProbeResult {
        let sport = self.source_port();
        let remote = match probe.proto {
            Proto::Tcp => format!(
                "TCP4:{}:{},bind={}:{sport},connect-timeout=2",
                probe.dst, probe.port, probe.src
            ),
            Proto::Udp => format!(
                "UDP4:{}:{},bind={}:{sport}",
                probe.dst, probe.port, probe.src
            ),
        };
        let wait = match probe.expect {
            Expect::SeenAs(_) => ANSWER_WAIT,
            Expect::Nothing => SILENCE_WAIT,
        };
        let mut cmd = in_ns(self.ns.of(probe.from), "socat");
        cmd.args(["-T", "5", "-t", "5", "-", &remote]);
        let reply = first_line(&mut cmd, b"natbake-probe\n", wait);
        ProbeResult {
            probe: probe.clone(),
            sport,
            reply,
        }
    }

    /// Sends probes, several at a time, and records in `findings` each one
    /// whose outcome differs from its expectation. A probe expected to get
    /// nothing also fails if any service logged its source address and port.
    pub fn run_probes(&self, probes: &[Probe], findings: &mut Findings) {
        trace(&format!("{}: {} probes", self.manifest.site, probes.len()));
        // A small pool of threads working through the list: a probe that
        // waits out its silence does not hold up the others.
        let next = AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<ProbeResult>>> =
            probes.iter().map(|_| Mutex::new(None)).collect();
        thread::scope(|scope| {
            for _ in 0..PROBE_PARALLELISM.min(probes.len()) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(probe) = probes.get(i) else { break };
                        *slots[i].lock().unwrap() = Some(self.send_probe(probe));
                    }
                });
            }
        });
        let results: Vec<ProbeResult> = slots
            .into_iter()
            .map(|slot| slot.into_inner().unwrap().expect("every probe ran"))
            .collect();
        trace(&format!("{}: probes done", self.manifest.site));
        let logs: Vec<(ServiceSpec, String)> = self
            .plan
            .services
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    fs::read_to_string(self.service_log(s)).unwrap_or_default(),
                )
            })
            .collect();
        for r in results {
            let p = &r.probe;
            let seen = r.reply.as_deref().and_then(parse_peer);
            let probe = format!(
                "{}: {} {}:{} -> {}:{}",
                p.what,
                p.proto.name(),
                p.src,
                r.sport,
                p.dst,
                p.port
            );
            let got = r
                .reply
                .as_deref()
                .map_or("no answer".into(), |l| format!("{l:?}"));
            match p.expect {
                Expect::SeenAs(addr) => {
                    findings.check(
                        seen.map(|(a, _)| a) == Some(addr),
                        format!("{probe} should be answered and seen as {addr}; got {got}"),
                    );
                }
                Expect::Nothing => {
                    let trace = format!("{} {}", p.src, r.sport);
                    let reached: Vec<String> = logs
                        .iter()
                        .filter(|(_, log)| log.lines().any(|l| l == trace))
                        .map(|(s, _)| format!("{} {}:{}", s.proto.name(), s.addr, s.port))
                        .collect();
                    findings.check(
                        r.reply.is_none() && reached.is_empty(),
                        format!(
                            "{probe} should get nothing; got {got}{}",
                            if reached.is_empty() {
                                String::new()
                            } else {
                                format!(", and it reached {}", reached.join(", "))
                            }
                        ),
                    );
                }
            }
        }
    }

    /// Opens a TCP connection from `src` in namespace `from` and reads the
    /// service's greeting; the connection stays open until dropped.
    pub fn open_session(&self, from: Role, src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Session {
        let sport = self.source_port();
        let mut cmd = in_ns(self.ns.of(from), "socat");
        cmd.args(["-T", "60", "-"])
            .arg(format!(
                "TCP4:{dst}:{port},bind={src}:{sport},connect-timeout=2"
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let what = format!("tcp {src}:{sport} -> {dst}:{port}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start socat: {e}"));
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut session = Session {
            what,
            child,
            stdin,
            lines,
            greeting: None,
        };
        session.greeting = session.read_line(ANSWER_WAIT);
        session
    }
}

/// The setup that `run_configure_pat` runs inside `unshare -m`; see there.
/// Arguments: stage directory, syslog socket, command to exec.
const INSTALLED_RUN: &str = r#"
set -u
fail() { echo "natbake-lab setup: $*" >&2; exit 97; }
stage=$1 sink=$2
shift 2
mount -t tmpfs natbake-lab "$stage/ovl" || fail "tmpfs on $stage/ovl"
for dir in /etc /usr/local /var /run /dev; do
    name=$(echo "$dir" | tr / _)
    mkdir -p "$stage/ovl/$name.upper" "$stage/ovl/$name.work" || fail "mkdir for $dir"
    mount -t overlay natbake-lab \
        -o "lowerdir=$dir,upperdir=$stage/ovl/$name.upper,workdir=$stage/ovl/$name.work" "$dir" \
        || fail "overlay on $dir"
done
rm -f /dev/log && touch /dev/log && mount --bind "$sink" /dev/log || fail "/dev/log"
mount --bind /proc/sys /proc/sys \
    && mount --bind /proc/sys/net /proc/sys/net \
    && mount -o remount,bind,ro /proc/sys || fail "read-only /proc/sys"
while read -r mode src dst; do
    mkdir -p "${dst%/*}" && install -m "$mode" "$src" "$dst" || fail "install $dst"
done < "$stage/install.list"
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
"#;

/// Runs $2 copies of the script $1 at once and prints `<index> <exit code>`
/// for each; copy i's stderr goes to $3/i.err.
const CONCURRENT_RUNS: &str = r#"
script=$1 copies=$2 out=$3
i=0
while [ "$i" -lt "$copies" ]; do
  "$script" >/dev/null 2>"$out/$i.err" &
  eval "pid_$i=\$!"
  i=$((i + 1))
done
i=0
while [ "$i" -lt "$copies" ]; do
  eval "wait \$pid_$i"
  echo "$i $?"
  i=$((i + 1))
done
"#;

/// Exit code of `INSTALLED_RUN` when the lab itself failed.
const SETUP_FAILED: i32 = 97;

/// Runs `cmd` with `input` on stdin and returns the first line it prints
/// within `wait`, killing it then (or when it exits without a line).
fn first_line(cmd: &mut Command, input: &[u8], wait: Duration) -> Option<String> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", support::describe(cmd)));
    // Stdin stays open until the probe is over: for UDP, closing it would
    // start socat's own shutdown clock.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let _ = stdin.write_all(input);
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let got = BufReader::new(stdout)
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false);
        let _ = tx.send(got.then(|| line.trim_end().to_owned()));
    });
    // Either a line, or end of output (socat gave up: refused, reset), or
    // the deadline.
    let line = rx.recv_timeout(wait).ok().flatten();
    support::kill_group(child.id());
    let _ = child.wait();
    drop(stdin);
    line
}

/// Parses a service's answer `"<address> <port>"`.
fn parse_peer(line: &str) -> Option<(Ipv4Addr, u16)> {
    let (addr, port) = line.split_once(' ')?;
    Some((addr.parse().ok()?, port.parse().ok()?))
}

/// What a probe should find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// An answer from a service that saw this source address.
    SeenAs(Ipv4Addr),
    /// No answer, and no service saw it.
    Nothing,
}

/// One connection attempt (TCP) or datagram (UDP).
#[derive(Clone, Debug)]
pub struct Probe {
    /// What the probe shows, for the failure message.
    pub what: String,
    pub from: Role,
    pub proto: Proto,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub port: u16,
    pub expect: Expect,
}

#[derive(Debug)]
pub struct ProbeResult {
    pub probe: Probe,
    pub sport: u16,
    pub reply: Option<String>,
}

/// An open TCP connection through the lab.
pub struct Session {
    pub what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// The service's first line: `"<address> <port>"` as it saw us.
    pub greeting: Option<String>,
}

impl Session {
    /// The source address the service saw, if it greeted us.
    pub fn seen_as(&self) -> Option<Ipv4Addr> {
        self.greeting
            .as_deref()
            .and_then(parse_peer)
            .map(|(a, _)| a)
    }

    pub fn read_line(&mut self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    /// Sends a line over the open connection and returns true if the
    /// service echoed it back.
    pub fn echo(&mut self, text: &str) -> bool {
        let Some(stdin) = self.stdin.as_mut() else {
            return false;
        };
        if writeln!(stdin, "{text}")
            .and_then(|_| stdin.flush())
            .is_err()
        {
            return false;
        }
        self.read_line(ANSWER_WAIT).as_deref() == Some(text)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stdin.take();
        support::kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// What gets installed
// ---------------------------------------------------------------------------

/// One file to install: where, with which mode, from which local file.
#[derive(Clone, Debug)]
pub struct InstallFile {
    pub install_path: String,
    pub mode: String,
    pub source: PathBuf,
}

/// The files a NAT instance gets, from the rendered folder or from the user
/// data.
#[derive(Clone, Debug)]
pub struct InstallSet {
    pub origin: String,
    pub files: Vec<InstallFile>,
}

/// Where configure-pat.sh is installed unless the artifacts say otherwise.
pub const SCRIPT_INSTALL_PATH: &str = "/usr/local/sbin/configure-pat.sh";

impl InstallSet {
    /// Every artifact the manifest gives an install path.
    pub fn from_site_dir(site_dir: &Path, m: &Manifest) -> InstallSet {
        let files: Vec<InstallFile> = m
            .artifacts
            .iter()
            .filter_map(|a| {
                Some(InstallFile {
                    install_path: a.install_path.clone()?,
                    mode: a.mode.clone(),
                    source: site_dir.join(&a.path),
                })
            })
            .filter(|f| f.install_path.starts_with('/'))
            .collect();
        let set = InstallSet {
            origin: format!("{} (rendered files)", site_dir.display()),
            files,
        };
        set.assert_complete();
        set
    }

    /// The files that the user data's `write_files` would write, taken out
    /// of it with PyYAML (a second, independent YAML reader) into `out`.
    pub fn from_user_data(site_dir: &Path, m: &Manifest, out: &Path) -> InstallSet {
        let (file, gzip) = m
            .user_data
            .clone()
            .expect("the manifest lists no user data");
        let user_data = site_dir.join(&file);
        fs::create_dir_all(out).expect("create extraction dir");
        let text = support::run_stdout(
            Command::new(python())
                .args(["-c", EXTRACT_WRITE_FILES])
                .arg(&user_data)
                .arg(out)
                .arg(if gzip { "gzip" } else { "plain" }),
        );
        let entries: Vec<Value> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("bad extraction output {text:?}: {e}"));
        let files = entries
            .iter()
            .map(|e| InstallFile {
                install_path: e["path"].as_str().expect("path").to_owned(),
                mode: e["permissions"].as_str().expect("permissions").to_owned(),
                source: PathBuf::from(e["file"].as_str().expect("file")),
            })
            .collect();
        let set = InstallSet {
            origin: format!("{} (write_files)", user_data.display()),
            files,
        };
        set.assert_complete();
        set
    }

    /// The same set with the file installed at `install_path` taken from
    /// `source` instead, as a damaged or edited file on the instance.
    pub fn with_source(&self, install_path: &str, source: &Path) -> InstallSet {
        let mut set = self.clone();
        let file = set
            .files
            .iter_mut()
            .find(|f| f.install_path == install_path)
            .unwrap_or_else(|| panic!("{}: nothing installs {install_path}", self.origin));
        file.source = source.to_owned();
        set.origin = format!(
            "{} with {install_path} from {}",
            self.origin,
            source.display()
        );
        set
    }

    pub fn get(&self, install_path: &str) -> Option<&InstallFile> {
        self.files.iter().find(|f| f.install_path == install_path)
    }

    /// The installed configure-pat.sh.
    pub fn script_path(&self) -> &str {
        self.files
            .iter()
            .map(|f| f.install_path.as_str())
            .find(|p| p.ends_with("/configure-pat.sh"))
            .unwrap_or(SCRIPT_INSTALL_PATH)
    }

    fn assert_complete(&self) {
        for needed in ["/etc/natbake/rules.v4", "/etc/sysctl.d/90-natbake.conf"] {
            assert!(
                self.get(needed).is_some(),
                "{}: nothing installs {needed}",
                self.origin
            );
        }
        assert!(
            self.files
                .iter()
                .any(|f| f.install_path.ends_with("/configure-pat.sh")),
            "{}: nothing installs configure-pat.sh",
            self.origin
        );
    }
}

/// Python: writes the content of each `write_files` entry of a
/// `#cloud-config` (argv[1], gzip if argv[3] says so) to argv[2]/<index>, and
/// prints `[{"path", "permissions", "file"}]` as JSON.
const EXTRACT_WRITE_FILES: &str = r##"
import base64, gzip, json, os, sys, yaml
src, out, packing = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(src, "rb").read()
if packing == "gzip":
    data = gzip.decompress(data)
text = data.decode("utf-8")
if not text.startswith("#cloud-config\n"):
    sys.exit("%s does not start with #cloud-config" % src)
doc = yaml.safe_load(text)
result = []
for i, entry in enumerate(doc.get("write_files") or []):
    content = entry.get("content", "")
    encoding = str(entry.get("encoding", "")).lower()
    if encoding in ("b64", "base64"):
        raw = base64.b64decode(content)
    elif encoding in ("gz+b64", "gzip+b64", "gz+base64", "gzip+base64"):
        raw = gzip.decompress(base64.b64decode(content))
    elif encoding in ("", "text/plain"):
        raw = content.encode("utf-8")
    else:
        sys.exit("write_files[%d]: unsupported encoding %r" % (i, encoding))
    perms = entry.get("permissions", "0644")
    if not isinstance(perms, str):
        sys.exit("write_files[%d]: permissions must be a quoted string" % i)
    if entry.get("append"):
        sys.exit("write_files[%d]: append is not expected" % i)
    name = os.path.join(out, str(i))
    with open(name, "wb") as f:
        f.write(raw)
    result.append({"path": entry["path"], "permissions": perms, "file": name})
json.dump(result, sys.stdout)
"##;

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// Collects failed checks so a test reports all of them at once.
pub struct Findings {
    label: String,
    failures: Vec<String>,
    checked: usize,
}

impl Findings {
    pub fn new(label: impl Into<String>) -> Findings {
        Findings {
            label: label.into(),
            failures: Vec::new(),
            checked: 0,
        }
    }

    /// Records `message` as a failure unless `ok`.
    pub fn check(&mut self, ok: bool, message: impl Into<String>) -> bool {
        self.checked += 1;
        if !ok {
            self.failures.push(message.into());
        }
        ok
    }

    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }

    /// Panics listing every failure, with the lab's state, if any failed.
    pub fn assert_clean(&self, lab: &Lab) {
        if self.failures.is_empty() {
            eprintln!("{}: {} checks passed", self.label, self.checked);
            return;
        }
        lab.keep_dir_if_asked();
        panic!(
            "{}: {} of {} checks failed:\n  - {}\n\n{}",
            self.label,
            self.failures.len(),
            self.checked,
            self.failures.join("\n  - "),
            lab.diagnostics()
        );
    }
}

/// Forwarding on, and every `send_redirects` off (with one interface, a
/// redirect would tell private hosts to bypass the NAT).
pub fn check_sysctls(lab: &Lab, f: &mut Findings) {
    let forward = lab.nat_sysctl("net.ipv4.ip_forward");
    f.check(
        forward == "1",
        format!("net.ipv4.ip_forward is {forward}, not 1"),
    );
    for (path, value) in lab.nat_send_redirects() {
        f.check(value == "0", format!("{path} is {value}, not 0"));
    }
}

/// The installed sysctl file took effect in the NAT namespace: every
/// `net.ipv4.*` and `net.ipv6.*` key in it has its value there. Other keys
/// are not per-namespace (or read-only in a namespace) and are left alone.
pub fn check_sysctl_file(lab: &Lab, files: &InstallSet, f: &mut Findings) {
    let Some(file) = files.get("/etc/sysctl.d/90-natbake.conf") else {
        f.check(false, format!("{}: no sysctl file", files.origin));
        return;
    };
    let text = fs::read_to_string(&file.source).unwrap_or_default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        // A leading '-' tells sysctl to ignore errors for that key.
        let Some((key, value)) = line.trim_start_matches('-').split_once('=') else {
            f.check(false, format!("sysctl file line without '=': {line:?}"));
            continue;
        };
        let key = key.trim().replace('/', ".");
        if !(key.starts_with("net.ipv4.") || key.starts_with("net.ipv6.")) || key.contains('*') {
            continue;
        }
        let want = value.split_whitespace().collect::<Vec<_>>().join(" ");
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let out = support::output_of(in_ns(&lab.ns.nat, "cat").arg(&path));
        let have = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        f.check(
            out.status.success() && have == want,
            format!("sysctl {key} should be {want:?} as the sysctl file says, is {have:?}"),
        );
    }
}

/// FORWARD's policy is DROP, and traffic that no rule allows is dropped:
/// the peer (a non-VPC source on the VPC segment, whose replies would come
/// back to it) sends straight to each forward's target through the NAT.
/// [`lab_premises`] shows that the same probe gets through a NAT that
/// forwards without rules.
pub fn check_forward_policy(lab: &Lab, f: &mut Findings) {
    check_forward_policy_rule(lab, f);
    lab.run_probes(&peer_probes(lab), f);
}

fn check_forward_policy_rule(lab: &Lab, f: &mut Findings) {
    let rules = support::run_stdout(in_ns(&lab.ns.nat, "iptables").args(["-S", "FORWARD"]));
    f.check(
        rules.lines().next() == Some("-P FORWARD DROP"),
        format!("FORWARD policy is not DROP:\n{rules}"),
    );
}

fn peer_probes(lab: &Lab) -> Vec<Probe> {
    lab.tested_forwards()
        .map(|(_, fw)| Probe {
            what: format!(
                "forward {}: unforwarded traffic straight to its target",
                fw.name
            ),
            from: Role::Peer,
            proto: fw.proto,
            src: lab.plan.peer,
            dst: fw.target_address,
            port: fw.target_port(fw.listen_ports.0),
            expect: Expect::Nothing,
        })
        .collect()
}

/// The probes that show the forwards: allowed sources reach each target
/// through the elastic IP and are seen with their own address; others, and
/// ports that are not forwarded, get nothing.
pub fn forward_probes(lab: &Lab) -> Vec<Probe> {
    let p = &lab.plan;
    let mut probes = Vec::new();
    for (i, fw) in lab.tested_forwards() {
        let clients = &p.allowed_clients[i];
        let samples = fw.sample_listen_ports();
        let probe = |what: String, src: Ipv4Addr, port: u16, expect: Expect| Probe {
            what: format!("forward {}: {what}", fw.name),
            from: Role::Internet,
            proto: fw.proto,
            src,
            dst: p.elastic_ip,
            port,
            expect,
        };
        for (&client, cidr) in clients.iter().zip(&fw.from) {
            probes.push(probe(
                format!("allowed client in {cidr}"),
                client,
                samples[0],
                Expect::SeenAs(client),
            ));
        }
        for &port in &samples[1..] {
            probes.push(probe(
                format!("port {port} of the range"),
                clients[0],
                port,
                Expect::SeenAs(clients[0]),
            ));
        }
        let outsider = p.disallowed_client;
        probes.push(if fw.public {
            probe(
                "public, so any client".into(),
                outsider,
                samples[0],
                Expect::SeenAs(outsider),
            )
        } else {
            probe(
                "client outside its sources".into(),
                outsider,
                samples[0],
                Expect::Nothing,
            )
        });
        for &port in &p.unforwarded_ports[i] {
            probes.push(probe(
                format!("allowed client on unforwarded port {port}"),
                clients[0],
                port,
                Expect::Nothing,
            ));
        }
    }
    probes
}

/// Private hosts reach the Internet seen as the elastic IP (or not at all,
/// when the spec turns egress off).
pub fn egress_probes(lab: &Lab) -> Vec<Probe> {
    let p = &lab.plan;
    [Proto::Tcp, Proto::Udp]
        .into_iter()
        .map(|proto| Probe {
            what: if lab.manifest.egress {
                "private host to the Internet, masqueraded".into()
            } else {
                "private host to the Internet with egress off".into()
            },
            from: Role::Private,
            proto,
            src: p.private_self,
            dst: p.internet_server,
            port: INTERNET_SERVER_PORT,
            expect: if lab.manifest.egress {
                Expect::SeenAs(p.elastic_ip)
            } else {
                Expect::Nothing
            },
        })
        .collect()
}

/// Everything a configured NAT instance must show.
pub fn check_all_up(lab: &Lab, f: &mut Findings) {
    check_sysctls(lab, f);
    let mut probes = forward_probes(lab);
    probes.extend(egress_probes(lab));
    probes.extend(peer_probes(lab));
    lab.run_probes(&probes, f);
    check_forward_policy_rule(lab, f);
}

/// A NAT instance whose script refused to configure it: forwarding off, and
/// no forward and no egress works.
pub fn check_forwarding_off(lab: &Lab, f: &mut Findings) {
    let forward = lab.nat_sysctl("net.ipv4.ip_forward");
    f.check(
        forward == "0",
        format!("net.ipv4.ip_forward is {forward}, should have stayed 0"),
    );
    let mut probes: Vec<Probe> = forward_probes(lab)
        .into_iter()
        .map(|mut p| {
            p.expect = Expect::Nothing;
            p.what.push_str(" (forwarding must be off)");
            p
        })
        .collect();
    probes.extend(egress_probes(lab).into_iter().map(|mut p| {
        p.expect = Expect::Nothing;
        p.what.push_str(" (forwarding must be off)");
        p
    }));
    lab.run_probes(&probes, f);
}

/// The script used the metadata service the IMDSv2 way: a token first, every
/// read with it (no 401), and it read the VPC's CIDR blocks.
pub fn check_imds_v2_used(lab: &Lab, f: &mut Findings) {
    let requests = lab.imds_requests();
    let listing = requests.join("\n");
    f.check(
        requests
            .first()
            .is_some_and(|r| r.starts_with("PUT /latest/api/token ")),
        format!("the script did not ask for a token first:\n{listing}"),
    );
    f.check(
        !requests.iter().any(|r| r.ends_with(" 401")),
        format!("the script read metadata without a token:\n{listing}"),
    );
    f.check(
        requests.iter().any(|r| {
            r.starts_with("GET ") && r.contains("/vpc-ipv4-cidr-blocks ") && r.ends_with(" 200")
        }),
        format!("the script never read the VPC's CIDR blocks:\n{listing}"),
    );
}

/// The premises the other checks rest on, shown on an unconfigured NAT:
/// the gateway drops private traffic that is not masqueraded; the NAT's own
/// traffic leaves as the elastic IP; the peer's probe does reach a target
/// through a NAT that forwards everything (so its failing later means the
/// FORWARD chain dropped it); the metadata stub speaks IMDSv2 only.
pub fn lab_premises(lab: &Lab, f: &mut Findings) {
    let p = &lab.plan;
    let fw = lab.manifest.forwards.first().expect("a forward");
    // Forwarding on, no rules at all: a plain router.
    lab.sysctls(&lab.ns.nat, &["net.ipv4.ip_forward=1"]);
    let probes = vec![
        Probe {
            what: "NAT instance itself to the Internet".into(),
            from: Role::Nat,
            proto: Proto::Tcp,
            src: p.nat_private,
            dst: p.internet_server,
            port: INTERNET_SERVER_PORT,
            expect: Expect::SeenAs(p.elastic_ip),
        },
        Probe {
            what: "private host through a NAT that does not masquerade (gateway must drop)".into(),
            from: Role::Private,
            proto: Proto::Tcp,
            src: p.private_self,
            dst: p.internet_server,
            port: INTERNET_SERVER_PORT,
            expect: Expect::Nothing,
        },
        Probe {
            what: "peer straight to a target through a NAT without rules".into(),
            from: Role::Peer,
            proto: fw.proto,
            src: p.peer,
            dst: fw.target_address,
            port: fw.target_port(fw.listen_ports.0),
            expect: Expect::SeenAs(p.peer),
        },
        Probe {
            what: "client to the elastic IP without DNAT on the NAT (refused there)".into(),
            from: Role::Internet,
            proto: fw.proto,
            src: p.allowed_clients[0][0],
            dst: p.elastic_ip,
            port: fw.listen_ports.0,
            expect: Expect::Nothing,
        },
    ];
    lab.run_probes(&probes, f);
    lab.sysctls(&lab.ns.nat, &["net.ipv4.ip_forward=0"]);

    if matches!(lab.options.imds, Imds::Stub(_)) {
        let curl = |args: &[&str]| -> String {
            support::run_stdout(
                in_ns(&lab.ns.nat, "curl")
                    .args(["-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}"])
                    .args(args),
            )
        };
        let base = format!("http://{IMDS_ADDRESS}");
        let tokenless = curl(&[&format!("{base}/latest/meta-data/mac")]);
        f.check(
            tokenless == "401",
            format!("tokenless metadata GET answered {tokenless}, not 401"),
        );
        let token = support::run_stdout(in_ns(&lab.ns.nat, "curl").args([
            "-sf",
            "-m",
            "3",
            "-X",
            "PUT",
            "-H",
            "X-aws-ec2-metadata-token-ttl-seconds: 60",
            &format!("{base}/latest/api/token"),
        ]));
        let with_token = curl(&[
            "-H",
            &format!("X-aws-ec2-metadata-token: {token}"),
            &format!(
                "{base}/latest/meta-data/network/interfaces/macs/{}/vpc-ipv4-cidr-blocks",
                lab.nat_mac
            ),
        ]);
        f.check(
            with_token == "200",
            format!("metadata GET with a token answered {with_token}"),
        );
    }
}
