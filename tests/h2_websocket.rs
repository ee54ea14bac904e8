//! WebSocket over HTTP/2 (RFC 8441) through DAO: the h2 crate's client
//! opens extended CONNECT streams (h2c by prior knowledge, and h2 chosen
//! by ALPN over TLS) and speaks WebSocket frames built here over them, to
//! a real WebSocket server (tungstenite) or to byte-level upstreams that
//! show what DAO sends and does. Hand-made frames check the SETTINGS DAO
//! advertises.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::pki::Pki;
use common::{config, respond, start, wait_metric, After, Backend, Client, Server};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, Method, Request};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

type Headers = Vec<(String, String)>;

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

// ------------------------------------------------------------- upstreams

/// A WebSocket echo server (tungstenite): text and binary messages come
/// back as they went; on `/greet` it says `hello` first; the text `close`
/// makes it close the session. It picks the subprotocol `chat` when
/// offered, and reports how each session ended.
struct EchoServer {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<Headers>>>,
    ended: mpsc::Receiver<String>,
}

impl EchoServer {
    fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let (tx, ended) = mpsc::channel();
        let seen = handshakes.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (seen, tx) = (seen.clone(), tx.clone());
                std::thread::spawn(move || echo(stream, seen, tx));
            }
        });
        EchoServer {
            addr,
            handshakes,
            ended,
        }
    }

    fn last_handshake(&self) -> Headers {
        self.handshakes.lock().unwrap().last().cloned().unwrap()
    }

    /// How the next session ended (within 5 s).
    fn next_end(&self) -> String {
        self.ended
            .recv_timeout(Duration::from_secs(5))
            .expect("the upstream session to end")
    }
}

// The callback's error type is tungstenite's, large or not.
#[allow(clippy::result_large_err)]
fn echo(stream: TcpStream, seen: Arc<Mutex<Vec<Headers>>>, ended: mpsc::Sender<String>) {
    let mut greet = false;
    let record = |req: &tungstenite::handshake::server::Request,
                  mut resp: tungstenite::handshake::server::Response| {
        let headers: Headers = req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let offered = header(&headers, "sec-websocket-protocol").unwrap_or("");
        if offered.split(',').any(|p| p.trim() == "chat") {
            resp.headers_mut()
                .insert("sec-websocket-protocol", "chat".parse().unwrap());
        }
        greet = req.uri().path() == "/greet";
        seen.lock().unwrap().push(headers);
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(stream, record) else {
        let _ = ended.send("no handshake".into());
        return;
    };
    if greet && ws.send(Message::text("hello")).is_err() {
        return;
    }
    let end = loop {
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str() == "close" => {
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "bye".into(),
                };
                if let Err(e) = ws.close(Some(frame)) {
                    break format!("{e}");
                }
            }
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if let Err(e) = ws.send(m) {
                    break format!("{e}");
                }
            }
            Ok(_) => {}
            Err(e) => break format!("{e}"),
        }
    };
    let _ = ended.send(end);
}

/// An upstream that reads one request head and hands the socket and the
/// head (and what came behind it) to `then`, on a thread of its own, for
/// each connection.
fn raw_upstream(then: impl Fn(TcpStream, String) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let then = Arc::new(then);
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let then = then.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                then(s, String::from_utf8(buf).unwrap());
            });
        }
    });
    addr
}

/// The `Sec-WebSocket-Accept` owed to the key in `head`.
fn accept_for(head: &str) -> String {
    let key = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .expect("a Sec-WebSocket-Key");
    tungstenite::handshake::derive_accept_key(key.as_bytes())
}

fn switching(accept: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

// ---------------------------------------------------------------- client

/// Runs `f` on a monoio runtime of the test's own.
fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(f)
}

