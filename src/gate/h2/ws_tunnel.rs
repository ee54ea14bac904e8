//! A WebSocket over HTTP/2 (see `websocket`) to its HTTP/1.1 upstream:
//! the balancer's pick, the handshake on a pooled or new connection, the
//! `101` checked and answered `200` on the stream, then the stream and the
//! upstream connection joined by the worker's tunnel (`gate::tunnel`:
//! idle timeout, shutdown cut, `dao_tunnels_open` and
//! `dao_tunnel_bytes_total`).
//!
//! In the tunnel the stream stands for a client socket: its DATA frames
//! are what is read (their flow-control window given back once they are
//! written upstream, so a slow upstream holds the client back), what the
//! upstream sends goes out as DATA as the client's window allows, the
//! client's END_STREAM half-closes the upstream connection and the
//! upstream's EOF ends the stream. A client that resets the stream ends
//! the tunnel at once and the upstream connection is closed.
//!
//! Any answer but a 101 goes back as a normal response, as the HTTP/1.1
//! path does, except a 2xx: to an RFC 8441 client a 2xx means the tunnel
//! is open, so an upstream that answers 2xx without switching gets a 502.
//! A route whose picked upstream speaks h2c is refused 501: DAO does not
//! forward extended CONNECT to HTTP/2 upstreams (one log line per worker
//! says so).

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::header::SEC_WEBSOCKET_ACCEPT;
use http::StatusCode;

use super::h1up::respond_down;
use super::respond::respond_filters;
use super::respond::OrReset;
use super::stream::Stream;
use super::upstream::{client_h2, reset, Outcome};
use super::websocket::{check_switch, Handshake};
use crate::align::breaker::Held;
use crate::clock;
use crate::error::ProxyError;
use crate::flow::Headers;
use crate::gate::attempt::{connect, upstream_error};
use crate::gate::exchange::Bufs;
use crate::gate::exchange::Upgraded;
use crate::gate::io::IoFail;
use crate::gate::tunnel::{self, Sink, Source};
use crate::memory::Upstream;
use crate::proto::h1::parse_response;
use crate::proto::h1::response::is_interim;
use crate::runtime::worker::Worker;
use crate::upstream::pool::UpstreamConn;
use std::task::Context;

/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A WebSocket whose `200` went out: the stream and the upstream
/// connection, to be joined by `run`.
pub(super) struct Tunnel {
    upgraded: Upgraded,
    recv: RecvStream,
    send: SendStream<Bytes>,
    /// `proxy.tunnel_idle_timeout` of the config the handshake ran under.
    idle: Duration,
}

impl Tunnel {
    /// Relays until the tunnel ends (see `gate::tunnel`).
    pub(super) async fn run(self, worker: &Rc<Worker>) {
        let send = Rc::new(RefCell::new(self.send));
        let watched = send.clone();
        // The client's reset, seen even while both ends wait on the
        // upstream (after the client's END_STREAM).
        let gone = poll_fn(move |cx| watched.borrow_mut().poll_reset(cx).map(|_| ()));
        let ends = (
            StreamSource {
                recv: self.recv,
                pending: Bytes::new(),
                unreleased: 0,
            },
            StreamSink(send),
        );
        let how = (worker, self.idle);
        tunnel::run_until(ends, Vec::new(), self.upgraded, how, gone).await;
        // Dropping the stream's handles resets it (CANCEL) unless both
        // sides ended it.
    }
}

/// The client's side of the tunnel that DAO reads: the stream's DATA.
struct StreamSource {
    recv: RecvStream,
    /// What is left of the last DATA frame.
    pending: Bytes,
    /// Bytes handed to the tunnel since the window was last given back:
    /// written upstream once the tunnel reads again.
    unreleased: usize,
}

