//! JA4 against FoxIO's reference fingerprints: every ClientHello in the captures of
//! `pcaps/third-party/ja4/` (from the FoxIO-LLC/ja4 repository, BSD-3-Clause) must give exactly the JA4
//! its `.ja4.tsv` lists. The ClientHello bytes come out of the captures the way the TLS module will get
//! them: the client's TCP payload, in sequence order, accumulated until the parser's own
//! `handshake_status` says the message is whole.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use vxtap::ingest::pcap::{self, CaptureReader, Item};
use vxtap::modules::tls::ja4::{ja4, Transport};
use vxtap::modules::tls::parser::{
    find_handshake, handshake_status, handshake_type, probe, skip_compat_change_cipher_spec,
    ClientHello, Found, Probe, Status,
};
use vxtap::wire::inner::{dissect, Transport as L4};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/third-party/ja4/");

type FourTuple = (IpAddr, u16, IpAddr, u16);

/// One TCP direction: segments by sequence number, and whether a SYN gave the initial sequence.
#[derive(Default)]
struct Direction {
    isn: Option<u32>,
    segments: BTreeMap<u32, Vec<u8>>,
}

impl Direction {
    /// The stream from its first byte, as far as it is contiguous, in the segments that carried it
    /// (retransmitted bytes left out). Sequence numbers are compared as plain integers: these captures'
    /// first flights do not wrap.
    fn pieces(&self) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let Some(&first) = self.segments.keys().next() else {
            return out;
        };
        let mut next = self.isn.map_or(first, |isn| isn.wrapping_add(1));
        for (&seq, data) in &self.segments {
            if seq > next {
                break; // a hole
            }
            let skip = (next - seq) as usize;
            if skip < data.len() {
                out.push(&data[skip..]);
                next = seq + data.len() as u32;
            }
        }
        out
    }
}

/// Every TCP direction of a capture, keyed by its 4-tuple, in order of first appearance.
fn directions(file: &str) -> Vec<(FourTuple, Direction)> {
    let mut reader = CaptureReader::open(Path::new(&format!("{DIR}{file}"))).unwrap();
    let mut order: Vec<FourTuple> = Vec::new();
    let mut map: BTreeMap<String, Direction> = BTreeMap::new();
    let mut frame = Vec::new();
    while let Some(item) = reader.next_item().unwrap() {
        let Item::Frame(r) = item else { continue };
        let Some(l3) = pcap::l3(r.link, r.data) else {
            continue;
        };
        frame.clear();
        l3.push_as_ethernet(&mut frame);
        let layers = dissect(&frame);
        let (Some(ip), L4::Tcp { src, dst, flags }, Some(l4)) =
            (layers.ip, layers.transport, layers.l4_offset)
        else {
            continue;
        };
        let l4 = l4 as usize;
        let seq = u32::from_be_bytes(frame[l4 + 4..l4 + 8].try_into().unwrap());
        let key = (ip.src, src, ip.dst, dst);
        let name = format!("{key:?}");
        let dir = map.entry(name).or_insert_with(|| {
            order.push(key);
            Direction::default()
        });
        if flags & 0x02 != 0 {
            dir.isn = Some(seq);
        }
        let payload = &frame[layers.payload_offset as usize..];
        // The IP total length bounds the payload: Ethernet padding is not TCP data.
        let ip_end = layers.l3_offset as usize + ip.total_len as usize;
        let payload = &payload[..payload
            .len()
            .min(ip_end.saturating_sub(layers.payload_offset as usize))];
        if !payload.is_empty() {
            dir.segments.entry(seq).or_insert_with(|| payload.to_vec());
        }
    }
    order
        .into_iter()
        .map(|k| {
            let d = map.remove(&format!("{k:?}")).unwrap();
            (k, d)
        })
        .collect()
}

struct Expected {
    client: (IpAddr, u16),
    server: (IpAddr, u16),
    sni: String,
    ja4: String,
}

