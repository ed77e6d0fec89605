//! The edges of the `dns` and `http` state machines, on small captures written here: tunnels and
//! upgrades end HTTP inspection, non-HTTP connections give nothing, responses without requests
//! and DNS queries over the per-flow bound are handled as documented, DNS over TCP gives up on a
//! direction after a gap.

mod common;

use std::path::PathBuf;
use std::process::Command;

use etherparse::PacketBuilder;
use serde_json::Value;

const CLIENT: [u8; 4] = [10, 1, 0, 5];
const SERVER: [u8; 4] = [10, 1, 0, 9];

/// One TCP connection's segments, sequence numbers kept right.
struct Tcp {
    ports: (u16, u16),
    seq: [u32; 2],
}

impl Tcp {
    fn new(client_port: u16, server_port: u16) -> Tcp {
        Tcp {
            ports: (client_port, server_port),
            seq: [100, 9000],
        }
    }

    /// A segment from the client (`to_server`) or the server; `syn` for the handshake.
    fn seg(&mut self, to_server: bool, syn: bool, payload: &[u8]) -> Vec<u8> {
        let (i, src, dst, sp, dp) = if to_server {
            (0, CLIENT, SERVER, self.ports.0, self.ports.1)
        } else {
            (1, SERVER, CLIENT, self.ports.1, self.ports.0)
        };
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sp, dp, self.seq[i], 65000);
        let b = match (syn, to_server) {
            (true, true) => b.syn(),
            (true, false) => b.syn().ack(self.seq[0]),
            _ => b.psh().ack(self.seq[1 - i]),
        };
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        self.seq[i] = self.seq[i].wrapping_add(payload.len() as u32 + u32::from(syn));
        out
    }

    /// Skips `n` bytes of one direction, as a segment the mirror lost.
    fn lose(&mut self, to_server: bool, n: u32) {
        let i = usize::from(!to_server);
        self.seq[i] = self.seq[i].wrapping_add(n);
    }

    fn handshake(&mut self) -> Vec<Vec<u8>> {
        vec![
            self.seg(true, true, &[]),
            self.seg(false, true, &[]),
            self.seg(true, false, &[]),
        ]
    }
}

fn udp(to_server: bool, client_port: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sp, dp) = if to_server {
        (CLIENT, SERVER, client_port, 53)
    } else {
        (SERVER, CLIENT, 53, client_port)
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m
}

/// Writes `frames` (1 ms apart) as a pcap and replays it with `modules`; returns the records.
fn replay(name: &str, frames: &[Vec<u8>], modules: &str) -> Vec<Value> {
    let timed: Vec<(u32, Vec<u8>)> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (i as u32 * 1000, f.clone()))
        .collect();
    replay_timed(name, &timed, modules)
}

