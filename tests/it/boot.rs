//! Boot tests: a rendered site baked into a real Debian 12 image the way
//! the Packer step does it, booted with systemd-nspawn as the NAT instance
//! of the VPC-shaped lab, checked at first boot and again after a reboot.
//! Also the launch-template path (a stock image with cloud-init given the
//! rendered user data through the NoCloud datasource) and the failure path
//! (a broken ruleset is refused at bake time and fails visibly at boot).
//!
//! How the machine is used:
//! - Everything that runs inside an image runs in namespaces this test
//!   made: provisioning in a chroot under `unshare --net --mount --pid`, so
//!   the host's firewall, sysctls and mounts are never touched; the guest
//!   in the lab's NAT namespace (netlab.rs), which the lab removes.
//! - PID 1 of this machine is not systemd and /run is not a tmpfs, so
//!   systemd-nspawn runs with `--register=no --keep-unit`, inside its own
//!   mount namespace with a tmpfs on /run/systemd. `machinectl` does not
//!   work here; the guest is inspected with `nsenter` into its PID 1.
//! - Stopping is SIGTERM to systemd-nspawn, which shuts the guest down
//!   cleanly. A guard does that on drop, so a failing test stops its guest
//!   too, and `setpriv --pdeathsig` stops it if the test process dies.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::fixtures::{RenderedSite, fixture_spec, render};
use crate::image::{self, Flavor, RootFs};
use crate::netlab::{
    Findings, Lab, LabOptions, check_all_up, check_forwarding_off, check_imds_v2_used,
};
use crate::support::{self, Finished, ScratchDir};
use natbake::render::{artifact, install_path};

/// Where the Packer template's file provisioner uploads the site folder;
/// provision.sh runs from inside it (`cd /tmp/natbake && sudo bash ./provision.sh`).
pub const SITE_IN_IMAGE: &str = "/tmp/natbake";

/// The fixture whose site the boot tests bake: Debian 12 with TCP, UDP and
/// port-range forwards, several sources, logging and extra sysctls.
pub const FIXTURE: &str = "debian-mixed";

/// PATH inside the image for the commands this file runs there.
const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Time for provision.sh; it installs files and test-loads a ruleset.
const PROVISION_LIMIT: Duration = Duration::from_secs(120);
/// Time from starting systemd-nspawn to the end of boot. A boot takes about
/// a second, with cloud-init a few; the margin is for a busy machine.
const BOOT_LIMIT: Duration = Duration::from_secs(120);
/// Time for a clean shutdown after SIGTERM.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(60);
/// Time for one inspection command in the guest.
const GUEST_COMMAND_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Rendering and baking
// ---------------------------------------------------------------------------

/// Runs `script` with `/bin/sh` in a chroot of `root`, as root, the way a
/// provisioner's shell does, in namespaces of its own:
/// - `--net`: an empty network namespace, so a firewall or sysctl change
///   made inside lands there and not on the host;
/// - `--mount`: /proc, /run and the read-only /proc/sys are mounted for the
///   chroot only and vanish with it;
/// - `--pid` with `--kill-child`: anything the script leaves running dies
///   when it ends, or when this process dies.
///
/// /proc/sys is read-only in the chroot except for `net.`, which belongs to
/// the new network namespace: keys outside `net.` are the host kernel's
/// even inside a namespace, and a provisioning script must not change them.
pub fn in_chroot(root: &Path, script: &str, limit: Duration) -> Finished {
    support::run_bounded(
        Command::new("unshare")
            .args(["--mount", "--net", "--pid", "--fork", "--kill-child"])
            .args(["--propagation", "private", "--", "/bin/sh"])
            .arg(helper_script("in_chroot.sh"))
            .arg(root)
            .arg(script)
            // What sudo gives a root shell on a Debian build instance.
            .env_clear()
            .env("PATH", GUEST_PATH)
            .env("HOME", "/root")
            .env("USER", "root")
            .env("LOGNAME", "root")
            .env("LANG", "C.UTF-8"),
        b"",
        limit,
    )
}

/// Does what the Packer template's provisioners do: upload the site folder
/// to /tmp/natbake in the image (owned by the build user, as an upload over
/// SSH is), then `cd /tmp/natbake && sudo bash ./provision.sh`. Returns the
/// run for the caller to judge: the failure test expects a refusal.
pub fn provision(root: &RootFs, site: &Path) -> Finished {
    provision_with(root, site, "")
}

/// [`provision`] with `env` (`NAME=value ...`, may be empty) in front of
/// the command, as `sudo NAME=value bash ./provision.sh` would pass it.
pub fn provision_with(root: &RootFs, site: &Path, env: &str) -> Finished {
    let upload = root.join(SITE_IN_IMAGE);
    if upload.exists() {
        fs::remove_dir_all(&upload)
            .unwrap_or_else(|err| panic!("cannot clear {}: {err}", upload.display()));
    }
    support::run(Command::new("cp").arg("-r").arg(site).arg(&upload));
    // uid 1000 is the default user of Debian's cloud images ("admin"), the
    // one Packer connects as; provision.sh must not rely on owning the files.
    support::run(Command::new("chown").args(["-R", "1000:1000"]).arg(&upload));
    in_chroot(
        root.path(),
        &format!("cd {SITE_IN_IMAGE} && exec env {env} bash ./provision.sh"),
        PROVISION_LIMIT,
    )
}

