//! HTTP/2 from clients, end to end: curl (h2c with prior knowledge, and h2
//! over TLS by ALPN), h2load (many streams over few connections, two
//! workers), the h2 crate's client (trailers, streaming both ways, DAO's
//! own replies, Sense), and hand-made frames for the abuse limits (too
//! many streams, rapid reset, CONTINUATION flood, PING and SETTINGS
//! floods) and the connection's life (idle GOAWAY, graceful shutdown).
//!
//! `.ci/run` sets `DAO_REQUIRE_TOOLS=1`: there a missing curl or h2load
//! fails the tests instead of skipping them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::http2::{get, h2c, run, send};
use common::pki::Pki;
use common::{config, curl, respond, start, stdout, tool, After, Backend, Client};
use http::{HeaderMap, Request};

// ---------------------------------------------------------------- helpers

/// Waits (asynchronously) until `flag` is set, for at most `limit`.
async fn until_set(flag: &AtomicBool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !flag.load(Ordering::SeqCst) {
        if Instant::now() > deadline {
            return false;
        }
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

// ------------------------------------------------------------ raw frames

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// Error codes (RFC 9113 §7).
const REFUSED_STREAM: u32 = 7;
const CANCEL: u32 = 8;
const ENHANCE_YOUR_CALM: u32 = 11;

#[derive(Debug)]
struct Frame {
    ty: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's or RST_STREAM's error code.
    fn code(&self) -> u32 {
        let at = if self.ty == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix after `flags`.
fn hpack_int(out: &mut Vec<u8>, mut v: usize, n: u32, flags: u8) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// Header fields as HPACK literals without indexing (new names, no
/// Huffman coding).
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        hpack_int(&mut out, name.len(), 7, 0);
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, value.len(), 7, 0);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn request_block(path: &str) -> Vec<u8> {
    hpack(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "test.local"),
    ])
}

/// A client speaking HTTP/2 frame by frame.
struct Raw {
    s: TcpStream,
}

impl Raw {
    /// Connects, sends the preface and a SETTINGS frame of `settings`.
    fn connect(addr: SocketAddr, settings: &[(u16, u32)]) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Raw { s };
        let mut payload = Vec::new();
        for (id, v) in settings {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&v.to_be_bytes());
        }
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &payload));
        raw.s.write_all(&hello).unwrap();
        raw
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    /// The next frame; `None` at EOF, a reset or the read timeout.
    fn read(&mut self) -> Option<Frame> {
        let mut head = [0u8; 9];
        self.s.read_exact(&mut head).ok()?;
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let mut payload = vec![0; len];
        self.s.read_exact(&mut payload).ok()?;
        Some(Frame {
            ty: head[3],
            flags: head[4],
            stream: u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff,
            payload,
        })
    }

    /// Reads frames until one matches `want` (returned) or the stream
    /// ends (`None`); SETTINGS frames are acknowledged on the way.
    fn until(&mut self, want: impl Fn(&Frame) -> bool) -> Option<Frame> {
        loop {
            let f = self.read()?;
            if f.ty == SETTINGS && f.flags & 1 == 0 {
                let _ = self.send(&frame(SETTINGS, 1, 0, &[]));
            }
            if want(&f) {
                return Some(f);
            }
        }
    }

    /// Whether the server closed the connection (EOF or reset) within
    /// the read timeout, frames before that skipped.
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}

/// Whether DAO still serves a new HTTP/2 connection.
fn still_serves(addr: SocketAddr) -> bool {
    run(async {
        let mut c = h2c(addr, None).await;
        send(&mut c, get("http://test.local/alive"), b"")
            .await
            .status
            == 200
    })
}

// ------------------------------------------------------------------ tests

