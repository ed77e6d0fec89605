//! PCAP-over-IP: a TCP server that streams a classic libpcap stream (a global header, then records)
//! to every connected client, the way `tshark -i TCP@host:port`, NetworkMiner and Arkime's pcap-over-ip
//! reader expect it, and `nc host port | tshark -r -` reads it.
//!
//! One server thread per output, shared by the shards. A shard never waits for it: it fills a record
//! into a buffer taken from its own free list and hands it over through its own bounded channel; a
//! full channel is a counted drop (`queue_full`). The thread appends each record to every client's
//! bounded buffer and writes with non-blocking sockets; a client whose buffer cannot take the next
//! record (it stopped reading, or reads slower than the mirror sends) is disconnected and counted
//! (`clients_cut`), and the others go on. Buffers go back to the shard's free list, so in steady state
//! nothing is allocated per packet.
//!
//! Timestamps are in microseconds (magic `0xa1b2c3d4`): every pcap reader understands that stream,
//! while the nanosecond variant is not read by all of the tools this output is for.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use socket2::{Domain, Protocol, Socket, Type};

use super::Drops;

const LINKTYPE_ETHERNET: u32 = 1;
const PCAP_MICRO_MAGIC: u32 = 0xA1B2_C3D4;
/// Records the server moves per round before it writes, so that one busy shard cannot keep it from
/// serving the clients.
const ROUND: usize = 4096;
/// How long the server waits for a last slow client to take what it holds when the output stops.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// What the server and the shards share: counts and the stop flag.
#[derive(Debug, Default)]
struct Shared {
    clients: AtomicUsize,
    cut: AtomicU64,
    refused: AtomicU64,
    stop: AtomicBool,
}

/// The server of one output. Shards hold it; when the last one lets go, the thread sends what is
/// queued, closes the clients and ends.
#[derive(Debug)]
pub(crate) struct Hub {
    shared: Arc<Shared>,
    links: Sender<Link>,
    local: SocketAddr,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// One shard's channel to the server, and the way back for its buffers.
struct Link {
    records: Receiver<Vec<u8>>,
    free: Sender<Vec<u8>>,
}

/// The settings the server needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerSettings {
    pub(crate) snaplen: u32,
    pub(crate) client_buffer: usize,
    pub(crate) max_clients: usize,
}

impl Hub {
    /// Binds `listen` and starts the server thread. SO_REUSEPORT lets the next configuration's
    /// server bind while this one drains during a reload.
    pub(crate) fn start(listen: SocketAddr, settings: ServerSettings) -> io::Result<Arc<Hub>> {
        let socket = Socket::new(
            Domain::for_address(listen),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&listen.into())?;
        socket.listen(16)?;
        socket.set_nonblocking(true)?;
        let listener: TcpListener = socket.into();
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (links, links_rx) = bounded(1024);
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("vxtap-pcap-ip-{}", local.port()))
            .spawn(move || serve(listener, thread_shared, links_rx, settings))?;
        tracing::info!(message = "PCAP-over-IP server listening.", addr = %local);
        Ok(Arc::new(Hub {
            shared,
            links,
            local,
        }))
    }

    /// The bound address (the port, when the config said 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// One shard's end of an output's server.
pub(crate) struct PcapOverIpShard {
    hub: Arc<Hub>,
    records: Sender<Vec<u8>>,
    free: Receiver<Vec<u8>>,
    spare: Option<Vec<u8>>,
    allocated: usize,
    queue: usize,
    /// Server-side counts already reported (only shard 0 reports them, once for the output).
    reported_cut: u64,
    reported_refused: u64,
    reports_server: bool,
}

impl PcapOverIpShard {
    /// Registers a shard with the server; `queue` bounds both the channel and the buffers.
    pub(crate) fn new(hub: Arc<Hub>, queue: usize, reports_server: bool) -> io::Result<Self> {
        let queue = queue.max(1);
        let (records, records_rx) = bounded(queue);
        let (free_tx, free) = bounded(queue + 1);
        hub.links
            .try_send(Link {
                records: records_rx,
                free: free_tx,
            })
            .map_err(|_| io::Error::other("the PCAP-over-IP server is not running"))?;
        Ok(PcapOverIpShard {
            hub,
            records,
            free,
            spare: None,
            allocated: 0,
            queue,
            reported_cut: 0,
            reported_refused: 0,
            reports_server,
        })
    }

    /// Hands one record to the server. Returns whether it was handed over; with no client connected
    /// nothing is done and nothing counted.
    pub(crate) fn send(
        &mut self,
        ts_nanos: u64,
        data: &[u8],
        orig_len: u32,
        drops: &mut Drops,
    ) -> bool {
        if self.hub.shared.clients.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let mut buf = match self.spare.take().or_else(|| self.free.try_recv().ok()) {
            Some(b) => b,
            None if self.allocated < self.queue => {
                self.allocated += 1;
                Vec::with_capacity(16 + data.len().max(1500))
            }
            None => {
                drops.queue_full += 1;
                return false;
            }
        };
        buf.clear();
        record(&mut buf, ts_nanos, data, orig_len);
        match self.records.try_send(buf) {
            Ok(()) => true,
            Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => {
                self.spare = Some(b);
                drops.queue_full += 1;
                false
            }
        }
    }