impl Source for StreamSource {
    async fn read_some(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if self.unreleased > 0 {
            let _ = self
                .recv
                .flow_control()
                .release_capacity(std::mem::take(&mut self.unreleased));
        }
        while self.pending.is_empty() {
            match poll_fn(|cx| self.recv.poll_data(cx)).await {
                // END_STREAM (trailers, which a tunnel has no use for,
                // end it as well).
                None => return (Ok(0), buf),
                Some(Err(e)) => return (Err(h2_io(e)), buf),
                Some(Ok(data)) => self.pending = data,
            }
        }
        let room = (buf.capacity() - buf.len()).max(1);
        let n = room.min(self.pending.len());
        buf.extend_from_slice(&self.pending.split_to(n));
        self.unreleased += n;
        (Ok(n), buf)
    }
}

/// The client's side of the tunnel that DAO writes: DATA frames on the
/// stream, shared with the wait for its reset.
struct StreamSink(Rc<RefCell<SendStream<Bytes>>>);

impl Sink for StreamSink {
    async fn write_whole(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        // h2 keeps what it sends until it is written: a copy, the buffer
        // goes back to the tunnel.
        let mut data = Bytes::copy_from_slice(&buf);
        self.0.borrow_mut().reserve_capacity(data.len());
        while !data.is_empty() {
            let cap = match poll_fn(|cx| self.0.borrow_mut().poll_capacity(cx)).await {
                None => return (Err(reset_io()), buf),
                Some(Err(e)) => return (Err(h2_io(e)), buf),
                Some(Ok(0)) => continue,
                Some(Ok(n)) => n,
            };
            let piece = data.split_to(cap.min(data.len()));
            if let Err(e) = self.0.borrow_mut().send_data(piece, false) {
                return (Err(h2_io(e)), buf);
            }
        }
        (Ok(()), buf)
    }

    async fn end(&mut self) -> io::Result<()> {
        self.0
            .borrow_mut()
            .send_data(Bytes::new(), true)
            .map_err(h2_io)
    }
}

/// An h2 failure as the tunnel's I/O error: a stream ended by a reason
/// (RST_STREAM, GOAWAY) reads as a reset connection.
fn h2_io(e: h2::Error) -> io::Error {
    match e.reason() {
        Some(_) => io::Error::new(io::ErrorKind::ConnectionReset, e),
        None => io::Error::other(e),
    }
}

fn reset_io() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "the client reset the stream",
    )
}

