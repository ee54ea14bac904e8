//! WebSocket through DAO: a real client and a real echo server
//! (tungstenite) on loopback, the HTTP/1.1 Upgrade tunnelled both ways,
//! from plain clients (ws) and over a TLS listener (wss, a rustls client).
// Test servers share state across threads; the lock rule is for the data path.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::pki::{Pki, TlsClient};
use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error as WsError, Message, WebSocket};

type Headers = Vec<(String, String)>;

/// A WebSocket echo server: text and binary messages come back as they
/// went; the text `close` makes it close the session, `drop` makes it cut
/// the TCP connection without a close frame.
struct EchoServer {
    addr: SocketAddr,
    /// Handshake requests' headers, in arrival order.
    handshakes: Arc<Mutex<Vec<Headers>>>,
    /// TCP connections accepted.
    connections: Arc<AtomicUsize>,
}

impl EchoServer {
    fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (h, c) = (handshakes.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let h = h.clone();
                std::thread::spawn(move || echo(stream, h));
            }
        });
        EchoServer {
            addr,
            handshakes,
            connections,
        }
    }

    fn last_handshake(&self) -> Headers {
        self.handshakes.lock().unwrap().last().cloned().unwrap()
    }
}

// The callback's error type is tungstenite's, large or not.
#[allow(clippy::result_large_err)]
fn echo(stream: TcpStream, seen: Arc<Mutex<Vec<Headers>>>) {
    let record = |req: &tungstenite::handshake::server::Request,
                  resp: tungstenite::handshake::server::Response| {
        let headers = req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        seen.lock().unwrap().push(headers);
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, record) else {
        return;
    };
    loop {
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str() == "close" => {
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "bye".into(),
                };
                if ws.close(Some(frame)).is_err() {
                    return;
                }
            }
            Ok(Message::Text(t)) if t.as_str() == "drop" => {
                let _ = ws.get_mut().shutdown(Shutdown::Both);
                return;
            }
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            // Pongs to pings go out with the next read.
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

type Ws = WebSocket<TcpStream>;

/// A WebSocket client session through DAO, and the handshake's response.
fn connect(dao: SocketAddr, path: &str) -> (Ws, tungstenite::handshake::client::Response) {
    try_connect(dao, path).unwrap_or_else(|e| panic!("handshake through DAO failed: {e}"))
}

fn try_connect(
    dao: SocketAddr,
    path: &str,
) -> Result<(Ws, tungstenite::handshake::client::Response), WsError> {
    let s = TcpStream::connect(dao).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tungstenite::client(format!("ws://{dao}{path}"), s).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
    })
}

fn roundtrip<S: Read + Write>(ws: &mut WebSocket<S>, m: Message) {
    ws.send(m.clone()).unwrap();
    assert_eq!(ws.read().unwrap(), m);
}

/// Reads until the session ends; the error it ended with.
fn read_to_end<S: Read + Write>(ws: &mut WebSocket<S>) -> WsError {
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Ok(Message::Pong(_)) => {}
            Ok(m) => panic!("unexpected message {m:?}"),
            Err(e) => return e,
        }
    }
}

/// Whether an error is the peer going away (not a read timeout).
fn is_gone(e: &WsError) -> bool {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => true,
        WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => true,
        WsError::Io(io) => !matches!(
            io.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        _ => false,
    }
}

/// Text, binary, a 1 MiB message, a ping, and many small messages in
/// flight at once: each comes back from the echo server as it went.
fn exchange_messages<S: Read + Write>(ws: &mut WebSocket<S>) {
    roundtrip(ws, Message::text("hello, 世界"));
    roundtrip(ws, Message::binary(vec![0u8, 1, 2, 255]));
    let big: Vec<u8> = (0..1usize << 20).map(|i| (i * 31 % 251) as u8).collect();
    roundtrip(ws, Message::binary(big));
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::Pong(b"are you there".to_vec().into())
    );
    for i in 0..2000 {
        ws.write(Message::text(format!("m{i}"))).unwrap();
    }
    ws.flush().unwrap();
    for i in 0..2000 {
        assert_eq!(ws.read().unwrap(), Message::text(format!("m{i}")));
    }
}

