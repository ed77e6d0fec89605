//! Where datagrams come from: UDP sockets (live), network interfaces (AF_PACKET) and, for replay,
//! capture files. Each source owns an [`Ingress`](crate::pipeline::Ingress) per thread and feeds it
//! payloads; nothing past the payload is source-specific.

pub mod interface;
pub mod pcap;
pub mod replay;
pub mod udp;
