//! HTTP/2 upstream connections: a per-core pool of h2c (cleartext, prior
//! knowledge) and h2 (TLS, agreed by ALPN) connections, each carrying many
//! concurrent streams.
//!
//! Per upstream address the pool keeps up to `max_connections` connections
//! (`proxy.h2_max_connections_per_upstream`). A request leases one stream
//! slot on the open connection with the fewest streams in use, as long as
//! that is below the limit the server's `SETTINGS_MAX_CONCURRENT_STREAMS`
//! sets; when every connection is full another is opened (one connect at
//! a time per address), and past the connection limit the request waits
//! for a slot to free up. A connection that failed or received a GOAWAY
//! takes no new streams and leaves the pool; the next lease opens a fresh
//! one.
//!
//! Each connection is driven by a task of its own on the worker (the `h2`
//! crate's `Connection`, over monoio through `monoio-compat`); leases hold
//! a `SendRequest` handle. A new connection is handed out only after a
//! PING round trip, by which time the server's SETTINGS (its stream limit
//! among them) are known, and an upstream that does not speak HTTP/2 has
//! failed the connect.
//!
//! The lease, [`send_data`] and [`Body`] are what both the HTTP/1.1
//! exchange (`gate::h2up`) and an HTTP/2 downstream use: open a stream,
//! stream the request body with flow control, read the response.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use monoio_compat::StreamWrapper;
use tokio::io::{AsyncRead, AsyncWrite};

use super::pool::{open_stream, ConnectError};
use super::tls::Clients;
use crate::align::breaker::{CircuitBreaker, Held, Limit};
use crate::clock;
use crate::gate::h2::io::{socket, TlsIo};
use crate::gate::io::within;
use crate::gate::Transport;
use crate::memory::Upstream;

/// Each stream's receive window: what a server may send ahead of the
/// client reading it, per response.
const STREAM_WINDOW: u32 = 256 * 1024;
/// The connection's receive window, all streams together.
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;
/// Largest response header list accepted (as for HTTP/1.1 heads).
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Buffers of the tokio-IO adapter, each way.
const IO_BUF: usize = 32 * 1024;

