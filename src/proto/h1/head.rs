//! Head writers: the request head sent upstream and the response head sent
//! downstream, composed into a reused buffer from the spans of the parsed
//! head (no reallocation of what was read), minus hop-by-hop headers and
//! plus the proxy's own (`X-Forwarded-*`, `Via`, route additions).

use super::{BodyKind, HeaderKind, HeaderSpan, RequestHead, ResponseHead};

/// What the proxy adds to a forwarded request.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The client's IP address, as text.
    pub client_ip: &'a [u8],
    /// The scheme the client used (`http`, `https`).
    pub proto: &'a [u8],
    /// Pre-serialised `Name: value\r\n` lines from the route's filters.
    pub extra: &'a [u8],
    /// Header names (lower case) the filters drop.
    pub drop: &'a [Vec<u8>],
    /// `Host` value to send when the client sent none (HTTP/1.0).
    pub default_host: &'a [u8],
    /// An `X-Request-Id` to add (empty: none; the client's own passes
    /// through with the other headers).
    pub request_id: &'a [u8],
    /// Client certificate details: what the client sent under their
    /// names is removed, DAO's own line added.
    pub client_cert: CertHeader<'a>,
}

/// The client certificate header of a forwarded request (a TLS listener's
/// `client_cert_header`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CertHeader<'a> {
    /// Names (lower case) that only DAO may send upstream: every
    /// listener's `client_cert_header`.
    pub strip: &'a [String],
    /// `Name: value\r\n` with the connection's verified client
    /// certificate (empty: none). Its name is stripped from the client's
    /// headers as well.
    pub line: &'a [u8],
}

impl CertHeader<'_> {
    /// Whether the client's header `name` is removed.
    #[inline]
    pub fn strips(&self, name: &[u8]) -> bool {
        if self.strip.is_empty() && self.line.is_empty() {
            return false;
        }
        self.strip
            .iter()
            .any(|s| s.as_bytes().eq_ignore_ascii_case(name))
            || (self.line.get(name.len()) == Some(&b':')
                && self.line[..name.len()].eq_ignore_ascii_case(name))
    }
}

#[inline]
fn put(out: &mut Vec<u8>, parts: &[&[u8]]) {
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Whether `name` is listed in a `Connection` header of the message.
fn named_by_connection(buf: &[u8], headers: &[HeaderSpan], name: &[u8]) -> bool {
    headers.iter().any(|h| {
        h.kind == HeaderKind::Connection
            && super::tokens(h.value.get(buf)).any(|t| t.eq_ignore_ascii_case(name))
    })
}

/// Whether a header is `Upgrade` (a hop-by-hop one, by name).
#[inline]
fn is_upgrade(h: &HeaderSpan, name: &[u8]) -> bool {
    h.kind == HeaderKind::HopByHop && name.eq_ignore_ascii_case(b"upgrade")
}

/// Whether `name` is among the names to drop.
#[inline]
fn dropped(drop: &[Vec<u8>], name: &[u8]) -> bool {
    !drop.is_empty() && drop.iter().any(|d| d.eq_ignore_ascii_case(name))
}

/// Writes the request head sent upstream: always HTTP/1.1, origin-form.
pub fn write_request_head(out: &mut Vec<u8>, buf: &[u8], head: &RequestHead, fwd: &Forwarded<'_>) {
    let pq = head.path_and_query.get(buf);
    let pq: &[u8] = if pq.is_empty() { b"/" } else { pq };
    put(out, &[head.method.get(buf), b" ", pq, b" HTTP/1.1\r\n"]);
    let mut saw_host = false;
    for h in &head.headers {
        let name = h.name.get(buf);
        // A WebSocket handshake keeps its `Upgrade` (and gets a
        // `Connection: Upgrade` of ours, below).
        let upgrade = head.upgrade && is_upgrade(h, name);
        match h.kind {
            HeaderKind::HopByHop if upgrade => {}
            HeaderKind::Connection
            | HeaderKind::HopByHop
            | HeaderKind::TransferEncoding
            | HeaderKind::ContentLength
            | HeaderKind::XForwardedProto => continue,
            // We answer 100-continue ourselves (see gate::conn).
            HeaderKind::Expect if head.expect_continue => continue,
            // Folded into one header below, our hop appended last.
            HeaderKind::XForwardedFor => continue,
            HeaderKind::Host => saw_host = true,
            _ => {}
        }
        if !upgrade && head.connection_extra && named_by_connection(buf, &head.headers, name) {
            continue;
        }
        if dropped(fwd.drop, name) || fwd.client_cert.strips(name) {
            continue;
        }
        put(out, &[name, b": ", h.value.get(buf), b"\r\n"]);
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    for h in head
        .headers
        .iter()
        .filter(|h| h.kind == HeaderKind::XForwardedFor)
    {
        put(out, &[h.value.get(buf), b", "]);
    }
    put(out, &[fwd.client_ip, b"\r\n"]);
    put(out, &[b"X-Forwarded-Proto: ", fwd.proto, b"\r\n"]);
    let via: &[u8] = if head.minor_version == 0 {
        b"Via: 1.0 dao\r\n"
    } else {
        b"Via: 1.1 dao\r\n"
    };
    out.extend_from_slice(via);
    if !saw_host {
        put(out, &[b"Host: ", fwd.default_host, b"\r\n"]);
    }
    if !fwd.request_id.is_empty() {
        put(out, &[b"X-Request-Id: ", fwd.request_id, b"\r\n"]);
    }
    out.extend_from_slice(fwd.client_cert.line);
    if head.upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
    }
    out.extend_from_slice(fwd.extra);
    write_framing(out, head.body);
    out.extend_from_slice(b"\r\n");
}

fn write_framing(out: &mut Vec<u8>, body: BodyKind) {
    match body {
        BodyKind::Length(n) => {
            let mut b = itoa::Buffer::new();
            put(out, &[b"Content-Length: ", b.format(n).as_bytes(), b"\r\n"]);
        }
        BodyKind::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyKind::Empty | BodyKind::UntilClose => {}
    }
}

/// How the response body travels to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownFraming {
    /// As the upstream framed it (length, chunked, or none).
    Same,
    /// Chunk framing removed, end marked by closing (HTTP/1.0 client).
    Dechunk,
    /// None: a `101 Switching Protocols` to a WebSocket handshake. Its
    /// `Upgrade` header is kept, `Connection: Upgrade` is sent, and the
    /// connection becomes a tunnel.
    Tunnel,
}

