//! An HTTP/1.1 client's request to an h2c upstream: one attempt (a stream
//! leased from the worker's h2c pool, the head translated, the body
//! streamed as DATA with flow control, the response head awaited), then
//! the response streamed back in HTTP/1.1 framing, with the upstream's
//! trailers on the last chunk when the client accepts them.
//!
//! The exchange around it (pick, breaker's request limit, retries, Sense)
//! is the HTTP/1.1 one: an attempt here ends the same ways as
//! `attempt::attempt`, and the response head it produces is HTTP/1.1 text
//! in `bufs.up`, parsed into `conn.resp`, so response filters and the
//! head writer work on it unchanged. The lease, the translated head and
//! the ways a stream fails are shared with HTTP/2 clients' attempts on
//! h2c upstreams (`h2::passthrough`).

use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::attempt::{failed, left, Attempt, PerTry, Request, Up};
use super::conn::Conn;
use super::exchange::{retry_after_us, Bufs, Outcome};
use super::io::{within, IoFail};
use super::tally::Tally;
use crate::align::retry::Cause;
use crate::error::ProxyError;
use crate::memory::{Route, Upstream};
use crate::proto::h1::head::{write_response_head, DownFraming};
use crate::proto::h1::{parse_response, BodyKind, BodyState, ResponseHead};
use crate::proto::h1h2;
use crate::runtime::generation::Gen;
use crate::runtime::worker::Worker;
use crate::upstream::h2::{send_data, Admission, Body, BodyError, Lease, LeaseError, Limits, Sent};
use crate::upstream::pool::ConnectError;

/// Data chunks up to this size ride in the same write as the head.
const COALESCE: usize = 8 * 1024;

/// An h2c response whose head was translated into `conn.resp`.
pub(super) struct Response {
    pub(super) body: Body,
    /// The client accepts trailers (`TE: trailers`; read before the
    /// request's head left `conn.down`).
    pub(super) trailers: bool,
}

/// Tries `upstream`, an h2c one, once (see `attempt::attempt`).
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
    debug_assert!(!req.consumed, "a consumed request is not tried again");
    bufs.fresh_up();

    let trailers = h1h2::accepts_trailers(&conn.down, &conn.head);
    // The body bytes that came with the head, as payload (chunk framing
    // removed): taken now, before the head leaves `down`.
    let prefix = {
        let bytes = &conn.down[req.head_len..req.head_len + req.used];
        let mut payload = BytesMut::new();
        let mut again = BodyState::new(conn.head.body);
        // `Exchange::run` has decoded these bytes once already.
        let _ = again.advance(bytes, |r| payload.extend_from_slice(&bytes[r]));
        payload.freeze()
    };

    // A stream whose connection, already open, died before any answer
    // is tried once more when the request is held whole.
    let mut chance = SecondChance(req.replayable);
    let (parts, body) = loop {
        let head = match translate(conn, upstream) {
            Ok(h) => h,
            Err(e) => return untranslatable(e),
        };
        let timing = (deadline, req.response_timeout);
        let lease = match lease(
            (worker, &gen),
            (route_index, upstream),
            timing,
            &mut conn.tally,
        )
        .await
        {
            Ok(l) => l,
            Err(fail) => return fail,
        };
        let reused = lease.reused;
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
        if !req.replayable && !req.consumed {
            // On its way for good: the rest of the body streams through
            // `down`.
            conn.consume(req.head_len + req.used);
            req.consumed = true;
        }
        let end = req.body.is_done() && prefix.is_empty();
        let Sent {
            response,
            body: mut up_body,
        } = match lease.send(head, end) {
            Ok(s) => s,
            Err(e) => {
                let e = crate::upstream::h2::h2_io(e);
                return failed(ProxyError::UpstreamBeforeResponse(e), Cause::Reset, false);
            }
        };
        if !prefix.is_empty() {
            let last = req.body.is_done();
            let opening = (prefix.clone(), None);
            match send_opening(&mut up_body, opening, last, proxy.read_timeout).await {
                Ok(()) => {}
                Err(BodyError::H2(e)) if chance.take(reused, &e) => continue,
                Err(e) => return unsent(e),
            }
        }
        if !req.body.is_done() {
            if let Some(fail) = stream_body(conn, req, &mut up_body, proxy.read_timeout).await {
                return fail;
            }
            deadline = per_try.deadline();
        }
        drop(up_body);

        let timeout = left(deadline, req.response_timeout);
        let head = final_head(response, conn, req, &mut bufs.up);
        match within(timeout, head).await {
            None => return failed(ProxyError::UpstreamTimeout, Cause::Timeout, true),
            Some(Err(fail)) => return fail,
            Some(Ok(Ok(pair))) => break pair,
            // Not once an interim head went to the client.
            Some(Ok(Err(e))) if !req.interim && chance.take(reused, &e) => {}
            Some(Ok(Err(e))) => return head_failed(e),
        }
    };

    // The head as HTTP/1.1, for the response path.
    let ended = body.is_end_stream();
    match head_text(
        &parts,
        (conn.head.is_head, ended),
        &mut bufs.up,
        &mut conn.resp,
    ) {
        Ok(()) => Attempt::Head(Up::H2(Response { body, trailers })),
        Err(fail) => fail,
    }
}

