//! An HTTP/2 stream's request as its attempts share it: its body — none,
//! held whole, or streamed from the client by the one attempt that sends
//! it — and what happened on the stream that bears on retrying.
//!
//! Held whole, so that a retry can send it again: on a route with a retry
//! policy, the body of an idempotent request that declares a
//! `content-length` of at most `HOLD_MAX` bytes and does not ask for
//! `100 Continue` (that client waits for the 100 before it sends its
//! body) is read before the first attempt. Such a client sends its body
//! right behind the head, so the wait is one small body's transfer, and
//! only routes that asked for retries pay it. Every other body streams as
//! it comes, never buffered. This is the HTTP/1.1 path's rule in HTTP/2's
//! terms: there, a body is held when it came whole with the head, within
//! one read buffer.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::RecvStream;
use http::{HeaderMap, Response, StatusCode};

use super::stream::Stream;
use super::upstream::{client_h2, Down, Outcome};
use crate::error::ProxyError;
use crate::gate::io::within;
use crate::gate::retries::Standing;
use crate::memory::Route;
use crate::proto::h1::BodyKind;

/// Largest body held whole for retries.
pub(super) const HOLD_MAX: u64 = 64 * 1024;

/// A request body, as the attempts see it.
pub(super) enum Body {
    /// None (the head ended the stream, or declared a length of 0).
    Empty,
    /// Read whole: its data and trailers, sent by every attempt.
    Held {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    /// Still with the client: taken by the attempt that sends it (`None`
    /// from then on).
    Streamed(Option<RecvStream>),
}

/// The stream's request across its attempts.
pub(super) struct Outgoing {
    pub(super) body: Body,
    /// Idempotent and held whole (or without a body): it may be sent again
    /// after it reached an upstream.
    pub(super) replayable: bool,
    /// An interim response went to the client: the response started.
    pub(super) interim: bool,
    /// `100 Continue` was sent to the client.
    continued: bool,
    /// The route's deadline for the response head.
    pub(super) response_timeout: Duration,
}

impl Outgoing {
    /// The request of stream `s` on `route`, its `body` read whole first
    /// when the rule above holds it. `Err`: how the exchange ends (the
    /// client failed, stalled, or sent too much).
    pub(super) async fn new(
        s: &mut Stream,
        route: &Route,
        body: RecvStream,
    ) -> Result<Outgoing, Outcome> {
        let proxy = &s.gen.config.proxy;
        let (head, read_timeout) = (&s.head, proxy.read_timeout);
        let response_timeout = route.request_timeout.unwrap_or(proxy.response_timeout);
        let body = if body.is_end_stream() || head.body == BodyKind::Empty {
            Body::Empty
        } else if route.retry.is_some()
            && head.idempotent
            && !head.expect_continue
            && matches!(head.body, BodyKind::Length(n) if n <= HOLD_MAX)
        {
            hold(s, body, read_timeout).await?
        } else {
            Body::Streamed(Some(body))
        };
        Ok(Outgoing {
            replayable: s.head.idempotent && !matches!(body, Body::Streamed(_)),
            body,
            interim: false,
            continued: false,
            response_timeout,
        })
    }

    /// Where the request stands for a retry (see `gate::retries`).
    pub(super) fn standing(&self) -> Standing {
        Standing {
            replayable: self.replayable,
            spent: self.interim || matches!(self.body, Body::Streamed(None)),
        }
    }

    /// Sends `100 Continue` once, when the client asked for it and its
    /// body is still to come: as for HTTP/1.1 clients, the proxy answers
    /// `Expect` itself, once the upstream is connected (the header is not
    /// forwarded, and an upstream's own 100 is not passed on).
    pub(super) fn go_ahead(&mut self, s: &Stream, down: &Down<'_>) -> Result<(), ProxyError> {
        if !s.head.expect_continue
            || self.continued
            || !matches!(self.body, Body::Streamed(Some(_)))
        {
            return Ok(());
        }
        self.continued = true;
        let mut head = Response::new(());
        *head.status_mut() = StatusCode::CONTINUE;
        down.interim(head)
    }
}

/// Reads a body whole (within `max_body_bytes`), each piece's
/// flow-control capacity given back as it is taken.
async fn hold(s: &mut Stream, mut body: RecvStream, limit: Duration) -> Result<Body, Outcome> {
    let mut data = BytesMut::new();
    loop {
        let chunk = match within(limit, body.data()).await {
            None => return Err(Outcome::Failed(ProxyError::ClientTimeout)),
            Some(None) => break,
            Some(Some(Err(e))) => return Err(Outcome::Abort(client_h2(e))),
            Some(Some(Ok(chunk))) => chunk,
        };
        let n = chunk.len();
        s.tally.bytes_in += n as u64;
        let _ = body.flow_control().release_capacity(n);
        if s.flow
            .body_limit
            .is_some_and(|max| (data.len() + n) as u64 > max)
        {
            return Err(Outcome::Failed(ProxyError::BadRequest(
                "request body too large",
                413,
            )));
        }
        if data.is_empty() && body.is_end_stream() {
            // The usual case, one DATA frame: kept as it came.
            return Ok(Body::Held {
                data: chunk,
                trailers: None,
            });
        }
        data.extend_from_slice(&chunk);
    }
    let trailers = if body.is_end_stream() {
        None
    } else {
        match within(limit, body.trailers()).await {
            None => return Err(Outcome::Failed(ProxyError::ClientTimeout)),
            Some(Err(e)) => return Err(Outcome::Abort(client_h2(e))),
            Some(Ok(t)) => t,
        }
    };
    Ok(Body::Held {
        data: data.freeze(),
        trailers,
    })
}
