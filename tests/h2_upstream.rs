//! HTTP/2 upstreams (`protocol = "h2c"`), end to end: HTTP/1.1 clients
//! through DAO to a real h2c server (the `h2` crate's, on a tokio runtime
//! of its own) — requests and bodies translated both ways, streaming,
//! multiplexing onto few connections, the server's stream limit, GOAWAY
//! and dead connections, trailers.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderValue, Request, Response};
use tokio::sync::Notify;

/// What the h2c server saw.
#[derive(Default)]
struct Seen {
    /// Connections accepted, and ended.
    connections: AtomicUsize,
    closed: AtomicUsize,
    /// Streams being answered now, per connection, and the most at once.
    active: Mutex<HashMap<usize, usize>>,
    most_per_connection: AtomicUsize,
    most_overall: AtomicUsize,
    /// Set by the test: `/stream` sends its second part.
    release: AtomicBool,
    /// Requests as received: method, path, authority, headers.
    requests: Mutex<Vec<(String, String, String, HeaderMap)>>,
}

/// A real h2c server on 127.0.0.1:0 (prior knowledge, no TLS).
struct H2Server {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl H2Server {
    /// Allows `max_streams` concurrent streams per connection.
    fn start(max_streams: u32) -> H2Server {
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        let addr = common::http2::tokio_server(move |tcp| {
            let id = s.connections.fetch_add(1, Ordering::SeqCst);
            serve(tcp, id, max_streams, s.clone())
        });
        H2Server { addr, seen }
    }

    fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    fn last_request(&self) -> (String, String, String, HeaderMap) {
        self.seen.requests.lock().unwrap().last().cloned().unwrap()
    }
}

/// Signals from handlers to their connection's loop.
#[derive(Default)]
struct ConnSignals {
    /// Close the TCP connection at once, no GOAWAY.
    die: Notify,
    /// Send GOAWAY and finish the streams in flight.
    go_away: Notify,
}

/// Counts a connection as ended when dropped.
struct Ended(Arc<Seen>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.closed.fetch_add(1, Ordering::SeqCst);
    }
}

async fn serve(tcp: tokio::net::TcpStream, id: usize, max_streams: u32, seen: Arc<Seen>) {
    let _ended = Ended(seen.clone());
    let mut conn = match h2::server::Builder::new()
        .max_concurrent_streams(max_streams)
        .handshake::<_, Bytes>(tcp)
        .await
    {
        Ok(c) => c,
        Err(_) => return,
    };
    let signals = Arc::new(ConnSignals::default());
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => {
                    tokio::spawn(handle(req, respond, id, seen.clone(), signals.clone()));
                }
                _ => return,
            },
            _ = signals.die.notified() => return,
            _ = signals.go_away.notified() => {
                conn.graceful_shutdown();
                // Drive the connection to its end.
                while let Some(Ok((req, respond))) = conn.accept().await {
                    tokio::spawn(handle(req, respond, id, seen.clone(), signals.clone()));
                }
                return;
            }
        }
    }
}

/// Counts a stream in its connection's and the server's gauges.
struct Active {
    seen: Arc<Seen>,
    conn: usize,
}

impl Active {
    fn new(seen: &Arc<Seen>, conn: usize) -> Active {
        let mut a = seen.active.lock().unwrap();
        let n = a.entry(conn).or_default();
        *n += 1;
        seen.most_per_connection.fetch_max(*n, Ordering::SeqCst);
        let total: usize = a.values().sum();
        seen.most_overall.fetch_max(total, Ordering::SeqCst);
        Active {
            seen: seen.clone(),
            conn,
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        *self
            .seen
            .active
            .lock()
            .unwrap()
            .get_mut(&self.conn)
            .unwrap() -= 1;
    }
}

async fn read_all(body: &mut RecvStream) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        all.extend_from_slice(&chunk);
    }
    all
}

