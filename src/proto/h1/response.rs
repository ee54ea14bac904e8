//! Response head parsing in place, and the body framing rules of
//! RFC 9112 §6.3 as they apply to a response to a given request.

use std::mem::MaybeUninit;

use super::{framing, BodyKind, HeaderKind, HeaderSpan, Span, MAX_HEADERS};

/// A parsed response head. Offsets point into the buffer it came from.
#[derive(Debug, Clone, Default)]
pub struct ResponseHead {
    /// Bytes the head occupies, final blank line included.
    pub head_len: usize,
    /// The status code.
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Every header in order.
    pub headers: Vec<HeaderSpan>,
    /// How the body is delimited.
    pub body: BodyKind,
    /// Whether the upstream lets us reuse the connection afterwards.
    pub keep_alive: bool,
    /// `Connection` named other headers, which must be dropped too.
    pub connection_extra: bool,
}

/// Why an upstream's response head was rejected (answered 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseParseError {
    /// Malformed syntax.
    #[error("malformed response head")]
    Malformed,
    /// Ambiguous or invalid framing.
    #[error("ambiguous response framing")]
    Framing,
}

/// Parses a response head from the front of `buf`; `Ok(None)` when
/// incomplete. `request_is_head` decides whether a body follows.
pub fn parse_response(
    buf: &[u8],
    request_is_head: bool,
    head: &mut ResponseHead,
) -> Result<Option<()>, ResponseParseError> {
    let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut raw)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ResponseParseError::Malformed),
    };
    head.head_len = head_len;
    head.status = res.code.unwrap_or(0);
    head.reason = Span::of(buf, res.reason.unwrap_or_default().as_bytes());
    if res.reason.is_none() {
        head.reason = Span::default();
    }
    head.minor_version = res.version.unwrap_or(1);
    head.headers.clear();
    let (mut saw_close, mut saw_keep_alive) = (false, false);
    head.connection_extra = false;
    for h in res.headers.iter() {
        let kind = HeaderKind::of(h.name.as_bytes());
        if kind == HeaderKind::Connection {
            for t in super::tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    saw_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    saw_keep_alive = true;
                } else {
                    head.connection_extra = true;
                }
            }
        }
        head.headers.push(HeaderSpan {
            name: Span::of(buf, h.name.as_bytes()),
            value: Span::of(buf, h.value),
            kind,
        });
    }
    head.keep_alive = !saw_close && (head.minor_version == 1 || saw_keep_alive);

    let status = head.status;
    let framed = framing(buf, &head.headers).map_err(|_| ResponseParseError::Framing)?;
    head.body = if request_is_head || (100..200).contains(&status) || status == 204 || status == 304
    {
        BodyKind::Empty
    } else {
        framed.unwrap_or(BodyKind::UntilClose)
    };
    if head.body == BodyKind::UntilClose {
        head.keep_alive = false;
    }
    Ok(Some(()))
}

/// Whether a response is an interim (1xx) one, followed by the real one.
pub fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, is_head: bool) -> Result<ResponseHead, ResponseParseError> {
        let mut h = ResponseHead::default();
        parse_response(raw.as_bytes(), is_head, &mut h)?.expect("complete");
        Ok(h)
    }

    #[test]
    fn length_and_keepalive() {
        let h = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false).unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.body, BodyKind::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.head_len, 38);
    }

    #[test]
    fn head_204_304_have_no_body() {
        let r = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse(r, true).unwrap().body, BodyKind::Empty);
        let r = "HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse(r, false).unwrap().body, BodyKind::Empty);
        let r = "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(parse(r, false).unwrap().body, BodyKind::Empty);
    }

    #[test]
    fn until_close_and_http10() {
        let h = parse("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!(h.body, BodyKind::UntilClose);
        assert!(!h.keep_alive);
        let h = parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap();
        assert!(!h.keep_alive);
        let h = parse(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(h.keep_alive);
    }

    #[test]
    fn chunked_and_bad_framing() {
        let h = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.body, BodyKind::Chunked);
        let r = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(parse(r, false).unwrap_err(), ResponseParseError::Framing);
        let r = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(parse(r, false).unwrap_err(), ResponseParseError::Framing);
        assert_eq!(
            parse("HTTP/1.1 abc\r\n\r\n", false).unwrap_err(),
            ResponseParseError::Malformed
        );
    }
}
