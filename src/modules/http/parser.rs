//! HTTP/1.0 and 1.1 message heads and body framing (RFC 9112) for a stream consumer: pure functions
//! over borrowed bytes, plus [`BodyTracker`], a small state machine the caller carries between
//! segments. Nothing here allocates or copies.
//!
//! Request and status lines and header fields are httparse's (zero-copy, and the parser hyper uses),
//! configured to accept what real servers send and RFC 9112 asks recipients to tolerate (several
//! spaces between request-line and status-line parts, obsolete line folding and spaces before the
//! colon in responses, invalid header lines skipped). The heads keep only the fields the EVE `http`
//! record wants, as slices of the input.
//!
//! Limits: a head is at most [`MAX_HEAD_LEN`] bytes; past [`MAX_HEADERS`] fields the head is still
//! read, from a plain scan of its lines, and flagged `too_many_headers`; chunk-size and trailer
//! lines are at most [`MAX_CHUNK_LINE`] bytes each.

use thiserror::Error;

/// Header fields read through httparse; a head with more is read by a plain line scan and flagged.
pub const MAX_HEADERS: usize = 64;
/// Longest head (request or status line and fields) accepted.
pub const MAX_HEAD_LEN: usize = 64 * 1024;
/// Longest chunk-size line (with extensions) or trailer line accepted.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Why bytes are not an HTTP/1.x head or body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HttpError {
    /// Not a request line: bad method token or missing target.
    #[error("invalid request line")]
    RequestLine,
    /// Not a status line.
    #[error("invalid status line")]
    StatusLine,
    /// A version other than HTTP/1.0 or HTTP/1.1.
    #[error("not HTTP/1.0 or HTTP/1.1")]
    Version,
    /// A field name with characters a token may not have.
    #[error("invalid header field name")]
    HeaderName,
    /// A field value with characters a value may not have.
    #[error("invalid header field value")]
    HeaderValue,
    /// A line ending other than CRLF or LF.
    #[error("invalid line ending")]
    NewLine,
    /// No end of head within [`MAX_HEAD_LEN`] bytes.
    #[error("head longer than {MAX_HEAD_LEN} bytes")]
    HeadTooLong,
    /// Content-Length that is not a number, or several that disagree (RFC 9112 §6.3 ¶5).
    #[error("invalid Content-Length")]
    ContentLength,
    /// A chunk-size that is not hexadecimal.
    #[error("invalid chunk size")]
    ChunkSize,
    /// A chunk-size over 2^64 - 1.
    #[error("chunk size overflows 64 bits")]
    ChunkSizeOverflow,
    /// Chunk data not followed by a line ending.
    #[error("chunk data not followed by CRLF")]
    ChunkDelimiter,
    /// A chunk-size or trailer line longer than [`MAX_CHUNK_LINE`].
    #[error("chunk or trailer line longer than {MAX_CHUNK_LINE} bytes")]
    ChunkLineTooLong,
}

impl HttpError {
    fn from_httparse(e: httparse::Error, response: bool) -> HttpError {
        match e {
            httparse::Error::HeaderName => HttpError::HeaderName,
            httparse::Error::HeaderValue => HttpError::HeaderValue,
            httparse::Error::NewLine => HttpError::NewLine,
            httparse::Error::Version => HttpError::Version,
            httparse::Error::Status => HttpError::StatusLine,
            _ if response => HttpError::StatusLine,
            // Token, and TooManyHeaders, which callers handle before getting here.
            _ => HttpError::RequestLine,
        }
    }
}

/// How the body of a message is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: the next message starts right after the head.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the connection closes (responses without a length, HTTP/1.0 style).
    UntilClose,
    /// The connection stops speaking HTTP (101 Switching Protocols, a 2xx answer to CONNECT):
    /// inspection of it as HTTP ends here.
    Tunnel,
}

/// The fields of a head that framing and the EVE record use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    /// `Host`.
    pub host: Option<&'a [u8]>,
    /// `User-Agent`.
    pub user_agent: Option<&'a [u8]>,
    /// `Referer`.
    pub referer: Option<&'a [u8]>,
    /// `X-Forwarded-For`.
    pub x_forwarded_for: Option<&'a [u8]>,
    /// `Content-Type`.
    pub content_type: Option<&'a [u8]>,
    /// `Content-Length`, when valid (equal repeats are one value).
    pub content_length: Option<u64>,
    /// A `Content-Length` that was present but invalid or contradictory.
    pub bad_content_length: bool,
    /// `Transfer-Encoding` present.
    pub transfer_encoding: bool,
    /// `Transfer-Encoding` whose final coding is `chunked`.
    pub chunked: bool,
    /// `Connection: close`.
    pub connection_close: bool,
    /// `Connection: keep-alive`.
    pub connection_keep_alive: bool,
    /// `Connection: upgrade`.
    pub connection_upgrade: bool,
    /// `Upgrade`.
    pub upgrade: Option<&'a [u8]>,
    /// Header fields in the head.
    pub header_count: usize,
    /// More than [`MAX_HEADERS`] fields: read by a plain scan rather than httparse.
    pub too_many_headers: bool,
}

