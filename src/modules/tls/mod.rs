//! TLS inspection: the pure parts first.
//!
//! Suricata's split, as for every application-layer module here: [`parser`] reads TLS records and
//! handshake messages from borrowed bytes and keeps no state; [`ja4`] turns a parsed ClientHello into
//! its JA4 fingerprint; [`cert`] reads the X.509 certificates a TLS ≤ 1.2 server sends in clear. The
//! module proper (the per-flow state machine over the flow layer's reassembled streams, and the
//! EVE-style record writer) builds on these and comes later.

pub mod cert;
pub mod ja4;
pub mod parser;