/// A shell helper of these tests, run by path from the source tree.
fn helper_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it")
        .join(name)
}

/// Renders the boot fixture and bakes it into a fresh plain image; panics
/// (with provision.sh's output) if baking fails.
pub fn baked_image() -> (RootFs, RenderedSite) {
    let site = render(&fixture_spec(FIXTURE));
    let root = image::fresh_root(Flavor::Plain);
    let baked = provision(&root, &site.site_dir);
    assert!(baked.success(), "provision.sh failed\n{}", baked.explain());
    eprintln!(
        "boot: provision.sh baked {} in {:.1?}",
        site.site_dir.display(),
        baked.elapsed
    );
    let packages = check_package_list(&root);
    eprintln!("boot: the image's package list names {packages} packages");
    (root, site)
}

/// The package list provision.sh leaves for the Packer build to download
/// (its file provisioner, as the SSH user, from `/tmp/natbake/packages.tsv`):
/// readable by that user, one sorted `name<TAB>version<TAB>arch` line per
/// installed package, exactly what dpkg has installed. Returns the count.
fn check_package_list(root: &RootFs) -> usize {
    use std::os::unix::fs::MetadataExt;
    let path = root.join(&format!("{SITE_IN_IMAGE}/packages.tsv"));
    let meta = fs::metadata(&path)
        .unwrap_or_else(|err| panic!("provision.sh left no {}: {err}", path.display()));
    assert_eq!(
        meta.mode() & 0o004,
        0o004,
        "the SSH user cannot read the package list"
    );
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "the package list is not sorted");
    let mut names = Vec::new();
    for line in &lines {
        let fields: Vec<&str> = line.split('\t').collect();
        assert!(
            fields.len() == 3 && fields.iter().all(|f| !f.is_empty()),
            "not `name<TAB>version<TAB>arch`: {line:?}"
        );
        names.push(fields[0]);
    }
    // What dpkg itself says is installed in the image.
    let listed = in_chroot(
        root.path(),
        "dpkg-query --show --showformat '${db:Status-Abbrev} ${Package}\\n' | awk '$1 == \"ii\" { print $2 }' | LC_ALL=C sort",
        GUEST_COMMAND_LIMIT,
    );
    assert!(listed.success(), "{}", listed.explain());
    let installed: Vec<&str> = listed.stdout.lines().collect();
    assert_eq!(
        names, installed,
        "the package list is not what is installed"
    );
    for needed in ["iptables", "ipset", "systemd", "curl"] {
        assert!(
            names.contains(&needed),
            "{needed} is not in the package list"
        );
    }
    names.len()
}

/// Makes `root` a fresh cloud instance for cloud-init's NoCloud datasource:
/// the seed (user data as given, meta data with an instance id) and a
/// datasource list that looks at nothing else.
pub fn seed_nocloud(root: &RootFs, user_data: &Path, instance_id: &str) {
    let seed = root.join("var/lib/cloud/seed/nocloud");
    fs::create_dir_all(&seed)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", seed.display()));
    fs::copy(user_data, seed.join("user-data"))
        .unwrap_or_else(|err| panic!("cannot copy {}: {err}", user_data.display()));
    fs::write(
        seed.join("meta-data"),
        format!("instance-id: {instance_id}\nlocal-hostname: natbake-nat\n"),
    )
    .expect("write meta-data");
    // Without this, cloud-init probes every datasource it knows, some over
    // the network; `None` keeps it from failing when the seed is missing.
    fs::write(
        root.join("etc/cloud/cloud.cfg.d/91-natbake-test-datasource.cfg"),
        "datasource_list: [NoCloud, None]\n",
    )
    .expect("write datasource list");
}

/// Inserts `bad_line` at the end of the ruleset's filter table (where the
/// FORWARD chain exists), just before its `COMMIT`; returns the new text and
/// the 1-based number of the inserted line.
pub fn break_ruleset(rules: &str, bad_line: &str) -> (String, usize) {
    let mut lines: Vec<&str> = rules.lines().collect();
    let filter = lines
        .iter()
        .position(|l| l.trim() == "*filter")
        .expect("the ruleset has a filter table");
    let at = filter
        + lines[filter..]
            .iter()
            .position(|l| l.trim() == "COMMIT")
            .expect("the filter table ends with COMMIT");
    lines.insert(at, bad_line);
    (lines.join("\n") + "\n", at + 1)
}

// ---------------------------------------------------------------------------
// Booting
// ---------------------------------------------------------------------------

/// A booted image. Borrows the root so the copy cannot be deleted while
/// the guest runs; stops the guest when dropped.
pub struct Guest<'r> {
    root: &'r RootFs,
    nspawn: Child,
    /// The guest's PID 1, as the host sees it.
    init: ProcessMark,
    console: PathBuf,
    status: Option<ExitStatus>,
    /// Held while the guest exists; see [`one_guest_at_a_time`].
    _turn: File,
}

