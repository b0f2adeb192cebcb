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

    /// `command` run as installed, with /run/natbake kept, like the
    /// scripts: for a run under conditions the test sets up around it
    /// (a read-only setting, a full /run) inside the run's own private
    /// mount namespace.
    pub fn run_as_installed(&self, files: &InstallSet, command: &[&str]) -> Finished {
        self.run_installed(files, command, true)
    }

    /// One run of the installed natbake-health with /run/natbake full: a
    /// 16 KiB tmpfs over it in the run's own mount namespace, holding a
    /// copy of the state and filled to the last block (`full_state.sh`),
    /// unmounted when the run ends.
    pub fn health_check_with_full_state(&self, files: &InstallSet) -> Finished {
        let helper = super::script("full_state.sh").display().to_string();
        self.run_installed(
            files,
            &[
                "/bin/sh",
                &helper,
                artifact::STATE_DIR,
                install_path(artifact::HEALTH),
            ],
            true,
        )
    }

    /// Makes the health check's last repair, a hold on forwarding and the
    /// sets' last comparison look `seconds` older than they are: time
    /// passing, without waiting.
    pub fn age_health_state(&self, seconds: u64) {
        let state = self.kept_state().join("health");
        if let Ok(text) = std::fs::read_to_string(&state) {
            let aged: Vec<String> = text
                .lines()
                .map(
                    |l| match l.strip_prefix("last_repair=").map(str::parse::<u64>) {
                        Some(Ok(t)) => format!("last_repair={}", t.saturating_sub(seconds)),
                        _ => l.to_owned(),
                    },
                )
                .collect();
            std::fs::write(&state, aged.join("\n") + "\n").expect("write the health state");
        }
        for file in ["closed", "ipsets.loaded"] {
            let path = self.kept_state().join(file);
            if path.exists() {
                let then = std::time::SystemTime::now() - std::time::Duration::from_secs(seconds);
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(then))
                    .unwrap_or_else(|e| panic!("cannot age {}: {e}", path.display()));
            }
        }
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