#[test]
fn curl_speaks_h2c_with_prior_knowledge_and_http1_still_works() {
    if !tool("curl") {
        return;
    }
    let backend = Backend::text("hello over h2c");
    let dao = common::proxy(&backend);
    let url = format!("http://{}/path?q=1", dao.local_addr());
    let out = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "x-custom: yes",
        "-w",
        "\n%{http_version} %{response_code}",
        &url,
    ]);
    assert_eq!(stdout(&out), "hello over h2c\n2 200", "{out:?}");
    let req = backend.last_request();
    assert_eq!(req.path, "/path?q=1");
    assert_eq!(req.version, "HTTP/1.1");
    assert_eq!(req.header("host"), Some(&*dao.local_addr().to_string()));
    assert_eq!(req.header("x-custom"), Some("yes"));
    assert_eq!(req.header("x-forwarded-proto"), Some("http"));
    assert_eq!(req.header("x-forwarded-for"), Some("127.0.0.1"));
    // The same listener speaks HTTP/1.1 as before.
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/h1").text(), "hello over h2c");
    // The preface is only looked for in a connection's first bytes.
    c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert_eq!(c.read(false).status, 400);
    dao.shutdown();
}

#[test]
fn curl_negotiates_h2_over_tls_by_alpn() {
    if !tool("curl") {
        return;
    }
    let pki = Pki::new("h2");
    let backend = Backend::start(|req, s| {
        match req.path.as_str() {
            "/big" => respond(s, 200, &[], &vec![b'x'; 300_000]),
            "/upload" => respond(s, 200, &[], format!("{}", req.body.len()).as_bytes()),
            _ => respond(s, 200, &[], b"hello over h2"),
        }
        After::KeepAlive
    });
    let text = format!(
        "[server]\nworkers = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n\
         certificates = [{{ cert = \"{}\", key = \"{}\" }}]\nalpn = [\"h2\", \"http/1.1\"]\n\
         [[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"up\"\nurl = \"http://{}\"\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        backend.addr
    );
    let dao = start(&text);
    let port = dao.local_addr().port();
    let url = format!("https://localhost:{port}/tls");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let ca = pki.path("ca.pem");
    let base = [
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_version}",
    ];
    let h2 = curl(&[&base[..], &["--http2", &url]].concat());
    assert_eq!(stdout(&h2), "hello over h2\n2", "{h2:?}");
    assert_eq!(
        backend.last_request().header("x-forwarded-proto"),
        Some("https")
    );
    // Larger bodies both ways, over many TLS records and DATA frames
    // (and past the initial flow-control windows).
    let big_url = format!("https://localhost:{port}/big");
    let big = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{size_download}",
        &big_url,
    ]);
    assert_eq!(stdout(&big), "2 300000", "{big:?}");
    let file = pki.dir.join("upload.bin");
    std::fs::write(&file, vec![b'u'; 500_000]).unwrap();
    let data = format!("@{}", file.display());
    let up_url = format!("https://localhost:{port}/upload");
    let up = curl(&[&base[..], &["--http2", "--data-binary", &data, &up_url]].concat());
    assert_eq!(stdout(&up), "500000\n2", "{up:?}");
    let h1 = curl(&[&base[..], &["--http1.1", &url]].concat());
    assert_eq!(stdout(&h1), "hello over h2\n1.1", "{h1:?}");
    dao.shutdown();
}

