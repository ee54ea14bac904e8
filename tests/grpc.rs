//! gRPC through DAO to a real gRPC server (Python grpcio, over h2c):
//! unary and server-streaming calls, status in trailers, deadlines. A real
//! grpcio client speaks HTTP/2 to DAO (`a_grpcio_client_…`, the stream
//! passed through as HTTP/2); the other tests speak gRPC's wire format
//! over HTTP/1.1 (length-prefixed messages in a chunked body, `TE:
//! trailers`), which DAO translates to HTTP/2 for the server and back.
//!
//! Needs `python3` with `grpcio`; without them the tests skip, unless
//! `DAO_REQUIRE_TOOLS` is set (as `.ci/run` does, after installing it).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The grpcio server of `tests/grpc/echo_server.py`, stopped when dropped.
struct GrpcServer {
    child: Child,
    addr: SocketAddr,
}

impl GrpcServer {
    /// Started, or `None` (the test skips) where python3 or grpcio is
    /// missing and the tools are not required.
    fn start() -> Option<GrpcServer> {
        GrpcServer::start_with(&[])
    }

    /// Started with `args` (`--tls CERT KEY`: over TLS).
    fn start_with(args: &[&str]) -> Option<GrpcServer> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/echo_server.py");
        let child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return missing(&format!("python3: {e}")),
        };
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let _ = child.wait();
            return missing("grpcio (pip install grpcio)");
        };
        Some(GrpcServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }
}

fn missing<T>(what: &str) -> Option<T> {
    assert!(
        std::env::var_os("DAO_REQUIRE_TOOLS").is_none(),
        "{what} is required"
    );
    eprintln!("skipped: {what} is not available");
    None
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        // Closing its standard input ends it.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// DAO with one worker in front of the gRPC server as an h2c upstream.
fn dao(upstream: SocketAddr) -> Server {
    start(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [[routes.rule]]\nname = \"grpc\"\n[routes.rule.match]\npath_prefix = \"/dao.test.Echo/\"\n\
         [[routes.rule.upstreams]]\nname = \"py\"\nurl = \"http://{upstream}\"\nprotocol = \"h2c\"\n"
    ))
}

/// One gRPC message: uncompressed flag, big-endian length, bytes.
fn frame(msg: &[u8]) -> Vec<u8> {
    let mut f = vec![0];
    f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    f.extend_from_slice(msg);
    f
}

/// Sends a call of `method` with one request message.
fn call(c: &mut Client, method: &str, msg: &[u8], extra: &str) {
    let body = frame(msg);
    c.send(
        format!(
            "POST /dao.test.Echo/{method} HTTP/1.1\r\nHost: grpc.test\r\n\
             Content-Type: application/grpc\r\nTE: trailers\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
}

/// A response read as it arrives: its head, then its body chunk by chunk.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    chunked: bool,
}

fn read_head(c: &mut Client) -> Reply {
    let mut status_line = String::new();
    c.reader.read_line(&mut status_line).unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        c.reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v == "chunked");
    Reply {
        status,
        headers,
        chunked,
    }
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads gRPC messages until `n` are complete (`buf` keeps what is past
/// them); `None` when the chunked body ended first.
fn messages(c: &mut Client, buf: &mut Vec<u8>, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        while buf.len() >= 5 {
            let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
            if buf.len() < 5 + len {
                break;
            }
            out.push(buf[5..5 + len].to_vec());
            buf.drain(..5 + len);
        }
        if out.len() >= n {
            return out;
        }
        let mut size = String::new();
        c.reader.read_line(&mut size).unwrap();
        let len = usize::from_str_radix(size.trim_end(), 16).unwrap();
        assert!(len > 0, "body ended after {} messages", out.len());
        let mut chunk = vec![0; len + 2];
        c.reader.read_exact(&mut chunk).unwrap();
        buf.extend_from_slice(&chunk[..len]);
    }
}

/// After the messages: the last chunk and its trailers.
fn trailers(c: &mut Client) -> Vec<(String, String)> {
    let mut size = String::new();
    c.reader.read_line(&mut size).unwrap();
    assert_eq!(size, "0\r\n", "more body where the end was expected");
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        c.reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            return out;
        }
        let (n, v) = l.split_once(':').unwrap();
        out.push((n.to_string(), v.trim().to_string()));
    }
}

