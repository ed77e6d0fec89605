//! TLS record layer and handshake messages, read in place from borrowed bytes (RFC 8446 §4–5,
//! RFC 5246 §6–7).
//!
//! Pure functions, no state, no I/O: a stream consumer (the TLS module, over the flow layer's
//! reassembled TCP streams) keeps the bytes of one direction and asks [`find_handshake`] whether the
//! message it wants is whole yet; once it is, [`ClientHello::parse`], [`ServerHello::parse`] or
//! [`Certificate::parse`] read its body. [`probe`] tells "TLS on any port" by content.
//!
//! Every view validates the whole structure once, in its `parse`, so that its accessors and iterators
//! cannot fail or panic afterwards. Nothing here allocates, except [`find_handshake`] copying a message
//! that was split over several records into the caller's reused scratch buffer.
//!
//! Defensive limits (each is a constant below, and what happens past it is said there):
//! - a record longer than [`MAX_RECORD_LEN`] is not TLS ([`TlsError::RecordTooLong`]);
//! - a handshake message longer than [`MAX_HANDSHAKE_LEN`] is refused ([`TlsError::HandshakeTooLong`]),
//!   so a consumer never buffers more than about that much per direction;
//! - a certificate chain is read up to [`MAX_CHAIN_CERTS`] certificates, then flagged
//!   ([`Certificate::chain_truncated`]);
//! - a malformed or repeated extension payload is not an error: the field is left out (first one wins)
//!   and [`HelloFlags`] says so, because the rest of the hello is still worth recording.
//!
//! Why not the `tls-parser` crate: its ClientHello parse collects the cipher suites and the extensions
//! into `Vec`s (one allocation each per hello, plus one per list-valued extension), it has no helper for
//! messages split across records beyond a reassembly buffer of its own, and it leaves GREASE and JA4 to
//! the caller anyway. The fields vxtap needs are a few length-prefixed lists; reading them in place here is
//! about as much code as adapting its types, allocates nothing, and keeps the no-panic contract in one
//! file that the fuzz target covers.

use thiserror::Error;

/// Length of a TLS record header: content type, legacy version, length.
pub const RECORD_HEADER_LEN: usize = 5;
/// Length of a handshake message header: type, 24-bit length.
pub const HANDSHAKE_HEADER_LEN: usize = 4;
/// Largest record accepted: 2^14 bytes of plaintext plus the 2048 bytes of expansion TLS 1.2 allows a
/// protected record (RFC 5246 §6.2.3; RFC 8446 §5.2 allows only 256). Anything longer is not TLS.
pub const MAX_RECORD_LEN: usize = (1 << 14) + 2048;
/// Largest handshake message accepted. The protocol allows 2^24 − 1 bytes, but a ClientHello is a few
/// KiB even with post-quantum key shares and a certificate chain rarely passes 16 KiB: 64 KiB bounds what
/// a consumer buffers per direction while leaving room for unusual chains.
pub const MAX_HANDSHAKE_LEN: usize = 1 << 16;
/// Certificates read from one chain; past it [`Certificate::chain_truncated`] is set. Real chains have 2–4.
pub const MAX_CHAIN_CERTS: usize = 16;

/// Record content types (RFC 8446 §5.1, RFC 6520).
pub mod content_type {
    /// change_cipher_spec.
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    /// alert.
    pub const ALERT: u8 = 21;
    /// handshake.
    pub const HANDSHAKE: u8 = 22;
    /// application_data.
    pub const APPLICATION_DATA: u8 = 23;
    /// heartbeat (RFC 6520).
    pub const HEARTBEAT: u8 = 24;
}

/// Handshake message types (RFC 8446 §4, RFC 5246 §7.4).
pub mod handshake_type {
    /// client_hello.
    pub const CLIENT_HELLO: u8 = 1;
    /// server_hello (also HelloRetryRequest in TLS 1.3).
    pub const SERVER_HELLO: u8 = 2;
    /// certificate.
    pub const CERTIFICATE: u8 = 11;
    /// server_key_exchange (TLS ≤ 1.2).
    pub const SERVER_KEY_EXCHANGE: u8 = 12;
    /// server_hello_done (TLS ≤ 1.2).
    pub const SERVER_HELLO_DONE: u8 = 14;
}

/// Extension types vxtap reads (IANA "TLS ExtensionType Values").
pub mod extension_type {
    /// server_name (RFC 6066).
    pub const SERVER_NAME: u16 = 0x0000;
    /// supported_groups, formerly elliptic_curves (RFC 8422, RFC 7919).
    pub const SUPPORTED_GROUPS: u16 = 0x000a;
    /// ec_point_formats (RFC 8422).
    pub const EC_POINT_FORMATS: u16 = 0x000b;
    /// signature_algorithms (RFC 8446 §4.2.3).
    pub const SIGNATURE_ALGORITHMS: u16 = 0x000d;
    /// application_layer_protocol_negotiation (RFC 7301).
    pub const ALPN: u16 = 0x0010;
    /// supported_versions (RFC 8446 §4.2.1).
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
}

/// Protocol version codes as they appear on the wire.
pub mod version {
    /// SSL 3.0.
    pub const SSL_3_0: u16 = 0x0300;
    /// TLS 1.0.
    pub const TLS_1_0: u16 = 0x0301;
    /// TLS 1.1.
    pub const TLS_1_1: u16 = 0x0302;
    /// TLS 1.2.
    pub const TLS_1_2: u16 = 0x0303;
    /// TLS 1.3.
    pub const TLS_1_3: u16 = 0x0304;
}

