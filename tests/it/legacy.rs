//! The legacy AWS NAT AMI (`os: amzn-ami-vpc-nat`, Amazon Linux AMI
//! 2018.03): provision.sh run against a root laid out like that image, then
//! the image's boot replayed in a network namespace.
//!
//! The AMI configures NAT itself: `/etc/sysctl.d/10-nat-settings.conf`
//! switches forwarding on early in boot, and its upstart job
//! `/etc/init/nat.conf` runs `/usr/sbin/configure-pat.sh` when the network
//! has started, which adds a MASQUERADE rule for everything leaving eth0.
//! Left alone, that forwards before natbake's ruleset is in and masquerades
//! forwarded connections, so private hosts no longer see the client's
//! address. `tests/fixtures/amzn-ami-vpc-nat-root` holds those files (the
//! script as a small stand-in that does what the original does); the rest
//! of the root is the cached Debian image, which supplies the programs.
//! `legacy_boot.sh` replays the boot order and reports the kernel state
//! after each step.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::boot::{in_chroot, provision};
use crate::fixtures::{fixture_spec, render};
use crate::image::{self, Flavor, RootFs};
use crate::support;

/// The legacy fixture: one inbound forward, no outbound NAT, so any
/// MASQUERADE rule in the booted image can only be the AMI's; the health
/// check scheduled by cron.
const SPEC: &str = "no-egress-legacy";

/// Files of the AMI that natbake must take over, and the yum configuration
/// that must keep an update of their package from bringing them back.
const AMI_FILES: &[&str] = &[
    "usr/sbin/configure-pat.sh",
    "etc/sysctl.d/10-nat-settings.conf",
    "etc/init/nat.conf",
    "etc/rc.d/rc.local",
    "etc/yum.conf",
];

/// Copies the AMI's files over a fresh Debian root.
fn ami_root() -> RootFs {
    let root = image::fresh_root(Flavor::Plain);
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/amzn-ami-vpc-nat-root");
    support::run(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", tree.display()))
            .arg(root.path()),
    );
    root
}

fn read(root: &RootFs, file: &str) -> String {
    fs::read_to_string(root.join(file))
        .unwrap_or_else(|err| panic!("cannot read {file} in the image: {err}"))
}

/// One `state after STEP: ...` line of legacy_boot.sh.
#[derive(Debug)]
struct State {
    step: String,
    ip_forward: u32,
    natbake_chains: u32,
    masquerade_eth0: u32,
}

fn states(report: &str) -> Vec<State> {
    report
        .lines()
        .filter_map(|line| {
            let (step, fields) = line.strip_prefix("state after ")?.split_once(": ")?;
            let field = |name: &str| -> u32 {
                fields
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no {name} in `{line}`"))
            };
            Some(State {
                step: step.to_string(),
                ip_forward: field("ip_forward"),
                natbake_chains: field("natbake_chains"),
                masquerade_eth0: field("masquerade_eth0"),
            })
        })
        .collect()
}

/// The AMI's boot, after natbake's provision.sh, runs natbake's script and
/// nothing of the AMI's NAT setup: forwarding is never on without natbake's
/// ruleset, no MASQUERADE rule of the AMI's exists, natbake's script ran
/// exactly once, and a second provision.sh changes nothing.
#[test]
fn legacy_ami_boots_with_natbake_alone_in_charge_of_nat() {
    if !support::require_root("legacy AMI: provision.sh takes over the AMI's NAT setup") {
        return;
    }
    let rendered = render(&fixture_spec(SPEC));
    let site = &rendered.site_dir;
    let root = ami_root();

    let baked = provision(&root, site);
    assert!(baked.success(), "provision.sh failed\n{}", baked.explain());
    // The package list, through rpm (the fixture's stand-in lists dpkg's).
    let packages = read(&root, "tmp/natbake/packages.tsv");
    assert!(
        packages.lines().any(|l| l.starts_with("iptables\t")),
        "the package list names no iptables:\n{packages}"
    );
    let after_first: Vec<String> = AMI_FILES.iter().map(|f| read(&root, f)).collect();
    let again = provision(&root, site);
    assert!(
        again.success(),
        "provision.sh failed the second time\n{}",
        again.explain()
    );
    for (file, first) in AMI_FILES.iter().zip(&after_first) {
        assert_eq!(
            &read(&root, file),
            first,
            "a second provision.sh changed {file}"
        );
    }

    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/legacy_boot.sh");
    fs::copy(&driver, root.join("tmp/legacy-boot.sh")).expect("copy legacy_boot.sh");
    let boot = in_chroot(
        root.path(),
        "exec /bin/bash /tmp/legacy-boot.sh",
        Duration::from_secs(60),
    );
    assert!(boot.success(), "the boot replay failed\n{}", boot.explain());
    let report = boot.stdout.clone();
    eprintln!("legacy boot:\n{report}");
    let states = states(&report);
    assert!(states.len() >= 3, "too few steps in the boot\n{report}");

    let mut problems = Vec::new();
    for s in &states {
        if s.ip_forward == 1 && s.natbake_chains == 0 {
            problems.push(format!(
                "after {}: IP forwarding is on without natbake's ruleset",
                s.step
            ));
        }
        if s.masquerade_eth0 > 0 {
            problems.push(format!(
                "after {}: the AMI's MASQUERADE rule is loaded",
                s.step
            ));
        }
    }
    let last = states.last().expect("a last state");
    if last.ip_forward != 1 || last.natbake_chains == 0 {
        problems.push(format!("at the end of boot natbake is not up: {last:?}"));
    }
    // What an update of the AMI's package could undo must be covered.
    let yum = read(&root, "etc/yum.conf");
    if !yum
        .lines()
        .any(|l| l.starts_with("exclude=") && l.split(['=', ' ', ',']).any(|w| w == "aws-vpc-nat"))
    {
        problems.push(format!(
            "yum.conf does not keep aws-vpc-nat from being updated:\n{yum}"
        ));
    }
    let ami_sysctl = read(&root, "etc/sysctl.d/10-nat-settings.conf");
    if !ami_sysctl.contains("net.ipv4.conf.eth0.send_redirects = 0") {
        problems.push(format!("the AMI's redirect setting is gone:\n{ami_sysctl}"));
    }
    let natbake_runs = report
        .matches("Configuration of NAT and port forwarding complete.")
        .count();
    if natbake_runs != 1 {
        problems.push(format!(
            "natbake's script ran {natbake_runs} times, not once"
        ));
    }
    // Without systemd, cron runs the health check; as cron starts it
    // after this boot, it finds nothing to repair.
    if !report.contains("health check from cron: exit 0") || !report.contains("health: ok,") {
        problems.push("the health check from the cron file did not pass".to_string());
    }
    if report.contains("| vpc: ") {
        problems.push("the AMI's configure-pat.sh ran".to_string());
    }
    assert!(
        problems.is_empty(),
        "legacy AMI boot: {}\n{report}\n{}",
        problems.join("; "),
        boot.stderr
    );
}
