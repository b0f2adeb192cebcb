//! The harness of the shell unit tests: a rendered site, a scratch folder
//! with stand-ins for the commands that need root, and one `bash` run that
//! loads the site's library (`prelude.sh`), runs a few lines and reports
//! their output and exit status. No root, no namespace: the stand-ins
//! (`stub.sh`) answer from files the test writes and record every call.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::fixtures::{fixture_spec, natbake};
use crate::support::{self, ScratchDir};

/// The awk the instance's scripts get: Debian and Ubuntu ship mawk,
/// Amazon Linux gawk. Every function is run under both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Awk {
    Mawk,
    Gawk,
}

impl Awk {
    pub const ALL: [Awk; 2] = [Awk::Mawk, Awk::Gawk];

    fn path(self) -> &'static Path {
        let (path, package) = match self {
            Awk::Mawk => ("/usr/bin/mawk", "mawk"),
            Awk::Gawk => ("/usr/bin/gawk", "gawk"),
        };
        let path = Path::new(path);
        assert!(
            path.exists(),
            "{} is needed for the shell unit tests: apt-get install {package} \
             (scripts/test.sh installs it)",
            path.display()
        );
        path
    }
}

/// The commands that get a stand-in: everything the library runs that
/// needs root or reaches outside (the firewall, sets, sysctls, routes,
/// syslog, namespaces, the NIC's counters).
const STUBBED: &[&str] = &[
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ipset",
    "sysctl",
    "ip",
    "logger",
    "unshare",
    "conntrack",
    "ethtool",
    "nsenter",
    "curl",
];

/// The instance scripts that are programs (the others are libraries).
const PROGRAMS: &[&str] = &["configure-pat.sh", "natbake-health.sh", "natbake-status.sh"];

/// The folder of this file's helpers (`stub.sh`, `prelude.sh`).
pub fn helpers() -> PathBuf {
    crate::fixtures::repo().join("tests/it/shell_units")
}

/// Environment variable naming a folder of templates to render with
/// (`--templates`) instead of the embedded ones. `mutants.py` breaks one
/// function at a time through it or [`INSTANCE_ENV`], to see the tests
/// catch it.
pub const TEMPLATES_ENV: &str = "NATBAKE_UNIT_TEMPLATES";
/// Environment variable naming a folder of instance scripts that replace
/// the rendered site's copies of the same name.
pub const INSTANCE_ENV: &str = "NATBAKE_UNIT_INSTANCE";

/// The site folder of fixture `name` (tests/fixtures/valid), rendered once
/// per test process with the natbake binary into the target's scratch
/// space; folders left by processes that are gone are removed first.
pub fn site(name: &str) -> PathBuf {
    static SITES: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut sites = SITES.get_or_init(Default::default).lock().unwrap();
    if let Some(dir) = sites.get(name) {
        return dir.clone();
    }
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shell-units");
    if sites.is_empty() {
        // Earlier runs' renders: kept only while their process lives.
        for entry in fs::read_dir(&base).into_iter().flatten().flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !Path::new("/proc").join(&pid).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let out = base.join(std::process::id().to_string()).join(name);
    let _ = fs::remove_dir_all(&out);
    let mut render = natbake();
    render
        .arg("render")
        .arg(fixture_spec(name))
        .arg("-o")
        .arg(&out);
    if let Some(dir) = std::env::var_os(TEMPLATES_ENV) {
        render.arg("--templates").arg(dir);
    }
    support::run(&mut render);
    let dir = fs::read_dir(&out)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", out.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("natbake render {name} wrote no site folder"));
    if let Some(scripts) = std::env::var_os(INSTANCE_ENV) {
        for entry in fs::read_dir(&scripts).into_iter().flatten().flatten() {
            let installed = dir.join(entry.file_name());
            if installed.exists() {
                fs::copy(entry.path(), &installed).unwrap();
            }
        }
    }
    sites.insert(name.to_owned(), dir.clone());
    dir
}

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Ran {
    /// The exit status; None when killed (time limit or signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    explained: String,
}

impl Ran {
    /// Everything about the run, for assertion messages.
    pub fn explain(&self) -> &str {
        &self.explained
    }

    /// Stdout, after checking the run exited with `code`.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{}", self.explained);
        &self.stdout
    }

    /// Stdout's lines, after checking the run exited with `code`.
    #[track_caller]
    pub fn lines(&self, code: i32) -> Vec<&str> {
        self.expect(code).lines().collect()
    }
}