impl<'a> Fields<'a> {
    fn add(&mut self, name: &[u8], value: &'a [u8]) {
        self.header_count += 1;
        let value = trim(value);
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("host") {
            self.host.get_or_insert(value);
        } else if is("user-agent") {
            self.user_agent.get_or_insert(value);
        } else if is("referer") {
            self.referer.get_or_insert(value);
        } else if is("x-forwarded-for") {
            self.x_forwarded_for.get_or_insert(value);
        } else if is("content-type") {
            self.content_type.get_or_insert(value);
        } else if is("content-length") {
            // A list of equal values is one value (RFC 9110 §8.6).
            for part in value.split(|&b| b == b',').map(trim) {
                match parse_decimal(part) {
                    Some(n) if self.content_length.is_none_or(|c| c == n) => {
                        self.content_length = Some(n)
                    }
                    _ => self.bad_content_length = true,
                }
            }
        } else if is("transfer-encoding") {
            self.transfer_encoding = true;
            // The final coding decides (RFC 9112 §6.3 ¶4); a later field continues the list.
            let last = value.rsplit(|&b| b == b',').next().map(trim).unwrap_or(b"");
            self.chunked = last.eq_ignore_ascii_case(b"chunked");
        } else if is("connection") {
            for opt in value.split(|&b| b == b',').map(trim) {
                if opt.eq_ignore_ascii_case(b"close") {
                    self.connection_close = true;
                } else if opt.eq_ignore_ascii_case(b"keep-alive") {
                    self.connection_keep_alive = true;
                } else if opt.eq_ignore_ascii_case(b"upgrade") {
                    self.connection_upgrade = true;
                }
            }
        } else if is("upgrade") {
            self.upgrade.get_or_insert(value);
        }
    }

    fn from_headers(headers: &[httparse::Header<'a>]) -> Fields<'a> {
        let mut f = Fields::default();
        for h in headers {
            f.add(h.name.as_bytes(), h.value);
        }
        f
    }

    /// The fields of a head whose field lines start at `start` and which ends (blank line
    /// included) at `end`: the plain scan used past [`MAX_HEADERS`].
    fn scan(buf: &'a [u8], start: usize, end: usize) -> Fields<'a> {
        let mut f = Fields {
            too_many_headers: true,
            ..Fields::default()
        };
        for line in buf[start..end].split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                f.add(trim(&line[..colon]), &line[colon + 1..]);
            }
        }
        f
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let is_ws = |c: &u8| *c == b' ' || *c == b'\t';
    let start = b.iter().position(|c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !is_ws(c)).map_or(start, |e| e + 1);
    &b[start..end]
}

fn parse_decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Where the head ends (after its blank line), or `None` if it has not ended yet.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(nl) = buf[i..].iter().position(|&b| b == b'\n') {
        let at = i + nl + 1;
        match buf.get(at) {
            Some(b'\n') => return Some(at + 1),
            Some(b'\r') if buf.get(at + 1) == Some(&b'\n') => return Some(at + 2),
            _ => i = at,
        }
    }
    None
}

/// The end of the first line (after its LF).
fn line_end(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n').map(|p| p + 1)
}

fn config() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .ignore_invalid_headers_in_requests(true)
        .ignore_invalid_headers_in_responses(true);
    c
}

/// A request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The request target as sent (origin form `/path?q`, absolute form, `host:port` for CONNECT).
    pub uri: &'a str,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The fields framing and records use.
    pub fields: Fields<'a>,
    /// Bytes of the head, blank line included: the body starts here.
    pub head_len: usize,
}

impl RequestHead<'_> {
    /// How the request's body is delimited. A request without Transfer-Encoding or Content-Length
    /// has none (RFC 9112 §6.3 ¶6); one with a Transfer-Encoding not ending in chunked cannot be
    /// framed (¶4) and is read until close.
    pub fn body(&self) -> BodyKind {
        let f = &self.fields;
        if f.transfer_encoding {
            if f.chunked {
                BodyKind::Chunked
            } else {
                BodyKind::UntilClose
            }
        } else {
            match f.content_length {
                Some(0) | None => BodyKind::None,
                Some(n) => BodyKind::Length(n),
            }
        }
    }
}

