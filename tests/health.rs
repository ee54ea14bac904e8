//! Active health checks end to end: upstreams whose `/healthz` fails are
//! marked down in /health and /metrics and get no traffic until they
//! recover; a route with every upstream down still proxies (panic mode);
//! bad `health_check` configs name their field.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const TELEMETRY: &str =
    "[telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 50\nwindow = \"30s\"\n";

/// Probes every 200 ms; two results in a row move the verdict.
const CHECK: &str = "[routes.rule.health_check]\npath = \"/healthz\"\ninterval = \"200ms\"\n\
     timeout = \"150ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n";

/// One route over `backends` with 2 workers and the check above.
fn checked(backends: &[SocketAddr]) -> String {
    config(2, TELEMETRY, backends) + CHECK
}

/// A backend answering its name, and `/healthz` with 200, or 503 while
/// `sick` is set.
fn backend(name: &'static str, sick: Arc<AtomicBool>) -> Backend {
    Backend::start(move |req, s| {
        if req.path == "/healthz" {
            let status = if sick.load(Ordering::SeqCst) {
                503
            } else {
                200
            };
            respond(s, status, &[], b"hz");
            After::Close
        } else {
            respond(s, 200, &[], name.as_bytes());
            After::KeepAlive
        }
    })
}

/// A whole HTTP/1.1 exchange with the telemetry listener: (status, body).
fn fetch(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// The value of one series in /metrics, if present.
fn metric(t: SocketAddr, series: &str) -> Option<f64> {
    let (_, body) = fetch(t, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls /health until its body contains `part`; returns (status, body).
fn health_until(t: SocketAddr, part: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = fetch(t, "/health");
        if body.contains(part) {
            return (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "/health never said {part}: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `n` requests, each on a connection of its own (so that both
/// workers serve some); returns the bodies, after checking each is a 200.
fn answers(dao: SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let mut c = Client::connect(dao);
            let r = c.get("/");
            assert_eq!(r.status, 200, "{}", r.text());
            r.text()
        })
        .collect()
}

/// Lets every worker load a table that has the latest verdicts (they
/// refresh their copy every merge interval, 50 ms here).
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

fn up(route_upstream: &str) -> String {
    format!("dao_upstream_health_check_up{{route=\"all\",upstream=\"{route_upstream}\"}}")
}

#[test]
fn failing_upstream_is_skipped_until_it_recovers() {
    let sick = Arc::new(AtomicBool::new(false));
    let a = backend("a", sick.clone());
    let b = backend("b", Arc::new(AtomicBool::new(false)));
    let dao = start(&checked(&[a.addr, b.addr]));
    let (addr, t) = (dao.local_addr(), dao.telemetry_addr().unwrap());

    // Up from the start, and probed.
    let (status, body) = fetch(t, "/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(metric(t, &up("b0")), Some(1.0));
    let got = answers(addr, 20);
    assert!(got.iter().any(|x| x == "a") && got.iter().any(|x| x == "b"));

    sick.store(true, Ordering::SeqCst);
    let (status, body) = health_until(t, "\"b0\":\"down\"");
    assert_eq!(status, 200, "b1 still serves the route: {body}");
    assert!(body.contains("\"b1\":\"up\""), "{body}");
    assert_eq!(metric(t, &up("b0")), Some(0.0));
    assert_eq!(metric(t, &up("b1")), Some(1.0));
    let failures = metric(
        t,
        "dao_health_checks_total{route=\"all\",upstream=\"b0\",result=\"failure\"}",
    );
    assert!(failures >= Some(2.0), "{failures:?}");
    settle();
    let got = answers(addr, 20);
    assert!(got.iter().all(|x| x == "b"), "traffic reached a: {got:?}");

    sick.store(false, Ordering::SeqCst);
    health_until(t, "\"b0\":\"up\"");
    assert_eq!(metric(t, &up("b0")), Some(1.0));
    settle();
    let got = answers(addr, 20);
    assert!(
        got.iter().any(|x| x == "a"),
        "traffic never came back: {got:?}"
    );
    dao.shutdown();
}

/// A backend that closes after each answer, and stops listening (its
/// port then refuses connections) once `stop` is set.
fn closing_backend(name: &'static str, stop: Arc<AtomicBool>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    std::thread::spawn(move || {
                        let mut head = Vec::new();
                        let mut b = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut b) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&b[..n]),
                            }
                        }
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                            name.len()
                        );
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
    });
    addr
}

