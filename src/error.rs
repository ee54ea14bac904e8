//! The proxy's error type: where a failure came from, whether the request
//! may be retried, and the status code the client is answered with.

use std::io;

use crate::align::breaker::Limit;

/// Which side of the proxy a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client connection.
    Downstream,
    /// The upstream connection.
    Upstream,
    /// The proxy itself.
    Internal,
}

/// A failure while proxying one request.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The client sent something unacceptable.
    #[error("bad request: {0}")]
    BadRequest(&'static str, u16),
    /// The client went away or its socket failed.
    #[error("client i/o: {0}")]
    ClientIo(io::Error),
    /// The client was too slow.
    #[error("client timed out")]
    ClientTimeout,
    /// No route matches the request.
    #[error("no route")]
    NoRoute,
    /// The route has no upstream to use.
    #[error("no usable upstream")]
    NoUpstream,
    /// Connecting to the upstream failed.
    #[error("upstream connect: {0}")]
    Connect(io::Error),
    /// The upstream failed before sending a complete response head.
    #[error("upstream i/o before response: {0}")]
    UpstreamBeforeResponse(io::Error),
    /// The upstream sent an invalid response.
    #[error("invalid upstream response: {0}")]
    BadResponse(&'static str),
    /// The upstream failed after the response started (the client
    /// connection is cut, nothing else can be said).
    #[error("upstream i/o mid-response: {0}")]
    UpstreamMidResponse(io::Error),
    /// Connecting or waiting for the upstream took too long.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The upstream's circuit breaker refused the request (this limit is
    /// reached on this core).
    #[error("circuit breaker open: {}", .0.name())]
    CircuitOpen(Limit),
}

impl ProxyError {
    /// Which side the failure came from.
    pub fn origin(&self) -> Origin {
        match self {
            ProxyError::BadRequest(..) | ProxyError::ClientIo(_) | ProxyError::ClientTimeout => {
                Origin::Downstream
            }
            ProxyError::NoRoute | ProxyError::NoUpstream | ProxyError::CircuitOpen(_) => {
                Origin::Internal
            }
            _ => Origin::Upstream,
        }
    }

    /// Whether the request may be sent again (it never reached an upstream).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect(_)
                | ProxyError::UpstreamBeforeResponse(_)
                | ProxyError::CircuitOpen(_)
        )
    }

    /// The status code the client gets, if a response can still be sent.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::BadRequest(_, status) => *status,
            ProxyError::ClientIo(_) => 400,
            ProxyError::ClientTimeout => 408,
            ProxyError::NoRoute => 404,
            ProxyError::NoUpstream | ProxyError::CircuitOpen(_) => 503,
            ProxyError::Connect(_)
            | ProxyError::UpstreamBeforeResponse(_)
            | ProxyError::BadResponse(_)
            | ProxyError::UpstreamMidResponse(_) => 502,
            ProxyError::UpstreamTimeout => 504,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_origins() {
        let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(ProxyError::Connect(refused()).status(), 502);
        assert!(ProxyError::Connect(refused()).retryable());
        assert!(!ProxyError::UpstreamMidResponse(refused()).retryable());
        assert_eq!(ProxyError::UpstreamTimeout.status(), 504);
        assert_eq!(ProxyError::NoUpstream.status(), 503);
        let open = ProxyError::CircuitOpen(Limit::Requests);
        assert_eq!(open.status(), 503);
        assert_eq!(open.origin(), Origin::Internal);
        assert_eq!(open.to_string(), "circuit breaker open: max_requests");
        assert_eq!(ProxyError::NoRoute.status(), 404);
        assert_eq!(ProxyError::BadRequest("x", 431).status(), 431);
        assert_eq!(ProxyError::ClientTimeout.origin(), Origin::Downstream);
        assert_eq!(ProxyError::BadResponse("x").origin(), Origin::Upstream);
    }
}
