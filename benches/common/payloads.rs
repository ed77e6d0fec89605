//! Application payloads with real wire structure, for generated captures: DNS messages (RFC 1035,
//! HTTPS records per RFC 9460), TLS handshake records (RFC 8446 / RFC 5246, GREASE per RFC 8701),
//! HTTP/1.1 messages and SSH banners. Shared by the benchmark captures (`benches/common/eni.rs`) and
//! meant for `examples/make_pcaps.rs`; included with `#[path]`, so not part of the library.
//!
//! Every builder is a pure function of its arguments: the caller picks names, randoms and keys, so
//! the same arguments give the same bytes.
//!
//! The two certificates are self-signed, made once with `openssl req -x509` (P-256 for
//! `api.shop.example`, RSA-2048 for `www.example.net`) and checked in, DER-encoded.
#![allow(dead_code, unreachable_pub)]

/// A self-signed P-256 certificate for `api.shop.example` (DER).
pub const CERT_EC_P256: &[u8] = include_bytes!("cert-ec-p256.der");
/// A self-signed RSA-2048 certificate for `www.example.net` (DER).
pub const CERT_RSA_2048: &[u8] = include_bytes!("cert-rsa2048.der");

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u24(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
}

/// Appends `len` (`width` bytes, big-endian) and then what `body` writes, with the length patched
/// in afterwards: the shape of every TLS vector and DNS rdata.
fn with_len(out: &mut Vec<u8>, width: usize, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend(std::iter::repeat_n(0, width));
    body(out);
    let len = out.len() - at - width;
    let bytes = (len as u32).to_be_bytes();
    out[at..at + width].copy_from_slice(&bytes[4 - width..]);
}

/// splitmix64's finaliser, for the few choices a builder derives from a seed (extension order).
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------------
// DNS

/// DNS record types used here.
pub mod qtype {
    pub const A: u16 = 1;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
    pub const HTTPS: u16 = 65;
}

/// Appends `name` as uncompressed labels (RFC 1035 §3.1).
pub fn dns_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
}

/// A standard query for `name`/`qtype` with recursion desired, and an EDNS(0) OPT record
/// advertising a 1,232-byte UDP payload (the DNS flag day 2020 value) when `edns`.
pub fn dns_query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    put_u16(&mut m, id);
    put_u16(&mut m, 0x0100);
    for count in [1, 0, 0, u16::from(edns)] {
        put_u16(&mut m, count);
    }
    dns_name(&mut m, name);
    put_u16(&mut m, qtype);
    put_u16(&mut m, 1);
    if edns {
        opt_record(&mut m);
    }
    m
}

fn opt_record(m: &mut Vec<u8>) {
    m.push(0);
    put_u16(m, qtype::OPT);
    put_u16(m, 1232);
    m.extend_from_slice(&[0, 0, 0, 0]);
    put_u16(m, 0);
}

/// One answer to a query.
#[derive(Debug, Clone)]
pub enum DnsAnswer {
    A([u8; 4]),
    Aaaa([u8; 16]),
    /// An alias; the records after it in the list belong to the alias target.
    Cname(String),
    /// An HTTPS service binding (RFC 9460) in service mode on the owner name, with ALPN ids
    /// and an IPv4 hint.
    Https {
        alpn: Vec<&'static str>,
        ipv4_hint: [u8; 4],
    },
}

