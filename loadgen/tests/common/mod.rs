//! A small blocking HTTP/1.1 test backend on 127.0.0.1:0 (one std thread per
//! connection) that counts what it sees and answers as the test scripts it,
//! plus helpers to run the dao-loadgen binary with a JSON report.

#![allow(dead_code)] // each test file uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How to answer one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reply {
    /// Status code.
    pub(crate) status: u16,
    /// Wait this long before answering.
    pub(crate) delay: Duration,
    /// Send the body chunked.
    pub(crate) chunked: bool,
    /// Add `Connection: close` and close after the response.
    pub(crate) close: bool,
}

impl Reply {
    /// 200, at once, Content-Length.
    pub(crate) const OK: Reply = Reply {
        status: 200,
        delay: Duration::ZERO,
        chunked: false,
        close: false,
    };
}

/// A running backend.
pub(crate) struct Backend {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Requests received.
    pub(crate) requests: Arc<AtomicU64>,
    /// Connections accepted.
    pub(crate) connections: Arc<AtomicU64>,
}

impl Backend {
    /// Starts a backend answering request number `n` (0-based, across all
    /// connections, in arrival order) with `script(n)`.
    pub(crate) fn start(script: impl Fn(u64) -> Reply + Send + Sync + 'static) -> Backend {
        Backend::start_with(None, script)
    }

    /// Like [`Backend::start`], speaking TLS with the test certificate for
    /// `localhost` / 127.0.0.1 (tests/data).
    pub(crate) fn start_tls(script: impl Fn(u64) -> Reply + Send + Sync + 'static) -> Backend {
        Backend::start_with(Some(tls_config()), script)
    }

    fn start_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        script: impl Fn(u64) -> Reply + Send + Sync + 'static,
    ) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let script = Arc::new(script);
        let (r, c) = (Arc::clone(&requests), Arc::clone(&connections));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, script, tls) = (Arc::clone(&r), Arc::clone(&script), tls.clone());
                let _ = stream.set_nodelay(true);
                std::thread::spawn(move || match tls {
                    None => serve(stream, &r, &*script),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(conn, stream), &r, &*script)
                    }
                });
            }
        });
        Backend {
            addr,
            requests,
            connections,
        }
    }

    /// `http://addr/path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

fn serve(
    mut s: impl Read + Write,
    count: &AtomicU64,
    script: &(dyn Fn(u64) -> Reply + Send + Sync),
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Answer every complete request already buffered (pipelining).
        while let Some((len, head_only)) = request_len(&buf) {
            buf.drain(..len);
            let n = count.fetch_add(1, Ordering::SeqCst);
            let reply = script(n);
            if !reply.delay.is_zero() {
                std::thread::sleep(reply.delay);
            }
            if s.write_all(&render(&reply, head_only)).is_err() || reply.close {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Length of the first complete request (head + Content-Length body) and
/// whether it is a HEAD request.
fn request_len(buf: &[u8]) -> Option<(usize, bool)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf).ok()? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let body: usize = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0);
    let head_only = req.method == Some("HEAD");
    (buf.len() >= head + body).then_some((head + body, head_only))
}

fn render(reply: &Reply, head_only: bool) -> Vec<u8> {
    let body = b"hello from the test backend";
    let mut out = format!("HTTP/1.1 {} Test\r\n", reply.status).into_bytes();
    if reply.close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    if reply.chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        if !head_only {
            out.extend_from_slice(b"5\r\nhello\r\n16\r\n from the test backend\r\n0\r\n\r\n");
        }
    } else {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        if !head_only {
            out.extend_from_slice(body);
        }
    }
    out
}

/// Path of a file under tests/data.
pub(crate) fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(data("localhost.crt"))
        .expect("test cert")
        .collect::<Result<_, _>>()
        .expect("test cert parses");
    let key = PrivateKeyDer::from_pem_file(data("localhost.key")).expect("test key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    Arc::new(config)
}

/// A port nothing listens on (bound, then released).
pub(crate) fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Runs dao-loadgen with `args` (plus `--json` and `--no-pin`) and returns
/// its parsed JSON report and its stdout.
pub(crate) fn loadgen(args: &[&str]) -> (serde_json::Value, String) {
    let dir = std::env::temp_dir().join(format!(
        "dao-loadgen-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_dao-loadgen"))
        .args(args)
        .args(["--no-pin", "--progress", "never", "--json"])
        .arg(&json)
        .output()
        .expect("run dao-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "dao-loadgen {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("report written");
    let _ = std::fs::remove_dir_all(&dir);
    (serde_json::from_str(&text).expect("report is JSON"), stdout)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs dao-loadgen expecting it to refuse; returns stderr.
pub(crate) fn loadgen_rejects(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dao-loadgen"))
        .args(args)
        .args(["--no-pin", "--progress", "never"])
        .output()
        .expect("run dao-loadgen");
    assert!(!out.status.success(), "dao-loadgen {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `v[a][b]…` as u64.
pub(crate) fn u(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a u64 in {v}"))
}

/// `v[a][b]…` as f64.
pub(crate) fn f(v: &serde_json::Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {v}"))
}
