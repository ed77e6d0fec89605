//! DNS inspection (issue 13), in Suricata's split: [`parser`] holds pure functions over borrowed
//! bytes with no state; the state (query/response matching per flow, timeouts) and the EVE-style
//! record writer come with the flow layer.
//!
//! The parser is vxtap's own rather than a crate's. Of the Rust DNS crates looked at, `dns-parser` is
//! unmaintained and knows no SVCB/HTTPS; `hickory-proto` and `simple-dns` build owned or
//! collection-backed values (`Vec`s of records, a `BTreeMap` of SvcParams), which would allocate for
//! every message on the packet path; `domain` is zero-copy but large, and its parse errors do not say
//! how far a malformed message was still readable; the zero-copy newcomers (`dnsbox`, `flex-dns`)
//! are pre-1.0 or need a newer Rust than vxtap's 1.85. What the modules need is narrow: a view that
//! validates once, iterators that allocate nothing, names that render only when a record is written,
//! and a message that stays readable up to the first malformed byte.

pub mod parser;