#[test]
fn h2load_runs_many_streams_over_few_connections_on_two_workers() {
    if !tool("h2load") {
        return;
    }
    let backend = Backend::text("ok");
    let dao = start(&config(2, "", &[backend.addr]));
    let url = format!("http://{}/load", dao.local_addr());
    let out = Command::new("h2load")
        .args(["-n", "4000", "-c", "4", "-m", "32", &url])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("4000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    assert!(text.contains("status codes: 4000 2xx"), "{text}");
    assert_eq!(backend.request_count(), 4000);
    // Pooled: the upstream saw far fewer connections than requests.
    assert!(
        backend.connection_count() < 1000,
        "{}",
        backend.connection_count()
    );
    dao.shutdown();
}

#[test]
fn trailers_pass_through_and_requests_are_recorded() {
    let backend = Backend::start(|req, s| {
        if req.path == "/trailers" {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/grpc\r\n\r\n\
                  5\r\nhello\r\n0\r\ngrpc-status: 0\r\ngrpc-message: all good\r\n\r\n",
            );
        } else {
            respond(s, 200, &[("X-Up", "1")], b"plain");
        }
        After::KeepAlive
    });
    let extra = "[telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 50\n";
    let dao = start(&config(1, extra, &[backend.addr]));
    run(async {
        let mut c = h2c(dao.local_addr(), None).await;
        let got = send(&mut c, get("http://test.local/trailers"), b"").await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, b"hello");
        assert_eq!(got.headers["content-type"], "application/grpc");
        assert!(!got.headers.contains_key("transfer-encoding"));
        let t = got.trailers.expect("trailers");
        assert_eq!(t["grpc-status"], "0");
        assert_eq!(t["grpc-message"], "all good");
        for _ in 0..9 {
            let got = send(&mut c, get("http://test.local/plain"), b"").await;
            assert_eq!((got.status, &got.body[..]), (200, &b"plain"[..]));
            assert_eq!(got.headers["x-up"], "1");
            assert_eq!(got.headers["via"], "1.1 dao");
            assert!(got.trailers.is_none());
        }
    });
    // Ten streams, recorded as ten requests.
    let t = dao.telemetry_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = http_get(t, "/metrics");
        if metrics.contains("status=\"200\"} 10\n") {
            break;
        }
        assert!(Instant::now() < deadline, "never recorded:\n{metrics}");
        std::thread::sleep(Duration::from_millis(20));
    }
    dao.shutdown();
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn response_body_streams_before_it_ends() {
    let (go, wait) = mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let backend = Backend::start(move |_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n");
        // The rest only once the client has the first bytes.
        let _ = wait.lock().unwrap().recv_timeout(Duration::from_secs(10));
        let _ = s.write_all(b"4\r\nlast\r\n0\r\n\r\n");
        After::KeepAlive
    });
    let dao = common::proxy(&backend);
    run(async {
        let mut c = h2c(dao.local_addr(), None).await;
        let (resp, _) = c
            .send_request(get("http://test.local/stream"), true)
            .unwrap();
        let mut body = resp.await.unwrap().into_body();
        let first = monoio::time::timeout(Duration::from_secs(5), body.data())
            .await
            .expect("the first bytes came before the body ended")
            .unwrap()
            .unwrap();
        assert_eq!(&first[..], b"first");
        go.send(()).unwrap();
        let mut rest = Vec::new();
        while let Some(d) = body.data().await {
            rest.extend_from_slice(&d.unwrap());
        }
        assert_eq!(rest, b"last");
    });
    dao.shutdown();
}

/// A backend for one request: reads a chunked body as it comes, sets
/// `first` once it holds `first-part`, and answers with what it got.
fn upload_backend(first: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut te = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if line.to_ascii_lowercase().starts_with("transfer-encoding:") {
                te = line[18..].trim().to_string();
            }
        }
        let mut body = Vec::new();
        let mut trailers = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            if size == 0 {
                loop {
                    let mut t = String::new();
                    r.read_line(&mut t).unwrap();
                    if t == "\r\n" {
                        break;
                    }
                    trailers.push_str(t.trim());
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..size]);
            if body.starts_with(b"first-part") {
                first.store(true, Ordering::SeqCst);
            }
        }
        let text = format!(
            "te={te};body={};trailers={trailers}",
            String::from_utf8_lossy(&body)
        );
        let mut s = s;
        respond(&mut s, 200, &[], text.as_bytes());
    });
    addr
}