/// Why bytes could not be read as TLS. Each variant names the structure that failed, so that a counter
/// or a log line can say what was wrong without the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TlsError {
    /// The input ended inside a structure; with a whole handshake message this means its lengths lie.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A record's content type is not one TLS defines.
    #[error("unknown record content type {0}")]
    UnknownContentType(u8),
    /// A record's version is not 3.x (SSL 3.0 to TLS 1.3 all write a major version of 3).
    #[error("record version {0:#06x} is not TLS")]
    BadRecordVersion(u16),
    /// A record longer than [`MAX_RECORD_LEN`].
    #[error("record length {0} exceeds the TLS maximum")]
    RecordTooLong(usize),
    /// A handshake record with no bytes, which RFC 8446 §5.1 forbids.
    #[error("empty handshake record")]
    EmptyHandshakeRecord,
    /// A record of another type arrived in the middle of a handshake message (RFC 8446 §5.1 forbids
    /// interleaving).
    #[error("record of type {0} inside a handshake message")]
    Interleaved(u8),
    /// A handshake message longer than [`MAX_HANDSHAKE_LEN`].
    #[error("handshake message length {0} exceeds the limit")]
    HandshakeTooLong(usize),
    /// A message of another type was handed to a parser.
    #[error("handshake message type {0} where another was expected")]
    UnexpectedHandshakeType(u8),
    /// A length field disagrees with what it frames (odd cipher list, list overrunning its parent, ...).
    #[error("bad length of {0}")]
    BadLength(&'static str),
    /// Bytes left after the last field of a message.
    #[error("trailing bytes after {0}")]
    TrailingBytes(&'static str),
    /// An SSL 2.0-framed hello: recognised, not parsed.
    #[error("SSL 2.0 record framing")]
    Ssl2,
}

/// Result of the parsers.
pub type Result<T> = core::result::Result<T, TlsError>;

/// Whether `value` is one of the sixteen GREASE values of RFC 8701 §2 (0x0a0a, 0x1a1a, ..., 0xfafa),
/// which clients send to keep servers tolerant and which fingerprints must ignore.
#[inline]
pub const fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

/// A bounds-checked reader over borrowed bytes; every read returns `None` past the end.
#[derive(Debug, Clone, Copy)]
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(TlsError::Truncated(what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self, what: &'static str) -> Result<usize> {
        let b = self.take(3, what)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let n = self.u8(what)?;
        self.take(usize::from(n), what)
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    fn vec24(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let n = self.u24(what)?;
        self.take(n, what)
    }
}

// ---------------------------------------------------------------------------------------------------
// Records

/// A record header, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// The content type ([`content_type`]).
    pub content_type: u8,
    /// The legacy record version: 0x0301 or 0x0303 in practice, whatever the negotiated version.
    pub version: u16,
    /// Length of the fragment that follows the header.
    pub length: usize,
}

impl RecordHeader {
    /// Reads and checks the five-byte header at the start of `bytes`. A header that TLS would never
    /// write (unknown type, major version not 3, over-long) is an error, which is what lets a content
    /// probe and a stream consumer give up early on a flow that is not TLS.
    pub fn parse(bytes: &[u8]) -> Result<RecordHeader> {
        let mut r = Reader::new(bytes);
        let content_type = r.u8("record header")?;
        // A two-byte SSL 2.0 header has the high bit set, and its hello's type (1) follows.
        if content_type & 0x80 != 0 && bytes.get(2) == Some(&handshake_type::CLIENT_HELLO) {
            return Err(TlsError::Ssl2);
        }
        if !(content_type::CHANGE_CIPHER_SPEC..=content_type::HEARTBEAT).contains(&content_type) {
            return Err(TlsError::UnknownContentType(content_type));
        }
        let version = r.u16("record header")?;
        if version >> 8 != 3 {
            return Err(TlsError::BadRecordVersion(version));
        }
        let length = usize::from(r.u16("record header")?);
        if length > MAX_RECORD_LEN {
            return Err(TlsError::RecordTooLong(length));
        }
        if length == 0 && content_type == content_type::HANDSHAKE {
            return Err(TlsError::EmptyHandshakeRecord);
        }
        Ok(RecordHeader {
            content_type,
            version,
            length,
        })
    }
}

/// What [`probe`] makes of the first bytes of a stream direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A TLS handshake record starting a ClientHello or ServerHello.
    Tls,
    /// Not TLS: no need to look again.
    NotTls,
    /// Too few bytes to tell; ask again with at least this many.
    NeedMore(usize),
}

/// Does this prefix of a stream direction look like the start of a TLS handshake? For "TLS on any port,
/// found by content" (and after STARTTLS): it checks the record header and, when there, the handshake
/// type, length and hello version, which together leave little room for chance. Nine bytes decide.
pub fn probe(prefix: &[u8]) -> Probe {
    const DECIDING: usize = RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN + 2;
    let header = match RecordHeader::parse(prefix) {
        Ok(h) => h,
        Err(TlsError::Truncated(_)) => {
            // Judge the bytes there are: a wrong first byte or major version already says no.
            return match (prefix.first(), prefix.get(1)) {
                (Some(&content_type::HANDSHAKE), None | Some(&3)) | (None, _) => {
                    Probe::NeedMore(DECIDING)
                }
                _ => Probe::NotTls,
            };
        }
        Err(_) => return Probe::NotTls,
    };
    if header.content_type != content_type::HANDSHAKE {
        return Probe::NotTls;
    }
    let mut r = Reader::new(&prefix[RECORD_HEADER_LEN..]);
    let (Ok(ty), Ok(len), Ok(hello_version)) = (r.u8("probe"), r.u24("probe"), r.u16("probe"))
    else {
        return Probe::NeedMore(DECIDING);
    };
    let hello = matches!(
        ty,
        handshake_type::CLIENT_HELLO | handshake_type::SERVER_HELLO
    );
    // A hello has at least version, random, session id length, one cipher, compression: 38+ bytes.
    if hello && (38..=MAX_HANDSHAKE_LEN).contains(&len) && hello_version >> 8 == 3 {
        Probe::Tls
    } else {
        Probe::NotTls
    }
}

/// What [`find_handshake`] found in a stream direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// The message is whole. `body` is what follows its four-byte header (what the message parsers
    /// take); `end` is the stream offset where the record holding its last byte ends.
    Complete {
        /// The message body, borrowed from the stream when it sat in one record, else from the
        /// scratch buffer.
        body: &'a [u8],
        /// Stream offset just past the record that completed the message.
        end: usize,
    },
    /// Not all there yet: ask again once the stream holds at least `need` bytes (a lower bound: a
    /// message split over records may need more).
    NeedMore {
        /// Minimum stream length before asking again.
        need: usize,
    },
    /// The plaintext handshake ended (another record type came, e.g. ChangeCipherSpec, or encrypted
    /// data) without a message of that type: in TLS 1.3, Certificate is encrypted and never found.
    Absent,
    /// The stream is not TLS, or its handshake framing is broken; nothing more will come of it.
    Invalid(TlsError),
}

/// Availability of a handshake message, without its bytes: [`handshake_status`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The message is whole; `end` as in [`Found::Complete`].
    Complete {
        /// Length of the message body.
        len: usize,
        /// Stream offset just past the record that completed the message.
        end: usize,
    },
    /// As [`Found::NeedMore`].
    NeedMore {
        /// Minimum stream length before asking again.
        need: usize,
    },
    /// As [`Found::Absent`].
    Absent,
    /// As [`Found::Invalid`].
    Invalid(TlsError),
}

/// Says whether the first handshake message of type `msg_type` is whole in `stream`, the bytes of one
/// TCP direction from its first byte: whole (and where), how many bytes to wait for, absent, or not TLS.
/// Handshake messages may be split over several records and several may share one (RFC 8446 §5.1);
/// messages of other types before it are skipped. Nothing is copied.
pub fn handshake_status(stream: &[u8], msg_type: u8) -> Status {
    match walk(stream, msg_type, None) {
        Walk::Complete { len, end, .. } => Status::Complete { len, end },
        Walk::NeedMore(need) => Status::NeedMore { need },
        Walk::Absent => Status::Absent,
        Walk::Invalid(e) => Status::Invalid(e),
    }
}