/// Proxies the WebSocket handshake `hs` (the stream's head, rewritten as
/// HTTP/1.1, parsed into `s.head`) to an upstream of route `route_index`.
/// `Ok`: the `200` went out and the tunnel is to be run; `Err`: how the
/// exchange ended otherwise, for the stream to answer as any request's.
pub(super) async fn exchange(
    s: &mut Stream,
    route_index: usize,
    hs: &Handshake,
    body: RecvStream,
    respond: &mut SendResponse<Bytes>,
) -> Result<Tunnel, Outcome> {
    let worker = s.shared.worker.clone();
    let gen = s.gen.clone();
    let route = &gen.config.routes[route_index];
    let (picked, sticky) = pick(s, route_index);
    let upstream = &route.upstreams[picked];
    if upstream.protocol.is_h2() {
        refused_h2c(&worker, &route.name, &upstream.name);
        return Err(Outcome::Failed(ProxyError::BadRequest(
            "WebSocket to an h2c upstream",
            501,
        )));
    }
    let load = &gen.loads[upstream.pool];
    if let Some(b) = &gen.breakers[route_index] {
        if let Err(limit) = b.admit(load.requests.get()) {
            s.tally.breaker_open(limit);
            return Err(Outcome::Failed(ProxyError::CircuitOpen(limit)));
        }
    }
    let _request = Held::new(&load.requests);
    let mut bufs = Bufs::for_stream(&worker);
    let fwd = s.forwarded(upstream);
    crate::proto::h1::head::write_request_head(&mut bufs.out, &s.down, &s.head, &fwd);

    let pool = gen.pools[upstream.pool];
    let (mut up, reused) = match worker.pool.take(pool, worker.coarse_now.get()) {
        Some(c) => (c, true),
        None => {
            if let Some(b) = &gen.breakers[route_index] {
                if let Err(limit) = b.connect(worker.pool.open(pool), load.pending.get()) {
                    s.tally.breaker_open(limit);
                    return Err(Outcome::Failed(ProxyError::CircuitOpen(limit)));
                }
            }
            s.tally.sending();
            let _waiting = Held::new(&load.pending);
            match or_reset(respond, connect((&worker, &gen), upstream, None)).await {
                None => return Err(Outcome::Abort(reset())),
                Some(Ok(c)) => (c, false),
                Some(Err((e, _))) => return Err(Outcome::Failed(e)),
            }
        }
    };
    s.tally.sending();
    let timeout = route
        .request_timeout
        .unwrap_or(gen.config.proxy.response_timeout);
    let sent = handshake(s, (&mut up, reused), &mut bufs, (upstream, timeout));
    match or_reset(respond, sent).await {
        None => return Err(Outcome::Abort(reset())),
        Some(Err(e)) => return Err(Outcome::Failed(e)),
        Some(Ok(())) => {}
    }
    s.tally.status = s.resp.status;
    let status = s.resp.status;
    if status != 101 {
        if (200..300).contains(&status) {
            // Not read further: the connection closes.
            return Err(Outcome::Failed(ProxyError::BadResponse(
                "2xx to a WebSocket handshake, without switching protocols",
            )));
        }
        // A refusal (401, 404, 426, …): the client gets it as it came.
        let (outcome, clean) = respond_down(
            s,
            respond,
            &mut up,
            &mut bufs,
            (route_index, picked, sticky),
        )
        .await;
        if matches!(outcome, Outcome::Done) && clean && s.resp.keep_alive && !worker.stopping.get()
        {
            worker.pool.put(pool, up, worker.coarse_now.get());
        }
        return Err(outcome);
    }
    if let Err(why) = check_switch((&s.resp, &bufs.up), (&s.head, &s.down), hs) {
        tracing::debug!(worker = worker.id, upstream = %upstream.name, why, "WebSocket handshake refused");
        return Err(Outcome::Failed(ProxyError::BadResponse(why)));
    }
    // The 101 through the route's response filters and sticky cookie, as
    // a 200 (RFC 8441 §5); its subprotocol and extensions go with it.
    let mut head = respond_filters(s, &bufs.up, (route_index, picked, sticky));
    *head.status_mut() = StatusCode::OK;
    head.headers_mut().remove(SEC_WEBSOCKET_ACCEPT);
    s.tally.status = 200;
    s.tally.bytes_out += s.resp.head_len as u64;
    let send = match respond.send_response(head, false) {
        Ok(send) => send,
        Err(e) => return Err(Outcome::Abort(client_h2(e))),
    };
    // Bytes the upstream sent behind its 101 are relayed first.
    bufs.up.drain(..s.resp.head_len);
    Ok(Tunnel {
        upgraded: Upgraded {
            up,
            early: std::mem::take(&mut bufs.up),
        },
        recv: body,
        send,
        idle: gen.config.proxy.tunnel_idle_timeout,
    })
}

/// The balancer's pick for the stream (a sticky route's cookie first, if
/// its upstream is usable), counted by Sense, and the sticky assignment
/// the response sets, if any.
fn pick(s: &mut Stream, route_index: usize) -> (usize, Option<(usize, usize)>) {
    let worker = s.shared.worker.clone();
    let gen = s.gen.clone();
    let route = &gen.config.routes[route_index];
    let ask = crate::gate::ask::ask(
        &gen.config,
        route,
        &s.head,
        &s.down,
        &s.shared.client_ip,
        worker.coarse_us(),
    );
    let sticky = route.balancing.sticky.as_ref().map(|st| {
        Headers::of_request(&s.head, &s.down)
            .cookie(st.cookie.as_bytes())
            .and_then(|v| gen.balancers[route_index].sticky_find(v))
    });
    let picked = match sticky {
        Some(Some(i)) if gen.balancers[route_index].usable(i, &ask) => {
            worker.pin(&gen, route_index, i)
        }
        _ => worker.pick(&gen, route_index, &ask),
    };
    s.tally.picked(route_index, picked);
    let sticky = sticky
        .filter(|&had| had != Some(picked))
        .map(|_| (route_index, picked));
    (picked, sticky)
}

