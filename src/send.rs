//! `vxtap send`: replays a capture to a receiver as AWS Traffic Mirroring would send it. A tool, not a
//! source of the pipeline: it reads captures with the ingest layer's reader and finds mirror
//! datagrams in them with [`find_datagram`], exactly as replay does.
//!
//! Plain frames are wrapped in VXLAN with the given VNI; datagrams that are already VXLAN (UDP 4789)
//! are sent as captured (their UDP payload, malformed or not); GENEVE from a GWLB is unwrapped to the
//! mirror's VXLAN payload inside it. The outer source port follows AWS's behaviour (docs/aws-facts.md §1):
//! a symmetric hash of the inner flow picks one of a pool of sockets, so both directions of a flow
//! leave from one port and flows spread over ports; or one fixed `--source-port`. Sends are batched
//! with sendmmsg(2) per socket.
//!
//! Ports are not bound to the hash value itself: the pool's sockets take whatever ephemeral ports the
//! kernel gives them, which never collides with other programs and keeps the property that matters to a
//! receiver (flow-symmetric, spread) without needing privileges or free port ranges.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::mem::zeroed;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

use crate::ingest::pcap::{CaptureError, CaptureReader, Item};
use crate::pipeline::steer;
use crate::wire::link::{ether_type, find_datagram, ip_udp, l3, Encap, LinkType};
use crate::wire::{geneve, inner, vxlan};

/// The largest UDP payload an IPv4 datagram can carry.
const MAX_PAYLOAD: usize = 65_507;

/// When to send each datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timing {
    /// At the captured pace divided by this factor (1.0 = as captured, 2.0 = twice as fast).
    Speed(f64),
    /// At a fixed rate, datagrams per second.
    Rate(u64),
    /// As fast as the socket takes them.
    TopSpeed,
}

/// Where the outer source port comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePorts {
    /// One socket bound to this port for everything.
    Fixed(u16),
    /// A pool of this many sockets on ephemeral ports, chosen per flow by a symmetric hash.
    Pool(usize),
}

/// What `vxtap send` was asked to do.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// The receiver.
    pub to: SocketAddr,
    /// VNI for plain frames.
    pub vni: u32,
    /// Outer source ports.
    pub source_ports: SourcePorts,
    /// Pacing.
    pub timing: Timing,
    /// How many times to send the files (at least 1).
    pub loops: u32,
    /// Datagrams per sendmmsg call.
    pub batch: usize,
}

/// Why sending could not go on.
#[derive(Debug, Error)]
pub enum SendError {
    /// A capture could not be read.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// A socket could not be created or bound.
    #[error("cannot set up a socket to {to} ({what}): {source}")]
    Socket {
        /// The destination.
        to: SocketAddr,
        /// What failed.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel refused a send for a reason that will not go away.
    #[error("cannot send to {to}: {source}")]
    Send {
        /// The destination.
        to: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The options make no sense.
    #[error("{0}")]
    Options(String),
}

/// Counters while sending and at the end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendReport {
    /// Capture records read.
    pub records: u64,
    /// Datagrams handed to the kernel.
    pub datagrams: u64,
    /// Their UDP payload bytes.
    pub bytes: u64,
    /// Records not sent, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Datagrams the kernel refused (e.g. ICMP port unreachable from the receiver).
    pub errors: u64,
    /// Wall time spent.
    pub elapsed: Duration,
    /// Distinct outer source ports used.
    pub source_ports: usize,
}

impl fmt::Display for SendReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.datagrams as f64 / secs
        } else {
            0.0
        };
        write!(
            f,
            "sent {} datagrams ({} bytes) from {} source port(s) in {:.3} s ({:.0} datagrams/s, {:.2} Mbit/s); {} records read",
            self.datagrams,
            self.bytes,
            self.source_ports,
            secs,
            rate,
            if secs > 0.0 { self.bytes as f64 * 8.0 / secs / 1e6 } else { 0.0 },
            self.records
        )?;
        if self.errors > 0 {
            write!(f, "; {} refused by the kernel", self.errors)?;
        }
        for (why, n) in &self.skipped {
            write!(f, "; skipped {n}: {why}")?;
        }
        Ok(())
    }
}