/// A response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The status code.
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: &'a str,
    /// The fields framing and records use.
    pub fields: Fields<'a>,
    /// Bytes of the head, blank line included: the body starts here.
    pub head_len: usize,
}

impl ResponseHead<'_> {
    /// How the response's body is delimited, given the method of the request it answers (`b""`
    /// when unknown). HEAD responses, 1xx, 204 and 304 have none (RFC 9112 §6.3 ¶1); 101 and a 2xx
    /// answer to CONNECT end HTTP on the connection (¶2); otherwise chunked, Content-Length, or until
    /// close.
    ///
    /// A 1xx other than 101 is interim: the real response follows it.
    pub fn body(&self, request_method: &[u8]) -> BodyKind {
        let f = &self.fields;
        if self.status == 101 || (request_method == b"CONNECT" && self.is_success()) {
            BodyKind::Tunnel
        } else if request_method == b"HEAD"
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            BodyKind::None
        } else if f.transfer_encoding {
            if f.chunked {
                BodyKind::Chunked
            } else {
                BodyKind::UntilClose
            }
        } else {
            match f.content_length {
                Some(0) => BodyKind::None,
                Some(n) => BodyKind::Length(n),
                None => BodyKind::UntilClose,
            }
        }
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// An interim (1xx other than 101) response: another response to the same request follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Reads a request head from the start of `buf`. `Ok(None)` means the head is not complete yet.
///
/// Fails on a malformed request line or field, or when no end of head comes within
/// [`MAX_HEAD_LEN`] bytes. httparse refuses a request target that is not UTF-8
/// ([`HttpError::RequestLine`]); such requests are rare outside attacks, which a caller may count. More than [`MAX_HEADERS`] fields is not an error: the head is read with
/// `fields.too_many_headers` set.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead<'_>>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match config().parse_request(&mut req, buf) {
        Ok(httparse::Status::Complete(head_len)) => Ok(Some(RequestHead {
            method: req.method.unwrap_or(""),
            uri: req.path.unwrap_or(""),
            version: req.version.unwrap_or(1),
            fields: Fields::from_headers(req.headers),
            head_len,
        })),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_LEN => Err(HttpError::HeadTooLong),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            let Some(end) = head_end(buf) else {
                return if buf.len() >= MAX_HEAD_LEN {
                    Err(HttpError::HeadTooLong)
                } else {
                    Ok(None)
                };
            };
            if end > MAX_HEAD_LEN {
                return Err(HttpError::HeadTooLong);
            }
            // The request line alone, through httparse: it parses it fully before reporting the
            // head partial.
            let first = line_end(buf).unwrap_or(end);
            let mut none: [httparse::Header<'_>; 0] = [];
            let mut line = httparse::Request::new(&mut none);
            config()
                .parse_request(&mut line, &buf[..first])
                .map_err(|e| HttpError::from_httparse(e, false))?;
            Ok(Some(RequestHead {
                method: line.method.ok_or(HttpError::RequestLine)?,
                uri: line.path.ok_or(HttpError::RequestLine)?,
                version: line.version.ok_or(HttpError::Version)?,
                fields: Fields::scan(buf, first, end),
                head_len: end,
            }))
        }
        Err(e) => Err(HttpError::from_httparse(e, false)),
    }
}

/// Reads a response head from the start of `buf`. `Ok(None)` means the head is not complete yet.
/// Limits and errors as for [`parse_request`].
pub fn parse_response(buf: &[u8]) -> Result<Option<ResponseHead<'_>>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match config().parse_response(&mut resp, buf) {
        Ok(httparse::Status::Complete(head_len)) => Ok(Some(ResponseHead {
            version: resp.version.unwrap_or(1),
            status: resp.code.unwrap_or(0),
            reason: resp.reason.unwrap_or(""),
            fields: Fields::from_headers(resp.headers),
            head_len,
        })),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_LEN => Err(HttpError::HeadTooLong),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            let Some(end) = head_end(buf) else {
                return if buf.len() >= MAX_HEAD_LEN {
                    Err(HttpError::HeadTooLong)
                } else {
                    Ok(None)
                };
            };
            if end > MAX_HEAD_LEN {
                return Err(HttpError::HeadTooLong);
            }
            let first = line_end(buf).unwrap_or(end);
            let mut none: [httparse::Header<'_>; 0] = [];
            let mut line = httparse::Response::new(&mut none);
            config()
                .parse_response(&mut line, &buf[..first])
                .map_err(|e| HttpError::from_httparse(e, true))?;
            Ok(Some(ResponseHead {
                version: line.version.ok_or(HttpError::Version)?,
                status: line.code.ok_or(HttpError::StatusLine)?,
                reason: line.reason.unwrap_or(""),
                fields: Fields::scan(buf, first, end),
                head_len: end,
            }))
        }
        Err(e) => Err(HttpError::from_httparse(e, true)),
    }
}

