//! The failover lab: the network lab (`netlab`) with two NAT instances, a
//! floating interface that moves between them as an EC2 API says, and that
//! API (moto behind a thin proxy) inside the lab.
//!
//! ```text
//!   "vpc" bridge ── nat0 ── instance A (lab.ns.nat)   eth0 = its own primary address
//!        │     ── natb0 ─ instance B                   eth0 = its own primary address
//!        │     ── eni0 ── ens6, the floating interface: in A, in B, or parked
//!        │                 (its MAC is the interface's in moto; its address
//!        │                 is the one the gateway maps 1:1 to the elastic IP)
//!        │     ── api0 ── "api": moto_server on 127.0.0.1:5000, the proxy on
//!        │                 <api address>:80 (a VPC endpoint, to the scripts),
//!        │                 and the fabric that moves ens6
//!        └── igw0 ── the Internet gateway, private host, peer (as in netlab)
//! ```
//!
//! Each instance namespace has its own metadata stub (identity, placement,
//! role credentials, the floating interface's subnet). The scripts reach the
//! API through `/etc/natbake/aws.env`, installed with the rendered files.
//! Nothing listens outside the lab's namespaces.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use natbake::render::{artifact, install_path};
use serde_json::{Value, json};

use crate::manifest::Manifest;
use crate::netlab::{
    Findings, IMDS_ADDRESS, Imds, InstallFile, InstallSet, Lab, LabOptions, Probe, egress_probes,
    forward_probes, in_ns,
};
use crate::support::{self, Finished};

/// How the lab's EC2 behaves around an attachment.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seconds after its device appears before an attached interface has
    /// instance metadata (EC2 publishes it a while after the device).
    pub metadata_lag: f64,
    /// The device arrives in an instance as `eth1` and is renamed `ens6`
    /// this many seconds later, as udev renames a new device.
    pub rename_after: Option<f64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            metadata_lag: 1.0,
            rename_after: None,
        }
    }
}

pub const REGION: &str = "us-east-1";
pub const AZ: &str = "us-east-1a";
const ROLE: &str = "natbake-lab-instance";
const MOTO_PORT: u16 = 5000;

/// A helper script of the test suite, run by its path.
fn helper(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it")
        .join(name)
        .display()
        .to_string()
}

/// The moto virtual environment scripts/test.sh makes.
pub fn moto_venv() -> PathBuf {
    if let Some(v) = std::env::var_os("NATBAKE_MOTO_VENV") {
        return v.into();
    }
    let cache = std::env::var_os("NATBAKE_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    cache.join("moto-5.2.5-venv")
}

/// A process of the failover lab, killed with its group when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        support::kill_group(self.0.id());
        let _ = self.0.wait();
    }
}

/// Which NAT instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    A,
    B,
}

pub struct FailoverLab {
    // Dropped first: processes, then namespaces, then the network lab.
    procs: Vec<Proc>,
    imds: BTreeMap<Host, Proc>,
    created: Vec<String>,
    pub ns_b: String,
    pub ns_api: String,
    pub api: Ipv4Addr,
    pub primary: BTreeMap<Host, Ipv4Addr>,
    pub eni: String,
    pub eni_mac: String,
    pub group: String,
    /// The instance id each host runs as now.
    pub instance: BTreeMap<Host, String>,
    pub files: InstallSet,
    python: PathBuf,
    options: Options,
    /// More arguments for each instance's metadata stub (see imds_stub.py).
    imds_args: BTreeMap<Host, Vec<String>>,
    pub lab: Lab,
}

impl Drop for FailoverLab {
    fn drop(&mut self) {
        self.procs.clear();
        self.imds.clear();
        for ns in self.created.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdin(Stdio::null())
                .status();
        }
    }
}

fn batch(ns: &str, lines: &[String]) {
    let done = support::run_bounded(
        Command::new("ip").args(["-n", ns, "-batch", "-"]),
        lines.join("\n").as_bytes(),
        Duration::from_secs(20),
    );
    assert!(done.success(), "ip batch in {ns}: {}", done.explain());
}

