//! The live receive benchmark: how fast a receiver empties full sockets, vxtap against a bare
//! recvmmsg counting loop (examples/bare_recvmmsg.rs) with the same number of sockets and threads,
//! in alternating runs. Loopback only.
//!
//! A sender on loopback is far slower than a receiver, so a blast would measure the sender. Instead
//! each run starts the receiver, stops it (SIGSTOP), fills its sockets until the kernel starts to
//! drop, and then continues it (SIGCONT) and times how long the sockets take to empty (their
//! rx_queue in /proc/net/udp reaching 0). The receiver then stops on SIGINT and reports how many
//! datagrams it received; that count over the drain time is its rate. For vxtap the count comes
//! from its final `Stopped.` log line, with what it dispatched and dropped: every datagram the kernel
//! queued must be accounted for.
//!
//! ```text
//! drain_bench --vxtap target/release/vxtap --bare target/release/examples/bare_recvmmsg \
//!     [--threads 2] [--runs 5] [--rcvbuf 33554432] [--size-divisor 4] [--extra-config FILE]
//! ```
//! `--extra-config` appends TOML (more `[[module]]` tables, e.g. flowlog) to vxtap's config.
//! `--vxtap2 PATH` adds a second vxtap build to every round (before/after a change, same runs).
//! `--traffic eni` sends the ENI-like model's datagrams (benches/common/eni.rs, as in
//! `gen_eni_capture`'s default capture: flows that open, talk and close in time order, 50 k live, 20 %
//! IPv6, VLAN tags, fragments, ICMP, 0.2 % damaged) instead of the uniform mix (`--traffic uniform`,
//! the default: benches/common/traffic.rs, 20 k flows, all alive throughout). The first
//! `--eni-skip` datagrams (default 500,000: the capture's opening, when its table is still filling)
//! are generated and left out, the next `--eni-window` (default 600,000) are held in memory, and every
//! round sends them from the first, in capture order, so every receiver drains the same datagrams.
//! `--bare-meta 1` adds the bare loop asking the kernel for each datagram's source address and
//! receive timestamp, as vxtap must: the floor for any receiver that needs to know who sent what.
//! Each run also reports CPU time per datagram, summed over the receiver's threads: steadier than
//! the drain rate, which moves with how the scheduler placed the threads.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../benches/common/traffic.rs"]
mod traffic;

#[path = "../benches/common/payloads.rs"]
mod payloads;

#[path = "../benches/common/eni.rs"]
mod eni;

struct Args {
    vxtap: PathBuf,
    bare: PathBuf,
    threads: usize,
    runs: usize,
    rcvbuf: usize,
    size_divisor: usize,
    max_datagrams: u64,
    extra_config: String,
    /// A second vxtap build to compare in the same runs (e.g. before and after a change).
    vxtap2: Option<PathBuf>,
    /// Also run the bare loop asking for source addresses and timestamps (`--bare-meta 1`).
    bare_meta: bool,
    /// `uniform` (benches/common/traffic.rs) or `eni` (benches/common/eni.rs).
    traffic: String,
    eni_skip: u64,
    eni_window: u64,
}

fn parse_args() -> io::Result<Args> {
    let mut a = Args {
        vxtap: "target/release/vxtap".into(),
        bare: "target/release/examples/bare_recvmmsg".into(),
        threads: 2,
        runs: 5,
        rcvbuf: 32 << 20,
        size_divisor: 1,
        max_datagrams: 3_000_000,
        extra_config: String::new(),
        vxtap2: None,
        bare_meta: false,
        traffic: "uniform".into(),
        eni_skip: 500_000,
        eni_window: 600_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| io::Error::other(format!("{flag} needs a value")))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| io::Error::other(format!("{flag}: not a number: {v}")))
        };
        match flag.as_str() {
            "--vxtap" => a.vxtap = value.into(),
            "--bare" => a.bare = value.into(),
            "--threads" => a.threads = num(&value)? as usize,
            "--runs" => a.runs = num(&value)? as usize,
            "--rcvbuf" => a.rcvbuf = num(&value)? as usize,
            "--size-divisor" => a.size_divisor = num(&value)? as usize,
            "--max-datagrams" => a.max_datagrams = num(&value)?,
            "--extra-config" => a.extra_config = std::fs::read_to_string(value)?,
            "--vxtap2" => a.vxtap2 = Some(value.into()),
            "--bare-meta" => a.bare_meta = num(&value)? != 0,
            "--traffic" if value == "uniform" || value == "eni" => a.traffic = value,
            "--eni-skip" => a.eni_skip = num(&value)?,
            "--eni-window" => a.eni_window = num(&value)?,
            _ => return Err(io::Error::other(format!("unknown flag {flag}"))),
        }
    }
    Ok(a)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Receiver {
    Bare,
    /// The bare loop asking for what vxtap needs of each datagram: its source address and its
    /// kernel receive timestamp. Shows how much of vxtap's cost is the kernel's, not vxtap's.
    BareMeta,
    Vxtap,
    Vxtap2,
}

