//! Checks of a NAT instance in the lab, collected in [`Findings`] so that a
//! test reports every failure at once, with the lab's state.

use std::fs;
use std::net::Ipv4Addr;

use natbake::render::{artifact, install_path};
use natbake::site::Proto;

use super::install::InstallSet;
use super::plan::Role;
use super::traffic::{Expect, Probe};
use super::{IMDS_ADDRESS, INTERNET_SERVER_PORT, Imds, Lab, in_ns};
use crate::support;

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

    /// Whether no check has failed so far.
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
    let Some(file) = files.get(install_path(artifact::SYSCTL)) else {
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

/// Traffic that no forward allows: the peer straight to each target.
pub fn peer_probes(lab: &Lab) -> Vec<Probe> {
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