/// Guests take turns, across the threads of this test binary and across
/// test processes on the machine. With `--keep-unit` every guest's systemd
/// takes the cgroup it was started in as its own root; two at once create
/// and remove the same `init.scope` and `system.slice/*` cgroups, and a
/// unit of one fails with "Failed at step CGROUP" when the other cleans up.
fn one_guest_at_a_time() -> File {
    let dir = Path::new("/run/lock");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let path = dir.join("natbake-test-nspawn.lock");
    let file = File::create(&path)
        .unwrap_or_else(|err| panic!("cannot create lock file {}: {err}", path.display()));
    file.lock()
        .unwrap_or_else(|err| panic!("cannot lock {}: {err}", path.display()));
    file
}

impl<'r> Guest<'r> {
    /// Starts `root` with systemd-nspawn as a host of the network namespace
    /// `netns` (made with `ip netns add`), and returns once the guest's
    /// systemd is PID 1 of its pid namespace; [`Guest::wait_until_booted`]
    /// waits for the end of boot. `label` names the console log in the
    /// root's scratch directory (one per boot).
    pub fn start(root: &'r RootFs, netns: &str, label: &str) -> Guest<'r> {
        // In a mount namespace of our own, see nspawn_launch.sh.
        assert!(
            Path::new("/run/systemd").is_dir(),
            "/run/systemd is missing on this host; systemd-nspawn needs it as a mount point"
        );
        let file_label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let console = root.scratch().join(format!("console-{file_label}.log"));
        let log = File::create(&console)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", console.display()));
        let turn = one_guest_at_a_time();
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh"])
            .arg(helper_script("nspawn_launch.sh"))
            .arg("--boot")
            .arg(format!("--directory={}", root.path().display()))
            .arg(format!("--machine=natbake-{}", support::unique_id()))
            .args(["--register=no", "--keep-unit"])
            // The guest's console (boot messages) goes to the log.
            .arg("--console=read-only")
            // Leave the image's own resolver, time zone and journal alone,
            // and the host's /var/log/journal too.
            .args(["--resolv-conf=off", "--timezone=off", "--link-journal=no"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            // An existing namespace gives the guest neither CAP_NET_ADMIN nor a
            // writable /proc/sys/net by default; a NAT instance needs both to
            // load rules and forward.
            .arg(format!("--network-namespace-path=/run/netns/{netns}"))
            .arg("--capability=CAP_NET_ADMIN")
            .env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "network")
            // No colour codes in the console log.
            .env("TERM", "dumb")
            .env("SYSTEMD_COLORS", "0");
        let nspawn = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start `{}`: {err}", support::describe(&cmd)));
        // From here on, a panic drops the guest, which stops nspawn.
        let mut guest = Guest {
            root,
            nspawn,
            init: ProcessMark { pid: 0, start: 0 },
            console,
            status: None,
            _turn: turn,
        };
        let pid = guest.find_init();
        guest.init = ProcessMark::of(pid)
            .unwrap_or_else(|| panic!("the guest's PID 1 ended at once\n{}", guest.console_log()));
        guest
    }

    /// The pid (as the host sees it) of the guest's PID 1: the child of
    /// systemd-nspawn that is pid 1 in its own pid namespace.
    fn find_init(&mut self) -> u32 {
        let nspawn_pid = self.nspawn.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.nspawn.try_wait().expect("wait for systemd-nspawn") {
                self.status = Some(status);
                panic!(
                    "systemd-nspawn ended before the guest started ({})\n{}",
                    support::status_text(&status),
                    self.console_log()
                );
            }
            if let Some(pid) = guest_init_of(nspawn_pid) {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "no guest init under systemd-nspawn (pid {nspawn_pid}) after 30 s\n{}",
                self.console_log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The guest's PID 1, in a form that can tell later whether that very
    /// process still exists (pids are reused).
    pub fn init_process(&self) -> ProcessMark {
        self.init
    }

    /// What the guest printed on its console so far.
    pub fn console_log(&self) -> String {
        let text = fs::read_to_string(&self.console).unwrap_or_default();
        format!(
            "--- console ({}) ---\n{}\n--- end of console ---",
            self.console.display(),
            text.trim_end()
        )
    }

    /// Runs a command inside the guest (all its namespaces, its root) with
    /// a plain environment.
    pub fn exec(&self, args: &[&str], limit: Duration) -> Finished {
        support::run_bounded(
            Command::new("nsenter")
                .args(["-t", &self.init.pid.to_string(), "-a", "--"])
                .args(args)
                .env_clear()
                .env("PATH", GUEST_PATH)
                .env("LC_ALL", "C.UTF-8")
                .env("SYSTEMD_COLORS", "0")
                .env("SYSTEMD_PAGER", "")
                .env("TERM", "dumb"),
            b"",
            limit,
        )
    }

    /// Waits until systemd in the guest has finished booting (every start-up
    /// job done, cloud-init included) and returns its state: `running`, or
    /// `degraded` when a unit failed.
    pub fn wait_until_booted(&mut self) -> String {
        let started = Instant::now();
        loop {
            if let Some(status) = self.nspawn.try_wait().expect("wait for systemd-nspawn") {
                self.status = Some(status);
                panic!(
                    "the guest stopped while booting ({})\n{}",
                    support::status_text(&status),
                    self.console_log()
                );
            }
            let left = BOOT_LIMIT.saturating_sub(started.elapsed());
            assert!(
                !left.is_zero(),
                "the guest did not finish booting within {BOOT_LIMIT:?}\n{}\n{}",
                self.exec(
                    &["systemctl", "list-jobs", "--no-pager"],
                    GUEST_COMMAND_LIMIT
                )
                .explain(),
                self.console_log()
            );
            // `--wait` waits out "starting". Before the guest's systemd has
            // set up /run/systemd/system the answer is "offline", and before
            // it listens the call fails with no answer: try again.
            let run = self.exec(&["systemctl", "is-system-running", "--wait"], left);
            let state = run.stdout.trim().to_string();
            match state.as_str() {
                "" | "offline" | "initializing" | "starting" => {
                    thread::sleep(Duration::from_millis(100))
                }
                _ => return state,
            }
        }
    }

    /// Reads what the checks look at.
    pub fn inspect(&self) -> GuestState {
        let text = |args: &[&str]| {
            self.exec(args, GUEST_COMMAND_LIMIT)
                .stdout
                .trim_end()
                .to_string()
        };
        let failed = text(&[
            "systemctl",
            "list-units",
            "--state=failed",
            "--no-legend",
            "--plain",
            "--all",
        ])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
        let cloud_init = if self.root.flavor() == Flavor::CloudInit {
            Some(text(&["cloud-init", "status", "--long"]))
        } else {
            None
        };
        GuestState {
            system: text(&["systemctl", "is-system-running"]),
            natbake: text(&["systemctl", "is-active", artifact::UNIT]),
            timers: text(&["systemctl", "list-timers", "--all", "--no-pager"]),
            failed,
            ip_forward: text(&["sysctl", "-n", "net.ipv4.ip_forward"]),
            iptables: text(&["iptables-save"]),
            // The unit's own output and systemd's lines about it, plus what
            // the script sent through `logger -t natbake`: journald can miss
            // the unit of a logger process that has already exited.
            journal: format!(
                "{}\n{}",
                text(&["journalctl", "-b", "--no-pager", "-u", artifact::UNIT]),
                text(&["journalctl", "-b", "--no-pager", "-t", "natbake"])
            ),
            cloud_init,
            warnings: text(&["journalctl", "-b", "--no-pager", "-p", "warning"]),
        }
    }

    /// Shuts the guest down cleanly (SIGTERM to systemd-nspawn, which asks
    /// the guest's systemd to power off) and returns nspawn's exit status.
    pub fn shutdown(mut self) -> ExitStatus {
        self.stop().expect("wait for systemd-nspawn")
    }

    /// Shuts the guest down and requires a clean exit of systemd-nspawn;
    /// returns its PID 1, to check later that it is gone.
    pub fn shut_down_cleanly(self, label: &str) -> ProcessMark {
        let init = self.init_process();
        let status = self.shutdown();
        assert!(
            status.success(),
            "{label}: systemd-nspawn ended with {} on shutdown",
            support::status_text(&status)
        );
        init
    }

    /// Stops the guest if it still runs. Never panics: it also runs from
    /// `drop` while a failed test unwinds.
    fn stop(&mut self) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        // The child is not reaped before this returns, so its pid cannot
        // have been given to another process.
        signal(self.nspawn.id(), "TERM");
        let deadline = Instant::now() + SHUTDOWN_LIMIT;
        loop {
            match self.nspawn.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    return self.status;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => break,
            }
        }
        // Killing the guest's PID 1 ends its whole pid namespace; nspawn
        // then has nothing left to wait for.
        eprintln!("boot: the guest did not stop within {SHUTDOWN_LIMIT:?}; killing it");
        if self.init.is_alive() {
            signal(self.init.pid, "KILL");
        }
        signal(self.nspawn.id(), "KILL");
        self.status = self.nspawn.wait().ok();
        self.status
    }
}

impl Drop for Guest<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The child of `nspawn_pid` that is pid 1 of its own pid namespace.
fn guest_init_of(nspawn_pid: u32) -> Option<u32> {
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let parent = field("PPid:");
        let nspid = field("NSpid:");
        if parent.first() == Some(&nspawn_pid.to_string().as_str())
            && nspid.len() >= 2
            && nspid.last() == Some(&"1")
        {
            return Some(pid);
        }
    }
    None
}

/// A process, told apart from a later one with the same pid by its start
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessMark {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: start time in clock ticks after boot.
    pub start: u64,
}

impl ProcessMark {
    /// The process now running as `pid`, if any.
    pub fn of(pid: u32) -> Option<ProcessMark> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may hold spaces;
        // count fields after its closing parenthesis, which is field 3.
        let after = &stat[stat.rfind(')')? + 1..];
        let start = after.split_whitespace().nth(22 - 3)?.parse().ok()?;
        Some(ProcessMark { pid, start })
    }