impl Receiver {
    fn name(self) -> &'static str {
        match self {
            Receiver::Bare => "bare",
            Receiver::BareMeta => "bare+meta",
            Receiver::Vxtap => "vxtap",
            Receiver::Vxtap2 => "vxtap2",
        }
    }
}

#[derive(Debug)]
struct RunResult {
    received: u64,
    secs: f64,
    kernel_drops: u64,
    sent: u64,
    /// On-CPU time of all the receiver's threads during the drain.
    cpu_ns: u64,
    detail: String,
}

/// A process's on-CPU time in nanoseconds, summed over its threads (schedstat: exact, where
/// /proc/PID/stat's user and system ticks are too coarse for drains of a few hundred milliseconds).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| {
            std::fs::read_to_string(t.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// One line of /proc/net/udp for a socket bound to 127.0.0.1:`port`: (rx_queue bytes, drops).
fn socket_stats(port: u16) -> io::Result<Vec<(u64, u64)>> {
    let mut text = String::new();
    std::fs::File::open("/proc/net/udp")?.read_to_string(&mut text)?;
    let want = format!("0100007F:{port:04X}");
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(1) != Some(&want.as_str()) {
                return None;
            }
            let rx = f.get(4)?.split(':').nth(1)?;
            let rx = u64::from_str_radix(rx, 16).ok()?;
            let drops = f.last()?.parse().ok()?;
            Some((rx, drops))
        })
        .collect())
}

fn free_port() -> io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// The VXLAN payloads every round sends, in order, from the first.
fn payloads(args: &Args) -> Vec<Vec<u8>> {
    if args.traffic == "eni" {
        let mut t = eni::EniTraffic::new(eni::EniConfig::default());
        let mut skipped = 0;
        while skipped < args.eni_skip && t.next().is_some() {
            skipped += 1;
        }
        let mut out = Vec::with_capacity(args.eni_window as usize);
        while out.len() < args.eni_window as usize {
            let Some(d) = t.next() else { break };
            out.push(d.frame[eni::VXLAN_OFFSET..].to_vec());
        }
        let bytes: usize = out.iter().map(Vec::len).sum();
        println!(
            "traffic: eni, datagrams {skipped}..{} of the default capture ({:.0} MB; {} flows live at the window's end)",
            skipped + out.len() as u64,
            bytes as f64 / 1e6,
            t.live()
        );
        return out;
    }
    let mut t = traffic::Traffic::new(42, 20_000, 8);
    t.size_divisor = args.size_divisor;
    println!("traffic: uniform, 4096 datagrams of 20,000 flows, 8 sessions");
    (0..4096).map(|_| t.next().vxlan.to_vec()).collect()
}

struct Sender<'a> {
    sockets: Vec<UdpSocket>,
    payloads: &'a [Vec<u8>],
    /// Set when a round needed more than the payloads and sent some again.
    wrapped: std::cell::Cell<bool>,
}

impl<'a> Sender<'a> {
    fn new(target: SocketAddr, payloads: &'a [Vec<u8>]) -> io::Result<Sender<'a>> {
        // Many source ports, so that the kernel's SO_REUSEPORT hash fills every receive socket.
        let sockets = (0..32)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0")?;
                s.connect(target)?;
                Ok(s)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Sender {
            sockets,
            payloads,
            wrapped: std::cell::Cell::new(false),
        })
    }

