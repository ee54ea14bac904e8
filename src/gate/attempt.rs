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
use crate::align::breaker::Held;
use crate::align::retry::Cause;
use crate::clock;
use crate::error::ProxyError;
use crate::memory::{Route, Upstream};
use crate::proto::h1::head::write_request_head;
use crate::proto::h1::parse_response;
use crate::proto::h1::response::is_interim;
use crate::proto::h1::BodyState;
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
    let per_try = route.retry.as_ref().and_then(|p| p.per_try_timeout);
    let mut deadline = per_try.map(|t| clock::now() + t);

    // The head sent upstream (rebuilt each attempt: the `Host` given to a
    // client that sent none is the upstream's), and the body bytes that
    // came with it.
    debug_assert!(!req.consumed, "a consumed request is not tried again");
    let fwd = conn.forwarded(upstream);
    bufs.out.clear();
    write_request_head(&mut bufs.out, &conn.down, &conn.head, &fwd);
    let prefix = req.head_len..req.head_len + req.used;
    bufs.out.extend_from_slice(&conn.down[prefix]);
    // A previous attempt's response, or a buffer a timeout took.
    bufs.up.clear();
    if bufs.up.capacity() == 0 {
        bufs.up = worker.take_up_buf();
    }

    let load = &gen.loads[upstream.pool];
    let pool = gen.pools[upstream.pool];
    let (mut up, mut reused) = match worker.pool.take(pool, worker.coarse_now.get()) {
        Some(s) => {
            conn.tally.sending();
            (s, true)
        }
        None => {
            if let Some(b) = &gen.breakers[route_index] {
                let open = worker.pool.open(pool);
                if let Err(limit) = b.connect(open, load.pending.get()) {
                    return Attempt::Failed {
                        error: ProxyError::CircuitOpen(limit),
                        cause: None,
                        reached: false,
                    };
                }
            }
            conn.tally.sending();
            let _waiting = Held::new(&load.pending);
            match connect((worker, &gen), upstream, deadline).await {
                Ok(s) => (s, false),
                Err((error, cause)) => return failed(error, cause, false),
            }
        }
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
    let mut sent = up
        .write_all(&mut bufs.out, left(deadline, proxy.read_timeout))
        .await;
    // A pooled connection the upstream had closed: once more on a fresh
    // one. (A timed-out write took the buffer with it: no retry then.)
    if matches!(sent, Err(IoFail::Eof | IoFail::Io(_))) && reused && req.replayable {
        up = match connect((worker, &gen), upstream, deadline).await {
            Ok(s) => s,
            Err((error, cause)) => return failed(error, cause, true),
        };
        reused = false;
        sent = up
            .write_all(&mut bufs.out, left(deadline, proxy.read_timeout))
            .await;
    }
    if let Err(e) = sent {
        let (error, cause) = upstream_error(e);
        return failed(error, cause, true);
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
        deadline = per_try.map(|t| clock::now() + t);
    }

    let can_retry = reused && req.replayable;
    match read_head(
        conn,
        worker,
        bufs,
        req,
        &mut up,
        (can_retry, upstream),
        deadline,
    )
    .await
    {
        None => Attempt::Head(Up::H1(up)),
        Some(fail) => fail,
    }
}

/// Reads the response head into `bufs.up` and `conn.resp`; interim
/// responses pass to HTTP/1.1 clients or drop. `None`: a final head.
async fn read_head(
    conn: &mut Conn,
    worker: &Worker,
    bufs: &mut Bufs,
    req: &mut Request,
    up: &mut UpstreamConn,
    (mut can_retry, upstream): (bool, &Upstream),
    deadline: Option<Instant>,
) -> Option<Attempt> {
    let gen = conn.gen.clone();
    let proxy = &gen.config.proxy;
    // The first wait gets the whole timeout; only a head that needs more
    // reads pays for reading the clock again.
    let started = clock::now();
    let timeout = match deadline {
        None => req.response_timeout,
        Some(d) => req
            .response_timeout
            .min(d.saturating_duration_since(started)),
    };
    let mut left = timeout;
    let bad = |why| Some(failed(ProxyError::BadResponse(why), Cause::Reset, true));
    loop {
        if !bufs.up.is_empty() {
            match parse_response(&bufs.up, conn.head.is_head, &mut conn.resp) {
                Ok(Some(())) if is_interim(conn.resp.status) => {
                    let n = conn.resp.head_len;
                    // 100 was ours to send (or not); others go to 1.1 clients.
                    if conn.resp.status != 100 && conn.head.minor_version == 1 {
                        req.interim = true;
                        conn.tally.bytes_out += n as u64;
                        if let Err(e) = conn
                            .client
                            .write_range(&mut bufs.up, 0..n, proxy.read_timeout)
                            .await
                        {
                            return Some(Attempt::Abort(ProxyError::ClientIo(e.into_io())));
                        }
                    }
                    bufs.up.drain(..n);
                    continue;
                }
                // A 101 ends the exchange only for a WebSocket handshake.
                Ok(Some(())) if conn.resp.status == 101 && conn.head.upgrade => return None,
                Ok(Some(())) if conn.resp.status == 101 || conn.resp.status < 100 => {
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
                *up = match connect((worker, &gen), upstream, deadline).await {
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
    worker
        .pool
        .connect(gen.pools[upstream.pool], upstream, limit)
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
