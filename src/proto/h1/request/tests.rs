//! Request parser tests: accepted shapes, and every rejected smuggling shape.

use super::*;

fn parse(raw: &str) -> Result<Option<RequestHead>, RequestParseError> {
    let mut h = RequestHead::default();
    parse_request(raw.as_bytes(), &mut h).map(|o| o.map(|()| h))
}

fn ok(raw: &str) -> RequestHead {
    parse(raw).unwrap().expect("complete")
}

fn err(raw: &str) -> u16 {
    parse(raw).expect_err(raw).status()
}

#[test]
fn simple_get() {
    let raw = "GET /a/b?x=1 HTTP/1.1\r\nHost: ex.com\r\nAccept: */*\r\n\r\nrest";
    let h = ok(raw);
    let b = raw.as_bytes();
    assert_eq!(h.head_len, raw.len() - 4);
    assert_eq!(h.method.get(b), b"GET");
    assert_eq!(h.path.get(b), b"/a/b");
    assert_eq!(h.path_and_query.get(b), b"/a/b?x=1");
    assert_eq!(h.host.get(b), b"ex.com");
    assert_eq!(h.body, BodyKind::Empty);
    assert!(h.keep_alive && h.idempotent && !h.is_head);
}

#[test]
fn partial_needs_more() {
    assert!(parse("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    assert!(parse("GE").unwrap().is_none());
}

#[test]
fn framing_kinds() {
    let h = ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n");
    assert_eq!(h.body, BodyKind::Length(10));
    assert!(!h.idempotent);
    let h = ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(h.body, BodyKind::Chunked);
    // The same length twice is allowed (RFC 9110 §8.6).
    let h = ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(h.body, BodyKind::Length(5));
}

#[test]
fn connection_semantics() {
    assert!(!ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    let h = ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: x-foo\r\n\r\n");
    assert!(h.keep_alive && h.connection_extra);
    assert!(
        ok("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            .expect_continue
    );
}

#[test]
fn websocket_upgrade_is_recognised() {
    let ws = |conn: &str, up: &str| {
        ok(&format!(
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: {conn}\r\nUpgrade: {up}\r\n\r\n"
        ))
        .upgrade
    };
    assert!(ws("Upgrade", "websocket"));
    assert!(ws("keep-alive, UPGRADE", "WebSocket"));
    assert!(ws("upgrade", "foo/2, websocket"));
    assert!(
        !ws("keep-alive", "websocket"),
        "Connection must name upgrade"
    );
    assert!(!ws("Upgrade", "h2c"), "only WebSocket is tunnelled");
    assert!(!ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n").upgrade);
    let post = "POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert!(!ok(post).upgrade, "GET only");
    let body = "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
                Content-Length: 2\r\n\r\n";
    assert!(!ok(body).upgrade, "no body");
    let old = "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert!(!ok(old).upgrade, "HTTP/1.1 only");
    // The head is reused: the flag does not stick.
    let mut h = RequestHead::default();
    let raw = "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    parse_request(raw.as_bytes(), &mut h).unwrap().unwrap();
    assert!(h.upgrade);
    parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &mut h)
        .unwrap()
        .unwrap();
    assert!(!h.upgrade);
}

#[test]
fn absolute_form_authority_wins() {
    let raw = "GET http://real.example/p?q HTTP/1.1\r\nHost: other\r\n\r\n";
    let h = ok(raw);
    assert_eq!(h.host.get(raw.as_bytes()), b"real.example");
    assert_eq!(h.path_and_query.get(raw.as_bytes()), b"/p?q");
    let raw = "GET http://real.example HTTP/1.1\r\nHost: other\r\n\r\n";
    assert!(ok(raw).path_and_query.is_empty());
}

#[test]
fn smuggling_shapes_rejected() {
    // Both Content-Length and Transfer-Encoding.
    assert_eq!(
        err(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        400
    );
    // Differing duplicate Content-Length, and a list.
    assert_eq!(
        err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
        400
    );
    assert_eq!(
        err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n"),
        400
    );
    assert_eq!(
        err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n"),
        400
    );
    assert_eq!(
        err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        400
    );
    // Transfer-Encoding whose last coding is not chunked.
    assert_eq!(
        err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        400
    );
    assert_eq!(
        err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
        400
    );
    assert_eq!(
        err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400
    );
    // A coding we do not implement, chunked last: 501.
    assert_eq!(
        err("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        501
    );
    // obs-fold.
    assert_eq!(
        err("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n"),
        400
    );
    // Bare CR.
    assert_eq!(err("GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n"), 400);
    // Whitespace before the colon.
    assert_eq!(
        err("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"),
        400
    );
    // Chunked on HTTP/1.0.
    assert_eq!(
        err("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400
    );
}

#[test]
fn host_rules() {
    assert_eq!(err("GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(err("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    assert!(ok("GET / HTTP/1.0\r\n\r\n").host.is_empty());
}

#[test]
fn bad_lines() {
    assert_eq!(err("GET\r\n\r\n"), 400);
    assert_eq!(err("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(err("GET foo HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(err("G@T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(err("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 501);
}

#[test]
fn too_many_headers() {
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..MAX_HEADERS {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    assert_eq!(err(&raw), 431);
}

#[test]
fn head_vector_is_reused() {
    let mut h = RequestHead::default();
    parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", &mut h).unwrap();
    let cap = h.headers.capacity();
    parse_request(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n", &mut h).unwrap();
    assert_eq!(h.headers.len(), 1);
    assert_eq!(h.headers.capacity(), cap);
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
        let mut h = RequestHead::default();
        if let Ok(Some(())) = parse_request(&data, &mut h) {
            proptest::prop_assert!(h.head_len <= data.len());
            for s in h.headers.iter().flat_map(|x| [x.name, x.value]) {
                proptest::prop_assert!(s.end as usize <= h.head_len);
            }
        }
    }

    #[test]
    fn never_panics_on_mutated_requests(
        cut in 0usize..200,
        flip in 0usize..200,
        byte in proptest::num::u8::ANY,
    ) {
        let base = b"POST http://h/p?q HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close, x\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n".to_vec();
        let mut data = base.clone();
        if flip < data.len() { data[flip] = byte; }
        data.truncate(cut.max(1).min(data.len()));
        let mut h = RequestHead::default();
        let _ = parse_request(&data, &mut h);
    }
}