async fn handle(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    conn: usize,
    seen: Arc<Seen>,
    signals: Arc<ConnSignals>,
) {
    let _active = Active::new(&seen, conn);
    let (parts, mut body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    seen.requests.lock().unwrap().push((
        parts.method.to_string(),
        parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        authority.clone(),
        parts.headers.clone(),
    ));
    let ok = |len: Option<usize>| {
        let mut b = Response::builder().status(200).header("x-served-by", "h2");
        if let Some(n) = len {
            b = b.header("content-length", n);
        }
        b.body(()).unwrap()
    };
    match path.as_str() {
        // The request as the server saw it, with a length.
        "/info" => {
            let text = format!(
                "{} {} authority={} scheme={}",
                parts.method,
                parts.uri.path_and_query().unwrap(),
                authority,
                parts.uri.scheme_str().unwrap_or("")
            );
            let mut s = respond.send_response(ok(Some(text.len())), false).unwrap();
            s.send_data(Bytes::from(text), true).unwrap();
        }
        // The body back, in two DATA frames, without a length.
        "/echo" => {
            let all = read_all(&mut body).await;
            let mut s = respond.send_response(ok(None), false).unwrap();
            let half = all.len() / 2;
            s.send_data(Bytes::copy_from_slice(&all[..half]), false)
                .unwrap();
            s.send_data(Bytes::copy_from_slice(&all[half..]), true)
                .unwrap();
        }
        // A first part, then the rest once the test says so.
        "/stream" => {
            let mut s = respond.send_response(ok(None), false).unwrap();
            s.send_data(Bytes::from_static(b"first;"), false).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !seen.release.load(Ordering::SeqCst) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            s.send_data(Bytes::from_static(b"second"), true).unwrap();
        }
        // Each DATA frame echoed as it comes, then trailers: the response
        // runs while the request body still streams.
        "/bidi" => {
            let mut s = respond.send_response(ok(None), false).unwrap();
            let mut n = 0;
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
                n += 1;
                s.send_data(chunk, false).unwrap();
            }
            let mut t = HeaderMap::new();
            t.insert("x-chunks", HeaderValue::from(n));
            s.send_trailers(t).unwrap();
        }
        // Answers after a while (concurrency tests).
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let mut s = respond.send_response(ok(Some(4)), false).unwrap();
            s.send_data(Bytes::from_static(b"slow"), true).unwrap();
        }
        // Data, then trailers.
        "/trailers" => {
            let mut s = respond.send_response(ok(None), false).unwrap();
            s.send_data(Bytes::from_static(b"payload"), false).unwrap();
            let mut t = HeaderMap::new();
            t.insert("grpc-status", HeaderValue::from_static("0"));
            t.insert("x-checksum", HeaderValue::from_static("abc"));
            s.send_trailers(t).unwrap();
        }
        // Answers, then tells the client to go away.
        "/goaway" => {
            let mut s = respond.send_response(ok(Some(2)), false).unwrap();
            s.send_data(Bytes::from_static(b"ok"), true).unwrap();
            signals.go_away.notify_one();
        }
        // The connection dies before an answer.
        "/die" => {
            signals.die.notify_one();
            // Never answered: the connection goes first.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        _ => {
            let resp = Response::builder().status(404).body(()).unwrap();
            let _ = respond.send_response(resp, true);
        }
    }
}

/// DAO with one worker and one route over `upstream` as h2c; `proxy` is
/// extra `[proxy]` keys.
fn dao(upstream: SocketAddr, proxy: &str) -> Server {
    start(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n[proxy]\n{proxy}\n\
         [[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"up\"\n\
         url = \"http://{upstream}\"\nprotocol = \"h2c\"\n"
    ))
}

#[test]
fn get_and_post_are_translated_both_ways() {
    let up = H2Server::start(100);
    let dao = dao(up.addr, "");
    let mut c = Client::connect(dao.local_addr());

    let r = c.get("/info?x=1");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "GET /info?x=1 authority=test.local scheme=http");
    assert_eq!(r.header("x-served-by"), Some("h2"));
    assert_eq!(r.header("content-length"), Some("46"));
    let (_, _, _, headers) = up.last_request();
    assert_eq!(headers.get("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(headers.get("via").unwrap(), "1.1 dao");
    assert!(headers.get("host").is_none() && headers.get("connection").is_none());

    // A body with a length, on the same client connection.
    c.send(b"POST /echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: 11\r\n\r\nhello world");
    let r = c.read(false);
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    // No length from the upstream: chunked to the client.
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let (method, _, _, headers) = up.last_request();
    assert_eq!(method, "POST");
    assert_eq!(headers.get("content-length").unwrap(), "11");

    // A chunked body: its payload only goes upstream.
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    let r = c.read(false);
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));

    // A body larger than the stream windows, sent in pieces.
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: test.local\r\nContent-Length: {}\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    );
    for piece in big.chunks(100_000) {
        c.send(piece);
    }
    let r = c.read(false);
    assert_eq!(r.status, 200);
    assert!(r.body == big, "large body differs ({} bytes)", r.body.len());

    // HEAD: no body; unknown path: the upstream's 404.
    c.send(b"HEAD /info HTTP/1.1\r\nHost: test.local\r\n\r\n");
    let r = c.read(true);
    assert_eq!(r.status, 200);
    assert_eq!(c.get("/nope").status, 404);

    // HTTP/1.0: no chunks, the end marked by closing.
    let mut c10 = Client::connect(dao.local_addr());
    c10.send(b"POST /echo HTTP/1.0\r\nContent-Length: 4\r\n\r\nabcd");
    let r = c10.read(false);
    assert_eq!((r.status, r.text().as_str()), (200, "abcd"));
    assert!(r.header("transfer-encoding").is_none());
    let (_, _, authority, _) = up.last_request();
    assert_eq!(
        authority,
        up.addr.to_string(),
        "the upstream's authority when no Host"
    );

    // All of it over one upstream connection.
    assert_eq!(up.connections(), 1);
    let stats = dao.shutdown();
    assert_eq!(stats[0].h2_opened, 1);
    assert!(stats[0].h2_reused >= 6, "{stats:?}");
    assert_eq!(stats[0].opened, 0, "no HTTP/1.1 upstream connection");
}