/// Waits for the final response head, passing the interim (1xx) heads
/// before it to an HTTP/1.1 client as they come (not `100 Continue`,
/// DAO's own to send; an HTTP/1.0 client gets none). `Err`: the client
/// failed.
async fn final_head(
    mut response: crate::upstream::h2::Pending,
    conn: &mut Conn,
    req: &mut Request,
    buf: &mut Vec<u8>,
) -> Result<Result<(http::response::Parts, Body), h2::Error>, Attempt> {
    while let Some(Ok(head)) = response.informational().await {
        if head.status() == http::StatusCode::CONTINUE || conn.head.minor_version != 1 {
            continue;
        }
        let (parts, ()) = head.into_parts();
        buf.clear();
        h1h2::response_head(buf, &parts, h1h2::Framing::AsIs);
        req.interim = true;
        conn.tally.bytes_out += buf.len() as u64;
        let limit = conn.gen.config.proxy.read_timeout;
        let written = conn.client.write_all(buf, limit).await;
        // Left as it was found, for the final head.
        buf.clear();
        if let Err(e) = written {
            return Err(Attempt::Abort(ProxyError::ClientIo(e.into_io())));
        }
    }
    // A failure shows again here.
    Ok(response.head().await)
}

/// How an attempt ends whose request head cannot be sent as HTTP/2: a
/// 400, the upstream not contacted.
pub(super) fn untranslatable(e: h1h2::TranslateError) -> Attempt {
    Attempt::Failed {
        error: ProxyError::BadRequest(e.reason(), 400),
        cause: None,
        reached: false,
    }
}

/// A stream to `upstream`, an h2c one of route `route_index`, for one
/// attempt: leased within the circuit breaker's limits and what is left
/// of the attempt's `deadline` (a full pool is waited on for at most
/// `response_timeout`). `Err`: how the attempt ended.
pub(super) async fn lease(
    (worker, gen): (&Worker, &Gen),
    (route_index, upstream): (usize, &Upstream),
    (deadline, response_timeout): (Option<Instant>, Duration),
    tally: &mut Tally,
) -> Result<Lease, Attempt> {
    let proxy = &gen.config.proxy;
    let admission = Admission {
        breaker: gen.breakers[route_index].as_ref(),
        pending: &gen.loads[upstream.pool].pending,
    };
    let limits = Limits {
        connect: left(deadline, proxy.connect_timeout),
        wait: left(deadline, response_timeout),
    };
    let target = (gen.pools[upstream.pool], upstream);
    match worker.pool.h2_lease(target, admission, limits).await {
        Ok(l) => {
            tally.sending();
            Ok(l)
        }
        Err(LeaseError::Breaker(limit)) => Err(Attempt::Failed {
            error: ProxyError::CircuitOpen(limit),
            cause: None,
            reached: false,
        }),
        Err(e) => {
            tally.sending();
            let (error, cause) = lease_error(e, limits.connect < proxy.connect_timeout);
            Err(failed(error, cause, false))
        }
    }
}

