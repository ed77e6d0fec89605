//! The load generators of the reliability benchmarks (bench/reliability.sh): a capture blaster, a
//! spoofed-source flooder and a discarding receiver. Every mode is bounded in count and time and
//! sends only to the address it is given, which the script keeps on loopback inside a network
//! namespace of its own.
//!
//! ```text
//! reliability_load blast   --to 127.0.0.1:4789 --capture FILE [--secs 60] [--max N] [--pps R]
//!                          [--passes N] [--sockets 32] [--threads 1]
//! reliability_load spoof   --to 127.0.0.1:4789 --mode public|vnis [--count N] [--secs S]
//!                          [--source 10.200.0.1] [--pps R]
//! reliability_load discard --bind [::1]:4790 --secs S
//! ```
//!
//! `blast` loads the mirror datagrams of a capture into memory (VXLAN payloads as captured, found
//! the way `vxtap send` finds them) and sends them with sendmmsg from a pool of sockets, each
//! datagram from the socket its captured source port picks (both directions of a flow leave from
//! one port, as Traffic Mirroring sends them). Unpaced it sends as fast as the kernel takes them,
//! which on loopback is many times what a receiver running modules can process: the overload.
//! `--passes N` sends the capture exactly N times (so a receiver's records can be held against N ×
//! an offline replay of the same file); `--pps` paces. It prints `sent=N secs=S pps=R refused=E`,
//! where `refused` counts datagrams the kernel would not take (EAGAIN), which were not sent.
//!
//! `spoof` writes raw IPv4 datagrams (it needs CAP_NET_RAW) whose outer source address is forged:
//! `public` draws a random public unicast source and a random VNI for each datagram (what a
//! misconfigured or hostile sender on the internet would produce), `vnis` sends from one fixed
//! source with a new VNI in every datagram (a flood of new sessions from an allowed address). Each
//! carries a small valid inner Ethernet/IPv4/UDP frame. It prints `sent=N secs=S`.
//!
//! `discard` binds a socket with the smallest receive buffer and never reads it, so that the
//! forward module has a real receiver whose kernel drops what it is sent, at no CPU cost.

use std::io;
use std::mem::zeroed;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vxtap::ingest::pcap::{CaptureReader, Item};
use vxtap::wire::link::{find_datagram, Encap};

/// The most datagrams one `blast` sends whatever its other limits say.
const HARD_MAX: u64 = 2_000_000_000;
/// The longest any mode runs.
const HARD_SECS: u64 = 3_600;

struct Opts {
    to: Option<SocketAddr>,
    bind: Option<SocketAddr>,
    capture: Option<PathBuf>,
    secs: u64,
    max: u64,
    pps: Option<u64>,
    passes: Option<u64>,
    sockets: usize,
    mode: String,
    count: u64,
    source: Ipv4Addr,
}

fn parse(mut args: impl Iterator<Item = String>) -> io::Result<Opts> {
    let mut o = Opts {
        to: None,
        bind: None,
        capture: None,
        secs: 60,
        max: HARD_MAX,
        pps: None,
        passes: None,
        sockets: 32,
        mode: String::new(),
        count: 100_000,
        source: Ipv4Addr::new(10, 200, 0, 1),
    };
    while let Some(flag) = args.next() {
        let v = args
            .next()
            .ok_or_else(|| io::Error::other(format!("{flag} needs a value")))?;
        let bad = |what: &str| io::Error::other(format!("{flag}: not {what}: {v}"));
        let num = || v.parse::<u64>().map_err(|_| bad("a number"));
        match flag.as_str() {
            "--to" => o.to = Some(v.parse().map_err(|_| bad("HOST:PORT"))?),
            "--bind" => o.bind = Some(v.parse().map_err(|_| bad("HOST:PORT"))?),
            "--capture" => o.capture = Some(v.into()),
            "--secs" => o.secs = num()?.min(HARD_SECS),
            "--max" => o.max = num()?.min(HARD_MAX),
            "--pps" => o.pps = Some(num()?.max(1)),
            "--passes" => o.passes = Some(num()?),
            "--sockets" => o.sockets = (num()? as usize).clamp(1, 1024),
            "--mode" => o.mode = v,
            "--count" => o.count = num()?.min(HARD_MAX),
            "--source" => o.source = v.parse().map_err(|_| bad("an IPv4 address"))?,
            _ => return Err(io::Error::other(format!("unknown flag {flag}"))),
        }
    }
    Ok(o)
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let o = parse(args)?;
    match mode.as_str() {
        "blast" => blast(&o),
        "spoof" => spoof(&o),
        "discard" => discard(&o),
        _ => Err(io::Error::other(
            "usage: reliability_load blast|spoof|discard [flags] (see the file's header)",
        )),
    }
}

