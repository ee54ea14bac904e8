//! One attempt of an exchange: a connection to the chosen upstream (an
//! idle pooled one, or a new one within the circuit breaker's connection
//! limits), the request sent (its body streamed from the client when it is
//! not held whole), and the response head read, interim responses passing
//! on the way.
//!
//! `per_try_timeout` bounds the attempt from its start to the response
//! head. When the body is streamed from the client, the clock starts again
//! once the body is sent: a slow client is not the upstream's fault.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::exchange::Bufs;
use super::io::IoFail;
use super::tally::Tally;
use crate::align::breaker::Held;
use crate::align::retry::Cause;
use crate::clock;
use crate::error::ProxyError;
use crate::memory::{Route, Upstream};
use crate::proto::h1::head::write_request_head;
use crate::proto::h1::parse_response;
use crate::proto::h1::response::is_interim;
use crate::proto::h1::{BodyState, ResponseHead};
use crate::runtime::generation::Gen;
use crate::runtime::worker::Worker;
use crate::upstream::pool::{ConnectError, UpstreamConn};

/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// The request being proxied, as its attempts share it.
pub(super) struct Request {
    /// Length of its head, at the start of `conn.down` until consumed.
    pub(super) head_len: usize,
    /// Body bytes that came with the head (right after it).
    pub(super) used: usize,
    /// The body past those bytes.
    pub(super) body: BodyState,
    /// Idempotent and held whole: it may be sent again after it reached an
    /// upstream.
    pub(super) replayable: bool,
    /// Its head and first body bytes have left `conn.down` (the rest of the
    /// body streams through it): it cannot be rebuilt for another attempt.
    pub(super) consumed: bool,
    /// `100 Continue` was sent to the client.
    pub(super) continued: bool,
    /// An interim response was passed to the client: the response started.
    pub(super) interim: bool,
    /// The route's deadline for the response head.
    pub(super) response_timeout: std::time::Duration,
    /// Body bytes allowed (`max_body_bytes`), and those seen so far.
    pub(super) body_limit: Option<u64>,
    pub(super) body_seen: u64,
}

/// The upstream side of a response whose head was read.
pub(super) enum Up {
    /// An HTTP/1.1 connection, the body to be read from it.
    H1(UpstreamConn),
    /// An HTTP/2 stream's body (see `h2up`).
    H2(super::h2up::Response),
}

/// How an attempt ended.
pub(super) enum Attempt {
    /// A final response head, parsed into `conn.resp`, starts `bufs.up`.
    Head(Up),
    /// Nothing final reached the client.
    Failed {
        /// What went wrong.
        error: ProxyError,
        /// What retrying makes of it (`None`: not the upstream's failure).
        cause: Option<Cause>,
        /// Whether request bytes may have reached the upstream.
        reached: bool,
    },
    /// The client failed: the connection closes.
    Abort(ProxyError),
}

pub(super) fn failed(error: ProxyError, cause: Cause, reached: bool) -> Attempt {
    Attempt::Failed {
        error,
        cause: Some(cause),
        reached,
    }
}

/// A route's `per_try_timeout` (none: no deadline of its own), as the
/// deadline of an attempt started now.
#[derive(Debug, Clone, Copy)]
pub(super) struct PerTry(Option<Duration>);

impl PerTry {
    pub(super) fn of(route: &Route) -> PerTry {
        PerTry(route.retry.as_ref().and_then(|p| p.per_try_timeout))
    }

    /// The deadline of what starts now.
    pub(super) fn deadline(self) -> Option<Instant> {
        self.0.map(|t| clock::now() + t)
    }
}

