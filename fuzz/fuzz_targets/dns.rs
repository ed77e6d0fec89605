//! DNS parser: any bytes, as a UDP payload or as a DNS over TCP stream, must parse, iterate, decode
//! and render without panicking or looping, and what it reports must stay inside the input.
#![no_main]

use std::fmt::Write as _;

use libfuzzer_sys::fuzz_target;
use vxtap::modules::dns::parser::{probe, tcp_frame, Message, RData, TcpFrame, TcpMessages};

fn exercise(bytes: &[u8], text: &mut String) {
    let _ = probe(bytes);
    let Ok(m) = Message::parse(bytes) else {
        return;
    };
    assert!(m.end() <= bytes.len());
    let h = *m.header();
    let questions = m.questions().count();
    assert!(questions <= usize::from(h.qdcount));
    if m.malformed().is_none() {
        assert_eq!(questions, usize::from(h.qdcount));
    }
    for q in m.questions() {
        text.clear();
        let _ = write!(text, "{}", q.name);
        assert!(q.name.labels().count() <= 127);
    }
    for r in m.records() {
        assert!(r.rdata.len() <= bytes.len());
        text.clear();
        let _ = write!(text, "{}", r.name);
        match r.data() {
            Ok(RData::Cname(n) | RData::Ns(n) | RData::Ptr(n)) => {
                let _ = write!(text, "{n}");
            }
            Ok(RData::Mx { exchange, .. }) => {
                let _ = write!(text, "{exchange}");
            }
            Ok(RData::Srv { target, .. }) => {
                let _ = write!(text, "{target}");
            }
            Ok(RData::Soa(s)) => {
                let _ = write!(text, "{} {}", s.mname, s.rname);
            }
            Ok(RData::Txt(t)) => {
                assert!(t.map(<[u8]>::len).sum::<usize>() <= r.rdata.len());
            }
            Ok(RData::Svcb(s)) => {
                let _ = write!(text, "{}", s.target);
                let _ = s.params().count();
                let _ = s.alpn().count();
            }
            Ok(_) | Err(_) => {}
        }
    }
    let _ = m.rcode();
}

fuzz_target!(|data: &[u8]| {
    let mut text = String::new();
    exercise(data, &mut text);
    // The same bytes as a TCP stream: every message framed, then the tail's need.
    let mut messages = TcpMessages::new(data);
    let mut taken = 0;
    for msg in messages.by_ref() {
        taken += msg.len() + 2;
        exercise(msg, &mut text);
    }
    assert_eq!(taken + messages.remainder().len(), data.len());
    // An empty tail needs nothing yet; a partial one says how much completes it.
    if !messages.remainder().is_empty() {
        let TcpFrame::NeedMore { needed } = tcp_frame(messages.remainder()) else {
            panic!("a whole message was left in the tail");
        };
        assert!(needed > 0 && needed <= 65537);
        assert_eq!(needed, messages.needed());
    }
});
