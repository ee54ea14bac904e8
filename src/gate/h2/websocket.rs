//! WebSocket over HTTP/2 (RFC 8441): an extended CONNECT stream
//! (`:method CONNECT`, `:protocol websocket`) re-expressed as the
//! HTTP/1.1 WebSocket handshake (RFC 6455 §4.1) an upstream expects, and
//! the upstream's `101` checked as a WebSocket client would check it,
//! since the HTTP/2 client never sees it.
//!
//! ```text
//!  HEADERS :method CONNECT, :protocol websocket, :path /chat, :authority h
//!          sec-websocket-version: 13, sec-websocket-protocol: chat
//!   ─► GET /chat HTTP/1.1 ... upgrade: websocket, connection: upgrade,
//!      sec-websocket-key: <fresh nonce>          (routed and filtered as a GET)
//!   ◄─ HTTP/1.1 101, sec-websocket-accept: <checked against the nonce>
//!  HEADERS :status 200, sec-websocket-protocol: chat ─► DATA both ways
//! ```
//!
//! Plain CONNECT and extended CONNECT for another protocol are left as
//! they came: the HTTP/1.1 parser answers any CONNECT 501, as it does for
//! HTTP/1.1 clients (DAO is no forward proxy and tunnels only WebSocket).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use http::header::{
    CONNECTION, CONTENT_LENGTH, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use http::{HeaderValue, Method};

use crate::proto::h1::{tokens, HeaderSpan, RequestHead, ResponseHead};

/// The GUID a WebSocket server appends to the key (RFC 6455 §1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The handshake DAO makes on the client's behalf: the nonce it sent
/// upstream as `Sec-WebSocket-Key` (16 random bytes, in base64).
#[derive(Debug, Clone)]
pub(super) struct Handshake {
    key: [u8; 24],
}

impl Handshake {
    /// A handshake with a fresh random nonce.
    fn new() -> Handshake {
        let mut nonce = [0u8; 16];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).is_err() {
            // The system's generator failed (it does not on Linux): a
            // nonce unique to this process and moment still does what the
            // key is for, telling this handshake's answer from a cache's.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            nonce = (nanos ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
        }
        Handshake::with_nonce(nonce)
    }

    fn with_nonce(nonce: [u8; 16]) -> Handshake {
        let mut key = [0u8; 24];
        // 16 bytes are 24 base64 characters: it always fits.
        let _ = BASE64.encode_slice(nonce, &mut key);
        Handshake { key }
    }

    /// The `Sec-WebSocket-Accept` a server owes this key (RFC 6455 §4.2.2).
    fn accept(&self) -> [u8; 28] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(&self.key);
        ctx.update(GUID);
        let mut out = [0u8; 28];
        let _ = BASE64.encode_slice(ctx.finish(), &mut out);
        out
    }
}

/// If `parts` is an extended CONNECT for `websocket`, rewrites it into
/// the HTTP/1.1 handshake's request (GET, `upgrade: websocket`,
/// `connection: upgrade`, `sec-websocket-version: 13` unless the client
/// named one, a fresh `sec-websocket-key`; the client's
/// `sec-websocket-protocol` and `-extensions` and other headers kept) and
/// returns the handshake. Any other request is left untouched (`None`).
pub(super) fn from_connect(parts: &mut http::request::Parts) -> Option<Handshake> {
    if parts.method != Method::CONNECT {
        return None;
    }
    let protocol = parts.extensions.get::<h2::ext::Protocol>()?;
    if !protocol.as_str().eq_ignore_ascii_case("websocket") {
        return None;
    }
    let hs = Handshake::new();
    parts.method = Method::GET;
    let h = &mut parts.headers;
    // Fields of the HTTP/1.1 handshake that are DAO's to send, and a
    // length that would make the tunnel a request body.
    for name in [SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_ACCEPT, CONTENT_LENGTH] {
        h.remove(name);
    }
    if !h.contains_key(SEC_WEBSOCKET_VERSION) {
        h.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    if let Ok(key) = HeaderValue::from_bytes(&hs.key) {
        h.insert(SEC_WEBSOCKET_KEY, key);
    }
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    Some(hs)
}

/// The values of the header `name` in `headers` (text in `buf`).
fn values<'a>(
    headers: &'a [HeaderSpan],
    buf: &'a [u8],
    name: &'a [u8],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.get(buf).eq_ignore_ascii_case(name))
        .map(move |h| h.value.get(buf))
}

/// Whether a token list header `name` has `token`.
fn lists(headers: &[HeaderSpan], buf: &[u8], name: &[u8], token: &[u8]) -> bool {
    values(headers, buf, name).any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(token)))
}

/// The extension names of a `Sec-WebSocket-Extensions` value (each
/// extension's name is what precedes its `;` parameters).
fn extension_names(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    tokens(v).map(|t| crate::proto::h1::trim(t.split(|&b| b == b';').next().unwrap_or(t)))
}

