//! JA4, the TLS client fingerprint of FoxIO's JA4+ suite (BSD-3-Clause; the spec is
//! `technical_details/JA4.md` in FoxIO-LLC/ja4). Only JA4 itself: the other JA4+ methods (JA4S, JA4H,
//! JA4X, ...) are under a non-permissive license and deliberately absent.
//!
//! ```text
//! t13d1516h2_8daaf6152771_e5627efa2ab1
//! │││ │ │ │  │            └ c: sha256("sorted extensions less SNI/ALPN" [ "_" "signature algorithms" ])[..12]
//! │││ │ │ │  └ b: sha256("sorted cipher suites")[..12]
//! │││ │ │ └ first and last character of the first ALPN value ("00" without)
//! │││ │ └ extension count (SNI and ALPN included), two digits, at most 99
//! │││ └ cipher suite count, two digits, at most 99
//! ││└ d: SNI present, i: absent
//! │└ version: highest supported_versions entry, else the hello's legacy version
//! └ t: TLS over TCP, q: QUIC, d: DTLS
//! ```
//!
//! GREASE values (RFC 8701) are left out everywhere: counts, lists and version. Hex values are four
//! lowercase digits, comma-separated; an empty cipher list gives `000000000000` for b, and an empty
//! extension list (after removing SNI and ALPN) the same for c.

use core::fmt;

use sha2::{Digest, Sha256};

use super::parser::{extension_type, is_grease, version, ClientHello};
use crate::modules::eve::{hex4, HEX};

/// The transport the ClientHello came over: JA4's first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TLS over TCP: `t`.
    Tcp,
    /// QUIC (the ClientHello came in CRYPTO frames): `q`.
    Quic,
    /// DTLS over UDP: `d`.
    Dtls,
}

/// Length of a JA4 string: 10 characters of part a, then `_`, 12, `_`, 12.
pub const JA4_LEN: usize = 36;

/// A JA4 fingerprint, held inline: computing and printing one allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ja4 {
    text: [u8; JA4_LEN],
}

impl Ja4 {
    /// A placeholder no ClientHello produces (no `_` separators), for a summary about to be
    /// filled.
    pub(crate) const EMPTY: Ja4 = Ja4 {
        text: [b'0'; JA4_LEN],
    };

    /// The fingerprint as text.
    pub fn as_str(&self) -> &str {
        // Every byte written is ASCII (digits, letters, '_'), see `ja4`.
        core::str::from_utf8(&self.text).unwrap_or("")
    }
}

impl fmt::Display for Ja4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Ja4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ja4({})", self.as_str())
    }
}

/// JA4's two-character version code. DTLS's codes count down; the spec takes the numerically highest
/// supported_versions entry whatever the transport, and so does this.
fn version_code(v: u16) -> [u8; 2] {
    match v {
        version::TLS_1_3 => *b"13",
        version::TLS_1_2 => *b"12",
        version::TLS_1_1 => *b"11",
        version::TLS_1_0 => *b"10",
        version::SSL_3_0 => *b"s3",
        0x0002 => *b"s2",
        0xfeff => *b"d1",
        0xfefd => *b"d2",
        0xfefc => *b"d3",
        _ => *b"00",
    }
}

/// The first and last characters of the first ALPN value: the bytes themselves when both are ASCII
/// letters or digits, else the first and last hex digits of the whole value; `00` when there is none.
fn alpn_code(first: Option<&[u8]>) -> [u8; 2] {
    let Some((&head, &tail)) = first.and_then(|v| Some((v.first()?, v.last()?))) else {
        return *b"00";
    };
    if head.is_ascii_alphanumeric() && tail.is_ascii_alphanumeric() {
        [head, tail]
    } else {
        [HEX[usize::from(head >> 4)], HEX[usize::from(tail & 0x0f)]]
    }
}

fn two_digits(n: usize) -> [u8; 2] {
    let n = n.min(99) as u8;
    [b'0' + n / 10, b'0' + n % 10]
}

/// Feeds `values` to the hash as comma-separated four-digit lowercase hex.
fn hash_list(hasher: &mut Sha256, values: &[u16]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            hasher.update(b",");
        }
        hasher.update(hex4(*v));
    }
}

fn truncated_hex(hasher: Sha256, out: &mut [u8]) {
    let digest = hasher.finalize();
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
}