/// As [`handshake_status`], and gives the message body: borrowed from `stream` when it sat in one
/// record (the usual case), else gathered into `scratch` (cleared first; reuse it to avoid allocating
/// again).
///
/// Several messages often share a record (a TLS 1.2 server sends ServerHello, Certificate,
/// ServerKeyExchange and ServerHelloDone in one), so to find a later message of another type ask again
/// over the same stream from its start; `end` is for going past this one, as for the second ClientHello
/// after a HelloRetryRequest (see [`skip_compat_change_cipher_spec`]).
pub fn find_handshake<'a>(stream: &'a [u8], msg_type: u8, scratch: &'a mut Vec<u8>) -> Found<'a> {
    scratch.clear();
    let walked = walk(stream, msg_type, Some(&mut *scratch));
    let scratch: &'a Vec<u8> = scratch;
    match walked {
        Walk::Complete {
            len,
            end,
            contiguous_at,
        } => {
            let body = match contiguous_at {
                Some(at) => stream.get(at..at + len),
                None => Some(scratch.as_slice()),
            };
            match body {
                Some(body) => Found::Complete { body, end },
                // The walk only reports in-bounds offsets; kept as an error rather than a panic.
                None => Found::Invalid(TlsError::Truncated("handshake message")),
            }
        }
        Walk::NeedMore(need) => Found::NeedMore { need },
        Walk::Absent => Found::Absent,
        Walk::Invalid(e) => Found::Invalid(e),
    }
}

enum Walk {
    Complete {
        len: usize,
        end: usize,
        contiguous_at: Option<usize>,
    },
    NeedMore(usize),
    Absent,
    Invalid(TlsError),
}

/// Where the walk is within the handshake byte stream (the concatenated fragments of handshake records).
enum Position {
    Header {
        bytes: [u8; HANDSHAKE_HEADER_LEN],
        have: usize,
    },
    Body {
        wanted: bool,
        len: usize,
        remaining: usize,
    },
}

fn walk(stream: &[u8], msg_type: u8, mut scratch: Option<&mut Vec<u8>>) -> Walk {
    let mut pos = 0;
    let mut at = Position::Header {
        bytes: [0; HANDSHAKE_HEADER_LEN],
        have: 0,
    };
    loop {
        let Some(rest) = stream.get(pos..) else {
            return Walk::Invalid(TlsError::Truncated("record"));
        };
        let header = match RecordHeader::parse(rest) {
            Ok(h) => h,
            Err(TlsError::Truncated(_)) => return Walk::NeedMore(pos + RECORD_HEADER_LEN),
            Err(e) => return Walk::Invalid(e),
        };
        let start = pos + RECORD_HEADER_LEN;
        let end = start + header.length;
        if header.content_type != content_type::HANDSHAKE {
            let between = matches!(at, Position::Header { have: 0, .. });
            return if between {
                Walk::Absent
            } else {
                Walk::Invalid(TlsError::Interleaved(header.content_type))
            };
        }
        let Some(mut fragment) = stream.get(start..end) else {
            return Walk::NeedMore(end);
        };
        let mut offset = start;
        while !fragment.is_empty() {
            match &mut at {
                Position::Header { bytes, have } => {
                    let n = (HANDSHAKE_HEADER_LEN - *have).min(fragment.len());
                    bytes[*have..*have + n].copy_from_slice(&fragment[..n]);
                    *have += n;
                    fragment = &fragment[n..];
                    offset += n;
                    if *have == HANDSHAKE_HEADER_LEN {
                        let len = usize::from(bytes[1]) << 16
                            | usize::from(bytes[2]) << 8
                            | usize::from(bytes[3]);
                        if len > MAX_HANDSHAKE_LEN {
                            return Walk::Invalid(TlsError::HandshakeTooLong(len));
                        }
                        let wanted = bytes[0] == msg_type;
                        if wanted && len == 0 {
                            return Walk::Complete {
                                len,
                                end,
                                contiguous_at: Some(offset),
                            };
                        }
                        at = if len == 0 {
                            Position::Header {
                                bytes: [0; HANDSHAKE_HEADER_LEN],
                                have: 0,
                            }
                        } else {
                            Position::Body {
                                wanted,
                                len,
                                remaining: len,
                            }
                        };
                    }
                }
                Position::Body {
                    wanted,
                    len,
                    remaining,
                } => {
                    let n = (*remaining).min(fragment.len());
                    let first = *remaining == *len;
                    if *wanted {
                        if first && n == *len {
                            return Walk::Complete {
                                len: *len,
                                end,
                                contiguous_at: Some(offset),
                            };
                        }
                        if let Some(buf) = scratch.as_deref_mut() {
                            buf.extend_from_slice(&fragment[..n]);
                        }
                    }
                    *remaining -= n;
                    fragment = &fragment[n..];
                    offset += n;
                    if *remaining == 0 {
                        if *wanted {
                            return Walk::Complete {
                                len: *len,
                                end,
                                contiguous_at: None,
                            };
                        }
                        at = Position::Header {
                            bytes: [0; HANDSHAKE_HEADER_LEN],
                            have: 0,
                        };
                    }
                }
            }
        }
        pos = end;
    }
}

/// Splits one whole handshake message (header included, no record framing) into its type and body,
/// for handshake bytes that come without records: QUIC carries them in CRYPTO frames (RFC 9001 §4).
/// The body must be exactly as long as the header says.
pub fn handshake_message(message: &[u8]) -> Result<(u8, &[u8])> {
    let mut r = Reader::new(message);
    let ty = r.u8("handshake header")?;
    let len = r.u24("handshake header")?;
    if len > MAX_HANDSHAKE_LEN {
        return Err(TlsError::HandshakeTooLong(len));
    }
    let body = r.take(len, "handshake message")?;
    if !r.is_empty() {
        return Err(TlsError::TrailingBytes("handshake message"));
    }
    Ok((ty, body))
}

/// Length of the change_cipher_spec records at the start of `stream` that TLS 1.3 sends for middlebox
/// compatibility (RFC 8446 §5, Appendix D.4): one-byte records holding 1, which a TLS 1.3 peer must
/// ignore. A client that got a HelloRetryRequest typically sends one just before its second
/// ClientHello, so a consumer looks for that hello at `end + skip_compat_change_cipher_spec(..)`, `end`
/// being where the first one's record ended. (In TLS ≤ 1.2 the same record starts encryption instead;
/// only call this where TLS 1.3 is under way.)
pub fn skip_compat_change_cipher_spec(stream: &[u8]) -> usize {
    const RECORD: usize = RECORD_HEADER_LEN + 1;
    let mut skipped = 0;
    while let Some([content_type::CHANGE_CIPHER_SPEC, 3, _, 0, 1, 1]) =
        stream.get(skipped..skipped + RECORD)
    {
        skipped += RECORD;
    }
    skipped
}

// ---------------------------------------------------------------------------------------------------
// Lists

/// An iterator over a list of big-endian `u16` values (cipher suites, versions, groups, signature
/// schemes), in wire order, GREASE included; filter with [`is_grease`]. An odd last byte is never
/// produced: lists are checked to be even when parsed.
#[derive(Debug, Clone)]
pub struct U16List<'a> {
    bytes: core::slice::ChunksExact<'a, u8>,
}

impl<'a> U16List<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        U16List {
            bytes: bytes.chunks_exact(2),
        }
    }

    fn empty() -> Self {
        U16List::new(&[])
    }
}

impl Iterator for U16List<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        self.bytes.next().map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.bytes.size_hint()
    }
}

impl ExactSizeIterator for U16List<'_> {}

