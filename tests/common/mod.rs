//! Test harness: real backends on 127.0.0.1:0 (std threads), a raw HTTP/1.1
//! client, and DAO started in-process on its own port.
#![allow(dead_code, unreachable_pub, clippy::disallowed_types)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use dao::runtime::Server;

pub mod http2;
pub mod pki;
pub mod tls_backend;

/// A request as a backend received it.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What a backend handler tells the backend loop to do next.
pub enum After {
    KeepAlive,
    Close,
}

type Handler = dyn Fn(&Req, &mut TcpStream) -> After + Send + Sync;

/// A backend on loopback: every connection gets a thread; every request is
/// read whole, recorded, then handed to the handler to answer.
pub struct Backend {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Req>>>,
}

impl Backend {
    pub fn start(
        handler: impl Fn(&Req, &mut TcpStream) -> After + Send + Sync + 'static,
    ) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (c, r) = (connections.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (handler, r) = (handler.clone(), r.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut out = stream;
                    while let Some(req) = read_request(&mut reader) {
                        r.lock().unwrap().push(req.clone());
                        if let After::Close = handler(&req, &mut out) {
                            break;
                        }
                    }
                });
            }
        });
        Backend {
            addr,
            connections,
            requests,
        }
    }

    /// Answers every request with 200 and `text` (keep-alive).
    pub fn text(text: &'static str) -> Backend {
        Backend::start(move |_, s| {
            respond(s, 200, &[], text.as_bytes());
            After::KeepAlive
        })
    }

    /// Answers every request with 200 and `slow` after `delay`.
    pub fn slow(delay: Duration) -> Backend {
        Backend::start(move |_, s| {
            std::thread::sleep(delay);
            respond(s, 200, &[], b"slow");
            After::KeepAlive
        })
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn last_request(&self) -> Req {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request reached the backend")
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// Writes a response with a Content-Length body.
pub fn respond(s: &mut impl Write, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // One write: a second small one would wait for the first's ACK (Nagle
    // meeting delayed ACKs), adding 40 ms to latencies the tests measure.
    let mut all = head.into_bytes();
    all.extend_from_slice(body);
    let _ = s.write_all(&all);
}

pub fn read_request(r: &mut impl BufRead) -> Option<Req> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let mut req = Req {
        method: parts.next()?.to_string(),
        path: parts.next()?.to_string(),
        version: parts.next()?.to_string(),
        ..Req::default()
    };
    let headers = read_headers(r)?;
    req.headers = headers;
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        req.body = read_chunked(r)?;
    } else if let Some(n) = req.header("content-length") {
        let mut body = vec![0; n.parse().ok()?];
        r.read_exact(&mut body).ok()?;
        req.body = body;
    }
    Some(req)
}

fn read_headers(r: &mut impl BufRead) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            return Some(headers);
        }
        let (n, v) = l.split_once(':')?;
        headers.push((n.to_string(), v.trim().to_string()));
    }
}

fn read_chunked(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim_end().split(';').next()?, 16).ok()?;
        if size == 0 {
            // Trailers until the blank line.
            read_headers(r)?;
            return Some(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0; 2];
        r.read_exact(&mut crlf).ok()?;
    }
}

/// A response as the client received it.
#[derive(Debug, Clone, Default)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client connection to DAO.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one response; `head_request` when it answers a HEAD.
    pub fn read(&mut self, head_request: bool) -> Resp {
        self.try_read(head_request).expect("a response")
    }

    pub fn try_read(&mut self, head_request: bool) -> Option<Resp> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let status: u16 = line.split(' ').nth(1)?.parse().ok()?;
            let headers = read_headers(&mut self.reader)?;
            let mut resp = Resp {
                status,
                headers,
                body: Vec::new(),
            };
            if (100..200).contains(&status) {
                continue;
            }
            if head_request || status == 204 || status == 304 {
                return Some(resp);
            }
            if resp
                .header("transfer-encoding")
                .is_some_and(|v| v.contains("chunked"))
            {
                resp.body = read_chunked(&mut self.reader)?;
            } else if let Some(n) = resp.header("content-length") {
                resp.body = vec![0; n.parse().ok()?];
                self.reader.read_exact(&mut resp.body).ok()?;
            } else {
                self.reader.read_to_end(&mut resp.body).ok()?;
            }
            return Some(resp);
        }
    }

    /// Sends `GET path` with `Host: host` and reads the response.
    pub fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n\r\n").as_bytes());
        self.read(false)
    }

    /// True when the server closed the connection (EOF, or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

/// Config text for one route over the given backends.
pub fn config(workers: usize, extra: &str, backends: &[SocketAddr]) -> String {
    let mut text = format!("[server]\nbind = \"127.0.0.1:0\"\nworkers = {workers}\n{extra}\n[[routes.rule]]\nname = \"all\"\n");
    for (i, b) in backends.iter().enumerate() {
        text += &format!("[[routes.rule.upstreams]]\nname = \"b{i}\"\nurl = \"http://{b}\"\n");
    }
    text
}

/// Starts DAO in-process with the config text.
pub fn start(text: &str) -> Server {
    let config = dao::memory::parse(text).unwrap_or_else(|e| panic!("config: {e}\n{text}"));
    Server::start(config).unwrap()
}

/// DAO with `workers` workers and one route "r" over `backend` (upstream
/// "up") carrying `filters`; `extra` is TOML for the top-level sections.
pub fn with_filters(backend: &Backend, workers: usize, extra: &str, filters: &str) -> Server {
    start(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = {workers}\n{extra}\n\
         [[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"up\"\nurl = \"http://{}\"\n\
         [routes.rule.filters]\n{filters}\n",
        backend.addr
    ))
}

/// DAO with one worker in front of `backend`.
pub fn proxy(backend: &Backend) -> Server {
    start(&config(1, "", &[backend.addr]))
}

/// A loopback address that refuses connections: a TCP socket bound to it
/// but never listening, kept open until the test process ends, so that no
/// other test can take the port (as it could a port merely closed).
pub fn dead_addr() -> SocketAddr {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&any.into()).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    std::mem::forget(s);
    addr
}

/// Waits until one series in DAO's /metrics equals `want` (the merge runs
/// every interval); panics with the last value after 10 s.
pub fn wait_metric(dao: &Server, series: &str, want: f64) {
    let addr = dao.telemetry_addr().expect("a telemetry listener");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = Client::connect(addr).get("/metrics").text();
        let value = text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        });
        if value == Some(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} is {value:?}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs curl with `args` (and `--silent --show-error`, a 10 s limit).
pub fn curl(args: &[&str]) -> std::process::Output {
    std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap()
}

/// What a program wrote to its standard output, as text.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether the program `name` can be started; without it a test skips,
/// unless `DAO_REQUIRE_TOOLS` is set (as `.ci/run` does, after installing
/// what the tests need), where its absence fails the test.
pub fn tool(name: &str) -> bool {
    let found = std::process::Command::new(name)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("DAO_REQUIRE_TOOLS").is_none(),
            "{name} is required (see .ci/run for how it is installed)"
        );
        eprintln!("skipped: {name} is not installed");
    }
    found
}
