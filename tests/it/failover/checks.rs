//! The floating interface where EC2 is less than prompt: a device that udev
//! renames under the script, metadata that lags the attachment, answers cut
//! short, a role not usable yet; and the health check against an API that
//! throttles or does not answer, and under systemd's stop. In the failover
//! lab (see `lab`), as installed, with the health check's state kept
//! between runs as on an instance.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use natbake::render::{artifact, install_path};

use super::lab::{FailoverLab, Host, Options};
use super::{FIXTURE_HEALTH, assert_clean, assert_ok};
use crate::fixtures;
use crate::netlab::{Findings, InstallFile};
use crate::support;

/// The lab with the health fixture rendered; the rendering lives as long
/// as the lab needs its files.
fn start(options: Options) -> (fixtures::RenderedSite, FailoverLab) {
    let site = fixtures::render(Path::new(FIXTURE_HEALTH));
    let fl = FailoverLab::start_with(&site.site_dir, options);
    (site, fl)
}

/// How many calls of `action` the API got since the `since`-th call.
fn calls_of(fl: &FailoverLab, action: &str, since: usize) -> usize {
    fl.api_calls()[since..]
        .iter()
        .filter(|(a, _)| a == action)
        .count()
}

/// Makes the next health check ask the EC2 API about the floating
/// interface, as if the few minutes between two asks had passed.
fn make_api_due(fl: &FailoverLab) {
    fs::write(fl.lab.kept_state().join("floating-api"), "0\n").expect("write the due time");
}

/// Breaks natbake's FORWARD chain the way drift does, forwarding left on.
fn drift(fl: &FailoverLab) {
    fl.lab.on_nat("iptables", &["-F", "NATBAKE-FORWARD"]);
}

/// The state natbake-health keeps for natbake-status.
fn health_state(fl: &FailoverLab) -> String {
    fs::read_to_string(fl.lab.kept_state().join("health")).unwrap_or_default()
}

/// The device arrives as `eth1` and udev renames it `ens6` while the
/// script waits for the interface's metadata, which EC2 publishes seconds
/// after the device: the takeover looks the device up by its MAC when it
/// uses it, waits for the metadata, serves, and the health check finds it
/// healthy. (The rename comes 1 s after the device, not 50 ms: the script
/// first meets the device about half a second after its attach call, so
/// only a later rename lands between finding the device and using it.)
#[test]
fn takeover_survives_a_rename_and_lagging_metadata() {
    if !support::require_root("failover rename and metadata lag (network namespaces)") {
        return;
    }
    let (_site, fl) = start(Options {
        metadata_lag: 3.0,
        rename_after: Some(1.0),
    });
    let run = fl.lab.boot_step(&fl.files);
    assert_ok(&fl, &run, "boot with a renamed device and lagging metadata");
    let fabric = fs::read_to_string(fl.lab.dir().join("fabric.log")).unwrap_or_default();
    assert!(
        fabric.contains("as eth1") && fabric.contains("renamed eth1 -> ens6"),
        "the device was not renamed under the script\n{}",
        fl.diagnostics(&run)
    );
    let imds = fs::read_to_string(fl.lab.dir().join("imds-A.log")).unwrap_or_default();
    let subnet: Vec<&str> = imds
        .lines()
        .filter(|l| l.contains("subnet-ipv4-cidr-block"))
        .collect();
    assert!(
        subnet.len() > 1 && subnet[0].ends_with(" 404") && subnet.last().unwrap().ends_with(" 200"),
        "the metadata of the new attachment should have lagged: {subnet:?}\n{}",
        fl.diagnostics(&run)
    );
    assert!(
        run.stderr.contains("is ens6 (10."),
        "{}",
        fl.diagnostics(&run)
    );
    let mut f = Findings::new("after the renamed takeover");
    fl.check_serving(Host::A, &mut f);
    assert_clean(&fl, f, &run);
    let run = fl.lab.health_check(&fl.files);
    assert_ok(&fl, &run, "health check after the renamed takeover");
    assert!(!run.stderr.contains("Drift"), "{}", fl.diagnostics(&run));
    assert_eq!(fl.health(Host::A), "Healthy", "{}", fl.diagnostics(&run));
}

