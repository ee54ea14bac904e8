//! HTTP/1.1: request and response head parsing in place, chunked framing,
//! and the head writer that forwards what was parsed without reallocating.
//!
//! Everything here takes bytes and returns decisions; nothing touches a
//! socket, so it is unit-tested and fuzzed directly.

pub mod body;
pub mod chunked;
pub mod head;
pub mod request;
pub mod response;

pub use body::BodyState;
pub use chunked::{ChunkError, ChunkedDecoder};
pub use request::{parse_request, RequestHead, RequestParseError};
pub use response::{parse_response, ResponseHead, ResponseParseError};

/// A byte range into the buffer a head was parsed from.
///
/// Heads are parsed in place; instead of borrowing the buffer (which must
/// move into io_uring reads), they record where each piece lies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// Offset one past the last byte.
    pub end: u32,
}

impl Span {
    /// The span of `part`, which must be a sub-slice of `buf`.
    #[inline]
    pub(crate) fn of(buf: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    /// The bytes this span covers in `buf`.
    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    /// Whether the span is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// What a header means to the proxy; everything else is forwarded as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// `Host`.
    Host,
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Connection`.
    Connection,
    /// A hop-by-hop header always dropped (RFC 9110 §7.6.1): `Keep-Alive`,
    /// `Proxy-Connection`, `TE`, `Upgrade`.
    HopByHop,
    /// `Expect`.
    Expect,
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `X-Forwarded-Proto`.
    XForwardedProto,
    /// Any other header.
    Other,
}

impl HeaderKind {
    /// Classifies a header name (case-insensitive).
    #[inline]
    pub fn of(name: &[u8]) -> HeaderKind {
        // Dispatch on length first: most names are rejected by one compare.
        let eq = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        match name.len() {
            2 if eq("te") => HeaderKind::HopByHop,
            4 if eq("host") => HeaderKind::Host,
            6 if eq("expect") => HeaderKind::Expect,
            7 if eq("upgrade") => HeaderKind::HopByHop,
            10 if eq("connection") => HeaderKind::Connection,
            10 if eq("keep-alive") => HeaderKind::HopByHop,
            14 if eq("content-length") => HeaderKind::ContentLength,
            15 if eq("x-forwarded-for") => HeaderKind::XForwardedFor,
            16 if eq("proxy-connection") => HeaderKind::HopByHop,
            17 if eq("transfer-encoding") => HeaderKind::TransferEncoding,
            17 if eq("x-forwarded-proto") => HeaderKind::XForwardedProto,
            _ => HeaderKind::Other,
        }
    }
}

/// One parsed header: where its name and value lie, and what it means.
#[derive(Debug, Clone, Copy)]
pub struct HeaderSpan {
    /// The name's bytes.
    pub name: Span,
    /// The value's bytes (surrounding whitespace already trimmed).
    pub value: Span,
    /// Its meaning to the proxy.
    pub kind: HeaderKind,
}

/// How a message body is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyKind {
    /// No body.
    #[default]
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// Maximum number of headers in one head; more is answered 431.
pub const MAX_HEADERS: usize = 128;

/// Parses a `Content-Length` value: digits only, no sign, no overflow.
pub(crate) fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// Iterates the comma-separated tokens of a header value, trimmed.
pub(crate) fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

/// Trims spaces and tabs from both ends.
pub(crate) fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Folds the framing headers of a message (request or response) into its
/// body kind, rejecting the shapes used for request smuggling.
pub(crate) fn framing(
    buf: &[u8],
    headers: &[HeaderSpan],
) -> Result<Option<BodyKind>, FramingError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut saw_te = false;
    for h in headers {
        match h.kind {
            HeaderKind::ContentLength => {
                // A list such as "5, 5" is as suspicious as two headers.
                let n = parse_content_length(h.value.get(buf)).ok_or(FramingError::BadLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(FramingError::BadLength);
                }
                length = Some(n);
            }
            HeaderKind::TransferEncoding => {
                // Codings accumulate over repeated headers; chunked must be
                // last and appear once.
                for t in tokens(h.value.get(buf)) {
                    if chunked {
                        return Err(FramingError::ChunkedNotLast);
                    }
                    if t.eq_ignore_ascii_case(b"chunked") {
                        chunked = true;
                    } else {
                        saw_te = true;
                    }
                }
                if !chunked {
                    // A later header may still end with chunked; checked below.
                    saw_te = true;
                }
            }
            _ => {}
        }
    }
    let te_present = chunked || saw_te;
    if te_present && length.is_some() {
        return Err(FramingError::LengthAndChunked);
    }
    if te_present {
        if !chunked {
            return Err(FramingError::ChunkedNotLast);
        }
        if saw_te {
            return Err(FramingError::UnsupportedCoding);
        }
        return Ok(Some(BodyKind::Chunked));
    }
    Ok(length.map(|n| {
        if n == 0 {
            BodyKind::Empty
        } else {
            BodyKind::Length(n)
        }
    }))
}

/// Why a message's framing headers were rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// Invalid or conflicting `Content-Length`.
    BadLength,
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked,
    /// `Transfer-Encoding` whose last coding is not `chunked`.
    ChunkedNotLast,
    /// A transfer coding other than `chunked` (gzip, …).
    UnsupportedCoding,
}