#[test]
fn request_body_streams_upstream_with_its_trailers() {
    let first = Arc::new(AtomicBool::new(false));
    let addr = upload_backend(first.clone());
    let dao = start(&config(1, "", &[addr]));
    run(async {
        let mut c = h2c(dao.local_addr(), None).await;
        let req = Request::post("http://test.local/upload").body(()).unwrap();
        let (resp, mut stream) = c.send_request(req, false).unwrap();
        stream
            .send_data(Bytes::from_static(b"first-part"), false)
            .unwrap();
        // The upstream has the first part before the rest is sent.
        assert!(
            until_set(&first, Duration::from_secs(5)).await,
            "the first part never reached the upstream"
        );
        stream
            .send_data(Bytes::from_static(b"+second"), false)
            .unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().unwrap());
        stream.send_trailers(trailers).unwrap();
        let mut body = resp.await.unwrap().into_body();
        let mut text = Vec::new();
        while let Some(d) = body.data().await {
            text.extend_from_slice(&d.unwrap());
        }
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "te=chunked;body=first-part+second;trailers=x-checksum: abc"
        );
    });
    dao.shutdown();
}

#[test]
fn no_route_and_filter_replies_go_out_on_the_stream() {
    let backend = Backend::text("ok");
    // Only this host is routed.
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [[routes.rule]]\nname = \"r\"\n[routes.rule.match]\nhost = \"test.local\"\n\
         [[routes.rule.upstreams]]\nname = \"up\"\nurl = \"http://{}\"\n\
         [routes.rule.filters]\nmax_body_bytes = 10\n",
        backend.addr
    );
    let dao = start(&text);
    let deny = common::with_filters(&backend, 1, "", "ip_deny = [\"127.0.0.1\"]");
    run(async {
        let mut c = h2c(dao.local_addr(), None).await;
        let got = send(&mut c, get("http://elsewhere.test/"), b"").await;
        assert_eq!((got.status, &got.body[..]), (404, &b"Not Found\n"[..]));
        let got = send(&mut c, get("http://test.local/"), b"").await;
        assert_eq!(got.status, 200);
        // Declared too large: answered by the filter.
        let req = Request::post("http://test.local/")
            .header("content-length", "20")
            .body(())
            .unwrap();
        let got = send(&mut c, req, &[b'x'; 20]).await;
        assert_eq!(got.status, 413);
        // Undeclared, counted as it streams.
        let req = Request::post("http://test.local/").body(()).unwrap();
        let got = send(&mut c, req, &[b'x'; 20]).await;
        assert_eq!(got.status, 413);
        // The connection goes on.
        let got = send(&mut c, get("http://test.local/"), b"").await;
        assert_eq!(got.status, 200);

        let mut c = h2c(deny.local_addr(), None).await;
        let got = send(&mut c, get("http://test.local/"), b"").await;
        assert_eq!(got.status, 403);
    });
    assert_eq!(backend.request_count(), 2);
    dao.shutdown();
    deny.shutdown();
}

#[test]
fn upstream_failures_map_to_gateway_statuses() {
    let dao = start(&config(1, "", &[common::dead_addr()]));
    run(async {
        let mut c = h2c(dao.local_addr(), None).await;
        let got = send(&mut c, get("http://test.local/"), b"").await;
        assert_eq!(got.status, 502);
    });
    dao.shutdown();
    let slow = Backend::slow(Duration::from_secs(3));
    let dao = start(&config(
        1,
        "[proxy]\nresponse_timeout = \"300ms\"\n",
        &[slow.addr],
    ));
    run(async {
        let mut c = h2c(dao.local_addr(), None).await;
        let got = send(&mut c, get("http://test.local/"), b"").await;
        assert_eq!(got.status, 504);
    });
    dao.shutdown();
}