/// The capture's mirror datagrams: (UDP payload, captured source port).
fn load(path: &Path) -> io::Result<Vec<(Vec<u8>, u16)>> {
    let mut reader = CaptureReader::open(path).map_err(io::Error::other)?;
    let mut out = Vec::new();
    while let Some(item) = reader.next_item().map_err(io::Error::other)? {
        let Item::Frame(r) = item else { continue };
        if let Some(d) = find_datagram(r.link, r.data) {
            if d.encap == Encap::Vxlan {
                out.push((d.payload().to_vec(), d.source_port()));
            }
        }
    }
    if out.is_empty() {
        return Err(io::Error::other(format!(
            "{}: no VXLAN datagrams",
            path.display()
        )));
    }
    Ok(out)
}

/// Sends one batch on `fd`; returns how many the kernel took (the rest would have blocked).
fn send_batch(fd: i32, batch: &[&[u8]]) -> io::Result<usize> {
    let mut iov: Vec<libc::iovec> = batch
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: mmsghdr is a plain C struct for which all-zero is valid.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: the headers point at iovecs and payloads that outlive the call; the socket is connected.
    let n = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::ENOBUFS) => Ok(0),
            _ => Err(e),
        };
    }
    Ok(n as usize)
}

fn blast(o: &Opts) -> io::Result<()> {
    let to = o.to.ok_or_else(|| io::Error::other("blast needs --to"))?;
    let capture = o
        .capture
        .as_ref()
        .ok_or_else(|| io::Error::other("blast needs --capture"))?;
    let datagrams = load(capture)?;
    let any: SocketAddr = if to.is_ipv4() {
        "127.0.0.1:0".parse().unwrap()
    } else {
        "[::1]:0".parse().unwrap()
    };
    let sockets = (0..o.sockets)
        .map(|_| {
            let s = UdpSocket::bind(any)?;
            s.connect(to)?;
            Ok(s)
        })
        .collect::<io::Result<Vec<_>>>()?;
    // Datagrams queued per socket until a batch of 64 is ready, in capture order.
    let mut queues: Vec<Vec<&[u8]>> = vec![Vec::with_capacity(64); sockets.len()];
    let total = match o.passes {
        Some(p) => (p * datagrams.len() as u64).min(o.max),
        None => o.max,
    };
    let deadline = Duration::from_secs(o.secs);
    let start = Instant::now();
    let (mut sent, mut refused, mut next) = (0u64, 0u64, 0u64);
    let flush = |q: &mut Vec<&[u8]>, fd: i32, sent: &mut u64, refused: &mut u64| {
        let n = send_batch(fd, q)?;
        *sent += n as u64;
        *refused += (q.len() - n) as u64;
        q.clear();
        io::Result::Ok(())
    };
    'outer: while next < total {
        if next % 4096 == 0 && start.elapsed() >= deadline {
            break;
        }
        if let Some(pps) = o.pps {
            // Paced: wait until this datagram is due.
            let due = Duration::from_nanos(next.saturating_mul(1_000_000_000) / pps);
            let now = start.elapsed();
            if due > now {
                // Flush what waits, so that paced datagrams leave on time.
                for (q, s) in queues.iter_mut().zip(&sockets) {
                    if !q.is_empty() {
                        flush(q, s.as_raw_fd(), &mut sent, &mut refused)?;
                    }
                }
                if due >= deadline {
                    break 'outer;
                }
                std::thread::sleep(due - now);
            }
        }
        let (payload, port) = &datagrams[(next % datagrams.len() as u64) as usize];
        let i = *port as usize % sockets.len();
        queues[i].push(payload);
        next += 1;
        if queues[i].len() == 64 {
            flush(
                &mut queues[i],
                sockets[i].as_raw_fd(),
                &mut sent,
                &mut refused,
            )?;
        }
    }
    for (q, s) in queues.iter_mut().zip(&sockets) {
        if !q.is_empty() {
            flush(q, s.as_raw_fd(), &mut sent, &mut refused)?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent={sent} secs={secs:.3} pps={:.0} refused={refused} capture_datagrams={}",
        sent as f64 / secs,
        datagrams.len()
    );
    Ok(())
}

/// A small xorshift generator: deterministic, so that a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Whether `a` is a public unicast address: outside every private, shared, loopback, link-local,
/// documentation, benchmarking, multicast and reserved range (vxtap's default allowlist is a subset
/// of what is excluded here).
fn is_public(a: Ipv4Addr) -> bool {
    let [b0, b1, b2, _] = a.octets();
    !(b0 == 0
        || b0 == 10
        || b0 == 127
        || b0 >= 224
        || (b0 == 100 && (64..128).contains(&b1))
        || (b0 == 169 && b1 == 254)
        || (b0 == 172 && (16..32).contains(&b1))
        || (b0 == 192 && b1 == 168)
        || (b0 == 192 && b1 == 0 && (b2 == 0 || b2 == 2))
        || (b0 == 198 && (b1 == 18 || b1 == 19))
        || (b0 == 198 && b1 == 51 && b2 == 100)
        || (b0 == 203 && b1 == 0 && b2 == 113))
}

