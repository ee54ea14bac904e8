//! Flow end to end: every built-in filter on a real backend — header
//! rules with variables both ways, IP allow/deny, allowed methods, body
//! limits (declared and streamed), CORS preflights and responses, and the
//! per-route request timeout.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn send(dao: &Server, raw: &str) -> Resp {
    let mut c = Client::connect(dao.local_addr());
    c.send(raw.as_bytes());
    c.read(raw.starts_with("HEAD "))
}

#[test]
fn header_rules_edit_both_directions_with_variables() {
    let backend = Backend::start(|_, s| {
        respond(
            s,
            200,
            &[("Server", "backend/1.0"), ("X-Internal", "secret")],
            b"ok",
        );
        After::KeepAlive
    });
    let dao = with_filters(
        &backend,
        1,
        "",
        r#"request_headers_add = { "X-Client" = "${client_ip}", "X-Route" = "route=${route}" }
request_headers_set = { "X-Tenant" = "blue" }
request_headers_remove = ["X-Debug"]
response_headers_add = { "X-Served-By" = "${upstream}" }
response_headers_set = { "Server" = "dao" }
response_headers_remove = ["x-internal"]"#,
    );
    let r = send(
        &dao,
        "GET / HTTP/1.1\r\nHost: h\r\nX-Debug: 1\r\nX-Tenant: red\r\nX-Tenant: green\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = backend.last_request();
    assert_eq!(seen.header("x-client"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-route"), Some("route=r"));
    assert_eq!(seen.headers_named("x-tenant"), ["blue"]);
    assert_eq!(seen.header("x-debug"), None);
    assert_eq!(r.header("x-served-by"), Some("up"));
    assert_eq!(r.header("server"), Some("dao"));
    assert_eq!(r.header("x-internal"), None);
}

#[test]
fn ip_lists_allow_and_deny() {
    let backend = Backend::text("ok");
    let denied = with_filters(&backend, 1, "", r#"ip_deny = ["127.0.0.0/8"]"#);
    assert_eq!(
        send(&denied, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").status,
        403
    );
    let elsewhere = with_filters(
        &backend,
        1,
        "",
        r#"ip_allow = ["10.0.0.0/8", "2001:db8::/32"]"#,
    );
    assert_eq!(
        send(&elsewhere, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").status,
        403
    );
    let allowed = with_filters(&backend, 1, "", r#"ip_allow = ["127.0.0.1"]"#);
    assert_eq!(
        send(&allowed, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").status,
        200
    );
    // Deny wins over allow.
    let both = with_filters(
        &backend,
        1,
        "",
        "ip_allow = [\"0.0.0.0/0\"]\nip_deny = [\"127.0.0.1\"]",
    );
    assert_eq!(send(&both, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").status, 403);
    assert_eq!(
        backend.request_count(),
        1,
        "refused requests never reach it"
    );
}

#[test]
fn methods_outside_the_list_get_405_with_allow() {
    let backend = Backend::text("ok");
    let dao = with_filters(&backend, 1, "", r#"allowed_methods = ["GET", "head"]"#);
    let r = send(&dao, "DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    // The connection stays usable after a refusal without a body.
    let mut c = Client::connect(dao.local_addr());
    c.send(b"PUT /x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.read(false).status, 405);
    assert_eq!(c.get("/x").status, 200);
    assert_eq!(backend.request_count(), 1);
}

#[test]
fn body_limits_hold_for_declared_and_streamed_bodies() {
    let backend = Backend::text("ok");
    let dao = with_filters(&backend, 1, "", "max_body_bytes = 10");
    let big = send(
        &dao,
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\n01234567890123456789",
    );
    assert_eq!(big.status, 413);
    assert_eq!(
        backend.request_count(),
        0,
        "a declared excess never goes upstream"
    );
    let small = send(
        &dao,
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(small.status, 200);
    // Chunked: 6 + 6 bytes, the second chunk crosses the limit.
    let mut c = Client::connect(dao.local_addr());
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n");
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"6\r\nghijkl\r\n0\r\n\r\n");
    let r = c.read(false);
    assert_eq!(r.status, 413);
    // Within the limit, chunked passes.
    let ok = send(
        &dao,
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    );
    assert_eq!(ok.status, 200);
}

#[test]
fn cors_preflights_are_answered_and_responses_marked() {
    let backend = Backend::text("ok");
    let dao = with_filters(
        &backend,
        1,
        "",
        r#"cors = { allow_origins = ["https://app.example.com"], allow_methods = ["GET", "PUT"], allow_headers = ["Content-Type", "X-Token"], max_age = "10m", allow_credentials = true, expose_headers = ["X-Total"] }"#,
    );
    let pre = send(
        &dao,
        "OPTIONS /items HTTP/1.1\r\nHost: h\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: x-token\r\n\r\n",
    );
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(pre.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(
        pre.header("access-control-allow-headers"),
        Some("content-type, x-token")
    );
    assert_eq!(pre.header("access-control-max-age"), Some("600"));
    assert_eq!(pre.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(backend.request_count(), 0, "preflights are answered by DAO");
    let other = send(
        &dao,
        "OPTIONS /items HTTP/1.1\r\nHost: h\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: PUT\r\n\r\n",
    );
    assert_eq!(other.status, 403);
    let bad_method = send(
        &dao,
        "OPTIONS /items HTTP/1.1\r\nHost: h\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: DELETE\r\n\r\n",
    );
    assert_eq!(bad_method.status, 403);
    let get = send(
        &dao,
        "GET /items HTTP/1.1\r\nHost: h\r\nOrigin: https://app.example.com\r\n\r\n",
    );
    assert_eq!(get.status, 200);
    assert_eq!(
        get.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(get.header("vary"), Some("Origin"));
    assert_eq!(get.header("access-control-expose-headers"), Some("x-total"));
    let foreign = send(
        &dao,
        "GET /items HTTP/1.1\r\nHost: h\r\nOrigin: https://evil.example\r\n\r\n",
    );
    assert_eq!(foreign.status, 200);
    assert_eq!(foreign.header("access-control-allow-origin"), None);
}

#[test]
fn request_timeout_bounds_the_wait_for_the_response_head() {
    let backend = Backend::start(|_, s| {
        std::thread::sleep(Duration::from_millis(1500));
        respond(s, 200, &[], b"late");
        After::KeepAlive
    });
    let dao = with_filters(&backend, 1, "", r#"request_timeout = "200ms""#);
    let started = Instant::now();
    let r = send(&dao, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
}
