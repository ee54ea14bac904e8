//! Upstreams over TLS (`https://` urls, `[routes.rule.upstreams.tls]`):
//! certificate verification against a named CA, the SNI and verified name,
//! `verify = false`, a client certificate for upstreams that require one,
//! kept-alive TLS connections, HTTP/2 over TLS (`protocol = "h2"`, to a
//! second DAO terminating TLS with ALPN h2), WebSocket tunnels over TLS,
//! and health probes over TLS. Backends are rustls servers on loopback.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::tls_backend::{Mode, TlsBackend};
use common::{Backend, Client, Server};

/// DAO with one worker routing everything to `url`, with the upstream's
/// `extra` lines (`protocol`, `[routes.rule.upstreams.tls]`).
fn proxy_to(url: &str, extra: &str) -> Server {
    common::start(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [[routes.rule]]\nname = \"r\"\n\
         [[routes.rule.upstreams]]\nname = \"up\"\nurl = \"{url}\"\n{extra}\n"
    ))
}

fn tls_table(pki: &Pki, keys: &str) -> String {
    format!(
        "[routes.rule.upstreams.tls]\nca = \"{}\"\n{keys}\n",
        pki.path("ca.pem")
    )
}

fn get(dao: &Server, path: &str) -> common::Resp {
    Client::connect(dao.local_addr()).get(path)
}

#[test]
fn https_upstream_verified_kept_alive_and_named_by_sni() {
    let pki = Pki::new("up-tls");
    let backend = TlsBackend::start(&pki, &["http/1.1"], false, Mode::Http);
    let dao = proxy_to(
        &format!("https://localhost:{}", backend.addr.port()),
        &tls_table(&pki, ""),
    );
    let mut c = Client::connect(dao.local_addr());
    for i in 0..3 {
        let r = c.get(&format!("/n{i}"));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), format!("tls backend /n{i}"));
    }
    // One handshake for the three requests: the connection was pooled.
    let hellos = backend.hellos();
    assert_eq!(hellos.len(), 1, "{hellos:?}");
    assert_eq!(hellos[0].sni.as_deref(), Some("localhost"));
    assert_eq!(hellos[0].alpn.as_deref(), Some("http/1.1"));
    assert!(!hellos[0].client_cert);
    // The Host the upstream sees is the URL's authority when the client
    // sent none that differs: here the client's.
    assert_eq!(backend.request_count(), 3);
    dao.shutdown();
}

#[test]
fn server_name_sets_sni_and_the_name_checked() {
    let pki = Pki::new("up-tls-name");
    let backend = TlsBackend::start(&pki, &["http/1.1"], false, Mode::Http);
    let url = format!("https://{}", backend.addr);
    // The certificate names *.dao.test (and 127.0.0.1): a covered name.
    let dao = proxy_to(&url, &tls_table(&pki, "server_name = \"api.dao.test\""));
    assert_eq!(get(&dao, "/a").status, 200);
    assert_eq!(backend.hellos()[0].sni.as_deref(), Some("api.dao.test"));
    dao.shutdown();
    // A name the certificate does not cover: refused, 502, nothing sent.
    let dao = proxy_to(&url, &tls_table(&pki, "server_name = \"api.other.test\""));
    let r = get(&dao, "/b");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(backend.request_count(), 1);
    dao.shutdown();
    // The address itself (an IP SAN): no SNI is sent.
    let dao = proxy_to(&url, &tls_table(&pki, ""));
    assert_eq!(get(&dao, "/c").status, 200);
    let last = backend.hellos().pop().unwrap();
    assert_eq!(last.sni, None, "{last:?}");
    dao.shutdown();
}

#[test]
fn an_untrusted_upstream_is_refused_unless_verify_is_off() {
    let pki = Pki::new("up-tls-rogue");
    let backend = TlsBackend::start(&pki, &["http/1.1"], false, Mode::Http);
    let url = format!("https://localhost:{}", backend.addr.port());
    // Trusting another CA: the handshake fails, the client gets 502.
    let rogue = format!(
        "[routes.rule.upstreams.tls]\nca = \"{}\"\n",
        pki.path("rogue-ca.pem")
    );
    let dao = proxy_to(&url, &rogue);
    let r = get(&dao, "/x");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(backend.request_count(), 0);
    // The backend records the alert DAO sent a moment later.
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.refused.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the backend saw no failed handshake"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    dao.shutdown();
    // verify = false: accepted (still encrypted).
    let dao = proxy_to(&url, "[routes.rule.upstreams.tls]\nverify = false\n");
    let r = get(&dao, "/y");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "tls backend /y");
    dao.shutdown();
}