/// Sends `files` as the options say. `progress` is called about once a second with the counts so far.
pub fn send(
    files: &[PathBuf],
    options: &SendOptions,
    mut progress: impl FnMut(&SendReport),
) -> Result<SendReport, SendError> {
    if let Timing::Speed(s) = options.timing {
        if !(s.is_finite() && s > 0.0) {
            return Err(SendError::Options(format!(
                "speed {s} must be a positive number"
            )));
        }
    }
    if options.timing == Timing::Rate(0) {
        return Err(SendError::Options("--pps must be at least 1".into()));
    }
    if options.vni > 0x00ff_ffff {
        return Err(SendError::Options(format!(
            "VNI {} does not fit in 24 bits",
            options.vni
        )));
    }
    let mut sender = Sender::new(options)?;
    let start = Instant::now();
    let mut last_progress = start;
    let mut index: u64 = 0;
    for _ in 0..options.loops.max(1) {
        for path in files {
            let mut reader = CaptureReader::open(path)?;
            let mut first: Option<(u64, Instant)> = None;
            while let Some(item) = reader.next_item()? {
                sender.report.records += 1;
                let record = match item {
                    Item::Frame(r) => r,
                    Item::Bad { .. } => {
                        sender.skip("unusable capture record");
                        continue;
                    }
                };
                let due = match options.timing {
                    Timing::TopSpeed => None,
                    Timing::Rate(pps) => Some(
                        start + Duration::from_nanos(index.saturating_mul(1_000_000_000) / pps),
                    ),
                    Timing::Speed(speed) => {
                        let (t0, w0) =
                            *first.get_or_insert_with(|| (record.ts.nanos(), Instant::now()));
                        let offset = record.ts.nanos().saturating_sub(t0) as f64 / speed;
                        w0.checked_add(Duration::from_nanos(offset as u64))
                    }
                };
                if let Some(due) = due {
                    // Send what is queued before waiting, so nothing is held back by the pacing.
                    if due > Instant::now() + Duration::from_micros(200) {
                        sender.flush()?;
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                    }
                }
                if sender.queue(record.link, record.data)? {
                    index += 1;
                }
                if last_progress.elapsed() >= Duration::from_secs(1) {
                    sender.flush()?;
                    last_progress = Instant::now();
                    sender.report.elapsed = start.elapsed();
                    progress(&sender.report);
                }
            }
            sender.flush()?;
        }
    }
    sender.report.elapsed = start.elapsed();
    sender.report.source_ports = sender.used.iter().filter(|u| **u).count();
    Ok(sender.report)
}

/// One message waiting in the batch: which socket, and where its bytes are in the arena.
#[derive(Debug, Clone, Copy)]
struct Queued {
    socket: u32,
    seq: u32,
    start: u32,
    len: u32,
}

struct Sender {
    to: SocketAddr,
    dest: socket2::SockAddr,
    vni: u32,
    ports: SourcePorts,
    sockets: Vec<Option<Socket>>,
    /// Which sockets have sent something (the first is opened early, to fail fast).
    used: Vec<bool>,
    /// Datagrams gathered before a flush: `batch` per socket for up to eight sockets, so that each
    /// sendmmsg still carries several datagrams when flows spread over many ports. Paced sends flush
    /// before every wait, so this adds no delay.
    window: usize,
    /// Datagrams per sendmmsg call.
    batch: usize,
    arena: Vec<u8>,
    queued: Vec<Queued>,
    iovecs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Rebuilt Ethernet frames for non-Ethernet link types.
    scratch: Vec<u8>,
    report: SendReport,
}