/// Sends the handshake (its head in `bufs.out`) and reads the answer's
/// head into `bufs.up` and `s.resp`, interim answers skipped. A pooled
/// connection found dead before any byte of an answer came is replaced
/// once (nothing of the handshake reached an upstream that closed).
async fn handshake(
    s: &mut Stream,
    (up, mut reused): (&mut UpstreamConn, bool),
    bufs: &mut Bufs,
    (upstream, timeout): (&Upstream, Duration),
) -> Result<(), ProxyError> {
    let gen = s.gen.clone();
    let worker = s.shared.worker.clone();
    let read_timeout = gen.config.proxy.read_timeout;
    let deadline = clock::now() + timeout;
    let mut sent = false;
    bufs.up.clear();
    loop {
        if !sent {
            match up.write_all(&mut bufs.out, read_timeout).await {
                Ok(()) => sent = true,
                Err(IoFail::Eof | IoFail::Io(_)) if reused => {
                    reused = false;
                    *up = connect((&worker, &gen), upstream, None)
                        .await
                        .map_err(|(e, _)| e)?;
                    continue;
                }
                Err(e) => return Err(upstream_error(e).0),
            }
        }
        if !bufs.up.is_empty() {
            match parse_response(&bufs.up, false, &mut s.resp) {
                Ok(Some(())) if is_interim(s.resp.status) => {
                    bufs.up.drain(..s.resp.head_len);
                    continue;
                }
                Ok(Some(())) if s.resp.status < 100 => {
                    return Err(ProxyError::BadResponse("unexpected status"))
                }
                Ok(Some(())) => return Ok(()),
                Ok(None) if bufs.up.len() >= MAX_RESPONSE_HEAD => {
                    return Err(ProxyError::BadResponse("response head too large"))
                }
                Ok(None) => {}
                Err(_) => return Err(ProxyError::BadResponse("malformed response head")),
            }
        }
        let left = deadline.saturating_duration_since(clock::now());
        if left.is_zero() {
            return Err(ProxyError::UpstreamTimeout);
        }
        if bufs.up.len() == bufs.up.capacity() {
            bufs.up.reserve(bufs.up.capacity().max(4096));
        }
        match up.read_more(&mut bufs.up, left).await {
            Ok(_) => {}
            Err(IoFail::Eof | IoFail::Io(_)) if reused && bufs.up.is_empty() => {
                // A pooled connection the upstream had closed.
                reused = false;
                sent = false;
                *up = connect((&worker, &gen), upstream, None)
                    .await
                    .map_err(|(e, _)| e)?;
            }
            Err(e) => return Err(upstream_error(e).0),
        }
    }
}

thread_local! {
    /// Whether this worker has logged refusing a WebSocket to an h2c
    /// upstream (once is enough to point at the configuration).
    static LOGGED_H2C: Cell<bool> = const { Cell::new(false) };
}

/// Logs, once per worker, that WebSockets over HTTP/2 to h2c upstreams
/// are refused.
fn refused_h2c(worker: &Worker, route: &str, upstream: &str) {
    if !LOGGED_H2C.with(|l| l.replace(true)) {
        tracing::warn!(
            worker = worker.id,
            route,
            upstream,
            "WebSocket over HTTP/2 (extended CONNECT) to an h2c upstream is not supported: \
             answered 501 (use an HTTP/1.1 upstream for WebSocket routes; logged once per worker)"
        );
    }
}

/// Runs `f` until it ends or the client resets the stream (`None`).
fn or_reset<F: Future>(
    respond: &mut SendResponse<Bytes>,
    f: F,
) -> OrReset<F, impl FnMut(&mut Context<'_>) -> bool + '_> {
    super::respond::or_reset(f, |cx| respond.poll_reset(cx).is_ready())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_read_as_connection_resets() {
        let e = h2_io(h2::Error::from(h2::Reason::CANCEL));
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(reset_io().kind(), io::ErrorKind::ConnectionReset);
    }
}
