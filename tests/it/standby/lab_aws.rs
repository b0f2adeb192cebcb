//! The standby pair in the moto-backed failover lab (`aws_pair_lab.sh`):
//! two instances of the standby fixture at once, each in its own network
//! namespace and its own view of the installed files, booted by the lab's
//! stand-in for systemd (`systemd_lab.sh`), which runs the rendered units'
//! commands as installed; the AWS client talking to moto through the
//! failover lab's proxy; the fabric moving the floating interface where
//! the API says; each instance's own metadata, its target lifecycle state
//! among it. The instances are the Auto Scaling group's, tagged with the
//! site: each finds its peer through the API.
//!
//! Flows carry data through every event: TCP through the forward via the
//! elastic IP with the client talking first and with the target pushing,
//! UDP through the other forward, TCP out through the egress NAT with an
//! Internet server pushing to a private host. After each event a new
//! connection is probed through the elastic IP and out through the NAT.
//! The scenarios are the five (issue 19). The lab waits for
//! conditions, never for a set time: the pair paired; before an abrupt
//! event, the standby's own split-brain rule allowing a forced takeover
//! and every flow in its synced table.

use super::lab::Namespaces;
use super::{node_script, standby_specs};
use crate::failover::lab::moto_venv;
use crate::fixtures::render;
use crate::support::{ScratchDir, require_root, run_bounded, unique_id};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Flows of each kind per run.
const FLOWS: u32 = 5;

/// Kinds of flow the lab counts.
const KINDS: [&str; 4] = ["echo", "push", "egress", "udp"];