/// One test's shell: the site's library under one awk, stand-ins for the
/// root commands, and a scratch folder (`$SCRATCH`) removed afterwards.
pub struct Shell {
    scratch: ScratchDir,
    site: PathBuf,
    awk: Awk,
    load: Vec<String>,
}

impl Shell {
    /// A shell with the library of fixture `fixture` under `awk`.
    pub fn new(fixture: &str, awk: Awk) -> Shell {
        let site = site(fixture);
        let scratch = ScratchDir::new("shell-unit");
        let bin = scratch.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(scratch.path().join("state")).unwrap();
        for dir in ["host", "scratch"] {
            fs::create_dir_all(scratch.path().join("stubs").join(dir)).unwrap();
        }
        symlink(awk.path(), bin.join("awk")).unwrap();
        let stub = helpers().join("stub.sh");
        for name in STUBBED {
            symlink(&stub, bin.join(name)).unwrap();
        }
        Shell {
            scratch,
            site,
            awk,
            load: Vec::new(),
        }
    }

    /// The awk this shell runs.
    pub fn awk(&self) -> Awk {
        self.awk
    }

    /// The rendered site folder.
    pub fn site_dir(&self) -> &Path {
        &self.site
    }

    /// Also loads the site's script `name` (its functions; its main stays
    /// behind its guard).
    pub fn load(mut self, name: &str) -> Shell {
        // Loading a program without the guard would run it: as root, a
        // boot step would switch the host's forwarding. (The libraries
        // only define functions.)
        let text = fs::read_to_string(self.site.join(name)).unwrap_or_default();
        assert!(
            !PROGRAMS.contains(&name)
                || text.contains("if [[ ${BASH_SOURCE[0]} == \"$0\" ]]; then"),
            "{name} has no main guard: loading it would run it"
        );
        self.load.push(name.to_owned());
        self
    }

    /// A path inside the scratch folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// Writes `bytes` to `name` inside the scratch folder; its path.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// A file of the scratch folder as text ("" when it does not exist).
    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// What the stand-in for `command` (a name, optionally with its exact
    /// arguments: "ipset list -t") answers on the host: `stdout` and exit
    /// status `status`.
    pub fn answer(&self, command: &str, stdout: impl AsRef<[u8]>, status: i32) -> &Shell {
        self.answer_in("host", command, stdout, status)
    }

    /// [`Shell::answer`] inside `unshare` (scope "scratch").
    pub fn answer_in(
        &self,
        scope: &str,
        command: &str,
        stdout: impl AsRef<[u8]>,
        status: i32,
    ) -> &Shell {
        let file = self.answer_file(scope, command);
        fs::write(&file, stdout).unwrap();
        let _ = fs::remove_file(suffixed(&file, "stderr"));
        fs::write(suffixed(&file, "status"), status.to_string()).unwrap();
        self
    }

    /// Adds `stderr` to the answer of `command` in `scope` (after
    /// [`Shell::answer_in`], which clears it).
    pub fn stderr_in(&self, scope: &str, command: &str, stderr: &str) -> &Shell {
        fs::write(
            suffixed(&self.answer_file(scope, command), "stderr"),
            stderr,
        )
        .unwrap();
        self
    }

    /// Makes the stand-in for `command` keep its stdin; read it back with
    /// [`Shell::stdin_of`].
    pub fn keep_stdin(&self, scope: &str, command: &str) -> &Shell {
        fs::write(suffixed(&self.answer_file(scope, command), "reads"), "").unwrap();
        self
    }