/// Woken when a stream slot frees, a connection opens or one fails.
#[derive(Default)]
struct Waiters {
    /// Bumped on every wake: a waiter that saw another value goes on.
    epoch: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Waiters {
    fn wake_all(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves at the next `wake_all`.
    async fn changed(&self) {
        let seen = self.epoch.get();
        poll_fn(|cx| {
            if self.epoch.get() != seen {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// One connection's counts, shared by the pool, its leases and the task
/// that drives it.
struct ConnState {
    /// Streams leased and not yet released.
    active: Cell<usize>,
    /// Failed, or told to go away: no new streams.
    closed: Cell<bool>,
    waiters: Rc<Waiters>,
    /// Counted in the address's open-connection gauge while the
    /// connection lives (for the circuit breaker's `max_connections`).
    open: Rc<Cell<u32>>,
}

impl Drop for ConnState {
    fn drop(&mut self) {
        self.open.set(self.open.get().saturating_sub(1));
    }
}

/// A pooled connection.
struct Entry {
    send: SendRequest<Bytes>,
    state: Rc<ConnState>,
    /// When the sweep first saw it without streams.
    idle_since: Cell<Option<Instant>>,
}

impl Entry {
    /// Whether it can take one more stream now.
    fn room(&self) -> bool {
        !self.state.closed.get() && self.state.active.get() < self.send.current_max_send_streams()
    }
}

/// The connections to one upstream address.
#[derive(Default)]
struct Addr {
    conns: Vec<Entry>,
    /// A connect is under way.
    connecting: bool,
    waiters: Rc<Waiters>,
    /// The config in force names the address.
    live: bool,
}

/// One stream slot, given back when dropped.
pub struct Slot {
    state: Rc<ConnState>,
}

impl Slot {
    fn new(state: &Rc<ConnState>) -> Slot {
        state.active.set(state.active.get() + 1);
        Slot {
            state: state.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let s = &self.state;
        s.active.set(s.active.get().saturating_sub(1));
        s.waiters.wake_all();
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("active", &self.state.active.get())
            .finish()
    }
}

/// A stream slot on a pooled connection, ready for one request.
pub struct Lease {
    send: SendRequest<Bytes>,
    slot: Slot,
    /// The connection was open before this lease (not opened for it).
    pub reused: bool,
}

impl Lease {
    /// Sends the request head (`end_of_stream`: no body follows). The
    /// request's URI must carry scheme and authority (`http://host/path`):
    /// they become `:scheme` and `:authority`. An error here means nothing
    /// was sent.
    pub fn send(mut self, req: http::Request<()>, end_of_stream: bool) -> Result<Sent, h2::Error> {
        let (response, body) = self.send.send_request(req, end_of_stream)?;
        Ok(Sent {
            response: Pending {
                response,
                slot: self.slot,
            },
            body,
        })
    }
}

impl Lease {
    /// A whole exchange on this stream, for an HTTP/2 downstream: sends
    /// `req`, relays its `body` (an HTTP/2 client's request body: data
    /// and trailers, with flow control both sides) from a task of its own
    /// so that the response may start before the body ends (gRPC
    /// streaming), and waits at most `response_timeout` for the response
    /// head. A body stalled past `read_timeout` resets the stream.
    pub async fn exchange(
        self,
        req: http::Request<()>,
        body: Option<RecvStream>,
        (response_timeout, read_timeout): (Duration, Duration),
    ) -> Result<(http::response::Parts, Body), ExchangeError> {
        let body = body.filter(|b| !b.is_end_stream());
        let Sent { response, body: up } =
            self.send(req, body.is_none()).map_err(ExchangeError::H2)?;
        if let Some(from) = body {
            relay_apart(from, up, read_timeout);
        }
        match within(response_timeout, response.head()).await {
            None => Err(ExchangeError::Timeout),
            Some(r) => r.map_err(ExchangeError::H2),
        }
    }
}

/// Why [`Lease::exchange`] (or [`super::Pool::h2_send`]) got no response
/// head.
#[derive(Debug)]
pub enum ExchangeError {
    /// No stream could be leased.
    Lease(LeaseError),
    /// The stream or its connection failed (a refused stream, one past a
    /// GOAWAY's last, was not processed: `reason()` is `REFUSED_STREAM`,
    /// or `is_go_away()` and `is_remote()`).
    H2(h2::Error),
    /// No head within the response timeout.
    Timeout,
}

/// A request sent: its response to come, and its body to send.
pub struct Sent {
    /// The response head, when it comes.
    pub response: Pending,
    /// Where the request body goes (see [`send_data`]); end it with
    /// `send_data(…, true)` or `send_trailers` unless the head ended it.
    pub body: SendStream<Bytes>,
}

/// A response head to come.
pub struct Pending {
    response: ResponseFuture,
    slot: Slot,
}

impl Pending {
    /// Waits for the next interim (1xx) head the server sends before its
    /// final one; `None` once the final head (or the stream's end) is
    /// there. Heads not taken this way are skipped by [`Pending::head`].
    pub async fn informational(&mut self) -> Option<Result<http::Response<()>, h2::Error>> {
        poll_fn(|cx| self.response.poll_informational(cx)).await
    }

    /// Waits for the final response head (interim 1xx heads are skipped).
    pub async fn head(self) -> Result<(http::response::Parts, Body), h2::Error> {
        let resp = self.response.await?;
        let (parts, recv) = resp.into_parts();
        Ok((
            parts,
            Body {
                recv,
                _slot: self.slot,
            },
        ))
    }
}

/// A response body being received; its stream slot frees when dropped
/// (a stream not finished by then is reset).
pub struct Body {
    recv: RecvStream,
    _slot: Slot,
}

/// Why a body could not go on.
#[derive(Debug)]
pub enum BodyError {
    /// Nothing came (or no capacity was given) within the time allowed.
    Timeout,
    /// The stream or its connection failed.
    H2(h2::Error),
    /// The peer closed the stream before the body ended.
    Closed,
}

impl From<h2::Error> for BodyError {
    fn from(e: h2::Error) -> BodyError {
        BodyError::H2(e)
    }
}

impl BodyError {
    /// As an I/O error, for the proxy's error type.
    pub fn into_io(self) -> io::Error {
        match self {
            BodyError::Timeout => io::ErrorKind::TimedOut.into(),
            BodyError::Closed => io::ErrorKind::UnexpectedEof.into(),
            BodyError::H2(e) => h2_io(e),
        }
    }
}

impl Body {
    /// Whether the body has ended (nothing, not even trailers, is left).
    pub fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    /// The next chunk of data, waiting at most `limit`; `None` at the end
    /// of the data (trailers may follow). Give its length back with
    /// [`Body::release`] once it has been passed on.
    pub async fn data(&mut self, limit: Duration) -> Option<Result<Bytes, BodyError>> {
        match within(limit, self.recv.data()).await {
            None => Some(Err(BodyError::Timeout)),
            Some(None) => None,
            Some(Some(r)) => Some(r.map_err(BodyError::H2)),
        }
    }

    /// The next chunk of data if it is there (see [`Body::data`]).
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        self.recv
            .poll_data(cx)
            .map(|r| r.map(|r| r.map_err(BodyError::H2)))
    }

    /// Lets the server send `n` more bytes (flow control).
    pub fn release(&mut self, n: usize) {
        // Fails only once the stream is gone, when it no longer matters.
        let _ = self.recv.flow_control().release_capacity(n);
    }

    /// Passes the rest of the body (data and trailers) to `to`, an HTTP/2
    /// downstream's response stream, with flow control both sides (see
    /// [`relay`]).
    pub async fn relay_to(
        &mut self,
        to: &mut SendStream<Bytes>,
        limit: Duration,
    ) -> Result<(), BodyError> {
        relay(&mut self.recv, to, limit).await
    }

    /// The trailers, after the data, waiting at most `limit`.
    pub async fn trailers(
        &mut self,
        limit: Duration,
    ) -> Result<Option<http::HeaderMap>, BodyError> {
        match within(limit, self.recv.trailers()).await {
            None => Err(BodyError::Timeout),
            Some(r) => r.map_err(BodyError::H2),
        }
    }
}

/// Sends `data` on `stream`, as flow control lets it go: each wait for
/// capacity takes at most `limit`. `end`: the body ends with it.
pub async fn send_data(
    stream: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    limit: Duration,
) -> Result<(), BodyError> {
    if data.is_empty() {
        return stream.send_data(data, end).map_err(BodyError::H2);
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let mut cap = stream.capacity();
        while cap == 0 {
            match within(limit, poll_fn(|cx| stream.poll_capacity(cx))).await {
                None => return Err(BodyError::Timeout),
                Some(None) => return Err(BodyError::Closed),
                Some(Some(Err(e))) => return Err(BodyError::H2(e)),
                Some(Some(Ok(_))) => cap = stream.capacity(),
            }
        }
        let chunk = data.split_to(cap.min(data.len()));
        stream.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}

/// Passes a whole body from `from` to `to`, data and trailers, with flow
/// control on both sides: a chunk's receive capacity is released once it
/// is handed to `to`. For an HTTP/2 downstream: the request body from the
/// client to the upstream, or the response body back.
pub async fn relay(
    from: &mut RecvStream,
    to: &mut SendStream<Bytes>,
    limit: Duration,
) -> Result<(), BodyError> {
    loop {
        let chunk = match within(limit, from.data()).await {
            None => return Err(BodyError::Timeout),
            Some(None) => break,
            Some(Some(r)) => r?,
        };
        let n = chunk.len();
        let last = from.is_end_stream();
        send_data(to, chunk, last, limit).await?;
        let _ = from.flow_control().release_capacity(n);
        if last {
            return Ok(());
        }
    }
    match within(limit, from.trailers()).await {
        None => Err(BodyError::Timeout),
        Some(Err(e)) => Err(BodyError::H2(e)),
        Some(Ok(Some(t))) => to.send_trailers(t).map_err(BodyError::H2),
        Some(Ok(None)) => to.send_data(Bytes::new(), true).map_err(BodyError::H2),
    }
}

/// Relays a request body from `from`, an HTTP/2 client's stream, to `to`
/// (see [`relay`]) in a task of its own, so that the response may start
/// before the body ends (gRPC streaming); a failed relay resets `to`.
pub fn relay_apart(mut from: RecvStream, mut to: SendStream<Bytes>, limit: Duration) {
    monoio::spawn(async move {
        if let Err(e) = relay(&mut from, &mut to, limit).await {
            tracing::debug!(error = ?e, "h2 request body relay failed");
            to.send_reset(h2::Reason::CANCEL);
        }
    });
}

/// Why no stream slot was leased.
#[derive(Debug)]
pub enum LeaseError {
    /// A new connection could not be opened (or did not speak HTTP/2).
    Connect(ConnectError),
    /// The circuit breaker refused a new connection, or another waiter.
    Breaker(Limit),
    /// Every connection stayed full for the whole wait.
    Timeout,
}

/// What a lease may wait for: a new connection gets `connect`; waiting
/// for a free stream, `wait`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to open a connection (TCP, preface, SETTINGS round trip).
    pub connect: Duration,
    /// Time to wait for a stream slot when the connections are full.
    pub wait: Duration,
}

/// The circuit breaker's view of a lease: its limits on this core and the
/// address's gauge of requests waiting for a connection (held while the
/// lease connects or waits).
#[derive(Clone, Copy)]
pub struct Admission<'a> {
    /// The route's breaker, if it has one.
    pub breaker: Option<&'a CircuitBreaker>,
    /// Requests waiting for a connection or stream to the address.
    pub pending: &'a Cell<u32>,
}

/// Clears the address's `connecting` flag however the connect ends
/// (cancelled included), and wakes the waiters.
struct Connecting<'a> {
    pool: &'a H2Pool,
    addr: usize,
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        let waiters = match self.pool.addrs.borrow_mut().get_mut(self.addr) {
            Some(a) => {
                // Cleared before waking: a woken waiter may connect now.
                a.connecting = false;
                a.waiters.clone()
            }
            None => return,
        };
        waiters.wake_all();
    }
}

/// The HTTP/2 connections of one worker, per upstream address (numbered
/// as in [`super::Pool`]).
pub struct H2Pool {
    addrs: RefCell<Vec<Addr>>,
    /// The worker's TLS client settings (h2 upstreams).
    tls: Rc<Clients>,
    max_connections: Cell<usize>,
    idle_timeout: Cell<Duration>,
    opened: Cell<u64>,
    reused: Cell<u64>,
}

impl H2Pool {
    /// An empty pool: `max_connections` per address, connections without
    /// streams closed after `idle_timeout`.
    pub(crate) fn new(max_connections: usize, idle_timeout: Duration, tls: Rc<Clients>) -> H2Pool {
        H2Pool {
            addrs: RefCell::new(Vec::new()),
            tls,
            max_connections: Cell::new(max_connections.max(1)),
            idle_timeout: Cell::new(idle_timeout),
            opened: Cell::new(0),
            reused: Cell::new(0),
        }
    }

    /// Applies a reloaded config's limits.
    pub fn configure(&self, max_connections: usize, idle_timeout: Duration) {
        self.max_connections.set(max_connections.max(1));
        self.idle_timeout.set(idle_timeout);
    }

    /// Applies a reloaded config's addresses (`live[n]`: address `n` is
    /// named). Connections to the others leave the pool: idle ones close
    /// now, busy ones once their streams end.
    pub fn retain(&self, live: &[bool]) {
        let mut addrs = self.addrs.borrow_mut();
        if addrs.len() < live.len() {
            addrs.resize_with(live.len(), Addr::default);
        }
        for (i, a) in addrs.iter_mut().enumerate() {
            a.live = live.get(i).copied().unwrap_or(false);
            if !a.live {
                a.conns.clear();
            }
        }
    }

    /// Closes connections without streams for longer than the idle
    /// timeout (seen by this sweep, run every second or so), and forgets
    /// failed ones; returns how many left.
    pub fn sweep(&self, now: Instant) -> usize {
        let timeout = self.idle_timeout.get();
        let mut closed = 0;
        for a in self.addrs.borrow_mut().iter_mut() {
            let before = a.conns.len();
            a.conns.retain(|e| {
                if e.state.closed.get() {
                    return false;
                }
                if e.state.active.get() > 0 {
                    e.idle_since.set(None);
                    return true;
                }
                let since = *e.idle_since.get().get_or_insert(now);
                e.idle_since.set(Some(since));
                now.saturating_duration_since(since) < timeout
            });
            closed += before - a.conns.len();
        }
        closed
    }

    /// Connections opened so far, and streams leased on connections
    /// already open.
    pub fn stats(&self) -> (u64, u64) {
        (self.opened.get(), self.reused.get())
    }

    /// Connections in the pool for address `pool` (busy or idle).
    pub fn connections(&self, pool: usize) -> usize {
        self.addrs.borrow().get(pool).map_or(0, |a| a.conns.len())
    }

    /// Leases a stream slot to `upstream`, address `pool`: on the open
    /// connection with the most room, else on a new one, else the first to
    /// free up within `limits.wait`. `open` is the address's gauge of open
    /// connections, which a new connection joins.
    pub async fn lease(
        &self,
        (pool, upstream): (usize, &Upstream),
        open: &Rc<Cell<u32>>,
        admission: Admission<'_>,
        limits: Limits,
    ) -> Result<Lease, LeaseError> {
        let mut deadline: Option<Instant> = None;
        let mut waiting: Option<Held<'_>> = None;
        loop {
            let (waiters, may_connect, has_conns) = {
                let mut addrs = self.addrs.borrow_mut();
                if addrs.len() <= pool {
                    addrs.resize_with(pool + 1, || Addr {
                        live: true,
                        ..Addr::default()
                    });
                }
                let a = &mut addrs[pool];
                if let Some(lease) = self.take(a) {
                    return Ok(lease);
                }
                let may_connect = !a.connecting && a.conns.len() < self.max_connections.get();
                (a.waiters.clone(), may_connect, !a.conns.is_empty())
            };
            // The breaker's connection limit: one connect at a time per
            // address here, so only the open connections count (requests
            // waiting for a stream do not each need one).
            let refused = match admission.breaker {
                Some(b) if may_connect => b.connect(open.get(), 0).err(),
                _ => None,
            };
            match refused {
                // No connection to wait on: refused.
                Some(limit) if !has_conns => return Err(LeaseError::Breaker(limit)),
                // Wait for a stream on the connections there are.
                Some(_) => {}
                None if may_connect => {
                    self.addrs.borrow_mut()[pool].connecting = true;
                    let _connecting = Connecting {
                        pool: self,
                        addr: pool,
                    };
                    drop(waiting.take());
                    let _pending = Held::new(admission.pending);
                    self.opened.set(self.opened.get() + 1);
                    // Boxed: rare, and large (a TLS handshake, the HTTP/2
                    // one); every lease's future would carry its size.
                    let connecting = connect(upstream, &self.tls, limits.connect, (open, &waiters));
                    let entry = Box::pin(connecting).await.map_err(LeaseError::Connect)?;
                    let slot = Slot::new(&entry.state);
                    let send = entry.send.clone();
                    let mut addrs = self.addrs.borrow_mut();
                    let a = &mut addrs[pool];
                    if a.live {
                        a.conns.push(entry);
                    }
                    return Ok(Lease {
                        send,
                        slot,
                        reused: false,
                    });
                }
                None => {}
            }
            // Every connection is full and no other may open now: wait.
            if waiting.is_none() {
                if let Some(b) = admission.breaker {
                    if admission.pending.get() >= b.max_pending {
                        return Err(LeaseError::Breaker(Limit::Pending));
                    }
                }
                waiting = Some(Held::new(admission.pending));
            }
            let now = clock::now();
            let until = *deadline.get_or_insert(now + limits.wait);
            let left = until.saturating_duration_since(now);
            if left.is_zero() || within(left, waiters.changed()).await.is_none() {
                return Err(LeaseError::Timeout);
            }
        }
    }

    /// A slot on the open connection of `a` with the most room, if any;
    /// failed and going-away connections met on the way leave the pool.
    fn take(&self, a: &mut Addr) -> Option<Lease> {
        loop {
            let best = a
                .conns
                .iter()
                .enumerate()
                .filter(|(_, e)| e.room())
                .min_by_key(|(_, e)| e.state.active.get())
                .map(|(i, _)| i);
            let Some(i) = best else {
                a.conns.retain(|e| !e.state.closed.get());
                return None;
            };
            let e = &a.conns[i];
            let mut send = e.send.clone();
            // A GOAWAY or a failure the connection's task has seen but not
            // finished with yet: `poll_ready` reports it without waiting.
            let mut cx = Context::from_waker(Waker::noop());
            match send.poll_ready(&mut cx) {
                Poll::Ready(Ok(())) => {
                    self.reused.set(self.reused.get() + 1);
                    let slot = Slot::new(&e.state);
                    e.idle_since.set(None);
                    return Some(Lease {
                        send,
                        slot,
                        reused: true,
                    });
                }
                _ => {
                    e.state.closed.set(true);
                    a.conns.remove(i);
                }
            }
        }
    }
}

/// Opens an HTTP/2 connection to `upstream` within `timeout`: TCP (and
/// TLS, whose ALPN must choose `h2`), the preface and SETTINGS, then a
/// PING answered (the server's SETTINGS come before its answer). The
/// connection's task is spawned on the worker.
async fn connect(
    upstream: &Upstream,
    clients: &Clients,
    timeout: Duration,
    counts: (&Rc<Cell<u32>>, &Rc<Waiters>),
) -> Result<Entry, ConnectError> {
    let deadline = clock::now() + timeout;
    let stream = match within(timeout, open_stream(upstream, clients)).await {
        None => return Err(ConnectError::Timeout),
        Some(Err(e)) => return Err(ConnectError::Io(e)),
        Some(Ok(s)) => s,
    };
    match stream {
        Transport::Plain(tcp) => {
            // Boxed: the adapter must not move once an operation is armed
            // (see `gate::h2::io`), and the connection moves to its task.
            let io = Box::new(StreamWrapper::new_with_buffer_size(tcp, IO_BUF, IO_BUF));
            start(io, upstream.addr, deadline, counts).await
        }
        Transport::Tls(tls) if tls.is_h2() => {
            let (tcp, conn, early) = tls.into_parts();
            let io = TlsIo::new(socket(tcp), conn, early);
            start(io, upstream.addr, deadline, counts).await
        }
        Transport::Tls(_) => Err(ConnectError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "the upstream did not choose HTTP/2 (ALPN h2) in its TLS handshake",
        ))),
    }
}

/// The HTTP/2 handshake over `io`, before `deadline`.
async fn start<T>(
    io: T,
    addr: SocketAddr,
    deadline: Instant,
    (open, waiters): (&Rc<Cell<u32>>, &Rc<Waiters>),
) -> Result<Entry, ConnectError>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let left = || deadline.saturating_duration_since(clock::now());
    let handshake = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .enable_push(false)
        .handshake::<_, Bytes>(io);
    let (send, mut connection) = match within(left(), handshake).await {
        None => return Err(ConnectError::Timeout),
        Some(Err(e)) => return Err(ConnectError::Io(h2_io(e))),
        Some(Ok(pair)) => pair,
    };
    let ping = connection.ping_pong();
    open.set(open.get() + 1);
    let state = Rc::new(ConnState {
        active: Cell::new(0),
        closed: Cell::new(false),
        waiters: waiters.clone(),
        open: open.clone(),
    });
    monoio::spawn(drive(connection, state.clone(), addr));
    if let Some(mut ping) = ping {
        match within(left(), ping.ping(h2::Ping::opaque())).await {
            None => return Err(ConnectError::Timeout),
            Some(Err(e)) => return Err(ConnectError::Io(h2_io(e))),
            Some(Ok(_)) => {}
        }
    }
    Ok(Entry {
        send,
        state,
        idle_since: Cell::new(None),
    })
}

/// Drives one connection until it ends (every handle gone and its streams
/// done, a GOAWAY, or a failure); then it takes no new streams.
async fn drive<T>(
    connection: h2::client::Connection<T, Bytes>,
    state: Rc<ConnState>,
    addr: SocketAddr,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::debug!(%addr, error = %e, "h2 upstream connection ended");
    }
    state.closed.set(true);
    state.waiters.wake_all();
}

/// An h2 error as an I/O error.
pub fn h2_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        if let Some(io) = e.into_io() {
            return io;
        }
        return io::ErrorKind::Other.into();
    }
    io::Error::other(e)
}
