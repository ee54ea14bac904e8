//! One request/response exchange with an upstream: pick it, try it (see
//! `attempt`), retry on another upstream when the route's retry policy,
//! the request and the budget allow, then stream the response back and
//! return the connection to the pool when both sides ended cleanly. A
//! `101` to a WebSocket handshake hands the connection to a tunnel instead
//! (see `tunnel`).
//!
//! What is retried: an idempotent request whose body is held whole, or any
//! request that never reached the upstream (connect failure, circuit
//! breaker), after a failure or status the route's `on` names, while no
//! byte of a response went to the client and attempts and the per-core
//! budget are left. A retry goes to an upstream not tried yet when there
//! is one. Those decisions are `retries`', shared with HTTP/2 streams.
//! Held whole here: the body came complete with the head (it is in
//! `conn.down`, which is kept until the exchange ends).

use std::rc::Rc;

use super::attempt::{attempt, Attempt, Request, Up};
use super::conn::Conn;
use super::io::IoFail;
use super::retries::{Retries, Standing};
use crate::error::ProxyError;
use crate::flow::{Headers, ResponseCx};
use crate::memory::{Upstream, UpstreamProtocol};
use crate::proto::h1::head::{write_response_head, DownFraming};
use crate::proto::h1::ResponseHead;
use crate::proto::h1::{BodyKind, BodyState};
use crate::runtime::generation::Gen;
use crate::runtime::worker::Worker;
use crate::upstream::pool::UpstreamConn;
use futures_util::future::Either;

/// Largest buffer a streamed response body grows to (see `respond`).
const STREAM_BUF_MAX: usize = 256 * 1024;
/// Body bytes up to this size ride in the same write as the head (one
/// syscall); larger ones are written from the read buffer, uncopied.
const COALESCE: usize = 8 * 1024;

/// How an exchange ended.
pub(crate) enum Outcome {
    /// The response was sent.
    Done {
        /// The client connection may stay open.
        keep_alive: bool,
        /// The upstream connection ended the response cleanly.
        reuse: bool,
    },
    /// Nothing was sent to the client yet: answer with the error's status.
    Failed(ProxyError),
    /// The response had started (or the client failed): close.
    Abort(ProxyError),
    /// A `101 Switching Protocols` went to the client: the connection is
    /// now a tunnel to this upstream connection (see `tunnel`).
    Upgraded(Upgraded),
}

/// The upstream side of a tunnel, as the exchange hands it over.
pub(crate) struct Upgraded {
    /// Never pooled again.
    pub(crate) up: UpstreamConn,
    /// Bytes the upstream sent past the 101 head, still to be relayed to
    /// the client; the buffer then carries that direction.
    pub(crate) early: Vec<u8>,
}

/// Buffers borrowed from the worker for one exchange, returned on drop.
pub(super) struct Bufs {
    worker: Rc<Worker>,
    /// The request as sent upstream, then the response head sent down.
    pub(super) out: Vec<u8>,
    /// What the upstream sent.
    pub(super) up: Vec<u8>,
}

impl Bufs {
    /// The worker's buffers for one exchange.
    pub(super) fn new(worker: &Rc<Worker>) -> Bufs {
        Bufs {
            worker: worker.clone(),
            out: worker.take_buf(),
            up: worker.take_up_buf(),
        }
    }

    /// The worker's buffers at their usual size, for an HTTP/2 stream: a
    /// response head and its first body bytes fit, and the body's later
    /// reads go to `Bytes` handed to h2 (growing `up` as `new` does would
    /// reallocate it for every stream).
    pub(super) fn for_stream(worker: &Rc<Worker>) -> Bufs {
        Bufs {
            worker: worker.clone(),
            out: worker.take_buf(),
            up: worker.take_buf(),
        }
    }

    /// Empties `up` for an attempt's response: of a previous attempt's,
    /// or replaced when a timed-out read took it.
    pub(super) fn fresh_up(&mut self) {
        self.up.clear();
        if self.up.capacity() == 0 {
            self.up = self.worker.take_up_buf();
        }
    }
}

impl Drop for Bufs {
    fn drop(&mut self) {
        self.worker.give_buf(std::mem::take(&mut self.out));
        self.worker.give_buf(std::mem::take(&mut self.up));
    }
}

pub(crate) struct Exchange;