#[test]
fn too_many_concurrent_streams_are_refused() {
    let backend = Backend::slow(Duration::from_millis(500));
    let dao = start(&config(1, "h2_max_concurrent_streams = 2", &[backend.addr]));
    let mut raw = Raw::connect(dao.local_addr(), &[]);
    let settings = raw.until(|f| f.ty == SETTINGS && f.flags & 1 == 0).unwrap();
    // SETTINGS_MAX_CONCURRENT_STREAMS (3) = 2.
    assert!(
        settings.payload.chunks(6).any(|s| s == [0, 3, 0, 0, 0, 2]),
        "{settings:?}"
    );
    let mut burst = Vec::new();
    for id in [1, 3, 5, 7] {
        burst.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &request_block("/"),
        ));
    }
    raw.send(&burst).unwrap();
    let mut refused = Vec::new();
    let mut answered = Vec::new();
    while answered.len() < 2 {
        let f = raw
            .until(|f| f.ty == RST_STREAM || f.ty == HEADERS)
            .unwrap();
        if f.ty == RST_STREAM {
            assert_eq!(f.code(), REFUSED_STREAM);
            refused.push(f.stream);
        } else {
            answered.push(f.stream);
        }
    }
    refused.sort();
    answered.sort();
    assert_eq!((refused, answered), (vec![5, 7], vec![1, 3]));
    assert_eq!(backend.request_count(), 2);
    dao.shutdown();
}

#[test]
fn rapid_reset_ends_in_goaway_and_spares_other_connections() {
    let backend = Backend::slow(Duration::from_millis(50));
    let dao = start(&config(1, "", &[backend.addr]));
    let mut raw = Raw::connect(dao.local_addr(), &[]);
    let block = request_block("/");
    // Open and cancel streams as fast as frames go out.
    let writer = {
        let mut s = raw.s.try_clone().unwrap();
        std::thread::spawn(move || {
            for batch in 0..100u32 {
                let mut bytes = Vec::new();
                for i in 0..100u32 {
                    let id = 1 + 2 * (batch * 100 + i);
                    bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
                    bytes.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
                }
                if s.write_all(&bytes).is_err() {
                    break;
                }
            }
        })
    };
    let goaway = raw.until(|f| f.ty == GOAWAY).expect("GOAWAY");
    assert_eq!(goaway.code(), ENHANCE_YOUR_CALM);
    assert!(raw.closed());
    writer.join().unwrap();
    // The upstream saw a small share of the 10,000 streams asked for.
    assert!(backend.request_count() < 200, "{}", backend.request_count());
    assert!(still_serves(dao.local_addr()));
    dao.shutdown();
}

#[test]
fn continuation_flood_is_cut_off() {
    let backend = Backend::text("ok");
    let dao = start(&config(1, "max_header_bytes = 16384", &[backend.addr]));
    let mut raw = Raw::connect(dao.local_addr(), &[]);
    let writer = {
        let mut s = raw.s.try_clone().unwrap();
        std::thread::spawn(move || {
            // A header block that never ends: a name, then a value that
            // keeps coming in CONTINUATION frames.
            let mut start = request_block("/");
            start.extend_from_slice(&[0x00, 0x01, b'x', 0x7f, 0xff, 0xff, 0xff, 0x0f]);
            if s.write_all(&frame(HEADERS, 0, 1, &start)).is_err() {
                return 0usize;
            }
            let junk = vec![b'a'; 16 * 1024];
            let mut sent = 0;
            for _ in 0..4096 {
                if s.write_all(&frame(CONTINUATION, 0, 1, &junk)).is_err() {
                    break;
                }
                sent += junk.len();
            }
            sent
        })
    };
    let goaway = raw.until(|f| f.ty == GOAWAY).expect("GOAWAY");
    assert_ne!(goaway.code(), 0, "{goaway:?}");
    assert!(raw.closed());
    let sent = writer.join().unwrap();
    assert!(sent < 64 << 20, "{sent} bytes of CONTINUATION were taken");
    assert_eq!(backend.request_count(), 0);
    assert!(still_serves(dao.local_addr()));
    dao.shutdown();
}

