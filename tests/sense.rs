//! Sense end to end: after a known mix of requests over real sockets, the
//! Prometheus text, /health and the resonance table say exactly that.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// A whole HTTP/1.1 exchange with the telemetry listener: (status, body).
fn fetch(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// Parses the exposition into `series → value`, checking every line's
/// shape and that each family was declared by `# TYPE` before its samples.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut typed: Vec<String> = Vec::new();
    let mut out = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap();
            let kind = it.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary"].contains(&kind),
                "{line}"
            );
            assert!(!typed.iter().any(|t| t == name), "declared twice: {name}");
            typed.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.iter().any(|t| t == f))
            .unwrap_or(name);
        assert!(typed.iter().any(|t| t == family), "no TYPE for {line}");
        assert!(
            out.insert(series.to_string(), value).is_none(),
            "duplicate series {series}"
        );
    }
    out
}

/// Polls /metrics until `done` holds (the merge runs every interval).
fn metrics_until(
    addr: SocketAddr,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = fetch(addr, "GET", "/metrics");
        assert_eq!(status, 200);
        let m = parse_metrics(&body);
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "metrics never settled:\n{body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sum_of(m: &HashMap<String, f64>, prefix: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

const TELEMETRY: &str =
    "[telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 50\nwindow = \"30s\"\n";

fn two_routes(good: SocketAddr, dead: SocketAddr) -> String {
    format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 2\n{TELEMETRY}\
         [[routes.rule]]\nname = \"api\"\n[routes.rule.match]\nhost = \"api.test\"\n\
         [[routes.rule.upstreams]]\nname = \"good\"\nurl = \"http://{good}\"\n\
         [[routes.rule]]\nname = \"dead\"\n[routes.rule.match]\nhost = \"dead.test\"\n\
         [[routes.rule.upstreams]]\nname = \"gone\"\nurl = \"http://{dead}\"\n"
    )
}

/// One request on a connection of its own (so that both workers get some),
/// returning the status.
fn one(dao: SocketAddr, raw: &str) -> u16 {
    let mut c = Client::connect(dao);
    c.send(raw.as_bytes());
    c.read(false).status
}

