//! TLS observability end to end: handshakes counted in /metrics by
//! listener, version and ALPN (curl and a rustls client, resumption
//! included), failed handshakes by reason (timeout, EOF, garbage, unknown
//! SNI, refused client certificates, an alert, no common ALPN), and the
//! client certificate header (`client_cert_header`) an upstream gets: set
//! from the verified certificate over HTTP/1.1 and HTTP/2, and a forged
//! one always stripped.
//!
//! `.ci/run` sets `DAO_REQUIRE_TOOLS=1`: there a missing curl, openssl or
//! promtool fails the tests instead of skipping them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::pki::{connect_with, Pki, TlsClient};
use common::{respond, tool, wait_metric, After, Backend, Server};

/// The admin API's token in these tests.
const TOKEN: &str = "tls-telemetry-token-0123";

/// DAO with one worker, the admin API and telemetry merged every 50 ms: a plain listener
/// first when `plain`, then a TLS listener (server.pem) with the
/// `[listeners.tls]` keys `extra` (`DIR`: the PKI's directory).
fn start(pki: &Pki, backend: &Backend, plain: bool, extra: &str) -> Server {
    let bind = if plain { "bind = \"127.0.0.1:0\"" } else { "" };
    common::start(&format!(
        "[server]\nworkers = 1\n{bind}\n\
         [telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 50\n\
         [admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\
         [[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n\
         certificates = [{{ cert = \"{}\", key = \"{}\" }}]\n{}\n\
         [[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"up\"\nurl = \"http://{}\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        extra.replace("DIR", pki.dir.to_str().unwrap()),
        backend.addr
    ))
}

/// The TLS listener's address (the last one).
fn tls_addr(dao: &Server) -> SocketAddr {
    *dao.listener_addrs().last().unwrap()
}

