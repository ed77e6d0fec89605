//! The UDP listeners: one thread per socket, SO_REUSEPORT groups, recvmmsg batches, kernel timestamps.
//!
//! Buffers are allocated once per worker and reused for every batch (quinn-udp's habit). Each buffer
//! holds a 9,216-byte datagram: AWS mirrors up to a 9,001-byte inner frame plus encapsulation, and a
//! peer with 1,526-byte buffers silently lost data. A datagram larger than that is counted as `oversize`.

use std::io;
use std::mem::{size_of, zeroed, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

use crate::base::{DropReason, Timestamp};
use crate::config::Dispatch;
use crate::config::IngestConfig;
use crate::pipeline::{
    reuseport, Accounting, Encap, Handoff, Ingress, Pipeline, PipelineReport, RunToCompletion,
    ShardCounters, Shards,
};

/// Receive buffer per datagram.
pub const DATAGRAM_BUFFER: usize = 9216;
/// How long a worker blocks in recvmmsg before it checks for shutdown and reports it is alive.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);
/// Full receive batches in a row after which a worker flushes its shard batches anyway.
const MAX_UNFLUSHED: u32 = 8;
/// Full receive batches in a row a worker with several sockets takes from one before it looks at
/// the others.
const MAX_STAY: u32 = 8;
/// Room for one SCM_TIMESTAMPNS control message (a cmsghdr and a timespec), with slack.
const CMSG_SPACE: usize = 64;

/// Why the listeners could not start.
#[derive(Debug, Error)]
pub enum IngestError {
    /// A socket could not be created, configured or bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Socket {
        /// The listen address.
        addr: SocketAddr,
        /// What failed.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Another process already listens there, so mirrored traffic would be split with it.
    #[error("{addr} is already in use by another process")]
    InUse {
        /// The listen address.
        addr: SocketAddr,
    },
    /// No listener could be bound.
    #[error("no listen address could be bound")]
    NothingBound,
    /// A worker thread could not be started.
    #[error("cannot start worker thread: {0}")]
    Spawn(#[source] io::Error),
}

/// Bound listeners whose workers have not started yet. Binding comes first so that dispatch can be
/// chosen with the sockets in hand: run-to-completion needs the kernel to accept the steering
/// program on every group ([`UdpListeners::steer_by_flow`]).
#[derive(Debug)]
pub struct UdpListeners {
    groups: Vec<(Encap, SocketAddr, Vec<Socket>)>,
    per_addr: usize,
    batch_size: usize,
}

/// A live pipeline as [`UdpListeners::start`] chose to run it.
#[derive(Debug)]
pub enum LivePipeline {
    /// Shard threads fed by the receive workers.
    Handoff(Pipeline<Handoff>),
    /// Receive workers that run the shards themselves.
    RunToCompletion(Pipeline<RunToCompletion>),
}

impl LivePipeline {
    /// Datagram accounting.
    pub fn accounting(&self) -> &Arc<Accounting> {
        match self {
            LivePipeline::Handoff(p) => p.accounting(),
            LivePipeline::RunToCompletion(p) => p.accounting(),
        }
    }

    /// Per-shard counters.
    pub fn shard_counters(&self) -> &[Arc<ShardCounters>] {
        match self {
            LivePipeline::Handoff(p) => p.shard_counters(),
            LivePipeline::RunToCompletion(p) => p.shard_counters(),
        }
    }

    /// See [`Pipeline::finish`]: the workers must have stopped first.
    pub fn finish(self) -> PipelineReport {
        match self {
            LivePipeline::Handoff(p) => p.finish(),
            LivePipeline::RunToCompletion(p) => p.finish(),
        }
    }
}

/// Running UDP workers.
#[derive(Debug)]
pub struct UdpIngest {
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    local: Vec<(Encap, SocketAddr)>,
    inline: bool,
}

impl UdpListeners {
    /// Binds every configured listener, `workers` sockets each (one SO_REUSEPORT group per address).
    ///
    /// An IPv6 wildcard listener on a host without IPv6 is skipped with a warning, so the default
    /// config runs anywhere; every other failure is an error.
    pub fn bind(config: &IngestConfig) -> Result<UdpListeners, IngestError> {
        let per_addr = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut groups = Vec::new();
        let mut warned_rmem = false;
        let listeners = config
            .vxlan
            .iter()
            .map(|a| (Encap::Vxlan, *a))
            .chain(config.geneve.iter().map(|a| (Encap::Geneve, *a)));
        for (encap, addr) in listeners {
            let sockets = match bind_group(
                addr,
                per_addr,
                config.receive_buffer_bytes,
                &mut warned_rmem,
            ) {
                Ok(s) => s,
                Err(IngestError::Socket { source, .. })
                    if addr.ip().is_unspecified()
                        && addr.is_ipv6()
                        && matches!(
                            source.raw_os_error(),
                            Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                        ) =>
                {
                    tracing::warn!(message = "IPv6 is not available; skipping listener.", addr = %addr, error = %source);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let bound = sockets[0]
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or(addr);
            tracing::info!(message = "Listening.", encapsulation = ?encap, addr = %bound, sockets = sockets.len());
            groups.push((encap, bound, sockets));
        }
        if groups.is_empty() {
            return Err(IngestError::NothingBound);
        }
        Ok(UdpListeners {
            groups,
            per_addr,
            batch_size: config.batch_size,
        })
    }

    /// Receive workers per listen address.
    pub fn workers_per_address(&self) -> usize {
        self.per_addr
    }

    /// Attaches the kernel steering program of [`reuseport`] to every group, so that both directions
    /// of a flow reach the same socket index in every group; or says why run-to-completion cannot be
    /// had with `shards` shards.
    pub fn steer_by_flow(&self, shards: usize) -> Result<(), String> {
        inline_steering(&self.groups, self.per_addr, shards)
    }

    /// Starts the workers the way `vxtap run` does: run-to-completion when the configuration allows
    /// it ([`Shards::may_run_to_completion`]) and the kernel takes the steering program on every
    /// group, hand-off otherwise (saying why when the configuration asked for run-to-completion).
    pub fn start(self, shards: Shards) -> Result<(LivePipeline, UdpIngest), IngestError> {
        let explicit = shards.config().pipeline.dispatch == Dispatch::Inline;
        let steered = if shards.may_run_to_completion() {
            match self.steer_by_flow(shards.count()) {
                Ok(()) => true,
                Err(reason) if explicit => {
                    tracing::warn!(message = "Cannot run modules on the receive workers; handing off to shard threads.", reason = %reason);
                    false
                }
                Err(reason) => {
                    tracing::info!(message = "Handing packets off to shard threads.", reason = %reason);
                    false
                }
            }
        } else {
            if explicit {
                tracing::warn!(message = "dispatch = \"inline\" needs UDP VXLAN listeners only (no interface capture); handing off to shard threads.");
            }
            false
        };
        if steered {
            let (pipeline, ingresses) = shards.run_to_completion();
            let ingest = self.start_run_to_completion(ingresses)?;
            return Ok((LivePipeline::RunToCompletion(pipeline), ingest));
        }
        let pipeline = shards
            .start_handoff()
            .map_err(|e| IngestError::Spawn(io::Error::other(e)))?;
        let ingest = self.start_handoff(&pipeline)?;
        Ok((LivePipeline::Handoff(pipeline), ingest))
    }

    /// Hand-off dispatch: one thread per socket, each steering its packets to the shard threads.
    pub fn start_handoff(self, pipeline: &Pipeline<Handoff>) -> Result<UdpIngest, IngestError> {
        let mut run = Starting::new(&self);
        for (encap, bound, sockets) in self.groups {
            for (i, socket) in sockets.into_iter().enumerate() {
                let worker = Worker::new(
                    vec![(socket, encap)],
                    pipeline.ingress(),
                    run.stop.clone(),
                    self.batch_size,
                );
                run.spawn(format!("vxtap-rx-{}-{i}", bound.port()), worker)?;
            }
        }
        Ok(run.done(false))
    }

    /// Run-to-completion: worker `i` owns socket `i` of every group and runs the shard of
    /// `ingresses[i]` itself. Call after [`UdpListeners::steer_by_flow`] succeeded with as many shards
    /// as there are handles.
    pub fn start_run_to_completion(
        self,
        ingresses: Vec<Ingress>,
    ) -> Result<UdpIngest, IngestError> {
        if ingresses.len() != self.per_addr {
            let e = io::Error::other(format!(
                "{} shards for {} workers per address",
                ingresses.len(),
                self.per_addr
            ));
            return Err(IngestError::Spawn(e));
        }
        tracing::info!(
            message = "Running modules on the receive workers (run-to-completion), steered by the kernel.",
            workers = self.per_addr,
        );
        let mut run = Starting::new(&self);
        let mut per_worker: Vec<Vec<(Socket, Encap)>> =
            (0..self.per_addr).map(|_| Vec::new()).collect();
        for (encap, _, sockets) in self.groups {
            for (i, socket) in sockets.into_iter().enumerate() {
                per_worker[i].push((socket, encap));
            }
        }
        for (i, (sockets, ingress)) in per_worker.into_iter().zip(ingresses).enumerate() {
            let worker = Worker::new(sockets, ingress, run.stop.clone(), self.batch_size);
            run.spawn(format!("vxtap-rx-{i}"), worker)?;
        }
        Ok(run.done(true))
    }
}

/// Workers being started: a worker that cannot be started stops those already running (they drain
/// and end).
struct Starting {
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    local: Vec<(Encap, SocketAddr)>,
}

impl Starting {
    fn new(listeners: &UdpListeners) -> Starting {
        Starting {
            workers: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            local: listeners.groups.iter().map(|(e, a, _)| (*e, *a)).collect(),
        }
    }

    fn spawn(&mut self, name: String, mut worker: Worker) -> Result<(), IngestError> {
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || worker.run())
            .map_err(|e| {
                self.stop.store(true, Ordering::Relaxed);
                IngestError::Spawn(e)
            })?;
        self.workers.push(thread);
        Ok(())
    }

    fn done(self, inline: bool) -> UdpIngest {
        UdpIngest {
            workers: self.workers,
            stop: self.stop,
            local: self.local,
            inline,
        }
    }
}

impl UdpIngest {
    /// Whether the workers run the modules themselves (run-to-completion dispatch).
    pub fn is_inline(&self) -> bool {
        self.inline
    }

    /// The bound addresses (useful when a config asked for port 0).
    pub fn local_addrs(&self) -> &[(Encap, SocketAddr)] {
        &self.local
    }

    /// Stops the workers after they have drained what their sockets already hold, and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            if w.join().is_err() {
                tracing::error!(message = "A receive worker panicked.");
            }
        }
    }
}

