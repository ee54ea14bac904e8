//! Request head parsing in place (httparse) and the checks a proxy owes its
//! upstreams: framing, Host, and the request-smuggling shapes.

use std::mem::MaybeUninit;

use super::{framing, BodyKind, FramingError, HeaderKind, HeaderSpan, Span, MAX_HEADERS};

/// A parsed request head. Offsets point into the buffer it came from.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// Bytes the head occupies, final blank line included.
    pub head_len: usize,
    /// The method token.
    pub method: Span,
    /// The request target as sent (origin-form or absolute-form).
    pub target: Span,
    /// The path part of the target (origin-form), without the query.
    pub path: Span,
    /// The target from its path on, query included: what goes upstream.
    pub path_and_query: Span,
    /// The authority used for routing: absolute-form's, else `Host`.
    pub host: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Every header in order.
    pub headers: Vec<HeaderSpan>,
    /// How the body is delimited.
    pub body: BodyKind,
    /// Whether the client asked to keep the connection open.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// `Connection` named headers other than close/keep-alive, which must
    /// be dropped too (RFC 9110 §7.6.1).
    pub connection_extra: bool,
    /// The method is HEAD (the response has no body).
    pub is_head: bool,
    /// The method is idempotent (RFC 9110 §9.2.2): safe to retry.
    pub idempotent: bool,
    /// A WebSocket handshake (RFC 6455 §4.1): an HTTP/1.1 GET without a
    /// body, `Connection` listing `upgrade` and `Upgrade` listing
    /// `websocket`. Only such a request keeps its upgrade headers going
    /// upstream; any other `Upgrade` (h2c, …) is dropped as hop-by-hop.
    pub upgrade: bool,
}

/// Why a request head was rejected; each maps to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestParseError {
    /// Malformed syntax (400).
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// Too many headers (431).
    #[error("too many header fields")]
    TooManyHeaders,
    /// A framing shape used for smuggling (400, connection closed).
    #[error("ambiguous message framing: {0:?}")]
    Framing(FramingError),
    /// A transfer coding we do not implement (501).
    #[error("transfer coding not implemented")]
    UnsupportedCoding,
    /// A method a reverse proxy does not serve (CONNECT) (501).
    #[error("method not implemented")]
    UnsupportedMethod,
}

impl RequestParseError {
    /// The status code this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RequestParseError::TooManyHeaders => 431,
            RequestParseError::UnsupportedCoding | RequestParseError::UnsupportedMethod => 501,
            _ => 400,
        }
    }
}

/// Parses a request head from the front of `buf`.
///
/// `Ok(None)`: incomplete, read more. `head` is reused between requests so
/// its header vector does not reallocate.
pub fn parse_request(buf: &[u8], head: &mut RequestHead) -> Result<Option<()>, RequestParseError> {
    let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestParseError::TooManyHeaders),
        Err(e) => return Err(RequestParseError::Malformed(error_text(e))),
    };
    let method = req.method.unwrap_or_default().as_bytes();
    let target = req.path.unwrap_or_default().as_bytes();
    head.head_len = head_len;
    head.method = Span::of(buf, method);
    head.target = Span::of(buf, target);
    head.minor_version = req.version.unwrap_or(1);
    head.headers.clear();
    for h in req.headers.iter() {
        head.headers.push(HeaderSpan {
            name: Span::of(buf, h.name.as_bytes()),
            value: Span::of(buf, h.value),
            kind: HeaderKind::of(h.name.as_bytes()),
        });
    }
    finish(buf, head)
}

fn finish(buf: &[u8], head: &mut RequestHead) -> Result<Option<()>, RequestParseError> {
    let method = head.method.get(buf);
    if method == b"CONNECT" {
        return Err(RequestParseError::UnsupportedMethod);
    }
    head.is_head = method == b"HEAD";
    head.idempotent = matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    );

    // Request target: origin-form, absolute-form (authority wins over Host,
    // RFC 9112 §3.2.2), or asterisk-form for OPTIONS.
    let target = head.target.get(buf);
    let mut authority: Option<Span> = None;
    if target.first() == Some(&b'/') {
        head.path_and_query = head.target;
    } else if let Some(rest) = strip_scheme(target) {
        let slash = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        if slash == 0 {
            return Err(RequestParseError::Malformed("empty authority"));
        }
        authority = Some(Span::of(buf, &rest[..slash]));
        head.path_and_query = Span::of(buf, &rest[slash..]);
    } else if target == b"*" && method == b"OPTIONS" {
        head.path_and_query = head.target;
    } else {
        return Err(RequestParseError::Malformed("invalid request target"));
    }
    let pq = head.path_and_query.get(buf);
    let path_len = pq
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(pq.len());
    head.path = Span {
        start: head.path_and_query.start,
        end: head.path_and_query.start + path_len as u32,
    };

    let mut host: Option<Span> = None;
    let (mut saw_close, mut saw_keep_alive) = (false, false);
    let (mut conn_upgrade, mut websocket) = (false, false);
    head.expect_continue = false;
    head.connection_extra = false;
    for h in &head.headers {
        let value = h.value.get(buf);
        match h.kind {
            HeaderKind::Host => {
                if host.is_some() {
                    return Err(RequestParseError::Malformed("duplicate Host"));
                }
                host = Some(h.value);
            }
            HeaderKind::Connection => {
                for t in super::tokens(value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        saw_close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        saw_keep_alive = true;
                    } else {
                        conn_upgrade |= t.eq_ignore_ascii_case(b"upgrade");
                        head.connection_extra = true;
                    }
                }
            }
            HeaderKind::HopByHop if h.name.get(buf).eq_ignore_ascii_case(b"upgrade") => {
                websocket |= super::tokens(value).any(|t| t.eq_ignore_ascii_case(b"websocket"));
            }
            HeaderKind::Expect if value.eq_ignore_ascii_case(b"100-continue") => {
                head.expect_continue = true;
            }
            _ => {}
        }
    }
    // Host is mandatory in HTTP/1.1 (RFC 9112 §3.2).
    if head.minor_version == 1 && host.is_none() {
        return Err(RequestParseError::Malformed("missing Host"));
    }
    head.host = authority.or(host).unwrap_or_default();
    // HTTP/1.0 keeps the connection only when asked to.
    head.keep_alive = !saw_close && (head.minor_version == 1 || saw_keep_alive);

    head.body = match framing(buf, &head.headers) {
        Ok(kind) => kind.unwrap_or(BodyKind::Empty),
        Err(FramingError::UnsupportedCoding) => return Err(RequestParseError::UnsupportedCoding),
        Err(e) => return Err(RequestParseError::Framing(e)),
    };
    if head.body == BodyKind::Chunked && head.minor_version == 0 {
        // Chunked is not defined for HTTP/1.0 (RFC 9112 §6.1).
        return Err(RequestParseError::Framing(FramingError::ChunkedNotLast));
    }
    head.upgrade = conn_upgrade
        && websocket
        && method == b"GET"
        && head.minor_version == 1
        && head.body == BodyKind::Empty;
    Ok(Some(()))
}

fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"http://"[..], &b"https://"[..]] {
        if target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&target[scheme.len()..]);
        }
    }
    None
}

fn error_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::Version => "invalid version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

#[cfg(test)]
mod tests;