/// [`replay`] with each frame's time given, in microseconds from the capture's first second.
fn replay_timed(name: &str, frames: &[(u32, Vec<u8>)], modules: &str) -> Vec<Value> {
    let tmp = common::temp_dir(&format!("vxtap-l7-edges-{name}-"));
    let dir = tmp.path();
    let pcap: PathBuf = dir.join(format!("{name}.pcap"));
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (us, f) in frames {
        out.extend_from_slice(&(1_700_000_000u32 + us / 1_000_000).to_le_bytes());
        out.extend_from_slice(&(us % 1_000_000).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(&pcap, out).unwrap();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, format!("[pipeline]\nshards = 1\n\n{modules}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .args(["replay", "--log-level", "error", "--config"])
        .arg(&config)
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const HTTP: &str = "[[module]]\nkind = \"http\"\n";

#[test]
fn connect_tunnel_ends_http_inspection() {
    let mut c = Tcp::new(40001, 3128);
    let mut frames = c.handshake();
    frames.push(c.seg(
        true,
        false,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    ));
    frames.push(c.seg(false, false, b"HTTP/1.1 200 Connection established\r\n\r\n"));
    // TLS after the tunnel opens: not HTTP, and must not be read as such.
    frames.push(c.seg(true, false, &[0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0]));
    frames.push(c.seg(false, false, b"GET /not-a-request HTTP/1.1\r\n\r\n"));
    let records = replay("connect", &frames, HTTP);
    assert_eq!(records.len(), 1, "{records:#?}");
    let h = &records[0]["http"];
    assert_eq!(h["http_method"], "CONNECT");
    assert_eq!(h["url"], "example.com:443");
    assert_eq!(h["status"], 200);
    assert_eq!(h["tunnel"], true);
    assert!(h.get("malformed").is_none());
}

#[test]
fn upgrade_ends_http_inspection() {
    let mut c = Tcp::new(40002, 80);
    let mut frames = c.handshake();
    frames.push(c.seg(
        true,
        false,
        b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ));
    frames.push(c.seg(
        false,
        false,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello",
    ));
    frames.push(c.seg(true, false, b"\x81\x85abcdefghi"));
    let records = replay("upgrade", &frames, HTTP);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["http"]["status"], 101);
    assert_eq!(records[0]["http"]["tunnel"], true);
}

#[test]
fn other_protocols_give_no_http_records() {
    let mut ssh = Tcp::new(40003, 80);
    let mut frames = ssh.handshake();
    frames.push(ssh.seg(false, false, b"SSH-2.0-OpenSSH_9.6\r\n"));
    frames.push(ssh.seg(
        true,
        false,
        b"SSH-2.0-OpenSSH_9.6\r\nGET / HTTP/1.1\r\n\r\n",
    ));
    // A first segment that could start a request ("GE") but does not.
    let mut odd = Tcp::new(40004, 8080);
    frames.extend(odd.handshake());
    frames.push(odd.seg(true, false, b"GE"));
    frames.push(odd.seg(true, false, b"T_RESULTS 1 2 3\r\n\r\n"));
    frames.push(odd.seg(
        false,
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ));
    let records = replay("not-http", &frames, HTTP);
    assert!(records.is_empty(), "{records:#?}");
}

#[test]
fn responses_without_requests_and_gaps_in_requests() {
    // Picked up mid-connection: the server's response is the first thing seen.
    let mut c = Tcp::new(40005, 80);
    let mut frames = vec![c.seg(
        false,
        false,
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno\n",
    )];
    // Then a request whose body is cut by a lost segment, and a whole one after it.
    frames.push(c.seg(
        true,
        false,
        b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789",
    ));
    c.lose(true, 50);
    frames.push(c.seg(true, false, &[b'x'; 40]));
    frames.push(c.seg(true, false, b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"));
    frames.push(c.seg(
        false,
        false,
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n",
    ));
    frames.push(c.seg(
        false,
        false,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ));
    let records = replay("mid-stream", &frames, HTTP);
    let h: Vec<&Value> = records.iter().map(|r| &r["http"]).collect();
    assert_eq!(h.len(), 3, "{h:#?}");
    assert_eq!(h[0]["status"], 404);
    assert_eq!(h[0]["request_missing"], true);
    assert_eq!(h[0]["length"], 3);
    assert_eq!(h[1]["url"], "/up");
    assert_eq!(h[1]["status"], 413);
    // The response can come before the flow layer knows of the hole it acknowledges: the record
    // may be written before the gap is seen, so only what is certain is checked.
    assert!(h[1]["request_body_len"] == 10 || h[1]["request_body_len"] == 100);
    assert_eq!(h[2]["url"], "/next");
    assert_eq!(h[2]["status"], 200);
    assert!(h[2].get("interrupted").is_none());
}

#[test]
fn dns_queries_over_the_bound_are_dropped_and_late_answers_logged_alone() {
    let modules = "[[module]]\nkind = \"dns\"\nmax_pending = 2\ntimeout_ms = 3\n";
    let mut frames = vec![
        udp(true, 5000, &dns_query(1, "a.example")),
        udp(true, 5000, &dns_query(2, "b.example")),
        udp(true, 5000, &dns_query(3, "c.example")),
        // Not DNS, on another flow: time passes.
        Tcp::new(5001, 9999).seg(true, true, &[]),
        Tcp::new(5001, 9999).seg(true, true, &[]),
    ];
    // 4 and 5 ms after the queries (1 ms apart): both have timed out, so this answer stands alone.
    let mut answer = dns_query(2, "b.example");
    answer[2] = 0x81;
    answer[3] = 0x80;
    frames.push(udp(false, 5000, &answer));
    // A payload too short for a header, on port 53.
    frames.push(udp(true, 5000, &[0xde, 0xad]));
    let records = replay("dns-bounds", &frames, modules);
    let d: Vec<&Value> = records.iter().map(|r| &r["dns"]).collect();
    assert_eq!(d.len(), 4, "{d:#?}");
    assert_eq!(
        (d[0]["id"].as_u64(), d[0]["unanswered"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(
        (d[1]["id"].as_u64(), d[1]["unanswered"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(d[2]["type"], "answer");
    assert_eq!(d[2]["query_missing"], true);
    assert_eq!(d[3]["malformed"], true);
    assert_eq!(d[3]["length"], 2);
    assert!(
        !d.iter().any(|x| x["id"] == 3),
        "query 3 was over the bound"
    );
}

/// An unanswered query is written at the first tick after its deadline, not when its flow next
/// sends or ends: here its flow never sends again, and the record comes before those of a later
/// transaction, with the same envelope as the flow's answered transaction.
#[test]
fn unanswered_queries_are_written_at_their_deadline() {
    let modules = "[[module]]\nkind = \"dns\"\ntimeout_ms = 100\n";
    let mut answer = dns_query(6, "a.example");
    answer[2] = 0x81;
    answer[3] = 0x80;
    let mut later = dns_query(8, "c.example");
    let frames = vec![
        (0, udp(true, 6000, &dns_query(6, "a.example"))),
        (500, udp(false, 6000, &answer)),
        (1_000, udp(true, 6000, &dns_query(7, "b.example"))),
        // Another flow, seconds later: flow 6000 has been silent since its query 7.
        (2_500_000, udp(true, 6001, &later)),
        (2_500_500, {
            later[2] = 0x81;
            later[3] = 0x80;
            udp(false, 6001, &later)
        }),
    ];
    let records = replay_timed("dns-deadline", &frames, modules);
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["dns"]["rrname"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        ["a.example", "b.example", "c.example"],
        "{records:#?}"
    );
    let (a, b) = (&records[0], &records[1]);
    assert_eq!(b["dns"]["unanswered"], true);
    assert_eq!(b["timestamp"], "2023-11-14T22:13:20.001000+0000");
    for field in [
        "flow_id",
        "community_id",
        "src_ip",
        "src_port",
        "dest_ip",
        "dest_port",
        "proto",
        "vxtap",
    ] {
        assert_eq!(a[field], b[field], "{field}");
    }
    assert_eq!(b["src_port"], 6000);
}

#[test]
fn dns_over_tcp_gives_up_on_a_direction_after_a_gap() {
    let mut c = Tcp::new(40006, 53);
    let mut frames = c.handshake();
    let q1 = dns_query(7, "one.example");
    let q2 = dns_query(8, "two.example");
    let framed = |m: &[u8]| [&(m.len() as u16).to_be_bytes()[..], m].concat();
    frames.push(c.seg(true, false, &framed(&q1)));
    c.lose(true, framed(&q2).len() as u32);
    frames.push(c.seg(true, false, &framed(&dns_query(9, "three.example"))));
    let mut a1 = q1.clone();
    a1[2] = 0x81;
    a1[3] = 0x80;
    frames.push(c.seg(false, false, &framed(&a1)));
    let records = replay("dns-tcp-gap", &frames, "[[module]]\nkind = \"dns\"\n");
    let d: Vec<&Value> = records.iter().map(|r| &r["dns"]).collect();
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0]["rrname"], "one.example");
    assert_eq!(d[0]["type"], "answer");
    assert_eq!(records[0]["proto"], "TCP");
}

#[test]
fn a_gap_in_chunk_framing_interrupts_and_the_next_status_line_resyncs() {
    let mut c = Tcp::new(40007, 80);
    let mut frames = c.handshake();
    frames.push(c.seg(true, false, b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n"));
    frames.push(c.seg(
        false,
        false,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ));
    // The next chunk's size line is lost: the body's end can no longer be known.
    c.lose(false, b"5\r\nworld\r\n".len() as u32);
    frames.push(c.seg(false, false, b"0\r\n\r\n"));
    frames.push(c.seg(true, false, b"GET /d HTTP/1.1\r\nHost: h\r\n\r\n"));
    frames.push(c.seg(false, false, b"HTTP/1.1 204 No Content\r\n\r\n"));
    let records = replay("chunk-gap", &frames, HTTP);
    let h: Vec<&Value> = records.iter().map(|r| &r["http"]).collect();
    assert_eq!(h.len(), 2, "{h:#?}");
    assert_eq!(h[0]["url"], "/c");
    assert_eq!(h[0]["interrupted"], "gap");
    assert_eq!(h[0]["length"], 5);
    assert_eq!(h[1]["url"], "/d");
    assert_eq!(h[1]["status"], 204);
    assert!(h[1].get("interrupted").is_none());
}

#[test]
fn config_mistakes_name_their_key() {
    let tmp = common::temp_dir("vxtap-l7-config-");
    let dir = tmp.path();
    for (text, expect) in [
        (
            "[[module]]\nkind = \"dns\"\ntimeout_ms = 0\n",
            "timeout_ms: must be",
        ),
        (
            "[[module]]\nkind = \"dns\"\nmax_pending = 0\n",
            "max_pending: must be",
        ),
        (
            "[[module]]\nkind = \"dns\"\nport = [53]\n",
            "unknown field `port`",
        ),
        (
            "[[module]]\nkind = \"http\"\nmax_pipeline = 0\n",
            "max_pipeline: must be",
        ),
        (
            "[[module]]\nkind = \"http\"\nmax_field_len = 1\n",
            "max_field_len: must be",
        ),
        (
            "[[module]]\nkind = \"http\"\nports = [80]\n",
            "unknown field `ports`",
        ),
    ] {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expect),
            "{text}: {err}"
        );
    }
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[[module]]\nkind = \"dns\"\nports = [53, 5353, 5300]\n\n[[module]]\nkind = \"http\"\n\n[module.output]\ntype = \"file\"\ndir = \"/tmp/vxtap-http\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mdns_messages_are_records_of_their_own() {
    let group = [224, 0, 0, 251];
    let mdns = |src: [u8; 4], payload: &[u8]| {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [1, 0, 0x5e, 0, 0, 0xfb])
            .ipv4(src, group, 255)
            .udp(5353, 5353)
            .write(&mut out, payload)
            .unwrap();
        out
    };
    let name = b"\x05_http\x04_tcp\x05local\x00";
    let mut query = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(name);
    query.extend_from_slice(&[0, 12, 0x80, 1]); // PTR, IN with the unicast-response bit
    let mut answer = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    answer.extend_from_slice(name);
    answer.extend_from_slice(&[0, 12, 0x80, 1, 0, 0, 0x11, 0x94, 0, 9]); // cache-flush IN
    answer.extend_from_slice(b"\x06printr\xc0\x0c");
    let frames = vec![mdns(CLIENT, &query), mdns(SERVER, &answer)];
    let records = replay("mdns", &frames, "[[module]]\nkind = \"dns\"\n");
    let d: Vec<&Value> = records.iter().map(|r| &r["dns"]).collect();
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_eq!(d[0]["type"], "query");
    assert_eq!(d[0]["rrname"], "_http._tcp.local");
    assert_eq!(d[0]["rrclass"], "IN");
    assert!(d[0].get("unanswered").is_none(), "{}", d[0]);
    assert_eq!(d[1]["type"], "answer");
    assert_eq!(d[1]["answers"][0]["rdata"], "printr._http._tcp.local");
    assert!(d[1].get("query_missing").is_none(), "{}", d[1]);
    assert_eq!(records[1]["dest_ip"], "224.0.0.251");
}
