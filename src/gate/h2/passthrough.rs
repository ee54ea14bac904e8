//! An HTTP/2 stream to an h2c upstream (`protocol = "h2c"`): the stream
//! goes through as HTTP/2 on a stream of the worker's multiplexed pool
//! (gRPC's path). The request body is relayed by the pool's exchange as
//! the client sends it; the response head passes through the route's
//! response filters (read as HTTP/1.1 text, as from any upstream), the
//! body is relayed as the client's window allows, and the upstream's
//! trailers (`grpc-status`) end the stream.
//!
//! One attempt, no retries, as for the stream's HTTP/1.1 upstreams.

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;

use super::stream::Stream;
use super::upstream::{or_reset, respond_filters, send_flow, Outcome};
use crate::error::ProxyError;
use crate::proto::h1::parse_response;
use crate::proto::h1h2;
use crate::upstream::h2::{Admission, BodyError, ExchangeError, LeaseError, Limits};
use crate::upstream::pool::ConnectError;

/// Proxies the stream to `upstream` (picked, admitted by the breaker and
/// counted by the caller) over h2c.
pub(super) async fn exchange(
    s: &mut Stream,
    (route_index, picked, sticky): (usize, usize, Option<(usize, usize)>),
    body: RecvStream,
    respond: &mut SendResponse<Bytes>,
) -> Outcome {
    let worker = s.shared.worker.clone();
    let gen = s.gen.clone();
    let route = &gen.config.routes[route_index];
    let upstream = &route.upstreams[picked];
    let proxy = &gen.config.proxy;
    let fwd = s.forwarded(upstream);
    let req = match h1h2::request(&s.down, &s.head, &fwd) {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(ProxyError::BadRequest(e.reason(), 400)),
    };
    let load = &gen.loads[upstream.pool];
    let admission = Admission {
        breaker: gen.breakers[route_index].as_ref(),
        pending: &load.pending,
    };
    let timeout = route.request_timeout.unwrap_or(proxy.response_timeout);
    let limits = Limits {
        connect: proxy.connect_timeout,
        wait: timeout,
    };
    s.tally.sending();
    let target = (gen.pools[upstream.pool], upstream);
    let sent = worker.pool.h2_send(
        target,
        (admission, limits),
        req,
        Some(body),
        (timeout, proxy.read_timeout),
    );
    let (parts, mut up) = match or_reset(respond, sent).await {
        None => return Outcome::Abort(super::upstream::reset()),
        Some(Ok(pair)) => pair,
        Some(Err(e)) => return Outcome::Failed(exchange_error(e)),
    };
    // The head as HTTP/1.1 text, so the response filters see it as they
    // see any upstream's.
    let mut text = worker.take_buf();
    let framing = h1h2::framing_of(&parts, s.head.is_head, up.is_end_stream());
    h1h2::response_head(&mut text, &parts, framing);
    let parsed = parse_response(&text, s.head.is_head, &mut s.resp);
    if !matches!(parsed, Ok(Some(()))) {
        worker.give_buf(text);
        return Outcome::Failed(ProxyError::BadResponse(
            "response head not valid as HTTP/1.1",
        ));
    }
    s.tally.status = s.resp.status;
    let head = respond_filters(s, &text, (route_index, picked, sticky));
    s.tally.bytes_out += s.resp.head_len as u64;
    worker.give_buf(text);
    let end = up.is_end_stream();
    let mut send = match respond.send_response(head, end) {
        Ok(send) => send,
        Err(e) => return Outcome::Abort(super::upstream::client_h2(e)),
    };
    if end {
        return Outcome::Done;
    }
    let limit = proxy.read_timeout;
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
            Some(Err(e)) => return Outcome::Abort(body_error(e)),
        }
    }
    let ended = match up.trailers(limit).await {
        Ok(Some(trailers)) => send.send_trailers(trailers),
        Ok(None) => send.send_data(Bytes::new(), true),
        Err(e) => return Outcome::Abort(body_error(e)),
    };
    match ended {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::Abort(super::upstream::client_h2(e)),
    }
}

fn exchange_error(e: ExchangeError) -> ProxyError {
    match e {
        ExchangeError::Lease(LeaseError::Connect(ConnectError::Io(e))) => ProxyError::Connect(e),
        ExchangeError::Lease(LeaseError::Connect(ConnectError::Timeout))
        | ExchangeError::Lease(LeaseError::Timeout)
        | ExchangeError::Timeout => ProxyError::UpstreamTimeout,
        ExchangeError::Lease(LeaseError::Breaker(limit)) => ProxyError::CircuitOpen(limit),
        ExchangeError::H2(e) => ProxyError::UpstreamBeforeResponse(crate::upstream::h2::h2_io(e)),
    }
}

fn body_error(e: BodyError) -> ProxyError {
    match e {
        BodyError::Timeout => ProxyError::UpstreamTimeout,
        e => ProxyError::UpstreamMidResponse(e.into_io()),
    }
}
