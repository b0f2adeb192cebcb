//! Traffic through the lab: socat services that answer with the source
//! address and port they see (and log it), probes that expect an answer
//! seen as some address or nothing at all, and TCP connections kept open
//! across a rerun of the script.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use natbake::site::Proto;

use super::checks::Findings;
use super::plan::{Role, ServiceSpec};
use super::{Lab, in_ns, trace};
use crate::support;

/// How long a probe that is expected to get an answer may take. Generous:
/// the machine may be busy, and a probe that answers returns at once.
const ANSWER_WAIT: Duration = Duration::from_secs(4);

/// How long a probe that is expected to get nothing waits before concluding
/// that nothing came. Refused connections return at once; only silently
/// dropped packets cost this long.
const SILENCE_WAIT: Duration = Duration::from_millis(1500);

/// How many probes run at once. Probes are independent (each has its own
/// source port), so running them together keeps the silent waits short;
/// most of the time they only wait.
const PROBE_PARALLELISM: usize = 12;

impl Lab {
    /// contact.
    pub fn service_log(&self, s: &ServiceSpec) -> PathBuf {
        self.dir()
            .join(format!("svc-{}-{}-{}.log", s.proto.name(), s.addr, s.port))
    }

    /// Starts a socat service for each planned one; returns what each
    /// listens on, for the readiness check.
    pub(super) fn start_services(&mut self) -> Vec<(String, Proto, String)> {
        let mut expected: Vec<(String, Proto, String)> = Vec::new();
        for s in self.plan.services.clone() {
            let log = self.service_log(&s);
            fs::write(&log, "").expect("create service log");
            // The service answers with the source it sees, logs it, and
            // for TCP then echoes, so a connection can be kept open and used
            // again later.
            let report = format!(
                "echo \"$SOCAT_PEERADDR $SOCAT_PEERPORT\" >> {log}; echo \"$SOCAT_PEERADDR $SOCAT_PEERPORT\"",
                log = log.display()
            );
            let (listen, system) = match s.proto {
                Proto::Tcp => (
                    format!("TCP4-LISTEN:{},bind={},reuseaddr,fork", s.port, s.addr),
                    format!("SYSTEM:{report}; exec cat"),
                ),
                // Read the datagram first: socat hands it to the shell, and
                // a shell that exited before that makes socat fail with
                // EPIPE instead of sending the answer.
                Proto::Udp => (
                    format!("UDP4-RECVFROM:{},bind={},fork", s.port, s.addr),
                    format!("SYSTEM:read -r _; {report}"),
                ),
            };
            let ns = self.ns.of(s.role).to_owned();
            // -T: idle connections end after a minute, long enough to keep
            // one open across a rerun of the script.
            let args = vec!["-T".into(), "60".into(), listen, system];
            self.spawn(
                &format!("svc {} {}:{}", s.proto.name(), s.addr, s.port),
                &ns,
                "socat",
                &args,
            );
            expected.push((ns, s.proto, format!("{}:{}", s.addr, s.port)));
        }
        expected
    }

    /// A source port no other probe of this lab uses. Servers log the peer's
    /// port, so a probe's traces can be told apart from every other probe's.
    fn source_port(&self) -> u16 {
        let port = self.next_source_port.fetch_add(1, Ordering::Relaxed);
        assert!(port < 60000, "the lab ran out of probe source ports");
        port as u16
    }

    /// Sends one probe and returns what came back: the first line of the
    /// answer, if any.
    pub fn send_probe(&self, probe: &Probe) -> ProbeResult {
        let sport = self.source_port();
        let remote = match probe.proto {
            Proto::Tcp => format!(
                "TCP4:{}:{},bind={}:{sport},connect-timeout=2",
                probe.dst, probe.port, probe.src
            ),
            Proto::Udp => format!(
                "UDP4:{}:{},bind={}:{sport}",
                probe.dst, probe.port, probe.src
            ),
        };
        let wait = match probe.expect {
            Expect::SeenAs(_) => ANSWER_WAIT,
            Expect::Nothing => SILENCE_WAIT,
        };
        let mut cmd = in_ns(self.ns.of(probe.from), "socat");
        cmd.args(["-T", "5", "-t", "5", "-", &remote]);
        let reply = first_line(&mut cmd, b"natbake-probe\n", wait);
        ProbeResult {
            probe: probe.clone(),
            sport,
            reply,
        }
    }