/// What [`BodyTracker::feed`] found in one piece of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyProgress {
    /// Bytes of the input that belong to this message's body, chunk framing included; when `done`,
    /// the next message starts at this offset.
    pub consumed: usize,
    /// Of those, bytes of body content (without chunk sizes, extensions, delimiters, trailers).
    pub content: usize,
    /// The body has ended.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex digits of a chunk-size.
    Size { size: u64, digits: u8, line: usize },
    /// After the digits: extensions or whitespace up to the line end.
    SizeRest { size: u64, line: usize },
    /// Chunk data left to pass.
    Data { left: u64 },
    /// Expecting the CRLF (or LF) after chunk data.
    DataEnd { seen_cr: bool },
    /// At the start of a trailer line (or of the final blank line).
    TrailerStart,
    /// After a CR at the start of a trailer line: the blank line's LF should follow.
    TrailerCr,
    /// Inside a trailer field line.
    TrailerLine { line: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length { left: u64 },
    Chunked(Chunk),
    UntilClose,
    Tunnel,
    Done,
}

/// Follows a message body through the stream without storing it: given each new piece of input in
/// order, it says how much belongs to the body and where the next message starts. The chunked
/// decoder accepts any split point, chunk extensions and trailer fields, and bare LF line endings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTracker {
    state: State,
    content: u64,
}

impl BodyTracker {
    /// A tracker for a body delimited as `kind`.
    pub fn new(kind: BodyKind) -> BodyTracker {
        let state = match kind {
            BodyKind::None | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length { left: n },
            BodyKind::Chunked => State::Chunked(Chunk::Size {
                size: 0,
                digits: 0,
                line: 0,
            }),
            BodyKind::UntilClose => State::UntilClose,
            BodyKind::Tunnel => State::Tunnel,
        };
        BodyTracker { state, content: 0 }
    }

    /// The body has ended (it never does for until-close bodies and tunnels: the connection's end
    /// ends them).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The connection no longer carries HTTP.
    pub fn is_tunnel(&self) -> bool {
        self.state == State::Tunnel
    }

    /// Body content bytes seen so far.
    pub fn content_len(&self) -> u64 {
        self.content
    }

    /// Passes over `n` bytes the stream lost (a [`crate::flow::Chunk::Gap`]) where the framing
    /// still says where the body ends: inside a Content-Length body or a chunk's data, or in a body
    /// read until close. Elsewhere (a chunk-size line, a trailer) the framing is lost with the
    /// bytes: `false`, and the tracker is left as it was for the caller to resynchronise.
    ///
    /// The skipped bytes count as content: they were sent (the peer acknowledged them), only the
    /// mirror lost them.
    pub fn skip(&mut self, n: u64) -> bool {
        match &mut self.state {
            State::Length { left } if n <= *left => {
                *left -= n;
                if *left == 0 {
                    self.state = State::Done;
                }
            }
            State::Chunked(chunk) => match chunk {
                Chunk::Data { left } if n <= *left => {
                    *left -= n;
                    if *left == 0 {
                        *chunk = Chunk::DataEnd { seen_cr: false };
                    }
                }
                _ => return false,
            },
            State::UntilClose | State::Tunnel => {}
            _ => return false,
        }
        self.content += n;
        true
    }

    /// Takes the next piece of the stream. See [`BodyTracker::feed_with`].
    pub fn feed(&mut self, input: &[u8]) -> Result<BodyProgress, HttpError> {
        self.feed_with(input, |_| {})
    }

