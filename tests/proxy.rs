//! End-to-end: DAO in front of real backends, driven by a raw client.

// Test backends share state across threads; the lock rule is for the data path.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

#[test]
fn forwards_and_rewrites_headers() {
    let backend = Backend::text("hello");
    let text = config(1, "", &[backend.addr]).replace(
        "name = \"all\"\n",
        "name = \"all\"\n[routes.rule.filters]\nrequest_headers_add = { \"X-DAO-Gateway\" = \"true\" }\n",
    );
    let dao = start(&text);
    let mut c = Client::connect(dao.local_addr());
    c.send(
        b"GET /p?q=1 HTTP/1.1\r\nHost: api.example.com\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n\
          Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: x\r\n\
          X-Forwarded-For: 10.1.1.1\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n",
    );
    let r = c.read(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello");
    assert_eq!(r.header("via"), Some("1.1 dao"));
    let req = backend.last_request();
    assert_eq!(req.path, "/p?q=1");
    assert_eq!(req.version, "HTTP/1.1");
    assert_eq!(req.header("host"), Some("api.example.com"));
    assert_eq!(req.header("x-forwarded-for"), Some("10.1.1.1, 127.0.0.1"));
    assert_eq!(req.header("x-forwarded-proto"), Some("http"));
    assert_eq!(req.header("via"), Some("1.1 dao"));
    assert_eq!(req.header("x-dao-gateway"), Some("true"));
    assert_eq!(req.header("accept"), Some("*/*"));
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
    ] {
        assert_eq!(req.header(gone), None, "{gone} must not be forwarded");
    }
    dao.shutdown();
}

#[test]
fn upstream_connections_are_pooled_and_reused() {
    let backend = Backend::text("ok");
    let dao = proxy(&backend);
    // Keep-alive client, then a fresh client per request: one upstream
    // connection serves them all.
    let mut c = Client::connect(dao.local_addr());
    for _ in 0..10 {
        assert_eq!(c.get("/").status, 200);
    }
    for _ in 0..10 {
        let mut c = Client::connect(dao.local_addr());
        assert_eq!(c.get("/").status, 200);
    }
    assert_eq!(backend.request_count(), 20);
    assert_eq!(backend.connection_count(), 1);
    let stats = dao.shutdown();
    assert_eq!(stats[0].opened, 1);
    assert_eq!(stats[0].reused, 19);
}