impl Sender {
    fn new(options: &SendOptions) -> Result<Sender, SendError> {
        let pool = match options.source_ports {
            SourcePorts::Fixed(_) => 1,
            SourcePorts::Pool(n) if (1..=1024).contains(&n) => n,
            SourcePorts::Pool(n) => {
                return Err(SendError::Options(format!(
                    "source port pool of {n}: use 1 to 1024"
                )))
            }
        };
        let batch = options.batch.clamp(1, 1024);
        let window = batch * pool.min(8);
        let mut sender = Sender {
            to: options.to,
            dest: options.to.into(),
            vni: options.vni,
            ports: options.source_ports,
            sockets: (0..pool).map(|_| None).collect(),
            used: vec![false; pool],
            window,
            batch,
            arena: Vec::with_capacity(window * 1600),
            queued: Vec::with_capacity(window),
            iovecs: Vec::with_capacity(window),
            hdrs: Vec::with_capacity(window),
            scratch: Vec::with_capacity(9216),
            report: SendReport::default(),
        };
        // Open the first socket now, so that a bad destination or port fails before any reading.
        sender.socket(0)?;
        Ok(sender)
    }

    fn skip(&mut self, why: &'static str) {
        *self.report.skipped.entry(why).or_insert(0) += 1;
    }