impl Exchange {
    pub(crate) async fn run(conn: &mut Conn, route_index: usize) -> Outcome {
        let worker = conn.worker.clone();
        let gen = conn.gen.clone();
        let (mut retries, mut picked) = Retries::start(
            (&worker, &gen),
            route_index,
            (&conn.head, &conn.down),
            &conn.client_ip,
            &mut conn.tally,
        );
        let route = retries.route();
        let mut bufs = Bufs::new(&worker);

        // Body bytes that came with the head.
        let head_len = conn.head.head_len;
        let mut body = BodyState::new(conn.head.body);
        // Payload bytes (chunk framing excluded), for max_body_bytes.
        let mut payload = 0u64;
        let used = match body.advance(&conn.down[head_len..], |r| payload += r.len() as u64) {
            Ok(n) => n,
            Err(_) => return Outcome::Failed(ProxyError::BadRequest("invalid chunked body", 400)),
        };
        conn.tally.bytes_in += used as u64;
        let mut req = Request {
            head_len,
            used,
            // Held whole in `down` until the exchange ends: it can be sent
            // again, to this upstream or another. A WebSocket handshake is
            // not: once sent, it is never retried.
            replayable: conn.head.idempotent && body.is_done() && !conn.head.upgrade,
            body,
            consumed: false,
            continued: false,
            interim: false,
            response_timeout: route
                .request_timeout
                .unwrap_or(gen.config.proxy.response_timeout),
            body_limit: conn.flow.body_limit,
            body_seen: payload,
        };
        if req.body_limit.is_some_and(|max| req.body_seen > max) {
            return Outcome::Failed(ProxyError::BadRequest("request body too large", 413));
        }

        let outcome = loop {
            let upstream = &route.upstreams[picked];
            let (error, cause, reached) = match retries.admit(picked) {
                Err(limit) => (ProxyError::CircuitOpen(limit), None, false),
                Ok(_request) => {
                    let tried_once = match upstream.protocol {
                        UpstreamProtocol::H1 => Either::Left(attempt(
                            conn,
                            &worker,
                            &mut bufs,
                            &mut req,
                            (route, route_index),
                            upstream,
                        )),
                        // Boxed: the HTTP/1.1 path's future stays its size.
                        UpstreamProtocol::H2c | UpstreamProtocol::H2 => {
                            Either::Right(Box::pin(super::h2up::attempt(
                                conn,
                                &worker,
                                &mut bufs,
                                &mut req,
                                (route, route_index),
                                upstream,
                            )))
                        }
                    };
                    match tried_once.await {
                        Attempt::Head(up) => {
                            let status = conn.resp.status;
                            if let Some(next) =
                                retries.after_status(status, standing(&req), &mut conn.tally)
                            {
                                // Not read further: the connection closes.
                                drop(up);
                                picked = next;
                                continue;
                            }
                            // A new or changed assignment: the response
                            // sets the cookie.
                            conn.route = route_index;
                            conn.upstream = picked;
                            conn.set_sticky = retries.sticky_cookie(picked);
                            break match up {
                                Up::H1(up) => stream(conn, &worker, &mut bufs, up, upstream).await,
                                Up::H2(resp) => {
                                    super::h2up::respond(conn, &worker, &mut bufs, resp).await
                                }
                            };
                        }
                        Attempt::Failed {
                            error,
                            cause,
                            reached,
                        } => (error, cause, reached),
                        Attempt::Abort(e) => break Outcome::Abort(e),
                    }
                }
            };
            let failure = (&error, cause, reached);
            match retries.after_failure(failure, standing(&req), &mut conn.tally) {
                Some(next) => picked = next,
                None => break Outcome::Failed(error),
            }
        };
        if !req.consumed {
            conn.consume(head_len + used);
        }
        outcome
    }
}

/// Where the request stands for a retry (see `retries`).
fn standing(req: &Request) -> Standing {
    Standing {
        replayable: req.replayable,
        spent: req.interim || req.consumed,
    }
}