/// One extension: its type and its undecoded payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The extension type ([`extension_type`]), GREASE included.
    pub ty: u16,
    /// The extension's payload.
    pub data: &'a [u8],
}

/// An iterator over an extension block, in wire order. The block was checked when its message was
/// parsed, so iteration never meets a bad length.
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    reader: Reader<'a>,
}

impl<'a> Iterator for Extensions<'a> {
    type Item = Extension<'a>;

    fn next(&mut self) -> Option<Extension<'a>> {
        let ty = self.reader.u16("extension").ok()?;
        let data = self.reader.vec16("extension").ok()?;
        Some(Extension { ty, data })
    }
}

/// An iterator over ALPN protocol names (RFC 7301 §3.1), each a non-empty byte string.
#[derive(Debug, Clone)]
pub struct AlpnList<'a> {
    reader: Reader<'a>,
}

impl<'a> Iterator for AlpnList<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.reader.vec8("alpn").ok()
    }
}

/// Checks an extension block (without its length prefix) and notes where the known extensions are.
fn check_extensions<'a>(
    block: &'a [u8],
    found: &mut ExtensionSlots<'a>,
    flags: &mut HelloFlags,
) -> Result<()> {
    let mut r = Reader::new(block);
    while !r.is_empty() {
        let ty = r.u16("extension header")?;
        let data = r
            .vec16("extension")
            .map_err(|_| TlsError::BadLength("extension"))?;
        let slot = match ty {
            extension_type::SERVER_NAME => &mut found.server_name,
            extension_type::ALPN => &mut found.alpn,
            extension_type::SUPPORTED_VERSIONS => &mut found.supported_versions,
            extension_type::SIGNATURE_ALGORITHMS => &mut found.signature_algorithms,
            extension_type::SUPPORTED_GROUPS => &mut found.supported_groups,
            extension_type::EC_POINT_FORMATS => &mut found.ec_point_formats,
            _ => continue,
        };
        match slot {
            Some(_) => flags.duplicate_extension = true,
            None => *slot = Some(data),
        }
    }
    Ok(())
}

#[derive(Debug, Default, Clone, Copy)]
struct ExtensionSlots<'a> {
    server_name: Option<&'a [u8]>,
    alpn: Option<&'a [u8]>,
    supported_versions: Option<&'a [u8]>,
    signature_algorithms: Option<&'a [u8]>,
    supported_groups: Option<&'a [u8]>,
    ec_point_formats: Option<&'a [u8]>,
}

/// Things a hello got wrong that did not stop it being read: the fields concerned are left out
/// (or, for a repeated extension, taken from its first occurrence).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HelloFlags {
    /// A known extension type appeared twice (RFC 8446 §4.2 forbids it).
    pub duplicate_extension: bool,
    /// A known extension's payload did not parse; that field is absent.
    pub malformed_extension: bool,
}

/// Reads a list framed by a two-byte length inside an extension payload, whole, with even length.
fn u16_list_16(data: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(data);
    let list = r.vec16("list").ok()?;
    (r.is_empty() && list.len() % 2 == 0).then_some(list)
}

/// The same with a one-byte length (supported_versions in a ClientHello).
fn u16_list_8(data: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(data);
    let list = r.vec8("list").ok()?;
    (r.is_empty() && list.len() % 2 == 0).then_some(list)
}

/// An ALPN protocol_name_list: two-byte length, then one-byte-length names, none empty.
fn alpn_list(data: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(data);
    let list = r.vec16("alpn").ok()?;
    if !r.is_empty() {
        return None;
    }
    let mut names = Reader::new(list);
    while !names.is_empty() {
        if names.vec8("alpn").ok()?.is_empty() {
            return None;
        }
    }
    Some(list)
}

/// The first host_name of a server_name extension (RFC 6066 §3).
fn first_host_name(data: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(data);
    let list = r.vec16("server_name").ok()?;
    if !r.is_empty() {
        return None;
    }
    let mut names = Reader::new(list);
    let mut host = None;
    while !names.is_empty() {
        let ty = names.u8("server_name").ok()?;
        let name = names.vec16("server_name").ok()?;
        if ty == 0 && host.is_none() {
            host = Some(name);
        }
    }
    host
}

// ---------------------------------------------------------------------------------------------------
// ClientHello

/// A ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2), read in place.
///
/// After [`ClientHello::parse`] no accessor can fail or panic.
#[derive(Debug, Clone, Copy)]
pub struct ClientHello<'a> {
    /// The legacy_version field: 0x0303 for TLS 1.2 and 1.3 alike (1.3 is offered in supported_versions).
    pub legacy_version: u16,
    /// The 32-byte random.
    pub random: &'a [u8],
    /// The legacy session id (0–32 bytes).
    pub session_id: &'a [u8],
    cipher_suites: &'a [u8],
    /// The compression methods offered (always `[0]` in practice).
    pub compression_methods: &'a [u8],
    extensions: &'a [u8],
    /// Whether the extension block was there at all (pre-TLS 1.2 hellos may end after compression).
    pub has_extensions: bool,
    server_name_ext: bool,
    server_name: Option<&'a [u8]>,
    alpn: Option<&'a [u8]>,
    supported_versions: Option<&'a [u8]>,
    signature_algorithms: Option<&'a [u8]>,
    supported_groups: Option<&'a [u8]>,
    ec_point_formats: Option<&'a [u8]>,
    /// What was wrong but tolerated.
    pub flags: HelloFlags,
}

