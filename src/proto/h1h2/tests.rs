//! Head translation tests: what an HTTP/1.1 request becomes in HTTP/2, and
//! an HTTP/2 response in HTTP/1.1.

use super::*;
use crate::proto::h1::head::CertHeader;
use crate::proto::h1::{parse_request, parse_response, BodyKind, ResponseHead};

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

fn req(raw: &str) -> RequestHead {
    let mut h = RequestHead::default();
    parse_request(raw.as_bytes(), &mut h).unwrap().unwrap();
    h
}

fn values<'a>(r: &'a http::Request<()>, name: &str) -> Vec<&'a str> {
    r.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[test]
fn request_gets_pseudo_headers_and_loses_hop_by_hop() {
    let raw = "POST /a?b=1 HTTP/1.1\r\nHost: ex.com:8080\r\nConnection: keep-alive, X-Secret\r\n\
               X-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers, deflate;q=0.5\r\nUpgrade: foo\r\n\
               Proxy-Connection: x\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\n\
               Content-Length: 3\r\nAccept: */*\r\nAccept: text/html\r\n\r\nabc";
    let h = req(raw);
    let r = request(raw.as_bytes(), &h, &FWD).unwrap();
    assert_eq!(r.method(), http::Method::POST);
    assert_eq!(r.uri().to_string(), "http://ex.com:8080/a?b=1");
    let names: Vec<&str> = r.headers().keys().map(|k| k.as_str()).collect();
    for gone in [
        "host",
        "connection",
        "x-secret",
        "keep-alive",
        "upgrade",
        "proxy-connection",
    ] {
        assert!(!names.contains(&gone), "{gone} in {names:?}");
    }
    assert_eq!(values(&r, "te"), ["trailers"]);
    assert_eq!(values(&r, "accept"), ["*/*", "text/html"]);
    assert_eq!(values(&r, "content-length"), ["3"]);
    assert_eq!(values(&r, "x-forwarded-for"), ["1.1.1.1, 10.0.0.9"]);
    assert_eq!(values(&r, "x-forwarded-proto"), ["http"]);
    assert_eq!(values(&r, "via"), ["1.1 dao"]);
    assert_eq!(values(&r, "x-dao-gateway"), ["true"]);
}

#[test]
fn te_without_trailers_is_dropped_and_host_defaults() {
    let raw = "GET / HTTP/1.0\r\nTE: gzip\r\n\r\n";
    let h = req(raw);
    let fwd = Forwarded {
        request_id: b"abc",
        drop: &[],
        ..FWD
    };
    let r = request(raw.as_bytes(), &h, &fwd).unwrap();
    assert_eq!(r.uri().to_string(), "http://backend:80/");
    assert!(r.headers().get("te").is_none());
    assert_eq!(values(&r, "via"), ["1.0 dao"]);
    assert_eq!(values(&r, "x-request-id"), ["abc"]);
    let raw = "GET / HTTP/1.1\r\nHost: h\r\nTE: Trailers\r\n\r\n";
    assert!(accepts_trailers(raw.as_bytes(), &req(raw)));
}

#[test]
fn client_cert_header_is_replaced() {
    let raw = "GET / HTTP/1.1\r\nHost: h\r\nX-Client-Cert: forged\r\nX-Other: forged\r\n\r\n";
    let h = req(raw);
    let strip = ["x-other".to_string()];
    let fwd = Forwarded {
        client_cert: CertHeader {
            strip: &strip,
            line: b"x-client-cert: Hash=ab;Subject=\"CN=c\"\r\n",
        },
        ..FWD
    };
    let r = request(raw.as_bytes(), &h, &fwd).unwrap();
    assert_eq!(values(&r, "x-client-cert"), ["Hash=ab;Subject=\"CN=c\""]);
    assert!(r.headers().get("x-other").is_none());
    assert_eq!(values(&r, "x-dao-gateway"), ["true"]);
}

#[test]
fn filters_drop_headers_and_expect_is_answered_here() {
    let raw = "PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nX-Drop: 1\r\n\
               Content-Length: 1\r\n\r\n";
    let h = req(raw);
    let drop = [b"x-drop".to_vec()];
    let fwd = Forwarded {
        drop: &drop,
        extra: b"",
        ..FWD
    };
    let r = request(raw.as_bytes(), &h, &fwd).unwrap();
    assert!(r.headers().get("expect").is_none());
    assert!(r.headers().get("x-drop").is_none());
    assert!(r.headers().get("x-dao-gateway").is_none());
}

#[test]
fn absolute_form_gives_the_authority() {
    let raw = "GET http://other.example/p?q HTTP/1.1\r\nHost: ignored\r\n\r\n";
    let h = req(raw);
    let r = request(raw.as_bytes(), &h, &FWD).unwrap();
    assert_eq!(r.uri().to_string(), "http://other.example/p?q");
}

fn parts(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
    let mut b = http::Response::builder().status(status);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn translated(p: &http::response::Parts, is_head: bool, ended: bool) -> (String, ResponseHead) {
    let mut out = Vec::new();
    response_head(&mut out, p, framing_of(p, is_head, ended));
    let mut h = ResponseHead::default();
    parse_response(&out, is_head, &mut h).unwrap().unwrap();
    assert_eq!(h.head_len, out.len());
    (String::from_utf8(out).unwrap(), h)
}

#[test]
fn response_framing_is_made_explicit() {
    let (text, h) = translated(&parts(200, &[("x-a", "1")]), false, false);
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    assert_eq!(h.body, BodyKind::Chunked);
    assert!(h.keep_alive);

    let (_, h) = translated(&parts(200, &[("content-length", "5")]), false, false);
    assert_eq!(h.body, BodyKind::Length(5));
    let (text, h) = translated(&parts(404, &[]), false, true);
    assert_eq!(text, "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(h.body, BodyKind::Empty);
    // HEAD and bodiless statuses: nothing added.
    let (text, h) = translated(&parts(200, &[("content-length", "9")]), true, true);
    assert!(!text.contains("chunked"), "{text}");
    assert_eq!(h.body, BodyKind::Empty);
    let (text, h) = translated(&parts(204, &[]), false, false);
    assert_eq!(text, "HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(h.body, BodyKind::Empty);
    // An unknown status has no reason phrase.
    let (text, _) = translated(&parts(599, &[]), false, true);
    assert!(text.starts_with("HTTP/1.1 599 \r\n"), "{text}");
}

#[test]
fn trailers_end_the_last_chunk() {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("0"));
    t.insert("grpc-message", HeaderValue::from_static("ok"));
    let mut out = Vec::new();
    last_chunk(&mut out, Some(&t));
    assert_eq!(out, b"0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n");
    out.clear();
    last_chunk(&mut out, None);
    assert_eq!(out, b"0\r\n\r\n");
}

#[test]
fn chunk_sizes_are_hex() {
    for (n, text) in [
        (0, "0"),
        (9, "9"),
        (255, "ff"),
        (4096, "1000"),
        (70000, "11170"),
    ] {
        let mut out = Vec::new();
        chunk_head(&mut out, n);
        assert_eq!(out, format!("{text}\r\n").as_bytes());
    }
}
