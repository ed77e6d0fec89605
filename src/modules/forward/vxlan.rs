//! VXLAN re-send: each selected frame wrapped as AWS Traffic Mirroring wraps it, to UDP receivers.
//!
//! The outer source port is chosen as AWS chooses it (docs/aws-facts.md §1): by a symmetric hash of
//! the inner flow, so an NLB in front of the receivers (which hashes the outer 5-tuple) keeps both
//! directions of a flow on one target. Each shard holds a small pool of UDP sockets on ephemeral ports
//! and picks one per flow, as `vxtap send` does; both directions of a flow are on one shard already.
//! With several receivers in `to`, each flow goes to one of them by the same hash, so a group of
//! appliances shares the load with flows kept whole.
//!
//! Datagrams are gathered for one shard batch (the pipeline tells the module how many packets come,
//! through `Module::prepare`) and sent with one sendmmsg(2) per socket, non-blocking: a socket buffer
//! that is full drops the rest of that run, counted, and the shard moves on.

use std::io;
use std::mem::zeroed;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::Drops;
use crate::wire::flow_hash::shard_of;
use crate::wire::vxlan;

/// The largest UDP payload an IPv4 datagram can carry; longer frames cannot be re-sent whole.
const MAX_PAYLOAD: usize = 65_507;

/// Datagrams gathered before a send, at most: one pipeline batch (64) and then some.
const MAX_QUEUED: usize = 128;

#[derive(Debug, Clone, Copy)]
struct Queued {
    socket: u16,
    dest: u16,
    start: u32,
    len: u32,
}

/// One shard's sender for one VXLAN output.
pub(crate) struct VxlanSender {
    sockets: Vec<Socket>,
    dests: Vec<SockAddr>,
    arena: Vec<u8>,
    queued: Vec<Queued>,
    iovecs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iovecs` and `hdrs` are scratch space, rebuilt from owned buffers at
// every flush and never used across calls; the sender moves between threads only as a whole.
unsafe impl Send for VxlanSender {}

impl VxlanSender {
    /// Opens `pool` non-blocking sockets for the family of `to` (all of one family, checked by the
    /// config).
    pub(crate) fn new(to: &[SocketAddr], pool: usize) -> io::Result<VxlanSender> {
        let first = to
            .first()
            .ok_or_else(|| io::Error::other("no destination"))?;
        let mut sockets = Vec::with_capacity(pool);
        for _ in 0..pool.max(1) {
            let s = Socket::new(
                Domain::for_address(*first),
                Type::DGRAM,
                Some(Protocol::UDP),
            )?;
            let local: SocketAddr = match first {
                SocketAddr::V4(_) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).into(),
                SocketAddr::V6(_) => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).into(),
            };
            s.bind(&local.into())?;
            s.set_nonblocking(true)?;
            // Room for a whole batch of jumbo frames per socket, so one sendmmsg rarely fills it.
            let _ = s.set_send_buffer_size(4 << 20);
            sockets.push(s);
        }
        Ok(VxlanSender {
            sockets,
            dests: to.iter().map(|a| SockAddr::from(*a)).collect(),
            arena: Vec::with_capacity(MAX_QUEUED * 1600),
            queued: Vec::with_capacity(MAX_QUEUED),
            iovecs: Vec::with_capacity(MAX_QUEUED),
            hdrs: Vec::with_capacity(MAX_QUEUED),
        })
    }

    /// Queues one frame with its VNI; `hash` is the flow's symmetric hash. Returns false (and counts
    /// nothing) when the frame cannot be carried by one datagram.
    pub(crate) fn queue(&mut self, vni: u32, frame: &[u8], hash: u64, drops: &mut Drops) -> bool {
        if frame.len() + vxlan::HEADER_LEN > MAX_PAYLOAD {
            drops.too_large += 1;
            return false;
        }
        if self.queued.len() >= MAX_QUEUED {
            self.flush(drops);
        }
        let start = self.arena.len();
        self.arena.resize(start + vxlan::HEADER_LEN, 0);
        let mut header = vxlan::Packet::new_unchecked(&mut self.arena[start..]);
        vxlan::Repr { vni }.emit(&mut header);
        self.arena.extend_from_slice(frame);
        self.queued.push(Queued {
            socket: shard_of(hash, self.sockets.len()) as u16,
            // Other bits than the socket's, so destination and port are not tied to each other.
            dest: shard_of(hash.rotate_left(29), self.dests.len()) as u16,
            start: start as u32,
            len: (frame.len() + vxlan::HEADER_LEN) as u32,
        });
        true
    }

    /// Sends everything queued; returns how many datagrams the kernel took.
    pub(crate) fn flush(&mut self, drops: &mut Drops) -> u64 {
        if self.queued.is_empty() {
            return 0;
        }
        // Within a socket (so within a flow) the order of arrival is kept: arena offsets grow in
        // arrival order, so an unstable sort on (socket, offset) needs no scratch buffer at all.
        self.queued.sort_unstable_by_key(|q| (q.socket, q.start));
        let mut sent = 0;
        let mut i = 0;
        while i < self.queued.len() {
            let socket = self.queued[i].socket;
            let end = self.queued[i..]
                .iter()
                .position(|q| q.socket != socket)
                .map_or(self.queued.len(), |n| i + n);
            sent += self.send_run(usize::from(socket), i, end, drops);
            i = end;
        }
        self.queued.clear();
        self.arena.clear();
        sent
    }

    fn send_run(&mut self, socket: usize, from: usize, to: usize, drops: &mut Drops) -> u64 {
        let fd = self.sockets[socket].as_raw_fd();
        self.iovecs.clear();
        self.hdrs.clear();
        for q in &self.queued[from..to] {
            self.iovecs.push(libc::iovec {
                iov_base: self.arena[q.start as usize..].as_ptr() as *mut libc::c_void,
                iov_len: q.len as usize,
            });
        }
        for (i, q) in self.queued[from..to].iter().enumerate() {
            let dest = &self.dests[usize::from(q.dest)];
            // SAFETY: mmsghdr is a plain C struct for which all-zero is valid.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = dest.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = dest.len();
            h.msg_hdr.msg_iov = &mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
        let total = self.hdrs.len();
        let mut done = 0;
        let mut sent = 0u64;
        // Bounded: every round either sends at least one datagram, skips one, or ends the run.
        while done < total {
            // SAFETY: every header points at an iovec into the arena and at one of `dests`, all
            // alive and unmoved until this call returns; MSG_DONTWAIT never blocks the shard.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[done..].as_mut_ptr(),
                    (total - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                done += n as usize;
                sent += n as u64;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EAGAIN | libc::ENOBUFS) => {
                    drops.socket_full += (total - done) as u64;
                    break;
                }
                // Reported for one datagram (an ICMP error from a receiver, a frame over the path's
                // MTU): count it and go on with the next.
                Some(
                    libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EMSGSIZE,
                ) => {
                    drops.send_errors += 1;
                    done += 1;
                }
                _ => {
                    drops.send_errors += (total - done) as u64;
                    break;
                }
            }
        }
        sent
    }
}