    /// Sends until every receive socket has started to drop (its buffer is full) or `max` datagrams.
    fn fill(&self, port: u16, max: u64) -> io::Result<u64> {
        let start: Vec<u64> = socket_stats(port)?.iter().map(|s| s.1).collect();
        let mut sent = 0u64;
        let mut next = 0usize;
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(64);
        let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(64);
        while sent < max {
            for s in &self.sockets {
                iov.clear();
                hdrs.clear();
                for _ in 0..64 {
                    let p = &self.payloads[next % self.payloads.len()];
                    next += 1;
                    if next > self.payloads.len() {
                        self.wrapped.set(true);
                    }
                    iov.push(libc::iovec {
                        iov_base: p.as_ptr() as *mut libc::c_void,
                        iov_len: p.len(),
                    });
                }
                for v in &mut iov {
                    // SAFETY: mmsghdr is a plain C struct for which all-zero is valid.
                    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    h.msg_hdr.msg_iov = v;
                    h.msg_hdr.msg_iovlen = 1;
                    hdrs.push(h);
                }
                // SAFETY: the headers point at payloads that outlive the call.
                let n =
                    unsafe { libc::sendmmsg(s.as_raw_fd(), hdrs.as_mut_ptr(), hdrs.len() as _, 0) };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                sent += n as u64;
            }
            let now = socket_stats(port)?;
            if now.len() == start.len() && now.iter().zip(&start).all(|(n, s)| n.1 > *s) {
                break;
            }
        }
        Ok(sent)
    }
}

