//! The standby lab (`pair_lab.sh`): two instances of the standby fixture
//! in network namespaces, each running the rendered keepalived.conf and
//! conntrackd.conf with the installed natbake-standby, the active killed
//! abruptly while long-lived TCP connections carry data: through the
//! forward with the client talking first, through the forward with the
//! target pushing, and out through the egress NAT with an Internet server
//! pushing to a private host. The two pushing kinds are the ones that need
//! the synced table: the first packet after the takeover comes from the
//! far side, which the new active can only translate back with the
//! peer's entry (the client-first kind survives by the kernel's pickup of
//! a mid-stream packet, which the DNAT rule sends to the same target).

use super::{node_script, standby_specs};
use crate::fixtures::render;
use crate::support::{ScratchDir, require_root, run_bounded, unique_id};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Connections of each kind per run.
const CONNECTIONS: u32 = 10;

/// Removes the lab's namespaces (`<prefix>-<name>`) even when the script
/// was killed.
pub(super) struct Namespaces(pub String, pub &'static [&'static str]);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.1 {
            let ns = format!("{}-{name}", self.0);
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// One lab at a time: two at once on a small machine blur the timings.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `runs` kills of the active for the site in `site_dir`; one JSON
/// object per run.
pub fn pair_lab(site_dir: &Path, runs: u32) -> Vec<Value> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let work = ScratchDir::new("standby-lab");
    // Short: the lab's host-side link names (`<prefix>-v-flt`) must fit
    // the kernel's 15 characters.
    let id = unique_id().replace('x', "");
    let prefix = format!("sb{}", &id[id.len().saturating_sub(6)..]);
    let _cleanup = Namespaces(
        prefix.clone(),
        &["vpc", "a", "b", "tgt", "prv", "igw", "cli"],
    );
    let done = run_bounded(
        Command::new("bash")
            .arg(node_script("pair_lab.sh"))
            .arg(site_dir)
            .arg(runs.to_string())
            .arg(CONNECTIONS.to_string())
            .arg(work.path())
            .env("PAIR_LAB_PREFIX", &prefix)
            // A standby that has just started misses the connections
            // opened in its first moments (see docs/failover.md): the
            // kill comes once it has settled.
            .env("PAIR_LAB_SETTLE", "1"),
        b"",
        Duration::from_secs(60 * u64::from(runs) + 60),
    );
    assert!(done.success(), "the standby lab failed\n{}", done.explain());
    done.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn survived(run: &Value, kind: &str) -> u64 {
    run[kind]["survived"].as_u64().unwrap()
}

#[test]
fn connections_survive_the_abrupt_death_of_the_active() {
    if !require_root("the standby lab (network namespaces, keepalived, conntrackd)") {
        return;
    }
    let spec = &standby_specs()[0];
    let site = render(&spec.path);
    for run in pair_lab(&site.site_dir, 2) {
        for kind in ["echo", "push", "egress"] {
            assert_eq!(
                survived(&run, kind),
                u64::from(CONNECTIONS),
                "{kind} connections lost: {run}"
            );
        }
        // Detection (about 3.5 adverts of 0.2 s), the commit and the
        // move, well within the goal of 3 s on a busy machine.
        let takeover = run["takeover_s"].as_f64().unwrap();
        assert!(takeover < 3.0, "took {takeover}s: {run}");
    }
}

/// Without the commit of the synced table (the step taken out of the
/// installed script), the connections whose first packet after the
/// takeover comes from the far side are lost: the synced table is what
/// keeps them.
#[test]
fn without_the_synced_table_pushed_connections_are_lost() {
    if !require_root("the standby lab (network namespaces, keepalived, conntrackd)") {
        return;
    }
    let spec = &standby_specs()[0];
    let site = render(&spec.path);
    let copy = tempfile::tempdir().unwrap();
    let dir = copy.path();
    for (name, bytes) in crate::fixtures::files(&site.site_dir) {
        std::fs::write(dir.join(&name), bytes).unwrap();
    }
    let script = dir.join("natbake-standby.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    let commit = "conntrackd_do -c ||";
    assert_eq!(text.matches(commit).count(), 1);
    std::fs::write(&script, text.replace(commit, "false ||")).unwrap();
    let run = &pair_lab(dir, 1)[0];
    // All of them in every run seen; a lucky one would not change the point.
    assert!(survived(run, "push") < u64::from(CONNECTIONS / 2), "{run}");
    assert!(
        survived(run, "egress") < u64::from(CONNECTIONS / 2),
        "{run}"
    );
}