#[test]
fn dead_pooled_connection_is_retried_for_idempotent_requests() {
    // The backend closes after every response without saying so.
    let backend = Backend::start(|_, s| {
        respond(s, 200, &[], b"once");
        std::thread::sleep(Duration::from_millis(20));
        After::Close
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.get("/").status, 200);
    }
    dao.shutdown();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let backend = Backend::start(|req, s| {
        respond(s, 200, &[], req.path.as_bytes());
        After::KeepAlive
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.extend_from_slice(format!("GET /r{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    }
    // A POST with a body inside the pipeline, then one more GET.
    batch.extend_from_slice(b"POST /post HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbodyGET /last HTTP/1.1\r\nHost: h\r\n\r\n");
    c.send(&batch);
    for i in 0..5 {
        assert_eq!(c.read(false).text(), format!("/r{i}"));
    }
    assert_eq!(c.read(false).text(), "/post");
    assert_eq!(c.read(false).text(), "/last");
    assert_eq!(backend.requests.lock().unwrap()[5].body, b"body");
    dao.shutdown();
}

#[test]
fn chunked_response_streams_before_it_ends() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let backend = Backend::start(move |_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n");
        // The last chunk waits until the client has seen the first.
        let _ = release_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        let _ = s.write_all(b"4\r\nlast\r\n0\r\n\r\n");
        After::KeepAlive
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    c.send(b"GET /s HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut seen = Vec::new();
    let mut b = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("first\r\n") {
        let n = c
            .reader
            .read(&mut b)
            .expect("first chunk must arrive before the last is sent");
        assert!(n > 0);
        seen.extend_from_slice(&b[..n]);
    }
    assert!(!String::from_utf8_lossy(&seen).contains("last"));
    release_tx.send(()).unwrap();
    let mut rest = Vec::new();
    while !String::from_utf8_lossy(&rest).ends_with("0\r\n\r\n") {
        let n = c.reader.read(&mut b).unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&b[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&rest), "4\r\nlast\r\n0\r\n\r\n");
    // The connection is still usable.
    c.send(b"GET /s HTTP/1.1\r\nHost: h\r\n\r\n");
    release_tx.send(()).unwrap();
    assert_eq!(c.read(false).text(), "firstlast");
    dao.shutdown();
}

#[test]
fn chunked_request_body_is_forwarded() {
    let backend = Backend::start(|req, s| {
        respond(s, 200, &[], format!("{}", req.body.len()).as_bytes());
        After::KeepAlive
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    c.send(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"4;ext=1\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n");
    assert_eq!(c.read(false).text(), "7");
    assert_eq!(backend.last_request().body, b"abcdefg");
    assert_eq!(
        backend.last_request().header("transfer-encoding"),
        Some("chunked")
    );
    dao.shutdown();
}

#[test]
fn large_bodies_both_ways() {
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let reply = big.clone();
    let backend = Backend::start(move |req, s| {
        assert_eq!(req.body.len(), 2 * 1024 * 1024 + 7);
        respond(s, 200, &[], &reply);
        After::KeepAlive
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    let body = vec![b'x'; 2 * 1024 * 1024 + 7];
    c.send(
        format!(
            "PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    let r = c.read(false);
    assert_eq!(r.status, 200);
    assert!(r.body == big, "response body differs");
    assert!(backend.last_request().body.iter().all(|&b| b == b'x'));
    dao.shutdown();
}

#[test]
fn head_204_304_have_no_body() {
    let backend = Backend::start(|req, s| {
        let status = match req.path.as_str() {
            "/204" => 204,
            "/304" => 304,
            _ => 200,
        };
        if req.method == "HEAD" {
            // A HEAD answer announces a length but sends nothing.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
        } else if status == 200 {
            respond(s, 200, &[], b"body");
        } else {
            let _ = s.write_all(format!("HTTP/1.1 {status} X\r\nETag: \"e\"\r\n\r\n").as_bytes());
        }
        After::KeepAlive
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    c.send(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.read(true);
    assert_eq!((r.status, r.header("content-length")), (200, Some("100")));
    c.send(b"GET /204 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.read(false).status, 204);
    c.send(b"GET /304 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.read(false).status, 304);
    // Had any of them carried a body, this would read garbage.
    assert_eq!(c.get("/").text(), "body");
    dao.shutdown();
}

#[test]
fn http10_client_gets_dechunked_body_and_close() {
    let backend = Backend::start(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        After::KeepAlive
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    c.send(b"GET /old HTTP/1.0\r\n\r\n");
    let r = c.read(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.text(), "abcde");
    // Host is filled in from the upstream's URL.
    assert_eq!(
        backend.last_request().header("host"),
        Some(backend.addr.to_string().as_str())
    );
    assert_eq!(backend.last_request().header("via"), Some("1.0 dao"));
    dao.shutdown();
}

#[test]
fn http10_keep_alive_is_honoured() {
    let backend = Backend::text("k");
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.read(false);
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(r.text(), "k");
    }
    dao.shutdown();
}

#[test]
fn expect_100_continue() {
    let backend = Backend::start(|req, s| {
        assert_eq!(
            req.header("expect"),
            None,
            "DAO answers the expectation itself"
        );
        respond(s, 201, &[], &req.body);
        After::KeepAlive
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    c.send(b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut c.reader, &mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    std::io::BufRead::read_line(&mut c.reader, &mut line).unwrap();
    c.send(b"hello");
    let r = c.read(false);
    assert_eq!((r.status, r.text().as_str()), (201, "hello"));
    dao.shutdown();
}

#[test]
fn connection_close_is_honoured() {
    let backend = Backend::text("bye");
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let r = c.read(false);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
    dao.shutdown();
}

#[test]
fn upstream_close_delimited_response() {
    let backend = Backend::start(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end");
        After::Close
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    let r = c.get("/");
    assert_eq!(r.text(), "until the end");
    assert_eq!(r.header("connection"), Some("close"));
    dao.shutdown();
}

#[test]
fn interim_103_reaches_http11_clients() {
    let backend = Backend::start(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n");
        respond(s, 200, &[], b"final");
        After::KeepAlive
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut c.reader, &mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 103 Early Hints\r\n");
    // Its header lines, then the blank line.
    while line != "\r\n" {
        line.clear();
        std::io::BufRead::read_line(&mut c.reader, &mut line).unwrap();
    }
    assert_eq!(c.read(false).text(), "final");
    dao.shutdown();
}

#[test]
fn routes_by_host_and_prefix_and_balances() {
    let a = Backend::text("a");
    let b = Backend::text("b");
    let c_ = Backend::text("c");
    let text = format!(
        r#"[server]
bind = "127.0.0.1:0"
workers = 1
[[routes.rule]]
name = "exact-v1"
  [routes.rule.match]
  host = "api.example.com"
  path_prefix = "/v1/"
  [[routes.rule.upstreams]]
  name = "a"
  url = "http://{a}"
[[routes.rule]]
name = "wild"
policy = "weighted"
  [routes.rule.match]
  host = "*.example.com"
  [[routes.rule.upstreams]]
  name = "b"
  url = "http://{b}"
  weight = 2
  [[routes.rule.upstreams]]
  name = "c"
  url = "http://{c}"
  weight = 1
"#,
        a = a.addr,
        b = b.addr,
        c = c_.addr
    );
    let dao = start(&text);
    let mut c = Client::connect(dao.local_addr());
    let mut get = |host: &str, path: &str| {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        c.read(false)
    };
    assert_eq!(get("api.example.com", "/v1/x").text(), "a");
    let picks: String = (0..6)
        .map(|_| get("api.example.com", "/v2").text())
        .collect();
    assert_eq!(picks, "bcbbcb");
    assert_eq!(get("www.example.com:8080", "/").text(), "b");
    let miss = get("example.org", "/");
    assert_eq!(miss.status, 404);
    // A 404 without a body keeps the connection.
    assert_eq!(get("api.example.com", "/v1/y").text(), "a");
    dao.shutdown();
}

#[test]
fn many_concurrent_clients_across_workers() {
    let backend = Backend::start(|req, s| {
        respond(s, 200, &[], req.path.as_bytes());
        After::KeepAlive
    });
    let dao = start(&config(2, "", &[backend.addr]));
    let addr = dao.local_addr();
    let threads: Vec<_> = (0..32)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..50 {
                    let path = format!("/t{t}/{i}");
                    assert_eq!(c.get(&path).text(), path);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(backend.request_count(), 32 * 50);
    let stats = dao.shutdown();
    assert_eq!(stats.len(), 2);
}

#[test]
fn idle_connections_park_and_wake() {
    let backend = Backend::text("awake");
    let dao = start(&config(
        1,
        "keepalive_timeout = \"2500ms\"",
        &[backend.addr],
    ));
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/").text(), "awake");
    // Past the park threshold (1 s): the connection waits without buffers.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.get("/").text(), "awake");
    // A request split across the park threshold still arrives whole.
    c.send(b"GET / HTTP/1.1\r\n");
    std::thread::sleep(Duration::from_millis(1200));
    c.send(b"Host: h\r\n\r\n");
    assert_eq!(c.read(false).text(), "awake");
    // The keep-alive timeout still holds for parked connections.
    let started = std::time::Instant::now();
    assert!(c.is_closed());
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_millis(1000) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    dao.shutdown();
}

#[test]
fn long_streamed_bodies_arrive_whole_and_the_connection_goes_on() {
    use std::io::Write as _;
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i % 253) as u8).collect();
    let reply = big.clone();
    let backend = Backend::start(move |req, s| {
        if req.path == "/chunked" {
            // Chunks of uneven sizes, written with pauses.
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap();
            for (i, part) in reply.chunks(70_001).enumerate() {
                write!(s, "{:x}\r\n", part.len()).unwrap();
                s.write_all(part).unwrap();
                s.write_all(b"\r\n").unwrap();
                if i % 5 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            s.write_all(b"0\r\n\r\n").unwrap();
        } else {
            respond(s, 200, &[], &reply);
        }
        After::KeepAlive
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    for path in ["/length", "/chunked", "/length"] {
        let r = c.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.body == big,
            "{path}: body differs ({} bytes)",
            r.body.len()
        );
    }
    dao.shutdown();
}

#[test]
fn a_body_delimited_by_close_arrives_whole() {
    use std::io::Write as _;
    let big: Vec<u8> = (0..12_000_000u32).map(|i| (i % 241) as u8).collect();
    let reply = big.clone();
    let backend = Backend::start(move |_, s| {
        // No length, no chunking: the body ends when the upstream closes,
        // right after its last (large) write.
        s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .unwrap();
        for part in reply.chunks(1_000_000) {
            s.write_all(part).unwrap();
        }
        After::Close
    });
    let dao = proxy(&backend);
    for _ in 0..2 {
        let mut c = Client::connect(dao.local_addr());
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        // A slow reader: DAO's writes back up while the upstream finishes
        // and closes; what was read before the close must still arrive.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let r = c.read(false);
        assert_eq!(r.status, 200);
        assert!(r.body == big, "body differs ({} bytes)", r.body.len());
    }
    dao.shutdown();
}
