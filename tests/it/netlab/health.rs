//! The health check and the status table on the lab's NAT instance: both
//! run as installed, with /run/natbake kept from one run to the next as on
//! an instance, and faults injected into the NAT namespace's kernel state.

use natbake::render::{artifact, install_path};
use serde_json::Value;

use super::install::InstallSet;
use super::{Lab, in_ns};
use crate::support::{self, Finished};

impl Lab {
    /// configure-pat.sh as installed, keeping its state for later checks.
    pub fn boot_step(&self, files: &InstallSet) -> Finished {
        self.run_installed(files, &[files.script_path()], true)
    }

    /// One run of the installed natbake-health.
    pub fn health_check(&self, files: &InstallSet) -> Finished {
        self.run_installed(files, &[install_path(artifact::HEALTH)], true)
    }

    /// One run of the installed natbake-health under `wrapper` (a
    /// command that runs the rest of its arguments, such as `faketime`).
    pub fn health_check_under(&self, files: &InstallSet, wrapper: &[&str]) -> Finished {
        let mut command = wrapper.to_vec();
        command.push(install_path(artifact::HEALTH));
        self.run_installed(files, &command, true)
    }

    /// A bash script in the NAT namespace, with the files installed and
    /// /run/natbake kept as for the other runs: several installed
    /// programs in one view of the file system (so they share its lock).
    pub fn run_bash(&self, files: &InstallSet, script: &str) -> Finished {
        self.run_installed(files, &["/bin/bash", "-c", script], true)
    }

    /// `runs` runs of natbake-health back to back in one process tree;
    /// stops at the first that exits non-zero and prints which one. Every
    /// second run finds its counters due (their last reading forgotten),
    /// so half the runs read and compare the whole ruleset and half trust
    /// the unchanged nf_tables generation.
    pub fn health_checks(&self, files: &InstallSet, runs: u32) -> Finished {
        let script = format!(
            "i=0; while [ $i -lt {runs} ]; do i=$((i + 1)); [ $((i % 2)) -eq 1 ] || rm -f {state}/counted; {} || {{ echo \"run $i failed\"; exit 1; }}; done",
            install_path(artifact::HEALTH),
            state = artifact::STATE_DIR,
        );
        self.run_installed(files, &["/bin/sh", "-c", &script], true)
    }

    /// `natbake-status --json`, parsed; also checks that the table form runs.
    pub fn status(&self, files: &InstallSet) -> Value {
        let status = install_path(artifact::STATUS);
        let table = self.run_installed(files, &[status], true);
        assert!(table.success(), "natbake-status: {}", table.explain());
        let done = self.run_installed(files, &[status, "--json"], true);
        assert!(done.success(), "natbake-status --json: {}", done.explain());
        serde_json::from_str(&done.stdout)
            .unwrap_or_else(|e| panic!("natbake-status --json is not JSON ({e}): {}", done.stdout))
    }

    /// The bytes `natbake-status ARGS…` prints, exactly (not read as
    /// text, so that a byte that is not UTF-8 is seen), and whether it
    /// succeeded.
    pub fn status_bytes(&self, files: &InstallSet, args: &[&str]) -> (bool, Vec<u8>) {
        let script = format!(
            "{} {} >{}/status.out",
            install_path(artifact::STATUS),
            args.join(" "),
            artifact::STATE_DIR
        );
        let done = self.run_installed(files, &["/bin/sh", "-c", &script], true);
        let out = std::fs::read(self.kept_state().join("status.out")).unwrap_or_default();
        (done.success(), out)
    }

    /// Runs `program args…` in the NAT namespace (a fault, as an operator
    /// or other software would cause it); panics if it fails.
    pub fn on_nat(&self, program: &str, args: &[&str]) {
        support::run(in_ns(&self.ns.nat, program).args(args));
    }
}

impl Lab {
    /// `ipset ARGS…` in the NAT namespace: its output, or None when it
    /// fails (a set that does not exist).
    pub fn ipset(&self, args: &[&str]) -> Option<String> {
        let out = in_ns(&self.ns.nat, "ipset")
            .args(args)
            .output()
            .expect("run ipset");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The folder that stands for /run/natbake between runs.
    pub fn kept_state(&self) -> std::path::PathBuf {
        self.dir().join("run-natbake")
    }
}