impl<'a> ClientHello<'a> {
    /// Parses the body of a ClientHello handshake message (what follows its four-byte header, as
    /// [`find_handshake`] gives it). The outer structure must be exact; a malformed known extension
    /// only leaves its field out and sets [`HelloFlags::malformed_extension`].
    pub fn parse(body: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(body);
        let legacy_version = r.u16("client hello version")?;
        let random = r.take(32, "client hello random")?;
        let session_id = r.vec8("session id")?;
        if session_id.len() > 32 {
            return Err(TlsError::BadLength("session id"));
        }
        let cipher_suites = r.vec16("cipher suites")?;
        if cipher_suites.len() % 2 != 0 {
            return Err(TlsError::BadLength("cipher suites"));
        }
        let compression_methods = r.vec8("compression methods")?;
        let has_extensions = !r.is_empty();
        let extensions = if has_extensions {
            r.vec16("extensions")?
        } else {
            &[]
        };
        if !r.is_empty() {
            return Err(TlsError::TrailingBytes("client hello"));
        }
        let mut flags = HelloFlags::default();
        let mut slots = ExtensionSlots::default();
        check_extensions(extensions, &mut slots, &mut flags)?;
        let mut malformed = false;
        let mut decode = |raw: Option<&'a [u8]>, f: fn(&'a [u8]) -> Option<&'a [u8]>| {
            let raw = raw?;
            let decoded = f(raw);
            malformed |= decoded.is_none();
            decoded
        };
        let hello = ClientHello {
            legacy_version,
            random,
            session_id,
            cipher_suites,
            compression_methods,
            extensions,
            has_extensions,
            server_name_ext: slots.server_name.is_some(),
            server_name: decode(slots.server_name, first_host_name),
            alpn: decode(slots.alpn, alpn_list),
            supported_versions: decode(slots.supported_versions, u16_list_8),
            signature_algorithms: decode(slots.signature_algorithms, u16_list_16),
            supported_groups: decode(slots.supported_groups, u16_list_16),
            ec_point_formats: decode(slots.ec_point_formats, |d| {
                let mut r = Reader::new(d);
                r.vec8("ec point formats").ok().filter(|_| r.is_empty())
            }),
            flags,
        };
        Ok(ClientHello {
            flags: HelloFlags {
                malformed_extension: malformed,
                ..hello.flags
            },
            ..hello
        })
    }

    /// The cipher suites offered, in order, GREASE included.
    pub fn cipher_suites(&self) -> U16List<'a> {
        U16List::new(self.cipher_suites)
    }

    /// The extensions, in order, GREASE included.
    pub fn extensions(&self) -> Extensions<'a> {
        Extensions {
            reader: Reader::new(self.extensions),
        }
    }

    /// The extension types, in order, GREASE included.
    pub fn extension_types(&self) -> impl Iterator<Item = u16> + 'a {
        self.extensions().map(|e| e.ty)
    }

    /// Whether a server_name extension is present, even one whose payload did not parse: JA4's
    /// `d`/`i` depends on presence alone.
    pub fn has_server_name(&self) -> bool {
        self.server_name_ext
    }

    /// The first host_name in server_name, as sent. Unvalidated bytes: print them escaped.
    pub fn server_name(&self) -> Option<&'a [u8]> {
        self.server_name
    }

    /// The server name when it is printable ASCII, as RFC 6066 §3 requires of a host_name.
    pub fn server_name_str(&self) -> Option<&'a str> {
        let name = self.server_name?;
        if name.iter().all(|b| b.is_ascii_graphic()) {
            core::str::from_utf8(name).ok()
        } else {
            None
        }
    }

    /// The ALPN protocol names offered, in order; empty without the extension.
    pub fn alpn(&self) -> AlpnList<'a> {
        AlpnList {
            reader: Reader::new(self.alpn.unwrap_or(&[])),
        }
    }

    /// Whether an ALPN extension that parsed is present.
    pub fn has_alpn(&self) -> bool {
        self.alpn.is_some()
    }

    /// The supported_versions list (RFC 8446 §4.2.1), in order, GREASE included; `None` without the
    /// extension, in which case [`ClientHello::legacy_version`] is the version offered.
    pub fn supported_versions(&self) -> Option<U16List<'a>> {
        self.supported_versions.map(U16List::new)
    }

    /// The highest version offered: the largest non-GREASE supported_versions entry, else the legacy
    /// version.
    pub fn max_version(&self) -> u16 {
        self.supported_versions()
            .and_then(|v| v.filter(|&v| !is_grease(v)).max())
            .unwrap_or(self.legacy_version)
    }

    /// The signature_algorithms list, in order; empty without the extension.
    pub fn signature_algorithms(&self) -> U16List<'a> {
        self.signature_algorithms
            .map_or_else(U16List::empty, U16List::new)
    }

    /// The supported_groups list, in order; empty without the extension.
    pub fn supported_groups(&self) -> U16List<'a> {
        self.supported_groups
            .map_or_else(U16List::empty, U16List::new)
    }

    /// The ec_point_formats list; empty without the extension.
    pub fn ec_point_formats(&self) -> &'a [u8] {
        self.ec_point_formats.unwrap_or(&[])
    }
}

// ---------------------------------------------------------------------------------------------------
// ServerHello

/// The random a TLS 1.3 HelloRetryRequest carries in place of a ServerHello's (RFC 8446 §4.1.3):
/// SHA-256 of "HelloRetryRequest".
const HELLO_RETRY_REQUEST_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// A ServerHello (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3), read in place.
///
/// After [`ServerHello::parse`] no accessor can fail or panic.
#[derive(Debug, Clone, Copy)]
pub struct ServerHello<'a> {
    /// The legacy_version field (0x0303 when TLS 1.3 was chosen).
    pub legacy_version: u16,
    /// The 32-byte random.
    pub random: &'a [u8],
    /// The session id echoed or assigned.
    pub session_id: &'a [u8],
    /// The cipher suite chosen.
    pub cipher_suite: u16,
    /// The compression method chosen.
    pub compression_method: u8,
    extensions: &'a [u8],
    selected_version: Option<u16>,
    alpn: Option<&'a [u8]>,
    /// What was wrong but tolerated.
    pub flags: HelloFlags,
}

impl<'a> ServerHello<'a> {
    /// Parses the body of a ServerHello handshake message; as [`ClientHello::parse`] for errors and
    /// flags.
    pub fn parse(body: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(body);
        let legacy_version = r.u16("server hello version")?;
        let random = r.take(32, "server hello random")?;
        let session_id = r.vec8("session id")?;
        if session_id.len() > 32 {
            return Err(TlsError::BadLength("session id"));
        }
        let cipher_suite = r.u16("cipher suite")?;
        let compression_method = r.u8("compression method")?;
        let extensions = if r.is_empty() {
            &[]
        } else {
            r.vec16("extensions")?
        };
        if !r.is_empty() {
            return Err(TlsError::TrailingBytes("server hello"));
        }
        let mut flags = HelloFlags::default();
        let mut slots = ExtensionSlots::default();
        check_extensions(extensions, &mut slots, &mut flags)?;
        // A server's supported_versions holds the one version chosen, without a list length.
        let selected_version = slots.supported_versions.and_then(|d| match d {
            [a, b] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        });
        // A server's ALPN list holds exactly one name (RFC 7301 §3.1).
        let alpn = slots.alpn.and_then(alpn_list).filter(|list| {
            list.first()
                .is_some_and(|&n| list.len() == 1 + usize::from(n))
        });
        flags.malformed_extension = (slots.supported_versions.is_some()
            && selected_version.is_none())
            || (slots.alpn.is_some() && alpn.is_none());
        Ok(ServerHello {
            legacy_version,
            random,
            session_id,
            cipher_suite,
            compression_method,
            extensions,
            selected_version,
            alpn,
            flags,
        })
    }

    /// The version chosen: supported_versions when present (TLS 1.3), else the legacy version.
    pub fn version(&self) -> u16 {
        self.selected_version.unwrap_or(self.legacy_version)
    }

    /// The supported_versions value, when the extension is present.
    pub fn selected_version(&self) -> Option<u16> {
        self.selected_version
    }

    /// The protocol the server chose by ALPN.
    pub fn alpn(&self) -> Option<&'a [u8]> {
        self.alpn.and_then(|list| list.get(1..))
    }

    /// Whether this is a TLS 1.3 HelloRetryRequest rather than a real ServerHello: the handshake goes
    /// on with a second ClientHello and ServerHello.
    pub fn is_hello_retry_request(&self) -> bool {
        self.random == HELLO_RETRY_REQUEST_RANDOM
    }

    /// The extensions, in order.
    pub fn extensions(&self) -> Extensions<'a> {
        Extensions {
            reader: Reader::new(self.extensions),
        }
    }

    /// The extension types, in order.
    pub fn extension_types(&self) -> impl Iterator<Item = u16> + 'a {
        self.extensions().map(|e| e.ty)
    }
}