    /// Takes the next piece of the stream, handing each run of body content to `on_content` (for a
    /// module that looks at the first bytes, say), and reports how much of `input` the body took.
    ///
    /// After `done`, or an error, the tracker takes nothing more. An error leaves the message
    /// unframed: the caller stops or resynchronizes (see [`find_message_start`]).
    pub fn feed_with(
        &mut self,
        input: &[u8],
        mut on_content: impl FnMut(&[u8]),
    ) -> Result<BodyProgress, HttpError> {
        let start_content = self.content;
        let mut i = 0;
        let result = loop {
            match &mut self.state {
                State::Done => break Ok(()),
                State::UntilClose | State::Tunnel => {
                    if i < input.len() {
                        on_content(&input[i..]);
                        self.content += (input.len() - i) as u64;
                        i = input.len();
                    }
                    break Ok(());
                }
                State::Length { left } => {
                    let take = (input.len() - i).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    if take > 0 {
                        on_content(&input[i..i + take]);
                    }
                    i += take;
                    *left -= take as u64;
                    self.content += take as u64;
                    if *left == 0 {
                        self.state = State::Done;
                    }
                    break Ok(());
                }
                State::Chunked(chunk) => {
                    if let Chunk::Data { left } = chunk {
                        let take =
                            (input.len() - i).min(usize::try_from(*left).unwrap_or(usize::MAX));
                        if take > 0 {
                            on_content(&input[i..i + take]);
                        }
                        i += take;
                        *left -= take as u64;
                        self.content += take as u64;
                        if *left == 0 {
                            *chunk = Chunk::DataEnd { seen_cr: false };
                        }
                        if i == input.len() {
                            break Ok(());
                        }
                        continue;
                    }
                    let Some(&b) = input.get(i) else {
                        break Ok(());
                    };
                    i += 1;
                    match step(*chunk, b) {
                        Ok(Some(next)) => *chunk = next,
                        Ok(None) => self.state = State::Done,
                        Err(e) => break Err(e),
                    }
                }
            }
        };
        match result {
            Ok(()) => Ok(BodyProgress {
                consumed: i,
                content: (self.content - start_content) as usize,
                done: self.state == State::Done,
            }),
            Err(e) => {
                self.state = State::Done;
                Err(e)
            }
        }
    }
}

/// One byte of chunk framing; `Ok(None)` when the body ends with it.
fn step(state: Chunk, b: u8) -> Result<Option<Chunk>, HttpError> {
    let too_long = |line: usize| {
        if line >= MAX_CHUNK_LINE {
            Err(HttpError::ChunkLineTooLong)
        } else {
            Ok(line + 1)
        }
    };
    let after_size = |size: u64| {
        if size == 0 {
            Chunk::TrailerStart
        } else {
            Chunk::Data { left: size }
        }
    };
    Ok(Some(match state {
        Chunk::Size { size, digits, line } => {
            let line = too_long(line)?;
            match (b as char).to_digit(16) {
                Some(d) => {
                    if digits >= 16 {
                        return Err(HttpError::ChunkSizeOverflow);
                    }
                    Chunk::Size {
                        size: size << 4 | u64::from(d),
                        digits: digits + 1,
                        line,
                    }
                }
                None if digits == 0 => return Err(HttpError::ChunkSize),
                None if b == b'\n' => after_size(size),
                None if matches!(b, b';' | b' ' | b'\t' | b'\r') => Chunk::SizeRest { size, line },
                None => return Err(HttpError::ChunkSize),
            }
        }
        Chunk::SizeRest { size, line } => {
            if b == b'\n' {
                after_size(size)
            } else {
                Chunk::SizeRest {
                    size,
                    line: too_long(line)?,
                }
            }
        }
        Chunk::Data { left } => Chunk::Data { left },
        Chunk::DataEnd { seen_cr } => match b {
            b'\r' if !seen_cr => Chunk::DataEnd { seen_cr: true },
            b'\n' => Chunk::Size {
                size: 0,
                digits: 0,
                line: 0,
            },
            _ => return Err(HttpError::ChunkDelimiter),
        },
        Chunk::TrailerStart => match b {
            b'\n' => return Ok(None),
            b'\r' => Chunk::TrailerCr,
            _ => Chunk::TrailerLine { line: 1 },
        },
        Chunk::TrailerCr => match b {
            b'\n' => return Ok(None),
            _ => Chunk::TrailerLine { line: 2 },
        },
        Chunk::TrailerLine { line } => {
            if b == b'\n' {
                Chunk::TrailerStart
            } else {
                Chunk::TrailerLine {
                    line: too_long(line)?,
                }
            }
        }
    }))
}

/// What the start of a buffer looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The start of a request: a known method, a space, then a request line httparse accepts so
    /// far.
    Request,
    /// The start of a response: `HTTP/1.x` and a status line httparse accepts so far.
    Response,
    /// Too few bytes to tell, but what is there could be either.
    NeedMore,
    /// Not the start of an HTTP/1.x message.
    No,
}

/// Methods a probe accepts: RFC 9110's, PATCH, and the WebDAV ones seen in the wild. An unknown
/// token would make any text line look like a request.
const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
];