/// Streams the response whose head `attempt` read to the client, and pools
/// the upstream connection when it ended cleanly.
async fn stream(
    conn: &mut Conn,
    worker: &Rc<Worker>,
    bufs: &mut Bufs,
    mut up: UpstreamConn,
    upstream: &Upstream,
) -> Outcome {
    let outcome = respond(conn, worker, bufs, &mut up).await;
    if conn.resp.status == 101 {
        // `attempt` lets a 101 through only to a WebSocket handshake.
        return match outcome {
            Outcome::Done { .. } => {
                bufs.up.drain(..conn.resp.head_len);
                Outcome::Upgraded(Upgraded {
                    up,
                    early: std::mem::take(&mut bufs.up),
                })
            }
            other => other,
        };
    }
    if let Outcome::Done { reuse: true, .. } = &outcome {
        if conn.resp.keep_alive && !worker.stopping.get() {
            let pool = conn.gen.pools[upstream.pool];
            worker.pool.put(pool, up, worker.coarse_now.get());
        }
    }
    outcome
}

/// Runs the route's response filters on the head parsed into `conn.resp`
/// (its text in `buf`), and names a sticky cookie when one is due: both
/// as edits of the head written next.
pub(super) fn response_filters(conn: &mut Conn, gen: &Gen, buf: &[u8]) {
    let route = &gen.config.routes[conn.route];
    if !gen.chains[conn.route].is_empty() {
        let mut cx = ResponseCx {
            status: conn.resp.status,
            headers: Headers::of_response(&conn.resp, buf),
            client_ip_text: &conn.client_ip,
            request_id: conn.request_id.as_ref().map_or(&[], |id| &id[..]),
            route: &route.name,
            upstream: &route.upstreams[conn.upstream].name,
            edits: &mut conn.resp_edits,
            state: &conn.flow,
        };
        gen.chains[conn.route].response(&mut cx);
    }
    if let Some((r, u)) = conn.set_sticky.take() {
        let (route, balancer) = (&gen.config.routes[r], &gen.balancers[r]);
        super::ask::set_cookie(&mut conn.resp_edits, route, balancer, u);
    }
}

