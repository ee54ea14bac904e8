//! One client connection: read a request head, route it, hand it to the
//! exchange with an upstream, and loop for keep-alive and pipelining.
//!
//! `down` holds the bytes read from the client that are not consumed yet:
//! the current request's head (parsed in place), any body bytes that came
//! with it, and pipelined requests behind it.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use monoio::net::TcpStream;

use super::exchange::{self, Exchange};
use super::io::{read_more, write_static, IoFail};
use crate::align::router::Target;
use crate::clock;
use crate::error::ProxyError;
use crate::proto::h1::head::error_response;
use crate::proto::h1::{parse_request, BodyKind, RequestHead, ResponseHead};
use crate::runtime::worker::Worker;

const INITIAL_BUF: usize = 4096;

/// What happens to the connection after a request.
pub(crate) enum Next {
    KeepAlive,
    Close,
}

/// Serves one client connection until it closes.
pub(crate) async fn serve(client: TcpStream, peer: SocketAddr, worker: Rc<Worker>) {
    let _ = client.set_nodelay(true);
    let mut conn = Conn {
        client,
        client_ip: peer.ip().to_string(),
        down: Vec::with_capacity(INITIAL_BUF),
        head: RequestHead::default(),
        resp: ResponseHead::default(),
        worker,
    };
    while let Next::KeepAlive = conn.one().await {}
}

pub(crate) struct Conn {
    pub(crate) client: TcpStream,
    pub(crate) client_ip: String,
    pub(crate) down: Vec<u8>,
    pub(crate) head: RequestHead,
    pub(crate) resp: ResponseHead,
    pub(crate) worker: Rc<Worker>,
}

/// Counts a request in flight for graceful shutdown, even across a panic.
struct InFlight(Rc<Worker>);

impl InFlight {
    fn new(w: &Rc<Worker>) -> InFlight {
        w.in_flight.set(w.in_flight.get() + 1);
        InFlight(w.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
        self.0.finished();
    }
}

impl Conn {
    async fn one(&mut self) -> Next {
        match self.read_head().await {
            Ok(()) => {}
            Err(None) => return Next::Close,
            Err(Some(status)) => return self.reply_error(status, true).await,
        }
        let _in_flight = InFlight::new(&self.worker);
        let w = self.worker.clone();
        let config = &w.config;
        let buf = &self.down;
        let head = &self.head;
        let target = Target {
            host: head.host.get(buf),
            path: head.path.get(buf),
            method: head.method.get(buf),
        };
        let found = config.router.find(target, |name, value| {
            head.headers
                .iter()
                .any(|h| h.name.get(buf).eq_ignore_ascii_case(name) && h.value.get(buf) == value)
        });
        let Some(route) = found else {
            self.consume(self.head.head_len);
            let close = self.must_close_on_error();
            return self.reply_error(ProxyError::NoRoute.status(), close).await;
        };
        let outcome = Exchange::run(self, route).await;
        match outcome {
            exchange::Outcome::Done { keep_alive, .. } => {
                if !keep_alive || !self.head.keep_alive || self.worker.stopping.get() {
                    return Next::Close;
                }
                Next::KeepAlive
            }
            exchange::Outcome::Failed(e) => {
                tracing::debug!(worker = self.worker.id, error = %e, "request failed before the response");
                let close = self.must_close_on_error();
                self.reply_error(e.status(), close).await
            }
            exchange::Outcome::Abort(e) => {
                tracing::debug!(worker = self.worker.id, error = %e, "connection cut mid-exchange");
                Next::Close
            }
        }
    }

    /// After an error reply, the connection can stay open only when the
    /// request had no body still to be read, and was not HEAD (the canned
    /// page has a body that a HEAD client would take for the next response).
    fn must_close_on_error(&self) -> bool {
        !self.head.keep_alive
            || self.worker.stopping.get()
            || self.head.body != BodyKind::Empty
            || self.head.is_head
    }

    /// Sends an error page; keeps the connection when allowed (the
    /// request's head has been consumed by then).
    async fn reply_error(&mut self, status: u16, close: bool) -> Next {
        let limit = self.worker.config.proxy.read_timeout;
        if write_static(&mut self.client, error_response(status, close), limit)
            .await
            .is_err()
            || close
        {
            return Next::Close;
        }
        Next::KeepAlive
    }

    /// Drops the first `n` bytes of `down` (pipelined bytes move up).
    pub(crate) fn consume(&mut self, n: usize) {
        if n >= self.down.len() {
            self.down.clear();
        } else {
            self.down.drain(..n);
        }
    }

    /// Reads until `down` starts with a complete head.
    /// `Err(None)`: close quietly; `Err(Some(status))`: answer, then close.
    async fn read_head(&mut self) -> Result<(), Option<u16>> {
        let server = &self.worker.config.server;
        let (limit, header_timeout, idle_timeout) = (
            server.max_header_bytes,
            server.header_read_timeout,
            server.keepalive_timeout,
        );
        let mut deadline: Option<Instant> = None;
        loop {
            if !self.down.is_empty() {
                match parse_request(&self.down, &mut self.head) {
                    Ok(Some(())) if self.head.head_len > limit => return Err(Some(431)),
                    Ok(Some(())) => return Ok(()),
                    Ok(None) if self.down.len() >= limit => return Err(Some(431)),
                    Ok(None) => {}
                    Err(e) => return Err(Some(e.status())),
                }
                // The slowloris clock starts with the head's first byte.
                deadline.get_or_insert_with(|| clock::now() + header_timeout);
            } else if self.worker.stopping.get() {
                return Err(None);
            }
            let wait = match deadline {
                None => idle_timeout,
                Some(d) => match d.checked_duration_since(clock::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Err(Some(408)),
                },
            };
            if self.down.len() == self.down.capacity() {
                let grow = self.down.capacity().max(INITIAL_BUF);
                self.down
                    .reserve(grow.min(limit + 1 - self.down.len().min(limit)));
            }
            match read_more(&mut self.client, &mut self.down, wait).await {
                Ok(_) => {}
                Err(IoFail::Timeout) if deadline.is_some() => return Err(Some(408)),
                Err(_) => return Err(None),
            }
        }
    }
}