/// A request with `n` copies of a 3000-byte field: the h2 client's HPACK
/// encoder indexes the field once and names it again by index, so that
/// it is small on the wire and large decoded (an HPACK bomb).
fn bomb(n: usize) -> Request<()> {
    let mut req = Request::get("http://test.local/").body(()).unwrap();
    let value: http::HeaderValue = "b".repeat(3000).parse().unwrap();
    for _ in 0..n {
        req.headers_mut().append("x-bomb", value.clone());
    }
    req
}

#[test]
fn oversized_header_lists_and_hpack_bombs_are_refused() {
    let backend = Backend::text("ok");
    let dao = start(&config(1, "max_header_bytes = 4096", &[backend.addr]));
    run(async {
        let mut c = h2c(dao.local_addr(), None).await;
        // Over max_header_bytes: 431 for the stream, the connection goes on.
        let req = Request::get("http://test.local/")
            .header("x-big", "v".repeat(6000))
            .body(())
            .unwrap();
        assert_eq!(send(&mut c, req, b"").await.status, 431);
        assert_eq!(send(&mut c, bomb(4), b"").await.status, 431);
        let got = send(&mut c, get("http://test.local/"), b"").await;
        assert_eq!(got.status, 200);

        // A header block larger than can be skipped, over CONTINUATION
        // frames: the connection ends with GOAWAY.
        let mut c = h2c(dao.local_addr(), None).await;
        let req = Request::get("http://test.local/")
            .header("x-big", "v".repeat(40_000))
            .body(())
            .unwrap();
        let (resp, _) = c.send_request(req, true).unwrap();
        let e = resp.await.expect_err("the connection ends");
        // (Or cut while the client was still writing its block.)
        assert!(e.is_go_away() || e.is_io(), "{e:?}");
    });
    // Far over (an HPACK bomb): one 3000-byte field added to the dynamic
    // table, then named 39 times more by its index (one byte each).
    let mut raw = Raw::connect(dao.local_addr(), &[]);
    let mut block = request_block("/");
    block.push(0x40);
    hpack_int(&mut block, 6, 7, 0);
    block.extend_from_slice(b"x-bomb");
    hpack_int(&mut block, 3000, 7, 0);
    block.extend_from_slice(&[b'b'; 3000]);
    block.extend_from_slice(&[0x80 | 62; 39]);
    assert!(block.len() < 3200);
    raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
        .unwrap();
    let goaway = raw.until(|f| f.ty == GOAWAY).expect("GOAWAY");
    assert_eq!(goaway.code(), ENHANCE_YOUR_CALM);
    assert!(raw.closed());
    assert_eq!(backend.request_count(), 1);
    assert!(still_serves(dao.local_addr()));
    dao.shutdown();
}

/// Writes `unit` over and over without reading anything back, until the
/// socket has taken nothing for a second; returns the bytes it took.
fn flood(raw: &mut Raw, unit: &[u8]) -> usize {
    raw.s
        .set_write_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let batch: Vec<u8> = unit.repeat(1024);
    let mut taken = 0;
    // Bounded whatever happens: 256 MB.
    while taken < 256 << 20 {
        match raw.s.write(&batch) {
            Ok(n) => taken += n,
            Err(_) => break,
        }
    }
    taken
}

#[test]
fn ping_and_settings_floods_are_bounded() {
    let backend = Backend::text("ok");
    let dao = start(&config(1, "", &[backend.addr]));
    for unit in [
        frame(PING, 0, 0, &[7; 8]),
        frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]),
    ] {
        let mut raw = Raw::connect(dao.local_addr(), &[]);
        let taken = flood(&mut raw, &unit);
        // DAO answers each before reading on: a client that does not read
        // the answers stops being read once the socket buffers are full.
        assert!(taken < 64 << 20, "{taken} bytes taken");
        assert!(still_serves(dao.local_addr()));
        // What DAO sent back is acknowledgements, as asked.
        let f = raw.until(|f| f.ty == unit[3] && f.flags & 1 == 1);
        assert!(f.is_some());
    }
    dao.shutdown();
}

