//! DNS inspection (issue 13), in Suricata's split: [`parser`] holds pure functions over borrowed
//! bytes with no state; the state (query/response matching per flow, timeouts) and the EVE-style
//! record writer come with the flow layer.
//!
//! The parser is vxtap's own rather than a crate's. Of the Rust DNS crates looked at,
//! `dns-parser` is unmaintained and knows no SVCB/HTTPS; `hickory-proto` and `simple-dns`
//! build owned or collection-backed values (`Vec`s of records, a `BTreeMap` of SvcParams), which
//! would allocate for every message on the packet path; `flex-dns` is allocation-free but reads
//! SVCB as SRV-like fields (priority, weight, port) plus one character-string, which is not RFC
//! 9460's wire format; `dnsbox` is pre-1.0 and needs Rust 1.89 (vxtap builds with 1.85); `domain`
//! is zero-copy and maintained, but a large dependency for the narrow need here. That need: a view
//! that validates once, iterators that allocate nothing, names that render only when a record is
//! written, and a malformed message that stays readable up to its first fault, in ~600 lines.

pub mod parser;