/// The response to `query` (as built by [`dns_query`]): the question echoed, `answers` in order
/// (owner names compressed against the question or the last CNAME target), recursion available.
/// `rcode` 3 (NXDOMAIN) puts an SOA for `zone` in the authority section instead of answers.
pub fn dns_response(
    query: &[u8],
    answers: &[DnsAnswer],
    rcode: u8,
    zone: &str,
    ttl: u32,
) -> Vec<u8> {
    let question_end = 12 + question_len(query);
    let edns = u16::from_be_bytes([query[10], query[11]]) > 0;
    let mut m = Vec::with_capacity(question_end + 32 * answers.len() + 64);
    m.extend_from_slice(&query[..2]);
    put_u16(&mut m, 0x8180 | u16::from(rcode & 0x0f));
    let nx = rcode == 3;
    put_u16(&mut m, 1);
    put_u16(&mut m, if nx { 0 } else { answers.len() as u16 });
    put_u16(&mut m, u16::from(nx));
    put_u16(&mut m, u16::from(edns));
    m.extend_from_slice(&query[12..question_end]);
    if nx {
        dns_name(&mut m, zone);
        put_u16(&mut m, qtype::SOA);
        put_u16(&mut m, 1);
        m.extend_from_slice(&900u32.to_be_bytes());
        with_len(&mut m, 2, |m| {
            dns_name(m, &format!("ns-1.awsdns-01.{zone}"));
            dns_name(m, &format!("hostmaster.{zone}"));
            for v in [1u32, 7200, 900, 1_209_600, 86400] {
                m.extend_from_slice(&v.to_be_bytes());
            }
        });
    } else {
        // Owner of the next record: the question name (offset 12), then each CNAME's target.
        let mut owner: u16 = 12;
        for a in answers {
            put_u16(&mut m, 0xc000 | owner);
            let (ty, _) = match a {
                DnsAnswer::A(_) => (qtype::A, 0),
                DnsAnswer::Aaaa(_) => (qtype::AAAA, 0),
                DnsAnswer::Cname(_) => (qtype::CNAME, 0),
                DnsAnswer::Https { .. } => (qtype::HTTPS, 0),
            };
            put_u16(&mut m, ty);
            put_u16(&mut m, 1);
            m.extend_from_slice(&ttl.to_be_bytes());
            let rdata_at = m.len() + 2;
            with_len(&mut m, 2, |m| match a {
                DnsAnswer::A(v4) => m.extend_from_slice(v4),
                DnsAnswer::Aaaa(v6) => m.extend_from_slice(v6),
                DnsAnswer::Cname(target) => dns_name(m, target),
                DnsAnswer::Https { alpn, ipv4_hint } => {
                    put_u16(m, 1);
                    m.push(0);
                    put_u16(m, 1);
                    with_len(m, 2, |m| {
                        for id in alpn {
                            m.push(id.len() as u8);
                            m.extend_from_slice(id.as_bytes());
                        }
                    });
                    put_u16(m, 4);
                    put_u16(m, 4);
                    m.extend_from_slice(ipv4_hint);
                }
            });
            if matches!(a, DnsAnswer::Cname(_)) {
                owner = rdata_at as u16;
            }
        }
    }
    if edns {
        opt_record(&mut m);
    }
    m
}

/// Bytes of the question section of a message built by [`dns_query`] (uncompressed name).
fn question_len(query: &[u8]) -> usize {
    let mut at = 12;
    while at < query.len() && query[at] != 0 {
        at += 1 + usize::from(query[at]);
    }
    at + 1 + 4 - 12
}

/// A DNS message with the 2-byte length prefix it carries over TCP (RFC 1035 §4.2.2).
pub fn dns_over_tcp(message: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(message.len() + 2);
    put_u16(&mut m, message.len() as u16);
    m.extend_from_slice(message);
    m
}

// ---------------------------------------------------------------------------------------------
// TLS

/// TLS record content types.
pub mod content {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
}

/// The `i`-th (mod 16) GREASE value: 0x0a0a, 0x1a1a, … 0xfafa (RFC 8701 §2).
pub fn grease(i: u64) -> u16 {
    0x0a0a | ((i % 16) as u16 * 0x1010)
}

/// What varies between ClientHellos.
#[derive(Debug, Clone)]
pub struct ClientHello<'a> {
    pub sni: Option<&'a str>,
    pub alpn: &'a [&'a str],
    pub random: [u8; 32],
    pub session_id: [u8; 32],
    /// The X25519 key share.
    pub key_share: [u8; 32],
    /// Browser-like: GREASE values (derived from this seed) in cipher suites, extensions, groups,
    /// key shares and versions, and the middle extensions in an order shuffled by it, as Chrome
    /// does since version 110. `None`: a library client (curl, Go, Python) with a fixed order.
    pub browser_seed: Option<u64>,
}

