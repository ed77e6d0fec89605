//! HTTP/1.x metadata (issue 13), in Suricata's split: [`parser`] holds pure functions over borrowed
//! bytes with no state beyond what a caller carries between calls; the per-flow state and the
//! EVE-style record writer come with the flow layer.

pub mod parser;