#[test]
fn upstream_that_stops_listening_is_marked_down() {
    let a = Backend::text("a");
    let stop = Arc::new(AtomicBool::new(false));
    let b = closing_backend("b", stop.clone());
    let dao = start(&checked(&[a.addr, b]));
    let (addr, t) = (dao.local_addr(), dao.telemetry_addr().unwrap());
    let got = answers(addr, 10);
    assert!(got.iter().any(|x| x == "b"), "{got:?}");
    let probed = "dao_health_checks_total{route=\"all\",upstream=\"b1\",result=\"success\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(t, probed) < Some(1.0) {
        assert!(Instant::now() < deadline, "b1 never probed");
        std::thread::sleep(Duration::from_millis(20));
    }

    stop.store(true, Ordering::SeqCst);
    let (status, body) = health_until(t, "\"b1\":\"down\"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(metric(t, &up("b1")), Some(0.0));
    settle();
    // Not one request tries the refusing upstream (it would be a 502).
    let got = answers(addr, 10);
    assert!(got.iter().all(|x| x == "a"), "{got:?}");
    dao.shutdown();
}

#[test]
fn route_with_every_upstream_down_still_proxies() {
    let sick = Arc::new(AtomicBool::new(true));
    let a = backend("a", sick.clone());
    let b = backend("b", sick);
    let dao = start(&checked(&[a.addr, b.addr]));
    let (addr, t) = (dao.local_addr(), dao.telemetry_addr().unwrap());
    let (status, body) = health_until(t, "{\"b0\":\"down\",\"b1\":\"down\"}");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"status\":\"degraded\""), "{body}");
    settle();
    // Panic mode: the balancer's own picks, to all rather than to none.
    let got = answers(addr, 10);
    assert!(
        got.iter().any(|x| x == "a") && got.iter().any(|x| x == "b"),
        "{got:?}"
    );
    let panics = |m: &str| {
        let series = format!("dao_upstream_panic_picks_total{{route=\"all\",upstream=\"{m}\"}}");
        metric(t, &series).unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while panics("b0") + panics("b1") < 10.0 {
        assert!(Instant::now() < deadline, "panic picks never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    dao.shutdown();
}

#[test]
fn shutdown_does_not_wait_for_a_hanging_probe() {
    // Accepts and never answers: the probe waits out its 30 s timeout.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let hang = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            held.push(s);
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let text = config(1, TELEMETRY, &[hang])
        + "[routes.rule.health_check]\npath = \"/\"\ninterval = \"1m\"\ntimeout = \"30s\"\n";
    let dao = start(&text);
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "never probed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let t0 = Instant::now();
    dao.shutdown();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

fn errors(check: &str, extra: &str) -> Vec<String> {
    let text = config(1, extra, &["127.0.0.1:9".parse().unwrap()])
        + "[routes.rule.health_check]\n"
        + check;
    dao::memory::parse(&text)
        .expect_err("should fail")
        .errors
        .into_iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect()
}

#[test]
fn bad_health_checks_name_their_field() {
    let p = "routes.rule[0].health_check";
    for (check, extra, want) in [
        ("interval = \"1s\"\n", "", format!("{p}.path: is required")),
        (
            "path = \"/h\"\ninterval = \"1s\"\ntimeout = \"1s\"\n",
            "",
            format!("{p}.timeout: must be less than the interval (1s)"),
        ),
        (
            "path = \"/h\"\nunhealthy_threshold = 0\n",
            "",
            format!("{p}.unhealthy_threshold: 0 is out of range 1..=100"),
        ),
        (
            "path = \"/h\"\nhealthy_treshold = 2\n",
            "",
            format!("{p}.healthy_treshold: unknown key"),
        ),
        (
            "path = \"/h\"\n",
            "[telemetry]\nenabled = false\n",
            format!("{p}: needs telemetry.enabled = true"),
        ),
    ] {
        let errs = errors(check, extra);
        assert!(
            errs.iter().any(|e| e.starts_with(&want)),
            "want {want} in {errs:?}"
        );
    }
}