/// Stops DAO, which takes no longer than a moment once no tunnel is
/// left open (the shutdown timeout is 30 s).
fn stop(dao: Server) {
    let started = Instant::now();
    dao.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "tunnels held the drain"
    );
}

/// DAO (one worker) in front of `upstream`, with `extra` server-level TOML
/// and `filters` on the route.
fn dao(upstream: SocketAddr, extra: &str, filters: &str) -> Server {
    let mut text = config(1, extra, &[upstream]);
    if !filters.is_empty() {
        text += &format!("[routes.rule.filters]\n{filters}\n");
    }
    start(&text)
}

#[test]
fn messages_go_both_ways_and_the_client_closes() {
    let server = EchoServer::start();
    let dao = dao(
        server.addr,
        "",
        r#"response_headers_add = { "X-Tunnel" = "${upstream}" }"#,
    );
    let (mut ws, resp) = connect(dao.local_addr(), "/chat?room=1");
    assert_eq!(resp.status(), 101);
    // The 101 went through the usual response path.
    assert_eq!(resp.headers()["x-tunnel"], "b0");
    assert_eq!(resp.headers()["via"], "1.1 dao");
    assert!(resp.headers()["connection"]
        .to_str()
        .unwrap()
        .eq_ignore_ascii_case("upgrade"));
    let seen = server.last_handshake();
    assert_eq!(header(&seen, "upgrade"), Some("websocket"));
    assert_eq!(header(&seen, "connection"), Some("Upgrade"));
    assert_eq!(header(&seen, "sec-websocket-version"), Some("13"));
    assert!(header(&seen, "sec-websocket-key").is_some());
    assert_eq!(header(&seen, "x-forwarded-for"), Some("127.0.0.1"));

    exchange_messages(&mut ws);
    ws.close(None).unwrap();
    let end = read_to_end(&mut ws);
    assert!(matches!(end, WsError::ConnectionClosed), "{end:?}");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    drop(ws);
    stop(dao);
}

/// The echo server closes the session (`close`): its close frame, then
/// the end of the stream, reach the client.
fn server_closes_cleanly<S: Read + Write>(mut ws: WebSocket<S>) {
    roundtrip(&mut ws, Message::text("before"));
    ws.send(Message::text("close")).unwrap();
    match ws.read().unwrap() {
        Message::Close(Some(f)) => {
            assert_eq!(f.code, CloseCode::Normal);
            assert_eq!(f.reason.as_str(), "bye");
        }
        m => panic!("expected the server's close, got {m:?}"),
    }
    let end = read_to_end(&mut ws);
    assert!(matches!(end, WsError::ConnectionClosed), "{end:?}");
}