/// A ClientHello handshake message in one TLS record (legacy record version 1.0, as clients send).
pub fn tls_client_hello(ch: &ClientHello<'_>) -> Vec<u8> {
    let g = ch.browser_seed.map(mix64);
    let gv = |k: u64| g.map(|g| grease((g >> (k * 4)) & 0xf));
    let mut body = Vec::with_capacity(512);
    put_u16(&mut body, 0x0303);
    body.extend_from_slice(&ch.random);
    body.push(32);
    body.extend_from_slice(&ch.session_id);
    with_len(&mut body, 2, |b| {
        if let Some(v) = gv(0) {
            put_u16(b, v);
        }
        for cs in [
            0x1301u16, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ] {
            put_u16(b, cs);
        }
    });
    body.extend_from_slice(&[1, 0]);

    let mut exts: Vec<Vec<u8>> = Vec::with_capacity(16);
    let mut ext = |ty: u16, data: &dyn Fn(&mut Vec<u8>)| {
        let mut e = Vec::with_capacity(48);
        put_u16(&mut e, ty);
        with_len(&mut e, 2, |e| data(e));
        exts.push(e);
    };
    if let Some(sni) = ch.sni {
        ext(0x0000, &|e| {
            with_len(e, 2, |e| {
                e.push(0);
                with_len(e, 2, |e| e.extend_from_slice(sni.as_bytes()));
            })
        });
    }
    ext(0x0017, &|_| {});
    ext(0xff01, &|e| e.push(0));
    ext(0x000a, &|e| {
        with_len(e, 2, |e| {
            if let Some(v) = gv(1) {
                put_u16(e, v);
            }
            for grp in [0x001du16, 0x0017, 0x0018] {
                put_u16(e, grp);
            }
        })
    });
    ext(0x000b, &|e| e.extend_from_slice(&[1, 0]));
    ext(0x0023, &|_| {});
    if !ch.alpn.is_empty() {
        ext(0x0010, &|e| {
            with_len(e, 2, |e| {
                for p in ch.alpn {
                    e.push(p.len() as u8);
                    e.extend_from_slice(p.as_bytes());
                }
            })
        });
    }
    ext(0x0005, &|e| e.extend_from_slice(&[1, 0, 0, 0, 0]));
    ext(0x000d, &|e| {
        with_len(e, 2, |e| {
            for sa in [
                0x0403u16, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ] {
                put_u16(e, sa);
            }
        })
    });
    ext(0x0012, &|_| {});
    ext(0x0033, &|e| {
        with_len(e, 2, |e| {
            if let Some(v) = gv(1) {
                put_u16(e, v);
                put_u16(e, 1);
                e.push(0);
            }
            put_u16(e, 0x001d);
            put_u16(e, 32);
            e.extend_from_slice(&ch.key_share);
        })
    });
    ext(0x002d, &|e| e.extend_from_slice(&[1, 1]));
    ext(0x002b, &|e| {
        with_len(e, 1, |e| {
            if let Some(v) = gv(2) {
                put_u16(e, v);
            }
            put_u16(e, 0x0304);
            put_u16(e, 0x0303);
        })
    });
    if g.is_some() {
        ext(0x001b, &|e| e.extend_from_slice(&[2, 0, 2]));
    }
    if let Some(g) = g {
        // Fisher-Yates over the extensions, GREASE ones added at both ends afterwards.
        let mut state = g;
        for i in (1..exts.len()).rev() {
            state = mix64(state);
            exts.swap(i, (state % (i as u64 + 1)) as usize);
        }
    }

    with_len(&mut body, 2, |b| {
        if let Some(v) = gv(3) {
            put_u16(b, v);
            put_u16(b, 0);
        }
        for e in &exts {
            b.extend_from_slice(e);
        }
        if let Some(v) = gv(4) {
            // Two GREASE extensions must differ (RFC 8701 §3.1).
            let v = if Some(v) == gv(3) { v ^ 0x1010 } else { v };
            put_u16(b, v);
            put_u16(b, 1);
            b.push(0);
        }
    });
    tls_record(content::HANDSHAKE, 0x0301, &handshake(1, &body))
}

/// A handshake message: type, 24-bit length, body.
pub fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(body.len() + 4);
    h.push(msg_type);
    put_u24(&mut h, body.len());
    h.extend_from_slice(body);
    h
}

/// One TLS record around `fragment`.
pub fn tls_record(content_type: u8, version: u16, fragment: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(fragment.len() + 5);
    r.push(content_type);
    put_u16(&mut r, version);
    put_u16(&mut r, fragment.len() as u16);
    r.extend_from_slice(fragment);
    r
}

/// The header of an application-data record of `len` bytes (its body is opaque ciphertext).
pub fn tls_app_data_header(len: u16) -> [u8; 5] {
    let l = len.to_be_bytes();
    [content::APPLICATION_DATA, 3, 3, l[0], l[1]]
}

