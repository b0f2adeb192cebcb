//! The NAT instance's kernel state: reading its rules and sysctls,
//! adding rules the way other software does, and resetting it to that of a
//! freshly booted instance.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::{Lab, in_ns};
use crate::support;

impl Lab {
    /// Gives the NAT namespace the firewall and forwarding state of a
    /// freshly booted instance, for tests that run the script again or
    /// "reboot" a guest in the same namespace (which outlives the guest, as
    /// a real instance's kernel does not). In this order:
    /// - forwarding off first, so nothing is forwarded while rules go;
    /// - every iptables table empty, with ACCEPT policies, natbake's and
    ///   anyone else's chains gone; then every nftables table removed
    ///   (nftables.service's own included);
    /// - no connection tracking entries, so no connection carries over;
    /// - redirects on, the kernel default, as the lab starts;
    /// - every `net.` key of `sysctl_conf` (the site's sysctl file) back to
    ///   its value in a brand-new namespace.
    ///
    /// Panics if forwarding is still on or a natbake chain is left.
    pub fn reset_nat(&self, sysctl_conf: &Path) {
        let nat = &self.ns.nat;
        self.sysctls(nat, &["net.ipv4.ip_forward=0"]);
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
        support::run(in_ns(nat, "iptables-restore").arg(self.write_file("reset.v4", &tables)));
        support::run(in_ns(nat, "nft").args(["flush", "ruleset"]));
        support::run(in_ns(nat, "conntrack").arg("-F"));

        let mut settings = vec![
            "net.ipv4.conf.all.send_redirects=1".to_owned(),
            "net.ipv4.conf.default.send_redirects=1".to_owned(),
        ];
        for iface in ["lo", "eth0"] {
            settings.push(format!("net.ipv4.conf.{iface}.send_redirects=1"));
        }
        let conf = fs::read_to_string(sysctl_conf)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", sysctl_conf.display()));
        for line in conf.lines() {
            let line = line.trim();
            let Some((key, _)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if line.starts_with('#') || line.starts_with(';') || !key.starts_with("net.") {
                continue;
            }
            // A key a new namespace lacks (an interface's) has no fresh
            // value; one the guest could not change needs no reset.
            let fresh =
                support::output_of(Command::new("unshare").args(["--net", "sysctl", "-n", key]));
            if !fresh.status.success() {
                continue;
            }
            let fresh = String::from_utf8_lossy(&fresh.stdout).trim().to_string();
            let now = support::output_of(in_ns(nat, "sysctl").args(["-n", key]));
            if String::from_utf8_lossy(&now.stdout).trim() != fresh {
                settings.push(format!("{key}={fresh}"));
            }
        }
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        self.sysctls(nat, &settings);

        let forward = self.nat_sysctl("net.ipv4.ip_forward");
        let rules = self.iptables_save();
        assert!(
            forward == "0" && !rules.contains("NATBAKE"),
            "the NAT namespace is not fresh after the reset: ip_forward {forward}\n{rules}"
        );
    }

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
}