    pub fn is_alive(&self) -> bool {
        ProcessMark::of(self.pid) == Some(*self)
    }
}

/// Sends a signal to a process this test started; it may be gone already.
fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What a booted guest looks like to the checks.
#[derive(Debug)]
pub struct GuestState {
    /// `systemctl is-system-running`.
    pub system: String,
    /// `systemctl is-active natbake.service`.
    pub natbake: String,
    /// `systemctl list-timers --all`.
    pub timers: String,
    /// Units listed by `systemctl --failed`.
    pub failed: Vec<String>,
    /// `sysctl -n net.ipv4.ip_forward`.
    pub ip_forward: String,
    /// `iptables-save`.
    pub iptables: String,
    /// natbake's lines in the journal of this boot.
    pub journal: String,
    /// `cloud-init status --long`, for the cloud-init image.
    pub cloud_init: Option<String>,
    /// Warnings and errors of this boot, for failure messages.
    pub warnings: String,
}

impl GuestState {
    /// Everything, for a failure message.
    pub fn report(&self) -> String {
        format!(
            "system: {}\nnatbake.service: {}\ntimers:\n{}\nfailed units: {:?}\nip_forward: {}\n\
             --- iptables-save ---\n{}\n--- natbake journal ---\n{}\n\
             --- cloud-init ---\n{}\n--- warnings of this boot ---\n{}",
            self.system,
            self.natbake,
            self.timers,
            self.failed,
            self.ip_forward,
            self.iptables,
            self.journal,
            self.cloud_init
                .as_deref()
                .unwrap_or("(not a cloud-init image)"),
            self.warnings
        )
    }