/// `f`, or a panic after 10 s.
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    monoio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits (letting the client's connection task run) until `ok`, for at
/// most 5 s.
async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One series of DAO's /metrics.
fn metric(dao: &Server, series: &str) -> Option<f64> {
    let addr = dao.telemetry_addr().expect("a telemetry listener");
    let text = Client::connect(addr).get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// As `wait_metric`, from the client's runtime.
async fn metric_is(dao: &Server, series: &str, want: f64) {
    until(&format!("{series} = {want}"), || {
        metric(dao, series) == Some(want)
    })
    .await;
}

/// Waits until the server's SETTINGS allowed extended CONNECT.
async fn settled(client: &SendRequest<Bytes>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !client.is_extended_connect_protocol_enabled() {
        assert!(
            Instant::now() < deadline,
            "DAO did not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL"
        );
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An h2 client connection over `io`, once DAO's SETTINGS came.
async fn h2_over<T>(io: T) -> SendRequest<Bytes>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let client = common::http2::client_over(&h2::client::Builder::new(), io).await;
    settled(&client).await;
    client
}

/// An h2c client connection to `addr`, once DAO's SETTINGS came.
async fn h2c(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = monoio::net::TcpStream::connect(addr).await.unwrap();
    h2_over(monoio_compat::StreamWrapper::new(tcp)).await
}

/// An h2 client connection over TLS to `addr` (ALPN `h2`).
async fn h2_tls(pki: &Pki, addr: SocketAddr) -> SendRequest<Bytes> {
    h2_over(common::http2::tls_io(pki, addr).await).await
}

/// An extended CONNECT (`:protocol`, when given) to `path`, with
/// `sec-websocket-version: 13` and `headers`.
fn connect_request(
    scheme: &str,
    path: &str,
    protocol: Option<&'static str>,
    headers: &[(&str, &str)],
) -> Request<()> {
    let mut b = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("{scheme}://dao.test{path}"))
        .header("sec-websocket-version", "13");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    if let Some(p) = protocol {
        b = b.extension(h2::ext::Protocol::from_static(p));
    }
    b.body(()).unwrap()
}

/// A stream as the client holds it: its answer's head, and both halves.
struct Opened {
    status: u16,
    headers: HeaderMap,
    send: SendStream<Bytes>,
    recv: RecvStream,
}

async fn open(client: &SendRequest<Bytes>, req: Request<()>) -> Opened {
    let mut client = client.clone().ready().await.unwrap();
    let (resp, send) = client.send_request(req, false).unwrap();
    let resp = within("the answer to CONNECT", resp)
        .await
        .expect("an answer");
    let (parts, recv) = resp.into_parts();
    Opened {
        status: parts.status.as_u16(),
        headers: parts.headers,
        send,
        recv,
    }
}

impl Opened {
    /// The rest of a refusal's body.
    async fn body(mut self) -> String {
        let mut body = Vec::new();
        while let Some(chunk) = within("the body", self.recv.data()).await {
            let chunk = chunk.unwrap();
            let _ = self.recv.flow_control().release_capacity(chunk.len());
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).unwrap()
    }

    fn session(self) -> Session {
        assert_eq!(self.status, 200, "the WebSocket is open");
        Session {
            send: self.send,
            recv: self.recv,
            buf: Vec::new(),
        }
    }
}

const TEXT: u8 = 1;
const BINARY: u8 = 2;
const CLOSE: u8 = 8;
const PING: u8 = 9;
const PONG: u8 = 10;

/// A client's WebSocket frame: final, masked.
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Takes one whole server frame (final, unmasked) off the front of `buf`.
fn take_frame(buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    if buf.len() < 2 {
        return None;
    }
    assert!(buf[0] & 0x80 != 0, "a fragmented message");
    assert!(buf[1] & 0x80 == 0, "a masked server frame");
    let (len, at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < at + len {
        return None;
    }
    let frame = (buf[0] & 0x0f, buf[at..at + len].to_vec());
    buf.drain(..at + len);
    Some(frame)
}

/// A WebSocket session over an extended CONNECT stream.
struct Session {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Bytes received and not yet taken as frames.
    buf: Vec<u8>,
}

/// How a stream's receiving side ended.
#[derive(Debug, PartialEq)]
enum Ended {
    /// END_STREAM.
    Clean,
    /// RST_STREAM (or the connection failing).
    Reset,
}

impl Session {
    /// Sends `bytes` as the stream's window allows; `end`: END_STREAM.
    async fn write(&mut self, bytes: &[u8], end: bool) {
        let mut data = Bytes::copy_from_slice(bytes);
        if data.is_empty() {
            self.send.send_data(data, end).unwrap();
            return;
        }
        self.send.reserve_capacity(data.len());
        while !data.is_empty() {
            let cap = within(
                "send window",
                std::future::poll_fn(|cx| self.send.poll_capacity(cx)),
            )
            .await
            .expect("the stream open")
            .expect("capacity");
            let piece = data.split_to(cap.min(data.len()));
            self.send.send_data(piece, end && data.is_empty()).unwrap();
        }
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.write(&ws_frame(opcode, payload), false).await;
    }

    /// The next DATA bytes; how the stream ended when none come.
    async fn data(&mut self) -> Result<Bytes, Ended> {
        match within("data", self.recv.data()).await {
            Some(Ok(d)) => {
                let _ = self.recv.flow_control().release_capacity(d.len());
                Ok(d)
            }
            Some(Err(_)) => Err(Ended::Reset),
            None => Err(Ended::Clean),
        }
    }

    /// The next whole frame; how the stream ended when none comes.
    async fn frame(&mut self) -> Result<(u8, Vec<u8>), Ended> {
        loop {
            if let Some(f) = take_frame(&mut self.buf) {
                return Ok(f);
            }
            let d = self.data().await?;
            self.buf.extend_from_slice(&d);
        }
    }

    async fn roundtrip(&mut self, opcode: u8, payload: &[u8]) {
        self.send(opcode, payload).await;
        let (op, got) = self.frame().await.expect("the echo");
        assert_eq!(op, if opcode == PING { PONG } else { opcode });
        assert!(got == payload, "echo of {} bytes differs", payload.len());
    }

    /// Ends the client's side (END_STREAM, no close frame) and reads until
    /// the upstream, seeing EOF, ends the other.
    async fn finish(&mut self) {
        self.write(&[], true).await;
        assert_eq!(self.until_end().await, Ended::Clean);
    }

    /// Reads until the stream ends, skipping frames.
    async fn until_end(&mut self) -> Ended {
        loop {
            match self.data().await {
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }
}

/// Text, binary, a 1 MiB message (many DATA frames, windows given back as
/// they go), a ping, and many small messages in flight at once.
async fn exchange_messages(ws: &mut Session) {
    ws.roundtrip(TEXT, "hello, 世界".as_bytes()).await;
    ws.roundtrip(BINARY, &[0, 1, 2, 255]).await;
    let big: Vec<u8> = (0..1usize << 20).map(|i| (i * 31 % 251) as u8).collect();
    ws.roundtrip(BINARY, &big).await;
    ws.roundtrip(PING, b"are you there").await;
    let mut many = Vec::new();
    for i in 0..500 {
        many.extend_from_slice(&ws_frame(TEXT, format!("m{i}").as_bytes()));
    }
    ws.write(&many, false).await;
    for i in 0..500 {
        let (op, got) = ws.frame().await.expect("an echo");
        assert_eq!((op, got), (TEXT, format!("m{i}").into_bytes()));
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

/// DAO (one worker) over `upstream` with `extra` server-level TOML and
/// `filters` on the route.
fn dao(upstream: SocketAddr, extra: &str, filters: &str) -> Server {
    let mut text = config(1, extra, &[upstream]);
    if !filters.is_empty() {
        text += &format!("[routes.rule.filters]\n{filters}\n");
    }
    start(&text)
}

// ----------------------------------------------------------------- tests

/// The server's first SETTINGS frame's parameters, read frame by frame.
fn server_settings(addr: SocketAddr) -> (TcpStream, Vec<(u16, u32)>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    loop {
        let (ty, flags, _, payload) = read_frame(&mut s);
        if ty == 4 && flags & 1 == 0 {
            let params = payload
                .chunks(6)
                .map(|c| {
                    (
                        u16::from_be_bytes([c[0], c[1]]),
                        u32::from_be_bytes(c[2..6].try_into().unwrap()),
                    )
                })
                .collect();
            return (s, params);
        }
    }
}

fn read_frame(s: &mut TcpStream) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).unwrap();
    let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).unwrap();
    let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
    (head[3], head[4], stream, payload)
}

/// A HEADERS frame opening stream 1 with an extended CONNECT for a
/// WebSocket on `/` (HPACK literals, not indexed, not Huffman-coded).
fn raw_connect_frame() -> Vec<u8> {
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "dao.test"),
        ("sec-websocket-version", "13"),
    ] {
        block.push(0);
        block.push(n.len() as u8);
        block.extend_from_slice(n.as_bytes());
        block.push(v.len() as u8);
        block.extend_from_slice(v.as_bytes());
    }
    // HEADERS, END_HEADERS, stream 1.
    let mut f = vec![0, 0, block.len() as u8, 1, 4, 0, 0, 0, 1];
    f.extend_from_slice(&block);
    f
}

/// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3).
const ENABLE_CONNECT_PROTOCOL: u16 = 8;

#[test]
fn settings_advertise_the_connect_protocol_unless_switched_off() {
    let server = EchoServer::start();
    let on = dao(server.addr, "", "");
    let (_, params) = server_settings(on.local_addr());
    assert!(params.contains(&(ENABLE_CONNECT_PROTOCOL, 1)), "{params:?}");
    stop(on);

    let off = dao(server.addr, "h2_websocket = false", "");
    let (mut s, params) = server_settings(off.local_addr());
    assert!(
        !params.iter().any(|(id, _)| *id == ENABLE_CONNECT_PROTOCOL),
        "{params:?}"
    );
    // An extended CONNECT anyway: refused by h2 (PROTOCOL_ERROR), no
    // upstream contacted.
    s.write_all(&raw_connect_frame()).unwrap();
    let reset = loop {
        let (ty, _, stream, payload) = read_frame(&mut s);
        if ty == 3 && stream == 1 {
            break u32::from_be_bytes(payload[..4].try_into().unwrap());
        }
        assert_ne!(ty, 1, "no HEADERS answer to a refused stream");
    };
    assert_eq!(reset, 1, "PROTOCOL_ERROR");
    stop(off);
    assert!(server.handshakes.lock().unwrap().is_empty());
}

#[test]
fn websocket_over_h2c_goes_both_ways_and_the_client_closes() {
    let server = EchoServer::start();
    let dao = dao(
        server.addr,
        "[telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 50\nwindow = \"30s\"\n",
        r#"response_headers_add = { "X-Tunnel" = "${upstream}" }"#,
    );
    run(async {
        let client = h2c(dao.local_addr()).await;
        let req = connect_request(
            "http",
            "/chat?room=1",
            Some("websocket"),
            &[
                ("sec-websocket-protocol", "chat, superchat"),
                ("sec-websocket-key", "from-the-client"),
            ],
        );
        let opened = open(&client, req).await;
        assert_eq!(opened.status, 200);
        let h = &opened.headers;
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert_eq!(h["x-tunnel"], "b0");
        assert_eq!(h["via"], "1.1 dao");
        assert!(!h.contains_key("sec-websocket-accept"), "{h:?}");
        assert!(!h.contains_key("upgrade"), "{h:?}");
        let seen = server.last_handshake();
        assert_eq!(header(&seen, "upgrade"), Some("websocket"));
        assert_eq!(header(&seen, "connection"), Some("Upgrade"));
        assert_eq!(header(&seen, "sec-websocket-version"), Some("13"));
        assert_eq!(
            header(&seen, "sec-websocket-protocol"),
            Some("chat, superchat")
        );
        let key = header(&seen, "sec-websocket-key").unwrap();
        assert_ne!(key, "from-the-client");
        assert_eq!(key.len(), 24, "{key}");
        assert_eq!(header(&seen, "host"), Some("dao.test"));
        assert_eq!(header(&seen, "x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(header(&seen, "x-forwarded-proto"), Some("http"));

        let mut ws = opened.session();
        exchange_messages(&mut ws).await;
        metric_is(&dao, "dao_tunnels_open", 1.0).await;
        // The 1 MiB message each way, at least.
        until("the tunnel's bytes counted", || {
            metric(&dao, "dao_tunnel_bytes_total").unwrap_or(0.0) >= 2.0 * 1048576.0
        })
        .await;
        // The client's close, the server's answer, then its EOF as the
        // stream's end.
        ws.send(CLOSE, &[0x03, 0xe8]).await;
        let (op, _) = ws.frame().await.expect("the server's close");
        assert_eq!(op, CLOSE);
        assert_eq!(ws.until_end().await, Ended::Clean);
        // The client ends its side too: the tunnel is over.
        ws.write(&[], true).await;
        metric_is(&dao, "dao_tunnels_open", 0.0).await;
    });
    assert!(server.next_end().contains("closed normally"));
    // The CONNECT counts as one request, answered 200.
    wait_metric(
        &dao,
        "http_requests_total{route=\"all\",upstream=\"b0\",method=\"GET\",status=\"200\"}",
        1.0,
    );
    stop(dao);
}

#[test]
fn the_server_speaks_first_and_closes() {
    let server = EchoServer::start();
    let dao = dao(server.addr, "", "");
    run(async {
        let client = h2c(dao.local_addr()).await;
        let req = connect_request("http", "/greet", Some("websocket"), &[]);
        let opened = open(&client, req).await;
        assert!(!opened.headers.contains_key("sec-websocket-protocol"));
        let mut ws = opened.session();
        // Nothing sent yet: the greeting comes as the server sends it.
        assert_eq!(ws.frame().await, Ok((TEXT, b"hello".to_vec())));
        ws.roundtrip(TEXT, b"then").await;
        ws.send(TEXT, b"close").await;
        let (op, payload) = ws.frame().await.expect("the server's close");
        assert_eq!(op, CLOSE);
        assert_eq!(&payload[2..], b"bye");
        // The close answered: the server closes its connection, which
        // ends the stream.
        ws.write(&ws_frame(CLOSE, &payload[..2]), true).await;
        assert_eq!(ws.until_end().await, Ended::Clean);
    });
    stop(dao);
}

#[test]
fn half_closes_and_early_bytes_cross_the_tunnel() {
    let (tx, done) = mpsc::channel();
    let tx = Mutex::new(tx);
    let up = raw_upstream(move |mut s, head| {
        let end = head.find("\r\n\r\n").unwrap() + 4;
        let mut answer = switching(&accept_for(&head)).into_bytes();
        answer.extend_from_slice(b"early from upstream");
        s.write_all(&answer).unwrap();
        let mut got = head.as_bytes()[end..].to_vec();
        s.read_to_end(&mut got).unwrap();
        // The client's END_STREAM came as EOF; this way still works.
        s.write_all(format!("got {} bytes", got.len()).as_bytes())
            .unwrap();
        drop(s);
        tx.lock().unwrap().send((head, got)).unwrap();
    });
    let dao = dao(up, "", "");
    run(async {
        let client = h2c(dao.local_addr()).await;
        let req = connect_request("http", "/raw", Some("websocket"), &[]);
        let mut ws = open(&client, req).await.session();
        let mut early = Vec::new();
        while early.len() < 19 {
            early.extend_from_slice(&ws.data().await.unwrap());
        }
        assert_eq!(early, b"early from upstream");
        ws.write(b"one, ", false).await;
        ws.write(b"two", true).await;
        let mut rest = Vec::new();
        let end = loop {
            match ws.data().await {
                Ok(d) => rest.extend_from_slice(&d),
                Err(e) => break e,
            }
        };
        assert_eq!(String::from_utf8(rest).unwrap(), "got 8 bytes");
        assert_eq!(end, Ended::Clean, "the upstream's EOF ends the stream");
    });
    let (head, got) = done.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got, b"one, two");
    assert!(head.starts_with("GET /raw HTTP/1.1\r\n"), "{head}");
    stop(dao);
}

#[test]
fn an_idle_tunnel_is_closed_after_the_timeout() {
    let server = EchoServer::start();
    let dao = dao(server.addr, "[proxy]\ntunnel_idle_timeout = \"600ms\"", "");
    run(async {
        let client = h2c(dao.local_addr()).await;
        let req = connect_request("http", "/", Some("websocket"), &[]);
        let mut ws = open(&client, req).await.session();
        // Traffic keeps it open past the timeout.
        for i in 0..8 {
            monoio::time::sleep(Duration::from_millis(150)).await;
            ws.roundtrip(TEXT, format!("tick {i}").as_bytes()).await;
        }
        let quiet = Instant::now();
        ws.until_end().await;
        let waited = quiet.elapsed();
        assert!(
            waited >= Duration::from_millis(550),
            "closed after {waited:?}"
        );
        assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
    });
    // The upstream's connection went too.
    server.next_end();
    stop(dao);
}

#[test]
fn refusals_pass_and_a_2xx_without_switching_is_a_bad_gateway() {
    let backend = Backend::start(|req, s| {
        match (req.header("upgrade"), req.path.as_str()) {
            (Some("websocket"), "/nope") => respond(s, 403, &[], b"no websocket here"),
            (Some(_), _) => respond(s, 200, &[], b"no upgrade today"),
            (None, _) => respond(s, 200, &[], b"plain"),
        }
        After::KeepAlive
    });
    let dao = dao(backend.addr, "", "");
    run(async {
        let client = h2c(dao.local_addr()).await;
        let refused = open(
            &client,
            connect_request("http", "/nope", Some("websocket"), &[]),
        )
        .await;
        assert_eq!(refused.status, 403);
        assert_eq!(refused.body().await, "no websocket here");
        let seen = backend.last_request();
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.header("connection"), Some("Upgrade"));
        assert!(seen.header("sec-websocket-key").is_some());
        // A 200 would read as an open tunnel to the client.
        let ok = open(
            &client,
            connect_request("http", "/ok", Some("websocket"), &[]),
        )
        .await;
        assert_eq!(ok.status, 502);
        // The connection goes on.
        let mut c = client.clone().ready().await.unwrap();
        let req = Request::get("http://dao.test/after").body(()).unwrap();
        let (resp, _) = c.send_request(req, true).unwrap();
        let resp = within("a GET", resp).await.unwrap();
        assert_eq!(resp.status(), 200);
    });
    stop(dao);
}

#[test]
fn a_wrong_accept_is_a_bad_gateway() {
    let up = raw_upstream(|mut s, head| {
        let path = head.split(' ').nth(1).unwrap().to_string();
        let answer = match path.as_str() {
            "/wrong" => switching("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "/none" => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                        Connection: Upgrade\r\n\r\n"
                .to_string(),
            _ => switching(&accept_for(&head)),
        };
        s.write_all(answer.as_bytes()).unwrap();
        let _ = s.read(&mut [0u8; 64]);
    });
    let dao = dao(up, "", "");
    run(async {
        let client = h2c(dao.local_addr()).await;
        for (path, status) in [("/wrong", 502), ("/none", 502), ("/right", 200)] {
            let req = connect_request("http", path, Some("websocket"), &[]);
            assert_eq!(open(&client, req).await.status, status, "{path}");
        }
        let req = connect_request("http", "/right", Some("websocket"), &[]);
        open(&client, req).await.session().finish().await;
    });
    stop(dao);
}

#[test]
fn other_connects_are_not_implemented() {
    let backend = Backend::text("plain");
    let dao = dao(backend.addr, "", "");
    run(async {
        let client = h2c(dao.local_addr()).await;
        // A plain CONNECT (authority only): DAO is no forward proxy.
        let plain = Request::builder()
            .method(Method::CONNECT)
            .uri("dao.test:443")
            .body(())
            .unwrap();
        assert_eq!(open(&client, plain).await.status, 501);
        let udp = connect_request("http", "/", Some("connect-udp"), &[]);
        assert_eq!(open(&client, udp).await.status, 501);
    });
    assert_eq!(backend.request_count(), 0);
    stop(dao);
}

#[test]
fn routes_and_filters_apply_to_the_handshake() {
    let server = EchoServer::start();
    let plain = Backend::text("plain");
    let dao = start(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [[routes.rule]]\nname = \"ws\"\n[routes.rule.match]\npath_prefix = \"/ws\"\n\
         [[routes.rule.upstreams]]\nname = \"echo\"\nurl = \"http://{}\"\n\
         [routes.rule.filters]\napi_keys = [\"k-1234567890abcdef1234\"]\n\
         [[routes.rule]]\nname = \"web\"\n\
         [[routes.rule.upstreams]]\nname = \"web\"\nurl = \"http://{}\"\n",
        server.addr, plain.addr
    ));
    run(async {
        let client = h2c(dao.local_addr()).await;
        let req = connect_request("http", "/ws/a", Some("websocket"), &[]);
        assert_eq!(open(&client, req).await.status, 401);
        assert!(server.handshakes.lock().unwrap().is_empty());
        let key = [("x-api-key", "k-1234567890abcdef1234")];
        let req = connect_request("http", "/ws/a", Some("websocket"), &key);
        let mut ws = open(&client, req).await.session();
        ws.roundtrip(TEXT, b"let in").await;
        // The other route's upstream is no WebSocket server.
        let req = connect_request("http", "/page", Some("websocket"), &[]);
        assert_eq!(open(&client, req).await.status, 502);
        assert_eq!(plain.last_request().header("upgrade"), Some("websocket"));
        ws.roundtrip(TEXT, b"still here").await;
        ws.finish().await;
    });
    stop(dao);
}

#[test]
fn a_client_reset_closes_the_upstream_connection() {
    let (tx, eofs) = mpsc::channel();
    let tx = Mutex::new(tx);
    // Answers 101, then reports the EOF it reads, and stays silent with
    // its connection open: only DAO may end the tunnel.
    let up = raw_upstream(move |mut s, head| {
        s.write_all(switching(&accept_for(&head)).as_bytes())
            .unwrap();
        let _ = s.read_to_end(&mut Vec::new());
        let _ = tx.lock().unwrap().send(());
        std::thread::sleep(Duration::from_secs(10));
    });
    let dao = dao(
        up,
        "[telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 50\nwindow = \"30s\"\n",
        "",
    );
    let eof = |what: &'static str| {
        let eofs = &eofs;
        async move { until(what, || eofs.try_recv().is_ok()).await }
    };
    run(async {
        let client = h2c(dao.local_addr()).await;
        // Reset while the client's side is open.
        let req = connect_request("http", "/", Some("websocket"), &[]);
        let mut ws = open(&client, req).await.session();
        metric_is(&dao, "dao_tunnels_open", 1.0).await;
        ws.send.send_reset(h2::Reason::CANCEL);
        eof("the upstream connection closed").await;
        metric_is(&dao, "dao_tunnels_open", 0.0).await;

        // Reset after the client's END_STREAM (its upstream half closed
        // already, the upstream silent): the tunnel ends all the same.
        let req = connect_request("http", "/", Some("websocket"), &[]);
        let mut ws = open(&client, req).await.session();
        ws.write(&[], true).await;
        eof("the half-close").await;
        metric_is(&dao, "dao_tunnels_open", 1.0).await;
        ws.send.send_reset(h2::Reason::CANCEL);
        metric_is(&dao, "dao_tunnels_open", 0.0).await;
    });
    stop(dao);
}

#[test]
fn the_client_connection_closing_ends_the_tunnel() {
    let (tx, eofs) = mpsc::channel();
    let tx = Mutex::new(tx);
    let up = raw_upstream(move |mut s, head| {
        s.write_all(switching(&accept_for(&head)).as_bytes())
            .unwrap();
        let _ = s.read_to_end(&mut Vec::new());
        let _ = tx.lock().unwrap().send(());
        std::thread::sleep(Duration::from_secs(10));
    });
    let dao = dao(up, "", "");
    // Frame by frame, so that the client's socket closes when dropped.
    let (mut s, _) = server_settings(dao.local_addr());
    s.write_all(&raw_connect_frame()).unwrap();
    loop {
        let (ty, _, stream, payload) = read_frame(&mut s);
        if ty == 1 && stream == 1 {
            // `:status 200`, indexed (RFC 7541 static table entry 8).
            assert_eq!(payload[0], 0x88, "{payload:?}");
            break;
        }
    }
    drop(s);
    eofs.recv_timeout(Duration::from_secs(5))
        .expect("the upstream connection closed");
    stop(dao);
}

#[test]
fn websocket_over_h2_by_alpn() {
    let pki = Pki::new("h2-ws");
    let server = EchoServer::start();
    let dao = start(&format!(
        "[server]\nworkers = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n\
         certificates = [{{ cert = \"{}\", key = \"{}\" }}]\nalpn = [\"h2\", \"http/1.1\"]\n\
         [[routes.rule]]\nname = \"all\"\n\
         [[routes.rule.upstreams]]\nname = \"echo\"\nurl = \"http://{}\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        server.addr
    ));
    run(async {
        let client = h2_tls(&pki, dao.local_addr()).await;
        let req = connect_request(
            "https",
            "/greet",
            Some("websocket"),
            &[("sec-websocket-protocol", "chat")],
        );
        let opened = open(&client, req).await;
        assert_eq!(opened.headers["sec-websocket-protocol"], "chat");
        let mut ws = opened.session();
        assert_eq!(ws.frame().await, Ok((TEXT, b"hello".to_vec())));
        exchange_messages(&mut ws).await;
        let seen = server.last_handshake();
        assert_eq!(header(&seen, "x-forwarded-proto"), Some("https"));
        ws.send(TEXT, b"close").await;
        assert_eq!(ws.frame().await.unwrap().0, CLOSE);
        ws.write(&ws_frame(CLOSE, &[0x03, 0xe8]), true).await;
        assert_eq!(ws.until_end().await, Ended::Clean);
    });
    stop(dao);
}

#[test]
fn shutdown_cuts_an_open_tunnel_at_the_timeout() {
    let server = EchoServer::start();
    let dao = dao(server.addr, "shutdown_timeout = \"300ms\"", "");
    let started = run(async {
        let client = h2c(dao.local_addr()).await;
        let req = connect_request("http", "/", Some("websocket"), &[]);
        let mut ws = open(&client, req).await.session();
        ws.roundtrip(TEXT, b"hi").await;
        let started = Instant::now();
        dao.stop();
        // The tunnel holds the drain that long, then is cut.
        ws.until_end().await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(250), "cut after {took:?}");
        assert!(took < Duration::from_secs(5), "cut after {took:?}");
        started
    });
    dao.wait();
    assert!(started.elapsed() < Duration::from_secs(5));
    server.next_end();
}

#[test]
fn an_h2c_upstream_is_refused_not_implemented() {
    let dead = common::dead_addr();
    let dao = start(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [[routes.rule]]\nname = \"all\"\n\
         [[routes.rule.upstreams]]\nname = \"grpc\"\nurl = \"http://{dead}\"\nprotocol = \"h2c\"\n"
    ));
    run(async {
        let client = h2c(dao.local_addr()).await;
        let req = connect_request("http", "/", Some("websocket"), &[]);
        // Refused before any connection (a connect would fail: 502).
        assert_eq!(open(&client, req).await.status, 501);
    });
    stop(dao);
}