// ---------------------------------------------------------------------------------------------------
// Certificate

/// A TLS ≤ 1.2 Certificate message (RFC 5246 §7.4.2): the server's chain, leaf first, as DER byte
/// strings. (TLS 1.3's is encrypted, so never seen by a passive observer.)
///
/// After [`Certificate::parse`] iteration cannot fail or panic.
#[derive(Debug, Clone, Copy)]
pub struct Certificate<'a> {
    list: &'a [u8],
    count: usize,
    /// Whether the chain had more than [`MAX_CHAIN_CERTS`] certificates; [`Certificate::chain`] stops
    /// there.
    pub chain_truncated: bool,
}

impl<'a> Certificate<'a> {
    /// Parses the body of a Certificate handshake message. Every entry must lie within the list and the
    /// list must fill the message; entries are not decoded as X.509 here (see [`super::cert`]).
    pub fn parse(body: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(body);
        let list = r
            .vec24("certificate list")
            .map_err(|_| TlsError::BadLength("certificate list"))?;
        if !r.is_empty() {
            return Err(TlsError::TrailingBytes("certificate list"));
        }
        let mut entries = Reader::new(list);
        let mut count = 0;
        while !entries.is_empty() {
            entries
                .vec24("certificate")
                .map_err(|_| TlsError::BadLength("certificate"))?;
            count += 1;
        }
        Ok(Certificate {
            list,
            count: count.min(MAX_CHAIN_CERTS),
            chain_truncated: count > MAX_CHAIN_CERTS,
        })
    }

    /// The certificates, leaf first, as DER; at most [`MAX_CHAIN_CERTS`].
    pub fn chain(&self) -> CertificateChain<'a> {
        CertificateChain {
            reader: Reader::new(self.list),
            left: self.count,
        }
    }

    /// How many certificates [`Certificate::chain`] yields.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the chain is empty (a server with no certificate, or a client declining to send one).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// An iterator over a certificate chain's DER entries.