/// Attaches the steering program to every group, or says why run-to-completion cannot be had.
fn inline_steering(
    groups: &[(Encap, SocketAddr, Vec<Socket>)],
    per_addr: usize,
    shards: usize,
) -> Result<(), String> {
    if groups.iter().any(|(e, _, _)| *e == Encap::Geneve) {
        // GENEVE from a GWLB wraps IPv4/UDP/VXLAN before the inner frame; the program reads VXLAN only.
        return Err("GENEVE listeners are steered in user space".into());
    }
    if per_addr != shards {
        return Err(format!(
            "{per_addr} workers per address but {shards} shards; run-to-completion needs one shard per worker"
        ));
    }
    for (_, addr, sockets) in groups {
        attach_steering(&sockets[0], sockets.len())
            .map_err(|e| format!("the kernel refused the steering program on {addr}: {e}"))?;
    }
    Ok(())
}

/// Attaches [`reuseport::vxlan_program`] to the SO_REUSEPORT group `socket` belongs to (one socket
/// attaches it for the whole group). Linux >= 4.5.
fn attach_steering(socket: &Socket, sockets: usize) -> io::Result<()> {
    let sockets =
        u32::try_from(sockets).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut filters: Vec<libc::sock_filter> = reuseport::vxlan_program(sockets)
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let prog = libc::sock_fprog {
        len: filters.len() as libc::c_ushort,
        filter: filters.as_mut_ptr(),
    };
    // SAFETY: a valid socket fd, and a sock_fprog pointing at `filters`, which outlives the call (the
    // kernel copies the program).
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn bind_group(
    addr: SocketAddr,
    n: usize,
    rcvbuf: usize,
    warned: &mut bool,
) -> Result<Vec<Socket>, IngestError> {
    // A probe without SO_REUSEPORT fails if any socket is bound there, including another vxtap's
    // reuseport group, which would otherwise silently share (and split) the mirrored traffic.
    if addr.port() != 0 {
        let probe = new_socket(addr)?;
        if let Err(e) = probe.bind(&addr.into()) {
            return Err(if e.kind() == io::ErrorKind::AddrInUse {
                IngestError::InUse { addr }
            } else {
                IngestError::Socket {
                    addr,
                    what: "bind",
                    source: e,
                }
            });
        }
    }
    let mut sockets: Vec<Socket> = Vec::with_capacity(n);
    let mut bind_addr = addr;
    for _ in 0..n {
        let s = new_socket(addr)?;
        let err = |what| move |source| IngestError::Socket { addr, what, source };
        s.set_reuse_port(true).map_err(err("SO_REUSEPORT"))?;
        set_rcvbuf(&s, rcvbuf, warned).map_err(err("SO_RCVBUF"))?;
        s.set_read_timeout(Some(RECV_TIMEOUT))
            .map_err(err("SO_RCVTIMEO"))?;
        set_timestamping(&s).map_err(err("SO_TIMESTAMPNS"))?;
        s.bind(&bind_addr.into()).map_err(err("bind"))?;
        // With port 0 the first bind picks a port; the rest of the group must join that one.
        if let Some(bound) = s.local_addr().ok().and_then(|a| a.as_socket()) {
            bind_addr = bound;
        }
        sockets.push(s);
    }
    Ok(sockets)
}

fn new_socket(addr: SocketAddr) -> Result<Socket, IngestError> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(
        |source| IngestError::Socket {
            addr,
            what: "socket",
            source,
        },
    )?;
    if addr.is_ipv6() {
        // Separate IPv4 and IPv6 sockets keep sources canonical and let either family be disabled.
        s.set_only_v6(true).map_err(|source| IngestError::Socket {
            addr,
            what: "IPV6_V6ONLY",
            source,
        })?;
    }
    Ok(s)
}