    /// Sends probes, several at a time, and records in `findings` each one
    /// whose outcome differs from its expectation. A probe expected to get
    /// nothing also fails if any service logged its source address and port.
    pub fn run_probes(&self, probes: &[Probe], findings: &mut Findings) {
        trace(&format!("{}: {} probes", self.manifest.site, probes.len()));
        // A small pool of threads working through the list: a probe that
        // waits out its silence does not hold up the others.
        let next = AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<ProbeResult>>> =
            probes.iter().map(|_| Mutex::new(None)).collect();
        thread::scope(|scope| {
            for _ in 0..PROBE_PARALLELISM.min(probes.len()) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(probe) = probes.get(i) else { break };
                        *slots[i].lock().unwrap() = Some(self.send_probe(probe));
                    }
                });
            }
        });
        let results: Vec<ProbeResult> = slots
            .into_iter()
            .map(|slot| slot.into_inner().unwrap().expect("every probe ran"))
            .collect();
        trace(&format!("{}: probes done", self.manifest.site));
        let logs: Vec<(ServiceSpec, String)> = self
            .plan
            .services
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    fs::read_to_string(self.service_log(s)).unwrap_or_default(),
                )
            })
            .collect();
        for r in results {
            let p = &r.probe;
            let seen = r.reply.as_deref().and_then(parse_peer);
            let probe = format!(
                "{}: {} {}:{} -> {}:{}",
                p.what,
                p.proto.name(),
                p.src,
                r.sport,
                p.dst,
                p.port
            );
            let got = r
                .reply
                .as_deref()
                .map_or("no answer".into(), |l| format!("{l:?}"));
            match p.expect {
                Expect::SeenAs(addr) => {
                    findings.check(
                        seen.map(|(a, _)| a) == Some(addr),
                        format!("{probe} should be answered and seen as {addr}; got {got}"),
                    );
                }
                Expect::Nothing => {
                    let trace = format!("{} {}", p.src, r.sport);
                    let reached: Vec<String> = logs
                        .iter()
                        .filter(|(_, log)| log.lines().any(|l| l == trace))
                        .map(|(s, _)| format!("{} {}:{}", s.proto.name(), s.addr, s.port))
                        .collect();
                    findings.check(
                        r.reply.is_none() && reached.is_empty(),
                        format!(
                            "{probe} should get nothing; got {got}{}",
                            if reached.is_empty() {
                                String::new()
                            } else {
                                format!(", and it reached {}", reached.join(", "))
                            }
                        ),
                    );
                }
            }
        }
    }

    /// Opens a TCP connection from `src` in namespace `from` and reads the
    /// service's greeting; the connection stays open until dropped.
    pub fn open_session(&self, from: Role, src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Session {
        let sport = self.source_port();
        let mut cmd = in_ns(self.ns.of(from), "socat");
        cmd.args(["-T", "60", "-"])
            .arg(format!(
                "TCP4:{dst}:{port},bind={src}:{sport},connect-timeout=2"
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let what = format!("tcp {src}:{sport} -> {dst}:{port}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start socat: {e}"));
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut session = Session {
            what,
            child,
            stdin,
            lines,
            greeting: None,
        };
        session.greeting = session.read_line(ANSWER_WAIT);
        session
    }
}

/// Runs `cmd` with `input` on stdin and returns the first line it prints
/// within `wait`, killing it then (or when it exits without a line).
fn first_line(cmd: &mut Command, input: &[u8], wait: Duration) -> Option<String> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", support::describe(cmd)));
    // Stdin stays open until the probe is over: for UDP, closing it would
    // start socat's own shutdown clock.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let _ = stdin.write_all(input);
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let got = BufReader::new(stdout)
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false);
        let _ = tx.send(got.then(|| line.trim_end().to_owned()));
    });
    // Either a line, or end of output (socat gave up: refused, reset), or
    // the deadline.
    let line = rx.recv_timeout(wait).ok().flatten();
    support::kill_group(child.id());
    let _ = child.wait();
    drop(stdin);
    line
}

/// Parses a service's answer `"<address> <port>"`.
fn parse_peer(line: &str) -> Option<(Ipv4Addr, u16)> {
    let (addr, port) = line.split_once(' ')?;
    Some((addr.parse().ok()?, port.parse().ok()?))
}

/// What a probe should find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// An answer from a service that saw this source address.
    SeenAs(Ipv4Addr),
    /// No answer, and no service saw it.
    Nothing,
}

/// One connection attempt (TCP) or datagram (UDP).
#[derive(Clone, Debug)]
pub struct Probe {
    /// What the probe shows, for the failure message.
    pub what: String,
    pub from: Role,
    pub proto: Proto,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub port: u16,
    pub expect: Expect,
}

#[derive(Debug)]
pub struct ProbeResult {
    pub probe: Probe,
    pub sport: u16,
    pub reply: Option<String>,
}

/// An open TCP connection through the lab.
pub struct Session {
    pub what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// The service's first line: `"<address> <port>"` as it saw us.
    pub greeting: Option<String>,
}

impl Session {
    /// The source address the service saw, if it greeted us.
    pub fn seen_as(&self) -> Option<Ipv4Addr> {
        self.greeting
            .as_deref()
            .and_then(parse_peer)
            .map(|(a, _)| a)
    }

    pub fn read_line(&mut self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    /// Sends a line over the open connection and returns true if the
    /// service echoed it back.
    pub fn echo(&mut self, text: &str) -> bool {
        let Some(stdin) = self.stdin.as_mut() else {
            return false;
        };
        if writeln!(stdin, "{text}")
            .and_then(|_| stdin.flush())
            .is_err()
        {
            return false;
        }
        self.read_line(ANSWER_WAIT).as_deref() == Some(text)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stdin.take();
        support::kill_group(self.child.id());
        let _ = self.child.wait();
    }
}
