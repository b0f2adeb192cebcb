//! Small helpers shared by the integration tests: gating tests that need
//! root, running commands so that a failure explains itself, bounded runs of
//! commands that might hang, and scratch directories that clean up after
//! themselves.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Environment variable that turns "skip without root" into a failure, so a
/// CI job that is supposed to run the real-network tests cannot pass by
/// quietly skipping them.
pub const REQUIRE_ROOT_ENV: &str = "NATBAKE_REQUIRE_ROOT_TESTS";

/// Whether the effective user is root. Read from /proc rather than through
/// libc so the tests need no extra crate.
pub fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        // The fields are real, effective, saved and file-system uid.
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// Returns true when the test may go ahead. Without root it either panics
/// (when `NATBAKE_REQUIRE_ROOT_TESTS=1`) or prints a loud skip notice and
/// returns false: a skipped test must never look like a passed one to
/// someone reading the log.
pub fn require_root(what: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var(REQUIRE_ROOT_ENV).as_deref() == Ok("1") {
        panic!("{what} needs root and {REQUIRE_ROOT_ENV}=1 makes it mandatory");
    }
    // Straight to the process's stderr, not through eprintln!: the test
    // harness captures eprintln! output of passing tests, which would make
    // the skip silent.
    let notice = format!(
        "\n{bar}\nSKIPPED (needs root): {what}\nRun the tests as root to exercise it; set \
         {REQUIRE_ROOT_ENV}=1 to make this skip a failure instead.\n{bar}\n",
        bar = "*".repeat(72)
    );
    let _ = std::io::stderr().write_all(notice.as_bytes());
    false
}

/// A printable form of a command line, for failure messages.
pub fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        // Quote only what needs it, so the usual case reads like a shell line.
        if !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
        {
            line.push(' ');
            line.push_str(&arg);
        } else {
            line.push_str(&format!(" '{}'", arg.replace('\'', r"'\''")));
        }
    }
    line
}

/// Formats a finished command for a failure message: command line, exit
/// status, stdout and stderr.
pub fn explain(cmd_line: &str, status: &str, stdout: &[u8], stderr: &[u8]) -> String {
    format!(
        "command: {cmd_line}\nstatus: {status}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
        String::from_utf8_lossy(stdout).trim_end(),
        String::from_utf8_lossy(stderr).trim_end()
    )
}

/// Runs a command to completion and panics, with everything needed to
/// understand why, if it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Output {
    let output = output_of(cmd);
    if !output.status.success() {
        panic!(
            "command failed\n{}",
            explain(
                &describe(cmd),
                &output.status.to_string(),
                &output.stdout,
                &output.stderr
            )
        );
    }
    output
}

/// Runs a command to completion and returns its output whatever the exit
/// status; panics only if it cannot be started at all.
pub fn output_of(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null());
    cmd.output()
        .unwrap_or_else(|err| panic!("cannot start `{}`: {err}", describe(cmd)))
}

/// `run` and return stdout as text.
pub fn run_stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// The outcome of a bounded run.
#[derive(Debug)]
pub struct Finished {
    pub cmd_line: String,
    /// None when the command was killed for running too long.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    /// Everything about the run, for failure messages.
    pub fn explain(&self) -> String {
        let status = match self.status {
            Some(s) => format!("{s} after {:.1?}", self.elapsed),
            None => format!("killed after {:.1?} (time limit)", self.elapsed),
        };
        explain(
            &self.cmd_line,
            &status,
            self.stdout.as_bytes(),
            self.stderr.as_bytes(),
        )
    }
}

/// Runs a command with a hard time limit. The command runs in its own
/// process group, so on time-out the whole group (including anything it
/// forked) is killed. `stdin` is fed to the command and then closed.
pub fn run_bounded(cmd: &mut Command, stdin: &[u8], limit: Duration) -> Finished {
    let cmd_line = describe(cmd);
    let started = Instant::now();
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start `{cmd_line}`: {err}"));
    let pgid = child.id();

    // Feed stdin from a thread: a child that does not read it must not block us.
    let mut child_in = child.stdin.take().expect("piped stdin");
    let input = stdin.to_vec();
    let writer = thread::spawn(move || {
        use std::io::Write;
        let _ = child_in.write_all(&input);
        // Dropping child_in closes the pipe: the child sees end of input.
    });
    let out_reader = spawn_reader(child.stdout.take().expect("piped stdout"));
    let err_reader = spawn_reader(child.stderr.take().expect("piped stderr"));

    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= limit => {
                kill_group(pgid);
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(err) => panic!("waiting for `{cmd_line}`: {err}"),
        }
    };
    // Something the command forked may still hold the pipes open; it belongs
    // to the same process group, which is now finished with.
    kill_group(pgid);
    let _ = writer.join();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Finished {
        cmd_line,
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

fn spawn_reader(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Kills a process group this test started (its leader's pid is the group
/// id). Errors are ignored: the group may already be gone.
pub fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Describes an exit status, including a signal, for messages.
pub fn status_text(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// A short identifier unique within this machine for the lifetime of this
/// process: pid plus a counter. Used to name namespaces and directories so
/// tests running in parallel (threads or processes) never collide.
pub fn unique_id() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory removed on drop, also when a test panics.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new(label: &str) -> ScratchDir {
        let path = std::env::temp_dir().join(format!("natbake-it-{label}-{}", unique_id()));
        fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        ScratchDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory after the test, for a post-mortem: for a
    /// directory owned by a struct being dropped.
    pub fn disarm(&mut self) {
        self.path = PathBuf::new();
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs cfn-lint 1.58 (from the moto venv scripts/test.sh makes) on
/// `templates` in one call and fails on any finding: its exit code is a
/// bitmask (2 errors, 4 warnings, 8 informational), and anything but 0
/// fails.
pub fn assert_cfn_lint_clean<P: AsRef<std::ffi::OsStr>>(templates: impl IntoIterator<Item = P>) {
    let cfn_lint = crate::failover::lab::moto_venv().join("bin/cfn-lint");
    assert!(
        cfn_lint.exists(),
        "{} is missing: scripts/test.sh installs cfn-lint 1.58.0",
        cfn_lint.display()
    );
    let mut cmd = std::process::Command::new(&cfn_lint);
    cmd.args(["--format", "parseable", "--"]).args(templates);
    let out = output_of(&mut cmd);
    assert!(
        out.status.success(),
        "cfn-lint found problems ({}):\n{}{}",
        status_text(&out.status),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
