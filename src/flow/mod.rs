//! The flow layer (issue 12): what modules will need to know about a connection beyond its packets.
//!
//! For now it holds the pieces that depend on neither the flow table nor the pipeline: the Community
//! ID, so every record about a flow can carry the identifier other tools log for it.

pub mod community_id;
pub(crate) mod index;