/// Writes the response head sent to the client (HTTP/1.1 status line).
///
/// `close`: the connection closes after this response.
pub fn write_response_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    client_minor: u8,
    framing: DownFraming,
    close: bool,
    edits: (&[Vec<u8>], &[u8]),
) {
    let (drop, extra) = edits;
    let mut code = itoa::Buffer::new();
    put(
        out,
        &[
            b"HTTP/1.1 ",
            code.format(head.status).as_bytes(),
            b" ",
            head.reason.get(buf),
            b"\r\n",
        ],
    );
    let tunnel = framing == DownFraming::Tunnel;
    for h in &head.headers {
        let name = h.name.get(buf);
        let upgrade = tunnel && is_upgrade(h, name);
        match h.kind {
            HeaderKind::HopByHop if upgrade => {}
            HeaderKind::Connection | HeaderKind::HopByHop | HeaderKind::TransferEncoding => {
                continue
            }
            HeaderKind::ContentLength if head.body == BodyKind::Chunked => continue,
            _ => {}
        }
        if !upgrade && head.connection_extra && named_by_connection(buf, &head.headers, name) {
            continue;
        }
        if dropped(drop, name) {
            continue;
        }
        put(out, &[name, b": ", h.value.get(buf), b"\r\n"]);
    }
    out.extend_from_slice(extra);
    let via: &[u8] = if head.minor_version == 0 {
        b"Via: 1.0 dao\r\n"
    } else {
        b"Via: 1.1 dao\r\n"
    };
    out.extend_from_slice(via);
    if head.body == BodyKind::Chunked && framing == DownFraming::Same {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if tunnel {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
    } else if close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The reason phrase of a status DAO sends itself.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

macro_rules! canned {
    ($code:literal, $reason:literal, $len:literal, $close:literal) => {
        concat!(
            "HTTP/1.1 ",
            $code,
            " ",
            $reason,
            "\r\n",
            "Content-Type: text/plain\r\n",
            "Content-Length: ",
            $len,
            "\r\n",
            $close,
            "\r\n",
            $reason,
            "\n"
        )
        .as_bytes()
    };
}

/// A complete, static error response the proxy itself sends.
///
/// `close` adds `Connection: close` (the connection ends after it).
pub fn error_response(status: u16, close: bool) -> &'static [u8] {
    macro_rules! pick {
        ($($code:literal => $reason:literal, $len:literal),* $(,)?) => {
            match (status, close) {
                $(
                    ($code, false) => canned!($code, $reason, $len, ""),
                    ($code, true) => canned!($code, $reason, $len, "Connection: close\r\n"),
                )*
                (_, false) => canned!(500, "Internal Server Error", 22, ""),
                (_, true) => canned!(500, "Internal Server Error", 22, "Connection: close\r\n"),
            }
        };
    }
    pick! {
        // Body is the reason and a newline; the number is its length.
        400 => "Bad Request", 12,
        404 => "Not Found", 10,
        408 => "Request Timeout", 16,
        413 => "Content Too Large", 18,
        431 => "Request Header Fields Too Large", 32,
        501 => "Not Implemented", 16,
        502 => "Bad Gateway", 12,
        503 => "Service Unavailable", 20,
        504 => "Gateway Timeout", 16,
    }
}

/// The 503 sent when a circuit breaker refuses a request: marked with
/// `x-dao-overloaded: circuit-breaker` so that clients and operators can
/// tell it from an upstream's own 503.
pub fn overloaded_response(close: bool) -> &'static [u8] {
    if close {
        canned!(
            503,
            "Service Unavailable",
            20,
            "x-dao-overloaded: circuit-breaker\r\nConnection: close\r\n"
        )
    } else {
        canned!(
            503,
            "Service Unavailable",
            20,
            "x-dao-overloaded: circuit-breaker\r\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::h1::{parse_request, parse_response};

    fn req(raw: &str) -> RequestHead {
        let mut h = RequestHead::default();
        parse_request(raw.as_bytes(), &mut h).unwrap().unwrap();
        h
    }

    const FWD: Forwarded<'static> = Forwarded {
        client_ip: b"10.0.0.9",
        proto: b"http",
        extra: b"X-DAO-Gateway: true\r\n",
        drop: &[],
        default_host: b"backend:80",
        request_id: b"",
        client_cert: CertHeader {
            strip: &[],
            line: b"",
        },
    };

    #[test]
    fn client_cert_header_is_stripped_and_set() {
        let raw =
            "GET / HTTP/1.1\r\nHost: a\r\nX-Client-Cert: forged\r\nx-other-cert: forged too\r\n\
                   X-Client-Certs: kept\r\n\r\n";
        let h = req(raw);
        let write = |strip: &[String], line: &[u8]| {
            let fwd = Forwarded {
                client_cert: CertHeader { strip, line },
                ..FWD
            };
            let mut out = Vec::new();
            write_request_head(&mut out, raw.as_bytes(), &h, &fwd);
            String::from_utf8(out).unwrap()
        };
        let both = ["x-client-cert".to_string(), "x-other-cert".to_string()];
        // No certificate: every listener's name goes, nothing is added.
        let s = write(&both, b"");
        assert!(!s.contains("forged"), "{s}");
        assert!(s.contains("X-Client-Certs: kept\r\n"), "{s}");
        assert!(!s.contains("Hash="), "{s}");
        // With one: its line is added, once.
        let s = write(&both, b"x-client-cert: Hash=ab\r\n");
        assert!(!s.contains("forged"), "{s}");
        assert!(s.contains("X-Client-Certs: kept\r\n"), "{s}");
        assert_eq!(s.matches("Hash=ab").count(), 1, "{s}");
        // The connection's own name goes even when the config (reloaded)
        // names it no more.
        let s = write(&[], b"x-client-cert: Hash=ab\r\n");
        assert!(!s.contains("X-Client-Cert: forged"), "{s}");
        assert!(s.contains("x-other-cert: forged too\r\n"), "{s}");
        // Without any: the client's headers pass.
        let s = write(&[], b"");
        assert!(s.contains("X-Client-Cert: forged\r\n"), "{s}");
    }

    #[test]
    fn request_head_drops_hop_by_hop_and_adds_forwarding() {
        let raw = "POST /a?b=1 HTTP/1.1\r\nHost: ex.com\r\nConnection: keep-alive, X-Secret\r\n\
                   X-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: foo\r\n\
                   Proxy-Connection: x\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\
                   X-Forwarded-Proto: https\r\nContent-Length: 3\r\nAccept: */*\r\n\r\nabc";
        let h = req(raw);
        let mut out = Vec::new();
        write_request_head(&mut out, raw.as_bytes(), &h, &FWD);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "POST /a?b=1 HTTP/1.1\r\nHost: ex.com\r\nAccept: */*\r\n\
             X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.9\r\nX-Forwarded-Proto: http\r\n\
             Via: 1.1 dao\r\nX-DAO-Gateway: true\r\nContent-Length: 3\r\n\r\n"
        );
    }

    #[test]
    fn absolute_form_and_http10_host() {
        let raw = "GET http://ex.com/p HTTP/1.0\r\n\r\n";
        let h = req(raw);
        assert_eq!(h.host.get(raw.as_bytes()), b"ex.com");
        let mut out = Vec::new();
        write_request_head(&mut out, raw.as_bytes(), &h, &FWD);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("GET /p HTTP/1.1\r\n"), "{s}");
        assert!(s.contains("Via: 1.0 dao\r\nHost: backend:80\r\n"), "{s}");
    }

    #[test]
    fn response_head_framing() {
        let raw =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nX-A: 1\r\n\r\n";
        let mut h = ResponseHead::default();
        parse_response(raw.as_bytes(), false, &mut h)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            raw.as_bytes(),
            &h,
            1,
            DownFraming::Same,
            false,
            (&[], b""),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nVia: 1.1 dao\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            raw.as_bytes(),
            &h,
            0,
            DownFraming::Dechunk,
            true,
            (&[], b""),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nVia: 1.1 dao\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn websocket_handshake_keeps_its_upgrade_headers() {
        let raw = "GET /ws HTTP/1.1\r\nHost: ex.com\r\nConnection: keep-alive, Upgrade\r\n\
                   Upgrade: websocket\r\nSec-WebSocket-Key: k==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let h = req(raw);
        let mut out = Vec::new();
        write_request_head(&mut out, raw.as_bytes(), &h, &FWD);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "GET /ws HTTP/1.1\r\nHost: ex.com\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k==\r\n\
             Sec-WebSocket-Version: 13\r\nX-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\n\
             Via: 1.1 dao\r\nConnection: Upgrade\r\nX-DAO-Gateway: true\r\n\r\n"
        );
        // Another protocol (h2c): plain HTTP/1.1, its upgrade headers gone.
        let raw = "GET / HTTP/1.1\r\nHost: ex.com\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                   Upgrade: h2c\r\nHTTP2-Settings: AAA\r\n\r\n";
        let h = req(raw);
        let mut out = Vec::new();
        write_request_head(&mut out, raw.as_bytes(), &h, &FWD);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("GET / HTTP/1.1\r\nHost: ex.com\r\nX-Forwarded-For"),
            "{s}"
        );
        assert!(!s.contains("pgrade") && !s.contains("HTTP2"), "{s}");

        let raw =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Accept: a=\r\n\r\n";
        let mut h = ResponseHead::default();
        parse_response(raw.as_bytes(), false, &mut h)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let edits = (&[][..], &b"X-A: 1\r\n"[..]);
        write_response_head(
            &mut out,
            raw.as_bytes(),
            &h,
            1,
            DownFraming::Tunnel,
            false,
            edits,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a=\r\n\
             X-A: 1\r\nVia: 1.1 dao\r\nConnection: Upgrade\r\n\r\n"
        );
    }

    #[test]
    fn canned_responses_are_well_formed() {
        for code in [400, 404, 408, 413, 431, 501, 502, 503, 504, 599] {
            for close in [false, true] {
                let raw = error_response(code, close);
                let mut h = ResponseHead::default();
                parse_response(raw, false, &mut h).unwrap().unwrap();
                let BodyKind::Length(n) = h.body else {
                    panic!("no length")
                };
                assert_eq!(h.head_len + n as usize, raw.len());
                assert_eq!(h.keep_alive, !close);
            }
        }
        for close in [false, true] {
            let raw = overloaded_response(close);
            let mut h = ResponseHead::default();
            parse_response(raw, false, &mut h).unwrap().unwrap();
            let BodyKind::Length(n) = h.body else {
                panic!("no length")
            };
            assert_eq!((h.status, h.keep_alive), (503, !close));
            assert_eq!(h.head_len + n as usize, raw.len());
            let text = std::str::from_utf8(raw).unwrap();
            assert!(text.contains("\r\nx-dao-overloaded: circuit-breaker\r\n"));
        }
    }
}
