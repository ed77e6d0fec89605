//! Differential: the hand-written dissection fast path against etherparse's general path, the oracle.
//! On any bytes taken as an inner Ethernet frame, wherever `dissect_fast` answers, its `Layers` must
//! equal `dissect_general`'s, and so must everything the pipeline reads through them: addresses,
//! ports, protocol, TCP sequence/acknowledgement/flags/window, the payload's range and wire length,
//! fragment and truncation state, and the steering hash. `dissect`, which picks between the two, must
//! equal the oracle on every input. Issue 14 allows the fast path on this condition.
//!
//! The first input byte is how many bytes vxtap's truncation would have cut from the end (the
//! frame's `orig_len` is then longer than the frame, as after a snaplen); the rest is the frame.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use vxtap::base::{Packet, Session, Timestamp};
use vxtap::pipeline::steer::symmetric_hash;
use vxtap::wire::inner::{dissect, dissect_fast, dissect_general, Layers};

fn session() -> &'static Arc<Session> {
    static SESSION: OnceLock<Arc<Session>> = OnceLock::new();
    SESSION.get_or_init(|| Arc::new(Session::plain("fuzz", 1)))
}

/// What the pipeline and the modules read from a frame through its `Layers`.
fn view(frame: &[u8], orig_len: u32, layers: &Layers) -> impl PartialEq + std::fmt::Debug {
    let p = Packet {
        session: session(),
        ts: Timestamp::from_secs(1),
        frame,
        orig_len,
        layers,
    };
    (
        (p.flow(), p.ip().copied(), p.ip_len(), *p.transport(), p.tcp()),
        (p.l3().len(), p.payload().len(), p.wire_payload_len()),
        (p.truncated(), p.is_fragment(), layers.cut, layers.vlan_ids().len()),
        symmetric_hash(1, layers),
    )
}

fuzz_target!(|data: &[u8]| {
    let [cut_by, frame @ ..] = data else { return };
    let orig_len = (frame.len() + usize::from(*cut_by)) as u32;
    let general = dissect_general(frame);
    assert_eq!(dissect(frame), general, "dissect != oracle on {frame:02x?}");
    if let Some(fast) = dissect_fast(frame) {
        assert_eq!(fast, general, "fast path != oracle on {frame:02x?}");
        assert_eq!(
            view(frame, orig_len, &fast),
            view(frame, orig_len, &general),
            "packet view differs on {frame:02x?}"
        );
    }
});