fn set_rcvbuf(s: &Socket, want: usize, warned: &mut bool) -> io::Result<()> {
    if want == 0 {
        return Ok(());
    }
    s.set_recv_buffer_size(want)?;
    // Linux doubles the value for bookkeeping and caps the request at net.core.rmem_max.
    let granted = s.recv_buffer_size()? / 2;
    if granted < want && !*warned {
        *warned = true;
        tracing::warn!(
            message = "Receive buffer capped by the kernel; raise net.core.rmem_max (see docs/operations.md).",
            requested_bytes = want,
            granted_bytes = granted,
        );
    }
    Ok(())
}

fn set_timestamping(s: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

struct Worker {
    /// One socket in hand-off mode; in run-to-completion, socket `i` of every listen address.
    sockets: Vec<(Socket, Encap)>,
    /// Which socket a multi-socket worker tries first next time, so none is favoured.
    next: usize,
    /// Full batches in a row taken from the socket `next` points at.
    stayed: u32,
    /// The sockets for poll, when there are several.
    pollfds: Vec<libc::pollfd>,
    ingress: Ingress,
    stop: Arc<AtomicBool>,
    batch: RecvBatch,
}

impl Worker {
    fn new(
        sockets: Vec<(Socket, Encap)>,
        ingress: Ingress,
        stop: Arc<AtomicBool>,
        batch_size: usize,
    ) -> Worker {
        let pollfds = sockets
            .iter()
            .map(|(s, _)| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        Worker {
            sockets,
            pollfds,
            next: 0,
            stayed: 0,
            ingress,
            stop,
            batch: RecvBatch::new(batch_size),
        }
    }

    fn run(&mut self) {
        let mut draining = false;
        // A full receive batch means the socket probably holds more: the partly filled shard batches
        // are then kept for the next call (which does not wait), so that under load shards get full
        // batches and fewer wake-ups. A short batch, an empty socket, or MAX_UNFLUSHED full batches
        // in a row flush (the flush also refreshes the session cache after a reload).
        let mut unflushed = false;
        let mut full_in_a_row = 0u32;
        loop {
            match self.receive(draining || unflushed) {
                Ok((n, encap)) => {
                    for i in 0..n {
                        let d = self.batch.datagram(i);
                        if d.truncated {
                            self.ingress.refuse(d.payload.len(), DropReason::Oversize);
                        } else {
                            self.ingress.datagram(d.ts, d.source, encap, d.payload);
                        }
                    }
                    full_in_a_row = if n == self.batch.len() {
                        full_in_a_row + 1
                    } else {
                        0
                    };
                    unflushed = (1..MAX_UNFLUSHED).contains(&full_in_a_row);
                    if !unflushed {
                        self.ingress.send_pending();
                        full_in_a_row = 0;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    self.ingress.send_pending();
                    unflushed = false;
                    full_in_a_row = 0;
                    if draining {
                        break;
                    }
                    // Nothing at hand: a shard run here ticks on the wall clock and takes reloads.
                    self.ingress.idle(Timestamp::now());
                }
                Err(e) => {
                    tracing::error!(message = "recvmmsg failed.", error = %e);
                    self.ingress.send_pending();
                    unflushed = false;
                    full_in_a_row = 0;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            self.ingress.beat(Timestamp::now());
            // After the stop request, keep reading without blocking until the socket is empty, so that
            // nothing the kernel accepted before the stop is lost.
            if !draining && self.stop.load(Ordering::Relaxed) {
                draining = true;
            }
        }
    }

    /// One receive batch from one of the worker's sockets: how many datagrams, and their encapsulation.
    /// Waits up to the receive timeout unless `nowait`.
    fn receive(&mut self, nowait: bool) -> io::Result<(usize, Encap)> {
        if let [(socket, encap)] = self.sockets.as_slice() {
            let flags = if nowait {
                libc::MSG_DONTWAIT
            } else {
                libc::MSG_WAITFORONE
            };
            return self.batch.recv(socket, flags).map(|n| (n, *encap));
        }
        // Several sockets: take turns without waiting, and wait on all of them only when all are empty.
        for _ in 0..2 {
            let count = self.sockets.len();
            for k in 0..count {
                let i = (self.next + k) % count;
                let (socket, encap) = &self.sockets[i];
                match self.batch.recv(socket, libc::MSG_DONTWAIT) {
                    Ok(n) => {
                        // A full batch: that socket likely holds more, so ask it first again rather
                        // than spend an empty call on an idle one (the usual case with the default
                        // IPv4 + IPv6 listeners), but move on after a few so none waits long.
                        self.stayed = match (n == self.batch.len(), i == self.next) {
                            (true, true) => self.stayed + 1,
                            (true, false) => 1,
                            (false, _) => MAX_STAY + 1,
                        };
                        if self.stayed <= MAX_STAY {
                            self.next = i;
                        } else {
                            self.next = (i + 1) % count;
                            self.stayed = 0;
                        }
                        return Ok((n, *encap));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if nowait {
                break;
            }
            // SAFETY: `pollfds` is a live array of that many pollfd structs, for open sockets.
            let rc = unsafe {
                libc::poll(
                    self.pollfds.as_mut_ptr(),
                    self.pollfds.len() as libc::nfds_t,
                    RECV_TIMEOUT.as_millis() as libc::c_int,
                )
            };
            match rc {
                0 => return Err(io::ErrorKind::TimedOut.into()),
                n if n < 0 => return Err(io::Error::last_os_error()),
                _ => {}
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// One datagram of a received batch.
struct Datagram<'a> {
    source: IpAddr,
    ts: Timestamp,
    payload: &'a [u8],
    truncated: bool,
}

/// The buffers and headers of one recvmmsg call, allocated once. The headers point into the other
/// vectors, which are never resized after construction.
struct RecvBatch {
    bufs: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    cmsgs: Vec<[u64; CMSG_SPACE / 8]>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iovecs` and `hdrs` point only into this struct's own heap buffers.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    fn new(n: usize) -> RecvBatch {
        let mut b = RecvBatch {
            bufs: vec![0u8; n * DATAGRAM_BUFFER],
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero is valid.
            names: vec![unsafe { zeroed() }; n],
            iovecs: Vec::with_capacity(n),
            cmsgs: vec![[0u64; CMSG_SPACE / 8]; n],
            hdrs: Vec::with_capacity(n),
        };
        for i in 0..n {
            b.iovecs.push(libc::iovec {
                iov_base: b.bufs[i * DATAGRAM_BUFFER..].as_mut_ptr().cast(),
                iov_len: DATAGRAM_BUFFER,
            });
        }
        for i in 0..n {
            // SAFETY: as above.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (&mut b.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_iov = &mut b.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = b.cmsgs[i].as_mut_ptr().cast();
            b.hdrs.push(h);
        }
        b
    }

    fn len(&self) -> usize {
        self.hdrs.len()
    }

    fn recv(&mut self, socket: &Socket, flags: libc::c_int) -> io::Result<usize> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_controllen = CMSG_SPACE as _;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at live buffers of the sizes given above.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as _,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn datagram(&self, i: usize) -> Datagram<'_> {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(DATAGRAM_BUFFER);
        Datagram {
            source: sockaddr_ip(&self.names[i]),
            ts: cmsg_timestamp(&h.msg_hdr).unwrap_or_else(Timestamp::now),
            payload: &self.bufs[i * DATAGRAM_BUFFER..i * DATAGRAM_BUFFER + len],
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        }
    }
}

fn sockaddr_ip(s: &libc::sockaddr_storage) -> IpAddr {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET, and sockaddr_storage is large and aligned enough.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr))
        }
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

fn cmsg_timestamp(msg: &libc::msghdr) -> Option<Timestamp> {
    // SAFETY: msg's control buffer was filled by the kernel and msg_controllen says how much of it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let mut ts = MaybeUninit::<libc::timespec>::uninit();
                std::ptr::copy_nonoverlapping(
                    libc::CMSG_DATA(c),
                    ts.as_mut_ptr().cast::<u8>(),
                    size_of::<libc::timespec>(),
                );
                let ts = ts.assume_init();
                return Some(Timestamp::from_nanos(
                    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
                ));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}