fn run_once(args: &Args, which: Receiver, payloads: &[Vec<u8>]) -> io::Result<RunResult> {
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // Removed when this returns, an early `?` included.
    let dir = tempfile::Builder::new().prefix("vxtap-drain-").tempdir()?;
    let mut child = match which {
        Receiver::Bare | Receiver::BareMeta => Command::new(&args.bare)
            .args([
                addr.to_string(),
                args.threads.to_string(),
                args.rcvbuf.to_string(),
            ])
            .args((which == Receiver::BareMeta).then_some("meta"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
        Receiver::Vxtap | Receiver::Vxtap2 => {
            let config = dir.path().join("vxtap.toml");
            std::fs::write(
                &config,
                format!(
                    "[ingest]\nvxlan = [\"{addr}\"]\nworkers = {}\nreceive_buffer_bytes = {}\n\n\
                     [[module]]\nkind = \"stats\"\ninterval_secs = 10\n\n{}",
                    args.threads, args.rcvbuf, args.extra_config
                ),
            )?;
            let bin = match (which, &args.vxtap2) {
                (Receiver::Vxtap2, Some(b)) => b,
                _ => &args.vxtap,
            };
            Command::new(bin)
                .args(["--log-format", "json", "run", "--config"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while socket_stats(port)?.len() < args.threads {
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(io::Error::other(format!("{which:?} did not bind {addr}")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let the threads reach their receive loops before the receiver is frozen.
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGSTOP);
    let sender = Sender::new(addr, payloads)?;
    let before_drops: u64 = socket_stats(port)?.iter().map(|s| s.1).sum();
    let sent = sender.fill(port, args.max_datagrams)?;
    if sender.wrapped.get() {
        println!("note: {sent} datagrams sent, more than the traffic holds: some were sent twice");
    }
    std::thread::sleep(Duration::from_millis(50));
    let queued = socket_stats(port)?;
    let kernel_drops = queued.iter().map(|s| s.1).sum::<u64>() - before_drops;
    let cpu_before = cpu_ns(child.id());
    let t0 = Instant::now();
    signal(&child, libc::SIGCONT);
    let deadline = t0 + Duration::from_secs(30);
    loop {
        let q: u64 = socket_stats(port)?.iter().map(|s| s.0).sum();
        if q == 0 {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        // Each read of /proc/net/udp walks the kernel's whole UDP table (about 0.1 ms here) on one of
        // the cores the receivers need; polling every 2 ms keeps that under 5 % of a core, for an
        // end time at most 2 ms late on drains of 300 ms and more.
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_ns = cpu_ns(child.id()).saturating_sub(cpu_before);
    signal(&child, libc::SIGINT);
    let mut out = String::new();
    match which {
        Receiver::Bare | Receiver::BareMeta => child.stdout.take(),
        Receiver::Vxtap | Receiver::Vxtap2 => None,
    }
    .map(|mut s| s.read_to_string(&mut out))
    .transpose()?;
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut out)?;
    }
    child.wait()?;
    let (received, detail) = match which {
        Receiver::Bare | Receiver::BareMeta => {
            let n = out
                .lines()
                .find_map(|l| l.strip_prefix("received="))
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(|| io::Error::other(format!("bare output unreadable: {out}")))?;
            (n, String::new())
        }
        Receiver::Vxtap | Receiver::Vxtap2 => {
            let stopped = out
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["message"] == "Stopped.")
                .ok_or_else(|| io::Error::other(format!("no Stopped. line from vxtap: {out}")))?;
            let n = |k: &str| stopped[k].as_u64().unwrap_or(0);
            (
                n("received"),
                format!(
                    "dispatched={} dropped={} drops={}",
                    n("dispatched"),
                    n("dropped"),
                    stopped["drops"]
                ),
            )
        }
    };
    Ok(RunResult {
        received,
        secs,
        kernel_drops,
        sent,
        cpu_ns,
        detail,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() -> io::Result<()> {
    let args = parse_args()?;
    let payloads = payloads(&args);
    let mut rates: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut ratios: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut cpu: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut unaccounted_total = 0i64;
    let mut receivers = vec![Receiver::Bare, Receiver::Vxtap];
    if args.vxtap2.is_some() {
        receivers.push(Receiver::Vxtap2);
    }
    if args.bare_meta {
        receivers.push(Receiver::BareMeta);
    }
    for run in 0..args.runs {
        // Rotate which goes first, so that a drift in machine load favours none.
        let mut order = receivers.clone();
        order.rotate_left(run % receivers.len());
        let mut round: BTreeMap<&str, f64> = BTreeMap::new();
        for which in order {
            let r = run_once(&args, which, &payloads)?;
            let rate = r.received as f64 / r.secs;
            // What the kernel queued (sent minus its drops) must all have been received.
            let unaccounted = r.sent as i64 - r.kernel_drops as i64 - r.received as i64;
            unaccounted_total += unaccounted;
            println!(
                "run {run} {:6}: {} datagrams drained in {:.1} ms = {:.3} M/s (sent {}, kernel drops \
                 while stopped {}, unaccounted {unaccounted}) cpu {:.0} ns/datagram {}",
                which.name(),
                r.received,
                r.secs * 1e3,
                rate / 1e6,
                r.sent,
                r.kernel_drops,
                r.cpu_ns as f64 / r.received.max(1) as f64,
                r.detail
            );
            rates.entry(which.name()).or_default().push(rate);
            cpu.entry(which.name())
                .or_default()
                .push(r.cpu_ns as f64 / r.received.max(1) as f64);
            round.insert(which.name(), rate);
        }
        for which in &receivers[1..] {
            ratios
                .entry(which.name())
                .or_default()
                .push(round[which.name()] / round["bare"]);
        }
        if let Some(meta) = round.get("bare+meta") {
            ratios
                .entry("vxtap/meta")
                .or_default()
                .push(round["vxtap"] / meta);
        }
    }
    let bare = median(rates.entry("bare").or_default());
    let vxtap = median(rates.entry("vxtap").or_default());
    let ratio = median(ratios.entry("vxtap").or_default());
    let mut line = format!(
        "RESULT drain traffic={} threads={} bare_mps={:.3} vxtap_mps={:.3} ratio_median={:.3} unaccounted={}",
        args.traffic,
        args.threads,
        bare / 1e6,
        vxtap / 1e6,
        ratio,
        unaccounted_total
    );
    if args.bare_meta {
        let m = median(rates.entry("bare+meta").or_default());
        let r = median(ratios.entry("bare+meta").or_default());
        let v = median(ratios.entry("vxtap/meta").or_default());
        line.push_str(&format!(
            " bare_meta_mps={:.3} meta_ratio_median={r:.3} vxtap_vs_meta_median={v:.3}",
            m / 1e6
        ));
    }
    // CPU time per datagram is steadier than wall time: it ignores how the scheduler placed the
    // threads and how unevenly the sockets emptied.
    for (name, v) in &mut cpu {
        line.push_str(&format!(
            " cpu_ns_{}={:.0}",
            name.replace('+', "_"),
            median(v)
        ));
    }
    if args.vxtap2.is_some() {
        let v2 = median(rates.entry("vxtap2").or_default());
        let r2 = median(ratios.entry("vxtap2").or_default());
        line.push_str(&format!(
            " vxtap2_mps={:.3} ratio2_median={r2:.3}",
            v2 / 1e6
        ));
    }
    println!("{line}");
    Ok(())
}
