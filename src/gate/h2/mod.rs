//! HTTP/2 from clients: h2c with prior knowledge on plain listeners (a
//! connection whose first bytes are the preface) and h2 chosen by ALPN on
//! TLS listeners. Every stream is one request, routed, filtered, balanced,
//! retried and recorded as an HTTP/1.1 request is, and proxied to its
//! upstream over pooled HTTP/1.1 connections (`h1up`) or, to h2c
//! upstreams, as a stream of the multiplexed pool (`passthrough`).
//!
//! ```text
//!  client ─h2─► conn (h2::server::Connection, one task) ─accept─► stream task
//!                                                  per stream: h2 head ─► h1 head
//!                                                  ─► route, filters ─► upstream: pick, attempt, retry
//!                                                  ◄─ 1xx, response ─► h2 HEADERS/DATA/trailers
//! ```
//!
//! The protocol is the `h2` crate (0.4), driven over monoio through
//! tokio-style I/O on monoio's readiness-based sockets, which hold no
//! buffer of their own (see `io`). Chosen over
//! monoio-http's h2, a port of an older `h2`, because h2 0.4 carries the
//! fixes for the HTTP/2 floods found since: rapid reset (CVE-2023-44487:
//! `max_pending_accept_reset_streams`, `max_local_error_reset_streams`)
//! and the CONTINUATION flood (a bound on CONTINUATION frames per header
//! block, oversized header blocks refused before they are decoded).
//!
//! A stream's request is re-expressed as the HTTP/1.1 head DAO would have
//! read (`stream::synthesize`): one copy of its header bytes, after which
//! the router, the filters, the balancer's keys and the upstream head
//! writer see exactly what they see for HTTP/1.1, with no second code path
//! to keep in step. WebSockets over HTTP/2 (RFC 8441) take the same way: an
//! extended CONNECT is re-expressed as the HTTP/1.1 WebSocket handshake
//! (`websocket`), and the answered stream becomes a tunnel (`ws_tunnel`).

mod conn;
mod h1up;
pub(crate) mod io;
mod passthrough;
mod request;
mod respond;
mod stream;
mod upstream;
mod websocket;
mod ws_tunnel;

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::net::TcpStream;

use super::tls::TlsStream;
use crate::runtime::worker::Worker;

pub(crate) use conn::Connections;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `buf`, the first bytes of a connection, are (the start of) the
/// HTTP/2 preface, as far as its request line goes: an HTTP/1.1 parser has
/// refused them by then.
pub(crate) fn is_preface(buf: &[u8]) -> bool {
    let n = buf.len().min(PREFACE.len());
    n >= b"PRI * HTTP/2".len() && buf[..n] == PREFACE[..n]
}

/// Serves HTTP/2 on a plain connection whose first bytes, `early`, were
/// read already, in a task of its own, and counts the connection closed
/// when it ends. (Its own task is sized for HTTP/2 alone: the larger one
/// that found the preface ends, and does not stay allocated for as long as
/// the connection lives, idle or not.)
pub(crate) fn spawn_plain(tcp: TcpStream, early: Vec<u8>, peer: SocketAddr, worker: Rc<Worker>) {
    monoio::spawn(async move {
        let io = io::Replay::new(early, io::socket(tcp));
        conn::serve(io, peer, worker.clone(), false, Box::default()).await;
        worker.connection_closed();
    });
}

/// Serves HTTP/2 on a TLS connection whose handshake chose it, in a task
/// of its own (see [`spawn_plain`]), and counts the connection closed when
/// it ends.
pub(crate) fn spawn_tls(mut stream: TlsStream, peer: SocketAddr, worker: Rc<Worker>) {
    let client_cert = stream.take_client_cert();
    let (tcp, tls, early) = stream.into_parts();
    monoio::spawn(async move {
        let io = io::TlsIo::new(io::socket(tcp), tls, early);
        conn::serve(io, peer, worker.clone(), true, client_cert).await;
        worker.connection_closed();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preface_is_told_from_http1() {
        assert!(is_preface(PREFACE));
        assert!(is_preface(b"PRI * HTTP/2.0\r\n"));
        assert!(is_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04"));
        assert!(!is_preface(b"PRI * HTTP/1.1\r\n"));
        assert!(!is_preface(b"PRI * HT"));
        assert!(!is_preface(b"GET / HTTP/2.0\r\n"));
        assert!(!is_preface(b"PRI * HTTP/2.0\r\n\r\nXX"));
    }
}