impl FailoverLab {
    pub fn start(site_dir: &Path) -> FailoverLab {
        FailoverLab::start_with(site_dir, Options::default())
    }

    pub fn start_with(site_dir: &Path, options: Options) -> FailoverLab {
        let python = moto_venv().join("bin/python3");
        assert!(
            python.exists(),
            "the moto virtual environment is missing at {}: run scripts/test.sh, which makes it",
            moto_venv().display()
        );
        let manifest = Manifest::load(site_dir);
        let lab = Lab::start(
            &manifest,
            LabOptions {
                imds: Imds::Absent,
                imds_faults: Vec::new(),
            },
        );
        let vpc = manifest.vpc_cidrs[0];
        let p = lab.plan.clone();
        // EC2's router is the subnet's first host; the floating interface's
        // configuration derives its gateway from that.
        assert_eq!(
            u32::from(p.igw_private),
            u32::from(vpc.network()) + 1,
            "the lab's gateway must be the subnet's first host"
        );
        let mut used: Vec<Ipv4Addr> = vec![p.igw_private, p.nat_private, p.private_self];
        used.extend(manifest.forwards.iter().map(|f| f.target_address));
        let mut free = (200u32..).map(|k| Ipv4Addr::from(u32::from(vpc.network()) + k));
        let mut next = || {
            free.find(|a| !used.contains(a))
                .expect("a free VPC address")
        };
        let (prim_a, prim_b, api) = (next(), next(), next());
        let prefix = format!("{}-", lab.ns.nat.trim_end_matches("-nat"));
        let mut fl = FailoverLab {
            procs: Vec::new(),
            imds: BTreeMap::new(),
            created: Vec::new(),
            ns_b: format!("{prefix}natb"),
            ns_api: format!("{prefix}api"),
            api,
            primary: BTreeMap::from([(Host::A, prim_a), (Host::B, prim_b)]),
            eni: String::new(),
            eni_mac: String::new(),
            group: String::new(),
            instance: BTreeMap::new(),
            files: InstallSet::from_site_dir(site_dir, &manifest),
            python,
            options,
            imds_args: BTreeMap::new(),
            lab,
        };
        fl.build(vpc);
        fl.start_api();
        fl
    }

    fn ns(&self, host: Host) -> &str {
        match host {
            Host::A => &self.lab.ns.nat,
            Host::B => &self.ns_b,
        }
    }

    fn add_ns(&mut self, name: &str) {
        support::run(Command::new("ip").args(["netns", "add", name]));
        self.created.push(name.to_owned());
    }

    /// An instance's own network: the primary interface with its own
    /// address, the default route through the gateway at metric 100 (as
    /// cloud-init writes it on Ubuntu and Debian), metadata on loopback.
    fn instance_lines(&self, host: Host) -> Vec<String> {
        let a = self.primary[&host];
        let p = &self.lab.plan;
        let mut lines = vec![
            "link set lo up".to_owned(),
            "link set eth0 up".to_owned(),
            format!("addr add {a}/32 dev eth0"),
            format!("addr add {IMDS_ADDRESS}/32 dev lo"),
        ];
        for c in &self.lab.manifest.vpc_cidrs {
            lines.push(format!("route add {c} dev eth0 src {a}"));
        }
        lines.push(format!(
            "route add default via {} dev eth0 src {a} metric 100",
            p.igw_private
        ));
        lines.push(format!("route add {}/32 dev eth0 src {a}", p.peer));
        lines
    }