#[test]
fn metrics_and_health_report_exactly_what_was_served() {
    let backend = Backend::start(|req, s| {
        let status = if req.path == "/fail" { 500 } else { 200 };
        respond(s, status, &[], b"hello");
        After::KeepAlive
    });
    let dao = start(&two_routes(backend.addr, dead_addr()));
    let (addr, t) = (dao.local_addr(), dao.telemetry_addr().unwrap());

    // Healthy before any traffic: unknown is not down.
    let (status, body) = fetch(t, "GET", "/health");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"dependencies\":{\"gone\":\"up\",\"good\":\"up\"}"),
        "{body}"
    );

    let get = |host: &str, path: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    for _ in 0..30 {
        assert_eq!(one(addr, &get("api.test", "/ok")), 200);
    }
    for _ in 0..5 {
        assert_eq!(one(addr, &get("api.test", "/fail")), 500);
    }
    for _ in 0..4 {
        let post = "POST /up HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(one(addr, post), 200);
    }
    for _ in 0..3 {
        assert_eq!(one(addr, &get("dead.test", "/")), 502);
    }
    for _ in 0..6 {
        assert_eq!(one(addr, &get("nowhere.test", "/")), 404);
    }
    for _ in 0..2 {
        assert_eq!(one(addr, "GET /\0 HTTP/1.1\r\n\r\n"), 400);
    }
    // Keep-alive: several requests on one connection count one by one.
    let mut c = Client::connect(addr);
    for _ in 0..7 {
        c.send(get("api.test", "/ok").as_bytes());
        assert_eq!(c.read(false).status, 200);
    }
    let total = 30.0 + 5.0 + 4.0 + 3.0 + 6.0 + 2.0 + 7.0;

    let m = metrics_until(t, |m| sum_of(m, "dao_worker_requests_total") == total);
    let req = |route: &str, up: &str, method: &str, status: u16| {
        m.get(&format!(
            "http_requests_total{{route=\"{route}\",upstream=\"{up}\",method=\"{method}\",status=\"{status}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    assert_eq!(req("api", "good", "GET", 200), 37.0);
    assert_eq!(req("api", "good", "GET", 500), 5.0);
    assert_eq!(req("api", "good", "POST", 200), 4.0);
    assert_eq!(req("dead", "gone", "GET", 502), 3.0);
    assert_eq!(req("-", "-", "GET", 404), 6.0);
    assert_eq!(req("-", "-", "OTHER", 400), 2.0);
    assert_eq!(sum_of(&m, "http_requests_total{"), total);

    let api = "{route=\"api\",upstream=\"good\"";
    assert_eq!(
        m[&format!("http_request_duration_seconds_count{api}}}")],
        46.0
    );
    assert_eq!(
        m[&format!("http_request_duration_seconds_bucket{api},le=\"+Inf\"}}")],
        46.0
    );
    let sum = m[&format!("http_request_duration_seconds_sum{api}}}")];
    assert!(sum > 0.0 && sum < 46.0, "{sum}");
    // Buckets are cumulative.
    let b1 = m[&format!("http_request_duration_seconds_bucket{api},le=\"0.001\"}}")];
    let b2 = m[&format!("http_request_duration_seconds_bucket{api},le=\"0.01\"}}")];
    assert!(b1 <= b2 && b2 <= 46.0);
    let dead = "{route=\"dead\",upstream=\"gone\"";
    assert_eq!(
        m[&format!("dao_upstream_failures_total{dead},kind=\"connect\"}}")],
        3.0
    );
    assert_eq!(m[&format!("dao_upstream_up{dead}}}")], 0.0);
    assert_eq!(m[&format!("dao_upstream_up{api}}}")], 1.0);
    assert_eq!(m[&format!("dao_upstream_error_rate{dead}}}")], 1.0);
    let api_errors = m[&format!("dao_upstream_error_rate{api}}}")];
    assert!((api_errors - 5.0 / 46.0).abs() < 1e-9, "{api_errors}");
    // Bytes: each POST brought its 3 body bytes on top of its head.
    let received = m[&format!("dao_received_bytes_total{api}}}")];
    assert!(received > 12.0, "{received}");
    assert!(m[&format!("dao_sent_bytes_total{api}}}")] > 46.0 * 5.0);
    assert!(m["dao_resonance_epoch"] >= 1.0);
    for w in 0..2 {
        let n = m[&format!("dao_worker_requests_total{{worker=\"{w}\"}}")];
        assert!(n > 0.0, "worker {w} served nothing: {n}");
    }
    // The keep-alive client is still connected.
    assert!(m["active_connections"] >= 1.0);

    // The dead route has no usable upstream: degraded.
    let (status, body) = fetch(t, "GET", "/health");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("{\"status\":\"degraded\",\"service\":\"dao\",\"version\":\""),
        "{body}"
    );
    assert!(body.contains("\"uptime\":"), "{body}");
    assert!(
        body.ends_with("\"dependencies\":{\"gone\":\"down\",\"good\":\"up\"}}"),
        "{body}"
    );

    assert_eq!(fetch(t, "POST", "/metrics").0, 405);
    assert_eq!(fetch(t, "GET", "/nope").0, 404);
    let (status, body) = fetch(t, "HEAD", "/health");
    assert_eq!((status, body.as_str()), (503, ""));
    drop(c);
    dao.shutdown();
}

#[test]
fn slow_upstream_raises_p95_and_load_resonance() {
    let fast = Backend::text("fast");
    let slow = Backend::start(|_, s| {
        std::thread::sleep(Duration::from_millis(60));
        respond(s, 200, &[], b"slow");
        After::KeepAlive
    });
    let text = config(1, TELEMETRY, &[fast.addr, slow.addr]);
    let dao = start(&text);
    let addr = dao.local_addr();
    let before = dao.resonance().unwrap().epoch;
    // Round robin: half the requests each, from 8 concurrent clients.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..6 {
                    assert_eq!(c.get("/").status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let finished = dao.resonance().unwrap().epoch;
    // Within a few intervals of the last response, the table shows it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let table = loop {
        let t = dao.resonance().unwrap();
        let n: u64 = t.upstreams.iter().map(|u| u.window_requests).sum();
        if n == 48 {
            break t;
        }
        assert!(Instant::now() < deadline, "never merged: {n}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(table.epoch > before);
    assert!(
        table.epoch <= finished + 3,
        "took {} intervals after the last response",
        table.epoch - finished
    );
    let f = table.get("all", "b0").unwrap();
    let s = table.get("all", "b1").unwrap();
    assert!(s.p95_us >= 60_000, "slow p95 {}", s.p95_us);
    assert!(f.p95_us < 30_000, "fast p95 {}", f.p95_us);
    assert!(s.p50_us >= 60_000 && s.p99_us >= s.p95_us);
    assert!(
        s.load_resonance > f.load_resonance + 0.05,
        "slow {} vs fast {}",
        s.load_resonance,
        f.load_resonance
    );
    assert_eq!(s.error_rate, 0.0);
    assert!(s.rps > 0.0 && f.rps > 0.0);
    assert_eq!(s.in_flight + f.in_flight, 0, "all requests finished");
    dao.shutdown();
}

#[test]
fn access_log_lines_and_request_ids() {
    let backend = Backend::text("ok");
    let dir = std::env::temp_dir().join(format!("dao-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let _ = std::fs::remove_file(&log);
    let extra = format!(
        "[telemetry]\naccess_log = true\naccess_log_path = \"{}\"\n",
        log.display()
    );
    let dao = start(&config(1, &extra, &[backend.addr]));
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/first?q=1").status, 200);
    let generated = backend
        .last_request()
        .header("x-request-id")
        .unwrap()
        .to_string();
    assert_eq!(generated.len(), 32);
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
    c.send(b"GET /second HTTP/1.1\r\nHost: t\r\nX-Request-Id: client-id-7\r\n\r\n");
    assert_eq!(c.read(false).status, 200);
    let seen = backend.last_request();
    assert_eq!(
        seen.headers_named("x-request-id"),
        ["client-id-7"],
        "kept, not doubled"
    );
    c.send(b"GET /third HTTP/1.1\r\nHost: t\r\n\r\n");
    let third = c.read(false);
    assert_eq!(third.status, 200);
    let generated2 = backend
        .last_request()
        .header("x-request-id")
        .unwrap()
        .to_string();
    assert_ne!(generated, generated2);
    drop(c);
    // Shutdown flushes the buffered lines.
    dao.shutdown();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, (id, path)) in lines.iter().zip([
        (generated.as_str(), "/first?q=1"),
        ("client-id-7", "/second"),
        (generated2.as_str(), "/third"),
    ]) {
        assert!(line.starts_with("{\"timestamp\":\"20"), "{line}");
        for field in [
            "\"level\":\"info\"".to_string(),
            "\"service\":\"dao\"".to_string(),
            "\"message\":\"request\"".to_string(),
            format!("\"request_id\":\"{id}\""),
            "\"method\":\"GET\"".to_string(),
            format!("\"path\":\"{path}\""),
            "\"route\":\"all\"".to_string(),
            "\"upstream\":\"b0\"".to_string(),
            "\"status\":200".to_string(),
            "\"client\":\"127.0.0.1\"".to_string(),
        ] {
            assert!(line.contains(&field), "{field} missing in {line}");
        }
        assert!(line.contains("\"duration_us\":") && line.contains("\"bytes\":"));
        assert!(line.ends_with('}'));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn request_ids_can_be_turned_off_and_sense_disabled() {
    let backend = Backend::text("ok");
    let extra = "[telemetry]\nenabled = false\nrequest_id = false\n";
    let dao = start(&config(1, extra, &[backend.addr]));
    assert!(dao.resonance().is_none());
    assert!(dao.telemetry_addr().is_none());
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/").status, 200);
    assert_eq!(backend.last_request().header("x-request-id"), None);
    drop(c);
    dao.shutdown();
}
