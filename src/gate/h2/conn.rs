//! One HTTP/2 client connection: the h2 server connection with DAO's
//! limits, its accept loop (a task per stream), the idle timeout, and the
//! GOAWAY that ends it gracefully when it idles or the worker stops.
//!
//! Limits against abusive clients, most of them enforced by the h2 crate
//! once set here:
//! - `server.h2_max_concurrent_streams` streams open at once (more are
//!   refused with `REFUSED_STREAM`);
//! - `server.max_header_bytes` of decoded header list per request (a
//!   larger one is answered 431 by h2, and a header block past what can be
//!   skipped, or with too many CONTINUATION frames, ends the connection);
//! - rapid reset: streams the client resets before they are accepted
//!   (`PENDING_RESETS`) and streams reset for its protocol errors
//!   (`LOCAL_ERROR_RESETS`) are bounded, past which the connection ends
//!   with GOAWAY `ENHANCE_YOUR_CALM`; a stream reset after it was accepted
//!   stops its upstream exchange at once (see `upstream::Down`);
//! - PING and SETTINGS floods: h2 answers each before it reads further, so
//!   a client that does not read its answers stops being read;
//! - windows: the flow-control windows granted bound what a client can
//!   send ahead, and a response waits for the client's window no longer
//!   than `proxy.read_timeout` (then its stream is reset);
//! - idle: with no stream open for `server.keepalive_timeout`, the
//!   connection says GOAWAY, and closes `CLOSE_GRACE` later at the latest.
//!
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL` (RFC 8441) is advertised unless
//! `server.h2_websocket = false`: WebSockets over HTTP/2 (see `websocket`).

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use h2::server::SendResponse;
use h2::RecvStream;
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};

use super::stream;
use crate::gate::io::within;
use crate::gate::wakers::Wakers;
use crate::runtime::worker::Worker;

/// Flow-control window granted to each stream (what a client may send of
/// a request body before DAO has forwarded any of it).
const STREAM_WINDOW: u32 = 256 * 1024;
/// Window granted to the whole connection.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Response bytes h2 may hold per stream waiting for the client's window.
const SEND_BUFFER: usize = 64 * 1024;
/// Streams reset by the client before DAO accepted them that may wait in
/// h2's queue; past that the connection ends (rapid reset).
const PENDING_RESETS: usize = 20;
/// Streams DAO may reset for the client's protocol errors before the
/// connection ends.
const LOCAL_ERROR_RESETS: usize = 256;
/// Reset streams whose late frames h2 remembers to ignore.
const RESET_STREAMS: usize = 64;
/// After GOAWAY, once no stream is left, how long the client gets to
/// close (it acknowledges the PING sent with the GOAWAY, then h2 closes).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the streams of one connection share.
pub(super) struct Shared {
    pub(super) worker: Rc<Worker>,
    pub(super) peer_ip: IpAddr,
    pub(super) client_ip: String,
    /// The client came over TLS.
    pub(super) tls: bool,
    /// Its verified certificate's header line for upstreams (empty: none).
    pub(super) client_cert: Box<[u8]>,
    /// Streams whose task runs.
    open: Cell<usize>,
    /// The connection task's waker, woken when its last stream ends.
    waker: Cell<Option<Waker>>,
}

/// A stream counted open on its connection until dropped.
pub(super) struct Open(Rc<Shared>);

impl Open {
    fn new(shared: &Rc<Shared>) -> Open {
        shared.open.set(shared.open.get() + 1);
        Open(shared.clone())
    }

    pub(super) fn shared(&self) -> &Rc<Shared> {
        &self.0
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let open = self.0.open.get() - 1;
        self.0.open.set(open);
        if open == 0 {
            if let Some(w) = self.0.waker.take() {
                w.wake();
            }
        }
    }
}

/// The HTTP/2 connections of one worker, woken when it stops so that each
/// says GOAWAY at once.
#[derive(Debug, Default)]
pub(crate) struct Connections(Wakers);

impl Connections {
    /// Connections open on this worker.
    pub(crate) fn open(&self) -> usize {
        self.0.open()
    }

    /// The worker is stopping (its `stopping` flag is set): every
    /// connection looks at it now.
    pub(crate) fn stop(&self) {
        self.0.wake_all();
    }
}

/// A connection's place in `Connections`, left when dropped.
struct Entered<'a>(&'a Wakers, usize);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.leave(self.1);
    }
}

/// What woke the connection task (handled at once, never stored).
#[allow(clippy::large_enum_variant)]
enum Event {
    Stream(Request<RecvStream>, SendResponse<Bytes>),
    Failed(h2::Error),
    Closed,
    Timer,
}

/// Serves HTTP/2 on `io` until the connection ends (panics stay in it);
/// `client_cert`: the header line of the client's certificate, if any.
pub(super) async fn serve<T>(
    io: T,
    peer: SocketAddr,
    worker: Rc<Worker>,
    tls: bool,
    client_cert: Box<[u8]>,
) where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let id = worker.id;
    let served = AssertUnwindSafe(run(io, peer, worker, tls, client_cert))
        .catch_unwind()
        .await;
    if served.is_err() {
        tracing::error!(worker = id, %peer, "HTTP/2 connection task panicked; connection closed");
    }
}

async fn run<T>(io: T, peer: SocketAddr, worker: Rc<Worker>, tls: bool, client_cert: Box<[u8]>)
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (handshake, keepalive) = {
        let gen = worker.gen();
        let server = &gen.config.server;
        let mut builder = h2::server::Builder::new();
        builder
            .max_concurrent_streams(server.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buffer_size(SEND_BUFFER)
            .max_concurrent_reset_streams(RESET_STREAMS)
            .max_pending_accept_reset_streams(PENDING_RESETS)
            .max_local_error_reset_streams(Some(LOCAL_ERROR_RESETS));
        if server.h2_websocket {
            // RFC 8441: clients may open WebSockets with extended CONNECT
            // (see `websocket`); without it h2 refuses `:protocol`.
            builder.enable_connect_protocol();
        }
        let handshake = within(
            server.header_read_timeout,
            builder.handshake::<_, Bytes>(io),
        );
        (handshake, server.keepalive_timeout)
    };
    let mut h2 = match handshake.await {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            tracing::debug!(worker = worker.id, %peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        None => {
            tracing::debug!(worker = worker.id, %peer, "HTTP/2 handshake timed out");
            return;
        }
    };
    let shared = Rc::new(Shared {
        worker: worker.clone(),
        peer_ip: peer.ip(),
        client_ip: peer.ip().to_string(),
        tls,
        client_cert,
        open: Cell::new(0),
        waker: Cell::new(None),
    });
    let entered = Entered(&worker.h2.0, worker.h2.0.enter());
    // The idle timer while no stream is open; once GOAWAY is sent, the
    // time the client has left to close.
    let mut timer: Option<Pin<Box<monoio::time::Sleep>>> = None;
    let mut closing = false;
    loop {
        let event = poll_fn(|cx| {
            if !closing && worker.stopping.get() {
                // In-flight streams finish; the worker's shutdown timeout
                // bounds them.
                h2.graceful_shutdown();
                closing = true;
                timer = None;
            }
            entered.0.register(entered.1, cx.waker());
            match h2.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    return Poll::Ready(Event::Stream(req, respond))
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Event::Failed(e)),
                Poll::Ready(None) => return Poll::Ready(Event::Closed),
                Poll::Pending => {}
            }
            if shared.open.get() > 0 {
                timer = None;
                match shared.waker.take() {
                    Some(w) if w.will_wake(cx.waker()) => shared.waker.set(Some(w)),
                    _ => shared.waker.set(Some(cx.waker().clone())),
                }
                return Poll::Pending;
            }
            let wait = if closing { CLOSE_GRACE } else { keepalive };
            let t = timer.get_or_insert_with(|| Box::pin(monoio::time::sleep(wait)));
            match t.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Event::Timer),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match event {
            Event::Stream(req, respond) => {
                let open = Open::new(&shared);
                monoio::spawn(stream::serve(open, req, respond));
            }
            Event::Failed(e) => {
                // h2 has sent the GOAWAY that says why, where one applies.
                tracing::debug!(worker = worker.id, %peer, error = %e, "HTTP/2 connection failed");
                break;
            }
            Event::Closed => break,
            // The client did not close after GOAWAY.
            Event::Timer if closing => break,
            Event::Timer => {
                h2.graceful_shutdown();
                closing = true;
                timer = None;
            }
        }
    }
}
