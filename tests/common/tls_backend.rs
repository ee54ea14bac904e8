//! An HTTPS backend on loopback (rustls over std sockets, a thread per
//! connection) that records what each handshake showed (SNI, ALPN, a
//! client certificate, resumption) and answers HTTP/1.1 requests, or
//! echoes WebSocket messages (tungstenite) after the handshake.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::pki::Pki;
use super::{read_request, respond, Req};

/// What one completed handshake showed.
#[derive(Debug, Clone)]
pub struct Hello {
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub client_cert: bool,
    pub resumed: bool,
}

/// How the backend behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTTP/1.1: 200 with `tls backend PATH` (keep-alive).
    Http,
    /// A WebSocket server echoing every message.
    WebSocket,
}

pub struct TlsBackend {
    pub addr: SocketAddr,
    pub hellos: Arc<Mutex<Vec<Hello>>>,
    pub requests: Arc<Mutex<Vec<Req>>>,
    /// Handshakes that failed.
    pub refused: Arc<Mutex<Vec<String>>>,
}

impl TlsBackend {
    /// Serves `server.pem` of `pki`, offering `alpn`; with `client_ca`,
    /// a client certificate signed by the PKI's CA is required.
    pub fn start(pki: &Pki, alpn: &[&str], client_ca: bool, mode: Mode) -> TlsBackend {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_ca {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_file(pki.path("ca.pem")).unwrap())
                .unwrap();
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap(),
            )
        } else {
            builder.with_no_client_auth()
        };
        let chain = CertificateDer::pem_file_iter(pki.path("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hellos = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (h, r, f) = (hellos.clone(), requests.clone(), refused.clone());
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(mut sock) = sock else { continue };
                let (config, h, r, f) = (config.clone(), h.clone(), r.clone(), f.clone());
                std::thread::spawn(move || {
                    let mut conn = rustls::ServerConnection::new(config).unwrap();
                    while conn.is_handshaking() {
                        if let Err(e) = conn.complete_io(&mut sock) {
                            f.lock().unwrap().push(e.to_string());
                            return;
                        }
                    }
                    h.lock().unwrap().push(Hello {
                        sni: conn.server_name().map(str::to_string),
                        alpn: conn
                            .alpn_protocol()
                            .map(|p| String::from_utf8_lossy(p).into_owned()),
                        client_cert: conn.peer_certificates().is_some(),
                        resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
                    });
                    let stream = rustls::StreamOwned::new(conn, sock);
                    match mode {
                        Mode::Http => serve_http(stream, &r),
                        Mode::WebSocket => echo_websocket(stream),
                    }
                });
            }
        });
        TlsBackend {
            addr,
            hellos,
            requests,
            refused,
        }
    }

    pub fn hellos(&self) -> Vec<Hello> {
        self.hellos.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn last_request(&self) -> Req {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request")
    }
}

type Tls = rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>;

fn serve_http(stream: Tls, requests: &Mutex<Vec<Req>>) {
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        let body = format!("tls backend {}", req.path);
        requests.lock().unwrap().push(req);
        let out = reader.get_mut();
        respond(out, 200, &[("Content-Type", "text/plain")], body.as_bytes());
        if out.flush().is_err() {
            return;
        }
    }
}

fn echo_websocket(stream: Tls) {
    let Ok(mut ws) = tungstenite::accept(stream) else {
        return;
    };
    while let Ok(msg) = ws.read() {
        if msg.is_close() {
            let _ = ws.flush();
            return;
        }
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).is_err() {
            return;
        }
    }
}