/// The RFC 1071 checksum of an IPv4 header.
fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes a whole outer IPv4/UDP/VXLAN datagram carrying a 60-byte inner Ethernet/IPv4/UDP frame.
fn spoofed(out: &mut Vec<u8>, src: Ipv4Addr, to: SocketAddr, sport: u16, vni: u32, seq: u32) {
    let SocketAddr::V4(to) = to else {
        unreachable!("checked by the caller")
    };
    // Inner frame: Ethernet, IPv4 10.0.0.1 -> 10.0.0.2, UDP 40000 -> 9999, 4 bytes of payload.
    let mut inner = Vec::with_capacity(64);
    inner.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let mut ip = [
        0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    let c = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    inner.extend_from_slice(&ip);
    inner.extend_from_slice(&[0x9c, 0x40, 0x27, 0x0f, 0, 12, 0, 0]);
    inner.extend_from_slice(&seq.to_be_bytes());

    let udp_len = 8 + 8 + inner.len();
    let total = 20 + udp_len;
    out.clear();
    out.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&to.ip().octets());
    let c = ipv4_checksum(&out[..20]);
    out[10..12].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&to.port().to_be_bytes());
    out.extend_from_slice(&(udp_len as u16).to_be_bytes());
    // UDP checksum 0: none, which IPv4 allows (RFC 768).
    out.extend_from_slice(&[0, 0]);
    // VXLAN: I flag, VNI (RFC 7348).
    out.extend_from_slice(&[0x08, 0, 0, 0]);
    out.extend_from_slice(&(vni << 8).to_be_bytes());
    out.extend_from_slice(&inner);
}

fn spoof(o: &Opts) -> io::Result<()> {
    let to = o.to.ok_or_else(|| io::Error::other("spoof needs --to"))?;
    if !to.is_ipv4() {
        return Err(io::Error::other("spoof sends IPv4 only"));
    }
    let public = match o.mode.as_str() {
        "public" => true,
        "vnis" => false,
        m => return Err(io::Error::other(format!("--mode public|vnis, not {m:?}"))),
    };
    // IPPROTO_RAW implies IP_HDRINCL: the kernel sends the header written here, forged source
    // included.
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(io::Error::other(format!(
            "raw socket (needs CAP_NET_RAW): {}",
            io::Error::last_os_error()
        )));
    }
    let SocketAddr::V4(v4) = to else {
        unreachable!()
    };
    // SAFETY: sockaddr_in is a plain C struct for which all-zero is valid.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
    let mut rng = Rng(0x05ee_d0f5_b00f);
    let mut buf = Vec::with_capacity(128);
    let deadline = Duration::from_secs(o.secs);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut failed = 0u64;
    while sent < o.count && start.elapsed() < deadline {
        if let Some(pps) = o.pps {
            let due = Duration::from_nanos(sent.saturating_mul(1_000_000_000) / pps);
            let now = start.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let r = rng.next();
        let (src, vni) = if public {
            let mut a = Ipv4Addr::from(r as u32);
            while !is_public(a) {
                a = Ipv4Addr::from(rng.next() as u32);
            }
            (a, (r >> 32) as u32 & 0xff_ffff)
        } else {
            // Every VNI new: 1, 2, 3, ...
            (o.source, (sent as u32 + 1) & 0xff_ffff)
        };
        spoofed(
            &mut buf,
            src,
            to,
            1024 + (r >> 56) as u16 * 200,
            vni,
            sent as u32,
        );
        // SAFETY: buf and sa are valid for the call.
        let n = unsafe {
            libc::sendto(
                fd,
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                0,
                &sa as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            failed += 1;
            if failed > 1000 {
                return Err(io::Error::other(format!(
                    "sendto keeps failing: {}",
                    io::Error::last_os_error()
                )));
            }
            continue;
        }
        sent += 1;
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    println!(
        "sent={sent} secs={:.3} failed={failed}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn discard(o: &Opts) -> io::Result<()> {
    let bind = o
        .bind
        .ok_or_else(|| io::Error::other("discard needs --bind"))?;
    let s = socket2::Socket::new(
        socket2::Domain::for_address(bind),
        socket2::Type::DGRAM,
        None,
    )?;
    s.set_recv_buffer_size(4096)?;
    s.bind(&bind.into())?;
    println!("bound={}", s.local_addr()?.as_socket().unwrap_or(bind));
    std::thread::sleep(Duration::from_secs(o.secs));
    Ok(())
}