#[test]
fn responses_stream_as_they_come() {
    let up = H2Server::start(100);
    let dao = dao(up.addr, "");
    let mut c = Client::connect(dao.local_addr());
    c.send(b"GET /stream HTTP/1.1\r\nHost: test.local\r\n\r\n");
    // The head and the first part arrive while the upstream still holds
    // the rest back.
    let mut head = String::new();
    loop {
        let mut line = String::new();
        c.reader.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    let mut size = String::new();
    c.reader.read_line(&mut size).unwrap();
    assert_eq!(size, "6\r\n");
    let mut first = [0u8; 8];
    c.reader.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"first;\r\n");
    up.seen.release.store(true, Ordering::SeqCst);
    let mut rest = Vec::new();
    loop {
        let mut line = String::new();
        c.reader.read_line(&mut line).unwrap();
        rest.extend_from_slice(line.as_bytes());
        if line == "\r\n" && rest.ends_with(b"0\r\n\r\n") {
            break;
        }
    }
    assert_eq!(rest, b"6\r\nsecond\r\n0\r\n\r\n");
}

#[test]
fn many_clients_share_few_upstream_connections() {
    let up = H2Server::start(100);
    let dao = dao(up.addr, "h2_max_connections_per_upstream = 2");
    let addr = dao.local_addr();
    let clients: Vec<_> = (0..24)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..4 {
                    let r = c.get("/slow");
                    assert_eq!((r.status, r.text().as_str()), (200, "slow"));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // 96 requests, many at once, over at most two connections.
    let conns = up.connections();
    assert!((1..=2).contains(&conns), "{conns} upstream connections");
    let most = up.seen.most_per_connection.load(Ordering::SeqCst);
    assert!(most >= 8, "only {most} streams at once on a connection");
    let stats = dao.shutdown();
    assert_eq!(stats[0].h2_opened as usize, conns);
    assert_eq!(stats[0].h2_reused as usize, 96 - conns);
}

#[test]
fn the_servers_stream_limit_is_honoured() {
    // Two streams per connection, two connections: ten slow requests at
    // once all succeed, four at a time.
    let up = H2Server::start(2);
    let dao = dao(up.addr, "h2_max_connections_per_upstream = 2");
    let addr = dao.local_addr();
    let started = Instant::now();
    let clients: Vec<_> = (0..10)
        .map(|_| {
            std::thread::spawn(move || {
                let r = Client::connect(addr).get("/slow");
                assert_eq!((r.status, r.text().as_str()), (200, "slow"));
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // The first connection full, a second one opened (the h2 crate alone
    // would have queued every stream on the first).
    assert_eq!(up.connections(), 2);
    assert!(up.seen.most_per_connection.load(Ordering::SeqCst) <= 2);
    assert!(up.seen.most_overall.load(Ordering::SeqCst) <= 4);
    // Ten 150 ms answers, four at a time: three rounds at least.
    assert!(started.elapsed() >= Duration::from_millis(440));
}

#[test]
fn a_full_pool_makes_requests_wait_for_a_stream() {
    // One connection of one stream: three slow requests at once go one
    // after the other, each waiting for the stream before its own
    // response timeout starts.
    let up = H2Server::start(1);
    let dao = dao(
        up.addr,
        "h2_max_connections_per_upstream = 1\nresponse_timeout = \"400ms\"",
    );
    let addr = dao.local_addr();
    let started = Instant::now();
    let clients: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || Client::connect(addr).get("/slow").status))
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(statuses, [200, 200, 200]);
    assert!(started.elapsed() >= Duration::from_millis(440));
    assert_eq!(up.connections(), 1);
    assert_eq!(up.seen.most_overall.load(Ordering::SeqCst), 1);
}

#[test]
fn goaway_and_dead_connections_recover() {
    let up = H2Server::start(100);
    let dao = dao(up.addr, "");
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/info").status, 200);
    // Answered, then GOAWAY: the next requests go over a new connection.
    let r = c.get("/goaway");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    for _ in 0..5 {
        assert_eq!(c.get("/info").status, 200);
    }
    assert_eq!(up.connections(), 2);

    // The connection dies with a request on it: a POST is not sent
    // again, 502; the next request opens a new connection.
    c.send(b"POST /die HTTP/1.1\r\nHost: test.local\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(c.read(false).status, 502);
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/info").status, 200);
    assert_eq!(up.connections(), 3);
    // A GET that met a dead pooled connection is tried once more on a
    // fresh one (which dies too here): 502 after two connections.
    assert_eq!(c.get("/die").status, 502);
    assert_eq!(up.connections(), 4);
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/info").status, 200);
    assert_eq!(up.connections(), 5);
}

#[test]
fn an_upstream_that_is_not_h2_fails_to_connect() {
    // An HTTP/1.1 server named as h2c: the connect fails, 502.
    let h1 = Backend::text("h1 only");
    let dao = dao(h1.addr, "connect_timeout = \"2s\"");
    let r = Client::connect(dao.local_addr()).get("/");
    assert_eq!(r.status, 502);
    // And a refused connection too.
    let dao = self::dao(dead_addr(), "");
    assert_eq!(Client::connect(dao.local_addr()).get("/").status, 502);
}

/// Reads a chunked response's head, body and trailer lines.
fn read_with_trailers(c: &mut Client) -> (String, Vec<u8>, Vec<String>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        c.reader.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        c.reader.read_line(&mut size).unwrap();
        let n = usize::from_str_radix(size.trim_end(), 16).unwrap();
        if n == 0 {
            break;
        }
        let mut chunk = vec![0; n + 2];
        c.reader.read_exact(&mut chunk).unwrap();
        body.extend_from_slice(&chunk[..n]);
    }
    let mut trailers = Vec::new();
    loop {
        let mut line = String::new();
        c.reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            return (head, body, trailers);
        }
        trailers.push(line.trim_end().to_string());
    }
}

#[test]
fn trailers_reach_clients_that_accept_them() {
    let up = H2Server::start(100);
    let dao = dao(up.addr, "");
    let mut c = Client::connect(dao.local_addr());
    c.send(b"GET /trailers HTTP/1.1\r\nHost: test.local\r\nTE: trailers\r\n\r\n");
    let (head, body, trailers) = read_with_trailers(&mut c);
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert_eq!(body, b"payload");
    assert_eq!(trailers, ["grpc-status: 0", "x-checksum: abc"]);
    // The upstream was told the client takes trailers.
    let (_, _, _, headers) = up.last_request();
    assert_eq!(headers.get("te").unwrap(), "trailers");

    // A client that did not ask gets none; the connection goes on.
    c.send(b"GET /trailers HTTP/1.1\r\nHost: test.local\r\n\r\n");
    let (_, body, trailers) = read_with_trailers(&mut c);
    assert_eq!(body, b"payload");
    assert!(trailers.is_empty(), "{trailers:?}");
    assert!(up.last_request().3.get("te").is_none());
    assert_eq!(c.get("/info").status, 200);

    // A POST (its head gone from DAO's buffer once sent) keeps its
    // trailers too.
    c.send(b"POST /trailers HTTP/1.1\r\nHost: test.local\r\nTE: trailers\r\nContent-Length: 2\r\n\r\nhi");
    let (_, body, trailers) = read_with_trailers(&mut c);
    assert_eq!(body, b"payload");
    assert_eq!(trailers, ["grpc-status: 0", "x-checksum: abc"]);
}

#[test]
fn filters_retries_and_sense_work_as_for_http1() {
    let up = H2Server::start(100);
    let dao = start(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 20\n\
         [[routes.rule]]\nname = \"r\"\n\
         [[routes.rule.upstreams]]\nname = \"dead\"\nurl = \"http://{}\"\nprotocol = \"h2c\"\n\
         [[routes.rule.upstreams]]\nname = \"live\"\nurl = \"http://{}\"\nprotocol = \"h2c\"\n\
         [routes.rule.retry]\n[routes.rule.outlier_detection]\nenabled = false\n\
         [routes.rule.filters]\nrequest_headers_add = {{ \"X-From\" = \"dao\" }}\n\
         response_headers_add = {{ \"X-Gate\" = \"h2c\" }}\n",
        dead_addr(),
        up.addr
    ));
    let mut c = Client::connect(dao.local_addr());
    for _ in 0..6 {
        let r = c.get("/info");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-gate"), Some("h2c"));
    }
    assert_eq!(up.last_request().3.get("x-from").unwrap(), "dao");
    // Each went to the dead upstream first (as over HTTP/1.1, see
    // tests/retry.rs), then to the live one.
    wait_metric(&dao, "dao_retries_total{route=\"r\"}", 6.0);
    wait_metric(
        &dao,
        "dao_upstream_failures_total{route=\"r\",upstream=\"dead\",kind=\"connect\"}",
        6.0,
    );
    wait_metric(
        &dao,
        "http_requests_total{route=\"r\",upstream=\"live\",method=\"GET\",status=\"200\"}",
        6.0,
    );
}

#[test]
fn the_circuit_breaker_limits_h2_connections_and_waiters() {
    // One stream per connection; the breaker allows one connection and
    // one request waiting: a second request at once waits for the stream,
    // a third is refused.
    let up = H2Server::start(1);
    let dao = start(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [[routes.rule]]\nname = \"r\"\n\
         [[routes.rule.upstreams]]\nname = \"up\"\nurl = \"http://{}\"\nprotocol = \"h2c\"\n\
         [routes.rule.circuit_breaker]\nmax_connections = 1\nmax_pending = 1\n",
        up.addr
    ));
    let addr = dao.local_addr();
    let first = std::thread::spawn(move || Client::connect(addr).get("/slow").status);
    std::thread::sleep(Duration::from_millis(50));
    let second = std::thread::spawn(move || Client::connect(addr).get("/slow").status);
    std::thread::sleep(Duration::from_millis(50));
    let r = Client::connect(addr).get("/slow");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-dao-overloaded"), Some("circuit-breaker"));
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(second.join().unwrap(), 200);
    assert_eq!(up.connections(), 1);
    assert_eq!(up.seen.most_overall.load(Ordering::SeqCst), 1);

    // With no connection open to wait on, a refused connect is a 503 at
    // once: a route whose breaker allows none beyond an HTTP/1.1 one.
    let h1 = Backend::text("h1");
    let dao = start(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n[proxy]\npool_max_idle = 4\n\
         [[routes.rule]]\nname = \"h1\"\n[routes.rule.match]\npath_prefix = \"/h1\"\n\
         [[routes.rule.upstreams]]\nname = \"a\"\nurl = \"http://{0}\"\n\
         [[routes.rule]]\nname = \"h2\"\n\
         [[routes.rule.upstreams]]\nname = \"b\"\nurl = \"http://{0}\"\nprotocol = \"h2c\"\n\
         [routes.rule.circuit_breaker]\nmax_connections = 1\n",
        h1.addr
    ));
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/h1").status, 200);
    let r = c.get("/other");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-dao-overloaded"), Some("circuit-breaker"));
}