/// Health checks look at the floating interface from the instance itself
/// and ask the EC2 API only now and then: no call over ten checks after
/// the boot, exactly one when the ask is due. An API that does not answer
/// then is a warning, the check stays healthy, and the next check does not
/// ask again at once.
#[test]
fn health_checks_ask_the_api_now_and_then() {
    if !support::require_root("failover health checks and the API (network namespaces)") {
        return;
    }
    let (_site, fl) = start(Options::default());
    let run = fl.lab.boot_step(&fl.files);
    assert_ok(&fl, &run, "boot of A");
    let describe = "DescribeNetworkInterfaces";

    let since = fl.api_calls().len();
    let run = fl.lab.health_checks(&fl.files, 10);
    assert_ok(&fl, &run, "ten checks");
    assert_eq!(
        calls_of(&fl, describe, since),
        0,
        "ten checks right after the boot should not call the API\n{}",
        fl.diagnostics(&run)
    );

    make_api_due(&fl);
    let since = fl.api_calls().len();
    let run = fl.lab.health_checks(&fl.files, 5);
    assert_ok(&fl, &run, "five checks, the first with the API due");
    assert_eq!(
        calls_of(&fl, describe, since),
        1,
        "{}",
        fl.diagnostics(&run)
    );

    // The API does not answer: a warning, still healthy.
    fl.faults(r#"[{"action": "*", "count": 100000, "kind": "503"}]"#);
    make_api_due(&fl);
    let run = fl.lab.health_check(&fl.files);
    fl.faults("[]");
    assert_ok(&fl, &run, "a check while the API answers 503");
    assert!(
        run.stderr
            .contains("WARNING: the EC2 API did not answer about the floating interface"),
        "{}",
        fl.diagnostics(&run)
    );
    assert!(
        health_state(&fl).contains("state=ok"),
        "{}",
        fl.diagnostics(&run)
    );
    let since = fl.api_calls().len();
    let run = fl.lab.health_check(&fl.files);
    assert_ok(&fl, &run, "the next check");
    assert_eq!(
        calls_of(&fl, describe, since),
        0,
        "{}",
        fl.diagnostics(&run)
    );
    assert_eq!(fl.health(Host::A), "Healthy", "{}", fl.diagnostics(&run));
}

/// Ruleset drift while the EC2 API answers only 503: the check warns about
/// the API and repairs the drift in the same run, the repair going on
/// without the API; the instance serves.
#[test]
fn local_repairs_do_not_wait_on_the_api() {
    if !support::require_root("failover repair during an API outage (network namespaces)") {
        return;
    }
    let (_site, fl) = start(Options::default());
    let run = fl.lab.boot_step(&fl.files);
    assert_ok(&fl, &run, "boot of A");
    drift(&fl);
    make_api_due(&fl);
    fl.faults(r#"[{"action": "*", "count": 100000, "kind": "503"}]"#);
    let run = fl.lab.health_check(&fl.files);
    fl.faults("[]");
    assert_ok(&fl, &run, "a check with drift while the API answers 503");
    for needle in [
        "WARNING: the EC2 API did not answer",
        "Drift found",
        "going on without the EC2 API",
        "Repaired",
    ] {
        assert!(
            run.stderr.contains(needle),
            "{needle}\n{}",
            fl.diagnostics(&run)
        );
    }
    let mut f = Findings::new("after the repair during the outage");
    fl.check_serving(Host::A, &mut f);
    assert_clean(&fl, f, &run);
}

/// A health check stopped by systemd in the middle of a repair (its start
/// timeout, during an API brown-out): the repair fails closed (forwarding
/// off, Unhealthy in the group) and the check reports it. The repair is
/// made to need the API (metadata does not list the interface) and the API
/// to stall it (503 after the check's own call).
#[test]
fn a_stopped_repair_fails_closed() {
    if !support::require_root("failover repair stopped by a signal (network namespaces)") {
        return;
    }
    let (_site, mut fl) = start(Options::default());
    let run = fl.lab.boot_step(&fl.files);
    assert_ok(&fl, &run, "boot of A");
    let interface_id = format!(
        "/latest/meta-data/network/interfaces/macs/{}/interface-id=100000:404",
        fl.eni_mac
    );
    fl.restart_imds(Host::A, &["--fault", &interface_id]);
    drift(&fl);
    fl.faults(
        r#"[{"action": "DescribeNetworkInterfaces", "skip": 1, "count": 100000, "kind": "503"}]"#,
    );
    // natbake-health run by `timeout -s TERM`, which signals the whole
    // process group as systemd signals the whole unit.
    let health = install_path(artifact::HEALTH);
    let real = format!("{health}.real");
    let wrapper = fl.lab.dir().join("stopped-health.sh");
    fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec timeout -s TERM 20 {real}\n"),
    )
    .expect("write the wrapper");
    let mut files = fl.files.with_source(health, &wrapper);
    files.files.push(InstallFile {
        install_path: real.clone(),
        mode: "0755".into(),
        source: fl.files.get(health).expect("natbake-health").source.clone(),
    });
    let run = thread::scope(|s| {
        let check = s.spawn(|| fl.lab.health_check(&files));
        // The API answers again once the repair is stopped, so the report
        // goes through.
        thread::sleep(Duration::from_secs(22));
        fl.faults("[]");
        check.join().expect("check thread")
    });
    assert!(
        !run.success() && !run.timed_out(),
        "{}",
        fl.diagnostics(&run)
    );
    for needle in [
        "ERROR: Stopped by SIGTERM before the configuration was complete",
        "UNHEALTHY: stopped by SIGTERM during the repair",
    ] {
        assert!(
            run.stderr.contains(needle),
            "{needle}\n{}",
            fl.diagnostics(&run)
        );
    }
    assert_eq!(fl.forwarding(Host::A), "0", "{}", fl.diagnostics(&run));
    assert_eq!(fl.health(Host::A), "Unhealthy", "{}", fl.diagnostics(&run));
    assert!(
        health_state(&fl).contains("state=failed"),
        "{}",
        fl.diagnostics(&run)
    );
}

/// One DescribeNetworkInterfaces answer reset in the middle of its body
/// and one that stalls past curl's limit: the boot tries again and serves.
#[test]
fn answers_cut_short_are_tried_again() {
    if !support::require_root("failover cut answers (network namespaces)") {
        return;
    }
    let (_site, fl) = start(Options::default());
    fl.faults(
        r#"[{"action": "DescribeNetworkInterfaces", "count": 1, "kind": "cut"},
            {"action": "DescribeNetworkInterfaces", "count": 1, "kind": "stall:12"}]"#,
    );
    let run = fl.lab.boot_step(&fl.files);
    fl.faults("[]");
    assert_ok(&fl, &run, "boot with answers cut short");
    let calls = fl.api_calls();
    for kind in ["cut", "stall"] {
        assert!(
            calls
                .iter()
                .any(|(a, s)| a == "DescribeNetworkInterfaces" && s == kind),
            "no {kind} answer was sent\n{}",
            fl.diagnostics(&run)
        );
    }
    let mut f = Findings::new("after cut answers");
    fl.check_serving(Host::A, &mut f);
    assert_clean(&fl, f, &run);
}