/// curl for `https://{host}:{port}{path}` (resolved to DAO), trusting the
/// test CA unless `more` says otherwise; `--silent --show-error`, 10 s.
fn curl(pki: &Pki, addr: SocketAddr, host: &str, path: &str, more: &[&str]) -> Output {
    let port = addr.port();
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{path}");
    let ca = pki.path("ca.pem");
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(["--cacert", &ca, "--resolve", &resolve])
        .args(more)
        .arg(&url)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One GET on a TLS connection; the response's body.
fn get(tls: &mut TlsClient, extra: &str) -> String {
    write!(tls, "GET / HTTP/1.1\r\nHost: a\r\n{extra}\r\n").unwrap();
    tls.flush().unwrap();
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("a Content-Length");
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tls.read(&mut chunk).expect("a response");
        assert!(n > 0, "closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A handshake the server refuses: the client's first read fails or ends.
fn refused(mut tls: TlsClient) {
    let _ = tls.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let _ = tls.flush();
    let mut b = [0u8; 64];
    assert!(
        !matches!(tls.read(&mut b), Ok(n) if n > 0),
        "the handshake went through"
    );
}

/// The `dao_tls_handshakes_total` series of a listener.
fn handshakes(addr: SocketAddr, version: &str, alpn: &str) -> String {
    format!("dao_tls_handshakes_total{{listener=\"{addr}\",version=\"{version}\",alpn=\"{alpn}\"}}")
}

/// The `dao_tls_handshake_failures_total` series of a listener.
fn failures(addr: SocketAddr, reason: &str) -> String {
    format!("dao_tls_handshake_failures_total{{listener=\"{addr}\",reason=\"{reason}\"}}")
}

/// The admin API's `GET /api/v1/status`.
fn admin_status(dao: &Server) -> serde_json::Value {
    let mut c = common::Client::connect(dao.admin_addr().unwrap());
    c.send(
        format!("GET /api/v1/status HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    );
    let r = c.read(false);
    assert_eq!(r.status, 200);
    serde_json::from_str(&r.text()).unwrap()
}

/// /metrics, whole.
fn metrics(dao: &Server) -> String {
    common::Client::connect(dao.telemetry_addr().unwrap())
        .get("/metrics")
        .text()
}

#[test]
fn handshakes_are_counted_by_version_alpn_and_resumption() {
    if !tool("curl") {
        return;
    }
    let pki = Pki::new("obs-ok");
    let backend = Backend::text("ok");
    let dao = start(&pki, &backend, false, "alpn = [\"h2\", \"http/1.1\"]");
    let addr = tls_addr(&dao);
    let o = curl(
        &pki,
        addr,
        "localhost",
        "/",
        &["--tls-max", "1.2", "--http1.1"],
    );
    assert_eq!(text(&o), "ok", "{}", err(&o));
    for _ in 0..2 {
        let o = curl(
            &pki,
            addr,
            "localhost",
            "/",
            &["--tlsv1.3", "--http2", "-w", "|%{http_version}"],
        );
        assert_eq!(text(&o), "ok|2", "{}", err(&o));
    }
    // A rustls client offering no ALPN, twice with one session cache: the
    // second handshake resumes (a TLS 1.3 ticket from the first).
    let config = pki.client_config(None, &[]);
    for _ in 0..2 {
        let mut c = connect_with(&config, addr, "localhost");
        assert_eq!(get(&mut c, ""), "ok");
    }
    wait_metric(&dao, &handshakes(addr, "TLSv1.2", "http/1.1"), 1.0);
    wait_metric(&dao, &handshakes(addr, "TLSv1.3", "h2"), 2.0);
    wait_metric(&dao, &handshakes(addr, "TLSv1.3", "none"), 2.0);
    wait_metric(&dao, &handshakes(addr, "TLSv1.3", "http/1.1"), 0.0);
    wait_metric(&dao, &handshakes(addr, "TLSv1.2", "h2"), 0.0);
    wait_metric(
        &dao,
        &format!("dao_tls_resumed_total{{listener=\"{addr}\"}}"),
        1.0,
    );
    let count = format!("dao_tls_handshake_duration_seconds_count{{listener=\"{addr}\"}}");
    wait_metric(&dao, &count, 5.0);
    wait_metric(
        &dao,
        &format!("dao_tls_handshake_duration_seconds_bucket{{listener=\"{addr}\",le=\"+Inf\"}}"),
        5.0,
    );
    wait_metric(
        &dao,
        &format!("dao_tls_client_certificates_total{{listener=\"{addr}\"}}"),
        0.0,
    );
    // The admin status has the totals.
    assert_eq!(
        admin_status(&dao)["tls"],
        serde_json::json!({"handshakes": 5, "resumed": 1, "client_certificates": 0, "failures": 0})
    );
    let text = metrics(&dao);
    assert!(
        text.contains("# TYPE dao_tls_handshake_duration_seconds histogram\n"),
        "{text}"
    );
    let sum = format!("dao_tls_handshake_duration_seconds_sum{{listener=\"{addr}\"}} ");
    let sum: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&sum))
        .unwrap()
        .parse()
        .unwrap();
    assert!(sum > 0.0 && sum < 50.0, "{sum}");
    if tool("promtool") {
        let mut p = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dao.shutdown();
}

#[test]
fn failed_handshakes_are_counted_by_reason() {
    if !tool("curl") {
        return;
    }
    let pki = Pki::new("obs-fail");
    let backend = Backend::text("ok");
    let dao = start(
        &pki,
        &backend,
        false,
        "handshake_timeout = \"300ms\"\nsni_strict = true\nclient_ca = \"DIR/ca.pem\"\nalpn = [\"http/1.1\"]",
    );
    let addr = tls_addr(&dao);
    // Silent until the timeout closes it.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(silent.read(&mut [0u8; 8]).unwrap_or(0), 0);
    // Gone before saying anything.
    drop(TcpStream::connect(addr).unwrap());
    // Plain HTTP on the TLS port.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let _ = plain.read_to_end(&mut Vec::new());
    // A name no certificate serves, strict.
    let o = curl(&pki, addr, "unknown.example", "/", &["-k"]);
    assert!(!o.status.success());
    // No client certificate, then one of another CA.
    let o = curl(&pki, addr, "localhost", "/", &[]);
    assert!(!o.status.success(), "no client certificate got through");
    refused(connect_with(
        &pki.client_config(Some("rogue"), &[]),
        addr,
        "localhost",
    ));
    // A client that does not trust DAO's certificate says so (an alert).
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let rogue_ca = pki.path("rogue-ca.pem");
    let o = curl(
        &pki,
        addr,
        "localhost",
        "/",
        &["--cacert", &rogue_ca, "--cert", &cert, "--key", &key],
    );
    assert!(!o.status.success(), "{}", text(&o));
    // Only h2 offered; the listener speaks HTTP/1.1 only.
    refused(connect_with(
        &pki.client_config(Some("client"), &["h2"]),
        addr,
        "localhost",
    ));
    for (reason, n) in [
        ("timeout", 1.0),
        ("eof", 1.0),
        ("protocol", 1.0),
        ("unknown_sni", 1.0),
        ("client_cert", 2.0),
        ("alert", 1.0),
        ("incompatible", 1.0),
        ("io", 0.0),
    ] {
        wait_metric(&dao, &failures(addr, reason), n);
    }
    // And one that gets through, with its certificate counted.
    let mut ok = connect_with(&pki.client_config(Some("client"), &[]), addr, "localhost");
    assert_eq!(get(&mut ok, ""), "ok");
    wait_metric(&dao, &handshakes(addr, "TLSv1.3", "none"), 1.0);
    wait_metric(
        &dao,
        &format!("dao_tls_client_certificates_total{{listener=\"{addr}\"}}"),
        1.0,
    );
    dao.shutdown();
}

/// The header value DAO documents for the test PKI's `client`
/// certificate: its DER's SHA-256 computed here.
fn expected_client_cert(pki: &Pki) -> String {
    let hash: String = ring::digest::digest(&ring::digest::SHA256, &pki.der("client"))
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("Hash={hash};Subject=\"CN=client\";DNS=client.dao.test")
}

#[test]
fn verified_client_certificates_reach_the_upstream_and_forgeries_do_not() {
    if !tool("curl") {
        return;
    }
    let pki = Pki::new("obs-xfcc");
    let backend = Backend::start(|req, s| {
        let seen = req.headers_named("x-client-cert").join(" | ");
        respond(s, 200, &[], seen.as_bytes());
        After::KeepAlive
    });
    let dao = start(
        &pki,
        &backend,
        true,
        "alpn = [\"h2\", \"http/1.1\"]\nclient_ca = \"DIR/ca.pem\"\n\
         client_auth = \"optional\"\nclient_cert_header = \"X-Client-Cert\"",
    );
    let addr = tls_addr(&dao);
    let want = expected_client_cert(&pki);
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let forged = "X-Client-Cert: Hash=0000;Subject=\"CN=admin\"";
    // HTTP/1.1 and HTTP/2, with a forged header beside the certificate:
    // the upstream sees DAO's header alone.
    for (proto, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let o = curl(
            &pki,
            addr,
            "localhost",
            "/",
            &[
                proto,
                "--cert",
                &cert,
                "--key",
                &key,
                "-H",
                forged,
                "-w",
                "|%{http_version}",
            ],
        );
        assert_eq!(text(&o), format!("{want}|{version}"), "{}", err(&o));
        // No certificate (optional): no header at all.
        let o = curl(
            &pki,
            addr,
            "localhost",
            "/",
            &[proto, "-H", forged, "-w", "|%{http_version}"],
        );
        assert_eq!(text(&o), format!("|{version}"), "{}", err(&o));
    }
    // Every request of a kept-alive connection carries it, in any case of
    // the forged name.
    let mut c = connect_with(&pki.client_config(Some("client"), &[]), addr, "localhost");
    assert_eq!(get(&mut c, "x-CLIENT-cert: forged\r\n"), want);
    assert_eq!(get(&mut c, ""), want);
    // A plain listener beside the TLS one strips it as well.
    let plain = dao.listener_addrs()[0];
    let mut p = common::Client::connect(plain);
    p.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Client-Cert: Hash=forged\r\n\r\n");
    let r = p.read(false);
    assert_eq!((r.status, r.text()), (200, String::new()));
    assert_eq!(backend.request_count(), 7);
    dao.shutdown();
}

#[test]
fn without_client_cert_header_a_clients_header_passes() {
    if !tool("curl") {
        return;
    }
    let pki = Pki::new("obs-none");
    let backend = Backend::start(|req, s| {
        let seen = req.headers_named("x-client-cert").join(" | ");
        respond(s, 200, &[], seen.as_bytes());
        After::KeepAlive
    });
    let dao = start(&pki, &backend, false, "client_ca = \"DIR/ca.pem\"");
    let addr = tls_addr(&dao);
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let o = curl(
        &pki,
        addr,
        "localhost",
        "/",
        &[
            "--cert",
            &cert,
            "--key",
            &key,
            "-H",
            "X-Client-Cert: theirs",
        ],
    );
    assert_eq!(text(&o), "theirs", "{}", err(&o));
    dao.shutdown();
}