/// A ServerHello record. `tls13`: supported_versions = 1.3 and an X25519 key share (cipher
/// TLS_AES_128_GCM_SHA256); otherwise TLS 1.2 with `cipher`, the chosen ALPN protocol,
/// renegotiation_info and extended_master_secret.
pub fn tls_server_hello(
    random: [u8; 32],
    session_id: &[u8; 32],
    tls13: bool,
    cipher: u16,
    alpn: Option<&str>,
    key_share: &[u8; 32],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    put_u16(&mut body, 0x0303);
    body.extend_from_slice(&random);
    body.push(32);
    body.extend_from_slice(session_id);
    put_u16(&mut body, if tls13 { 0x1301 } else { cipher });
    body.push(0);
    with_len(&mut body, 2, |b| {
        if tls13 {
            put_u16(b, 0x002b);
            put_u16(b, 2);
            put_u16(b, 0x0304);
            put_u16(b, 0x0033);
            with_len(b, 2, |b| {
                put_u16(b, 0x001d);
                put_u16(b, 32);
                b.extend_from_slice(key_share);
            });
        } else {
            put_u16(b, 0xff01);
            put_u16(b, 1);
            b.push(0);
            put_u16(b, 0x0017);
            put_u16(b, 0);
            if let Some(p) = alpn {
                put_u16(b, 0x0010);
                with_len(b, 2, |b| {
                    with_len(b, 2, |b| {
                        b.push(p.len() as u8);
                        b.extend_from_slice(p.as_bytes());
                    })
                });
            }
        }
    });
    tls_record(content::HANDSHAKE, 0x0303, &handshake(2, &body))
}

/// TLS 1.2's server flight after ServerHello, in one record: Certificate (`chain`, leaf first),
/// ServerKeyExchange (ECDHE over X25519 with an opaque `signature`) and ServerHelloDone.
pub fn tls12_certificate_flight(
    chain: &[&[u8]],
    key_share: &[u8; 32],
    signature: &[u8],
) -> Vec<u8> {
    let mut cert = Vec::with_capacity(1024);
    with_len(&mut cert, 3, |c| {
        for der in chain {
            with_len(c, 3, |c| c.extend_from_slice(der));
        }
    });
    let mut ske = Vec::with_capacity(160);
    ske.extend_from_slice(&[3, 0x00, 0x1d, 32]);
    ske.extend_from_slice(key_share);
    put_u16(&mut ske, 0x0804);
    with_len(&mut ske, 2, |s| s.extend_from_slice(signature));
    let mut flight = handshake(11, &cert);
    flight.extend_from_slice(&handshake(12, &ske));
    flight.extend_from_slice(&handshake(14, &[]));
    tls_record(content::HANDSHAKE, 0x0303, &flight)
}

/// TLS 1.2 client's second flight: ClientKeyExchange (X25519), ChangeCipherSpec and an
/// encrypted Finished (`finished`: 40 opaque bytes for AES-GCM).
pub fn tls12_client_finish(key_share: &[u8; 32], finished: &[u8]) -> Vec<u8> {
    let mut cke = vec![32];
    cke.extend_from_slice(key_share);
    let mut out = tls_record(content::HANDSHAKE, 0x0303, &handshake(16, &cke));
    out.extend_from_slice(&tls_record(content::CHANGE_CIPHER_SPEC, 0x0303, &[1]));
    out.extend_from_slice(&tls_record(content::HANDSHAKE, 0x0303, finished));
    out
}

/// The middlebox-compatibility ChangeCipherSpec record TLS 1.3 peers send (RFC 8446 §D.4).
pub fn tls_change_cipher_spec() -> Vec<u8> {
    tls_record(content::CHANGE_CIPHER_SPEC, 0x0303, &[1])
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 and SSH

/// An HTTP/1.1 request head (and `body`, sent with Content-Length when not empty).
pub fn http_request(
    method: &str,
    host: &str,
    path: &str,
    user_agent: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\n\
         Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n"
    );
    if !body.is_empty() {
        r.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

/// An HTTP/1.1 response head announcing a `content_length`-byte body (sent separately).
pub fn http_response_head(
    status: u16,
    reason: &str,
    content_type: &str,
    content_length: usize,
) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nServer: nginx\r\nContent-Type: {content_type}\r\n\
         Content-Length: {content_length}\r\nConnection: keep-alive\r\n\r\n"
    )
    .into_bytes()
}

/// A whole HTTP/1.1 response with a chunked body made of `chunks` (RFC 9112 §7.1).
pub fn http_response_chunked(status: u16, reason: &str, chunks: &[&[u8]]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: envoy\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        r.extend_from_slice(c);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

/// An SSH identification string (RFC 4253 §4.2).
pub fn ssh_banner(software: &str) -> Vec<u8> {
    format!("SSH-2.0-{software}\r\n").into_bytes()
}
