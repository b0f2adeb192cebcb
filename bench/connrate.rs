//! connrate: a tiny TCP new-connection-rate tool for the natbake benchmark.
//!
//! One dependency-free file, built with `rustc -O connrate.rs` (Linux only).
//!
//!   connrate server ADDR:PORT [--threads N]
//!       Accept connections and close them at once, until killed.
//!   connrate client ADDR:PORT --seconds D [--threads N] [--bind SRC]
//!       For D seconds, open and close connections as fast as possible from N
//!       threads; print one line `rate=… ok=… failed=… seconds=… threads=…`.
//!   connrate probe ADDR:PORT [--bind SRC] [--timeout-ms MS]
//!       One connection attempt; exit 0 if it was accepted, 1 if not.
//!   connrate cycle --target ADDR:PORT[@NETNS] --target ... --cycles N
//!                  [--block-ms MS] [--warmup-cycles W] [--threads N]
//!       Compare the rates of 2 to 8 targets under the same conditions: the
//!       client threads all connect to one target for a block of MS
//!       milliseconds (default 100), then all move to the next. A cycle
//!       visits the targets forward and then backward (A B C C B A), so a
//!       load that rises or falls steadily during a cycle weighs the same
//!       on each. A target's rate in a cycle is its connections over its
//!       blocks' time; its ratio is that rate over the first target's in
//!       the same cycle. A target may sit in another network namespace
//!       (`@NAME` of /run/netns, entered with setns before its blocks;
//!       needs root). Prints one line per cycle, then per target the median
//!       of its per-cycle ratios, their quartiles, and a 95 % bootstrap
//!       interval of that median. W warm-up cycles (default 1) come first
//!       and are not counted.
//!
//! A connection counts when the three-way handshake has completed (connect()
//! returned), which is what a NAT's per-connection work sits in front of.
//! Client sockets use SO_LINGER 0, so close() sends a RST and leaves no
//! TIME_WAIT behind: a long run would otherwise exhaust the ephemeral ports.
//! SO_SNDTIMEO bounds every connect(), so a dropped SYN costs at most the
//! timeout and is counted as a failure instead of hanging the run.
//!
//! The socket calls go straight to the C library (which std links anyway)
//! because std has no stable way to set SO_LINGER, bind before connect, or
//! choose the listen backlog.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::AsRawFd;
use std::process::exit;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

#[cfg(not(target_os = "linux"))]
compile_error!("connrate uses Linux socket constants");

// Linux ABI constants and structs (same values on x86_64 and aarch64).
const AF_INET: i32 = 2;
const SOCK_STREAM: i32 = 1;
const SOCK_CLOEXEC: i32 = 0o2_000_000;
const SOL_SOCKET: i32 = 1;
const SO_LINGER: i32 = 13;
const SO_SNDTIMEO: i32 = 21;
const IPPROTO_IP: i32 = 0;
const IP_BIND_ADDRESS_NO_PORT: i32 = 24;
const CLONE_NEWNET: i32 = 0x4000_0000;

#[repr(C)]
struct SockaddrIn {
    sin_family: u16,
    sin_port: u16, // network byte order
    sin_addr: u32, // network byte order
    sin_zero: [u8; 8],
}

#[repr(C)]
struct Linger {
    l_onoff: i32,
    l_linger: i32,
}

#[repr(C)]
struct Timeval {
    tv_sec: i64,
    tv_usec: i64,
}