    fn build(&mut self, _vpc: natbake::cidr::Cidr) {
        let (ns_b, ns_api) = (self.ns_b.clone(), self.ns_api.clone());
        self.add_ns(&ns_b);
        self.add_ns(&ns_api);
        for ns in [&ns_b, &ns_api] {
            support::run(in_ns(ns, "sysctl").args([
                "-qw",
                "net.ipv4.ip_forward=0",
                "net.ipv4.conf.all.send_redirects=1",
                "net.ipv4.conf.default.send_redirects=1",
            ]));
            support::run(in_ns(ns, "sysctl").args([
                "-qew",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]));
        }
        let vpc_ns = self.lab.ns.vpc.clone();
        batch(
            &vpc_ns,
            &[
                format!("link add natb0 type veth peer name eth0 netns {ns_b}"),
                "link set natb0 master br0 up".into(),
                format!("link add api0 type veth peer name eth0 netns {ns_api}"),
                "link set api0 master br0 up".into(),
                format!("link add eni0 type veth peer name ens6 netns {ns_api}"),
                "link set eni0 master br0 up".into(),
            ],
        );
        // Instance A: the network lab's NAT, moved off the address that
        // now belongs to the floating interface.
        let mut a = vec![
            "addr flush dev eth0".to_owned(),
            "route flush table main".to_owned(),
        ];
        a.extend(
            self.instance_lines(Host::A)
                .into_iter()
                .filter(|l| l != "link set lo up"),
        );
        batch(&self.lab.ns.nat.clone(), &a);
        batch(&ns_b, &self.instance_lines(Host::B));
        let mut api = vec![
            "link set lo up".to_owned(),
            "link set eth0 up".to_owned(),
            format!("addr add {}/32 dev eth0", self.api),
        ];
        for c in &self.lab.manifest.vpc_cidrs {
            api.push(format!("route add {c} dev eth0 src {}", self.api));
        }
        batch(&ns_api, &api);
    }

    fn spawn(&self, what: &str, ns: &str, program: &Path, args: &[String]) -> Proc {
        let log = self.lab.dir().join(format!("{what}.out"));
        let out = fs::File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone log");
        let mut cmd = in_ns(ns, &program.display().to_string());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        Proc(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {what}: {e}")),
        )
    }

    fn script(&self, name: &str, text: &str) -> String {
        let path = self.lab.dir().join(name);
        fs::write(&path, text).expect("write helper script");
        path.display().to_string()
    }

    /// Runs `aws_lab.py` against moto; returns its JSON answer.
    pub fn aws(&self, args: &[&str]) -> Value {
        let script = helper("failover/aws_lab.py");
        let done = support::run_bounded(
            in_ns(&self.ns_api, &self.python.display().to_string())
                .arg(&script)
                .args(args),
            b"",
            Duration::from_secs(60),
        );
        assert!(done.success(), "aws_lab.py {args:?}: {}", done.explain());
        serde_json::from_str(done.stdout.trim()).expect("aws_lab.py prints JSON")
    }

