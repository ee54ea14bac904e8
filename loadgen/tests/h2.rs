//! HTTP/2 end to end: dao-loadgen --http2 against an h2c test server (the
//! h2 crate on monoio through dao-loadgen's own tokio-IO adapter).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{loadgen, u};
use dao_loadgen::compat::Compat;

struct H2Backend {
    port: u16,
    requests: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

/// An h2c server answering 200 (or 503 for every `fail_every`-th request).
fn start(fail_every: u64) -> H2Backend {
    start_with(fail_every, None)
}

/// The same over TLS with ALPN h2 (test certificate for localhost).
fn start_tls() -> H2Backend {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(common::data("localhost.crt"))
            .expect("cert")
            .collect::<Result<_, _>>()
            .expect("cert parses");
    let key = PrivateKeyDer::from_pem_file(common::data("localhost.key")).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    start_with(0, Some(monoio_rustls::TlsAcceptor::from(Arc::new(config))))
}

fn start_with(fail_every: u64, tls: Option<monoio_rustls::TlsAcceptor>) -> H2Backend {
    let requests = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let (r, c) = (Arc::clone(&requests), Arc::clone(&connections));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            tx.send(listener.local_addr().expect("addr").port())
                .expect("send port");
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let r = Arc::clone(&r);
                match tls.clone() {
                    None => {
                        monoio::spawn(serve(s, r, fail_every));
                    }
                    Some(acceptor) => {
                        monoio::spawn(async move {
                            if let Ok(s) = acceptor.accept(s).await {
                                serve(s, r, fail_every).await;
                            }
                        });
                    }
                }
            }
        });
    });
    H2Backend {
        port: rx.recv().expect("server port"),
        requests,
        connections,
    }
}

async fn serve<S>(s: S, count: Arc<AtomicU64>, fail_every: u64)
where
    S: monoio::io::AsyncReadRent + monoio::io::AsyncWriteRent + monoio::io::Split + 'static,
{
    let Ok(mut conn) = h2::server::handshake(Compat::new(s)).await else {
        return;
    };
    while let Some(Ok((_req, mut respond))) = conn.accept().await {
        let n = count.fetch_add(1, Ordering::SeqCst);
        let status = if fail_every > 0 && n % fail_every == fail_every - 1 {
            503
        } else {
            200
        };
        let response = http::Response::builder()
            .status(status)
            .body(())
            .expect("response");
        if let Ok(mut body) = respond.send_response(response, false) {
            let _ = body.send_data(Bytes::from_static(b"hello over h2"), true);
        }
    }
}

#[test]
fn h2c_open_loop_counts_are_exact() {
    let b = start(0);
    let url = format!("http://127.0.0.1:{}/", b.port);
    let (r, stdout) = loadgen(&[
        "--http2",
        "--streams",
        "4",
        "-c",
        "2",
        "-R",
        "40",
        "-d",
        "1s",
        &url,
    ]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b.requests.load(Ordering::SeqCst), 40);
    assert_eq!(b.connections.load(Ordering::SeqCst), 2);
    let done = u(&r, &["requests"]);
    assert!((39..=40).contains(&done), "report counted {done}");
    assert_eq!(u(&r, &["status", "2xx"]), done);
    assert_eq!(r["config"]["protocol"], "h2");
    assert!(stdout.contains("Requests/sec"));
}

#[test]
fn h2c_closed_loop_and_status_accounting() {
    let b = start(4);
    let url = format!("http://127.0.0.1:{}/", b.port);
    let (r, _) = loadgen(&["--http2", "--streams", "8", "-c", "1", "-d", "500ms", &url]);
    std::thread::sleep(Duration::from_millis(100));
    let done = u(&r, &["requests"]);
    assert!(done > 100, "only {done}");
    let seen = b.requests.load(Ordering::SeqCst);
    assert!(
        seen >= done && seen <= done + 8,
        "server {seen}, report {done}"
    );
    let s5 = u(&r, &["status", "5xx"]);
    assert!(
        s5 * 4 >= done - 4 && s5 * 4 <= done + 4,
        "5xx {s5} of {done}"
    );
    assert_eq!(
        u(&r, &["errors", "protocol"]) + u(&r, &["errors", "read"]),
        0
    );
}

#[test]
fn h2_over_tls_negotiates_alpn() {
    let b = start_tls();
    let url = format!("https://localhost:{}/", b.port);
    let ca = common::data("localhost.crt");
    let (r, _) = loadgen(&[
        "--http2",
        "--streams",
        "2",
        "-c",
        "1",
        "-R",
        "20",
        "-d",
        "1s",
        "--cacert",
        &ca,
        &url,
    ]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b.requests.load(Ordering::SeqCst), 20);
    assert!(u(&r, &["requests"]) >= 19);
    assert_eq!(u(&r, &["errors", "connect"]), 0);
    // A TLS server that only speaks HTTP/1.1 refuses h2: connect errors.
    let h1 = common::Backend::start_tls(|_| common::Reply::OK);
    let url = format!("https://localhost:{}/", h1.addr.port());
    let (r, _) = loadgen(&[
        "--http2", "-c", "1", "-R", "50", "-d", "300ms", "--cacert", &ca, &url,
    ]);
    assert_eq!(u(&r, &["requests"]), 0);
    assert!(u(&r, &["errors", "connect"]) >= 10);
}