/// Tries `upstream` (the `route_index`th route's) once.
pub(super) async fn attempt(
    conn: &mut Conn,
    worker: &Rc<Worker>,
    bufs: &mut Bufs,
    req: &mut Request,
    (route, route_index): (&Route, usize),
    upstream: &Upstream,
) -> Attempt {
    let gen = conn.gen.clone();
    let proxy = &gen.config.proxy;
    let per_try = PerTry::of(route);
    let mut deadline = per_try.deadline();

    // The head sent upstream (rebuilt each attempt: the `Host` given to a
    // client that sent none is the upstream's), and the body bytes that
    // came with it.
    debug_assert!(!req.consumed, "a consumed request is not tried again");
    let fwd = conn.forwarded(upstream);
    bufs.out.clear();
    write_request_head(&mut bufs.out, &conn.down, &conn.head, &fwd);
    let prefix = req.head_len..req.head_len + req.used;
    bufs.out.extend_from_slice(&conn.down[prefix]);
    bufs.fresh_up();

    let target = (route_index, upstream);
    let (mut up, mut reused) =
        match upstream_conn((worker, &gen), target, deadline, &mut conn.tally).await {
            Ok(pair) => pair,
            Err(fail) => return fail,
        };
    if conn.head.expect_continue
        && !req.body.is_done()
        && conn.head.minor_version == 1
        && !req.continued
    {
        req.continued = true;
        let r = conn
            .client
            .write_static(b"HTTP/1.1 100 Continue\r\n\r\n", proxy.read_timeout)
            .await;
        if let Err(e) = r {
            return Attempt::Abort(ProxyError::ClientIo(e.into_io()));
        }
    }
    if !req.replayable {
        // On its way for good: the rest of the body streams through `down`.
        conn.consume(req.head_len + req.used);
        req.consumed = true;
    }
    let again = (&mut reused, req.replayable);
    if let Err(fail) = send_head(
        (worker, &gen),
        &mut up,
        &mut bufs.out,
        again,
        upstream,
        deadline,
    )
    .await
    {
        return fail;
    }

    // The rest of the request body, read into `down` and forwarded from
    // there; bytes past its end stay for the next request.
    let streamed = !req.body.is_done();
    while !req.body.is_done() {
        if conn.down.capacity() - conn.down.len() < 1024 {
            conn.down.reserve(16 * 1024);
        }
        match conn
            .client
            .read_more(&mut conn.down, proxy.read_timeout)
            .await
        {
            Ok(_) => {}
            Err(IoFail::Timeout) => {
                return Attempt::Failed {
                    error: ProxyError::ClientTimeout,
                    cause: None,
                    reached: true,
                }
            }
            Err(e) => return Attempt::Abort(ProxyError::ClientIo(e.into_io())),
        }
        let mut payload = 0u64;
        let used = match req.body.advance(&conn.down, |r| payload += r.len() as u64) {
            Ok(n) => n,
            Err(_) => {
                return Attempt::Failed {
                    error: ProxyError::BadRequest("invalid chunked body", 400),
                    cause: None,
                    reached: true,
                }
            }
        };
        conn.tally.bytes_in += used as u64;
        req.body_seen += payload;
        if req.body_limit.is_some_and(|max| req.body_seen > max) {
            // Over the limit while streaming: the upstream connection (with
            // a partial body) is dropped, the client gets 413.
            return Attempt::Failed {
                error: ProxyError::BadRequest("request body too large", 413),
                cause: None,
                reached: true,
            };
        }
        if let Err(e) = up
            .write_range(&mut conn.down, 0..used, proxy.read_timeout)
            .await
        {
            let (error, cause) = upstream_error(e);
            return failed(error, cause, true);
        }
        conn.consume(used);
    }
    if streamed {
        deadline = per_try.deadline();
    }

    let can_retry = reused && req.replayable;
    let mut interim = ToClient {
        client: &mut conn.client,
        minor_version: conn.head.minor_version,
        bytes_out: &mut conn.tally.bytes_out,
        passed: &mut req.interim,
        limit: proxy.read_timeout,
    };
    let read = read_head(
        (worker, &gen),
        bufs,
        (&mut conn.resp, conn.head.is_head, conn.head.upgrade),
        &mut interim,
        &mut up,
        (can_retry, upstream),
        (req.response_timeout, deadline),
    );
    match read.await {
        None => Attempt::Head(Up::H1(up)),
        Some(fail) => fail,
    }
}

