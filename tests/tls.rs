//! TLS termination end to end, with real clients: curl and `openssl
//! s_client` (versions, SNI, ALPN, mTLS, bodies both ways, keep-alive), a
//! rustls client for exact byte placement (pipelining, idle parking), and
//! raw sockets for the handshake timeout and garbage. Certificates are made
//! per test with rcgen; one test runs `scripts/dev-certs.sh`.
//!
//! `.ci/run` sets `DAO_REQUIRE_TOOLS=1`: there a missing curl or openssl
//! fails the tests instead of skipping them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{curl, respond, tool, After, Backend, Server};

fn tools() -> bool {
    tool("curl") && tool("openssl")
}

/// A fresh, empty directory under the system's temporary directory,
/// removed when dropped.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "dao-tls-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// DAO with one worker: a TLS listener (server.pem first, other.pem
/// second, then `extra` keys of `[listeners.tls]`) in front of `backend`.
fn start_tls(pki: &Pki, backend: &Backend, extra: &str) -> Server {
    common::start(&tls_config(pki, backend, "", extra))
}

fn tls_config(pki: &Pki, backend: &Backend, server: &str, extra: &str) -> String {
    format!(
        "[server]\nworkers = 1\n{server}\n\
         [[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n\
         certificates = [{{ cert = \"{}\", key = \"{}\" }}, {{ cert = \"{}\", key = \"{}\" }}]\n{}\n\
         [[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"up\"\nurl = \"http://{}\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("other.pem"),
        pki.path("other.key"),
        extra.replace("DIR", pki.dir.to_str().unwrap()),
        backend.addr
    )
}

