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
use std::sync::atomic::{AtomicBool, Ordering};
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

#[repr(C)]
struct SockaddrIn {
    sin_family: u16,
    sin_port: u16,   // network byte order
    sin_addr: u32,   // network byte order
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
        let linger = Linger { l_onoff: 1, l_linger: 0 };
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
         \x20      connrate probe ADDR:PORT [--bind SRC] [--timeout-ms MS]"
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
    exit(if connect_once(&dst, src.as_ref(), &tv) { 0 } else { 1 });
}

fn main() {
    let args = parse_args();
    match args.mode.as_str() {
        "server" => server(&args),
        "client" => client(&args),
        "probe" => probe(&args),
        _ => usage(),
    }
}
