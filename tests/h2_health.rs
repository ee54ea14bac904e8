//! Active health checks of HTTP/2 upstreams, end to end: probes of h2c
//! upstreams (a real h2 server, the `h2` crate's on tokio, which speaks
//! nothing else) and of h2-over-TLS upstreams (a second DAO terminating
//! TLS with ALPN h2 only) are HTTP/2 requests; an upstream whose probe
//! answers 503, or that stops listening, goes down and gets no traffic
//! until it recovers; gRPC checks (`grpc_service`) call a real grpcio
//! server's `grpc.health.v1.Health/Check` and pass on SERVING alone.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::pki::Pki;
use common::tls_backend::{Mode, TlsBackend};
use common::*;
use http::Response;

const TELEMETRY: &str =
    "[telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 50\nwindow = \"30s\"\n";

/// Probes every 200 ms; two results in a row move the verdict.
const PACE: &str = "interval = \"200ms\"\ntimeout = \"150ms\"\nhealthy_threshold = 2\n\
     unhealthy_threshold = 2\n";

/// A probe as an h2 server saw it: `:authority`, `:path`, user-agent.
type Probe = (String, String, String);

/// A real h2c server (prior knowledge only) answering its name, and
/// `/healthz` with 200, or 503 while `sick` is set; it stops accepting
/// (its port refuses) once `gone` is set.
struct H2Backend {
    addr: SocketAddr,
    sick: Arc<AtomicBool>,
    gone: Arc<AtomicBool>,
    probes: Arc<Mutex<Vec<Probe>>>,
}

impl H2Backend {
    fn start(name: &'static str) -> H2Backend {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let sick = Arc::new(AtomicBool::new(false));
        let gone = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(Mutex::new(Vec::new()));
        let (s, g, p) = (sick.clone(), gone.clone(), probes.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let accepted =
                        tokio::time::timeout(Duration::from_millis(20), listener.accept()).await;
                    if g.load(Ordering::SeqCst) {
                        // Dropping the listener closes the port.
                        return;
                    }
                    if let Ok(Ok((tcp, _))) = accepted {
                        tokio::spawn(serve(tcp, name, s.clone(), p.clone()));
                    }
                }
            });
        });
        H2Backend {
            addr,
            sick,
            gone,
            probes,
        }
    }

    fn probes(&self) -> Vec<Probe> {
        self.probes.lock().unwrap().clone()
    }
}

async fn serve(
    tcp: tokio::net::TcpStream,
    name: &'static str,
    sick: Arc<AtomicBool>,
    probes: Arc<Mutex<Vec<Probe>>>,
) {
    let Ok(mut conn) = h2::server::handshake(tcp).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        let path = req.uri().path().to_string();
        let status = if path == "/healthz" {
            let authority = req.uri().authority().map(|a| a.to_string());
            let agent = req.headers().get("user-agent").map(|v| v.to_str().unwrap());
            probes.lock().unwrap().push((
                authority.unwrap_or_default(),
                path.clone(),
                agent.unwrap_or_default().to_string(),
            ));
            if sick.load(Ordering::SeqCst) {
                503
            } else {
                200
            }
        } else {
            200
        };
        let resp = Response::builder().status(status).body(()).unwrap();
        if let Ok(mut body) = respond.send_response(resp, false) {
            let _ = body.send_data(Bytes::from_static(name.as_bytes()), true);
        }
    }
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

/// Polls /health until its body contains `part`; returns it.
fn health_until(t: SocketAddr, part: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = fetch(t, "/health");
        if body.contains(part) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/health never said {part}: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls /metrics until `series` is at least `want`.
fn metric_reaches(t: SocketAddr, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = fetch(t, "/metrics");
        let value: Option<f64> = body
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok());
        if value >= Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}: {value:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn checks(upstream: &str, result: &str) -> String {
    format!("dao_health_checks_total{{route=\"all\",upstream=\"{upstream}\",result=\"{result}\"}}")
}

/// `n` requests, each on a connection of its own (so that both workers
/// serve some); the bodies, after checking each is a 200.
fn answers(dao: SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = Client::connect(dao).get("/");
            assert_eq!(r.status, 200, "{}", r.text());
            r.text()
        })
        .collect()
}