#[test]
fn a_client_that_never_opens_its_window_is_let_go() {
    let backend = Backend::start(|_, s| {
        respond(s, 200, &[], &vec![b'z'; 200_000]);
        After::KeepAlive
    });
    let extra = "keepalive_timeout = \"1s\"\n[proxy]\nread_timeout = \"1s\"\n";
    let dao = start(&config(1, extra, &[backend.addr]));
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no DATA may come.
    let mut raw = Raw::connect(dao.local_addr(), &[(4, 0)]);
    let started = Instant::now();
    raw.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block("/big"),
    ))
    .unwrap();
    let head = raw.until(|f| f.ty == HEADERS).unwrap();
    assert_eq!(head.stream, 1);
    // The stream is reset once the window has stayed shut for
    // read_timeout, and the idle connection ends with keepalive_timeout.
    let reset = raw.until(|f| f.ty == RST_STREAM || f.ty == DATA).unwrap();
    assert_eq!(
        (reset.ty, reset.stream, reset.code()),
        (RST_STREAM, 1, CANCEL)
    );
    let goaway = raw.until(|f| f.ty == GOAWAY).expect("GOAWAY");
    assert_eq!(goaway.code(), 0);
    assert!(raw.closed());
    assert!(started.elapsed() < Duration::from_secs(8));
    dao.shutdown();
}

#[test]
fn idle_connections_get_goaway() {
    let backend = Backend::text("ok");
    let dao = start(&config(1, "keepalive_timeout = \"500ms\"", &[backend.addr]));
    let mut raw = Raw::connect(dao.local_addr(), &[]);
    raw.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block("/"),
    ))
    .unwrap();
    raw.until(|f| f.ty == DATA && f.flags & END_STREAM != 0)
        .unwrap();
    let started = Instant::now();
    let goaway = raw.until(|f| f.ty == GOAWAY).expect("GOAWAY");
    assert_eq!(goaway.code(), 0);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(raw.closed());
    dao.shutdown();
}

#[test]
fn graceful_shutdown_sends_goaway_and_finishes_streams() {
    let backend = Backend::slow(Duration::from_millis(600));
    let dao = start(&config(1, "shutdown_timeout = \"5s\"", &[backend.addr]));
    let mut raw = Raw::connect(dao.local_addr(), &[]);
    raw.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block("/slow"),
    ))
    .unwrap();
    // The request is at the upstream when the stop comes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.request_count() == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    dao.stop();
    let (mut goaway, mut ended) = (false, false);
    while !(goaway && ended) {
        let f = raw
            .until(|f| f.ty == GOAWAY || (f.ty == DATA && f.flags & END_STREAM != 0))
            .expect("GOAWAY and the whole response");
        if f.ty == GOAWAY {
            assert_eq!(f.code(), 0);
            // Sent before the response: in-flight streams go on.
            assert!(!ended, "GOAWAY only after the response");
            goaway = true;
        } else {
            assert_eq!(&f.payload[..], b"slow");
            ended = true;
        }
    }
    dao.wait();
}

#[test]
fn h2_on_two_workers_with_the_h2_client() {
    let backend = Backend::text("ok");
    let dao = start(&config(2, "", &[backend.addr]));
    let addr = dao.local_addr();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                run(async {
                    let c = h2c(addr, None).await;
                    let mut tasks = Vec::new();
                    for i in 0..50 {
                        let mut c = c.clone();
                        tasks.push(monoio::spawn(async move {
                            send(&mut c, get(&format!("http://test.local/{i}")), b"")
                                .await
                                .status
                        }));
                    }
                    for t in tasks {
                        assert_eq!(t.await, 200);
                    }
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(backend.request_count(), 200);
    dao.shutdown();
}
