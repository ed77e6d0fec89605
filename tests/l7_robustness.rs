//! The `dns` and `http` state machines on mangled input, through the whole pipeline: real-looking
//! DNS messages and HTTP exchanges with bytes flipped, cut, split at random points, segments lost
//! and duplicated. Nothing may panic (a module that panics is disabled and logged), every record
//! must be one valid JSON object, and the run must be the same twice. The parsers have their own
//! fuzz targets (fuzz/); this reaches the framing, pairing and resync code around them, which
//! needs the flow layer to drive it.

mod common;

use std::process::Command;

use etherparse::PacketBuilder;

/// xorshift64*: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const SEEDS: &[&[u8]] = &[
    b"GET /a HTTP/1.1\r\nHost: h\r\nUser-Agent: x\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\nhello world!",
    b"PUT /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n0\r\nX-T: 1\r\n\r\n",
    b"CONNECT h:443 HTTP/1.1\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
];
const REPLIES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 304 Not Modified\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x00",
    b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01",
];

fn dns_message(rng: &mut Rng) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 1, 0, 1];
    m.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
    m.extend_from_slice(&[0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 0x10]);
    m.extend_from_slice(&[
        0xc0, 0x10, 0, 65, 0, 1, 0, 0, 0, 60, 0, 11, 0, 1, 0, 0, 1, 0, 3, 2, b'h', b'2', 0,
    ]);
    m.extend_from_slice(&[
        0xc0, 0x10, 0, 6, 0, 1, 0, 0, 0, 60, 0, 22, 0xc0, 0x10, 0xc0, 0x10,
    ]);
    m.extend_from_slice(&[0; 20]);
    m.extend_from_slice(&[0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0]);
    if rng.chance(50) {
        m[2] = 0x01; // a query
    }
    m[1] = rng.next() as u8 & 3;
    m
}

fn mangle(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for _ in 0..rng.below(4) {
        if b.is_empty() {
            break;
        }
        let i = rng.below(b.len());
        match rng.below(4) {
            0 => b[i] = rng.next() as u8,
            1 => b[i] ^= 0x20,
            2 => b.truncate(i),
            _ => b.insert(i, b"\r\n0:\xc0"[rng.below(5)]),
        }
    }
    b
}

fn eth(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    tcp: Option<(u32, u32, u8)>,
    payload: &[u8],
) -> Vec<u8> {
    let ip =
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src.0, dst.0, 64);
    let mut out = Vec::new();
    match tcp {
        Some((seq, ack, flags)) => {
            let b = ip.tcp(src.1, dst.1, seq, 65000);
            let b = match flags {
                0 => b.syn(),
                1 => b.syn().ack(ack),
                _ => b.psh().ack(ack),
            };
            b.write(&mut out, payload).unwrap();
        }
        None => ip.udp(src.1, dst.1).write(&mut out, payload).unwrap(),
    }
    out
}

fn frames(seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let mut frames = Vec::new();
    for conn in 0..150u16 {
        let client = ([10, 2, (conn >> 8) as u8, conn as u8], 30000 + conn);
        let server_port = [53, 80, 8080, 53][rng.below(4)];
        let server = ([10, 3, 0, 1], server_port);
        if rng.chance(30) {
            // DNS over UDP, both ways.
            let q = dns_message(&mut rng);
            let q = mangle(&mut rng, &q);
            frames.push(eth(client, server, None, &q));
            let a = dns_message(&mut rng);
            let a = mangle(&mut rng, &a);
            frames.push(eth(server, client, None, &a));
            continue;
        }
        let (to_server, to_client) = if server_port == 53 {
            let framed = |m: Vec<u8>| [&(m.len() as u16).to_be_bytes()[..], &m].concat();
            let (q, a) = (dns_message(&mut rng), dns_message(&mut rng));
            (framed(mangle(&mut rng, &q)), framed(mangle(&mut rng, &a)))
        } else {
            let (q, a) = (
                SEEDS[rng.below(SEEDS.len())],
                REPLIES[rng.below(REPLIES.len())],
            );
            (mangle(&mut rng, q), mangle(&mut rng, a))
        };
        let mut seq = [1000u32, 7000u32];
        frames.push(eth(client, server, Some((seq[0], 0, 0)), &[]));
        frames.push(eth(server, client, Some((seq[1], seq[0] + 1, 1)), &[]));
        seq[0] += 1;
        seq[1] += 1;
        for (dir, data) in [(0usize, &to_server), (1, &to_client)] {
            let mut at = 0;
            let mut pieces = Vec::new();
            while at < data.len() {
                let n = 1 + rng.below(data.len() - at);
                pieces.push((seq[dir] + at as u32, &data[at..at + n]));
                at += n;
            }
            seq[dir] += data.len() as u32;
            if pieces.len() > 1 && rng.chance(20) {
                let i = rng.below(pieces.len());
                pieces.remove(i); // lost by the mirror
            }
            if pieces.len() > 1 && rng.chance(20) {
                let i = rng.below(pieces.len());
                let last = pieces.len() - 1;
                pieces.swap(i, last); // out of order
            }
            if !pieces.is_empty() && rng.chance(10) {
                let p = pieces[rng.below(pieces.len())];
                pieces.push(p); // retransmitted
            }
            for (s, p) in pieces {
                let (src, dst) = if dir == 0 {
                    (client, server)
                } else {
                    (server, client)
                };
                frames.push(eth(src, dst, Some((s, seq[1 - dir], 2)), p));
            }
        }
        // Acknowledgements of everything, so that holes become gaps.
        frames.push(eth(client, server, Some((seq[0], seq[1], 2)), &[]));
        frames.push(eth(server, client, Some((seq[1], seq[0], 2)), &[]));
    }
    frames
}

fn replay(frames: &[Vec<u8>], tag: &str) -> (String, String) {
    let tmp = common::temp_dir(&format!("vxtap-l7-robust-{tag}-"));
    let dir = tmp.path();
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        out.extend_from_slice(&(i as u32 * 100).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    let pcap = dir.join("mangled.pcap");
    std::fs::write(&pcap, out).unwrap();
    let config = dir.join("l7.toml");
    std::fs::write(
        &config,
        "[pipeline]\nshards = 1\n\n[[module]]\nkind = \"dns\"\nports = [53]\n\n[[module]]\nkind = \"http\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .args(["replay", "--log-level", "error", "--config"])
        .arg(&config)
        .arg(&pcap)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

#[test]
fn mangled_dns_and_http_never_panic() {
    for seed in [1u64, 0x5eed, 0xdead_beef] {
        let frames = frames(seed);
        let (stdout, stderr) = replay(&frames, &seed.to_string());
        assert!(!stderr.contains("panicked"), "seed {seed}: {stderr}");
        let mut kinds = [0usize; 2];
        for line in stdout.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("seed {seed}: {e}: {line}"));
            match v["event_type"].as_str() {
                Some("dns") => kinds[0] += 1,
                Some("http") => kinds[1] += 1,
                other => panic!("seed {seed}: event_type {other:?}"),
            }
        }
        assert!(kinds[0] > 20 && kinds[1] > 20, "seed {seed}: {kinds:?}");
        let (again, _) = replay(&frames, &format!("{seed}-again"));
        assert_eq!(stdout, again, "seed {seed}: a second run differs");
    }
}