/// The echo server cuts its connection (`drop`): the client's goes soon.
fn upstream_cut_closes_the_client<S: Read + Write>(mut ws: WebSocket<S>) {
    roundtrip(&mut ws, Message::text("x"));
    ws.send(Message::text("drop")).unwrap();
    let started = Instant::now();
    let end = read_to_end(&mut ws);
    assert!(is_gone(&end), "{end:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Under a 600 ms idle timeout: traffic keeps the tunnel open past it,
/// then quiet closes it.
fn idle_tunnel_closes<S: Read + Write>(mut ws: WebSocket<S>) {
    for i in 0..8 {
        std::thread::sleep(Duration::from_millis(150));
        roundtrip(&mut ws, Message::text(format!("tick {i}")));
    }
    let quiet = Instant::now();
    let end = read_to_end(&mut ws);
    let waited = quiet.elapsed();
    assert!(is_gone(&end), "{end:?}");
    assert!(
        waited >= Duration::from_millis(550),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
}

/// Stops `dao` (shutdown timeout 300 ms) with `ws` open: the tunnel holds
/// the drain that long, then is cut.
fn shutdown_cuts<S: Read + Write>(dao: Server, mut ws: WebSocket<S>) {
    roundtrip(&mut ws, Message::text("hi"));
    let started = Instant::now();
    dao.shutdown();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "stopped after {took:?}");
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    let end = read_to_end(&mut ws);
    assert!(is_gone(&end), "{end:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_server_closes_cleanly() {
    let server = EchoServer::start();
    let dao = dao(server.addr, "", "");
    server_closes_cleanly(connect(dao.local_addr(), "/").0);
    stop(dao);
}

#[test]
fn the_upstream_cutting_the_tunnel_closes_the_client() {
    let server = EchoServer::start();
    let dao = dao(server.addr, "", "");
    upstream_cut_closes_the_client(connect(dao.local_addr(), "/").0);
    stop(dao);
}

#[test]
fn an_idle_tunnel_is_closed_after_the_timeout() {
    let server = EchoServer::start();
    let dao = dao(server.addr, "[proxy]\ntunnel_idle_timeout = \"600ms\"", "");
    idle_tunnel_closes(connect(dao.local_addr(), "/").0);
    stop(dao);
}

#[test]
fn non_101_answers_are_plain_responses_on_a_reusable_connection() {
    // Refuses upgrades with 404 (or 200 on /ok), serves everything else.
    let backend = Backend::start(|req, s| {
        match (req.header("upgrade"), req.path.as_str()) {
            (Some(_), "/ok") => respond(s, 200, &[], b"no upgrade today"),
            (Some(_), _) => respond(s, 404, &[], b"no websocket here"),
            (None, _) => respond(s, 200, &[], b"plain"),
        }
        After::KeepAlive
    });
    let dao = dao(backend.addr, "", "");
    let handshake = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let mut c = Client::connect(dao.local_addr());
    c.send(handshake("/ws").as_bytes());
    let r = c.read(false);
    assert_eq!((r.status, r.text().as_str()), (404, "no websocket here"));
    let seen = backend.last_request();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(seen.header("connection"), Some("Upgrade"));
    c.send(handshake("/ok").as_bytes());
    let r = c.read(false);
    assert_eq!((r.status, r.text().as_str()), (200, "no upgrade today"));
    // Still HTTP/1.1 on both sides.
    let r = c.get("/after");
    assert_eq!((r.status, r.text().as_str()), (200, "plain"));
    assert_eq!(
        backend.connection_count(),
        1,
        "the upstream connection was reused"
    );

    // A real client sees the refusal as such.
    match try_connect(dao.local_addr(), "/ws") {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("expected a 404, got {:?}", other.map(|_| ())),
    }
    stop(dao);
}

#[test]
fn filters_refuse_the_upgrade_before_any_upstream() {
    let server = EchoServer::start();
    let denied = dao(server.addr, "", r#"ip_deny = ["127.0.0.0/8"]"#);
    match try_connect(denied.local_addr(), "/") {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
    stop(denied);
    let keyed = dao(server.addr, "", r#"api_keys = ["k-1234567890abcdef1234"]"#);
    match try_connect(keyed.local_addr(), "/") {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|_| ())),
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    // With the key, the same handshake goes through.
    let s = TcpStream::connect(keyed.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/",
        keyed.local_addr()
    ))
    .unwrap();
    req.headers_mut()
        .insert("x-api-key", "k-1234567890abcdef1234".parse().unwrap());
    let (mut ws, _) = tungstenite::client(req, s).unwrap();
    roundtrip(&mut ws, Message::text("let in"));
    drop(ws);
    stop(keyed);
}

#[test]
fn tunnels_run_beside_each_other_and_plain_requests() {
    let server = EchoServer::start();
    let plain = Backend::text("plain");
    let dao = start(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 2\n\
         [[routes.rule]]\nname = \"ws\"\n[routes.rule.match]\npath_prefix = \"/ws\"\n\
         [[routes.rule.upstreams]]\nname = \"echo\"\nurl = \"http://{}\"\n\
         [[routes.rule]]\nname = \"web\"\n\
         [[routes.rule.upstreams]]\nname = \"web\"\nurl = \"http://{}\"\n",
        server.addr, plain.addr
    ));
    let addr = dao.local_addr();
    let (mut a, _) = connect(addr, "/ws/a");
    let (mut b, _) = connect(addr, "/ws/b");
    for i in 0..50 {
        a.send(Message::text(format!("a{i}"))).unwrap();
        b.send(Message::binary(format!("b{i}").into_bytes()))
            .unwrap();
        let mut c = Client::connect(addr);
        let r = c.get("/page");
        assert_eq!((r.status, r.text().as_str()), (200, "plain"));
        assert_eq!(
            b.read().unwrap(),
            Message::binary(format!("b{i}").into_bytes())
        );
        assert_eq!(a.read().unwrap(), Message::text(format!("a{i}")));
    }
    a.close(None).unwrap();
    assert!(matches!(read_to_end(&mut a), WsError::ConnectionClosed));
    // The other tunnel is untouched.
    roundtrip(&mut b, Message::text("still here"));
    b.close(None).unwrap();
    assert!(matches!(read_to_end(&mut b), WsError::ConnectionClosed));
    drop((a, b));
    stop(dao);
}

/// An upstream that accepts any upgrade at the byte level: answers 101
/// with `early` right behind the head (one write), then collects what the
/// client relays until it half-closes, and answers with how much it got.
/// Sends (request head, bytes received) when done.
fn raw_upgrader(early: &'static [u8]) -> (SocketAddr, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "closed before the head");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8(buf[..end].to_vec()).unwrap();
        let mut got = buf[end..].to_vec();
        let mut answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                           Connection: Upgrade\r\n\r\n"
            .to_vec();
        answer.extend_from_slice(early);
        s.write_all(&answer).unwrap();
        s.read_to_end(&mut got).unwrap();
        // The client's half-close arrived; this direction still works.
        s.write_all(format!("got {} bytes", got.len()).as_bytes())
            .unwrap();
        drop(s);
        tx.send((head, got)).unwrap();
    });
    (addr, rx)
}

#[test]
fn early_bytes_and_half_closes_cross_the_tunnel() {
    let (up, done) = raw_upgrader(b"early from upstream");
    let dao = dao(up, "", "");
    let mut c = Client::connect(dao.local_addr());
    // Frames sent right behind the handshake, in the same packet.
    c.send(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\
          early from client;",
    );
    let mut status = String::new();
    c.reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101 "), "{status}");
    loop {
        let mut line = String::new();
        c.reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let mut early = [0u8; 19];
    c.reader.read_exact(&mut early).unwrap();
    assert_eq!(&early, b"early from upstream");
    c.send(b" then more");
    c.stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    c.reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got 28 bytes");
    let (head, got) = done.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got, b"early from client; then more");
    assert!(head.contains("\r\nUpgrade: WebSocket\r\n"), "{head}");
    assert!(head.contains("\r\nConnection: Upgrade\r\n"), "{head}");
    assert!(!head.contains("keep-alive"), "{head}");
    stop(dao);
}

#[test]
fn a_101_to_a_plain_request_is_a_bad_gateway() {
    let backend = Backend::start(|_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        After::Close
    });
    let dao = dao(backend.addr, "", "");
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/").status, 502);
    stop(dao);
}

