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

const HEX: &[u8; 16] = b"0123456789abcdef";

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

fn hex4(v: u16) -> [u8; 4] {
    let b = v.to_be_bytes();
    [
        HEX[usize::from(b[0] >> 4)],
        HEX[usize::from(b[0] & 0xf)],
        HEX[usize::from(b[1] >> 4)],
        HEX[usize::from(b[1] & 0xf)],
    ]
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
