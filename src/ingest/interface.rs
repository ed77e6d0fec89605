//! Interface capture: every frame on a network interface, through AF_PACKET (pnet_datalink).
//!
//! For appliances that receive mirrored traffic on a NIC of their own (a SPAN or TAP port, or a VXLAN
//! stream they are not the IP destination of) and for tests inside network namespaces. Frames carrying
//! VXLAN or GENEVE are decapsulated exactly as a listener's datagrams would be (outer source from the
//! captured IP header); every other frame is a plain frame in a session named after the interface.
//!
//! AF_PACKET through pnet costs a poll and a recvfrom per frame and gives no kernel timestamp (frames
//! are stamped when read): fine for a SPAN port or a test, while the UDP listeners remain the fast path
//! for mirror traffic addressed to the appliance. Do not capture on an interface whose VXLAN traffic a
//! listener also receives: each datagram would then be counted twice.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pnet_datalink::{Channel, DataLinkReceiver};
use thiserror::Error;

use crate::wire::link::{find_datagram, l3, LinkType};

use crate::base::{DropReason, Session, Timestamp};
use crate::config::InterfaceConfig;
use crate::pipeline::{Ingress, Pipeline};

/// How long a read waits before the thread checks for shutdown and reports that it is alive.
const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Read buffer: a frame this long or longer may have been cut by it, and is counted as `oversize`.
const FRAME_BUFFER: usize = 65_536;
/// Frames handed to shards at least this often, and after this many frames.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
const FLUSH_FRAMES: u32 = 64;

/// Why interface capture could not start.
#[derive(Debug, Error)]
pub enum InterfaceError {
    /// No interface has that name.
    #[error("no network interface named {name:?} (have: {have})")]
    NotFound {
        /// The configured name.
        name: String,
        /// The interfaces that exist.
        have: String,
    },
    /// The AF_PACKET socket could not be opened (it needs CAP_NET_RAW).
    #[error("cannot capture on {name}: {source} (capture needs CAP_NET_RAW)")]
    Open {
        /// The interface.
        name: String,
        /// The OS error.
        source: io::Error,
    },
    /// The channel is not an Ethernet one.
    #[error("cannot capture on {name}: not an Ethernet channel")]
    NotEthernet {
        /// The interface.
        name: String,
    },
    /// A capture thread could not be started.
    #[error("cannot start capture thread: {0}")]
    Spawn(#[source] io::Error),
}

/// Running capture threads, one per interface.
#[derive(Debug)]
pub struct InterfaceIngest {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl InterfaceIngest {
    /// No capture at all (a config without interfaces).
    pub fn none() -> InterfaceIngest {
        InterfaceIngest {
            threads: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Opens every configured interface and starts one thread for each.
    pub fn start(
        pipeline: &Pipeline,
        interfaces: &[InterfaceConfig],
    ) -> Result<InterfaceIngest, InterfaceError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let all = pnet_datalink::interfaces();
        for config in interfaces {
            let Some(iface) = all.iter().find(|i| i.name == config.name) else {
                stop.store(true, Ordering::Relaxed);
                return Err(InterfaceError::NotFound {
                    name: config.name.clone(),
                    have: all
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            let settings = pnet_datalink::Config {
                read_buffer_size: FRAME_BUFFER,
                read_timeout: Some(READ_TIMEOUT),
                promiscuous: config.promiscuous,
                ..pnet_datalink::Config::default()
            };
            let rx = match pnet_datalink::channel(iface, settings) {
                Ok(Channel::Ethernet(_tx, rx)) => rx,
                Ok(_) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(InterfaceError::NotEthernet {
                        name: config.name.clone(),
                    });
                }
                Err(source) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(InterfaceError::Open {
                        name: config.name.clone(),
                        source,
                    });
                }
            };
            let mut capture = Capture {
                rx,
                ingress: pipeline.ingress(),
                session: pipeline.plain_session(config.session.as_deref().unwrap_or(&config.name)),
                stop: stop.clone(),
            };
            tracing::info!(message = "Capturing.", interface = %config.name, promiscuous = config.promiscuous);
            let handle = std::thread::Builder::new()
                .name(format!("vxtap-if-{}", config.name))
                .spawn(move || capture.run())
                .map_err(|e| {
                    stop.store(true, Ordering::Relaxed);
                    InterfaceError::Spawn(e)
                })?;
            threads.push(handle);
        }
        Ok(InterfaceIngest { threads, stop })
    }

    /// Stops the threads (each within one read timeout) and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!(message = "An interface capture thread panicked.");
            }
        }
    }
}

struct Capture {
    rx: Box<dyn DataLinkReceiver>,
    ingress: Ingress,
    session: Arc<Session>,
    stop: Arc<AtomicBool>,
}

impl Capture {
    fn run(&mut self) {
        let mut pending = 0u32;
        let mut last_flush = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            match self.rx.next() {
                Ok(frame) => {
                    let ts = Timestamp::now();
                    handle_frame(&mut self.ingress, &self.session, ts, frame);
                    pending += 1;
                    if pending >= FLUSH_FRAMES || last_flush.elapsed() >= FLUSH_EVERY {
                        self.ingress.send_pending();
                        self.ingress.counters().beat(ts.nanos());
                        pending = 0;
                        last_flush = Instant::now();
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    self.ingress.send_pending();
                    self.ingress.counters().beat(Timestamp::now().nanos());
                    pending = 0;
                    last_flush = Instant::now();
                }
                Err(e) => {
                    tracing::error!(message = "Interface read failed.", error = %e, session = %self.session.name);
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        self.ingress.send_pending();
    }
}

/// One captured Ethernet frame into the pipeline: a mirror datagram if it is one, else a plain frame.
fn handle_frame(ingress: &mut Ingress, session: &Arc<Session>, ts: Timestamp, frame: &[u8]) {
    if frame.len() >= FRAME_BUFFER {
        return ingress.refuse(frame.len(), DropReason::Oversize);
    }
    if l3(LinkType::Ethernet, frame).is_none() {
        return ingress.refuse(frame.len(), DropReason::BadCaptureRecord);
    }
    match find_datagram(LinkType::Ethernet, frame) {
        Some(d) => ingress.datagram(ts, d.source, d.encap, d.payload()),
        None => ingress.plain_frame(ts, session, frame, frame.len() as u32),
    }
}