/// Lets every worker load a table with the latest verdicts.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

/// DAO (2 workers) with route "all" over `upstreams` (TOML of each
/// `[[routes.rule.upstreams]]` body, named b0, b1, …) and `check`.
fn dao(upstreams: &[String], check: &str) -> Server {
    let mut text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 2\n{TELEMETRY}\n\
         [[routes.rule]]\nname = \"all\"\n[routes.rule.health_check]\n{check}\n"
    );
    for (i, u) in upstreams.iter().enumerate() {
        text += &format!("[[routes.rule.upstreams]]\nname = \"b{i}\"\n{u}\n");
    }
    start(&text)
}

fn h2c(addr: SocketAddr) -> String {
    format!("url = \"http://{addr}\"\nprotocol = \"h2c\"")
}

#[test]
fn h2c_upstreams_are_probed_over_http2() {
    let a = H2Backend::start("a");
    let b = H2Backend::start("b");
    let check = format!("path = \"/healthz\"\n{PACE}");
    let dao = dao(&[h2c(a.addr), h2c(b.addr)], &check);
    let (addr, t) = (dao.local_addr(), dao.telemetry_addr().unwrap());

    // Passing probes (these servers speak nothing but HTTP/2).
    metric_reaches(t, &checks("b0", "success"), 2.0);
    metric_reaches(t, &checks("b1", "success"), 2.0);
    let body = health_until(t, "\"b0\":\"up\"");
    assert!(body.contains("\"b1\":\"up\""), "{body}");
    let probe = a.probes().pop().unwrap();
    assert_eq!(
        probe,
        (a.addr.to_string(), "/healthz".into(), "dao-health".into())
    );
    let got = answers(addr, 20);
    assert!(got.iter().any(|x| x == "a") && got.iter().any(|x| x == "b"));

    // 503: down, and no traffic.
    a.sick.store(true, Ordering::SeqCst);
    let body = health_until(t, "\"b0\":\"down\"");
    assert!(body.contains("\"b1\":\"up\""), "{body}");
    settle();
    let got = answers(addr, 20);
    assert!(got.iter().all(|x| x == "b"), "traffic reached a: {got:?}");

    // Healthy again: back in the choice.
    a.sick.store(false, Ordering::SeqCst);
    health_until(t, "\"b0\":\"up\"");
    settle();
    let got = answers(addr, 20);
    assert!(got.iter().any(|x| x == "a"), "a got no traffic: {got:?}");

    // A port that refuses: down too.
    b.gone.store(true, Ordering::SeqCst);
    health_until(t, "\"b1\":\"down\"");
    settle();
    let got = answers(addr, 10);
    assert!(got.iter().all(|x| x == "a"), "{got:?}");
    dao.shutdown();
}

#[test]
fn an_http1_server_fails_h2c_probes() {
    // An h2c upstream that in fact speaks HTTP/1.1 answers the HTTP/2
    // preface with nothing a probe accepts.
    let h1 = Backend::text("h1");
    let good = H2Backend::start("good");
    let check = format!("path = \"/healthz\"\n{PACE}");
    let dao = dao(&[h2c(h1.addr), h2c(good.addr)], &check);
    let t = dao.telemetry_addr().unwrap();
    let body = health_until(t, "\"b0\":\"down\"");
    assert!(body.contains("\"b1\":\"up\""), "{body}");
    dao.shutdown();
}