unsafe extern "C" {
    fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const u8, len: u32) -> i32;
    fn bind(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
    fn connect(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
    fn listen(fd: i32, backlog: i32) -> i32;
    fn close(fd: i32) -> i32;
    fn setns(fd: i32, nstype: i32) -> i32;
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

/// CPU time this thread has used, in nanoseconds (the scheduler's exact
/// runtime: time spent waiting for a CPU is not in it; softirq work done
/// in the thread's context, such as a packet's walk through the NAT in
/// the namespaces of this benchmark, is).
fn thread_cpu_ns() -> u64 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one Timespec.
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn sockaddr(addr: SocketAddrV4) -> SockaddrIn {
    SockaddrIn {
        sin_family: AF_INET as u16,
        sin_port: addr.port().to_be(),
        sin_addr: u32::from(*addr.ip()).to_be(),
        sin_zero: [0; 8],
    }
}

fn set_opt<T>(fd: i32, level: i32, name: i32, value: &T) -> bool {
    let len = std::mem::size_of::<T>() as u32;
    // SAFETY: `value` points to a live, correctly sized option value.
    unsafe { setsockopt(fd, level, name, value as *const T as *const u8, len) == 0 }
}

/// One connection attempt: true if the handshake completed within `timeout`.
/// The socket is always closed with a RST (SO_LINGER 0).
fn connect_once(dst: &SockaddrIn, src: Option<&SockaddrIn>, timeout: &Timeval) -> bool {
    // SAFETY: plain socket syscalls on a descriptor this function owns.
    unsafe {
        let fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let linger = Linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let mut ok = set_opt(fd, SOL_SOCKET, SO_LINGER, &linger)
            && set_opt(fd, SOL_SOCKET, SO_SNDTIMEO, timeout);
        if ok {
            if let Some(src) = src {
                // Pick the source port at connect() time, as an unbound
                // socket does, so binding the address cannot run out of ports.
                let one: i32 = 1;
                ok = set_opt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one)
                    && bind(fd, src, std::mem::size_of::<SockaddrIn>() as u32) == 0;
            }
        }
        if ok {
            ok = connect(fd, dst, std::mem::size_of::<SockaddrIn>() as u32) == 0;
        }
        close(fd);
        ok
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: connrate server ADDR:PORT [--threads N]\n\
         \x20      connrate client ADDR:PORT --seconds D [--threads N] [--bind SRC]\n\
         \x20      connrate probe ADDR:PORT [--bind SRC] [--timeout-ms MS]\n\
         \x20      connrate cycle --target ADDR:PORT[@NETNS] --target ... --cycles N\n\
         \x20                     [--block-ms MS] [--warmup-cycles W] [--threads N]"
    );
    exit(2);
}

struct Args {
    mode: String,
    addr: SocketAddrV4,
    threads: usize,
    seconds: f64,
    bind: Option<Ipv4Addr>,
    timeout_ms: u64,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.len() < 2 {
        usage();
    }
    let addr = argv[1].parse().unwrap_or_else(|_| usage());
    let mut args = Args {
        mode: argv[0].clone(),
        addr,
        threads: 2,
        seconds: 0.0,
        bind: None,
        timeout_ms: 1000,
    };
    let mut rest = argv[2..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--threads" => args.threads = value.parse().unwrap_or_else(|_| usage()),
            "--seconds" => args.seconds = value.parse().unwrap_or_else(|_| usage()),
            "--bind" => args.bind = Some(value.parse().unwrap_or_else(|_| usage())),
            "--timeout-ms" => args.timeout_ms = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if args.threads == 0 || args.threads > 64 || args.timeout_ms == 0 {
        usage();
    }
    args
}

fn server(args: &Args) -> ! {
    let listener = TcpListener::bind(args.addr).unwrap_or_else(|e| {
        eprintln!("connrate: bind {}: {e}", args.addr);
        exit(1);
    });
    // std listens with a small backlog; a burst of handshakes from several
    // client threads would overflow it and turn into 1 s SYN retransmits.
    // Calling listen() again on a listening socket just raises the backlog.
    // SAFETY: the descriptor belongs to `listener`, which outlives the call.
    unsafe { listen(listener.as_raw_fd(), 4096) };
    let mut workers = Vec::new();
    for _ in 0..args.threads {
        let l = listener.try_clone().expect("clone listener");
        workers.push(thread::spawn(move || {
            loop {
                // Dropping the stream closes it at once.
                let _ = l.accept();
            }
        }));
    }
    for w in workers {
        let _ = w.join();
    }
    exit(1);
}

fn client(args: &Args) -> ! {
    if !(args.seconds > 0.0 && args.seconds <= 600.0) {
        usage();
    }
    let duration = Duration::from_secs_f64(args.seconds);
    let timeout = Duration::from_millis(args.timeout_ms);
    let start_gate = Arc::new(Barrier::new(args.threads + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..args.threads {
        let gate = Arc::clone(&start_gate);
        let stop = Arc::clone(&stop);
        let dst = args.addr;
        let src = args.bind;
        workers.push(thread::spawn(move || {
            let dst = sockaddr(dst);
            let src = src.map(|ip| sockaddr(SocketAddrV4::new(ip, 0)));
            let tv = Timeval {
                tv_sec: timeout.as_secs() as i64,
                tv_usec: timeout.subsec_micros() as i64,
            };
            let (mut ok, mut failed) = (0u64, 0u64);
            gate.wait();
            while !stop.load(Ordering::Relaxed) {
                if connect_once(&dst, src.as_ref(), &tv) {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        }));
    }
    start_gate.wait();
    let started = Instant::now();
    thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0u64, 0u64);
    for w in workers {
        let (o, f) = w.join().expect("worker panicked");
        ok += o;
        failed += f;
    }
    // Connections finished after the stop flag still count, over the time
    // they actually took.
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "rate={:.1} ok={ok} failed={failed} seconds={seconds:.3} threads={}",
        ok as f64 / seconds,
        args.threads
    );
    exit(if ok == 0 { 1 } else { 0 });
}

fn probe(args: &Args) -> ! {
    let dst = sockaddr(args.addr);
    let src = args.bind.map(|ip| sockaddr(SocketAddrV4::new(ip, 0)));
    let tv = Timeval {
        tv_sec: (args.timeout_ms / 1000) as i64,
        tv_usec: ((args.timeout_ms % 1000) * 1000) as i64,
    };
    exit(if connect_once(&dst, src.as_ref(), &tv) {
        0
    } else {
        1
    });
}

// ------------------------------------------------------------ cycle mode

struct Target {
    addr: SocketAddrV4,
    /// Name under /run/netns, or None for the namespace connrate runs in.
    netns: Option<String>,
}

struct CycleArgs {
    targets: Vec<Target>,
    cycles: usize,
    warmup: usize,
    block: Duration,
    threads: usize,
    timeout_ms: u64,
}

fn parse_cycle_args() -> CycleArgs {
    let argv: Vec<String> = std::env::args().skip(2).collect();
    let mut args = CycleArgs {
        targets: Vec::new(),
        cycles: 0,
        warmup: 1,
        block: Duration::from_millis(100),
        threads: 2,
        timeout_ms: 1000,
    };
    let mut rest = argv.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().unwrap_or_else(|| usage());
        let num = || value.parse::<u64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--target" => {
                let (addr, netns) = match value.split_once('@') {
                    Some((a, n)) if !n.is_empty() && !n.contains('/') => (a, Some(n.to_string())),
                    Some(_) => usage(),
                    None => (value.as_str(), None),
                };
                let addr = addr.parse().unwrap_or_else(|_| usage());
                args.targets.push(Target { addr, netns });
            }
            "--cycles" => args.cycles = num() as usize,
            "--warmup-cycles" => args.warmup = num() as usize,
            "--block-ms" => args.block = Duration::from_millis(num()),
            "--threads" => args.threads = num() as usize,
            "--timeout-ms" => args.timeout_ms = num(),
            _ => usage(),
        }
    }
    let block_ms = args.block.as_millis();
    if !(2..=8).contains(&args.targets.len())
        || !(1..=10_000).contains(&args.cycles)
        || args.warmup > 100
        || !(10..=10_000).contains(&block_ms)
        || !(1..=64).contains(&args.threads)
        || args.timeout_ms == 0
    {
        usage();
    }
    args
}

/// The target of each block of a cycle: forward, then backward.
fn cycle_order(targets: usize) -> Vec<usize> {
    (0..targets).chain((0..targets).rev()).collect()
}

/// The 100·p-th percentile of sorted values, interpolating between ranks.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// A 95 % percentile-bootstrap interval of the median of `values`: the
/// cycles resampled with replacement 2,000 times by a fixed-seed
/// generator, so the same cycles always give the same interval.
fn bootstrap_median(values: &[f64]) -> (f64, f64) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut medians: Vec<f64> = (0..2000)
        .map(|_| {
            let sample: Vec<f64> = (0..values.len())
                .map(|_| values[(next() % values.len() as u64) as usize])
                .collect();
            median(&sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    (percentile(&medians, 0.025), percentile(&medians, 0.975))
}

/// Opens each target's namespace once (the descriptors stay open while the
/// workers run). When some target names a namespace, the others get the
/// one connrate started in, so a thread always enters its target's.
fn open_netns(targets: &[Target]) -> Vec<Option<std::fs::File>> {
    if targets.iter().all(|t| t.netns.is_none()) {
        return targets.iter().map(|_| None).collect();
    }
    targets
        .iter()
        .map(|t| {
            let path = match &t.netns {
                Some(n) => format!("/run/netns/{n}"),
                None => "/proc/self/ns/net".to_string(),
            };
            let file = std::fs::File::open(&path).unwrap_or_else(|e| {
                eprintln!("connrate: network namespace {path}: {e}");
                exit(1);
            });
            Some(file)
        })
        .collect()
}

fn cycle(args: &CycleArgs) -> ! {
    let order = cycle_order(args.targets.len());
    let cycles = args.warmup + args.cycles;
    let blocks = cycles * order.len();
    let netns = Arc::new(open_netns(&args.targets));
    let dsts: Arc<Vec<SockaddrIn>> =
        Arc::new(args.targets.iter().map(|t| sockaddr(t.addr)).collect());
    // The block now running; `blocks` means stop.
    let current = Arc::new(AtomicUsize::new(0));
    // Per block: connections made, and attempts that failed.
    let ok: Arc<Vec<AtomicU64>> = Arc::new((0..blocks).map(|_| AtomicU64::new(0)).collect());
    let failed: Arc<Vec<AtomicU64>> = Arc::new((0..blocks).map(|_| AtomicU64::new(0)).collect());
    // Per block: the client threads' CPU time, nanoseconds.
    let cpu: Arc<Vec<AtomicU64>> = Arc::new((0..blocks).map(|_| AtomicU64::new(0)).collect());
    let timeout = Timeval {
        tv_sec: (args.timeout_ms / 1000) as i64,
        tv_usec: ((args.timeout_ms % 1000) * 1000) as i64,
    };
    let gate = Arc::new(Barrier::new(args.threads + 1));
    let mut workers = Vec::new();
    for _ in 0..args.threads {
        let cpu = Arc::clone(&cpu);
        let (netns, dsts, current, ok, failed, gate, order) = (
            Arc::clone(&netns),
            Arc::clone(&dsts),
            Arc::clone(&current),
            Arc::clone(&ok),
            Arc::clone(&failed),
            Arc::clone(&gate),
            order.clone(),
        );
        let tv = Timeval { ..timeout };
        workers.push(thread::spawn(move || {
            let mut here: Option<usize> = None; // the namespace this thread is in
            gate.wait();
            let (mut was, mut cpu_from) = (0, thread_cpu_ns());
            loop {
                let block = current.load(Ordering::Acquire);
                if block != was || block >= ok.len() {
                    let now = thread_cpu_ns();
                    cpu[was].fetch_add(now - cpu_from, Ordering::Relaxed);
                    (was, cpu_from) = (block, now);
                }
                if block >= ok.len() {
                    break;
                }
                let t = order[block % order.len()];
                if let Some(fd) = &netns[t] {
                    if here != Some(t) {
                        // SAFETY: setns on an open namespace descriptor; it
                        // changes only this thread's network namespace.
                        if unsafe { setns(fd.as_raw_fd(), CLONE_NEWNET) } != 0 {
                            eprintln!("connrate: setns: {}", std::io::Error::last_os_error());
                            exit(1);
                        }
                        here = Some(t);
                    }
                }
                // Counted in the block it started in.
                if connect_once(&dsts[t], None, &tv) {
                    ok[block].fetch_add(1, Ordering::Relaxed);
                } else {
                    failed[block].fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut starts = Vec::with_capacity(blocks + 1);
    gate.wait();
    for b in 0..blocks {
        starts.push(Instant::now());
        current.store(b, Ordering::Release);
        thread::sleep(args.block);
    }
    starts.push(Instant::now());
    current.store(blocks, Ordering::Release);
    for w in workers {
        w.join().expect("worker panicked");
    }
    let n = args.targets.len();
    // Per measured cycle, per target: rate; and the ratios to target 0.
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut costs: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut cost_ratios: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut fails = vec![0u64; n];
    for c in args.warmup..cycles {
        let mut made = vec![0u64; n];
        let mut secs = vec![0f64; n];
        let mut ns = vec![0u64; n];
        for (i, &t) in order.iter().enumerate() {
            let b = c * order.len() + i;
            made[t] += ok[b].load(Ordering::Relaxed);
            fails[t] += failed[b].load(Ordering::Relaxed);
            secs[t] += (starts[b + 1] - starts[b]).as_secs_f64();
            ns[t] += cpu[b].load(Ordering::Relaxed);
        }
        let rate: Vec<f64> = (0..n).map(|t| made[t] as f64 / secs[t]).collect();
        // Client CPU time per connection, microseconds.
        let cost: Vec<f64> = (0..n)
            .map(|t| ns[t] as f64 / 1000.0 / made[t].max(1) as f64)
            .collect();
        println!(
            "cycle={} rates={} cpu_us={}",
            c - args.warmup + 1,
            rate.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(","),
            cost.iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        for t in 0..n {
            rates[t].push(rate[t]);
            ratios[t].push(rate[t] / rate[0]);
            costs[t].push(cost[t]);
            // Inverted, so that like the rate ratio higher is better.
            cost_ratios[t].push(cost[0] / cost[t]);
        }
    }
    for t in 0..n {
        let mut sorted = ratios[t].clone();
        sorted.sort_by(f64::total_cmp);
        let (lo, hi) = bootstrap_median(&ratios[t]);
        let mut csorted = cost_ratios[t].clone();
        csorted.sort_by(f64::total_cmp);
        let (clo, chi) = bootstrap_median(&cost_ratios[t]);
        println!(
            "target={} addr={} median_rate={:.0} median_ratio={:.4} q1={:.4} q3={:.4} ci95={:.4}..{:.4} \
             median_cpu_us={:.2} cpu_ratio={:.4} cpu_q1={:.4} cpu_q3={:.4} cpu_ci95={:.4}..{:.4} cycles={} failed={}",
            t + 1,
            args.targets[t].addr,
            median(&rates[t]),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.25),
            percentile(&sorted, 0.75),
            lo,
            hi,
            median(&costs[t]),
            percentile(&csorted, 0.5),
            percentile(&csorted, 0.25),
            percentile(&csorted, 0.75),
            clo,
            chi,
            args.cycles,
            fails[t]
        );
    }
    exit(0);
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("cycle") {
        cycle(&parse_cycle_args());
    }
    let args = parse_args();
    match args.mode.as_str() {
        "server" => server(&args),
        "client" => client(&args),
        "probe" => probe(&args),
        _ => usage(),
    }
}

// Run with `rustc --test --edition 2021 -o /tmp/connrate-test bench/connrate.rs && /tmp/connrate-test`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_visits_each_target_forward_then_back() {
        assert_eq!(cycle_order(2), [0, 1, 1, 0]);
        assert_eq!(cycle_order(4), [0, 1, 2, 3, 3, 2, 1, 0]);
        // Every target's blocks sit at the same mean position, so a load
        // that changes steadily over the cycle weighs the same on each.
        let order = cycle_order(5);
        for t in 0..5 {
            let at: usize = order
                .iter()
                .enumerate()
                .filter(|(_, &x)| x == t)
                .map(|(i, _)| i)
                .sum();
            assert_eq!(at, order.len() - 1, "target {t}");
        }
    }

    #[test]
    fn medians_and_quartiles_interpolate_between_ranks() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&sorted, 0.25), 2.0);
        assert_eq!(percentile(&sorted, 0.75), 4.0);
        assert_eq!(percentile(&[7.0], 0.5), 7.0);
    }

    #[test]
    fn the_bootstrap_interval_holds_the_median_and_repeats() {
        // A spread of ratios around 0.97, with two outlying cycles.
        let mut values: Vec<f64> = (0..60).map(|i| 0.94 + 0.001 * i as f64).collect();
        values.extend([0.5, 1.6]);
        let (lo, hi) = bootstrap_median(&values);
        let m = median(&values);
        assert!(lo < m && m < hi, "{lo} {m} {hi}");
        assert!(
            hi - lo < 0.03,
            "outliers must not widen it much: {lo}..{hi}"
        );
        assert_eq!(bootstrap_median(&values), (lo, hi));
        // All equal: no spread at all.
        assert_eq!(bootstrap_median(&[1.0; 10]), (1.0, 1.0));
    }
}
