//! End-to-end: bad requests, smuggling shapes, slow clients, and failing
//! upstreams each get the right status and never take the worker down.

// Tests time real sockets; the clock rule is for the data path.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;

fn expect_status_and_close(dao: &Server, raw: &[u8], status: u16) {
    let mut c = Client::connect(dao.local_addr());
    c.send(raw);
    let r = c.read(false);
    assert_eq!(r.status, status, "for {:?}", String::from_utf8_lossy(raw));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        c.is_closed(),
        "connection must close after {:?}",
        String::from_utf8_lossy(raw)
    );
}

#[test]
fn malformed_and_smuggling_requests_get_400_and_close() {
    let backend = Backend::text("never");
    let dao = proxy(&backend);
    let cases: &[&[u8]] = &[
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\rX-A: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length : 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;bad ext\r\nabc\r\n0\r\n\r\n",
    ];
    for raw in cases {
        expect_status_and_close(&dao, raw, 400);
    }
    assert_eq!(
        backend.request_count(),
        0,
        "nothing malformed may reach the upstream"
    );
    expect_status_and_close(
        &dao,
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    );
    dao.shutdown();
}

#[test]
fn oversized_head_gets_431() {
    let backend = Backend::text("never");
    let dao = start(&config(1, "max_header_bytes = 4096", &[backend.addr]));
    let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 8000));
    raw.extend_from_slice(b"\r\n\r\n");
    expect_status_and_close(&dao, &raw, 431);
    // Too many header lines, too.
    let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..200 {
        raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    expect_status_and_close(&dao, &raw, 431);
    dao.shutdown();
}

#[test]
fn slowloris_is_cut_by_the_header_timeout() {
    let backend = Backend::text("never");
    let dao = start(&config(
        1,
        "header_read_timeout = \"300ms\"",
        &[backend.addr],
    ));
    let mut c = Client::connect(dao.local_addr());
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\r\n");
    // Trickle bytes slower than the deadline allows for the whole head.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(100));
        let _ = c.stream.write_all(b"X-Slow: 1\r\n");
    }
    let r = c.read(false);
    assert_eq!(r.status, 408);
    assert!(c.is_closed());
    assert!(started.elapsed() < Duration::from_secs(3));
    dao.shutdown();
}

#[test]
fn idle_keepalive_connections_are_closed() {
    let backend = Backend::text("ok");
    let dao = start(&config(1, "keepalive_timeout = \"200ms\"", &[backend.addr]));
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/").status, 200);
    let started = Instant::now();
    assert!(c.is_closed());
    assert!(started.elapsed() < Duration::from_secs(3));
    dao.shutdown();
}

#[test]
fn refused_upstream_gets_502() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dao = start(&config(1, "", &[port]));
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/").status, 502);
    // Keep-alive survives a 502 for a bodiless request.
    assert_eq!(c.get("/").status, 502);
    dao.shutdown();
}

#[test]
fn upstream_reset_before_response_gets_502() {
    let backend = Backend::start(|_, _| After::Close);
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    // POST is not retried: it gets the 502.
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(c.read(false).status, 502);
    dao.shutdown();
}

#[test]
fn garbage_from_upstream_gets_502() {
    let backend = Backend::start(|_, s| {
        let _ = s.write_all(b"NOT HTTP AT ALL\r\n\r\n");
        After::Close
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/").status, 502);
    dao.shutdown();
}

#[test]
fn slow_upstream_gets_504() {
    let backend = Backend::start(|_, s| {
        std::thread::sleep(Duration::from_millis(1500));
        respond(s, 200, &[], b"late");
        After::KeepAlive
    });
    let dao = start(&config(
        1,
        "[proxy]\nresponse_timeout = \"300ms\"",
        &[backend.addr],
    ));
    let mut c = Client::connect(dao.local_addr());
    let started = Instant::now();
    assert_eq!(c.get("/").status, 504);
    assert!(started.elapsed() < Duration::from_millis(1400));
    dao.shutdown();
}

#[test]
fn upstream_dying_mid_body_cuts_the_client() {
    let backend = Backend::start(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
        After::Close
    });
    let dao = proxy(&backend);
    let mut c = Client::connect(dao.local_addr());
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    // The head went out; the body cannot be completed, so the connection ends.
    assert!(c.try_read(false).is_none());
    dao.shutdown();
}

#[test]
fn worker_survives_a_storm_of_bad_input() {
    let backend = Backend::text("fine");
    let dao = proxy(&backend);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..300 {
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % raw.len();
            raw[i] = (seed >> 32) as u8;
        }
        if let Ok(mut s) = std::net::TcpStream::connect(dao.local_addr()) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(&raw);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
        }
    }
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/").text(), "fine");
    dao.shutdown();
}

#[test]
fn unanswered_connect_gets_504() {
    // A listener with a full accept queue drops new SYNs: connecting hangs.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    std::thread::sleep(Duration::from_millis(100));
    let dao = start(&config(1, "[proxy]\nconnect_timeout = \"300ms\"", &[addr]));
    let mut c = Client::connect(dao.local_addr());
    let started = Instant::now();
    assert_eq!(c.get("/").status, 504);
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(fillers);
    dao.shutdown();
}