/// Runs `runs` runs of `scenario` for the site in `site_dir`; one JSON
/// object per run.
pub fn aws_pair_lab(site_dir: &Path, scenario: &str, runs: u32) -> Vec<Value> {
    // Two at once are fine (their own namespaces, moto and addresses), and
    // most of a run is waiting: cargo's test threads bound how many run.
    let work = ScratchDir::new("standby-aws-lab");
    let id = unique_id().replace('x', "");
    let prefix = format!("sa{}", &id[id.len().saturating_sub(6)..]);
    let _cleanup = Namespaces(
        prefix.clone(),
        &[
            "vpc", "igw", "cli", "tgt", "prv", "api", "i1", "i2", "i3", "i4",
        ],
    );
    let done = run_bounded(
        Command::new("bash")
            .arg(node_script("aws_pair_lab.sh"))
            .arg(site_dir)
            .arg(scenario)
            .arg(runs.to_string())
            .arg(FLOWS.to_string())
            .arg(work.path())
            .env("PAIR_LAB_PREFIX", &prefix)
            .env("NATBAKE_MOTO_VENV", moto_venv()),
        b"",
        Duration::from_secs(600 * u64::from(runs) + 60),
    );
    assert!(
        done.success(),
        "the standby lab ({scenario}) failed\n{}",
        done.explain()
    );
    done.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn runs_of(scenario: &str) -> Vec<Value> {
    let spec = &standby_specs()[0];
    let site = render(&spec.path);
    aws_pair_lab(&site.site_dir, scenario, 1)
}

/// Every flow of every kind lived through the event.
fn assert_none_lost(run: &Value) {
    for kind in KINDS {
        assert_eq!(
            run[kind]["survived"].as_u64(),
            Some(u64::from(FLOWS)),
            "{kind} flows lost: {run}"
        );
    }
}

/// The run ended with one instance serving: the holder of the interface
/// (per the API, its device there), forwarding; every other instance not
/// forwarding; a new connection through the elastic IP and out through
/// the NAT worked (the script fails the run otherwise).
fn assert_serving(run: &Value) {
    assert_eq!(run["end"], "serving", "{run}");
    let active = run["active"].as_str().unwrap();
    for f in run["forwarding"].as_array().unwrap() {
        let (slot, fwd) = f.as_str().unwrap().split_once('=').unwrap();
        let expect = if slot == active { "1" } else { "0" };
        // A dead or terminated instance forwards nothing any more.
        assert!(
            fwd == expect || (slot != active && fwd == "dead"),
            "{slot} forwards {fwd}: {run}"
        );
    }
}

fn moves(run: &Value) -> u64 {
    run["moves"].as_u64().unwrap()
}

/// 1. The active dies abruptly: every process killed, its links down, no
///    goodbye. The standby takes the interface over through the API (a
///    forced detach from the dead holder, which the API still sees
///    running, then the attach), every flow lives on, new connections
///    work within seconds.
#[test]
fn the_active_dies_abruptly() {
    if !require_root("the standby lab with the API (network namespaces, moto)") {
        return;
    }
    for run in runs_of("kill") {
        assert_none_lost(&run);
        assert_serving(&run);
        assert_eq!(moves(&run), 1, "{run}");
        // The goal (3 s at p99) is the benchmark's; here a bound that a
        // busy CI machine keeps and a takeover that waited for the dead
        // holder's timeout (180 s) does not.
        let takeover = run["takeover_s"].as_f64().unwrap();
        assert!(takeover < 20.0, "took {takeover}s: {run}");
    }
}

/// 2. The same while the API is slow (the first calls answered a second
///    late) and failing transiently (a dropped DescribeNetworkInterfaces,
///    a DetachNetworkInterface answered 500, an AttachNetworkInterface
///    answered 503 RequestLimitExceeded): the takeover retries through
///    them and ends serving, no flow lost.
#[test]
fn the_active_dies_while_the_api_is_slow_and_failing() {
    if !require_root("the standby lab with the API (network namespaces, moto)") {
        return;
    }
    for run in runs_of("kill-api") {
        assert_none_lost(&run);
        assert_serving(&run);
        assert_eq!(moves(&run), 1, "{run}");
        let takeover = run["takeover_s"].as_f64().unwrap();
        assert!(takeover < 30.0, "took {takeover}s: {run}");
    }
}

/// 3. The two cannot reach each other but both reach the API: the
///    interface moves at most once (no flapping), and when the partition
///    heals one instance serves and the other does not forward.
#[test]
fn a_partition_moves_the_interface_at_most_once() {
    if !require_root("the standby lab with the API (network namespaces, moto)") {
        return;
    }
    for run in runs_of("partition") {
        assert!(moves(&run) <= 1, "the interface flapped: {run}");
        assert_serving(&run);
    }
}

/// 4. The group terminates the active (target lifecycle state Terminated,
///    the termination hook waiting): the active hands over and completes
///    the hook; no flow is lost.
#[test]
fn the_group_terminating_the_active_loses_nothing() {
    if !require_root("the standby lab with the API (network namespaces, moto)") {
        return;
    }
    for run in runs_of("lifecycle") {
        assert_eq!(run["hooks_missed"], 0, "the hook was not completed: {run}");
        assert_none_lost(&run);
        assert_serving(&run);
        assert_eq!(moves(&run), 1, "{run}");
    }
}

/// 5. Both instances replaced one after the other, as a rolling update
///    does (the standby, then the active, each through the termination
///    hook; each replacement finds its peer by the site's tag): no flow
///    lost, the elastic IP never leaves the floating interface.
#[test]
fn a_rolling_replacement_of_both_loses_nothing() {
    if !require_root("the standby lab with the API (network namespaces, moto)") {
        return;
    }
    for run in runs_of("rolling") {
        assert_eq!(run["hooks_missed"], 0, "a hook was not completed: {run}");
        assert_none_lost(&run);
        assert_serving(&run);
        assert_eq!(run["eip_before"], run["eip_after"], "{run}");
        assert_eq!(run["active"], "i3", "{run}");
    }
}

/// The lab's stand-in for systemd knows a service's main process through
/// restarts: a unit with `EnvironmentFile=` (as keepalived.service has)
/// restarted 20 times runs exactly one main process each time, the one
/// a stop signals. (It once took another child of its own for the main
/// process: a restart then left the old conntrackd running, the new one
/// failed on its lock file, and the old one kept syncing to a peer that
/// was gone.)
#[test]
fn the_stand_in_for_systemd_restarts_the_main_process() {
    if !require_root("the standby lab's stand-in for systemd (mount and pid namespaces)") {
        return;
    }
    let done = run_bounded(
        Command::new("unshare")
            .args([
                "-m",
                "-p",
                "--fork",
                "--mount-proc",
                "--propagation",
                "private",
            ])
            .arg("bash")
            .arg(node_script("systemd_lab_check.sh"))
            .arg(node_script("systemd_lab.sh"))
            .arg("20"),
        b"",
        Duration::from_secs(180),
    );
    assert!(
        done.success() && done.stdout.trim() == "ok",
        "{}",
        done.explain()
    );
}