    fn wait_listening(&self, ns: &str, local: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = support::output_of(in_ns(ns, "ss").args(["-Hlnt"]));
            if String::from_utf8_lossy(&out.stdout).contains(local) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nothing listens on {local} in {ns} (see *.out in {})",
                self.lab.dir().display()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn start_api(&mut self) {
        let venv = moto_venv();
        let ns_api = self.ns_api.clone();
        let moto = self.spawn(
            "moto",
            &ns_api,
            &venv.join("bin/moto_server"),
            &[
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                MOTO_PORT.to_string(),
            ],
        );
        self.procs.push(moto);
        self.wait_listening(&ns_api, &format!("127.0.0.1:{MOTO_PORT}"));
        let floating = self.lab.plan.nat_private.to_string();
        let vpc = self.lab.manifest.vpc_cidrs[0].to_string();
        let site = self.lab.manifest.site.clone();
        let setup = self.aws(&[
            "setup",
            "--site",
            &site,
            "--cidr",
            &vpc,
            "--address",
            &floating,
            "--az",
            AZ,
        ]);
        let field = |k: &str| setup[k].as_str().expect("setup field").to_owned();
        self.eni = field("eni");
        self.eni_mac = field("mac");
        self.group = field("group");
        self.instance.insert(Host::A, field("instance"));
        assert_eq!(field("address"), floating);
        batch(
            &ns_api,
            &[format!("link set dev ens6 address {}", self.eni_mac)],
        );
        let proxy = helper("failover/aws_proxy.py");
        let proxy_log = self.lab.dir().join("api.log").display().to_string();
        let p = self.spawn(
            "proxy",
            &ns_api,
            &self.python.clone(),
            &[
                proxy,
                "--bind".into(),
                self.api.to_string(),
                "--port".into(),
                "80".into(),
                "--moto".into(),
                format!("http://127.0.0.1:{MOTO_PORT}"),
                "--log".into(),
                proxy_log,
            ],
        );
        self.procs.push(p);
        self.write_map();
        let fabric = helper("failover/aws_lab.py");
        let mut args = vec![
            fabric,
            "fabric".into(),
            "--eni".into(),
            self.eni.clone(),
            "--device".into(),
            "ens6".into(),
            "--park".into(),
            ns_api.clone(),
            "--map".into(),
            self.lab.dir().join("instances.map").display().to_string(),
            "--log".into(),
            self.lab.dir().join("fabric.log").display().to_string(),
        ];
        if let Some(after) = self.options.rename_after {
            args.extend([
                "--kernel-name".into(),
                "eth1".into(),
                "--rename-after".into(),
                after.to_string(),
            ]);
        }
        let f = self.spawn("fabric", &ns_api, &self.python.clone(), &args);
        self.procs.push(f);
        self.wait_listening(&ns_api, &format!("{}:80", self.api));
        let env = self.script(
            "aws.env",
            &format!(
                "NATBAKE_EC2_ENDPOINT=http://{api}/\nNATBAKE_AUTOSCALING_ENDPOINT=http://{api}/\nNATBAKE_CLOUDWATCH_ENDPOINT=http://{api}/\nNATBAKE_FLOATING_CONFIG=ip\n",
                api = self.api
            ),
        );
        self.files.files.push(InstallFile {
            install_path: "/etc/natbake/aws.env".into(),
            mode: "0644".into(),
            source: env.into(),
        });
        self.files
            .origin
            .push_str(" with the lab's /etc/natbake/aws.env");
        self.start_imds(Host::A);
    }

    /// Which namespace each instance id is, for the fabric.
    fn write_map(&self) {
        let text: String = self
            .instance
            .iter()
            .map(|(h, id)| format!("{id} {}\n", self.ns(*h)))
            .collect();
        let path = self.lab.dir().join("instances.map");
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, text).expect("write map");
        fs::rename(tmp, path).expect("replace map");
    }

    fn start_imds(&mut self, host: Host) {
        self.imds.remove(&host);
        let ns = self.ns(host).to_owned();
        let mac = support::run_stdout(in_ns(&ns, "cat").arg("/sys/class/net/eth0/address"))
            .trim()
            .to_owned();
        let script = helper("netlab/imds_stub.py");
        let id = self.instance[&host].clone();
        let vpc = self.lab.manifest.vpc_cidrs[0].to_string();
        let mut args = vec![
            script,
            "--bind".into(),
            IMDS_ADDRESS.into(),
            "--port".into(),
            "80".into(),
            "--mac".into(),
            mac,
            "--local-ipv4".into(),
            self.primary[&host].to_string(),
            "--log".into(),
            self.lab
                .dir()
                .join(format!("imds-{host:?}.log"))
                .display()
                .to_string(),
            "--instance-id".into(),
            id,
            "--region".into(),
            REGION.into(),
            "--az".into(),
            AZ.into(),
            "--role".into(),
            ROLE.into(),
            "--interface".into(),
            format!("{}={vpc}={}", self.eni_mac, self.eni),
            "--attach-lag".into(),
            self.options.metadata_lag.to_string(),
        ];
        args.extend(self.imds_args.get(&host).cloned().unwrap_or_default());
        for c in &self.lab.manifest.vpc_cidrs {
            args.push("--cidr".into());
            args.push(c.to_string());
        }
        let proc = self.spawn(
            &format!("imds-{host:?}"),
            &ns,
            Path::new("/usr/bin/python3"),
            &args,
        );
        self.imds.insert(host, proc);
        self.wait_listening(&ns, &format!("{IMDS_ADDRESS}:80"));
    }

    /// Starts `host`'s metadata stub again with these more arguments (see
    /// imds_stub.py), as for a new instance.
    pub fn restart_imds(&mut self, host: Host, args: &[&str]) {
        self.imds_args
            .insert(host, args.iter().map(|a| (*a).to_owned()).collect());
        self.start_imds(host);
    }

