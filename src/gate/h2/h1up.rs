//! One attempt of an HTTP/2 stream on an HTTP/1.1 upstream, and the
//! response relayed from it: a connection from the worker's pool (or a
//! new one within the circuit breaker's limits), the request head with a
//! held body in one write, or a streamed body forwarded from the h2
//! stream as it comes (its flow-control capacity given back as it is
//! written), then the response head read — interim 1xx heads passed to
//! the client as informational HEADERS — and the body streamed back as
//! the client's window allows, chunked trailers becoming HTTP/2 trailers.
//!
//! `per_try_timeout` bounds the attempt from its start to the response
//! head; a streamed body restarts the clock once sent (a slow client is
//! not the upstream's fault), as for HTTP/1.1 clients.

use std::io;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::RecvStream;

use super::request::{Body, Outgoing};
use super::respond::{or_reset, parse_trailers, respond_filters, response_head, send_flow};
use super::stream::Stream;
use super::upstream::{client_h2, reset, Down, Outcome};
use crate::error::ProxyError;
use crate::flow::Edits;
use crate::gate::attempt::{
    failed, read_head, send_head, upstream_conn, upstream_error, Attempt, Interim, PerTry, Up,
};
use crate::gate::exchange::Bufs;
use crate::gate::io::{within, IoFail};
use crate::memory::{Route, Upstream};
use crate::proto::h1::head::write_request_head;
use crate::proto::h1::{BodyKind, BodyState, ResponseHead};
use crate::proto::h1h2::chunk_head;
use crate::upstream::pool::UpstreamConn;

/// Room for each read of a response body.
const READ_SIZE: usize = 16 * 1024;

/// Tries `upstream`, an HTTP/1.1 one of `route`, once.
pub(super) async fn attempt(
    s: &mut Stream,
    down: &Down<'_>,
    req: &mut Outgoing,
    bufs: &mut Bufs,
    (route, route_index): (&Route, usize),
    upstream: &Upstream,
) -> Attempt {
    let worker = s.shared.worker.clone();
    let gen = s.gen.clone();
    let per_try = PerTry::of(route);
    let mut deadline = per_try.deadline();

    // The head (rebuilt each attempt: the `Host` given to a client that
    // sent none is the upstream's), a held body right behind it.
    bufs.out.clear();
    write_request_head(&mut bufs.out, &s.down, &s.head, &s.forwarded(upstream));
    if let Body::Held { data, .. } = &req.body {
        bufs.out.extend_from_slice(data);
    }
    bufs.fresh_up();

    let target = (route_index, upstream);
    let (mut up, mut reused) =
        match upstream_conn((&worker, &gen), target, deadline, &mut s.tally).await {
            Ok(pair) => pair,
            Err(fail) => return fail,
        };
    if let Err(e) = req.go_ahead(s, down) {
        return Attempt::Abort(e);
    }
    let again = (&mut reused, req.replayable);
    let sent = send_head(
        (&worker, &gen),
        &mut up,
        &mut bufs.out,
        again,
        upstream,
        deadline,
    );
    if let Err(fail) = sent.await {
        return fail;
    }
    if let Body::Streamed(body) = &mut req.body {
        if let Some(mut body) = body.take() {
            if let Some(fail) = send_body(s, &mut up, &mut bufs.out, &mut body).await {
                return fail;
            }
            deadline = per_try.deadline();
        }
    }

    let mut interim = ToStream {
        down,
        passed: &mut req.interim,
        bytes_out: &mut s.tally.bytes_out,
    };
    let read = read_head(
        (&worker, &gen),
        bufs,
        (&mut s.resp, s.head.is_head, false),
        &mut interim,
        &mut up,
        (reused && req.replayable, upstream),
        (req.response_timeout, deadline),
    );
    match read.await {
        None => Attempt::Head(Up::H1(up)),
        Some(fail) => fail,
    }
}

/// The HTTP/2 client: interim heads go out as informational HEADERS.
struct ToStream<'a, 'd> {
    down: &'a Down<'d>,
    /// Set once a head went to the client: the response started.
    passed: &'a mut bool,
    bytes_out: &'a mut u64,
}

impl Interim for ToStream<'_, '_> {
    async fn pass(
        &mut self,
        resp: &ResponseHead,
        buf: &mut Vec<u8>,
        n: usize,
    ) -> Result<(), ProxyError> {
        *self.passed = true;
        *self.bytes_out += n as u64;
        self.down
            .interim(response_head(resp, buf, &Edits::default()))
    }
}

/// Streams the request body from the h2 stream to the upstream, chunked
/// unless its length was declared, and gives each piece's flow-control
/// capacity back once it is written. Request trailers follow the last
/// chunk. `Some`: how the attempt ended.
async fn send_body(
    s: &mut Stream,
    up: &mut UpstreamConn,
    out: &mut Vec<u8>,
    body: &mut RecvStream,
) -> Option<Attempt> {
    let read_timeout = s.gen.config.proxy.read_timeout;
    let chunked = s.head.body == BodyKind::Chunked;
    let limit = s.flow.body_limit;
    let mut seen = 0u64;
    // The client's doing: no evidence about the upstream.
    let client = |error| {
        Some(Attempt::Failed {
            error,
            cause: None,
            reached: true,
        })
    };
    let upstream_failed = |e: IoFail| {
        let (error, cause) = upstream_error(e);
        Some(failed(error, cause, true))
    };
    loop {
        let data = match within(read_timeout, body.data()).await {
            None => return client(ProxyError::ClientTimeout),
            Some(None) => break,
            Some(Some(Err(e))) => return Some(Attempt::Abort(client_h2(e))),
            Some(Some(Ok(data))) => data,
        };
        let n = data.len();
        if n == 0 {
            continue;
        }
        seen += n as u64;
        s.tally.bytes_in += n as u64;
        if limit.is_some_and(|max| seen > max) {
            return client(ProxyError::BadRequest("request body too large", 413));
        }
        if chunked {
            out.clear();
            chunk_head(out, n);
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
            if let Err(e) = up.write_all(out, read_timeout).await {
                return upstream_failed(e);
            }
        } else {
            if let Err(e) = up.write_bytes(data, read_timeout).await {
                return upstream_failed(e);
            }
        }
        let _ = body.flow_control().release_capacity(n);
    }
    if chunked {
        out.clear();
        let trailers = match within(read_timeout, body.trailers()).await {
            Some(Ok(t)) => t,
            _ => None,
        };
        crate::proto::h1h2::last_chunk(out, trailers.as_ref());
        if let Err(e) = up.write_all(out, read_timeout).await {
            return upstream_failed(e);
        }
    }
    None
}