    /// What `command` (as given to `answer_in`) was fed on stdin.
    pub fn stdin_of(&self, scope: &str, command: &str) -> String {
        fs::read_to_string(suffixed(&self.answer_file(scope, command), "read")).unwrap_or_default()
    }

    fn answer_file(&self, scope: &str, command: &str) -> PathBuf {
        self.path("stubs")
            .join(scope)
            .join(command.replace('/', "%"))
    }

    /// The stand-ins' calls in the last run, "<scope> <name> <arguments>" each.
    pub fn calls(&self) -> Vec<String> {
        self.read("stubs/calls")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Runs `script` after the prelude, with empty stdin.
    pub fn run(&self, script: &str) -> Ran {
        self.run_with(script, b"")
    }

    /// Runs `script` after the prelude, `stdin` on its stdin.
    pub fn run_with(&self, script: &str, stdin: &[u8]) -> Ran {
        let _ = fs::remove_file(self.path("stubs/calls"));
        let mut text = format!(". '{}'\n", helpers().join("prelude.sh").display());
        for name in &self.load {
            text.push_str(&format!(
                ". \"$SITE_DIR/{name}\" || {{ echo 'cannot load {name}' >&2; exit 100; }}\n"
            ));
        }
        text.push_str(script);
        let bin = self.path("bin");
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(text)
            .arg("unit")
            .current_dir(self.scratch.path())
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
            )
            .env("LANG", "C.UTF-8")
            .env("SCRATCH", self.scratch.path())
            .env("SITE_DIR", &self.site)
            .env("STUB_DIR", self.path("stubs"))
            .env("TMPDIR", self.scratch.path());
        let done = support::run_bounded(&mut cmd, stdin, Duration::from_secs(20));
        Ran {
            code: done.status.and_then(|s| s.code()),
            explained: format!("[{:?}] {}", self.awk, done.explain()),
            stdout: done.stdout,
            stderr: done.stderr,
        }
    }
}

impl Shell {
    /// Runs each of `cases` (a script and its stdin) after one prelude, in
    /// a subshell of its own (nothing one sets reaches the next): many
    /// cases for the price of one `bash`. Their outcomes, in order.
    pub fn run_each(&self, cases: &[(String, Vec<u8>)]) -> Vec<Ran> {
        let batch = self.path("batch");
        let _ = fs::remove_dir_all(&batch);
        fs::create_dir_all(&batch).unwrap();
        let mut script = String::new();
        for (i, (text, stdin)) in cases.iter().enumerate() {
            fs::write(batch.join(format!("{i}.in")), stdin).unwrap();
            script.push_str(&format!(
                "(\n{text}\n) <\"$SCRATCH/batch/{i}.in\" >\"$SCRATCH/batch/{i}.out\" 2>\"$SCRATCH/batch/{i}.err\"\necho \"$?\" >\"$SCRATCH/batch/{i}.status\"\n"
            ));
        }
        let all = self.run(&script);
        assert_eq!(all.code, Some(0), "{}", all.explain());
        (0..cases.len())
            .map(|i| {
                let read = |ext: &str| {
                    String::from_utf8_lossy(&fs::read(batch.join(format!("{i}.{ext}"))).unwrap_or_default())
                        .into_owned()
                };
                let code = read("status").trim().parse().ok();
                let (stdout, stderr) = (read("out"), read("err"));
                Ran {
                    explained: format!(
                        "[{:?}] case {i} of a batch:\n{}\nstatus: {code:?}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
                        self.awk, cases[i].0
                    ),
                    code,
                    stdout,
                    stderr,
                }
            })
            .collect()
    }
}

/// Runs `test` once for each awk, with a fresh shell of `fixture`.
pub fn each_awk(fixture: &str, mut test: impl FnMut(Shell)) {
    for awk in Awk::ALL {
        test(Shell::new(fixture, awk));
    }
}

/// `sha256sum`'s digest of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `path` with `.suffix` appended to its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}