fn value<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn unary_calls_carry_their_status_in_trailers() {
    let Some(py) = GrpcServer::start() else {
        return;
    };
    let dao = dao(py.addr);
    let mut c = Client::connect(dao.local_addr());
    for i in 0..3 {
        let msg = format!("hello {i}");
        call(&mut c, "Unary", msg.as_bytes(), "");
        let r = read_head(&mut c);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/grpc"));
        assert!(r.chunked);
        let mut buf = Vec::new();
        let got = messages(&mut c, &mut buf, 1);
        assert_eq!(got, [format!("echo:{msg}").into_bytes()]);
        let t = trailers(&mut c);
        assert_eq!(value(&t, "grpc-status"), Some("0"), "{t:?}");
        assert_eq!(value(&t, "x-trailer"), Some("t"), "{t:?}");
    }

    // A failed call: its status comes back (trailers-only: in the head).
    call(&mut c, "Fail", b"", "");
    let r = read_head(&mut c);
    assert_eq!(r.status, 200);
    let status = match r.header("grpc-status") {
        Some(s) => s.to_string(),
        None => value(&trailers(&mut c), "grpc-status").unwrap().to_string(),
    };
    assert_eq!(status, "5");
    if !r.chunked {
        assert_eq!(r.header("content-length"), Some("0"));
    }
}

#[test]
fn server_streams_arrive_message_by_message() {
    let Some(py) = GrpcServer::start() else {
        return;
    };
    let dao = dao(py.addr);
    let mut c = Client::connect(dao.local_addr());
    call(&mut c, "Count", b"3", "");
    let r = read_head(&mut c);
    assert_eq!(r.status, 200);
    let mut buf = Vec::new();
    // The first message comes while the server holds the others back.
    assert_eq!(messages(&mut c, &mut buf, 1), [b"msg-0".to_vec()]);
    let mut other = Client::connect(dao.local_addr());
    call(&mut other, "Release", b"", "");
    assert_eq!(read_head(&mut other).status, 200);
    assert_eq!(
        messages(&mut c, &mut buf, 2),
        [b"msg-1".to_vec(), b"msg-2".to_vec()]
    );
    assert_eq!(value(&trailers(&mut c), "grpc-status"), Some("0"));
}

#[test]
fn the_callers_deadline_reaches_the_server() {
    let Some(py) = GrpcServer::start() else {
        return;
    };
    let dao = dao(py.addr);
    let mut c = Client::connect(dao.local_addr());
    let started = Instant::now();
    call(&mut c, "Sleep", b"", "grpc-timeout: 200m\r\n");
    let r = read_head(&mut c);
    assert_eq!(r.status, 200);
    let status = match r.header("grpc-status") {
        Some(s) => s.to_string(),
        None => value(&trailers(&mut c), "grpc-status").unwrap().to_string(),
    };
    // DEADLINE_EXCEEDED, well before the 2 s the call would take.
    assert_eq!(status, "4");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

/// A real gRPC client (grpcio) speaking HTTP/2 to DAO's plain listener
/// (prior knowledge), proxied over h2c to the real server: unary with
/// trailing metadata, a server stream whose first message arrives while
/// the stream is still open, a failed call's status, a deadline.
#[test]
fn a_grpcio_client_goes_through_dao_over_http2() {
    let Some(server) = GrpcServer::start() else {
        return;
    };
    let dao = dao(server.addr);
    let v = grpcio_client(&dao);
    assert_eq!(v["stream_code"], "OK", "{v}");
    assert!(v["deadline_s"].as_f64().unwrap() < 1.5, "{v}");
    dao.shutdown();
}

/// Runs `tests/grpc/client.py` against DAO, checks the answers every
/// server gives, and returns them all.
fn grpcio_client(dao: &Server) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dao.local_addr().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["unary"], "echo:hi", "{v}");
    assert_eq!(v["unary_trailer"], "t", "{v}");
    assert_eq!(
        v["stream"],
        serde_json::json!(["msg-0", "msg-1", "msg-2"]),
        "{v}"
    );
    assert_eq!(v["fail"], "NOT_FOUND", "{v}");
    assert_eq!(v["deadline"], "DEADLINE_EXCEEDED", "{v}");
    v
}

/// The same calls to a grpcio server serving TLS: DAO speaks HTTP/2 over
/// TLS to it (`https://`, `protocol = "h2"`, its certificate verified).
#[test]
fn a_grpcio_client_reaches_a_grpc_server_over_tls() {
    let pki = common::pki::Pki::new("grpc-tls");
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let Some(server) = GrpcServer::start_with(&["--tls", &cert, &key]) else {
        return;
    };
    let dao = start(&format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [[routes.rule]]\nname = \"grpc\"\n[routes.rule.match]\npath_prefix = \"/dao.test.Echo/\"\n\
         [[routes.rule.upstreams]]\nname = \"py\"\nurl = \"https://localhost:{}\"\nprotocol = \"h2\"\n\
         [routes.rule.upstreams.tls]\nca = \"{}\"\n",
        server.addr.port(),
        pki.path("ca.pem")
    ));
    grpcio_client(&dao);
    dao.shutdown();
}