/// `curl --cacert ca.pem` for `https://{host}:{port}{path}`, `host`
/// resolved to DAO's address.
fn curl_host(pki: &Pki, addr: SocketAddr, host: &str, path: &str, more: &[&str]) -> Output {
    let port = addr.port();
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{path}");
    let ca = pki.path("ca.pem");
    let mut args = vec!["--cacert", &ca, "--resolve", &resolve];
    args.extend_from_slice(more);
    args.push(&url);
    curl(&args)
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `openssl s_client` with `args`, stdin closed; its stdout and stderr.
fn s_client(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let connect = addr.to_string();
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect", &connect])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out), err(&out));
    (out.status.success(), all)
}

#[test]
fn https_by_sni_with_exact_wildcard_and_default_certificates() {
    if !tools() {
        return;
    }
    let pki = Pki::new("sni");
    let backend = Backend::text("hello over tls");
    let dao = start_tls(&pki, &backend, "");
    let addr = dao.local_addr();
    assert_eq!(dao.listener_addrs(), [addr]);
    let verify = ["-w", "|%{ssl_verify_result}|%{http_code}"];
    // Exact name, wildcard, the second certificate's names: each verified
    // by curl against the name it asked for.
    for host in ["localhost", "api.dao.test", "other.test", "www.other.test"] {
        let o = curl_host(&pki, addr, host, "/", &verify);
        assert!(o.status.success(), "{host}: {}", err(&o));
        assert_eq!(text(&o), "hello over tls|0|200", "{host}");
    }
    // The served certificate's subject, as openssl sees it.
    let (_, out) = s_client(addr, &["-servername", "www.other.test"]);
    assert!(out.contains("CN = other"), "{out}");
    let (_, out) = s_client(addr, &["-servername", "a.dao.test"]);
    assert!(out.contains("CN = server"), "{out}");
    // No SNI (an IP address in the URL): the default, first certificate.
    let ca = pki.path("ca.pem");
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let o = curl(&["--cacert", &ca, "-w", "|%{ssl_verify_result}", &url]);
    assert_eq!(text(&o), "hello over tls|0", "{}", err(&o));
    let (_, out) = s_client(addr, &["-noservername"]);
    assert!(out.contains("CN = server"), "{out}");
    // An unknown name, not strict: the default certificate, which curl
    // rightly refuses for that name.
    let o = curl_host(&pki, addr, "unknown.example", "/", &[]);
    assert!(!o.status.success());
    assert!(err(&o).contains("certificate"), "{}", err(&o));
    // The upstream learns the scheme.
    assert_eq!(
        backend.last_request().header("x-forwarded-proto"),
        Some("https")
    );
    dao.shutdown();
}

#[test]
fn tls_1_2_and_1_3_and_min_version() {
    if !tools() {
        return;
    }
    let pki = Pki::new("versions");
    let backend = Backend::text("v");
    let dao = start_tls(&pki, &backend, "");
    let addr = dao.local_addr();
    for (max, want) in [("1.2", "TLSv1.2"), ("1.3", "TLSv1.3")] {
        let o = curl_host(&pki, addr, "localhost", "/", &["-v", "--tls-max", max]);
        assert!(o.status.success(), "{}", err(&o));
        assert_eq!(text(&o), "v");
        assert!(
            err(&o).contains(&format!("SSL connection using {want}")),
            "{}",
            err(&o)
        );
    }
    let (ok, out) = s_client(addr, &["-tls1_2", "-servername", "localhost"]);
    assert!(ok && out.contains("Protocol  : TLSv1.2"), "{out}");
    dao.shutdown();

    let dao = start_tls(&pki, &backend, "min_version = \"1.3\"");
    let addr = dao.local_addr();
    let o = curl_host(&pki, addr, "localhost", "/", &["--tls-max", "1.2"]);
    assert!(
        !o.status.success(),
        "TLS 1.2 got through a 1.3-only listener"
    );
    let o = curl_host(&pki, addr, "localhost", "/", &["--tlsv1.3"]);
    assert_eq!(text(&o), "v", "{}", err(&o));
    dao.shutdown();
}

#[test]
fn sni_strict_refuses_unknown_names_with_unrecognized_name() {
    if !tools() {
        return;
    }
    let pki = Pki::new("strict");
    let backend = Backend::text("strict ok");
    let dao = start_tls(&pki, &backend, "sni_strict = true");
    let addr = dao.local_addr();
    let (ok, out) = s_client(addr, &["-servername", "unknown.example"]);
    assert!(!ok, "{out}");
    assert!(out.contains("unrecognized name"), "{out}");
    let o = curl_host(&pki, addr, "unknown.example", "/", &["-k"]);
    assert!(!o.status.success(), "strict SNI let an unknown name in");
    // Known names, and clients without SNI, are served.
    let o = curl_host(&pki, addr, "x.other.test", "/", &[]);
    assert_eq!(text(&o), "strict ok", "{}", err(&o));
    let (_, out) = s_client(addr, &["-noservername"]);
    assert!(out.contains("CN = server"), "{out}");
    // A name that is not a host name: refused with an alert (rustls').
    let (ok, out) = s_client(addr, &["-servername", "bad_name!"]);
    assert!(!ok && out.contains("alert illegal parameter"), "{out}");
    // An IP address sent as SNI (RFC 6066 forbids it) counts as none.
    let (_, out) = s_client(addr, &["-servername", "127.0.0.1"]);
    assert!(out.contains("CN = server"), "{out}");
    dao.shutdown();
}

#[test]
fn alpn_offers_h2_first_by_default() {
    if !tools() {
        return;
    }
    let pki = Pki::new("alpn-default");
    let backend = Backend::text("a");
    let dao = start_tls(&pki, &backend, "");
    let addr = dao.local_addr();
    let (ok, out) = s_client(addr, &["-alpn", "http/1.1,h2", "-servername", "localhost"]);
    assert!(ok, "{out}");
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    let (ok, out) = s_client(addr, &["-alpn", "http/1.1", "-servername", "localhost"]);
    assert!(ok, "{out}");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    // curl offers both and gets HTTP/2.
    let o = curl_host(&pki, addr, "localhost", "/", &["-w", "|%{http_version}"]);
    assert_eq!(text(&o), "a|2", "{}", err(&o));
    dao.shutdown();
}

#[test]
fn alpn_offers_http_1_1_only() {
    if !tools() {
        return;
    }
    let pki = Pki::new("alpn");
    let backend = Backend::text("a");
    let dao = start_tls(&pki, &backend, "alpn = [\"http/1.1\"]");
    let addr = dao.local_addr();
    let (ok, out) = s_client(addr, &["-alpn", "h2,http/1.1", "-servername", "localhost"]);
    assert!(ok, "{out}");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    // A client that speaks only h2 is refused (no_application_protocol).
    let (ok, out) = s_client(addr, &["-alpn", "h2", "-servername", "localhost"]);
    assert!(!ok, "{out}");
    assert!(out.contains("no application protocol"), "{out}");
    // curl asks for h2 and http/1.1 and gets HTTP/1.1.
    let o = curl_host(
        &pki,
        addr,
        "localhost",
        "/",
        &["--http2", "-w", "|%{http_version}"],
    );
    assert_eq!(text(&o), "a|1.1", "{}", err(&o));
    dao.shutdown();
}

#[test]
fn mtls_required_and_optional() {
    if !tools() {
        return;
    }
    let pki = Pki::new("mtls");
    let backend = Backend::text("mtls ok");
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let (rogue, rogue_key) = (pki.path("rogue.pem"), pki.path("rogue.key"));
    let good = ["--cert", &cert, "--key", &key];
    let bad = ["--cert", &rogue, "--key", &rogue_key];

    let dao = start_tls(&pki, &backend, "client_ca = \"DIR/ca.pem\"");
    let addr = dao.local_addr();
    for max in ["1.2", "1.3"] {
        let o = curl_host(&pki, addr, "localhost", "/", &["--tls-max", max]);
        assert!(!o.status.success(), "no client certificate got through");
        let mut args = good.to_vec();
        args.extend(["--tls-max", max]);
        let o = curl_host(&pki, addr, "localhost", "/", &args);
        assert_eq!(text(&o), "mtls ok", "{}", err(&o));
        let o = curl_host(&pki, addr, "localhost", "/", &bad);
        assert!(
            !o.status.success(),
            "a certificate of another CA got through"
        );
    }
    let (ok, out) = s_client(addr, &["-servername", "localhost", "-tls1_2"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("handshake failure") || out.contains("certificate required"),
        "{out}"
    );
    dao.shutdown();

    let dao = start_tls(
        &pki,
        &backend,
        "client_ca = \"DIR/ca.pem\"\nclient_auth = \"optional\"",
    );
    let addr = dao.local_addr();
    let o = curl_host(&pki, addr, "localhost", "/", &[]);
    assert_eq!(text(&o), "mtls ok", "{}", err(&o));
    let o = curl_host(&pki, addr, "localhost", "/", &good);
    assert_eq!(text(&o), "mtls ok", "{}", err(&o));
    let o = curl_host(&pki, addr, "localhost", "/", &bad);
    assert!(
        !o.status.success(),
        "optional still refuses bad certificates"
    );
    dao.shutdown();
}

#[test]
fn handshake_timeout_closes_silent_clients_only() {
    if !tools() {
        return;
    }
    let pki = Pki::new("timeout");
    let backend = Backend::text("still here");
    let dao = start_tls(&pki, &backend, "handshake_timeout = \"600ms\"");
    let addr = dao.local_addr();
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // One that sends half a ClientHello and stalls.
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(&[22, 3, 1, 0x02, 0x00, 1, 0, 1]).unwrap();
    silent.push(half);
    // Meanwhile, others are served.
    for _ in 0..3 {
        let o = curl_host(&pki, addr, "localhost", "/", &[]);
        assert_eq!(text(&o), "still here", "{}", err(&o));
    }
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 16];
        let n = s.read(&mut b).unwrap_or(0);
        assert_eq!(n, 0, "expected the close, got {:?}", &b[..n]);
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(550) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
    let o = curl_host(&pki, addr, "localhost", "/", &[]);
    assert_eq!(text(&o), "still here", "{}", err(&o));
    dao.shutdown();
}

#[test]
fn garbage_and_plain_http_on_a_tls_port_close_cleanly() {
    if !tools() {
        return;
    }
    let pki = Pki::new("garbage");
    let backend = Backend::text("fine");
    let dao = start_tls(&pki, &backend, "");
    let addr = dao.local_addr();
    // A keep-alive TLS connection open across the garbage.
    let mut kept = RustlsClient::connect(&pki, addr, "localhost");
    kept.send(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(kept.read_response().ends_with("fine"));
    let inputs: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        // A handshake record whose ClientHello is nonsense.
        &[22, 3, 1, 0, 8, 1, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef],
        // An oversized record length.
        &[22, 3, 3, 0xff, 0xff, 1, 2, 3],
        &[0xff; 64],
    ];
    for input in inputs {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(input).unwrap();
        let mut got = Vec::new();
        // An alert (content type 21) at most, then the close.
        let _ = s.read_to_end(&mut got);
        assert!(
            got.is_empty() || got[0] == 21,
            "{input:?} answered with {got:?}"
        );
        assert!(got.len() <= 7, "{input:?} answered with {got:?}");
    }
    kept.send(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(kept.read_response().ends_with("fine"));
    let o = curl_host(&pki, addr, "localhost", "/", &[]);
    assert_eq!(text(&o), "fine", "{}", err(&o));
    dao.shutdown();
}

#[test]
fn keep_alive_carries_several_requests_on_one_tls_connection() {
    if !tools() {
        return;
    }
    let pki = Pki::new("keepalive");
    let backend = Backend::start(|req, s| {
        respond(s, 200, &[], req.path.as_bytes());
        After::KeepAlive
    });
    let dao = start_tls(&pki, &backend, "");
    let addr = dao.local_addr();
    let port = addr.port();
    let urls: Vec<String> = (1..=4)
        .map(|i| format!("https://localhost:{port}/r{i}"))
        .collect();
    let mut args = vec!["-w", "|%{num_connects}\n"];
    args.extend(urls.iter().map(String::as_str));
    let o = curl_host(&pki, addr, "localhost", "/r0", &args);
    assert!(o.status.success(), "{}", err(&o));
    // One handshake, five responses (curl_host puts its URL last).
    assert_eq!(
        text(&o),
        "/r1|1\n/r2|0\n/r3|0\n/r4|0\n/r0|0\n",
        "{}",
        err(&o)
    );
    dao.shutdown();
}

#[test]
fn pipelined_and_parked_tls_connections_lose_nothing() {
    let pki = Pki::new("park");
    let backend = Backend::start(|req, s| {
        respond(s, 200, &[], req.path.as_bytes());
        After::KeepAlive
    });
    let dao = start_tls(&pki, &backend, "");
    let mut c = RustlsClient::connect(&pki, dao.local_addr(), "localhost");
    // Two requests in one record, the first exactly filling DAO's first
    // read buffer (4 KiB): the second waits in rustls, not on the socket.
    let second = b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n";
    let head = "GET /first HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    let pad = 4096 - head.len() - 4;
    let mut both = format!("{head}{}\r\n\r\n", "p".repeat(pad)).into_bytes();
    assert_eq!(both.len(), 4096);
    both.extend_from_slice(second);
    let sent = Instant::now();
    c.send(&both);
    assert!(c.read_response().ends_with("/first"));
    assert!(c.read_response().ends_with("/second"));
    assert!(
        sent.elapsed() < Duration::from_millis(800),
        "the pipelined request waited {:?}",
        sent.elapsed()
    );
    // Idle past the parking delay (1 s), then more requests, pipelined.
    std::thread::sleep(Duration::from_millis(1500));
    c.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\nGET /again HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(c.read_response().ends_with("/after"));
    assert!(c.read_response().ends_with("/again"));
    std::thread::sleep(Duration::from_millis(1500));
    c.send(b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(c.read_response().ends_with("/last"));
    // DAO closes with close_notify: a clean end of stream.
    assert!(c.at_clean_eof());
    assert_eq!(backend.request_count(), 5);
    dao.shutdown();
}

#[test]
fn large_streamed_response_and_upload_over_tls() {
    if !tools() {
        return;
    }
    const BIG: usize = 8 << 20;
    let pki = Pki::new("bodies");
    let backend = Backend::start(|req, s| {
        if req.path == "/big" {
            // Chunked, 64 KiB at a time: streamed through, not buffered.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            for i in 0..BIG / 65536 {
                let chunk = vec![b'a' + (i % 26) as u8; 65536];
                let _ = s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
                let _ = s.write_all(&chunk);
                let _ = s.write_all(b"\r\n");
            }
            let _ = s.write_all(b"0\r\n\r\n");
        } else {
            // Echo the request body.
            respond(s, 200, &[], &req.body);
        }
        After::KeepAlive
    });
    let dao = start_tls(&pki, &backend, "");
    let addr = dao.local_addr();
    let dir = temp_dir("bodies-out");
    let out = dir.join("big.out");
    let o = curl_host(
        &pki,
        addr,
        "localhost",
        "/big",
        &["-o", out.to_str().unwrap(), "-w", "%{size_download}"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), BIG);
    assert!(got
        .chunks(65536)
        .enumerate()
        .all(|(i, c)| c.iter().all(|&b| b == b'a' + (i % 26) as u8)));

    let upload: Vec<u8> = (0..3 * 1024 * 1024 + 123)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let up = dir.join("up.bin");
    std::fs::write(&up, &upload).unwrap();
    let echoed = dir.join("echo.out");
    let data = format!("@{}", up.display());
    for extra in [&[][..], &["-H", "Transfer-Encoding: chunked"][..]] {
        let mut args = vec![
            "--data-binary",
            &data,
            "-o",
            echoed.to_str().unwrap(),
            "-H",
            "Expect:",
        ];
        args.extend_from_slice(extra);
        let o = curl_host(&pki, addr, "localhost", "/echo", &args);
        assert!(o.status.success(), "{}", err(&o));
        assert!(std::fs::read(&echoed).unwrap() == upload, "echo differs");
    }
    dao.shutdown();
}

#[test]
fn plain_and_tls_listeners_side_by_side() {
    if !tools() {
        return;
    }
    let pki = Pki::new("both");
    let backend = Backend::start(|req, s| {
        let proto = req.header("x-forwarded-proto").unwrap_or("-").to_string();
        respond(s, 200, &[], proto.as_bytes());
        After::KeepAlive
    });
    let dao = common::start(
        &tls_config(&pki, &backend, "bind = \"127.0.0.1:0\"", "")
            .replace("workers = 1", "workers = 2"),
    );
    let addrs = dao.listener_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    assert_eq!(dao.local_addr(), addrs[0]);
    let mut plain = common::Client::connect(addrs[0]);
    assert_eq!(plain.get("/").text(), "http");
    for _ in 0..4 {
        let o = curl_host(&pki, addrs[1], "localhost", "/", &[]);
        assert_eq!(text(&o), "https", "{}", err(&o));
    }
    dao.shutdown();
}

#[test]
fn dev_certs_script_makes_a_working_pki_for_the_example_config() {
    if !tools() {
        return;
    }
    let work = temp_dir("dev-certs");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let certs = work.join("certs");
    let status = Command::new("bash")
        .arg(root.join("scripts/dev-certs.sh"))
        .arg(&certs)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // configs/tls.toml loads against them (its paths are relative).
    let copy = work.join("tls.toml");
    std::fs::copy(root.join("configs/tls.toml"), &copy).unwrap();
    let c = dao::memory::load_file(&copy).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.listeners.iter().any(|l| l.tls.is_some()));
    // And they serve: the script's server certificate, and its client
    // certificate through required mTLS.
    let backend = Backend::text("dev ok");
    let cert = |f: &str| certs.join(f).to_str().unwrap().to_string();
    let dao = common::start(&format!(
        "[server]\nworkers = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n\
         certificates = [{{ cert = \"{}\", key = \"{}\" }}]\nclient_ca = \"{}\"\n\
         [[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"up\"\nurl = \"http://{}\"\n",
        cert("server.pem"),
        cert("server.key"),
        cert("ca.pem"),
        backend.addr
    ));
    let port = dao.local_addr().port();
    let ca = cert("ca.pem");
    let (cc, ck) = (cert("client.pem"), cert("client.key"));
    for host in ["localhost", "x.dao.test"] {
        let url = format!("https://{host}:{port}/");
        let resolve = format!("{host}:{port}:127.0.0.1");
        let o = curl(&[
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            "--cert",
            &cc,
            "--key",
            &ck,
            &url,
        ]);
        assert_eq!(text(&o), "dev ok", "{}", err(&o));
    }
    let url = format!("https://127.0.0.1:{port}/");
    let o = curl(&["--cacert", &ca, "--cert", &cc, "--key", &ck, &url]);
    assert_eq!(text(&o), "dev ok", "{}", err(&o));
    dao.shutdown();
}

/// A blocking rustls client, for byte-exact sends.
struct RustlsClient {
    tls: common::pki::TlsClient,
    buf: Vec<u8>,
}

impl RustlsClient {
    fn connect(pki: &Pki, addr: SocketAddr, name: &str) -> RustlsClient {
        RustlsClient {
            tls: common::pki::tls_client(&pki.path("ca.pem"), addr, name),
            buf: Vec::new(),
        }
    }

    /// Sends `bytes` as one write (rustls makes one record up to 16 KiB).
    fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).unwrap();
        self.tls.flush().unwrap();
    }

    /// Reads one `Content-Length` response; returns its head and body.
    fn read_response(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .expect("a Content-Length");
                if self.buf.len() >= end + 4 + len {
                    let all: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    return String::from_utf8_lossy(&all).into_owned();
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.tls.read(&mut chunk).expect("a response");
            assert!(n > 0, "connection closed before a whole response");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the server ended the stream with close_notify.
    fn at_clean_eof(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.tls.read(&mut b), Ok(0))
    }
}