/// A brand-new instance profile: no role in metadata for a few seconds,
/// then the API refusing the first calls while IAM catches up. The boot
/// waits, says so, and serves.
#[test]
fn a_new_role_is_waited_for_at_first_boot() {
    if !support::require_root("failover new role (network namespaces)") {
        return;
    }
    let (_site, mut fl) = start(Options::default());
    fl.restart_imds(Host::A, &["--role-after", "3"]);
    fl.faults(
        r#"[{"action": "DescribeNetworkInterfaces", "count": 1, "kind": "AuthFailure"},
            {"action": "DescribeNetworkInterfaces", "count": 1, "kind": "UnauthorizedOperation"}]"#,
    );
    let run = fl.lab.boot_step(&fl.files);
    fl.faults("[]");
    assert_ok(&fl, &run, "first boot with a new role");
    assert!(
        run.stderr
            .contains("WARNING: instance metadata shows no IAM role for this instance"),
        "{}",
        fl.diagnostics(&run)
    );
    assert!(
        fl.api_calls()
            .iter()
            .any(|(a, s)| a == "DescribeNetworkInterfaces" && s == "403"),
        "{}",
        fl.diagnostics(&run)
    );
    let mut f = Findings::new("after the new role");
    fl.check_serving(Host::A, &mut f);
    assert_clean(&fl, f, &run);
}
