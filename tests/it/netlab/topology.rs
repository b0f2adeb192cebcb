//! The lab's shape: namespaces for the VPC's network, the NAT instance,
//! the Internet gateway, a private host, the Internet and a peer; the
//! links and routes between them; the gateway's 1:1 NAT.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use super::{IMDS_ADDRESS, Imds, Lab, Role, in_ns};
use crate::support;

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

impl Lab {
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

    pub(super) fn build_topology(&mut self) {
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
}