/// Relays the response whose head `attempt` read (into `bufs.up` and
/// `s.resp`) from `up`, then pools the connection when it ended the
/// response cleanly.
pub(super) async fn respond(
    s: &mut Stream,
    respond: &mut SendResponse<Bytes>,
    mut up: UpstreamConn,
    bufs: &mut Bufs,
    at: (usize, usize, Option<(usize, usize)>),
) -> Outcome {
    let worker = s.shared.worker.clone();
    let (outcome, clean) = respond_down(s, respond, &mut up, bufs, at).await;
    if matches!(outcome, Outcome::Done) && clean && s.resp.keep_alive && !worker.stopping.get() {
        let pool = s.gen.pools[s.gen.config.routes[at.0].upstreams[at.1].pool];
        worker.pool.put(pool, up, worker.coarse_now.get());
    }
    outcome
}

/// Sends the response head read into `s.resp` (after the route's
/// response filters) and streams the body. Returns how it ended and
/// whether the upstream connection ended the response cleanly.
pub(super) async fn respond_down(
    s: &mut Stream,
    respond: &mut SendResponse<Bytes>,
    up: &mut UpstreamConn,
    bufs: &mut Bufs,
    (route_index, picked, sticky): (usize, usize, Option<(usize, usize)>),
) -> (Outcome, bool) {
    let gen = s.gen.clone();
    let head = respond_filters(s, &bufs.up, (route_index, picked, sticky));
    let mut state = BodyState::new(s.resp.body);
    let start = s.resp.head_len;
    s.tally.bytes_out += start as u64;
    let end = state.is_done();
    let mut send = match respond.send_response(head, end) {
        Ok(send) => send,
        Err(e) => return (Outcome::Abort(client_h2(e)), false),
    };
    if end {
        // Anything past the head is garbage from the upstream.
        return (Outcome::Done, start == bufs.up.len());
    }
    let limit = gen.config.proxy.read_timeout;
    // Chunked trailers, as they come (rare: allocated then).
    let mut trailers: Vec<u8> = Vec::new();
    let mut ranges: Vec<Range<usize>> = Vec::new();
    // The body bytes that came with the head.
    let first = Bytes::copy_from_slice(&bufs.up[start..]);
    let mut clean = true;
    let mut data = first;
    let mut read = BytesMut::new();
    loop {
        if !data.is_empty() {
            ranges.clear();
            let used = match state.advance_parts(
                &data,
                |r| ranges.push(r),
                |r| trailers.extend_from_slice(&data[r]),
            ) {
                Ok(n) => n,
                Err(_) => {
                    return (
                        Outcome::Abort(ProxyError::BadResponse("invalid chunked body")),
                        false,
                    )
                }
            };
            clean = used == data.len();
            let done = state.is_done() && trailers.is_empty();
            for (i, r) in ranges.iter().enumerate() {
                let last = done && i + 1 == ranges.len();
                let piece = data.slice(r.clone());
                s.tally.bytes_out += piece.len() as u64;
                if let Err(e) = send_flow(&mut send, piece, last, limit).await {
                    return (Outcome::Abort(e), false);
                }
                if last {
                    return (Outcome::Done, clean);
                }
            }
        }
        if state.is_done() {
            break;
        }
        read.reserve(READ_SIZE);
        let buf = std::mem::take(&mut read);
        let got = or_reset(within(limit, up.read_bytes(buf)), |cx| {
            send.poll_reset(cx).is_ready()
        })
        .await;
        let (res, buf) = match got {
            None => return (Outcome::Abort(reset()), false),
            Some(None) => return (Outcome::Abort(ProxyError::UpstreamTimeout), false),
            Some(Some(r)) => r,
        };
        read = buf;
        match res {
            Ok(0) if matches!(state, BodyState::UntilClose) => {
                state = BodyState::Done;
                clean = false;
                data = Bytes::new();
            }
            Ok(0) => {
                let e = io::Error::from(io::ErrorKind::UnexpectedEof);
                return (Outcome::Abort(ProxyError::UpstreamMidResponse(e)), false);
            }
            Ok(_) => data = read.split().freeze(),
            Err(e) => return (Outcome::Abort(ProxyError::UpstreamMidResponse(e)), false),
        }
    }
    // The end: trailers, or an empty DATA frame that ends the stream.
    let sent = match parse_trailers(&trailers) {
        Some(map) => send.send_trailers(map),
        None => send.send_data(Bytes::new(), true),
    };
    match sent {
        Ok(()) => (Outcome::Done, clean),
        Err(e) => (Outcome::Abort(client_h2(e)), false),
    }
}