#[test]
fn a_reload_that_changes_the_protocol_restarts_the_checks() {
    // First declared HTTP/1.1: its probes fail on an HTTP/2-only server.
    let a = H2Backend::start("a");
    let plain = Backend::text("plain");
    let check = format!("path = \"/healthz\"\n{PACE}");
    let b1 = format!("url = \"http://{}\"", plain.addr);
    let dao = dao(
        &[format!("url = \"http://{}\"", a.addr), b1.clone()],
        &check,
    );
    let t = dao.telemetry_addr().unwrap();
    health_until(t, "\"b0\":\"down\"");
    assert!(a.probes().is_empty());
    // The same address as h2c: probed over HTTP/2 from now on.
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 2\n{TELEMETRY}\n\
         [[routes.rule]]\nname = \"all\"\n[routes.rule.health_check]\n{check}\n\
         [[routes.rule.upstreams]]\nname = \"b0\"\n{}\n\
         [[routes.rule.upstreams]]\nname = \"b1\"\n{b1}\n",
        h2c(a.addr)
    );
    let v = dao.reloads().reload(Some(text)).unwrap();
    assert_eq!(v["changed"], true, "{v}");
    health_until(t, "\"b0\":\"up\"");
    assert!(!a.probes().is_empty());
    dao.shutdown();
}

/// A second DAO terminating TLS with ALPN `h2` only, in front of a plain
/// backend: an upstream that speaks HTTP/2 over TLS and nothing else.
fn h2_tls_front(pki: &Pki, backend: SocketAddr) -> Server {
    start(&format!(
        "[server]\nworkers = 1\n\
         [[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n\
         certificates = [{{ cert = \"{}\", key = \"{}\" }}]\nalpn = [\"h2\"]\n\
         [[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"b\"\nurl = \"http://{}\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        backend
    ))
}

#[test]
fn h2_upstreams_over_tls_are_probed_over_http2() {
    let pki = Pki::new("h2-health");
    let sick = Arc::new(AtomicBool::new(false));
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let (s, h) = (sick.clone(), hosts.clone());
    let backend = Backend::start(move |req, stream| {
        if req.path == "/healthz" {
            h.lock()
                .unwrap()
                .push(req.header("host").unwrap_or("").to_string());
            let status = if s.load(Ordering::SeqCst) { 503 } else { 200 };
            respond(stream, status, &[], b"hz");
        } else {
            respond(stream, 200, &[], b"tls");
        }
        After::KeepAlive
    });
    let front = h2_tls_front(&pki, backend.addr);
    let port = front.listener_addrs()[0].port();
    let plain = Backend::text("plain");
    let tls = format!(
        "url = \"https://localhost:{port}\"\nprotocol = \"h2\"\n\
         [routes.rule.upstreams.tls]\nca = \"{}\"",
        pki.path("ca.pem")
    );
    // The route mixes HTTP/2 over TLS and HTTP/1.1: each probed its way;
    // `host` sets the HTTP/2 probe's :authority (which the front passes
    // on as Host).
    let check = format!("path = \"/healthz\"\nhost = \"svc.dao.test\"\n{PACE}");
    let dao = dao(&[tls, format!("url = \"http://{}\"", plain.addr)], &check);
    let (addr, t) = (dao.local_addr(), dao.telemetry_addr().unwrap());
    metric_reaches(t, &checks("b0", "success"), 2.0);
    metric_reaches(t, &checks("b1", "success"), 2.0);
    assert_eq!(hosts.lock().unwrap()[0], "svc.dao.test");
    let got = answers(addr, 20);
    assert!(got.iter().any(|x| x == "tls") && got.iter().any(|x| x == "plain"));

    sick.store(true, Ordering::SeqCst);
    let body = health_until(t, "\"b0\":\"down\"");
    assert!(body.contains("\"b1\":\"up\""), "{body}");
    settle();
    let got = answers(addr, 20);
    assert!(got.iter().all(|x| x == "plain"), "{got:?}");

    sick.store(false, Ordering::SeqCst);
    health_until(t, "\"b0\":\"up\"");
    settle();
    let got = answers(addr, 20);
    assert!(got.iter().any(|x| x == "tls"), "{got:?}");
    dao.shutdown();
    front.shutdown();
}