#[test]
fn a_client_certificate_is_shown_to_upstreams_that_require_one() {
    let pki = Pki::new("up-tls-mtls");
    let backend = TlsBackend::start(&pki, &["http/1.1"], true, Mode::Http);
    let url = format!("https://localhost:{}", backend.addr.port());
    let dao = proxy_to(&url, &tls_table(&pki, ""));
    assert_eq!(get(&dao, "/no-cert").status, 502);
    assert_eq!(backend.request_count(), 0);
    dao.shutdown();
    let keys = format!(
        "cert = \"{}\"\nkey = \"{}\"",
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let dao = proxy_to(&url, &tls_table(&pki, &keys));
    let r = get(&dao, "/with-cert");
    assert_eq!(r.status, 200, "{r:?}");
    let hello = backend.hellos().pop().unwrap();
    assert!(hello.client_cert, "{hello:?}");
    dao.shutdown();
}

#[test]
fn request_and_response_bodies_cross_tls_whole() {
    let pki = Pki::new("up-tls-body");
    let backend = TlsBackend::start(&pki, &["http/1.1"], false, Mode::Http);
    let dao = proxy_to(
        &format!("https://localhost:{}", backend.addr.port()),
        &tls_table(&pki, ""),
    );
    // A body larger than a TLS record, both fixed-length and chunked.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut c = Client::connect(dao.local_addr());
    let mut req = format!(
        "POST /fixed HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    c.send(&req);
    assert_eq!(c.read(false).status, 200);
    assert_eq!(backend.last_request().body, body);
    let mut req =
        b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(70_000) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req);
    assert_eq!(c.read(false).status, 200);
    assert_eq!(backend.last_request().body, body);
    dao.shutdown();
}

/// A second DAO terminating TLS with ALPN `h2` only, in front of a plain
/// backend: an upstream that speaks HTTP/2 over TLS and nothing else.
fn h2_tls_front(pki: &Pki, backend: &Backend) -> Server {
    common::start(&format!(
        "[server]\nworkers = 1\n\
         [[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n\
         certificates = [{{ cert = \"{}\", key = \"{}\" }}]\nalpn = [\"h2\"]\n\
         [[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"b\"\nurl = \"http://{}\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        backend.addr
    ))
}

#[test]
fn protocol_h2_speaks_http2_over_tls() {
    let pki = Pki::new("up-tls-h2");
    let backend = Backend::start(|req, s| {
        let body = format!("{} {} {}", req.method, req.path, req.version);
        common::respond(s, 200, &[], body.as_bytes());
        common::After::KeepAlive
    });
    let front = h2_tls_front(&pki, &backend);
    let front_port = front.listener_addrs()[0].port();
    let url = format!("https://localhost:{front_port}");
    let dao = proxy_to(&url, &format!("protocol = \"h2\"\n{}", tls_table(&pki, "")));
    let mut c = Client::connect(dao.local_addr());
    for i in 0..3 {
        let r = c.get(&format!("/h2/{i}"));
        assert_eq!(r.status, 200, "{r:?}");
        // The front received HTTP/2 and spoke HTTP/1.1 to the backend.
        assert_eq!(r.text(), format!("GET /h2/{i} HTTP/1.1"));
    }
    // h2 with an upstream whose ALPN offers HTTP/1.1 only: refused.
    let h1_only = TlsBackend::start(&pki, &["http/1.1"], false, Mode::Http);
    let dao2 = proxy_to(
        &format!("https://localhost:{}", h1_only.addr.port()),
        &format!("protocol = \"h2\"\n{}", tls_table(&pki, "")),
    );
    let r = get(&dao2, "/nope");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(h1_only.request_count(), 0);
    dao2.shutdown();
    // And an upstream with HTTP/1.1 over TLS to the h2-only front: its
    // ALPN refuses (rustls ends the handshake with no_application_protocol).
    let dao3 = proxy_to(&url, &tls_table(&pki, ""));
    assert_eq!(get(&dao3, "/h1").status, 502);
    dao3.shutdown();
    dao.shutdown();
    front.shutdown();
}

#[test]
fn websockets_tunnel_to_tls_upstreams() {
    let pki = Pki::new("up-tls-ws");
    let backend = TlsBackend::start(&pki, &["http/1.1"], false, Mode::WebSocket);
    let dao = proxy_to(
        &format!("https://localhost:{}", backend.addr.port()),
        &tls_table(&pki, ""),
    );
    let tcp = TcpStream::connect(dao.local_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://{}/chat", dao.local_addr());
    let (mut ws, resp) = tungstenite::client(url.as_str(), tcp).expect("upgrade through DAO");
    assert_eq!(resp.status(), 101);
    for text in ["one", "two", &"x".repeat(40_000)] {
        ws.send(tungstenite::Message::text(text)).unwrap();
        let back = ws.read().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), text);
    }
    ws.close(None).unwrap();
    // The close handshake completes through the tunnel.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ws.read() {
            Ok(_) if Instant::now() < deadline => continue,
            Ok(m) => panic!("no close after 5 s: {m:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    drop(ws);
    dao.shutdown();
}

#[test]
fn health_probes_speak_tls() {
    let pki = Pki::new("up-tls-health");
    let backend = TlsBackend::start(&pki, &["http/1.1"], false, Mode::Http);
    let dao = proxy_to(
        &format!("https://localhost:{}", backend.addr.port()),
        &format!(
            "{}[routes.rule.health_check]\npath = \"/healthz\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\n",
            tls_table(&pki, "")
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probes = backend
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == "/healthz")
            .count();
        if probes >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no TLS probe reached the backend"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let hello = backend.hellos().pop().unwrap();
    assert_eq!(hello.sni.as_deref(), Some("localhost"));
    assert_eq!(get(&dao, "/after").status, 200);
    dao.shutdown();
}
