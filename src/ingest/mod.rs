//! Where datagrams come from: UDP sockets (live) and, for replay, capture files. Each source owns an
//! [`Ingress`](crate::pipeline::Ingress) per thread and feeds it payloads; nothing past the payload is
//! source-specific.

pub mod udp;
