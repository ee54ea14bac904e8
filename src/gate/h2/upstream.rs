//! An HTTP/2 stream's exchange with its route's upstreams: the balancer's
//! pick, the circuit breaker's request limit, attempts on HTTP/1.1
//! upstreams (`h1up`) or h2c ones (`passthrough`), retried under the
//! route's retry policy as an HTTP/1.1 request is — the decisions are
//! `gate::retries`', shared — and the response relayed from the attempt
//! that answered.
//!
//! Retried: a failure or status the route's `on` names, while attempts
//! and the per-core budget are left, no byte of a response (an interim
//! 1xx included) went to the client, and the request can go again: it
//! never reached the upstream, or it is idempotent and held whole (no
//! body, or one `request` holds). The next attempt goes to an upstream
//! not tried yet when there is one; each is recorded on its own upstream.
//!
//! A client that resets its stream stops the exchange at once, whatever
//! it was waiting for: a rapid-reset client does not keep upstream work
//! going.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::task::Context;

use bytes::Bytes;
use futures_util::future::Either;
use h2::server::SendResponse;
use h2::RecvStream;
use http::Response;

use super::request::Outgoing;
use super::respond::OrReset;
use super::stream::Stream;
use super::{h1up, passthrough};
use crate::error::ProxyError;
use crate::gate::attempt::{Attempt, Up};
use crate::gate::exchange::{retry_after_us, Bufs};
use crate::gate::retries::Retries;
use crate::memory::UpstreamProtocol;

/// How an exchange ended.
pub(super) enum Outcome {
    /// The response was sent whole.
    Done,
    /// Nothing was sent to the client: answer with the error's status.
    Failed(ProxyError),
    /// The response had started, or the client reset the stream: reset it.
    Abort(ProxyError),
}

/// The stream's response side while the attempts run: every wait watches
/// it for the client's reset, and interim (1xx) heads go out on it
/// meanwhile (never both at once: a cell suffices).
pub(super) struct Down<'a>(RefCell<&'a mut SendResponse<Bytes>>);

impl<'a> Down<'a> {
    /// Runs `f` until it ends or the client resets the stream (`None`).
    pub(super) fn or_reset<'s, F: Future>(
        &'s self,
        f: F,
    ) -> OrReset<F, impl FnMut(&mut Context<'_>) -> bool + use<'s, 'a, F>> {
        super::respond::or_reset(f, |cx| self.0.borrow_mut().poll_reset(cx).is_ready())
    }

    /// Sends an interim head; an error is the client's failure.
    pub(super) fn interim(&self, head: Response<()>) -> Result<(), ProxyError> {
        self.0
            .borrow_mut()
            .send_informational(head)
            .map_err(client_h2)
    }
}

pub(super) fn reset() -> ProxyError {
    ProxyError::ClientIo(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "the client reset the stream",
    ))
}

pub(super) fn client_h2(e: h2::Error) -> ProxyError {
    ProxyError::ClientIo(io::Error::other(e))
}

/// Proxies the stream's request (its head parsed into `s.head`, its body
/// still in `body`) to an upstream of route `route_index`.
pub(super) async fn exchange(
    s: &mut Stream,
    route_index: usize,
    body: RecvStream,
    respond: &mut SendResponse<Bytes>,
) -> Outcome {
    let worker = s.shared.worker.clone();
    let gen = s.gen.clone();
    let (mut retries, mut picked) = Retries::start(
        (&worker, &gen),
        route_index,
        (&s.head, &s.down),
        &s.shared.client_ip,
        &mut s.tally,
    );
    let route = retries.route();
    let down = Down(RefCell::new(respond));
    let mut req = match down.or_reset(Outgoing::new(s, route, body)).await {
        None => return Outcome::Abort(reset()),
        Some(Err(outcome)) => return outcome,
        Some(Ok(req)) => req,
    };
    let mut bufs = Bufs::for_stream(&worker);
    loop {
        let upstream = &route.upstreams[picked];
        let (error, cause, reached) = match retries.admit(picked) {
            Err(limit) => (ProxyError::CircuitOpen(limit), None, false),
            Ok(_request) => {
                let at = (route, route_index);
                let tried_once = match upstream.protocol {
                    UpstreamProtocol::H1 => {
                        Either::Left(h1up::attempt(s, &down, &mut req, &mut bufs, at, upstream))
                    }
                    UpstreamProtocol::H2c | UpstreamProtocol::H2 => Either::Right(Box::pin(
                        passthrough::attempt(s, &down, &mut req, &mut bufs, at, upstream),
                    )),
                };
                match down.or_reset(tried_once).await {
                    None => return Outcome::Abort(reset()),
                    Some(Attempt::Head(up)) => {
                        let status = s.resp.status;
                        if let Some(next) =
                            retries.after_status(status, req.standing(), &mut s.tally)
                        {
                            // Not read further: the connection or stream
                            // closes.
                            drop(up);
                            picked = next;
                            continue;
                        }
                        // The request is over: a body still streaming
                        // upstream goes on in its relay.
                        drop(req);
                        s.tally.status = status;
                        if status == 429 {
                            s.tally.retry_after_us = retry_after_us(&s.resp, &bufs.up);
                        }
                        let at = (route_index, picked, retries.sticky_cookie(picked));
                        let respond = down.0.into_inner();
                        return match up {
                            Up::H1(up) => h1up::respond(s, respond, up, &mut bufs, at).await,
                            Up::H2(up) => passthrough::respond(s, respond, up, &bufs, at).await,
                        };
                    }
                    Some(Attempt::Failed {
                        error,
                        cause,
                        reached,
                    }) => (error, cause, reached),
                    Some(Attempt::Abort(e)) => return Outcome::Abort(e),
                }
            }
        };
        let failure = (&error, cause, reached);
        match retries.after_failure(failure, req.standing(), &mut s.tally) {
            Some(next) => picked = next,
            None => return Outcome::Failed(error),
        }
    }
}
