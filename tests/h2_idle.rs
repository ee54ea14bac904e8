//! HTTP/2 client connections that idle between requests (their sockets
//! hold no buffer then: see `src/gate/h2/io.rs`, and
//! `perf/h2_idle_memory.sh` for what that saves): after each idle the same
//! connection serves again, h2c and h2 over TLS, with request and response
//! bodies larger than a socket read or write and than the initial windows.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::pki::Pki;
use common::{config, respond, start, After, Backend};
use h2::client::SendRequest;
use http::Request;

/// Long enough for every read on the connection to be waiting on the
/// socket's readiness, and for a busy worker to have moved on.
const IDLE: Duration = Duration::from_millis(400);
const UPLOAD: usize = 300_000;
const DOWNLOAD: usize = 400_000;

fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(f)
}

fn backend() -> Backend {
    Backend::start(|req, s| {
        match req.path.as_str() {
            "/big" => respond(s, 200, &[], &vec![b'd'; DOWNLOAD]),
            "/upload" => respond(s, 200, &[], req.body.len().to_string().as_bytes()),
            _ => respond(s, 200, &[], b"ok"),
        }
        After::KeepAlive
    })
}

async fn h2_over<T>(io: T) -> SendRequest<Bytes>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    common::http2::client_over(&h2::client::Builder::new(), io).await
}

async fn h2c(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = monoio::net::TcpStream::connect(addr).await.unwrap();
    h2_over(monoio_compat::StreamWrapper::new(tcp)).await
}

/// An h2 client connection over TLS to `addr` (ALPN `h2`).
async fn h2_tls(pki: &Pki, addr: SocketAddr) -> SendRequest<Bytes> {
    h2_over(common::http2::tls_io(pki, addr).await).await
}

/// Sends `req` with `body` (if any) and reads the whole response.
async fn send(client: &SendRequest<Bytes>, req: Request<()>, body: Vec<u8>) -> (u16, Vec<u8>) {
    let mut client = client
        .clone()
        .ready()
        .await
        .expect("the connection is open");
    let (resp, mut stream) = client.send_request(req, body.is_empty()).unwrap();
    if !body.is_empty() {
        stream.send_data(Bytes::from(body), true).unwrap();
    }
    let resp = resp.await.expect("a response");
    let status = resp.status().as_u16();
    let mut recv = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    (status, got)
}

/// Rounds of requests on `client`, the connection idling between them.
async fn serves_after_each_idle(client: SendRequest<Bytes>, base: &str) {
    for round in 0..3 {
        let get = |path: &str| Request::get(format!("{base}{path}")).body(()).unwrap();
        let small = send(&client, get("/small"), Vec::new()).await;
        assert_eq!(small, (200, b"ok".to_vec()), "round {round}");
        let post = Request::post(format!("{base}/upload")).body(()).unwrap();
        let up = send(&client, post, vec![b'u'; UPLOAD]).await;
        assert_eq!(up, (200, UPLOAD.to_string().into_bytes()), "round {round}");
        let (status, big) = send(&client, get("/big"), Vec::new()).await;
        assert_eq!((status, big.len()), (200, DOWNLOAD), "round {round}");
        assert!(big.iter().all(|&b| b == b'd'));
        monoio::time::sleep(IDLE).await;
    }
}

#[test]
fn an_idle_h2c_connection_serves_again() {
    let backend = backend();
    let dao = start(&config(1, "", &[backend.addr]));
    run(async {
        let client = h2c(dao.local_addr()).await;
        serves_after_each_idle(client, "http://test.local").await;
    });
    assert_eq!(backend.request_count(), 9);
    dao.shutdown();
}

#[test]
fn an_idle_h2_connection_over_tls_serves_again() {
    let pki = Pki::new("h2-idle");
    let backend = backend();
    let dao = start(&format!(
        "[server]\nworkers = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n\
         certificates = [{{ cert = \"{}\", key = \"{}\" }}]\nalpn = [\"h2\", \"http/1.1\"]\n\
         [[routes.rule]]\nname = \"all\"\n\
         [[routes.rule.upstreams]]\nname = \"up\"\nurl = \"http://{}\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        backend.addr
    ));
    run(async {
        let client = h2_tls(&pki, dao.local_addr()).await;
        serves_after_each_idle(client, "https://localhost").await;
    });
    assert_eq!(backend.request_count(), 9);
    dao.shutdown();
}
