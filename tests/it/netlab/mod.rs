//! A VPC-shaped network lab built from Linux network namespaces, for proving
//! natbake's rendered artifacts with real traffic.
//!
//! ```text
//!                        "vpc" namespace: bridge br0 (the VPC's network)
//!      +----------------+----------------+----------------+
//!      |                |                |                |
//!   NAT instance    Internet gateway   private host     peer
//!   eth0 only       vpc0 | inet0       eth0             eth0
//!   default via     1:1 elastic IP     default via      a non-VPC source
//!   the gateway     <-> NAT private    the NAT          routed at the NAT
//!                          |
//!                   "internet" namespace: allowed and disallowed clients,
//!                   an Internet server (documentation addresses only)
//! ```
//!
//! The shape follows EC2: the NAT instance has ONE interface, so forwarded
//! traffic enters and leaves on it; the Internet gateway maps the elastic IP
//! 1:1 to the NAT's private address and drops traffic from every other
//! private address, which is why the NAT has to masquerade. The private host
//! carries every forward target address and runs socat services that answer
//! with the source address and port they see, and log every contact.
//!
//! Nothing here touches the host's network: every address, route, rule and
//! sysctl lives in namespaces the lab created, and [`Lab`]'s `Drop` kills the
//! lab's processes and deletes its namespaces, also when a test panics.
//!
//! The lab can be started without running `configure-pat.sh` (see
//! [`Lab::start`]), and the traffic checks are free functions taking the lab,
//! so a boot test can let a booted image configure the NAT namespace
//! (`/run/netns/<lab.ns.nat>`) and then run the same checks:
//!
//! ```text
//! let lab = Lab::start(&manifest, LabOptions::matching(&manifest));
//! // boot with --network-namespace-path=/run/netns/<lab.ns.nat> ...
//! let mut f = Findings::new("boot 1");
//! check_all_up(&lab, &mut f);
//! f.assert_clean(&lab);
//! lab.reset_nat(&sysctl_conf); // before the next "boot" in the same namespace
//! ```
//!
//! One concern per module:
//! - `plan`: every address and service, worked out from the manifest;
//! - `topology`: the namespaces, links, routes and the gateway's rules;
//! - `imds`: the metadata stub (`imds_stub.py`) and how it behaves;
//! - `traffic`: socat services, probes and open connections;
//! - `install`: the files a NAT instance gets, from the rendered folder or
//!   taken out of the user data (`extract_write_files.py`);
//! - `run`: configure-pat.sh run as installed, in a mount namespace with
//!   the lab's syslog receiver (`devlog_sink.py`) on /dev/log
//!   (`installed_run.sh`, `concurrent_runs.sh`);
//! - `nat`: looking at and resetting the NAT instance's kernel state;
//! - `checks`: [`Findings`] and the checks every NAT instance must pass;
//! - `health`: natbake-health and natbake-status run as installed, with
//!   /run/natbake kept between runs, and faults injected into the NAT.

mod checks;
mod health;
mod imds;
mod install;
mod nat;
mod plan;
mod run;
mod topology;
mod traffic;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use natbake::site::Proto;

pub use checks::{
    Findings, check_all_up, check_forward_policy, check_forwarding_off, check_imds_v2_used,
    check_sysctl_file, check_sysctls, egress_probes, forward_probes, lab_premises, peer_probes,
};
pub use imds::{Imds, LabOptions};
pub use install::{InstallFile, InstallSet};
pub use plan::{Plan, Role};
pub use topology::Namespaces;
pub use traffic::{Expect, Probe};

use crate::manifest::{Forward, Manifest};
use crate::support::{self, ScratchDir};

/// Where the metadata service lives, on EC2 and in the lab.
pub const IMDS_ADDRESS: &str = "169.254.169.254";

/// Port of the Internet server that private hosts talk to (TCP and UDP).
pub const INTERNET_SERVER_PORT: u16 = 8080;

/// Prints a timestamped progress line when NATBAKE_NETLAB_TRACE is set, for
/// finding out where a slow or stuck lab spends its time.
pub fn trace(what: &str) {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    if std::env::var_os("NATBAKE_NETLAB_TRACE").is_some() {
        let start = START.get_or_init(Instant::now);
        eprintln!("netlab {:>7.2?} {what}", start.elapsed());
    }
}

/// A process the lab started; killed (with its process group, which holds
/// socat's forked children) when dropped.
struct Background {
    what: String,
    child: Child,
}