#[test]
fn tls_upstreams_that_do_not_choose_h2_fail_h2_probes() {
    // The handshake completes, but with no ALPN protocol chosen: the
    // probe sends no request (an HTTP/1.1 one would pass here).
    let pki = Pki::new("h2-health-alpn");
    let no_alpn = TlsBackend::start(&pki, &[], false, Mode::Http);
    let plain = Backend::text("plain");
    let tls = format!(
        "url = \"https://localhost:{}\"\nprotocol = \"h2\"\n\
         [routes.rule.upstreams.tls]\nca = \"{}\"",
        no_alpn.addr.port(),
        pki.path("ca.pem")
    );
    let check = format!("path = \"/healthz\"\n{PACE}");
    let dao = dao(&[tls, format!("url = \"http://{}\"", plain.addr)], &check);
    let t = dao.telemetry_addr().unwrap();
    let body = health_until(t, "\"b0\":\"down\"");
    assert!(body.contains("\"b1\":\"up\""), "{body}");
    let hellos = no_alpn.hellos();
    assert!(hellos.len() >= 2, "{hellos:?}");
    assert_eq!(hellos[0].alpn, None);
    assert_eq!(no_alpn.request_count(), 0);
    dao.shutdown();
}

/// `tests/grpc/health_server.py`, stopped when dropped.
struct HealthServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl HealthServer {
    /// Started, or `None` (the test skips) where python3 or grpcio is
    /// missing and the tools are not required.
    fn start() -> Option<HealthServer> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/health_server.py");
        let mut child = match Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return missing(&format!("python3: {e}")),
        };
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let _ = child.wait();
            return missing("grpcio (pip install grpcio)");
        };
        Some(HealthServer {
            stdin: child.stdin.take(),
            child,
            stdout,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    /// Sets `service`'s status (SERVING, NOT_SERVING, GONE).
    fn set(&mut self, service: &str, status: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{service} {status}").unwrap();
        stdin.flush().unwrap();
        let mut ack = String::new();
        self.stdout.read_line(&mut ack).unwrap();
        assert_eq!(ack.trim(), "ok");
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        // Closing its standard input ends it.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn missing<T>(what: &str) -> Option<T> {
    assert!(
        std::env::var_os("DAO_REQUIRE_TOOLS").is_none(),
        "{what} is required"
    );
    eprintln!("skipped: {what} is not available");
    None
}

#[test]
fn grpc_checks_pass_on_serving_alone() {
    let Some(mut server) = HealthServer::start() else {
        return;
    };
    server.set("dao.test.Echo", "SERVING");
    // Two routes on the one server: the whole server, and one service.
    let route = |name: &str, service: &str| {
        format!(
            "[[routes.rule]]\nname = \"{name}\"\n[routes.rule.match]\nhost = \"{name}.test\"\n\
             [routes.rule.health_check]\ngrpc_service = \"{service}\"\n{PACE}\n\
             [[routes.rule.upstreams]]\nname = \"py-{name}\"\n{}\n",
            h2c(server.addr)
        )
    };
    let dao = start(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n{TELEMETRY}\n{}{}",
        route("whole", ""),
        route("echo", "dao.test.Echo")
    ));
    let t = dao.telemetry_addr().unwrap();
    let series = |route: &str, result: &str| {
        format!(
            "dao_health_checks_total{{route=\"{route}\",upstream=\"py-{route}\",result=\"{result}\"}}"
        )
    };
    metric_reaches(t, &series("whole", "success"), 2.0);
    metric_reaches(t, &series("echo", "success"), 2.0);

    // NOT_SERVING: down (the whole server still serves).
    server.set("dao.test.Echo", "NOT_SERVING");
    let body = health_until(t, "\"py-echo\":\"down\"");
    assert!(body.contains("\"py-whole\":\"up\""), "{body}");
    server.set("dao.test.Echo", "SERVING");
    health_until(t, "\"py-echo\":\"up\"");

    // An unknown service: the call fails (grpc-status NOT_FOUND).
    server.set("dao.test.Echo", "GONE");
    health_until(t, "\"py-echo\":\"down\"");
    server.set("dao.test.Echo", "SERVING");
    health_until(t, "\"py-echo\":\"up\"");

    // The server as a whole.
    server.set("", "NOT_SERVING");
    health_until(t, "\"py-whole\":\"down\"");
    dao.shutdown();
}