/// Checks the upstream's `101` (`resp`, text in `rbuf`) to the handshake
/// `hs` sent as `req` (text in `qbuf`) as RFC 6455 §4.1 has a client do:
/// `Upgrade: websocket`, `Connection: upgrade`, the right
/// `Sec-WebSocket-Accept`, and a subprotocol and extensions among those
/// offered. The reason it fails, if it does.
pub(super) fn check_switch(
    (resp, rbuf): (&ResponseHead, &[u8]),
    (req, qbuf): (&RequestHead, &[u8]),
    hs: &Handshake,
) -> Result<(), &'static str> {
    let h = &resp.headers;
    if !lists(h, rbuf, b"upgrade", b"websocket") {
        return Err("101 without Upgrade: websocket");
    }
    if !lists(h, rbuf, b"connection", b"upgrade") {
        return Err("101 without Connection: upgrade");
    }
    let mut accept = values(h, rbuf, b"sec-websocket-accept");
    match (accept.next(), accept.next()) {
        (Some(v), None) if crate::proto::h1::trim(v) == hs.accept() => {}
        _ => return Err("101 with a wrong Sec-WebSocket-Accept"),
    }
    let mut chosen = values(h, rbuf, b"sec-websocket-protocol");
    match (chosen.next(), chosen.next()) {
        (None, _) => {}
        (Some(p), None)
            if lists(
                &req.headers,
                qbuf,
                b"sec-websocket-protocol",
                p.trim_ascii(),
            ) => {}
        _ => return Err("101 with a subprotocol the client did not offer"),
    }
    let offered = |name: &[u8]| {
        values(&req.headers, qbuf, b"sec-websocket-extensions")
            .any(|v| extension_names(v).any(|n| n.eq_ignore_ascii_case(name)))
    };
    if !values(h, rbuf, b"sec-websocket-extensions").all(|v| extension_names(v).all(offered)) {
        return Err("101 with an extension the client did not offer");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::h1::{parse_request, parse_response};
    use http::Request;

    #[test]
    fn the_rfc_6455_sample_key_gets_its_accept() {
        // RFC 6455 §1.3: "the sample nonce".
        let hs = Handshake::with_nonce(*b"the sample nonce");
        assert_eq!(&hs.key, b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(&hs.accept(), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn nonces_are_fresh() {
        assert_ne!(Handshake::new().key, Handshake::new().key);
    }

    fn connect(protocol: Option<&'static str>) -> http::request::Parts {
        let mut b = Request::builder()
            .method(Method::CONNECT)
            .uri("https://example.com/chat?room=1")
            .header("sec-websocket-protocol", "chat, superchat")
            .header("sec-websocket-key", "from-the-client")
            .header("content-length", "0")
            .header("x-one", "1");
        if let Some(p) = protocol {
            b = b.extension(h2::ext::Protocol::from_static(p));
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn extended_connect_becomes_a_websocket_handshake() {
        let mut parts = connect(Some("websocket"));
        let hs = from_connect(&mut parts).expect("a websocket CONNECT");
        let mut head = Vec::new();
        super::super::stream::synthesize(&parts, false, &mut head);
        let text = String::from_utf8(head.clone()).unwrap();
        assert!(text.starts_with("GET /chat?room=1 HTTP/1.1\r\nhost: example.com\r\n"));
        let key = format!(
            "sec-websocket-key: {}\r\n",
            std::str::from_utf8(&hs.key).unwrap()
        );
        for line in [
            "sec-websocket-protocol: chat, superchat\r\n",
            "x-one: 1\r\n",
            "sec-websocket-version: 13\r\n",
            &key,
            "upgrade: websocket\r\n",
            "connection: upgrade\r\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        assert!(!text.contains("from-the-client"), "{text}");
        assert!(!text.contains("content-length"), "{text}");
        let mut req = RequestHead::default();
        parse_request(&head, &mut req).unwrap().unwrap();
        assert!(req.upgrade, "parsed as a WebSocket handshake: {text}");
    }

    #[test]
    fn other_connects_are_left_alone() {
        for protocol in [None, Some("connect-udp")] {
            let mut parts = connect(protocol);
            assert!(from_connect(&mut parts).is_none());
            assert_eq!(parts.method, Method::CONNECT);
            assert_eq!(parts.headers["sec-websocket-key"], "from-the-client");
        }
        let mut get = Request::get("http://h/").body(()).unwrap().into_parts().0;
        assert!(from_connect(&mut get).is_none());
    }

    /// Checks `answer` (a 101 head) against a handshake for the sample
    /// nonce that offered `chat, superchat` and `permessage-deflate`.
    fn check(answer: &str) -> Result<(), &'static str> {
        let hs = Handshake::with_nonce(*b"the sample nonce");
        let q = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Protocol: chat, superchat\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
        let mut req = RequestHead::default();
        parse_request(q.as_bytes(), &mut req).unwrap().unwrap();
        let mut resp = ResponseHead::default();
        parse_response(answer.as_bytes(), false, &mut resp)
            .unwrap()
            .unwrap();
        check_switch((&resp, answer.as_bytes()), (&req, q.as_bytes()), &hs)
    }

    #[test]
    fn a_101_is_checked_as_a_client_would() {
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n\
                  Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        assert_eq!(check(&format!("{ok}\r\n")), Ok(()));
        assert_eq!(
            check(&format!(
                "{ok}Sec-WebSocket-Protocol: superchat\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
            )),
            Ok(())
        );
        for (answer, why) in [
            (
                format!("{ok}Sec-WebSocket-Protocol: mqtt\r\n\r\n"),
                "101 with a subprotocol the client did not offer",
            ),
            (
                format!("{ok}Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n\r\n"),
                "101 with a subprotocol the client did not offer",
            ),
            (
                format!("{ok}Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\r\n"),
                "101 with an extension the client did not offer",
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n"
                    .to_string(),
                "101 with a wrong Sec-WebSocket-Accept",
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_string(),
                "101 with a wrong Sec-WebSocket-Accept",
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                    .to_string(),
                "101 without Upgrade: websocket",
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                    .to_string(),
                "101 without Connection: upgrade",
            ),
        ] {
            assert_eq!(check(&answer), Err(why), "{answer}");
        }
    }
}
