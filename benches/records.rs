//! What one JSON record's shared parts cost, next to a baseline measured in the same run: every
//! record the `dns`, `tls` and `http` modules write starts with the EVE envelope, and every flow
//! that has a record needs its Community ID. Quote the figures as ratios against `baseline`: absolute
//! nanoseconds on a shared two-core machine mean little.
//!
//! - `baseline::copy_line`: copying an already-rendered envelope (the same bytes `envelope` writes)
//!   into the reused line buffer: what writing it costs at least.
//! - `envelope`: `eve::begin_parts` and the object's close for an IPv4 and an IPv6 flow, timestamp,
//!   addresses, ports, Community ID string and session object included, into the reused buffer.
//! - `timestamp`: EVE's timestamp alone.
//! - `community_id`: the Community ID's SHA-1 and base64 for one flow, which `dns` now computes once
//!   per flow state rather than per record.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use divan::Bencher;
use vxtap::base::{FlowKey, Session, Timestamp};
use vxtap::flow::community_id::community_id_v1;
use vxtap::modules::eve;

fn main() {
    divan::main();
}

const TS: Timestamp = Timestamp::from_nanos(1_700_000_000_123_456_789);

fn keys() -> [FlowKey; 2] {
    [
        FlowKey {
            src: IpAddr::from([10, 48, 3, 22]),
            dst: IpAddr::from([10, 49, 9, 115]),
            src_port: 35182,
            dst_port: 443,
            protocol: 6,
        },
        FlowKey {
            src: "2600:1f18:4a3:6902::1b".parse().unwrap(),
            dst: "2600:1f18:4a3:6900::2".parse().unwrap(),
            src_port: 49601,
            dst_port: 53,
            protocol: 17,
        },
    ]
}

fn session() -> Arc<Session> {
    Arc::new(Session::plain("10.48.3.22/7549315", 1))
}

fn envelope(out: &mut String, key: FlowKey, id: &str, session: &Session) {
    out.clear();
    let o = eve::begin_parts(out, TS, "dns", 4_045_477_278_276_093, key, id, session);
    o.end();
}

mod baseline {
    use super::*;

    #[divan::bench]
    fn copy_line(bencher: Bencher) {
        let session = session();
        let lines: Vec<String> = keys()
            .into_iter()
            .map(|k| {
                let mut s = String::new();
                let id = community_id_v1(0, k.protocol, k.src, k.dst, k.src_port, k.dst_port);
                envelope(&mut s, k, &id, &session);
                s
            })
            .collect();
        let mut out = String::with_capacity(1024);
        let mut i = 0;
        bencher.bench_local(|| {
            i ^= 1;
            out.clear();
            out.push_str(black_box(&lines[i]));
            black_box(out.len())
        });
    }
}

#[divan::bench]
fn envelope_ipv4_and_ipv6(bencher: Bencher) {
    let session = session();
    let flows: Vec<(FlowKey, String)> = keys()
        .into_iter()
        .map(|k| {
            let id = community_id_v1(0, k.protocol, k.src, k.dst, k.src_port, k.dst_port);
            (k, id.as_str().to_owned())
        })
        .collect();
    let mut out = String::with_capacity(1024);
    let mut i = 0;
    bencher.bench_local(|| {
        i ^= 1;
        let (k, id) = &flows[i];
        envelope(&mut out, black_box(*k), id, &session);
        black_box(out.len())
    });
}

#[divan::bench]
fn timestamp(bencher: Bencher) {
    let mut out = String::with_capacity(64);
    bencher.bench_local(|| {
        out.clear();
        eve::write_timestamp(&mut out, black_box(TS));
        black_box(out.len())
    });
}

#[divan::bench]
fn community_id(bencher: Bencher) {
    let keys = keys();
    let mut i = 0;
    bencher.bench_local(|| {
        i ^= 1;
        let k = black_box(keys[i]);
        black_box(community_id_v1(
            0, k.protocol, k.src, k.dst, k.src_port, k.dst_port,
        ))
    });
}