#[derive(Debug, Clone)]
pub struct CertificateChain<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for CertificateChain<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.left = self.left.checked_sub(1)?;
        self.reader.vec24("certificate").ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for CertificateChain<'_> {}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A ClientHello in one record, written out by hand: GREASE in the cipher suites, the extensions,
    /// supported_versions and supported_groups; SNI, ALPN, signature algorithms, point formats.
    #[rustfmt::skip]
    pub(crate) const CLIENT_HELLO_RECORD: [u8; 137] = [
        0x16, 0x03, 0x01, 0x00, 0x84,                   // record: handshake, TLS 1.0, 132 bytes
        0x01, 0x00, 0x00, 0x80,                         // ClientHello, 128 bytes
        0x03, 0x03,                                     // legacy_version TLS 1.2
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, // random
        0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
        0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
        0x00,                                           // no session id
        0x00, 0x08, 0x0a, 0x0a, 0x13, 0x01, 0x13, 0x02, 0xc0, 0x2b, // GREASE + 3 cipher suites
        0x01, 0x00,                                     // compression: null
        0x00, 0x4f,                                     // 79 bytes of extensions
        0x1a, 0x1a, 0x00, 0x00,                         // GREASE, empty
        0x00, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x00, 0x0b, // server_name: host_name, 11 bytes
        b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm',
        0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c,             // ALPN: h2, http/1.1
        0x02, b'h', b'2', 0x08, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
        0x00, 0x2b, 0x00, 0x07, 0x06, 0x2a, 0x2a, 0x03, 0x04, 0x03, 0x03, // supported_versions
        0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04, // signature_algorithms
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x3a, 0x3a, 0x00, 0x1d, // supported_groups
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,             // ec_point_formats: uncompressed
    ];

    /// The server's first flight in tls-alpn-h2.pcap (testdata/README.md).
    const SERVER_FLIGHT: &[u8] = include_bytes!("testdata/tls-alpn-h2-server-flight.bin");

    fn hello_body() -> &'static [u8] {
        &CLIENT_HELLO_RECORD[RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN..]
    }

    /// Wraps `message` (a whole handshake message) into records of the given fragment sizes; the last
    /// record takes what is left.
    fn records(message: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = message;
        for (i, &size) in sizes.iter().chain([usize::MAX].iter()).enumerate() {
            if rest.is_empty() && i > 0 {
                break;
            }
            let (fragment, tail) = rest.split_at(size.min(rest.len()));
            out.extend_from_slice(&[22, 3, 3]);
            out.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
            out.extend_from_slice(fragment);
            rest = tail;
        }
        out
    }

    #[test]
    fn grease_values() {
        let grease: Vec<u16> = (0..=u16::MAX).filter(|&v| is_grease(v)).collect();
        assert_eq!(grease.len(), 16);
        assert_eq!(grease[0], 0x0a0a);
        assert_eq!(grease[15], 0xfafa);
        assert!(!is_grease(0x0a1a) && !is_grease(0x1301));
    }

    #[test]
    fn client_hello_apart() {
        let header = RecordHeader::parse(&CLIENT_HELLO_RECORD).unwrap();
        assert_eq!(
            header,
            RecordHeader {
                content_type: content_type::HANDSHAKE,
                version: version::TLS_1_0,
                length: 132
            }
        );
        let hello = ClientHello::parse(hello_body()).unwrap();
        assert_eq!(hello.legacy_version, version::TLS_1_2);
        assert_eq!(hello.random.len(), 32);
        assert!(hello.session_id.is_empty());
        assert_eq!(
            hello.cipher_suites().collect::<Vec<_>>(),
            [0x0a0a, 0x1301, 0x1302, 0xc02b]
        );
        assert_eq!(hello.compression_methods, [0]);
        assert_eq!(
            hello.extension_types().collect::<Vec<_>>(),
            [0x1a1a, 0x0000, 0x0010, 0x002b, 0x000d, 0x000a, 0x000b]
        );
        assert_eq!(hello.server_name_str(), Some("example.com"));
        assert!(hello.has_server_name());
        assert_eq!(
            hello.alpn().collect::<Vec<_>>(),
            [b"h2".as_slice(), b"http/1.1".as_slice()]
        );
        assert_eq!(
            hello.supported_versions().unwrap().collect::<Vec<_>>(),
            [0x2a2a, 0x0304, 0x0303]
        );
        assert_eq!(hello.max_version(), version::TLS_1_3);
        assert_eq!(
            hello.signature_algorithms().collect::<Vec<_>>(),
            [0x0403, 0x0804]
        );
        assert_eq!(
            hello.supported_groups().collect::<Vec<_>>(),
            [0x3a3a, 0x001d]
        );
        assert_eq!(hello.ec_point_formats(), [0]);
        assert_eq!(hello.flags, HelloFlags::default());
    }

    #[test]
    fn hello_without_extensions_or_sni() {
        // An SSL 3.0-era hello: no extension block at all.
        let mut body = vec![0x03, 0x00];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x00, 0x2f, 1, 0]);
        let hello = ClientHello::parse(&body).unwrap();
        assert!(!hello.has_extensions && !hello.has_server_name());
        assert_eq!(hello.server_name(), None);
        assert_eq!(hello.alpn().count(), 0);
        assert_eq!(hello.max_version(), version::SSL_3_0);
        assert_eq!(hello.signature_algorithms().count(), 0);
        // With a byte too many, or an odd cipher list, it is refused.
        body.push(0);
        assert_eq!(
            ClientHello::parse(&body).unwrap_err(),
            TlsError::Truncated("extensions")
        );
        body.pop();
        body[35] = 3;
        assert!(ClientHello::parse(&body).is_err());
    }

    #[test]
    fn malformed_and_repeated_extensions_are_flags() {
        let mut body = hello_body().to_vec();
        // ALPN's inner list length (at body offset 2+32+1+10+2+2+4+20+4 = 77) one too short.
        assert_eq!(&body[77..79], [0x00, 0x0c]);
        body[78] = 0x0b;
        let hello = ClientHello::parse(&body).unwrap();
        assert!(hello.flags.malformed_extension);
        assert!(!hello.has_alpn());
        assert_eq!(hello.alpn().count(), 0);
        assert_eq!(hello.server_name_str(), Some("example.com"));

        // The GREASE extension renamed to a second server_name (empty, so also malformed).
        let mut body = hello_body().to_vec();
        body[49..51].copy_from_slice(&[0, 0]);
        let hello = ClientHello::parse(&body).unwrap();
        assert!(hello.flags.duplicate_extension);
        assert_eq!(hello.server_name_str(), None, "the first one wins");
        assert!(hello.has_server_name());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let body = hello_body();
        // Cut right after the compression methods, it is a valid hello without extensions.
        let no_extensions = 2 + 32 + 1 + 10 + 2;
        for n in 0..body.len() {
            assert_eq!(
                ClientHello::parse(&body[..n]).is_ok(),
                n == no_extensions,
                "cut at {n}"
            );
            let _ = ServerHello::parse(&body[..n]);
            let _ = Certificate::parse(&body[..n]);
        }
    }

    #[test]
    fn every_byte_changed_never_panics() {
        let mut record = CLIENT_HELLO_RECORD;
        let mut scratch = Vec::new();
        for i in 0..record.len() {
            for v in [0x00, 0x01, 0x0a, 0x7f, 0x80, 0xff] {
                let old = record[i];
                record[i] = v;
                let _ = probe(&record);
                if let Found::Complete { body, .. } =
                    find_handshake(&record, handshake_type::CLIENT_HELLO, &mut scratch)
                {
                    if let Ok(hello) = ClientHello::parse(body) {
                        let _ = super::super::ja4::ja4(&hello, super::super::ja4::Transport::Tcp);
                        let _ = hello.alpn().count() + hello.extensions().count();
                    }
                }
                record[i] = old;
            }
        }
    }

    #[test]
    fn probe_by_content() {
        assert_eq!(probe(&CLIENT_HELLO_RECORD), Probe::Tls);
        assert_eq!(probe(&CLIENT_HELLO_RECORD[..11]), Probe::Tls);
        assert_eq!(probe(&SERVER_FLIGHT[..11]), Probe::Tls);
        assert_eq!(probe(&CLIENT_HELLO_RECORD[..10]), Probe::NeedMore(11));
        assert_eq!(probe(&CLIENT_HELLO_RECORD[..2]), Probe::NeedMore(11));
        assert_eq!(probe(&[]), Probe::NeedMore(11));
        assert_eq!(probe(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Probe::NotTls);
        assert_eq!(probe(b"\x16\x01"), Probe::NotTls);
        assert_eq!(probe(b"SSH-2.0-OpenSSH_9.6\r\n"), Probe::NotTls);
        // A handshake record whose message is not a hello (an encrypted-looking first message).
        assert_eq!(probe(&[22, 3, 3, 0, 40, 11, 0, 0, 36, 3, 3]), Probe::NotTls);
        // Application data is TLS, but not the start of one.
        assert_eq!(probe(&[23, 3, 3, 0, 40, 1, 2, 3, 4, 5, 6]), Probe::NotTls);
    }

    #[test]
    fn whole_record_is_borrowed_and_prefixes_need_more() {
        let mut scratch = Vec::new();
        let stream = &CLIENT_HELLO_RECORD[..];
        match find_handshake(stream, handshake_type::CLIENT_HELLO, &mut scratch) {
            Found::Complete { body, end } => {
                assert_eq!(body, hello_body());
                assert_eq!(end, stream.len());
                assert!(
                    core::ptr::eq(body.as_ptr(), hello_body().as_ptr()),
                    "not copied"
                );
            }
            other => panic!("{other:?}"),
        }
        for n in 0..stream.len() {
            match handshake_status(&stream[..n], handshake_type::CLIENT_HELLO) {
                Status::NeedMore { need } => {
                    assert!(need > n && need <= stream.len(), "{n}: {need}")
                }
                other => panic!("prefix {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn message_split_over_three_records() {
        let message = &CLIENT_HELLO_RECORD[RECORD_HEADER_LEN..];
        // The four-byte header itself is cut after two bytes.
        let stream = records(message, &[2, 50]);
        assert_eq!(stream.len(), message.len() + 3 * RECORD_HEADER_LEN);
        let mut scratch = Vec::new();
        match find_handshake(&stream, handshake_type::CLIENT_HELLO, &mut scratch) {
            Found::Complete { body, end } => {
                assert_eq!(body, hello_body());
                assert_eq!(end, stream.len());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            handshake_status(&stream, handshake_type::CLIENT_HELLO),
            Status::Complete {
                len: hello_body().len(),
                end: stream.len()
            }
        );
        for n in 0..stream.len() {
            assert!(
                matches!(
                    handshake_status(&stream[..n], handshake_type::CLIENT_HELLO),
                    Status::NeedMore { need } if need > n
                ),
                "prefix {n}"
            );
        }
        let hello = ClientHello::parse(hello_body()).unwrap();
        assert_eq!(hello.server_name_str(), Some("example.com"));
    }

    #[test]
    fn server_flight_messages_found_in_turn() {
        let mut scratch = Vec::new();
        let Found::Complete { body, end } =
            find_handshake(SERVER_FLIGHT, handshake_type::SERVER_HELLO, &mut scratch)
        else {
            panic!("server hello");
        };
        assert_eq!(end, 105);
        let hello = ServerHello::parse(body).unwrap();
        assert_eq!(hello.version(), version::TLS_1_2);
        assert_eq!(hello.selected_version(), None);
        assert_eq!(hello.cipher_suite, 0xcca9);
        assert_eq!(hello.alpn(), Some(b"h2".as_slice()));
        assert_eq!(
            hello.extension_types().collect::<Vec<_>>(),
            [0x0000, 0xff01, 0x000b, 0x0010]
        );
        assert!(!hello.is_hello_retry_request());
        assert_eq!(hello.flags, HelloFlags::default());

        let Found::Complete { body, end } =
            find_handshake(SERVER_FLIGHT, handshake_type::CERTIFICATE, &mut scratch)
        else {
            panic!("certificate");
        };
        assert_eq!(end, 2682);
        let chain = Certificate::parse(body).unwrap();
        assert_eq!(chain.len(), 2);
        assert!(!chain.chain_truncated);
        let lengths: Vec<usize> = chain.chain().map(<[u8]>::len).collect();
        assert_eq!(lengths, [1555, 1004]);
        assert!(chain.chain().all(|der| der.first() == Some(&0x30)));

        assert!(matches!(
            handshake_status(SERVER_FLIGHT, handshake_type::SERVER_HELLO_DONE),
            Status::Complete { len: 0, end: 2810 }
        ));
        // The flight cut inside the certificate record: wait for the record's end.
        assert_eq!(
            handshake_status(&SERVER_FLIGHT[..1000], handshake_type::CERTIFICATE),
            Status::NeedMore { need: 2682 }
        );
    }

    #[test]
    fn message_without_records() {
        let message = &CLIENT_HELLO_RECORD[RECORD_HEADER_LEN..];
        assert_eq!(
            handshake_message(message),
            Ok((handshake_type::CLIENT_HELLO, hello_body()))
        );
        assert_eq!(
            handshake_message(&message[..40]),
            Err(TlsError::Truncated("handshake message"))
        );
        let mut long = message.to_vec();
        long.push(0);
        assert_eq!(
            handshake_message(&long),
            Err(TlsError::TrailingBytes("handshake message"))
        );
    }

    #[test]
    fn several_messages_in_one_record() {
        // ServerHelloDone (empty) and a ClientHello-typed message share one record; the first is skipped.
        let mut message = vec![handshake_type::SERVER_HELLO_DONE, 0, 0, 0];
        message.extend_from_slice(&CLIENT_HELLO_RECORD[RECORD_HEADER_LEN..]);
        let stream = records(&message, &[]);
        let mut scratch = Vec::new();
        let Found::Complete { body, .. } =
            find_handshake(&stream, handshake_type::CLIENT_HELLO, &mut scratch)
        else {
            panic!();
        };
        assert_eq!(body, hello_body());
    }

    #[test]
    fn absent_interleaved_and_not_tls() {
        // Handshake over, then a change_cipher_spec: no Certificate in the clear (TLS 1.3).
        let mut stream = CLIENT_HELLO_RECORD.to_vec();
        stream.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
        assert_eq!(
            handshake_status(&stream, handshake_type::CERTIFICATE),
            Status::Absent
        );
        assert_eq!(skip_compat_change_cipher_spec(&stream[137..]), 6);
        assert_eq!(skip_compat_change_cipher_spec(&stream), 0);
        // A change_cipher_spec after half a message header.
        let mut stream = records(
            &CLIENT_HELLO_RECORD[RECORD_HEADER_LEN..RECORD_HEADER_LEN + 2],
            &[],
        );
        stream.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
        assert_eq!(
            handshake_status(&stream, handshake_type::CLIENT_HELLO),
            Status::Invalid(TlsError::Interleaved(20))
        );
        assert_eq!(
            handshake_status(b"GET / HTTP/1.1\r\n", handshake_type::CLIENT_HELLO),
            Status::Invalid(TlsError::UnknownContentType(b'G'))
        );
        assert_eq!(
            handshake_status(&[22, 2, 0, 0, 4], handshake_type::CLIENT_HELLO),
            Status::Invalid(TlsError::BadRecordVersion(0x0200))
        );
        assert_eq!(
            handshake_status(&[22, 3, 3, 0xff, 0xff], handshake_type::CLIENT_HELLO),
            Status::Invalid(TlsError::RecordTooLong(0xffff))
        );
        assert_eq!(
            handshake_status(&[22, 3, 3, 0, 0], handshake_type::CLIENT_HELLO),
            Status::Invalid(TlsError::EmptyHandshakeRecord)
        );
        assert_eq!(
            handshake_status(&[22, 3, 1, 0, 4, 1, 1, 0, 1], handshake_type::CLIENT_HELLO),
            Status::Invalid(TlsError::HandshakeTooLong(0x010001))
        );
        // SSL 2.0 framing: 0x80 | length, then CLIENT-HELLO.
        assert_eq!(
            handshake_status(
                &[0x80, 0x2e, 0x01, 0x03, 0x01],
                handshake_type::CLIENT_HELLO
            ),
            Status::Invalid(TlsError::Ssl2)
        );
    }

    #[test]
    fn tls13_server_hello_and_hello_retry_request() {
        #[rustfmt::skip]
        let mut body = vec![
            0x03, 0x03,                                   // legacy_version
        ];
        body.extend_from_slice(&[0x55; 32]);
        body.extend_from_slice(&[
            0x00, // empty session id
            0x13, 0x01, // TLS_AES_128_GCM_SHA256
            0x00, // null compression
            0x00, 0x06, 0x00, 0x2b, 0x00, 0x02, 0x03, 0x04, // supported_versions: TLS 1.3
        ]);
        let hello = ServerHello::parse(&body).unwrap();
        assert_eq!(hello.version(), version::TLS_1_3);
        assert_eq!(hello.legacy_version, version::TLS_1_2);
        assert_eq!(hello.cipher_suite, 0x1301);
        assert_eq!(hello.alpn(), None);
        assert!(!hello.is_hello_retry_request());
        body[2..34].copy_from_slice(&HELLO_RETRY_REQUEST_RANDOM);
        assert!(ServerHello::parse(&body).unwrap().is_hello_retry_request());
        // A supported_versions of the client's shape is malformed in a ServerHello.
        let n = body.len();
        body[n - 2..].copy_from_slice(&[0x02, 0x03]);
        body.push(0x04);
        body[n - 7] = 0x07; // extensions length
        body[n - 3] = 0x03; // extension length
        let hello = ServerHello::parse(&body).unwrap();
        assert!(hello.flags.malformed_extension);
        assert_eq!(hello.version(), version::TLS_1_2);
    }

    #[test]
    fn certificate_chain_limits() {
        // An empty chain, and a chain of MAX_CHAIN_CERTS + 1 one-byte entries.
        let chain = Certificate::parse(&[0, 0, 0]).unwrap();
        assert!(chain.is_empty() && chain.chain().next().is_none());
        let n = MAX_CHAIN_CERTS + 1;
        let mut body = ((n * 4) as u32).to_be_bytes()[1..].to_vec();
        for i in 0..n {
            body.extend_from_slice(&[0, 0, 1, i as u8]);
        }
        let chain = Certificate::parse(&body).unwrap();
        assert!(chain.chain_truncated);
        assert_eq!(chain.chain().count(), MAX_CHAIN_CERTS);
        // A list overrunning the message, and an entry overrunning the list.
        assert_eq!(
            Certificate::parse(&[0, 0, 5, 0, 0, 2, 0x30]).unwrap_err(),
            TlsError::BadLength("certificate list")
        );
        assert_eq!(
            Certificate::parse(&[0, 0, 4, 0, 0, 2, 0x30]).unwrap_err(),
            TlsError::BadLength("certificate")
        );
    }
}
