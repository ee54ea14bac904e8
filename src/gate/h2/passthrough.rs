//! One attempt of an HTTP/2 stream on an h2c upstream (`protocol =
//! "h2c"`), and the response relayed from it: the stream goes through as
//! HTTP/2 on a stream of the worker's multiplexed pool (gRPC's path). A
//! held body is sent by each attempt; a streamed one is relayed from a
//! task of its own as the client sends it, so that the response may start
//! before it ends. Interim (1xx) heads pass to the client; the final head
//! passes through the route's response filters (read as HTTP/1.1 text, as
//! from any upstream), the body is relayed as the client's window allows,
//! and the upstream's trailers (`grpc-status`) end the stream.
//!
//! A stream that fails before any answer on a connection that was already
//! open is tried once more when the request is held whole, as by
//! HTTP/1.1 clients (`gate::h2up`). `per_try_timeout` bounds the attempt
//! up to the response head, except for a streamed body: its response may
//! rightly start before the body ends (and such a request is not retried
//! once sent), so only `response_timeout` bounds that head.

use bytes::Bytes;
use h2::server::SendResponse;

use super::request::{Body, Outgoing};
use super::respond::{respond_filters, send_flow};
use super::stream::Stream;
use super::upstream::{client_h2, Down, Outcome};
use crate::align::retry::Cause;
use crate::error::ProxyError;
use crate::gate::attempt::{failed, left, Attempt, PerTry, Up};
use crate::gate::exchange::Bufs;
use crate::gate::h2up::{
    head_failed, head_text, lease, send_opening, unsent, untranslatable, Response, SecondChance,
};
use crate::gate::io::within;
use crate::memory::{Route, Upstream};
use crate::proto::h1h2;
use crate::upstream::h2::{h2_io, relay_apart, BodyError, Pending, Sent};

/// Tries `upstream`, an h2c one of `route`, once.
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
    let read_timeout = gen.config.proxy.read_timeout;
    let per_try = PerTry::of(route);
    let deadline = per_try.deadline();
    let mut chance = SecondChance(req.replayable);
    bufs.fresh_up();
    let (parts, body) = loop {
        let head = match h1h2::request(&s.down, &s.head, &s.forwarded(upstream)) {
            Ok(h) => h,
            Err(e) => return untranslatable(e),
        };
        let timing = (deadline, req.response_timeout);
        let target = (route_index, upstream);
        let lease = match lease((&worker, &gen), target, timing, &mut s.tally).await {
            Ok(l) => l,
            Err(fail) => return fail,
        };
        let reused = lease.reused;
        if let Err(e) = req.go_ahead(s, down) {
            return Attempt::Abort(e);
        }
        let Sent {
            response,
            body: mut up_body,
        } = match lease.send(head, matches!(req.body, Body::Empty)) {
            Ok(sent) => sent,
            Err(e) => {
                let e = ProxyError::UpstreamBeforeResponse(h2_io(e));
                return failed(e, Cause::Reset, false);
            }
        };
        let mut timeout = left(deadline, req.response_timeout);
        match &mut req.body {
            Body::Empty => {}
            Body::Held { data, trailers } => {
                let opening = (data.clone(), trailers.as_ref());
                match send_opening(&mut up_body, opening, true, read_timeout).await {
                    Ok(()) => {}
                    Err(BodyError::H2(e)) if chance.take(reused, &e) => continue,
                    Err(e) => return unsent(e),
                }
            }
            Body::Streamed(from) => {
                if let Some(from) = from.take() {
                    relay_apart(from, up_body, read_timeout);
                    timeout = req.response_timeout;
                }
            }
        }
        match within(timeout, final_head(response, down, &mut req.interim)).await {
            None => return failed(ProxyError::UpstreamTimeout, Cause::Timeout, true),
            Some(Err(abort)) => return abort,
            Some(Ok(Ok(pair))) => break pair,
            Some(Ok(Err(e))) if chance.take(reused, &e) => {}
            Some(Ok(Err(e))) => return head_failed(e),
        }
    };
    // The head as HTTP/1.1 text, so the response filters see it as they
    // see any upstream's.
    let ended = body.is_end_stream();
    match head_text(&parts, (s.head.is_head, ended), &mut bufs.up, &mut s.resp) {
        Ok(()) => Attempt::Head(Up::H2(Response {
            body,
            trailers: true,
        })),
        Err(fail) => fail,
    }
}

/// Waits for the final response head, passing interim ones to the client
/// on the way (`passed` set then: the response started); a `100
/// Continue` is not passed (the proxy answers `Expect` itself). `Err`:
/// the client failed.
async fn final_head(
    mut response: Pending,
    down: &Down<'_>,
    passed: &mut bool,
) -> Result<Result<(http::response::Parts, crate::upstream::h2::Body), h2::Error>, Attempt> {
    while let Some(Ok(head)) = response.informational().await {
        if head.status() != http::StatusCode::CONTINUE {
            *passed = true;
            down.interim(head).map_err(Attempt::Abort)?;
        }
    }
    // A failure shows again here.
    Ok(response.head().await)
}

/// Relays the response whose head `attempt` translated (into `bufs.up`
/// and `s.resp`): through the response filters, then its body and
/// trailers as they come.
pub(super) async fn respond(
    s: &mut Stream,
    respond: &mut SendResponse<Bytes>,
    up: Response,
    bufs: &Bufs,
    at: (usize, usize, Option<(usize, usize)>),
) -> Outcome {
    let mut up = up.body;
    let head = respond_filters(s, &bufs.up, at);
    s.tally.bytes_out += s.resp.head_len as u64;
    let end = up.is_end_stream();
    let mut send = match respond.send_response(head, end) {
        Ok(send) => send,
        Err(e) => return Outcome::Abort(client_h2(e)),
    };
    if end {
        return Outcome::Done;
    }
    let limit = s.gen.config.proxy.read_timeout;
    loop {
        match up.data(limit).await {
            None => break,
            Some(Ok(data)) => {
                let n = data.len();
                s.tally.bytes_out += n as u64;
                if let Err(e) = send_flow(&mut send, data, false, limit).await {
                    return Outcome::Abort(e);
                }
                up.release(n);
            }
            Some(Err(e)) => return Outcome::Abort(mid_response(e)),
        }
    }
    let ended = match up.trailers(limit).await {
        Ok(Some(trailers)) => send.send_trailers(trailers),
        Ok(None) => send.send_data(Bytes::new(), true),
        Err(e) => return Outcome::Abort(mid_response(e)),
    };
    match ended {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::Abort(client_h2(e)),
    }
}

fn mid_response(e: BodyError) -> ProxyError {
    match e {
        BodyError::Timeout => ProxyError::UpstreamTimeout,
        e => ProxyError::UpstreamMidResponse(e.into_io()),
    }
}