#[test]
fn other_upgrades_are_served_as_plain_http() {
    let backend = Backend::text("plain");
    let dao = dao(backend.addr, "", "");
    let mut c = Client::connect(dao.local_addr());
    c.send(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    let r = c.read(false);
    assert_eq!((r.status, r.text().as_str()), (200, "plain"));
    let seen = backend.last_request();
    for gone in ["upgrade", "connection", "http2-settings"] {
        assert_eq!(seen.header(gone), None, "{gone} must not be forwarded");
    }
    // A POST asking for websocket is no handshake either.
    c.send(
        b"POST / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Content-Length: 2\r\n\r\nhi",
    );
    assert_eq!(c.read(false).status, 200);
    assert_eq!(backend.last_request().header("upgrade"), None);
    stop(dao);
}

#[test]
fn shutdown_cuts_open_tunnels_at_the_timeout() {
    let server = EchoServer::start();
    let dao = dao(server.addr, "shutdown_timeout = \"300ms\"", "");
    let (ws, _) = connect(dao.local_addr(), "/");
    shutdown_cuts(dao, ws);
}

/// `/metrics` as `series → value`.
fn metrics(addr: SocketAddr) -> Vec<(String, f64)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn metric(addr: SocketAddr, series: &str) -> f64 {
    metrics(addr)
        .into_iter()
        .find(|(k, _)| k == series)
        .map_or(0.0, |(_, v)| v)
}

/// Waits until `series` satisfies `ok`.
fn wait_for(addr: SocketAddr, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = metric(addr, series);
        if ok(v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_count_open_tunnels_and_their_bytes() {
    let server = EchoServer::start();
    let dao = dao(
        server.addr,
        "[telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 50\nwindow = \"30s\"\n",
        "",
    );
    let t = dao.telemetry_addr().unwrap();
    let (mut ws, _) = connect(dao.local_addr(), "/");
    let payload = vec![7u8; 100_000];
    roundtrip(&mut ws, Message::binary(payload));
    wait_for(t, "dao_tunnels_open", |v| v == 1.0);
    // 100 kB each way, plus framing.
    wait_for(t, "dao_tunnel_bytes_total", |v| v >= 200_000.0);
    // The handshake counts as one request, answered 101.
    let answered = metrics(t)
        .into_iter()
        .filter(|(k, _)| k.starts_with("http_requests_total{") && k.contains("status=\"101\""))
        .map(|(_, v)| v)
        .sum::<f64>();
    assert_eq!(answered, 1.0);
    ws.close(None).unwrap();
    read_to_end(&mut ws);
    // The upstream closed; the tunnel ends when the client does too.
    drop(ws);
    wait_for(t, "dao_tunnels_open", |v| v == 0.0);
    stop(dao);
}

// wss: the same tunnels behind a TLS listener.

type Wss = WebSocket<TlsClient>;

/// DAO (one worker) with a TLS listener: paths under `/ws` go to
/// `upstream`, the rest to `plain`; `extra` is TOML for `[server]` and
/// the sections after it.
fn wss_dao(pki: &Pki, upstream: SocketAddr, plain: SocketAddr, extra: &str) -> Server {
    start(&format!(
        "[server]\nworkers = 1\n{extra}\n\
         [[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n\
         certificates = [{{ cert = \"{}\", key = \"{}\" }}]\n\
         [[routes.rule]]\nname = \"ws\"\n[routes.rule.match]\npath_prefix = \"/ws\"\n\
         [[routes.rule.upstreams]]\nname = \"echo\"\nurl = \"http://{upstream}\"\n\
         [[routes.rule]]\nname = \"web\"\n\
         [[routes.rule.upstreams]]\nname = \"web\"\nurl = \"http://{plain}\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
    ))
}

/// A WebSocket handshake over an established TLS connection.
fn wss_over(tls: TlsClient, dao: SocketAddr, path: &str) -> Wss {
    let url = format!("wss://localhost:{}{path}", dao.port());
    let (ws, resp) = tungstenite::client(url, tls)
        .unwrap_or_else(|e| panic!("wss handshake through DAO failed: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

fn wss_connect(pki: &Pki, dao: SocketAddr, path: &str) -> Wss {
    wss_over(pki.connect(dao), dao, path)
}

/// Reads from `tls` until `buf` holds a whole response head and `more`
/// bytes past it; returns where the head ends.
fn read_head_and(tls: &mut TlsClient, buf: &mut Vec<u8>, more: impl Fn(&str) -> usize) -> usize {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            if buf.len() >= i + 4 + more(&head) {
                return i + 4;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tls.read(&mut chunk).expect("a response");
        assert!(n > 0, "closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A keep-alive GET over TLS: the status and body of its response (read
/// exactly, so that the connection may go on).
fn https_get(tls: &mut TlsClient, path: &str) -> (u16, String) {
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    tls.flush().unwrap();
    let length = |head: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let mut buf = Vec::new();
    let end = read_head_and(tls, &mut buf, length);
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    assert_eq!(buf.len(), end + length(&head.to_ascii_lowercase()));
    let status = head[9..12].parse().unwrap();
    (status, String::from_utf8_lossy(&buf[end..]).into_owned())
}

#[test]
fn wss_goes_both_ways_beside_https_requests() {
    let pki = Pki::new("wss");
    let server = EchoServer::start();
    let plain = Backend::text("plain");
    let dao = wss_dao(
        &pki,
        server.addr,
        plain.addr,
        "[telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 50\nwindow = \"30s\"\n",
    );
    let (addr, t) = (dao.local_addr(), dao.telemetry_addr().unwrap());
    // A request, then the handshake, on one connection.
    let mut tls = pki.connect(addr);
    assert_eq!(https_get(&mut tls, "/before"), (200, "plain".into()));
    let mut ws = wss_over(tls, addr, "/ws/chat");
    let seen = server.last_handshake();
    assert_eq!(header(&seen, "upgrade"), Some("websocket"));
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("https"));
    exchange_messages(&mut ws);
    wait_for(t, "dao_tunnels_open", |v| v == 1.0);
    // The 1 MiB message each way, at least.
    wait_for(t, "dao_tunnel_bytes_total", |v| v >= 2.0 * 1048576.0);
    // HTTPS beside the open tunnel.
    let mut other = pki.connect(addr);
    assert_eq!(https_get(&mut other, "/beside"), (200, "plain".into()));
    ws.close(None).unwrap();
    let end = read_to_end(&mut ws);
    assert!(matches!(end, WsError::ConnectionClosed), "{end:?}");
    drop(ws);
    wait_for(t, "dao_tunnels_open", |v| v == 0.0);
    assert_eq!(https_get(&mut other, "/after"), (200, "plain".into()));
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    stop(dao);
}

#[test]
fn wss_closes_from_the_upstream_cleanly_or_cut() {
    let pki = Pki::new("wss-close");
    let server = EchoServer::start();
    let plain = Backend::text("plain");
    let dao = wss_dao(&pki, server.addr, plain.addr, "");
    let addr = dao.local_addr();
    // The upstream's EOF arrives as close_notify: a clean end.
    server_closes_cleanly(wss_connect(&pki, addr, "/ws"));
    upstream_cut_closes_the_client(wss_connect(&pki, addr, "/ws"));
    let mut tls = pki.connect(addr);
    assert_eq!(https_get(&mut tls, "/after"), (200, "plain".into()));
    stop(dao);
}

#[test]
fn an_idle_wss_tunnel_is_closed_after_the_timeout() {
    let pki = Pki::new("wss-idle");
    let server = EchoServer::start();
    let plain = Backend::text("plain");
    let extra = "[proxy]\ntunnel_idle_timeout = \"600ms\"";
    let dao = wss_dao(&pki, server.addr, plain.addr, extra);
    idle_tunnel_closes(wss_connect(&pki, dao.local_addr(), "/ws"));
    stop(dao);
}

#[test]
fn wss_early_bytes_and_close_notify_cross_the_tunnel() {
    let pki = Pki::new("wss-early");
    let (up, done) = raw_upgrader(b"early from upstream");
    let plain = Backend::text("plain");
    let dao = wss_dao(&pki, up, plain.addr, "");
    let mut c = pki.connect(dao.local_addr());
    // Two records in one socket write: the first has the handshake and
    // frames behind it, the second more frames, still inside rustls when
    // the handshake is read.
    c.conn
        .writer()
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\
              early from client;",
        )
        .unwrap();
    c.conn.writer().write_all(b" still early;").unwrap();
    c.flush().unwrap();
    let mut buf = Vec::new();
    let end = read_head_and(&mut c, &mut buf, |_| 19);
    assert!(buf.starts_with(b"HTTP/1.1 101 "));
    assert_eq!(&buf[end..], b"early from upstream");
    c.write_all(b" then more").unwrap();
    c.flush().unwrap();
    // The client's close_notify is its EOF; the other way still works,
    // and ends with DAO's close_notify (a clean end of the stream).
    c.conn.send_close_notify();
    c.flush().unwrap();
    let mut rest = String::new();
    c.read_to_string(&mut rest).unwrap();
    let sent = "early from client; still early; then more";
    assert_eq!(rest, format!("got {} bytes", sent.len()));
    let (head, got) = done.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), sent);
    assert!(head.contains("\r\nUpgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nX-Forwarded-Proto: https\r\n"), "{head}");
    stop(dao);
}

#[test]
fn shutdown_cuts_open_wss_tunnels_at_the_timeout() {
    let pki = Pki::new("wss-stop");
    let server = EchoServer::start();
    let plain = Backend::text("plain");
    let dao = wss_dao(
        &pki,
        server.addr,
        plain.addr,
        "shutdown_timeout = \"300ms\"",
    );
    let ws = wss_connect(&pki, dao.local_addr(), "/ws");
    shutdown_cuts(dao, ws);
}