/// How an attempt ends whose stream failed before the response head. A
/// refused one (REFUSED_STREAM, or past a GOAWAY's last stream) was not
/// processed: it did not reach the upstream.
pub(super) fn head_failed(e: h2::Error) -> Attempt {
    let refused =
        e.reason() == Some(h2::Reason::REFUSED_STREAM) || (e.is_go_away() && e.is_remote());
    let e = crate::upstream::h2::h2_io(e);
    failed(
        ProxyError::UpstreamBeforeResponse(e),
        Cause::Reset,
        !refused,
    )
}

/// The response head `parts` as HTTP/1.1 text in `buf` (its framing
/// explicit: `ended`, the body ended with it; `is_head`, it answers a
/// HEAD), parsed into `resp`: the response path reads it as any
/// upstream's. `Err`: how the attempt ended.
pub(super) fn head_text(
    parts: &http::response::Parts,
    (is_head, ended): (bool, bool),
    buf: &mut Vec<u8>,
    resp: &mut ResponseHead,
) -> Result<(), Attempt> {
    h1h2::response_head(buf, parts, h1h2::framing_of(parts, is_head, ended));
    match parse_response(buf, is_head, resp) {
        Ok(Some(())) => Ok(()),
        _ => Err(failed(
            ProxyError::BadResponse("response head not valid as HTTP/1.1"),
            Cause::Reset,
            true,
        )),
    }
}

/// The request head as HTTP/2.
fn translate(conn: &Conn, upstream: &Upstream) -> Result<http::Request<()>, h1h2::TranslateError> {
    let fwd = conn.forwarded(upstream);
    h1h2::request(&conn.down, &conn.head, &fwd)
}

/// Streams the rest of the request body from the client, as DATA frames
/// of its payload; bytes past its end stay in `down` for the next request.
async fn stream_body(
    conn: &mut Conn,
    req: &mut Request,
    up: &mut h2::SendStream<Bytes>,
    limit: Duration,
) -> Option<Attempt> {
    while !req.body.is_done() {
        if conn.down.capacity() - conn.down.len() < 1024 {
            conn.down.reserve(16 * 1024);
        }
        match conn.client.read_more(&mut conn.down, limit).await {
            Ok(_) => {}
            Err(IoFail::Timeout) => {
                return Some(Attempt::Failed {
                    error: ProxyError::ClientTimeout,
                    cause: None,
                    reached: true,
                })
            }
            Err(e) => return Some(Attempt::Abort(ProxyError::ClientIo(e.into_io()))),
        }
        let mut payload = BytesMut::new();
        let down = &conn.down;
        let used = match req
            .body
            .advance(down, |r| payload.extend_from_slice(&down[r]))
        {
            Ok(n) => n,
            Err(_) => {
                return Some(Attempt::Failed {
                    error: ProxyError::BadRequest("invalid chunked body", 400),
                    cause: None,
                    reached: true,
                })
            }
        };
        conn.tally.bytes_in += used as u64;
        req.body_seen += payload.len() as u64;
        if req.body_limit.is_some_and(|max| req.body_seen > max) {
            // The stream (with a partial body) is reset when dropped.
            return Some(Attempt::Failed {
                error: ProxyError::BadRequest("request body too large", 413),
                cause: None,
                reached: true,
            });
        }
        conn.consume(used);
        let last = req.body.is_done();
        if payload.is_empty() && !last {
            continue;
        }
        match send_data(up, payload.freeze(), last, limit).await {
            Ok(()) => {}
            // The upstream answered already: the rest of the body is read
            // and dropped, so the connection stays in step.
            Err(e) if gone_early(&e) => {}
            Err(e) => {
                let (error, cause) = body_error(e);
                return Some(failed(error, cause, true));
            }
        }
    }
    None
}