    /// A new instance of the group booting in `host`'s namespace: the group
    /// launches it (desired capacity one more), its metadata says who it
    /// is, and its namespace starts as a fresh instance's.
    pub fn launch(&mut self, host: Host) -> String {
        let id = self.op("launch", json!({"group": self.group}))["instance"]
            .as_str()
            .expect("instance id")
            .to_owned();
        self.instance.insert(host, id.clone());
        self.write_map();
        self.fresh(host);
        self.start_imds(host);
        id
    }

    /// The namespace of `host` as after a boot: no rules, forwarding off,
    /// the floating interface (if it is there) unconfigured.
    pub fn fresh(&self, host: Host) {
        let ns = self.ns(host);
        let reset = "for t in filter nat mangle raw; do iptables -t $t -F; iptables -t $t -X; done; \
                     iptables -P FORWARD ACCEPT; \
                     ip link show ens6 >/dev/null 2>&1 && { ip addr flush dev ens6; ip link set ens6 down; }; \
                     sysctl -qw net.ipv4.ip_forward=0; conntrack -F >/dev/null 2>&1; true";
        support::run(in_ns(ns, "sh").args(["-c", reset]));
    }

    /// Boots `host`: runs the installed configure-pat.sh there.
    pub fn boot(&self, host: Host) -> Finished {
        self.lab.run_configure_pat_in(self.ns(host), &self.files)
    }

    /// The same, with the site's wait for the interface (site.conf's
    /// attach_timeout) cut to `seconds` (the spec allows 30 at least;
    /// races need many short runs).
    pub fn boot_with_timeout(&self, host: Host, seconds: u32) -> Finished {
        let path = install_path(artifact::SITE_CONF);
        let text = fs::read_to_string(&self.files.get(path).expect("site.conf").source)
            .expect("read site.conf");
        let line = text
            .lines()
            .find(|l| l.starts_with("attach_timeout="))
            .expect("attach_timeout in site.conf")
            .to_owned();
        let copy = self.lab.dir().join(format!("site-{seconds}.conf"));
        fs::write(
            &copy,
            text.replace(&line, &format!("attach_timeout={seconds}")),
        )
        .expect("write the shortened site.conf");
        let files = self.files.with_source(path, &copy);
        self.lab.run_configure_pat_in(self.ns(host), &files)
    }

    /// The instance's health as its Auto Scaling group records it.
    pub fn health(&self, host: Host) -> String {
        self.op("health", json!({"instance": self.instance[&host]}))["health"]
            .as_str()
            .unwrap_or("none")
            .to_owned()
    }

    /// What CloudWatch received: (metric name, dimensions as
    /// `Name=Value` joined by `,`) to (sum, number of data points).
    pub fn metrics(&self) -> BTreeMap<(String, String), (f64, u64)> {
        self.metrics_where(json!({"namespace": "natbake"}))
    }

    /// [`FailoverLab::metrics`] of the site and of `forwards` only.
    pub fn metrics_of(&self, forwards: &[String]) -> BTreeMap<(String, String), (f64, u64)> {
        self.metrics_where(json!({"namespace": "natbake", "forwards": forwards}))
    }