    /// The NAT instance is up: boot finished with no failed unit,
    /// natbake.service active, the ruleset loaded and forwarding on.
    pub fn assert_nat_up(&self, when: &str) {
        let problems: Vec<&str> = [
            (
                self.system != "running",
                "boot did not end in state `running`",
            ),
            (!self.failed.is_empty(), "a unit failed"),
            (self.natbake != "active", "natbake.service is not active"),
            (
                !self.timers.contains(artifact::HEALTH_TIMER),
                "the health check's timer is not listed by systemctl list-timers",
            ),
            (self.ip_forward != "1", "IP forwarding is off"),
            (
                !self.iptables.contains(":NATBAKE-"),
                "natbake's chains are not loaded",
            ),
            (
                self.cloud_init
                    .as_deref()
                    .is_some_and(|s| !s.contains("status: done")),
                "cloud-init did not finish cleanly",
            ),
        ]
        .into_iter()
        .filter_map(|(bad, what)| bad.then_some(what))
        .collect();
        assert!(
            problems.is_empty(),
            "{when}: the NAT instance is not up: {}\n{}",
            problems.join("; "),
            self.report()
        );
    }
}

/// Panics if anything of this test is left on the host: a mount under its
/// image's directory, a process of its guests, or one of the namespaces
/// (call it after the lab is gone).
pub fn assert_host_clean(root: &RootFs, guests: &[ProcessMark], namespaces: &[String]) {
    let mounts = image::mounts_under(root.scratch());
    assert!(mounts.is_empty(), "mounts left on the host: {mounts:?}");
    for init in guests {
        // nspawn itself is reaped by wait(). When a pid namespace's PID 1
        // ends, the kernel kills everything else in it: PID 1 gone means
        // the whole guest is gone.
        assert!(
            !init.is_alive(),
            "guest PID 1 ({}) is still running",
            init.pid
        );
    }
    for ns in namespaces {
        assert!(
            !Path::new("/run/netns").join(ns).exists(),
            "network namespace {ns} is left behind"
        );
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Boots `root` in the network namespace `netns`, waits for the end of boot
/// and returns what it found, with the guest still running.
fn boot_and_inspect<'r>(root: &'r RootFs, netns: &str, label: &str) -> (Guest<'r>, GuestState) {
    let started = Instant::now();
    let mut guest = Guest::start(root, netns, label);
    guest.wait_until_booted();
    let state = guest.inspect();
    eprintln!("boot: {label}: booted in {:.1?}", started.elapsed());
    // Shown with a failure (the test harness keeps it otherwise).
    eprintln!("boot: {label}: guest state\n{}", state.report());
    (guest, state)
}

/// Boots `root` as the lab's NAT instance and runs every check of a
/// configured NAT instance against it: the guest's own view (boot done, no
/// failed unit, natbake.service active) and real traffic through it (the
/// network tests' checks, metadata used the IMDSv2 way). Then shuts it down
/// cleanly. Returns the guest's PID 1, to check later that it is gone.
fn boot_as_nat_instance(root: &RootFs, lab: &Lab, label: &str) -> ProcessMark {
    let (guest, state) = boot_and_inspect(root, &lab.ns.nat, label);
    state.assert_nat_up(label);
    let mut findings = Findings::new(format!("{label}: the booted image as the NAT instance"));
    check_all_up(lab, &mut findings);
    check_imds_v2_used(lab, &mut findings);
    findings.assert_clean(lab);
    guest.shut_down_cleanly(label)
}

/// All namespace names of a lab, to check afterwards that they are gone.
fn lab_namespaces(lab: &Lab) -> Vec<String> {
    lab.ns.all().into_iter().cloned().collect()
}

/// One boot in [`boot_twice`]: boots the image as the lab's NAT instance
/// with the given label, checks it, shuts it down cleanly and returns its
/// PID 1.
type Boot<'a> = &'a dyn Fn(&RootFs, &Lab, &str) -> ProcessMark;

/// A first boot and a reboot of `root` as the NAT instance of a lab for
/// `site`: boot, checks and clean shutdown (each of `boots` does these);
/// the lab's NAT namespace reset to a fresh kernel's state, since a real
/// instance's rules, connection tracking, forwarding and sysctls do not
/// survive a reboot; `between`, for what changes in the image while it is
/// down; the second boot; and, once the lab is gone, nothing of either
/// boot left on the host.
fn boot_twice(
    root: &RootFs,
    site: &RenderedSite,
    boots: [(&str, Boot); 2],
    between: impl FnOnce(),
) {
    let lab = Lab::start(&site.manifest, LabOptions::matching(&site.manifest));
    let namespaces = lab_namespaces(&lab);
    let [(first_label, first_boot), (second_label, second_boot)] = boots;
    let first = first_boot(root, &lab, first_label);
    lab.reset_nat(&site.site_dir.join("sysctl.conf"));
    between();
    let second = second_boot(root, &lab, second_label);
    drop(lab);
    assert_host_clean(root, &[first, second], &namespaces);
}

/// The Packer path. A minimal Debian 12 image, the rendered site baked in
/// by provision.sh exactly as the Packer step runs it, booted as the NAT
/// instance of the lab; then a reboot with fresh firewall state and
/// forwarding off, and the same checks again.
#[test]
fn baked_image_is_the_nat_instance_at_first_boot_and_after_a_reboot() {
    if !support::require_root("boot test: the baked Debian 12 image as the NAT instance") {
        return;
    }
    let started = Instant::now();
    let (root, site) = baked_image();
    boot_twice(
        &root,
        &site,
        [
            ("baked image, first boot", &boot_as_nat_instance),
            ("baked image, after a reboot", &boot_as_nat_instance),
        ],
        || {},
    );
    eprintln!("boot: baked image test took {:.1?}", started.elapsed());
}

/// The launch-template path. A stock Debian 12 image with cloud-init,
/// given the rendered user-data.yaml through the NoCloud datasource, is the
/// NAT instance at first boot and after a reboot (when cloud-init, seeing
/// the same instance, leaves it to natbake.service).
#[test]
fn stock_image_with_the_user_data_is_the_nat_instance_at_first_boot_and_after_a_reboot() {
    if !support::require_root("boot test: cloud-init user data on a stock Debian 12 image") {
        return;
    }
    let started = Instant::now();
    let site = render(&fixture_spec(FIXTURE));
    let root = image::fresh_root(Flavor::CloudInit);
    // The file the manifest names: plain, or gzip-compressed when the
    // plain file is over EC2's limit.
    let user_data = site
        .manifest
        .user_data
        .as_ref()
        .expect("the site has user data");
    seed_nocloud(
        &root,
        &site.site_dir.join(&user_data.file),
        "i-0natbake0boot0test",
    );
    boot_twice(
        &root,
        &site,
        [
            ("user data, first boot", &boot_as_nat_instance),
            ("user data, after a reboot", &boot_as_nat_instance),
        ],
        || {},
    );
    eprintln!("boot: cloud-init test took {:.1?}", started.elapsed());
}

/// An image whose installed ruleset is broken boots
/// with natbake.service failed and listed by `systemctl --failed`,
/// forwarding off (nothing gets through), and iptables-restore's reason in
/// the journal.
#[test]
fn broken_ruleset_fails_visibly_at_boot() {
    if !support::require_root("boot test: a broken ruleset fails visibly at boot") {
        return;
    }
    let (root, site) = baked_image();
    // Damage the installed ruleset after baking, as a bad edit would. A jump
    // to a missing chain gets past `iptables-restore --test`, so it is what
    // a check short of a real load would let through.
    let installed = root.join(install_path(artifact::RULES).trim_start_matches('/'));
    let rules = fs::read_to_string(&installed).expect("read installed rules");
    let (broken, line_no) = break_ruleset(&rules, "-A FORWARD -j NATBAKE-NO-SUCH-CHAIN");
    fs::write(&installed, broken).expect("write broken rules");
    // The boot script refuses a ruleset other than the one site.conf names
    // by digest; a broken template renders both, so the digest it carries
    // is that of the broken file.
    let conf = root.join(install_path(artifact::SITE_CONF).trim_start_matches('/'));
    let digest = support::run_stdout(Command::new("sha256sum").arg(&installed));
    let digest = digest.split_whitespace().next().expect("a digest");
    let text = fs::read_to_string(&conf).expect("read installed site.conf");
    let text: String = text
        .lines()
        .map(|l| match l.starts_with("rules_sha256=") {
            true => format!("rules_sha256={digest}\n"),
            false => format!("{l}\n"),
        })
        .collect();
    fs::write(&conf, text).expect("write installed site.conf");

    let lab = Lab::start(&site.manifest, LabOptions::matching(&site.manifest));
    let namespaces = lab_namespaces(&lab);
    let (guest, state) = boot_and_inspect(&root, &lab.ns.nat, "broken ruleset");
    let problems: Vec<&str> = [
        (state.natbake != "failed", "natbake.service is not failed"),
        (
            !state.failed.iter().any(|u| u == artifact::UNIT),
            "systemctl --failed does not list natbake.service",
        ),
        (state.ip_forward != "0", "IP forwarding is on"),
        (
            !state
                .journal
                .contains("Chain 'NATBAKE-NO-SUCH-CHAIN' does not exist"),
            "the journal does not give iptables-restore's reason",
        ),
    ]
    .into_iter()
    .filter_map(|(bad, what)| bad.then_some(what))
    .collect();
    assert!(
        problems.is_empty(),
        "broken ruleset (line {line_no}): {}\n{}",
        problems.join("; "),
        state.report()
    );
    let mut findings = Findings::new("broken ruleset: nothing is forwarded");
    check_forwarding_off(&lab, &mut findings);
    findings.assert_clean(&lab);

    let init = guest.shut_down_cleanly("broken ruleset");
    drop(lab);
    assert_host_clean(&root, &[init], &namespaces);
}

/// At bake time, provision.sh refuses a broken ruleset, both
/// one that `iptables-restore --test` rejects and one that only a real load
/// rejects.
#[test]
fn provision_refuses_a_broken_ruleset() {
    if !support::require_root("boot test: provision.sh refuses a broken ruleset") {
        return;
    }
    let out = ScratchDir::new("boot-refuse");
    let rendered = render(&fixture_spec(FIXTURE));
    let site = &rendered.site_dir;
    let rules = fs::read_to_string(site.join("rules.v4")).expect("read rules.v4");
    let root = image::fresh_root(Flavor::Plain);

    // Each broken line with what iptables-restore says about it. For a
    // missing chain it names the COMMIT line, so the chain is the reason.
    let cases = [
        (
            "this is not an iptables rule",
            "Error occurred at line: {line}",
        ),
        (
            "-A FORWARD -j NATBAKE-NO-SUCH-CHAIN",
            "Chain 'NATBAKE-NO-SUCH-CHAIN' does not exist",
        ),
    ];
    for (bad_line, reason) in cases {
        let (broken, line_no) = break_ruleset(&rules, bad_line);
        let reason = reason.replace("{line}", &line_no.to_string());
        let bad_site = out
            .path()
            .join("broken")
            .join(site.file_name().expect("site name"));
        if bad_site.exists() {
            fs::remove_dir_all(&bad_site).expect("clear broken site");
        }
        fs::create_dir_all(bad_site.parent().expect("parent")).expect("mkdir");
        support::run(Command::new("cp").arg("-r").arg(site).arg(&bad_site));
        fs::write(bad_site.join("rules.v4"), &broken).expect("write broken rules");
        // A broken template or override, not a damaged upload: the digests
        // match the broken file, so only the ruleset check can stop it.
        resum(&bad_site, "rules.v4");

        let run = provision(&root, &bad_site);
        assert!(
            !run.success(),
            "provision.sh baked a ruleset with `{bad_line}` at line {line_no}\n{}",
            run.explain()
        );
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(
            said.contains(&reason),
            "provision.sh refused `{bad_line}` (line {line_no}) without saying `{reason}`\n{}",
            run.explain()
        );
    }
    assert_host_clean(&root, &[], &[]);
}

/// Rewrites the SHA256SUMS line of `file` in `site` to match its content.
fn resum(site: &Path, file: &str) {
    let sums_path = site.join("SHA256SUMS");
    let sums = fs::read_to_string(&sums_path).expect("read SHA256SUMS");
    let digest = support::run_stdout(Command::new("sha256sum").arg(site.join(file)));
    let digest = digest.split_whitespace().next().expect("a digest");
    let updated: Vec<String> = sums
        .lines()
        .map(|line| match line.split_once("  ") {
            Some((_, name)) if name == file => format!("{digest}  {name}"),
            _ => line.to_string(),
        })
        .collect();
    fs::write(&sums_path, updated.join("\n") + "\n").expect("write SHA256SUMS");
}

/// Debian's nftables.service, changed the way an administrator might: it
/// starts once the network is online, a few seconds late, and is wanted by
/// multi-user.target (sysinit.target could not wait for it without an
/// ordering cycle). Nothing but natbake.service's own ordering can then
/// keep natbake from starting first and having its rules flushed.
fn late_nftables_unit(stock: &str) -> String {
    let mut unit = String::new();
    for line in stock.lines() {
        match line.split_once('=').map(|(k, _)| k) {
            Some("Before") => unit.push_str("Before=shutdown.target\n"),
            Some("Wants") => unit.push_str("Wants=network-online.target\n"),
            Some("WantedBy") => unit.push_str("WantedBy=multi-user.target\n"),
            Some("ExecStart") => {
                unit.push_str("ExecStartPre=/bin/sleep 3\n");
                unit.push_str(line);
                unit.push('\n');
            }
            _ => {
                unit.push_str(line);
                unit.push('\n');
                if line == "[Unit]" {
                    unit.push_str("After=network-online.target\n");
                }
            }
        }
    }
    unit
}

/// Boots `root` as the lab's NAT instance with nftables.service enabled and
/// checks, besides everything a NAT instance must show, that
/// natbake.service is ordered after nftables.service and ran after it.
fn boot_with_nftables(root: &RootFs, lab: &Lab, label: &str) -> ProcessMark {
    let (guest, state) = boot_and_inspect(root, &lab.ns.nat, label);
    let show = |unit: &str, property: &str| {
        let run = guest.exec(
            &["systemctl", "show", unit, "-p", property, "--value"],
            GUEST_COMMAND_LIMIT,
        );
        run.stdout.trim().to_string()
    };
    let nft_state = show("nftables.service", "ActiveState");
    let after = show(artifact::UNIT, "After");
    let nft_done: u64 = show("nftables.service", "ExecMainExitTimestampMonotonic")
        .parse()
        .unwrap_or(0);
    let natbake_began: u64 = show(artifact::UNIT, "ExecMainStartTimestampMonotonic")
        .parse()
        .unwrap_or(0);
    let nft_rules = guest
        .exec(&["nft", "list", "tables"], GUEST_COMMAND_LIMIT)
        .stdout;
    eprintln!(
        "boot: {label}: nftables.service {nft_state}, done at {nft_done} us; \
         natbake began at {natbake_began} us; natbake After={after}"
    );
    state.assert_nat_up(label);
    assert_eq!(
        nft_state,
        "active",
        "{label}: nftables.service did not run\n{}",
        state.report()
    );
    assert!(
        after.split_whitespace().any(|u| u == "nftables.service"),
        "{label}: natbake.service is not ordered after nftables.service: After={after}"
    );
    assert!(
        nft_done > 0 && natbake_began > nft_done,
        "{label}: natbake.service began at {natbake_began} us, before nftables.service \
         had finished ({nft_done} us)\n{}",
        state.report()
    );
    // nftables' own table is there too: it ran, and natbake's rules
    // outlived it.
    assert!(
        nft_rules.contains("table inet filter"),
        "{label}: nftables' table is missing: {nft_rules}"
    );
    let mut findings = Findings::new(format!("{label}: the booted image as the NAT instance"));
    check_all_up(lab, &mut findings);
    findings.assert_clean(lab);
    guest.shut_down_cleanly(label)
}

/// A firewall service that starts after natbake would flush its rules:
/// Debian's nftables.service begins with `flush ruleset`. With
/// nftables.service enabled, natbake's rules survive boot, because
/// natbake.service is ordered after it: first with Debian's unit as
/// shipped (which happens to start before the network), then with one
/// that starts late, after the network is online, where only natbake's
/// explicit ordering keeps it from running first.
#[test]
fn natbake_rules_survive_an_enabled_nftables_service() {
    if !support::require_root("boot test: natbake's rules survive nftables.service") {
        return;
    }
    let (root, site) = baked_image();
    let enable = in_chroot(
        root.path(),
        "systemctl enable nftables.service",
        GUEST_COMMAND_LIMIT,
    );
    assert!(enable.success(), "{}", enable.explain());
    let start_late = || {
        let stock = fs::read_to_string(root.join("lib/systemd/system/nftables.service"))
            .expect("Debian's nftables.service");
        fs::write(
            root.join("etc/systemd/system/nftables.service"),
            late_nftables_unit(&stock),
        )
        .expect("write the late nftables.service");
        let reenable = in_chroot(
            root.path(),
            "systemctl disable nftables.service && systemctl enable nftables.service",
            GUEST_COMMAND_LIMIT,
        );
        assert!(reenable.success(), "{}", reenable.explain());
    };
    boot_twice(
        &root,
        &site,
        [
            ("nftables.service as shipped", &boot_with_nftables),
            ("nftables.service starting late", &boot_with_nftables),
        ],
        start_late,
    );
}

/// The launch-template path when the first boot has no package mirror: a
/// stock image that lacks curl fails natbake.service at that boot (forwarding
/// off), and a later boot with a mirror installs curl before the unit runs
/// and is the NAT instance, with no failed unit.
#[test]
fn user_data_installs_a_missing_tool_at_a_later_boot_with_a_mirror() {
    if !support::require_root("boot test: a later boot installs what the first could not") {
        return;
    }
    let site = render(&fixture_spec(FIXTURE));
    let root = image::fresh_root(Flavor::CloudInit);
    crate::packages::remove_package(&root, "curl");
    let user_data = site
        .manifest
        .user_data
        .as_ref()
        .expect("the boot fixture has user data");
    seed_nocloud(
        &root,
        &site.site_dir.join(&user_data.file),
        "i-0natbake0no0mirror",
    );
    boot_twice(
        &root,
        &site,
        [
            ("first boot, no mirror", &boot_without_curl),
            ("later boot with a mirror", &boot_as_nat_instance),
        ],
        || crate::packages::use_local_repo(&root, &["curl"]),
    );
}

/// Boots `root`, whose apt source is a mirror the lab cannot reach and
/// which lacks curl: natbake.service must not be active, forwarding must
/// stay off, and the journal must say that curl is missing. Then shuts it
/// down cleanly.
fn boot_without_curl(root: &RootFs, lab: &Lab, label: &str) -> ProcessMark {
    let (guest, state) = boot_and_inspect(root, &lab.ns.nat, label);
    let problems: Vec<&str> = [
        (
            state.natbake == "active",
            "natbake.service is active without curl",
        ),
        (state.ip_forward != "0", "IP forwarding is on"),
        (
            !state.journal.contains("curl is not installed"),
            "the journal does not say that curl is missing",
        ),
    ]
    .into_iter()
    .filter_map(|(bad, what)| bad.then_some(what))
    .collect();
    assert!(
        problems.is_empty(),
        "{label}: {}\n{}",
        problems.join("; "),
        state.report()
    );
    guest.shut_down_cleanly(label)
}