/// Sends `data` on a stream just opened, then `trailers` if any; `end`:
/// the body ends with them. An upstream that answered already and stopped
/// the upload is no failure: its response is still to be read.
pub(super) async fn send_opening(
    up: &mut h2::SendStream<Bytes>,
    (data, trailers): (Bytes, Option<&http::HeaderMap>),
    end: bool,
    limit: Duration,
) -> Result<(), BodyError> {
    let mut sent = send_data(up, data, end && trailers.is_none(), limit).await;
    if let (Ok(()), Some(t)) = (&sent, trailers) {
        sent = up.send_trailers(t.clone()).map_err(BodyError::H2);
    }
    match sent {
        Err(e) if gone_early(&e) => Ok(()),
        sent => sent,
    }
}

/// The one more try a stream gets when its connection, one that was
/// already open, died before any answer (an I/O failure, a GOAWAY) or the
/// upstream refused it unprocessed (REFUSED_STREAM), as a dead pooled
/// HTTP/1.1 connection is replaced once: for a request held whole. A
/// stream the upstream reset otherwise is left to the retry policy.
pub(super) struct SecondChance(pub(super) bool);

impl SecondChance {
    /// Whether a stream on a connection that was already open (`reused`)
    /// that failed with `e` is tried once more (once only).
    pub(super) fn take(&mut self, reused: bool, e: &h2::Error) -> bool {
        let refused = e.reason() == Some(h2::Reason::REFUSED_STREAM);
        let again = self.0 && reused && (e.is_io() || e.is_go_away() || refused);
        if again {
            tracing::debug!(error = %e, "h2 connection died before the response; retrying");
            self.0 = false;
        }
        again
    }
}

/// How an attempt ends whose request body could not be sent.
pub(super) fn unsent(e: BodyError) -> Attempt {
    let (error, cause) = body_error(e);
    failed(error, cause, true)
}

/// Whether a send failed because the upstream closed its side after
/// answering (RST_STREAM NO_ERROR): the response is still to be read.
fn gone_early(e: &BodyError) -> bool {
    matches!(e, BodyError::H2(e) if e.reason() == Some(h2::Reason::NO_ERROR))
}

pub(super) fn body_error(e: BodyError) -> (ProxyError, Cause) {
    match e {
        BodyError::Timeout => (ProxyError::UpstreamTimeout, Cause::Timeout),
        e => (
            ProxyError::UpstreamBeforeResponse(e.into_io()),
            Cause::Reset,
        ),
    }
}

fn lease_error(e: LeaseError, shortened: bool) -> (ProxyError, Cause) {
    match e {
        LeaseError::Connect(ConnectError::Io(e)) => (ProxyError::Connect(e), Cause::ConnectFailure),
        // The attempt's deadline ran out first: a timeout; else the
        // connect timeout did, a connect failure.
        LeaseError::Connect(ConnectError::Timeout) if shortened => {
            (ProxyError::UpstreamTimeout, Cause::Timeout)
        }
        LeaseError::Connect(ConnectError::Timeout) => {
            (ProxyError::UpstreamTimeout, Cause::ConnectFailure)
        }
        LeaseError::Timeout => (ProxyError::UpstreamTimeout, Cause::Timeout),
        LeaseError::Breaker(limit) => (ProxyError::CircuitOpen(limit), Cause::ConnectFailure),
    }
}