fn expected(file: &str) -> Vec<Expected> {
    let text = std::fs::read_to_string(format!("{DIR}{file}.ja4.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 6, "{l}");
            Expected {
                client: (f[0].parse().unwrap(), f[1].parse().unwrap()),
                server: (f[2].parse().unwrap(), f[3].parse().unwrap()),
                sni: f[4].to_owned(),
                ja4: f[5].to_owned(),
            }
        })
        .collect()
}

/// Computes JA4 for every client direction that starts with a whole ClientHello, and checks the list
/// against the reference, line by line.
fn check(file: &str) -> usize {
    let want = expected(file);
    let mut got = Vec::new();
    let mut scratch = Vec::new();
    for ((src, sport, dst, dport), dir) in directions(file) {
        // Accumulate segment by segment, as the module will, until the parser says the first
        // ClientHello is whole; a stream that is not TLS is left alone.
        let mut stream = Vec::new();
        let mut whole = false;
        for piece in dir.pieces() {
            stream.extend_from_slice(piece);
            match handshake_status(&stream, handshake_type::CLIENT_HELLO) {
                Status::NeedMore { need } => assert!(need > stream.len()),
                Status::Complete { .. } => {
                    whole = true;
                    break;
                }
                Status::Absent | Status::Invalid(_) => break,
            }
        }
        if !whole {
            continue;
        }
        assert_eq!(probe(&stream), Probe::Tls, "the content probe agrees");
        // Then all of the direction, for a second ClientHello.
        let stream: Vec<u8> = dir.pieces().concat();
        // Every ClientHello of the connection: after a HelloRetryRequest the client sends a second one
        // (five connections of tls-sni.pcapng), after the first one's record and a compatibility
        // change_cipher_spec; the reference lists both.
        let mut at = 0;
        loop {
            let rest = &stream[at..];
            match handshake_status(rest, handshake_type::CLIENT_HELLO) {
                Status::Complete { .. } => {}
                _ => break,
            }
            let Found::Complete { body, end } =
                find_handshake(rest, handshake_type::CLIENT_HELLO, &mut scratch)
            else {
                panic!("status said complete");
            };
            let hello = ClientHello::parse(body).unwrap();
            got.push((
                (src, sport),
                (dst, dport),
                hello.server_name_str().unwrap_or("").to_owned(),
                ja4(&hello, Transport::Tcp).to_string(),
            ));
            at += end;
            at += skip_compat_change_cipher_spec(&stream[at..]);
        }
    }
    // Line by line, in order within each connection.
    let mut matched = 0;
    let mut wrong = Vec::new();
    let mut used = vec![false; got.len()];
    for e in &want {
        let Some(i) =
            (0..got.len()).find(|&i| !used[i] && got[i].0 == e.client && got[i].1 == e.server)
        else {
            wrong.push(format!(
                "{:?} -> {:?}: no ClientHello found",
                e.client, e.server
            ));
            continue;
        };
        used[i] = true;
        let found = &got[i];
        if (&found.2, &found.3) == (&e.sni, &e.ja4) {
            matched += 1;
        } else {
            wrong.push(format!(
                "{:?} -> {:?}: got {} {}, want {} {}",
                e.client, e.server, found.2, found.3, e.sni, e.ja4
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{file}: {} of {} differ:\n{}",
        wrong.len(),
        want.len(),
        wrong.join("\n")
    );
    assert_eq!(
        got.len(),
        want.len(),
        "{file}: ClientHellos found vs listed"
    );
    matched
}

#[test]
fn tls_sni_all_64_client_hellos() {
    assert_eq!(check("tls-sni.pcapng"), 64);
}

#[test]
fn tls12_client_hello() {
    assert_eq!(check("tls12.pcap"), 1);
}

#[test]
fn tls_alpn_h2_client_hello() {
    assert_eq!(check("tls-alpn-h2.pcap"), 1);
}