/// A connection to `upstream` (of route `route_index`) for an attempt:
/// an idle pooled one (`true`), else a new one within the circuit
/// breaker's connection limits and what is left of the attempt's
/// `deadline`. `Err`: how the attempt ended.
pub(super) async fn upstream_conn(
    (worker, gen): (&Worker, &Gen),
    (route_index, upstream): (usize, &Upstream),
    deadline: Option<Instant>,
    tally: &mut Tally,
) -> Result<(UpstreamConn, bool), Attempt> {
    let load = &gen.loads[upstream.pool];
    let pool = gen.pools[upstream.pool];
    if let Some(up) = worker.pool.take(pool, worker.coarse_now.get()) {
        tally.sending();
        return Ok((up, true));
    }
    if let Some(b) = &gen.breakers[route_index] {
        if let Err(limit) = b.connect(worker.pool.open(pool), load.pending.get()) {
            return Err(Attempt::Failed {
                error: ProxyError::CircuitOpen(limit),
                cause: None,
                reached: false,
            });
        }
    }
    tally.sending();
    let _waiting = Held::new(&load.pending);
    match connect((worker, gen), upstream, deadline).await {
        Ok(up) => Ok((up, false)),
        Err((error, cause)) => Err(failed(error, cause, false)),
    }
}

/// Sends the request in `out` on `up`. A pooled connection (`reused`)
/// the upstream had closed is replaced once when the request is
/// `replayable` (`reused` is then false). (A timed-out write took the
/// buffer with it: no second try then.) `Err`: how the attempt ended.
pub(super) async fn send_head(
    (worker, gen): (&Worker, &Gen),
    up: &mut UpstreamConn,
    out: &mut Vec<u8>,
    (reused, replayable): (&mut bool, bool),
    upstream: &Upstream,
    deadline: Option<Instant>,
) -> Result<(), Attempt> {
    let limit = gen.config.proxy.read_timeout;
    let mut sent = up.write_all(out, left(deadline, limit)).await;
    if matches!(sent, Err(IoFail::Eof | IoFail::Io(_))) && *reused && replayable {
        *up = match connect((worker, gen), upstream, deadline).await {
            Ok(fresh) => fresh,
            Err((error, cause)) => return Err(failed(error, cause, true)),
        };
        *reused = false;
        sent = up.write_all(out, left(deadline, limit)).await;
    }
    sent.map_err(|e| {
        let (error, cause) = upstream_error(e);
        failed(error, cause, true)
    })
}

/// Where `read_head` passes the interim (1xx) heads it meets, other than
/// `100 Continue` (the proxy's own to send, or not).
pub(super) trait Interim {
    /// Passes on the interim head parsed into `resp`, the first `n` bytes
    /// of `buf`; an error is the client's failure.
    async fn pass(
        &mut self,
        resp: &ResponseHead,
        buf: &mut Vec<u8>,
        n: usize,
    ) -> Result<(), ProxyError>;
}

/// An HTTP/1.1 client, which gets interim heads as they are (an HTTP/1.0
/// one does not).
struct ToClient<'a> {
    client: &'a mut super::transport::Transport,
    minor_version: u8,
    bytes_out: &'a mut u64,
    /// Set once a head went to the client: the response started.
    passed: &'a mut bool,
    limit: Duration,
}

impl Interim for ToClient<'_> {
    async fn pass(
        &mut self,
        _: &ResponseHead,
        buf: &mut Vec<u8>,
        n: usize,
    ) -> Result<(), ProxyError> {
        if self.minor_version != 1 {
            return Ok(());
        }
        *self.passed = true;
        *self.bytes_out += n as u64;
        let written = self.client.write_range(buf, 0..n, self.limit).await;
        written.map_err(|e| ProxyError::ClientIo(e.into_io()))
    }
}