impl Drop for Background {
    fn drop(&mut self) {
        support::kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

/// A running lab. Dropping it removes everything it created.
pub struct Lab {
    pub manifest: Manifest,
    pub plan: Plan,
    pub ns: Namespaces,
    pub options: LabOptions,
    /// MAC address of the NAT's eth0, as the metadata stub reports it.
    pub nat_mac: String,
    created: Vec<String>,
    procs: Vec<Background>,
    next_source_port: AtomicU32,
    runs: AtomicU32,
    python: String,
    keep_dir: AtomicBool,
    // Declared last so it is removed after processes and namespaces.
    dir: ScratchDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        trace(&format!("{}: removing the lab", self.manifest.site));
        // Processes first: a namespace with processes in it outlives its name.
        self.procs.clear();
        for ns in self.created.iter().rev() {
            let out = Command::new("ip")
                .args(["netns", "del", ns])
                .stdin(Stdio::null())
                .output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!(
                    "netlab: cannot delete namespace {ns}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(err) => eprintln!("netlab: cannot run `ip netns del {ns}`: {err}"),
            }
        }
        if self.keep_dir.load(Ordering::Relaxed) {
            eprintln!("netlab: kept {}", self.dir.path().display());
            self.dir.disarm();
        }
    }
}

/// A command run inside a namespace.
pub fn in_ns(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    cmd
}

fn python() -> String {
    // The system interpreter has PyYAML on Debian; a pyenv shim may not.
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

/// A helper script of the lab, run by path from the source tree.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/netlab")
        .join(name)
}

impl Lab {
    /// Builds the topology, starts the services and the metadata stub, and
    /// leaves the NAT instance unconfigured: no rules, forwarding off, and
    /// redirects on, like a freshly booted stock image.
    pub fn start(manifest: &Manifest, options: LabOptions) -> Lab {
        let id = support::unique_id();
        let name = |role: &str| format!("nbt{id}-{role}");
        let mut lab = Lab {
            manifest: manifest.clone(),
            plan: Plan::new(manifest),
            ns: Namespaces {
                vpc: name("vpc"),
                nat: name("nat"),
                igw: name("igw"),
                private: name("prv"),
                internet: name("inet"),
                peer: name("peer"),
            },
            options,
            nat_mac: String::new(),
            created: Vec::new(),
            procs: Vec::new(),
            next_source_port: AtomicU32::new(20000),
            runs: AtomicU32::new(0),
            python: python(),
            keep_dir: AtomicBool::new(false),
            dir: ScratchDir::new(&format!("lab-{}", manifest.site)),
        };
        // From here on, a panic drops `lab`, which removes whatever exists.
        trace(&format!("{}: building {}", lab.manifest.site, lab.ns.nat));
        lab.build_topology();
        trace(&format!("{}: topology built", lab.manifest.site));
        lab.start_processes();
        trace(&format!("{}: services up", lab.manifest.site));
        lab
    }

    /// The forwards the checks exercise, with their index in the manifest.
    pub fn tested_forwards(&self) -> impl Iterator<Item = (usize, &Forward)> {
        self.plan
            .tested
            .iter()
            .map(|&i| (i, &self.manifest.forwards[i]))
    }

    /// The lab's scratch directory (service logs, metadata log, syslog).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// With NATBAKE_NETLAB_KEEP set, the lab directory (service logs,
    /// script output, metadata and syslog) outlives the lab, for a
    /// post-mortem. The namespaces are still removed.
    pub fn keep_dir_if_asked(&self) {
        if std::env::var_os("NATBAKE_NETLAB_KEEP").is_some() {
            self.keep_dir.store(true, Ordering::Relaxed);
        }
    }

    fn sysctls(&self, ns: &str, settings: &[&str]) {
        // Only net.* keys: anything else is not namespaced and would change
        // the host.
        assert!(
            settings.iter().all(|s| s.starts_with("net.")),
            "non-net sysctl in the lab"
        );
        support::run(in_ns(ns, "sysctl").arg("-qw").args(settings));
    }

    fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir().join(name);
        fs::write(&path, content)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    fn spawn(&mut self, what: &str, ns: &str, program: &str, args: &[String]) {
        let log = self
            .dir()
            .join(format!("{}.out", what.replace([' ', '/', ':'], "_")));
        let out = fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        let mut cmd = in_ns(ns, program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", support::describe(&cmd)));
        self.procs.push(Background {
            what: what.to_owned(),
            child,
        });
    }

    /// Starts the lab's processes (services, metadata stub, syslog
    /// receiver) and waits until each is ready.
    fn start_processes(&mut self) {
        let mut expected = self.start_services();
        if let Some(imds) = self.start_imds_stub() {
            expected.push(imds);
        }
        let sink = self.start_syslog_sink();
        self.wait_until_ready(&expected, &sink);
    }

    /// Waits until every service listens (per `ss`) and the syslog socket
    /// exists; reports which process did not come up.
    fn wait_until_ready(&mut self, expected: &[(String, Proto, String)], sink: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let namespaces: BTreeSet<&String> = expected.iter().map(|(ns, _, _)| ns).collect();
        loop {
            let mut missing = Vec::new();
            for ns in &namespaces {
                let out = support::output_of(in_ns(ns, "ss").args(["-Hlntu"]));
                let listening = String::from_utf8_lossy(&out.stdout).into_owned();
                let seen: BTreeSet<(String, String)> = listening
                    .lines()
                    .filter_map(|l| {
                        let cols: Vec<&str> = l.split_whitespace().collect();
                        Some((cols.first()?.to_string(), cols.get(4)?.to_string()))
                    })
                    .collect();
                for (ens, proto, local) in expected.iter().filter(|(e, _, _)| e == *ns) {
                    if !seen.contains(&(proto.name().to_owned(), local.clone())) {
                        missing.push(format!("{} {local} in {ens}", proto.name()));
                    }
                }
            }
            if !sink.exists() {
                missing.push("syslog socket".into());
            }
            if missing.is_empty() {
                return;
            }
            trace(&format!("waiting for {}", missing.join(", ")));
            if Instant::now() > deadline {
                let exited: Vec<String> = self
                    .procs
                    .iter_mut()
                    .filter_map(|p| Some(format!("{} ({})", p.what, p.child.try_wait().ok()??)))
                    .collect();
                panic!(
                    "lab services did not come up: {}\nexited: {}\n(see *.out in {})",
                    missing.join(", "),
                    exited.join(", "),
                    self.dir().display()
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
}