/// Streams the response to the client.
async fn respond(
    conn: &mut Conn,
    worker: &Rc<Worker>,
    bufs: &mut Bufs,
    up: &mut UpstreamConn,
) -> Outcome {
    let gen = conn.gen.clone();
    let proxy = &gen.config.proxy;
    let resp = &conn.resp;
    // A 101 has no body: its head is all that is written here.
    let upgraded = resp.status == 101;
    let dechunk = resp.body == BodyKind::Chunked && conn.head.minor_version == 0;
    let framing = if upgraded {
        DownFraming::Tunnel
    } else if dechunk {
        DownFraming::Dechunk
    } else {
        DownFraming::Same
    };
    let close = !upgraded
        && (!conn.head.keep_alive
            || worker.stopping.get()
            || resp.body == BodyKind::UntilClose
            || dechunk);
    bufs.out.clear();
    response_filters(conn, &gen, &bufs.up);
    let resp = &conn.resp;
    write_response_head(
        &mut bufs.out,
        &bufs.up,
        resp,
        conn.head.minor_version,
        framing,
        close,
        (conn.resp_edits.removed(), conn.resp_edits.lines()),
    );
    let mut body = BodyState::new(resp.body);
    let start = resp.head_len;

    // Body bytes that came with the head.
    let (used, direct) = {
        let input = &bufs.up[start..];
        let out = &mut bufs.out;
        let mut direct = false;
        let used = match body.advance(input, |r| {
            if dechunk {
                out.extend_from_slice(&input[r]);
            }
        }) {
            Ok(n) => n,
            Err(_) => return Outcome::Abort(ProxyError::BadResponse("invalid chunked body")),
        };
        if !dechunk {
            if used <= COALESCE {
                out.extend_from_slice(&input[..used]);
            } else {
                direct = true;
            }
        }
        (used, direct)
    };
    let limit = proxy.read_timeout;
    conn.tally.status = resp.status;
    if resp.status == 429 {
        conn.tally.retry_after_us = retry_after_us(resp, &bufs.up);
    }
    conn.tally.bytes_out += (bufs.out.len() + if direct { used } else { 0 }) as u64;
    if let Err(e) = conn.client.write_all(&mut bufs.out, limit).await {
        return Outcome::Abort(ProxyError::ClientIo(e.into_io()));
    }
    if direct {
        if let Err(e) = conn
            .client
            .write_range(&mut bufs.up, start..start + used, limit)
            .await
        {
            return Outcome::Abort(ProxyError::ClientIo(e.into_io()));
        }
    }
    // Anything past the body is garbage from the upstream: do not pool.
    let mut clean = start + used == bufs.up.len();

    if dechunk {
        // HTTP/1.0 clients of a chunked response (rare): chunk by chunk.
        while !body.is_done() {
            bufs.up.clear();
            match up.read_more(&mut bufs.up, limit).await {
                Ok(_) => {}
                Err(IoFail::Timeout) => return Outcome::Abort(ProxyError::UpstreamTimeout),
                Err(e) => return Outcome::Abort(ProxyError::UpstreamMidResponse(e.into_io())),
            }
            bufs.out.clear();
            let (input, out) = (&bufs.up, &mut bufs.out);
            let used = match body.advance(input, |r| out.extend_from_slice(&input[r])) {
                Ok(n) => n,
                Err(_) => return Outcome::Abort(ProxyError::BadResponse("invalid chunked body")),
            };
            clean = used == bufs.up.len();
            conn.tally.bytes_out += bufs.out.len() as u64;
            if let Err(e) = conn.client.write_all(&mut bufs.out, limit).await {
                return Outcome::Abort(ProxyError::ClientIo(e.into_io()));
            }
        }
    } else if !body.is_done() {
        // The rest of the body, passed through as it arrives. Two buffers:
        // the next read from the upstream runs while the last chunk is
        // written to the client, so neither side waits for the other. A
        // read that fills its buffer doubles the next one (up to
        // STREAM_BUF_MAX): long bodies move in fewer, larger operations.
        let mut next = worker.take_buf();
        let mut pending: Option<usize> = None;
        let outcome = loop {
            if body.is_done() {
                if let Some(n) = pending {
                    if let Err(e) = conn.client.write_range(&mut bufs.up, 0..n, limit).await {
                        break Some(Outcome::Abort(ProxyError::ClientIo(e.into_io())));
                    }
                }
                break None;
            }
            let full = next.len() == next.capacity();
            next.clear();
            if full && next.capacity() < STREAM_BUF_MAX {
                next.reserve_exact(next.capacity());
            }
            let read = match pending {
                Some(n) => {
                    // Whichever ends first: a failed write ends both (the
                    // client is gone, the read is cancelled); a finished
                    // read (data, end of body or failure) waits for the
                    // write, so that nothing already read is lost.
                    let write = std::pin::pin!(conn.client.write_range(&mut bufs.up, 0..n, limit));
                    let read = std::pin::pin!(up.read_more(&mut next, limit));
                    match futures_util::future::select(write, read).await {
                        Either::Left((Err(e), _)) => {
                            break Some(Outcome::Abort(ProxyError::ClientIo(e.into_io())))
                        }
                        Either::Left((Ok(()), read)) => read.await,
                        Either::Right((read, write)) => {
                            if let Err(e) = write.await {
                                break Some(Outcome::Abort(ProxyError::ClientIo(e.into_io())));
                            }
                            read
                        }
                    }
                }
                None => up.read_more(&mut next, limit).await,
            };
            match read {
                Ok(_) => {}
                Err(IoFail::Eof) if matches!(body, BodyState::UntilClose) => break None,
                Err(IoFail::Timeout) => break Some(Outcome::Abort(ProxyError::UpstreamTimeout)),
                Err(e) => break Some(Outcome::Abort(ProxyError::UpstreamMidResponse(e.into_io()))),
            }
            let used = match body.advance(&next, |_| {}) {
                Ok(n) => n,
                Err(_) => {
                    break Some(Outcome::Abort(ProxyError::BadResponse(
                        "invalid chunked body",
                    )))
                }
            };
            clean = used == next.len();
            conn.tally.bytes_out += used as u64;
            std::mem::swap(&mut bufs.up, &mut next);
            pending = Some(used);
        };
        worker.give_buf(next);
        if let Some(o) = outcome {
            return o;
        }
    }
    Outcome::Done {
        keep_alive: !close,
        reuse: clean,
    }
}

/// A 429's `Retry-After` in microseconds, when given in seconds (an
/// HTTP-date is not honoured: the 429 then counts as a failure).
pub(super) fn retry_after_us(resp: &ResponseHead, buf: &[u8]) -> Option<u64> {
    let v = resp
        .headers
        .iter()
        .find(|h| h.name.get(buf).eq_ignore_ascii_case(b"retry-after"))?
        .value
        .get(buf);
    let secs: u64 = std::str::from_utf8(v).ok()?.trim().parse().ok()?;
    Some(secs.saturating_mul(1_000_000))
}