/// Reads the response head into `bufs.up` and `resp` (`is_head`: the
/// request was a HEAD; `upgrade`: a WebSocket handshake, which a 101
/// answers), within `timeout` and what is left of the attempt's
/// `deadline`; interim heads go to `interim`. `can_retry`: a pooled
/// connection found closed before any byte of a response is replaced once,
/// and the request in `bufs.out` sent again. `None`: a final head.
pub(super) async fn read_head(
    (worker, gen): (&Worker, &Gen),
    bufs: &mut Bufs,
    (resp, is_head, upgrade): (&mut ResponseHead, bool, bool),
    interim: &mut impl Interim,
    up: &mut UpstreamConn,
    (mut can_retry, upstream): (bool, &Upstream),
    (timeout, deadline): (Duration, Option<Instant>),
) -> Option<Attempt> {
    let proxy = &gen.config.proxy;
    // The first wait gets the whole timeout; only a head that needs more
    // reads pays for reading the clock again.
    let started = clock::now();
    let timeout = match deadline {
        None => timeout,
        Some(d) => timeout.min(d.saturating_duration_since(started)),
    };
    let mut left = timeout;
    let bad = |why| Some(failed(ProxyError::BadResponse(why), Cause::Reset, true));
    loop {
        if !bufs.up.is_empty() {
            match parse_response(&bufs.up, is_head, resp) {
                Ok(Some(())) if is_interim(resp.status) => {
                    let n = resp.head_len;
                    if resp.status != 100 {
                        if let Err(e) = interim.pass(resp, &mut bufs.up, n).await {
                            return Some(Attempt::Abort(e));
                        }
                    }
                    bufs.up.drain(..n);
                    continue;
                }
                // A 101 ends the exchange only for a WebSocket handshake.
                Ok(Some(())) if resp.status == 101 && upgrade => return None,
                Ok(Some(())) if resp.status == 101 || resp.status < 100 => {
                    return bad("unexpected status");
                }
                Ok(Some(())) => return None,
                Ok(None) if bufs.up.len() >= MAX_RESPONSE_HEAD => {
                    return bad("response head too large");
                }
                Ok(None) => {}
                Err(_) => return bad("malformed response head"),
            }
        }
        if left.is_zero() {
            left = timeout.saturating_sub(clock::now().saturating_duration_since(started));
            if left.is_zero() {
                return Some(failed(ProxyError::UpstreamTimeout, Cause::Timeout, true));
            }
        }
        if bufs.up.len() == bufs.up.capacity() {
            bufs.up.reserve(bufs.up.capacity().max(4096));
        }
        let read = up.read_more(&mut bufs.up, left).await;
        // Any further read of this head gets what is left of the timeout.
        left = Duration::ZERO;
        match read {
            Ok(_) => {}
            Err(e @ (IoFail::Eof | IoFail::Io(_))) if can_retry && bufs.up.is_empty() => {
                // A pooled connection the upstream had closed: once more on
                // a fresh one.
                tracing::debug!(error = ?e, "pooled upstream connection was dead; retrying");
                can_retry = false;
                *up = match connect((worker, gen), upstream, deadline).await {
                    Ok(s) => s,
                    Err((error, cause)) => return Some(failed(error, cause, true)),
                };
                let limit = self::left(deadline, proxy.read_timeout);
                if let Err(e) = up.write_all(&mut bufs.out, limit).await {
                    let (error, cause) = upstream_error(e);
                    return Some(failed(error, cause, true));
                }
            }
            Err(e) => {
                let (error, cause) = upstream_error(e);
                return Some(failed(error, cause, true));
            }
        }
    }
}

/// Opens a connection to `upstream` within `proxy.connect_timeout` and
/// what is left of the attempt's deadline.
pub(super) async fn connect(
    (worker, gen): (&Worker, &Gen),
    upstream: &Upstream,
    deadline: Option<Instant>,
) -> Result<UpstreamConn, (ProxyError, Cause)> {
    let base = gen.config.proxy.connect_timeout;
    let limit = left(deadline, base);
    // `connect_timeout` running out is a connect failure; the attempt's
    // deadline running out first, a timeout.
    let on_timeout = if limit < base {
        Cause::Timeout
    } else {
        Cause::ConnectFailure
    };
    // Boxed: connecting (a TLS handshake included) is rare next to the
    // pooled path, and every future that may connect would carry its size.
    Box::pin(
        worker
            .pool
            .connect(gen.pools[upstream.pool], upstream, limit),
    )
    .await
    .map_err(|e| match e {
        ConnectError::Io(e) => (ProxyError::Connect(e), Cause::ConnectFailure),
        ConnectError::Timeout => (ProxyError::UpstreamTimeout, on_timeout),
    })
}

/// `base`, or what is left before `deadline` if that is less.
pub(super) fn left(deadline: Option<Instant>, base: Duration) -> Duration {
    match deadline {
        None => base,
        Some(d) => base.min(d.saturating_duration_since(clock::now())),
    }
}

pub(super) fn upstream_error(e: IoFail) -> (ProxyError, Cause) {
    match e {
        IoFail::Timeout => (ProxyError::UpstreamTimeout, Cause::Timeout),
        e => (
            ProxyError::UpstreamBeforeResponse(e.into_io()),
            Cause::Reset,
        ),
    }
}