/// Streams the response whose head `attempt` translated to the client:
/// data as it comes (chunked when the upstream gave no length), flow
/// control released as the client takes it, trailers on the last chunk
/// for clients that accept them.
pub(super) async fn respond(
    conn: &mut Conn,
    worker: &Rc<Worker>,
    bufs: &mut Bufs,
    Response { mut body, trailers }: Response,
) -> Outcome {
    let gen = conn.gen.clone();
    let proxy = &gen.config.proxy;
    let resp = &conn.resp;
    let chunked = resp.body == BodyKind::Chunked;
    let dechunk = chunked && conn.head.minor_version == 0;
    let close = !conn.head.keep_alive || worker.stopping.get() || dechunk;
    bufs.out.clear();
    super::exchange::response_filters(conn, &gen, &bufs.up);
    let resp = &conn.resp;
    let framing = if dechunk {
        DownFraming::Dechunk
    } else {
        DownFraming::Same
    };
    write_response_head(
        &mut bufs.out,
        &bufs.up,
        resp,
        conn.head.minor_version,
        framing,
        close,
        (conn.resp_edits.removed(), conn.resp_edits.lines()),
    );
    conn.tally.status = resp.status;
    if resp.status == 429 {
        conn.tally.retry_after_us = retry_after_us(resp, &bufs.up);
    }
    let limit = proxy.read_timeout;
    let has_body = resp.body != BodyKind::Empty;
    let trailers_wanted = chunked && !dechunk && trailers;

    // The head goes out with the data already there, if any, else at
    // once: a stream may wait long before its first byte. Chunks already
    // there go out together, up to `COALESCE`; capacity is released as
    // the client takes them.
    let mut next = if has_body {
        poll_now(&mut body)
    } else {
        Some(None)
    };
    let mut unreleased = 0;
    loop {
        let item = match next.take() {
            Some(item) => item,
            None => {
                if let Err(o) = flush(conn, bufs, limit).await {
                    return o;
                }
                body.release(std::mem::take(&mut unreleased));
                body.data(limit).await
            }
        };
        let data = match item {
            None => break,
            Some(Ok(d)) => d,
            Some(Err(BodyError::Timeout)) => return Outcome::Abort(ProxyError::UpstreamTimeout),
            Some(Err(e)) => return Outcome::Abort(ProxyError::UpstreamMidResponse(e.into_io())),
        };
        let n = data.len();
        if n > 0 {
            if chunked && !dechunk {
                h1h2::chunk_head(&mut bufs.out, n);
                bufs.out.extend_from_slice(&data);
                bufs.out.extend_from_slice(b"\r\n");
            } else {
                bufs.out.extend_from_slice(&data);
            }
            unreleased += n;
        }
        if bufs.out.len() < COALESCE {
            next = poll_now(&mut body);
        }
    }
    if chunked && !dechunk {
        let trailers = if body.is_end_stream() {
            None
        } else {
            match body.trailers(limit).await {
                Ok(t) => t,
                Err(BodyError::Timeout) => return Outcome::Abort(ProxyError::UpstreamTimeout),
                Err(e) => return Outcome::Abort(ProxyError::UpstreamMidResponse(e.into_io())),
            }
        };
        h1h2::last_chunk(&mut bufs.out, trailers.as_ref().filter(|_| trailers_wanted));
    }
    if let Err(o) = flush(conn, bufs, limit).await {
        return o;
    }
    Outcome::Done {
        keep_alive: !close,
        reuse: true,
    }
}

/// Writes what `bufs.out` holds to the client.
async fn flush(conn: &mut Conn, bufs: &mut Bufs, limit: Duration) -> Result<(), Outcome> {
    if bufs.out.is_empty() {
        return Ok(());
    }
    conn.tally.bytes_out += bufs.out.len() as u64;
    if let Err(e) = conn.client.write_all(&mut bufs.out, limit).await {
        return Err(Outcome::Abort(ProxyError::ClientIo(e.into_io())));
    }
    bufs.out.clear();
    Ok(())
}

/// The body's next chunk if it is already there (its end included),
/// without waiting.
fn poll_now(body: &mut Body) -> Option<Option<Result<Bytes, BodyError>>> {
    let mut cx = Context::from_waker(Waker::noop());
    match body.poll_data(&mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}
