//! configure-pat.sh run as installed: the files put in place in a private
//! view of the file system (`installed_run.sh`, inside `unshare -m`), the
//! lab's syslog receiver (`devlog_sink.py`) on /dev/log, and the script run
//! in the NAT namespace as systemd would run it.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::install::InstallSet;
use super::{Lab, in_ns, script, trace};
use crate::support::{self, Finished};
use natbake::render::artifact;

/// Upper bound on any run of configure-pat.sh, so a hanging script fails the
/// test instead of hanging it.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

/// Exit code of `installed_run.sh` when the lab itself failed.
const SETUP_FAILED: i32 = 97;

impl Lab {
    /// Starts the syslog receiver in the NAT namespace and returns its
    /// socket. configure-pat.sh runs with it mounted on /dev/log (in its
    /// private mount namespace), so `logger -t natbake` lines land in
    /// syslog.txt, one per line.
    pub(super) fn start_syslog_sink(&mut self) -> PathBuf {
        let sink = self.dir().join("devlog.sock");
        let args = vec![
            script("devlog_sink.py").display().to_string(),
            sink.display().to_string(),
            self.dir().join("syslog.txt").display().to_string(),
        ];
        let (nat, python) = (self.ns.nat.clone(), self.python.clone());
        self.spawn("syslog sink", &nat, &python, &args);
        sink
    }

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
        self.run_installed(files, &[files.script_path()], false)
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
                &script("concurrent_runs.sh").display().to_string(),
                files.script_path(),
                &count,
                &out_arg,
            ],
            false,
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
    /// `command` there. With `keep_state`, /run/natbake is the same folder
    /// in every such run, as on an instance between two checks.
    pub(super) fn run_installed(
        &self,
        files: &InstallSet,
        command: &[&str],
        keep_state: bool,
    ) -> Finished {
        self.run_installed_in(&self.ns.nat, files, command, keep_state)
    }

    /// [`Lab::run_configure_pat`] in namespace `ns`: another instance on
    /// the lab's VPC segment (the failover tests have two).
    pub fn run_configure_pat_in(&self, ns: &str, files: &InstallSet) -> Finished {
        self.run_installed_in(ns, files, &[files.script_path()], false)
    }

    fn run_installed_in(
        &self,
        ns: &str,
        files: &InstallSet,
        command: &[&str],
        keep_state: bool,
    ) -> Finished {
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
        if keep_state {
            let kept = self.dir().join("run-natbake");
            fs::create_dir_all(&kept).expect("create the kept state folder");
            fs::write(
                stage.join("keep.list"),
                format!("{} {}\n", kept.display(), artifact::STATE_DIR),
            )
            .expect("write keep list");
        }

        let mut cmd = in_ns(ns, "unshare");
        cmd.args(["-m", "--propagation", "private", "sh"])
            .arg(script("installed_run.sh"))
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

    /// What `logger` wrote during script runs.
    pub fn syslog(&self) -> String {
        fs::read_to_string(self.dir().join("syslog.txt")).unwrap_or_default()
    }
}