    /// Moves the server's own counts (clients cut off or refused) into `drops`, once per output.
    pub(crate) fn collect(&mut self, drops: &mut Drops) {
        if !self.reports_server {
            return;
        }
        let cut = self.hub.shared.cut.load(Ordering::Relaxed);
        let refused = self.hub.shared.refused.load(Ordering::Relaxed);
        drops.clients_cut += cut - self.reported_cut.min(cut);
        drops.clients_refused += refused - self.reported_refused.min(refused);
        self.reported_cut = cut;
        self.reported_refused = refused;
    }

    /// The server's address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.hub.local_addr()
    }
}

/// The global header of a microsecond, Ethernet pcap stream.
pub(crate) fn header(snaplen: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&PCAP_MICRO_MAGIC.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// One record: seconds, microseconds, captured and original length, the bytes.
pub(crate) fn record(out: &mut Vec<u8>, ts_nanos: u64, data: &[u8], orig_len: u32) {
    out.extend_from_slice(&((ts_nanos / 1_000_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&((ts_nanos % 1_000_000_000 / 1000) as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&orig_len.to_le_bytes());
    out.extend_from_slice(data);
}

struct Client {
    stream: TcpStream,
    addr: SocketAddr,
    pending: VecDeque<u8>,
    alive: bool,
}

impl Client {
    /// Writes what the socket takes now; false when the client is gone.
    fn write_some(&mut self) -> bool {
        // Bounded: each round writes bytes or stops.
        while !self.pending.is_empty() {
            let (front, _) = self.pending.as_slices();
            match self.stream.write(front) {
                Ok(0) => return false,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

fn serve(listener: TcpListener, shared: Arc<Shared>, new_links: Receiver<Link>, s: ServerSettings) {
    let header = header(s.snaplen);
    let mut links: Vec<Link> = Vec::new();
    let mut clients: Vec<Client> = Vec::new();
    let mut stopping: Option<Instant> = None;
    loop {
        while let Ok(link) = new_links.try_recv() {
            links.push(link);
        }
        if stopping.is_none() {
            accept(&listener, &shared, &mut clients, &header, &s);
        }
        let mut moved = 0;
        let mut open = 0;
        for link in &links {
            let mut connected = true;
            while moved < ROUND {
                match link.records.try_recv() {
                    Ok(rec) => {
                        moved += 1;
                        for c in clients.iter_mut().filter(|c| c.alive) {
                            // Room is made by writing first: only a client whose socket takes
                            // nothing while its buffer is full is behind.
                            if c.pending.len() + rec.len() > s.client_buffer && !c.write_some() {
                                c.alive = false;
                                continue;
                            }
                            if c.pending.len() + rec.len() > s.client_buffer {
                                tracing::warn!(message = "PCAP-over-IP client too slow; disconnected.", client = %c.addr, buffered = c.pending.len());
                                shared.cut.fetch_add(1, Ordering::Relaxed);
                                c.alive = false;
                            } else {
                                c.pending.extend(&rec);
                            }
                        }
                        let _ = link.free.try_send(rec);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        connected = false;
                        break;
                    }
                }
            }
            open += usize::from(connected);
        }
        let mut waiting = false;
        for c in clients.iter_mut().filter(|c| c.alive) {
            c.alive = c.write_some();
            waiting |= !c.pending.is_empty();
        }
        clients.retain(|c| c.alive);
        shared.clients.store(clients.len(), Ordering::Relaxed);

        if shared.stop.load(Ordering::Relaxed) {
            let since = *stopping.get_or_insert_with(Instant::now);
            let drained = open == 0 && moved == 0;
            if (drained && !waiting) || since.elapsed() > FINAL_FLUSH {
                break;
            }
        }
        if moved == 0 {
            std::thread::sleep(if waiting {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(5)
            });
        }
    }
    shared.clients.store(0, Ordering::Relaxed);
}

fn accept(
    listener: &TcpListener,
    shared: &Shared,
    clients: &mut Vec<Client>,
    header: &[u8],
    s: &ServerSettings,
) {
    // Bounded by the listen backlog plus what arrives meanwhile; 64 per round at most.
    for _ in 0..64 {
        let (stream, addr) = match listener.accept() {
            Ok(c) => c,
            Err(_) => return,
        };
        if clients.len() >= s.max_clients {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(message = "PCAP-over-IP client refused: too many clients.", client = %addr, max = s.max_clients);
            continue;
        }
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        let _ = stream.set_nodelay(true);
        let mut pending = VecDeque::with_capacity(s.client_buffer.min(1 << 20));
        pending.extend(header);
        tracing::info!(message = "PCAP-over-IP client connected.", client = %addr);
        clients.push(Client {
            stream,
            addr,
            pending,
            alive: true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let h = header(65535);
        assert_eq!(&h[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&h[20..], &[1, 0, 0, 0]);
        let mut r = Vec::new();
        record(&mut r, 3_000_004_999, &[0xaa, 0xbb], 60);
        #[rustfmt::skip]
        assert_eq!(r, [3, 0, 0, 0,  4, 0, 0, 0,  2, 0, 0, 0,  60, 0, 0, 0,  0xaa, 0xbb]);
    }
}