/// A reload reloads certificates: same listener (not rebound), the
/// certificates in the other order, so the default one changes for new
/// handshakes.
#[test]
fn certificates_reload_with_the_config() {
    if !tools() {
        return;
    }
    let pki = Pki::new("reload");
    let backend = Backend::text("ok");
    let text = tls_config(&pki, &backend, "", "");
    let dao = common::start(&text);
    let addr = dao.local_addr();
    let (_, out) = s_client(addr, &["-noservername"]);
    assert!(out.contains("CN = server"), "{out}");
    let pair = |name: &str| {
        format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            pki.path(&format!("{name}.pem")),
            pki.path(&format!("{name}.key"))
        )
    };
    let before = format!("{}, {}", pair("server"), pair("other"));
    assert!(text.contains(&before));
    let swapped = text.replace(&before, &format!("{}, {}", pair("other"), pair("server")));
    dao.reloads().reload(Some(swapped)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, out) = s_client(addr, &["-noservername"]);
        if out.contains("CN = other") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still the old certificate: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(dao.listener_addrs(), [addr]);
    // A certificate file that went missing is a field error; nothing changes.
    let broken = text.replace(&pki.path("server.key"), &pki.path("missing.key"));
    let e = dao.reloads().reload(Some(broken)).unwrap_err();
    assert!(
        e.errors
            .iter()
            .any(|f| f.path.starts_with("listeners[0].tls.certificates")),
        "{:?}",
        e.errors
    );
    let (_, out) = s_client(addr, &["-noservername"]);
    assert!(out.contains("CN = other"), "{out}");
    dao.shutdown();
}