/// Does `buf` start like an HTTP/1.x request or response? Cheap: a prefix comparison and, for a
/// candidate, httparse over at most the first line.
pub fn probe(buf: &[u8]) -> Probe {
    if buf.is_empty() {
        return Probe::NeedMore;
    }
    let line = &buf[..line_end(buf).unwrap_or(buf.len())];
    let status = b"HTTP/1.";
    if buf.len() < status.len() && status.starts_with(buf) {
        return Probe::NeedMore;
    }
    if buf.starts_with(status) {
        let mut none: [httparse::Header<'_>; 0] = [];
        let mut r = httparse::Response::new(&mut none);
        return match config().parse_response(&mut r, line) {
            Ok(_) if r.code.is_some() => Probe::Response,
            Ok(_) if !line.ends_with(b"\n") => Probe::NeedMore,
            _ => Probe::No,
        };
    }
    for m in METHODS {
        if buf.len() <= m.len() {
            if m.starts_with(buf) {
                return Probe::NeedMore;
            }
            continue;
        }
        if buf.starts_with(m) && buf[m.len()] == b' ' {
            let mut none: [httparse::Header<'_>; 0] = [];
            let mut r = httparse::Request::new(&mut none);
            return match config().parse_request(&mut r, line) {
                Ok(_) if r.version.is_some() => Probe::Request,
                Ok(_) if !line.ends_with(b"\n") => Probe::NeedMore,
                _ => Probe::No,
            };
        }
    }
    Probe::No
}

/// After a gap, where in `buf` the next message plausibly starts: the first line start (offset 0,
/// or just after a LF) where [`probe`] says `want` (`Probe::Request` or `Probe::Response`). A
/// candidate cut off at the end of `buf` is returned too, since its start cannot be ruled out; the
/// caller keeps the bytes from there and probes again with more.
pub fn find_message_start(buf: &[u8], want: Probe) -> Option<usize> {
    let mut at = 0;
    loop {
        match probe(&buf[at..]) {
            p if p == want => return Some(at),
            Probe::NeedMore if at < buf.len() => return Some(at),
            _ => {}
        }
        at += buf[at..].iter().position(|&b| b == b'\n')? + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] =
        b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\n\
Referer: http://example.org/\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\nAccept: */*\r\n\r\n";

    const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhelloHTTP/1.1 304 Not Modified\r\n\r\n";

    #[test]
    fn http_body_skips_lost_bytes_where_framing_allows() {
        let mut t = BodyTracker::new(BodyKind::Length(10));
        assert_eq!(t.feed(b"abc").unwrap().consumed, 3);
        assert!(t.skip(4));
        assert!(!t.skip(4), "more than the body has left");
        let p = t.feed(b"hijNEXT").unwrap();
        assert_eq!((p.consumed, p.done, t.content_len()), (3, true, 10));

        let mut c = BodyTracker::new(BodyKind::Chunked);
        c.feed(b"8\r\nab").unwrap();
        assert!(c.skip(6));
        let p = c.feed(b"\r\n0\r\n\r\nX").unwrap();
        assert_eq!((p.consumed, p.done, c.content_len()), (7, true, 8));
        let mut c = BodyTracker::new(BodyKind::Chunked);
        c.feed(b"8").unwrap();
        assert!(!c.skip(2), "a hole in a chunk-size line loses the framing");
    }

    #[test]
    fn http_request_head_fields() {
        let h = parse_request(REQ).unwrap().unwrap();
        assert_eq!((h.method, h.uri, h.version), ("GET", "/index.html?q=1", 1));
        assert_eq!(h.fields.host, Some(&b"example.com"[..]));
        assert_eq!(h.fields.user_agent, Some(&b"curl/8.5.0"[..]));
        assert_eq!(h.fields.referer, Some(&b"http://example.org/"[..]));
        assert_eq!(h.fields.x_forwarded_for, Some(&b"10.0.0.1, 10.0.0.2"[..]));
        assert_eq!(h.fields.header_count, 5);
        assert!(!h.fields.too_many_headers);
        assert_eq!(h.head_len, REQ.len());
        assert_eq!(h.body(), BodyKind::None);
        // Every strict prefix is incomplete, never an error.
        for n in 0..REQ.len() {
            assert_eq!(parse_request(&REQ[..n]), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn http_response_head_and_next_message() {
        let h = parse_response(RESP).unwrap().unwrap();
        assert_eq!((h.version, h.status, h.reason), (1, 200, "OK"));
        assert_eq!(
            h.fields.content_type,
            Some(&b"text/html; charset=utf-8"[..])
        );
        assert!(h.fields.connection_keep_alive);
        assert_eq!(h.body(b"GET"), BodyKind::Length(5));
        assert_eq!(h.body(b"HEAD"), BodyKind::None);
        let mut t = BodyTracker::new(h.body(b"GET"));
        let p = t.feed(&RESP[h.head_len..]).unwrap();
        assert_eq!((p.consumed, p.content, p.done), (5, 5, true));
        let next = &RESP[h.head_len + p.consumed..];
        let h2 = parse_response(next).unwrap().unwrap();
        assert_eq!(h2.status, 304);
        assert_eq!(h2.body(b"GET"), BodyKind::None);
    }

    #[test]
    fn http_body_kinds() {
        let resp = |s: &'static str| parse_response(s.as_bytes()).unwrap().unwrap();
        assert_eq!(
            resp("HTTP/1.1 204 No Content\r\n\r\n").body(b"GET"),
            BodyKind::None
        );
        assert_eq!(
            resp("HTTP/1.1 100 Continue\r\n\r\n").body(b"POST"),
            BodyKind::None
        );
        assert!(resp("HTTP/1.1 100 Continue\r\n\r\n").is_interim());
        assert_eq!(
            resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                .body(b"GET"),
            BodyKind::Tunnel
        );
        assert_eq!(
            resp("HTTP/1.1 200 Connection established\r\n\r\n").body(b"CONNECT"),
            BodyKind::Tunnel
        );
        assert_eq!(
            resp("HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\n").body(b"CONNECT"),
            BodyKind::Length(3)
        );
        assert_eq!(
            resp("HTTP/1.0 200 OK\r\n\r\n").body(b"GET"),
            BodyKind::UntilClose
        );
        assert_eq!(
            resp(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n"
            )
            .body(b"GET"),
            BodyKind::Chunked
        );
        assert_eq!(
            resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").body(b"GET"),
            BodyKind::UntilClose
        );
        let req = |s: &'static str| parse_request(s.as_bytes()).unwrap().unwrap();
        let post = req(
            "POST /x HTTP/1.1\r\nContent-Length: 10, 10\r\nContent-Type: application/json\r\n\r\n",
        );
        assert_eq!(post.body(), BodyKind::Length(10));
        assert_eq!(post.fields.content_type, Some(&b"application/json"[..]));
        let bad = req("POST /x HTTP/1.1\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n");
        assert!(bad.fields.bad_content_length);
        let up = req(
            "GET /chat HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert!(up.fields.connection_upgrade);
        assert_eq!(up.fields.upgrade, Some(&b"websocket"[..]));
        let connect = req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        assert_eq!(
            (connect.method, connect.uri),
            ("CONNECT", "example.com:443")
        );
        assert_eq!(connect.body(), BodyKind::None);
        let chunked = req("POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(chunked.body(), BodyKind::Chunked);
    }

    #[test]
    fn http_too_many_headers_is_a_flag() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            req.extend_from_slice(format!("X-Filler-{i}: {i}\r\n").as_bytes());
        }
        req.extend_from_slice(b"Host: late.example\r\nContent-Length: 2\r\n\r\nhi");
        let h = parse_request(&req).unwrap().unwrap();
        assert!(h.fields.too_many_headers);
        assert_eq!(h.fields.header_count, 102);
        assert_eq!(h.fields.host, Some(&b"late.example"[..]));
        assert_eq!((h.method, h.uri, h.version), ("GET", "/", 1));
        assert_eq!(h.head_len, req.len() - 2);
        assert_eq!(h.body(), BodyKind::Length(2));
        // Not yet complete: asks for more.
        assert_eq!(parse_request(&req[..req.len() - 10]), Ok(None));
        let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..70 {
            resp.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        resp.extend_from_slice(b"\r\n");
        let r = parse_response(&resp).unwrap().unwrap();
        assert!(r.fields.too_many_headers);
        assert_eq!((r.status, r.reason), (200, "OK"));
    }

    #[test]
    fn http_errors_are_specific() {
        assert_eq!(
            parse_request(b"GET / HTTP/2.0\r\n\r\n"),
            Err(HttpError::Version)
        );
        assert_eq!(
            parse_request(b"G(T / HTTP/1.1\r\n\r\n"),
            Err(HttpError::RequestLine)
        );
        assert_eq!(
            parse_request(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Err(HttpError::RequestLine)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 2x0 OK\r\n\r\n"),
            Err(HttpError::StatusLine)
        );
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD_LEN + 10, b'a');
        assert_eq!(parse_request(&long), Err(HttpError::HeadTooLong));
    }

    const CHUNKED: &[u8] = b"4;name=value\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\nX-Trailer: 1\r\n\r\nGET /next HTTP/1.1\r\n";

    #[test]
    fn http_chunked_at_every_split() {
        let body_end = CHUNKED.len() - b"GET /next HTTP/1.1\r\n".len();
        let whole = {
            let mut t = BodyTracker::new(BodyKind::Chunked);
            let mut content = Vec::new();
            let p = t
                .feed_with(CHUNKED, |d| content.extend_from_slice(d))
                .unwrap();
            assert_eq!(content, b"Wikipedia in\r\n\r\nchunks.");
            p
        };
        assert_eq!(
            whole,
            BodyProgress {
                consumed: body_end,
                content: 23,
                done: true
            }
        );
        for a in 0..CHUNKED.len() {
            for b in a..CHUNKED.len() {
                let mut t = BodyTracker::new(BodyKind::Chunked);
                let mut consumed = 0;
                let mut content = 0;
                for piece in [&CHUNKED[..a], &CHUNKED[a..b], &CHUNKED[b..]] {
                    if t.is_done() {
                        break;
                    }
                    let p = t.feed(piece).unwrap();
                    consumed += p.consumed;
                    content += p.content;
                    if !p.done {
                        assert_eq!(p.consumed, piece.len());
                    }
                }
                assert!(t.is_done(), "split {a} {b}");
                assert_eq!((consumed, content), (body_end, 23), "split {a} {b}");
                assert_eq!(t.content_len(), 23);
            }
        }
    }

    #[test]
    fn http_chunked_errors() {
        let feed = |s: &[u8]| BodyTracker::new(BodyKind::Chunked).feed(s);
        assert_eq!(feed(b"zz\r\n"), Err(HttpError::ChunkSize));
        assert_eq!(feed(b"\r\n"), Err(HttpError::ChunkSize));
        assert_eq!(feed(b"3\r\nabcX"), Err(HttpError::ChunkDelimiter));
        assert_eq!(
            feed(b"11111111111111111\r\n"),
            Err(HttpError::ChunkSizeOverflow)
        );
        let mut ext = b"1;".to_vec();
        ext.resize(MAX_CHUNK_LINE + 5, b'x');
        assert_eq!(feed(&ext), Err(HttpError::ChunkLineTooLong));
        // Bare LF line endings are accepted.
        let p = feed(b"2\nok\n0\n\n").unwrap();
        assert_eq!((p.consumed, p.content, p.done), (8, 2, true));
        // After an error, nothing more is taken.
        let mut t = BodyTracker::new(BodyKind::Chunked);
        assert!(t.feed(b"q").is_err());
        assert_eq!(t.feed(b"1\r\na\r\n").unwrap().consumed, 0);
    }

    #[test]
    fn http_length_and_close_bodies() {
        let mut t = BodyTracker::new(BodyKind::Length(10));
        assert_eq!(
            t.feed(b"12345").unwrap(),
            BodyProgress {
                consumed: 5,
                content: 5,
                done: false
            }
        );
        assert_eq!(
            t.feed(b"67890HTTP").unwrap(),
            BodyProgress {
                consumed: 5,
                content: 5,
                done: true
            }
        );
        let mut c = BodyTracker::new(BodyKind::UntilClose);
        assert_eq!(c.feed(b"abc").unwrap().consumed, 3);
        assert!(!c.is_done());
        let t = BodyTracker::new(BodyKind::Tunnel);
        assert!(t.is_tunnel());
        assert!(BodyTracker::new(BodyKind::None).is_done());
    }

    #[test]
    fn http_probe_and_resync() {
        assert_eq!(probe(REQ), Probe::Request);
        assert_eq!(probe(RESP), Probe::Response);
        assert_eq!(probe(b"GE"), Probe::NeedMore);
        assert_eq!(probe(b"HTTP/"), Probe::NeedMore);
        assert_eq!(probe(b"GET /partial"), Probe::NeedMore);
        assert_eq!(probe(b"\x16\x03\x01\x02\x00"), Probe::No);
        assert_eq!(probe(b"SSH-2.0-OpenSSH_9.6\r\n"), Probe::No);
        assert_eq!(probe(b"GETX / HTTP/1.1\r\n"), Probe::No);
        assert_eq!(probe(b"GET / FTP/1.0\r\n"), Probe::No);

        let gap = b"ata of a lost body\r\nmore\nPOST /api HTTP/1.1\r\nHost: a\r\n\r\n";
        let at = find_message_start(gap, Probe::Request).unwrap();
        assert!(gap[at..].starts_with(b"POST /api"));
        assert_eq!(find_message_start(gap, Probe::Response), None);
        let tail = b"junk\r\nHTTP/1.1 20";
        assert_eq!(find_message_start(tail, Probe::Response), Some(6));
        assert_eq!(find_message_start(b"junk\r\nHT", Probe::Request), Some(6));
        assert_eq!(
            find_message_start(b"no http here\r\n", Probe::Request),
            None
        );
    }
}
