//! HTTP/1.x parser: any bytes must parse as a head or fail cleanly, and the body tracker must agree
//! with itself wherever its input is split. The first input byte picks the split point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vxtap::modules::http::parser::{
    find_message_start, parse_request, parse_response, probe, BodyKind, BodyTracker, Probe,
};

fn track(kind: BodyKind, pieces: &[&[u8]]) -> Option<(usize, usize, bool)> {
    let mut t = BodyTracker::new(kind);
    let (mut consumed, mut content) = (0, 0);
    for piece in pieces {
        if t.is_done() {
            break;
        }
        let p = t.feed(piece).ok()?;
        assert!(p.consumed <= piece.len() && p.content <= p.consumed);
        if !p.done {
            assert_eq!(
                p.consumed,
                piece.len(),
                "a body not done takes all it is given"
            );
        }
        consumed += p.consumed;
        content += p.content;
    }
    Some((consumed, content, t.is_done()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let _ = probe(data);
    for want in [Probe::Request, Probe::Response] {
        if let Some(at) = find_message_start(data, want) {
            assert!(at <= data.len());
        }
    }
    if let Ok(Some(h)) = parse_request(data) {
        assert!(h.head_len <= data.len());
        let _ = track(h.body(), &[&data[h.head_len..]]);
    }
    if let Ok(Some(h)) = parse_response(data) {
        assert!(h.head_len <= data.len());
        for method in [&b"GET"[..], b"HEAD", b"CONNECT"] {
            let _ = track(h.body(method), &[&data[h.head_len..]]);
        }
    }
    // Chunked framing: one piece or two, same answer.
    let split = usize::from(first) * data.len() / 256;
    let whole = track(BodyKind::Chunked, &[data]);
    let halves = track(BodyKind::Chunked, &[&data[..split], &data[split..]]);
    if let (Some(w), Some(h)) = (whole, halves) {
        assert_eq!(w, h, "split at {split}");
    }
    // A hole at the split (what the http module does with a stream gap): skipping it must keep
    // the tracker's word, whatever state the framing is in.
    for kind in [BodyKind::Chunked, BodyKind::Length(u64::from(first) * 7)] {
        let mut t = BodyTracker::new(kind);
        if t.feed(&data[..split]).is_ok() {
            let before = t.content_len();
            let hole = u64::from(first);
            if t.skip(hole) {
                assert_eq!(t.content_len(), before + hole);
            } else {
                assert_eq!(t.content_len(), before);
            }
            if let Ok(p) = t.feed(&data[split..]) {
                assert!(p.consumed <= data.len() - split);
            }
        }
    }
});