    fn socket(&mut self, i: usize) -> Result<&Socket, SendError> {
        if self.sockets[i].is_none() {
            let to = self.to;
            let err = |what| move |source| SendError::Socket { to, what, source };
            let s = Socket::new(Domain::for_address(to), Type::DGRAM, Some(Protocol::UDP))
                .map_err(err("socket"))?;
            let port = match self.ports {
                SourcePorts::Fixed(p) => p,
                SourcePorts::Pool(_) => 0,
            };
            let local: SocketAddr = match to {
                SocketAddr::V4(_) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).into(),
                SocketAddr::V6(_) => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into(),
            };
            s.bind(&local.into()).map_err(err("bind"))?;
            // Not connected: a connected UDP socket fails its next send after an ICMP error (a port
            // with no listener), losing that datagram; an unconnected one sends everything.
            // A large send buffer lets a whole batch of jumbo datagrams go in one call.
            let _ = s.set_send_buffer_size(4 << 20);
            self.sockets[i] = Some(s);
        }
        Ok(self.sockets[i]
            .as_ref()
            .expect("the socket was created above when missing"))
    }

    /// Works out what to send for one record and queues it; returns whether it was queued.
    fn queue(&mut self, link: LinkType, data: &[u8]) -> Result<bool, SendError> {
        let Some(l3) = l3(link, data) else {
            self.skip("no readable link header");
            return Ok(false);
        };
        let pool = self.sockets.len() as u64;
        let found = find_datagram(link, data);
        let (payload, key): (&[u8], u64) = match found.map(|d| (d.encap, d)) {
            Some((Encap::Vxlan, d)) => {
                // Keep the capture's own port choice: same captured port, same socket.
                (
                    d.payload(),
                    u64::from(d.source_port()).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                )
            }
            Some((Encap::Geneve, d)) => match geneve_to_vxlan(d.payload()) {
                Some(GeneveInner::Vxlan { payload, sport }) => (
                    payload,
                    u64::from(sport).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                ),
                Some(GeneveInner::Frame { vni, frame }) => {
                    let key = flow_key(frame);
                    self.scratch.clear();
                    push_vxlan_header(&mut self.scratch, vni);
                    self.scratch.extend_from_slice(frame);
                    (&self.scratch[..], key)
                }
                None => {
                    self.skip("GENEVE without a mirror packet inside");
                    return Ok(false);
                }
            },
            None => {
                self.scratch.clear();
                push_vxlan_header(&mut self.scratch, self.vni);
                if link == LinkType::Ethernet {
                    self.scratch.extend_from_slice(data);
                } else {
                    l3.push_as_ethernet(&mut self.scratch);
                }
                let key = flow_key(&self.scratch[vxlan::HEADER_LEN..]);
                (&self.scratch[..], key)
            }
        };
        if payload.len() > MAX_PAYLOAD {
            self.skip("larger than a UDP datagram");
            return Ok(false);
        }
        let socket = match self.ports {
            SourcePorts::Fixed(_) => 0,
            SourcePorts::Pool(_) => steer::shard_of(key, pool as usize),
        };
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(payload);
        self.queued.push(Queued {
            socket: socket as u32,
            seq: self.queued.len() as u32,
            start,
            len: payload.len() as u32,
        });
        if self.queued.len() >= self.window {
            self.flush()?;
        }
        Ok(true)
    }

    /// Sends everything queued: one sendmmsg per socket, in capture order within each socket (so
    /// within each flow).
    fn flush(&mut self) -> Result<(), SendError> {
        self.queued.sort_unstable_by_key(|q| (q.socket, q.seq));
        let mut i = 0;
        while i < self.queued.len() {
            let socket = self.queued[i].socket;
            let end = self.queued[i..]
                .iter()
                .position(|q| q.socket != socket)
                .map_or(self.queued.len(), |n| i + n);
            self.send_run(socket as usize, i, end)?;
            i = end;
        }
        self.queued.clear();
        self.arena.clear();
        Ok(())
    }

    fn send_run(&mut self, socket: usize, from: usize, to: usize) -> Result<(), SendError> {
        self.socket(socket)?;
        let fd = self.sockets[socket]
            .as_ref()
            .expect("socket() created it")
            .as_raw_fd();
        self.iovecs.clear();
        self.hdrs.clear();
        for q in &self.queued[from..to] {
            self.iovecs.push(libc::iovec {
                iov_base: self.arena[q.start as usize..].as_ptr() as *mut libc::c_void,
                iov_len: q.len as usize,
            });
        }
        for i in 0..self.iovecs.len() {
            // SAFETY: mmsghdr is a plain C struct for which all-zero is valid.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = self.dest.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = self.dest.len();
            h.msg_hdr.msg_iov = &mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
        let mut done = 0;
        while done < self.hdrs.len() {
            // SAFETY: every header points at an iovec into the arena and at `dest`, all alive and
            // unmoved here.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[done..].as_mut_ptr(),
                    (self.hdrs.len() - done).min(self.batch) as libc::c_uint,
                    0,
                )
            };
            if n >= 0 {
                for q in &self.queued[from + done..from + done + n as usize] {
                    self.report.datagrams += 1;
                    self.report.bytes += u64::from(q.len);
                }
                done += n as usize;
                self.used[socket] |= n > 0;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::ENOBUFS | libc::EAGAIN) => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                // Errors the network reports for one datagram: count it and go on.
                Some(
                    libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EMSGSIZE,
                ) => {
                    self.report.errors += 1;
                    done += 1;
                }
                _ => {
                    return Err(SendError::Send {
                        to: self.to,
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }
}

/// Appends a VXLAN header for `vni` (with the I flag, as AWS sends it).
fn push_vxlan_header(out: &mut Vec<u8>, vni: u32) {
    let at = out.len();
    out.resize(at + vxlan::HEADER_LEN, 0);
    let mut header = vxlan::Packet::new_unchecked(&mut out[at..]);
    vxlan::Repr { vni }.emit(&mut header);
}

/// The symmetric flow hash of an Ethernet frame (session 0), to pick a source port.
fn flow_key(frame: &[u8]) -> u64 {
    steer::symmetric_hash(0, &inner::dissect(frame))
}

enum GeneveInner<'a> {
    /// The mirror's own UDP 4789 payload and its source port.
    Vxlan { payload: &'a [u8], sport: u16 },
    /// A bare Ethernet frame in GENEVE's own VNI.
    Frame { vni: u32, frame: &'a [u8] },
}

/// What a GWLB's GENEVE datagram carries, as Traffic Mirroring sent it.
fn geneve_to_vxlan(payload: &[u8]) -> Option<GeneveInner<'_>> {
    let packet = geneve::Packet::new_checked(payload).ok()?;
    let repr = geneve::Repr::parse(&packet).ok()?;
    let inner = payload.get(repr.header_len()..)?;
    let ip = match repr.protocol {
        geneve::PROTO_IPV4 | geneve::PROTO_IPV6 => inner,
        geneve::PROTO_ETHERNET => {
            let ty = u16::from_be_bytes([*inner.get(12)?, *inner.get(13)?]);
            let carried = matches!(ty, ether_type::IPV4 | ether_type::IPV6)
                .then(|| ip_udp(&inner[14..]))
                .flatten()
                .filter(|(_, udp)| udp.len() >= 8 && udp[2..4] == vxlan::PORT.to_be_bytes());
            if carried.is_none() {
                return Some(GeneveInner::Frame {
                    vni: repr.vni,
                    frame: inner,
                });
            }
            &inner[14..]
        }
        _ => return None,
    };
    let (_, udp) = ip_udp(ip)?;
    if udp.len() < 8 || udp[2..4] != vxlan::PORT.to_be_bytes() {
        return None;
    }
    Some(GeneveInner::Vxlan {
        payload: &udp[8..],
        sport: u16::from_be_bytes([udp[0], udp[1]]),
    })
}

/// Resolves `HOST:PORT` to the first address, for the CLI.
pub fn resolve(to: &str) -> Result<SocketAddr, SendError> {
    use std::net::ToSocketAddrs;
    to.to_socket_addrs()
        .map_err(|e| SendError::Options(format!("--to {to}: {e}")))?
        .next()
        .ok_or_else(|| SendError::Options(format!("--to {to}: no address")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn geneve(protocol: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
        let v = vni.to_be_bytes();
        let mut g = vec![0x00, 0x00];
        g.extend_from_slice(&protocol.to_be_bytes());
        g.extend_from_slice(&[v[1], v[2], v[3], 0]);
        g.extend_from_slice(inner);
        g
    }

    fn mirror_ip(dport: u16) -> Vec<u8> {
        let mut ip = Vec::new();
        PacketBuilder::ipv4([10, 1, 2, 3], [10, 0, 0, 200], 64)
            .udp(51000, dport)
            .write(&mut ip, &[0x08, 0, 0, 0, 0, 0x10, 0x92, 0, 0xab])
            .unwrap();
        ip
    }

    #[test]
    fn geneve_from_a_gwlb_is_unwrapped_to_the_mirror_vxlan() {
        match geneve_to_vxlan(&geneve(geneve::PROTO_IPV4, 0, &mirror_ip(4789))) {
            Some(GeneveInner::Vxlan { payload, sport }) => {
                assert_eq!(payload, &[0x08, 0, 0, 0, 0, 0x10, 0x92, 0, 0xab]);
                assert_eq!(sport, 51000);
            }
            _ => panic!("expected the VXLAN payload"),
        }
        // IPv4 that is not the mirror's VXLAN: nothing to send.
        assert!(geneve_to_vxlan(&geneve(geneve::PROTO_IPV4, 0, &mirror_ip(53))).is_none());
        // An Ethernet frame that is not a mirror packet is the mirrored frame itself.
        let frame = [0xffu8; 20];
        match geneve_to_vxlan(&geneve(geneve::PROTO_ETHERNET, 77, &frame)) {
            Some(GeneveInner::Frame { vni, frame: f }) => assert_eq!((vni, f), (77, &frame[..])),
            _ => panic!("expected the frame"),
        }
        assert!(geneve_to_vxlan(&[0, 0, 8]).is_none());
    }

    #[test]
    fn vxlan_header_carries_the_vni() {
        let mut out = Vec::new();
        push_vxlan_header(&mut out, 0x00ab_cdef);
        assert_eq!(out, [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
    }
}