#[test]
fn a_reload_retires_the_connections_of_removed_upstreams() {
    let a = H2Server::start(100);
    let b = H2Server::start(100);
    let config = |up: SocketAddr| {
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
             [[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"up\"\n\
             url = \"http://{up}\"\nprotocol = \"h2c\"\n"
        )
    };
    let dao = start(&config(a.addr));
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/info").status, 200);
    assert_eq!(
        (a.connections(), a.seen.closed.load(Ordering::SeqCst)),
        (1, 0)
    );
    dao.reloads().reload(Some(config(b.addr))).unwrap();
    // The worker applies it at its next tick; A's idle connection closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.seen.closed.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "A's connection stayed open");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.get("/info").status, 200);
    assert_eq!((a.connections(), b.connections()), (1, 1));
}

#[test]
fn idle_connections_close_after_the_pool_idle_timeout() {
    let up = H2Server::start(100);
    let dao = dao(up.addr, "pool_idle_timeout = \"500ms\"");
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/info").status, 200);
    // Swept once a second: closed within a few seconds, not at once.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(up.seen.closed.load(Ordering::SeqCst), 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.seen.closed.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the idle connection stayed open");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The next request opens a new one.
    assert_eq!(c.get("/info").status, 200);
    assert_eq!(up.connections(), 2);
}

/// The HTTP/2 downstream's way in (`Pool::h2_send`): an h2 client, an h2
/// server on a monoio runtime standing for DAO's downstream side, each
/// request relayed to the h2c upstream with its body streaming from a task
/// of its own, the response relayed back: a bidirectional stream works
/// (the first echo arrives before the request body ends), trailers pass.
#[test]
fn h2_streams_relay_through_the_pool_api() {
    use dao::upstream::h2::{Admission, Limits};
    use dao::upstream::pool::Pool;
    use monoio_compat::StreamWrapper;
    use std::cell::Cell;
    use std::rc::Rc;

    let up = H2Server::start(100);
    let upstream = up.addr;
    let target = Rc::new(dao::memory::Upstream {
        name: "h2c".into(),
        addr: upstream,
        authority: upstream.to_string(),
        weight: 1,
        intents: Vec::new(),
        pool: 0,
        protocol: dao::memory::UpstreamProtocol::H2c,
        tls: None,
    });
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    rt.block_on(async move {
        let pool = Rc::new(Pool::new(1, 8, Duration::from_secs(15)));
        let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let front = listener.local_addr().unwrap();
        // The downstream side: every stream goes upstream.
        let p = pool.clone();
        let target = target.clone();
        monoio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(StreamWrapper::new(tcp))
                .await
                .unwrap();
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                let (p, target) = (p.clone(), target.clone());
                monoio::spawn(async move {
                    let (parts, body) = req.into_parts();
                    let mut out = http::Request::new(());
                    *out.method_mut() = parts.method;
                    *out.uri_mut() = format!("http://{upstream}{}", parts.uri.path())
                        .parse()
                        .unwrap();
                    *out.headers_mut() = parts.headers;
                    let pending = Cell::new(0);
                    let admission = Admission {
                        breaker: None,
                        pending: &pending,
                    };
                    let limits = Limits {
                        connect: Duration::from_secs(2),
                        wait: Duration::from_secs(2),
                    };
                    let timeouts = (Duration::from_secs(5), Duration::from_secs(5));
                    let (head, mut body) = p
                        .h2_send((0, &target), (admission, limits), out, Some(body), timeouts)
                        .await
                        .unwrap();
                    let resp = http::Response::from_parts(head, ());
                    let mut down = respond.send_response(resp, false).unwrap();
                    body.relay_to(&mut down, Duration::from_secs(5))
                        .await
                        .unwrap();
                });
            }
        });
        // The client.
        let tcp = monoio::net::TcpStream::connect(front).await.unwrap();
        let (client, conn) = h2::client::handshake(StreamWrapper::new(tcp))
            .await
            .unwrap();
        monoio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.unwrap();
        let req = http::Request::post("http://dao.test/bidi")
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(req, false).unwrap();
        send.send_data(Bytes::from_static(b"ping-1"), false)
            .unwrap();
        let resp = response.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-served-by"], "h2");
        let mut body = resp.into_body();
        // The first echo, while the request is still open.
        let first = body.data().await.unwrap().unwrap();
        assert_eq!(&first[..], b"ping-1");
        let _ = body.flow_control().release_capacity(first.len());
        send.send_data(Bytes::from_static(b"ping-2"), true).unwrap();
        let second = body.data().await.unwrap().unwrap();
        assert_eq!(&second[..], b"ping-2");
        assert!(body.data().await.is_none());
        let trailers = body.trailers().await.unwrap().unwrap();
        assert_eq!(trailers["x-chunks"], "2");

        // A second exchange reuses the pooled upstream connection.
        let req = http::Request::get("http://dao.test/info").body(()).unwrap();
        let (response, _) = client.send_request(req, true).unwrap();
        let resp = response.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let text = body.data().await.unwrap().unwrap();
        assert!(text.starts_with(b"GET /info"), "{text:?}");
        assert_eq!(pool.stats().h2_opened, 1);
        assert_eq!(pool.stats().h2_reused, 1);
    });
    assert_eq!(up.connections(), 1);
}
