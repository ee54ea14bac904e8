//! HTTP/1.1 ↔ HTTP/2 head translation, for HTTP/1.1 clients of HTTP/2
//! upstreams: the request head parsed in place becomes an `http::Request`
//! for the `h2` crate (pseudo-headers from the request line and `Host`,
//! hop-by-hop headers dropped, `te: trailers` kept, the proxy's own
//! headers added), and an HTTP/2 response head becomes HTTP/1.1 text that
//! the response path parses like any upstream's (its framing made
//! explicit: `Content-Length` when known, else chunked). Trailers become
//! the lines of a last chunk.
//!
//! Sans-IO: bytes and values in, values and bytes out.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use super::h1::head::Forwarded;
use super::h1::{tokens, HeaderKind, RequestHead};

/// Why a request head cannot be sent as HTTP/2 (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranslateError {
    /// The method, target or authority is not valid in an HTTP/2 request.
    Target,
    /// A header name or value is not valid in HTTP/2.
    Header,
}

impl TranslateError {
    /// A short reason, for the error page and logs.
    pub fn reason(self) -> &'static str {
        match self {
            TranslateError::Target => "request target not valid for HTTP/2",
            TranslateError::Header => "request header not valid for HTTP/2",
        }
    }
}

/// Whether the client's `TE` header accepts trailers (RFC 9110 §10.1.4).
pub fn accepts_trailers(buf: &[u8], head: &RequestHead) -> bool {
    head.headers.iter().any(|h| {
        h.kind == HeaderKind::HopByHop
            && h.name.get(buf).eq_ignore_ascii_case(b"te")
            && tokens(h.value.get(buf)).any(|t| {
                let name = t.split(|&b| b == b';').next().unwrap_or(t);
                name.trim_ascii().eq_ignore_ascii_case(b"trailers")
            })
    })
}

/// The HTTP/2 request for the HTTP/1.1 head in `buf`: `:method`, `:path`
/// (origin-form), `:scheme` http and `:authority` (the client's `Host` or
/// absolute-form authority, else `fwd.default_host`); the headers less
/// the hop-by-hop ones, `Host`, `Expect: 100-continue` (answered by the
/// proxy), those the filters drop and the client certificate headers;
/// then `X-Forwarded-For` (the client's hops and this one),
/// `X-Forwarded-Proto`, `Via`, `X-Request-Id`, the client certificate
/// header and the filters' additions. `te: trailers` passes when
/// the client accepts trailers.
pub fn request(
    buf: &[u8],
    head: &RequestHead,
    fwd: &Forwarded<'_>,
) -> Result<http::Request<()>, TranslateError> {
    let method =
        http::Method::from_bytes(head.method.get(buf)).map_err(|_| TranslateError::Target)?;
    let authority = if head.host.is_empty() {
        fwd.default_host
    } else {
        head.host.get(buf)
    };
    let pq = head.path_and_query.get(buf);
    let pq: &[u8] = if pq.is_empty() { b"/" } else { pq };
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(pq)
        .build()
        .map_err(|_| TranslateError::Target)?;

    let mut headers = HeaderMap::with_capacity(head.headers.len() + 6);
    let mut forwarded_for: Vec<u8> = Vec::new();
    for h in &head.headers {
        let name = h.name.get(buf);
        match h.kind {
            HeaderKind::Connection
            | HeaderKind::HopByHop
            | HeaderKind::TransferEncoding
            | HeaderKind::Host
            | HeaderKind::XForwardedProto => continue,
            HeaderKind::Expect if head.expect_continue => continue,
            HeaderKind::XForwardedFor => {
                forwarded_for.extend_from_slice(h.value.get(buf));
                forwarded_for.extend_from_slice(b", ");
                continue;
            }
            _ => {}
        }
        if head.connection_extra && named_by_connection(buf, head, name) {
            continue;
        }
        if !fwd.drop.is_empty() && fwd.drop.iter().any(|d| d.eq_ignore_ascii_case(name)) {
            continue;
        }
        if fwd.client_cert.strips(name) {
            continue;
        }
        append(&mut headers, name, h.value.get(buf))?;
    }
    if accepts_trailers(buf, head) {
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    forwarded_for.extend_from_slice(fwd.client_ip);
    append(&mut headers, b"x-forwarded-for", &forwarded_for)?;
    append(&mut headers, b"x-forwarded-proto", fwd.proto)?;
    let via: &[u8] = if head.minor_version == 0 {
        b"1.0 dao"
    } else {
        b"1.1 dao"
    };
    append(&mut headers, b"via", via)?;
    if !fwd.request_id.is_empty() {
        append(&mut headers, b"x-request-id", fwd.request_id)?;
    }
    for line in fwd
        .client_cert
        .line
        .split(|&b| b == b'\n')
        .chain(fwd.extra.split(|&b| b == b'\n'))
    {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        append(&mut headers, &line[..colon], line[colon + 1..].trim_ascii())?;
    }

    let mut req = http::Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

fn append(headers: &mut HeaderMap, name: &[u8], value: &[u8]) -> Result<(), TranslateError> {
    let name = HeaderName::from_bytes(name).map_err(|_| TranslateError::Header)?;
    let value = HeaderValue::from_bytes(value).map_err(|_| TranslateError::Header)?;
    headers.append(name, value);
    Ok(())
}

/// Whether `name` is listed in one of the request's `Connection` headers.
fn named_by_connection(buf: &[u8], head: &RequestHead, name: &[u8]) -> bool {
    head.headers.iter().any(|h| {
        h.kind == HeaderKind::Connection
            && tokens(h.value.get(buf)).any(|t| t.eq_ignore_ascii_case(name))
    })
}

/// How the body of a translated response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// As the upstream's `content-length` says, or no body by the rules
    /// of the request (HEAD) and status (1xx, 204, 304).
    AsIs,
    /// The stream ended with its head: `content-length: 0` added.
    Empty,
    /// Length unknown: `transfer-encoding: chunked` added.
    Chunked,
}

/// Writes the HTTP/1.1 form of an HTTP/2 response head to `out`: status
/// line, headers, and the framing header `framing_of` chose.
pub fn response_head(out: &mut Vec<u8>, parts: &http::response::Parts, framing: Framing) {
    let status = parts.status;
    let mut code = itoa::Buffer::new();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(code.format(status.as_u16()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::AsIs => {}
        Framing::Empty => out.extend_from_slice(b"content-length: 0\r\n"),
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// The framing of a translated response: `ended` when the upstream's
/// stream ended with the head.
pub fn framing_of(parts: &http::response::Parts, request_is_head: bool, ended: bool) -> Framing {
    let s = parts.status.as_u16();
    if request_is_head
        || (100..200).contains(&s)
        || s == 204
        || s == 304
        || parts.headers.contains_key(http::header::CONTENT_LENGTH)
    {
        Framing::AsIs
    } else if ended {
        Framing::Empty
    } else {
        Framing::Chunked
    }
}

/// The end of a chunked body: the last chunk, then the trailers as header
/// lines when the client accepts them.
pub fn last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    if let Some(t) = trailers {
        for (name, value) in t {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// A chunk's size line (hex) before `len` bytes of data.
pub fn chunk_head(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