    fn metrics_where(&self, args: Value) -> BTreeMap<(String, String), (f64, u64)> {
        let got = self.op("metrics", args);
        got["metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .map(|m| {
                let dims = m["dimensions"]
                    .as_object()
                    .expect("dimensions")
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",");
                (
                    (m["name"].as_str().unwrap_or("").to_owned(), dims),
                    (
                        m["sum"].as_f64().unwrap_or(f64::NAN),
                        m["count"].as_f64().unwrap_or(0.0) as u64,
                    ),
                )
            })
            .collect()
    }

    /// Which instance holds the interface, per the API.
    pub fn holder(&self) -> Option<String> {
        self.op("interface", json!({"eni": self.eni}))["holder"]
            .as_str()
            .map(str::to_owned)
    }

    /// Attaches the interface to `host`'s instance straight through moto,
    /// as an instance that booted earlier would have.
    pub fn give_to(&self, host: Host) {
        self.op(
            "attach",
            json!({"eni": self.eni, "instance": self.instance[&host]}),
        );
        self.wait_device(Some(host));
    }

    /// Detaches the interface straight through moto.
    pub fn release(&self) {
        self.op("detach", json!({"eni": self.eni}));
    }

    /// Waits until the fabric has put the device where the API says.
    pub fn wait_device(&self, host: Option<Host>) {
        let ns = host.map_or(self.ns_api.as_str(), |h| self.ns(h));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !support::output_of(in_ns(ns, "ip").args(["link", "show", "ens6"]))
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "the fabric did not move ens6 to {ns}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// A control call to the proxy, from inside the api namespace; returns
    /// its JSON answer.
    pub fn control(&self, path: &str, json: &str) -> Value {
        let out = support::run_stdout(in_ns(&self.ns_api, "curl").args([
            "-sS",
            "--fail-with-body",
            "--noproxy",
            "*",
            "-m",
            "30",
            "--data",
            json,
            &format!("http://{}/__lab/{path}", self.api),
        ]));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("control {path}: {out:?}: {e}"))
    }

    /// One of aws_lab.py's operations, run by the proxy.
    pub fn op(&self, name: &str, args: Value) -> Value {
        self.control(name, &args.to_string())
    }

    /// Terminates `host`'s instance: EC2 shows it shutting down and its
    /// interface detaching for `detach_after` seconds, then detached. The
    /// namespace goes quiet (its primary interface down), as a dead
    /// instance does.
    pub fn terminate(&self, host: Host, detach_after: f64) {
        self.control(
            "terminate",
            &format!(
                r#"{{"instance": "{}", "detach_after": {detach_after}}}"#,
                self.instance[&host]
            ),
        );
        support::run(in_ns(self.ns(host), "sysctl").args(["-qw", "net.ipv4.ip_forward=0"]));
    }

    /// Arms the proxy's faults: `[{"action", "count", "kind"}]`.
    pub fn faults(&self, json: &str) {
        self.control("faults", json);
    }

    /// The API calls the proxy saw: `(Action, HTTP status)`.
    pub fn api_calls(&self) -> Vec<(String, String)> {
        fs::read_to_string(self.lab.dir().join("api.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace().skip(1);
                let (a, s) = (w.next()?, w.next()?);
                (a != "control" && a != "detached-after-termination")
                    .then(|| (a.to_owned(), s.to_owned()))
            })
            .collect()
    }

    /// ip_forward in `host`'s namespace.
    pub fn forwarding(&self, host: Host) -> String {
        support::run_stdout(in_ns(self.ns(host), "cat").arg("/proc/sys/net/ipv4/ip_forward"))
            .trim()
            .to_owned()
    }

    /// Every forward and egress through the elastic IP works, and `host`
    /// forwards.
    pub fn check_serving(&self, host: Host, f: &mut Findings) {
        let fwd = self.forwarding(host);
        f.check(fwd == "1", format!("{host:?}: ip_forward is {fwd}"));
        let mut probes: Vec<Probe> = forward_probes(&self.lab);
        probes.extend(egress_probes(&self.lab));
        self.lab.run_probes(&probes, f);
    }

    /// Nothing reaches anything through the elastic IP, and `host` does not
    /// forward.
    pub fn check_not_serving(&self, host: Host, f: &mut Findings) {
        let fwd = self.forwarding(host);
        f.check(
            fwd == "0",
            format!("{host:?}: ip_forward is {fwd}, should be 0"),
        );
        let probes: Vec<Probe> = forward_probes(&self.lab)
            .into_iter()
            .chain(egress_probes(&self.lab))
            .map(|mut p| {
                p.expect = crate::netlab::Expect::Nothing;
                p
            })
            .collect();
        self.lab.run_probes(&probes, f);
    }

    /// Everything needed to understand a failure.
    pub fn diagnostics(&self, run: &Finished) -> String {
        let read = |n: &str| fs::read_to_string(self.lab.dir().join(n)).unwrap_or_default();
        format!(
            "{}\n--- api.log ---\n{}\n--- fabric.log ---\n{}\n--- lab ---\n{}",
            run.explain(),
            read("api.log"),
            read("fabric.log"),
            self.lab.diagnostics()
        )
    }
}