/// Computes the JA4 fingerprint of a ClientHello.
///
/// The two sorted lists are collected into one small `Vec` (at most 32,767 cipher suites and 16,383
/// extensions fit in a hello's length fields, a few dozen in practice): JA4 is computed once per
/// handshake, so one allocation here costs nothing next to the handshake itself.
pub fn ja4(hello: &ClientHello<'_>, transport: Transport) -> Ja4 {
    let mut text = [b'0'; JA4_LEN];
    text[0] = match transport {
        Transport::Tcp => b't',
        Transport::Quic => b'q',
        Transport::Dtls => b'd',
    };
    text[1..3].copy_from_slice(&version_code(hello.max_version()));
    text[3] = if hello.has_server_name() { b'd' } else { b'i' };

    let ciphers = hello.cipher_suites().filter(|&c| !is_grease(c));
    let extensions = hello.extension_types().filter(|&e| !is_grease(e));
    let mut values: Vec<u16> = Vec::with_capacity(ciphers.size_hint().0 + 32);
    values.extend(ciphers);
    let cipher_count = values.len();
    let mut extension_count = 0;
    for e in extensions {
        extension_count += 1;
        if e != extension_type::SERVER_NAME && e != extension_type::ALPN {
            values.push(e);
        }
    }
    text[4..6].copy_from_slice(&two_digits(cipher_count));
    text[6..8].copy_from_slice(&two_digits(extension_count));
    text[8..10].copy_from_slice(&alpn_code(hello.alpn().next()));
    text[10] = b'_';
    text[23] = b'_';

    let (ciphers, extensions) = values.split_at_mut(cipher_count);
    if !ciphers.is_empty() {
        ciphers.sort_unstable();
        let mut hasher = Sha256::new();
        hash_list(&mut hasher, ciphers);
        truncated_hex(hasher, &mut text[11..23]);
    }
    if !extensions.is_empty() {
        extensions.sort_unstable();
        let mut hasher = Sha256::new();
        hash_list(&mut hasher, extensions);
        let mut signatures = hello
            .signature_algorithms()
            .filter(|&s| !is_grease(s))
            .peekable();
        if signatures.peek().is_some() {
            hasher.update(b"_");
            for (i, s) in signatures.enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                hasher.update(hex4(s));
            }
        }
        truncated_hex(hasher, &mut text[24..36]);
    }
    Ja4 { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tls::parser::ClientHello;

    /// A ClientHello body with these cipher suites and extensions (type, payload), TLS 1.2 legacy
    /// version, empty session id.
    fn hello_body(ciphers: &[u16], extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0; 32]);
        body.push(0);
        body.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
        for c in ciphers {
            body.extend_from_slice(&c.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]);
        let mut block = Vec::new();
        for (ty, data) in extensions {
            block.extend_from_slice(&ty.to_be_bytes());
            block.extend_from_slice(&(data.len() as u16).to_be_bytes());
            block.extend_from_slice(data);
        }
        body.extend_from_slice(&(block.len() as u16).to_be_bytes());
        body.extend_from_slice(&block);
        body
    }

    fn u16_list(prefix_len: usize, values: &[u16]) -> Vec<u8> {
        let n = values.len() * 2;
        let mut out = n.to_be_bytes()[core::mem::size_of::<usize>() - prefix_len..].to_vec();
        for v in values {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    fn alpn(names: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for n in names {
            list.push(n.len() as u8);
            list.extend_from_slice(n);
        }
        let mut out = (list.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&list);
        out
    }

    fn sni(host: &str) -> Vec<u8> {
        let mut out = ((host.len() + 3) as u16).to_be_bytes().to_vec();
        out.push(0);
        out.extend_from_slice(&(host.len() as u16).to_be_bytes());
        out.extend_from_slice(host.as_bytes());
        out
    }

    /// The worked example of the JA4 spec (technical_details/JA4.md): its cipher suites, extensions in
    /// wire order, and signature algorithms.
    fn spec_example(signatures: &[u16]) -> Vec<u8> {
        let ciphers = [
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
            0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let types = [
            0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ];
        let extensions: Vec<(u16, Vec<u8>)> = types
            .iter()
            .map(|&t| {
                let data = match t {
                    0x0000 => sni("example.com"),
                    0x0010 => alpn(&[b"h2", b"http/1.1"]),
                    0x002b => u16_list(1, &[0x0304, 0x0303]),
                    0x000d => u16_list(2, signatures),
                    _ => Vec::new(),
                };
                (t, data)
            })
            .collect();
        hello_body(&ciphers, &extensions)
    }

    fn fingerprint(body: &[u8]) -> String {
        ja4(&ClientHello::parse(body).unwrap(), Transport::Tcp).to_string()
    }

    #[test]
    fn spec_example_fingerprint() {
        let sigs = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        assert_eq!(
            fingerprint(&spec_example(&sigs)),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
        // No signature algorithms: the extension list is hashed without a trailing underscore.
        assert_eq!(
            fingerprint(&spec_example(&[])),
            "t13d1516h2_8daaf6152771_6d807ffa2a79"
        );
    }

    #[test]
    fn grease_is_ignored_everywhere() {
        let sigs = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        let plain = spec_example(&sigs);
        // The same hello with GREASE in the cipher suites, the extensions, supported_versions and the
        // signature algorithms.
        let mut hello = ClientHello::parse(&plain).unwrap();
        let mut ciphers: Vec<u16> = hello.cipher_suites().collect();
        ciphers.insert(0, 0x7a7a);
        let mut extensions: Vec<(u16, Vec<u8>)> = hello
            .extensions()
            .map(|e| match e.ty {
                0x002b => (e.ty, u16_list(1, &[0xdada, 0x0304, 0x0303])),
                0x000d => (
                    e.ty,
                    u16_list(
                        2,
                        &[
                            0x0a0a, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
                        ],
                    ),
                ),
                _ => (e.ty, e.data.to_vec()),
            })
            .collect();
        extensions.insert(0, (0x2a2a, Vec::new()));
        extensions.push((0xfafa, vec![0]));
        let greased = hello_body(&ciphers, &extensions);
        hello = ClientHello::parse(&greased).unwrap();
        assert_eq!(ja4(&hello, Transport::Tcp).as_str(), fingerprint(&plain));
    }

    #[test]
    fn part_a_fields() {
        // No SNI, no ALPN, no supported_versions: "i", "00", and the legacy version.
        let body = hello_body(&[0x002f], &[(0x000a, u16_list(2, &[0x001d]))]);
        let fp = fingerprint(&body);
        assert_eq!(&fp[..11], "t12i010100_");
        let hello = ClientHello::parse(&body).unwrap();
        assert_eq!(&ja4(&hello, Transport::Quic).as_str()[..1], "q");
        assert_eq!(&ja4(&hello, Transport::Dtls).as_str()[..1], "d");
        // Counts cap at 99.
        let many: Vec<u16> = (1..=150).collect();
        assert_eq!(&fingerprint(&hello_body(&many, &[]))[4..8], "9900");
        // No cipher suites, no extensions: both hashes are twelve zeros.
        assert_eq!(
            fingerprint(&hello_body(&[], &[])),
            "t12i000000_000000000000_000000000000"
        );
        // Only SNI and ALPN: nothing left to hash for c.
        let body = hello_body(&[0x1301], &[(0, sni("a.b")), (0x10, alpn(&[b"h2"]))]);
        assert!(fingerprint(&body).ends_with("_000000000000"));
        assert_eq!(&fingerprint(&body)[..10], "t12d0102h2");
    }

    #[test]
    fn versions() {
        for (v, code) in [
            (0x0304, "13"),
            (0x0303, "12"),
            (0x0302, "11"),
            (0x0301, "10"),
            (0x0300, "s3"),
            (0x0002, "s2"),
            (0xfeff, "d1"),
            (0xfefd, "d2"),
            (0xfefc, "d3"),
            (0x0305, "00"),
        ] {
            assert_eq!(version_code(v), code.as_bytes(), "{v:#06x}");
        }
    }

    #[test]
    fn alpn_characters() {
        // The spec's examples, and its single-character and empty cases.
        for (value, code) in [
            (&b"h2"[..], "h2"),
            (b"http/1.1", "h1"),
            (b"x", "xx"),
            (&[0xab], "ab"),
            (&[0xab, 0xcd], "ad"),
            (&[0x30, 0xab], "3b"),
            (&[0x30, 0x31, 0xab, 0xcd], "3d"),
            (&[0x30, 0xab, 0xcd, 0x31], "01"),
        ] {
            assert_eq!(alpn_code(Some(value)), code.as_bytes(), "{value:?}");
        }
        assert_eq!(alpn_code(None), *b"00");
        assert_eq!(alpn_code(Some(&[])), *b"00");
    }

    #[test]
    fn literal_client_hello() {
        // parser::tests::CLIENT_HELLO_RECORD: three ciphers and six extensions besides GREASE.
        let record = crate::modules::tls::parser::tests::CLIENT_HELLO_RECORD;
        let hello = ClientHello::parse(&record[9..]).unwrap();
        // sha256("1301,1302,c02b") and sha256("000a,000b,000d,002b_0403,0804"), computed apart.
        assert_eq!(
            ja4(&hello, Transport::Tcp).as_str(),
            "t13d0306h2_5559582ccdc4_fb71836bce29"
        );
    }
}
