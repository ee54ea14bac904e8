//! One client connection: read a request head, route it, hand it to the
//! exchange with an upstream, and loop for keep-alive and pipelining.
//!
//! `down` holds the bytes read from the client that are not consumed yet:
//! the current request's head (parsed in place), any body bytes that came
//! with it, and pipelined requests behind it.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use monoio::io::Canceller;
use monoio::net::TcpStream;

use super::exchange::{self, Exchange};
use super::io::{within, IoFail};
use super::tally::Tally;
use super::transport::Transport;
use crate::align::router::{Field, Target};
use crate::clock;
use crate::error::ProxyError;
use crate::flow::{Edits, Flow, Headers, Reply, RequestCx, State};
use crate::memory::{Config, Upstream};
use crate::proto::h1::head::{error_response, overloaded_response, CertHeader, Forwarded};
use crate::proto::h1::{parse_request, BodyKind, RequestHead, ResponseHead};
use crate::runtime::generation::Gen;
use crate::runtime::worker::Worker;
use crate::sense::access_log::AccessLog;

const INITIAL_BUF: usize = 4096;

/// What happens to the connection after a request.
pub(crate) enum Next {
    KeepAlive,
    Close,
    /// Idle past `PARK_AFTER`: hand the socket to a parked wait.
    Park,
    /// A 101 went out: the connection is a tunnel from now on.
    Tunnel(exchange::Upgraded),
    /// The client opened with the HTTP/2 preface (h2c, prior knowledge).
    H2,
}

/// After this long without a byte, an idle client connection gives back
/// its buffers and request state and waits for readability (no buffer) in
/// a small task of its own; busy keep-alive connections never get there.
const PARK_AFTER: Duration = Duration::from_secs(1);

/// A client connection idle past `PARK_AFTER`.
pub(crate) struct Parked {
    client: Transport,
    peer: SocketAddr,
    /// What is left of the keep-alive timeout.
    idle_left: Duration,
    /// No request was read on the connection yet: its first bytes may be
    /// the HTTP/2 preface.
    first: bool,
}

/// Serves one client connection (panics stay in it), parking it while idle.
pub(crate) async fn connection(client: Transport, peer: SocketAddr, worker: Rc<Worker>) {
    resume(client, peer, worker, true).await
}

/// As `connection`; `first`: no request was read on it yet.
async fn resume(client: Transport, peer: SocketAddr, worker: Rc<Worker>, first: bool) {
    let id = worker.id;
    let served = AssertUnwindSafe(serve(client, peer, worker.clone(), first))
        .catch_unwind()
        .await;
    match served {
        Ok(Ended::Parked(parked)) => {
            // A separate, small task: this one (and its large future) ends.
            monoio::spawn(park(parked, worker));
        }
        // The same, for the connection's life.
        Ok(Ended::H2(tcp, early)) => super::h2::spawn_plain(tcp, early, peer, worker),
        Ok(Ended::Closed) => worker.connection_closed(),
        // The panic hook has printed the message; the worker goes on.
        Err(_) => {
            worker.connection_closed();
            tracing::error!(worker = id, %peer, "connection task panicked; connection closed")
        }
    }
}

async fn park(p: Parked, worker: Rc<Worker>) {
    if let Some(Ok(())) = within(p.idle_left, p.client.readable()).await {
        if !worker.stopping.get() {
            monoio::spawn(resume(p.client, p.peer, worker, p.first));
            return;
        }
    }
    worker.connection_closed();
}

/// How [`serve`] left a connection.
enum Ended {
    /// Closed (or cut off).
    Closed,
    /// Idle past `PARK_AFTER`.
    Parked(Parked),
    /// The client opened with the HTTP/2 preface; `early`: the bytes read.
    H2(TcpStream, Vec<u8>),
}

/// Serves requests until the connection closes, idles, or turns out to
/// speak HTTP/2.
async fn serve(client: Transport, peer: SocketAddr, worker: Rc<Worker>, first: bool) -> Ended {
    // (TLS streams had theirs set before the handshake.)
    if let Transport::Plain(s) = &client {
        let _ = s.set_nodelay(true);
    }
    let mut conn = Conn {
        client,
        client_ip: peer.ip().to_string(),
        peer_ip: peer.ip(),
        down: Vec::with_capacity(INITIAL_BUF),
        head: RequestHead::default(),
        resp: ResponseHead::default(),
        canceller: Canceller::new(),
        tally: Tally::new(worker.clone()),
        request_id: None,
        set_sticky: None,
        route: 0,
        upstream: 0,
        edits: Edits::default(),
        resp_edits: Edits::default(),
        flow: State::default(),
        gen: worker.gen(),
        worker,
        first,
    };
    loop {
        match conn.one().await {
            Next::KeepAlive => {}
            Next::Close => {
                conn.client.close().await;
                return Ended::Closed;
            }
            Next::Tunnel(up) => {
                let early = std::mem::take(&mut conn.down);
                // The config the upgrade was made under sets the timeout.
                let idle = conn.gen.config.proxy.tunnel_idle_timeout;
                let how = (&conn.worker, idle);
                match conn.client {
                    Transport::Plain(mut tcp) => {
                        let ends = super::tunnel::halves(&mut tcp);
                        super::tunnel::run(ends, early, up, how).await;
                    }
                    Transport::Tls(tls) => {
                        let ends = super::tunnel::tls_halves(*tls);
                        super::tunnel::run(ends, early, up, how).await;
                    }
                }
                return Ended::Closed;
            }
            Next::H2 => {
                // Only plain connections get here (see `read_head`).
                return match conn.client {
                    Transport::Plain(tcp) => Ended::H2(tcp, conn.down),
                    Transport::Tls(_) => Ended::Closed,
                };
            }
            Next::Park => {
                conn.client.park();
                let idle_left = conn
                    .gen
                    .config
                    .server
                    .keepalive_timeout
                    .saturating_sub(PARK_AFTER);
                return Ended::Parked(Parked {
                    client: conn.client,
                    peer,
                    idle_left,
                    first: conn.first,
                });
            }
        }
    }
}

pub(crate) struct Conn {
    pub(crate) client: Transport,
    pub(crate) client_ip: String,
    pub(crate) peer_ip: std::net::IpAddr,
    pub(crate) down: Vec<u8>,
    pub(crate) head: RequestHead,
    pub(crate) resp: ResponseHead,
    canceller: Canceller,
    pub(crate) tally: Tally,
    /// The id generated for the current request, if it came without one.
    pub(crate) request_id: Option<[u8; 32]>,
    /// A sticky route's (route, upstream) to name in a `Set-Cookie` on
    /// this response.
    pub(crate) set_sticky: Option<(usize, usize)>,
    /// The route and upstream of the response being sent.
    pub(crate) route: usize,
    pub(crate) upstream: usize,
    /// Filter edits of the head sent upstream, and of the response head.
    pub(crate) edits: Edits,
    pub(crate) resp_edits: Edits,
    /// What the route's filters share between the two phases.
    pub(crate) flow: State,
    /// The generation of the request in progress (the current one when
    /// the request's head was read).
    pub(crate) gen: Rc<Gen>,
    pub(crate) worker: Rc<Worker>,
    /// No request head was read on the connection yet.
    first: bool,
}

/// Why no request head was read.
enum HeadError {
    /// Close quietly (EOF, idle timeout, stopping).
    Close,
    /// Idle: park the connection.
    Park,
    /// Answer with this status, then close.
    Reply(u16),
    /// The connection opened with the HTTP/2 preface.
    H2,
}

/// Counts a request in flight for graceful shutdown, even across a panic.
pub(crate) struct InFlight(Rc<Worker>);

impl InFlight {
    pub(crate) fn new(w: &Rc<Worker>) -> InFlight {
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
    /// What the head sent to `upstream` adds and drops (the client's
    /// address and scheme, the filters' edits, the request id, the client
    /// certificate header).
    pub(crate) fn forwarded<'a>(&'a self, upstream: &'a Upstream) -> Forwarded<'a> {
        Forwarded {
            client_ip: self.client_ip.as_bytes(),
            proto: if self.client.is_tls() {
                b"https"
            } else {
                b"http"
            },
            extra: self.edits.lines(),
            drop: self.edits.removed(),
            default_host: upstream.authority.as_bytes(),
            request_id: self.request_id.as_ref().map_or(&[], |id| &id[..]),
            client_cert: CertHeader {
                strip: &self.gen.config.client_cert_headers,
                line: self.client.client_cert(),
            },
        }
    }

    async fn one(&mut self) -> Next {
        let read = self.read_head().await;
        // The request runs under the config current now, to its end.
        self.gen = self.worker.gen();
        match read {
            Ok(()) => {}
            Err(HeadError::Close) => return Next::Close,
            Err(HeadError::Park) => return Next::Park,
            Err(HeadError::H2) => return Next::H2,
            Err(HeadError::Reply(status)) => {
                // No head to speak of: counted on DAO's own slot.
                self.tally.start(b"", &self.gen);
                if self.worker.access_log.is_some() {
                    AccessLog::begin_line(&mut self.tally.log_scratch, b"-", b"-", b"-");
                }
                return self.reply_error(status, true).await;
            }
        }
        self.first = false;
        let _in_flight = InFlight::new(&self.worker);
        let w = self.worker.clone();
        let gen = self.gen.clone();
        let config = &gen.config;
        let buf = &self.down;
        let head = &self.head;
        self.tally.start(head.method.get(buf), &gen);
        self.tally.bytes_in = head.head_len as u64;
        // The request id: the client's, or a new one sent upstream.
        self.request_id = None;
        let mut client_id: &[u8] = b"";
        if w.request_ids.is_some() || w.access_log.is_some() {
            if let Some(h) = head
                .headers
                .iter()
                .find(|h| h.name.get(buf).eq_ignore_ascii_case(b"x-request-id"))
            {
                client_id = h.value.get(buf);
            } else if let Some(ids) = &w.request_ids {
                self.request_id = Some(ids.next());
            }
        }
        if w.access_log.is_some() {
            let id = self.request_id.as_ref().map_or(client_id, |id| &id[..]);
            let id: &[u8] = if id.is_empty() { b"-" } else { id };
            let target = head.target.get(buf);
            AccessLog::begin_line(
                &mut self.tally.log_scratch,
                id,
                head.method.get(buf),
                target,
            );
        }
        let Some(route) = find_route(config, head, buf) else {
            self.consume(self.head.head_len);
            let close = self.must_close_on_error();
            return self.reply_error(ProxyError::NoRoute.status(), close).await;
        };
        self.edits.clear();
        self.resp_edits.clear();
        self.flow.clear();
        if !gen.chains[route].is_empty() {
            if let Some(reply) = self.filter_request(route) {
                return self.reply(reply).await;
            }
        }
        let outcome = Exchange::run(self, route).await;
        match &outcome {
            exchange::Outcome::Done { .. } => {
                let status = self.tally.status;
                self.tally.finish(status, None, &self.client_ip);
            }
            // Recorded with the error page, below.
            exchange::Outcome::Failed(_) => {}
            // The request ends with the 101 (its latency: time to the 101).
            exchange::Outcome::Upgraded(_) => self.tally.finish(101, None, &self.client_ip),
            exchange::Outcome::Abort(e) => {
                let status = self.tally.status;
                self.tally.finish(status, Some(e), &self.client_ip);
            }
        }
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
                self.reply_error_for(e.status(), close, Some(&e)).await
            }
            exchange::Outcome::Abort(e) => {
                tracing::debug!(worker = self.worker.id, error = %e, "connection cut mid-exchange");
                Next::Close
            }
            exchange::Outcome::Upgraded(up) => Next::Tunnel(up),
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
        self.reply_error_for(status, close, None).await
    }

    /// As `reply_error`, recording the request with the error that caused
    /// it.
    async fn reply_error_for(
        &mut self,
        status: u16,
        close: bool,
        error: Option<&ProxyError>,
    ) -> Next {
        let limit = self.gen.config.proxy.read_timeout;
        let page = match error {
            Some(ProxyError::CircuitOpen(_)) => overloaded_response(close),
            _ => error_response(status, close),
        };
        self.tally.bytes_out += page.len() as u64;
        self.tally.finish(status, error, &self.client_ip);
        if self.client.write_static(page, limit).await.is_err() || close {
            return Next::Close;
        }
        Next::KeepAlive
    }

    /// Runs route `route`'s request filters; `Some` when one answers.
    fn filter_request(&mut self, route: usize) -> Option<Reply> {
        let client = Client {
            ip: self.peer_ip,
            ip_text: &self.client_ip,
            request_id: self.request_id.as_ref().map_or(&[], |id| &id[..]),
        };
        request_filters(
            (&self.worker, &self.gen, route),
            (&self.head, &self.down),
            &client,
            (&mut self.edits, &mut self.flow),
        )
    }

    /// Sends a filter's reply. The connection stays open only when the
    /// request had no body still unread.
    async fn reply(&mut self, reply: Reply) -> Next {
        self.consume(self.head.head_len);
        // A body the upstream never read is still on the wire: close.
        let close = !self.head.keep_alive
            || self.worker.stopping.get()
            || self.head.body != BodyKind::Empty;
        let mut out = Vec::with_capacity(128 + reply.headers.len() + reply.body.len());
        let mut code = itoa::Buffer::new();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(code.format(reply.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(crate::proto::h1::head::reason(reply.status).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&reply.headers);
        let typed = reply
            .headers
            .split(|&b| b == b'\n')
            .any(|l| l.len() >= 13 && l[..13].eq_ignore_ascii_case(b"content-type:"));
        if !typed && !reply.body.is_empty() {
            out.extend_from_slice(b"Content-Type: text/plain\r\n");
        }
        let no_body =
            reply.status == 204 || reply.status == 304 || (100..200).contains(&reply.status);
        if !no_body {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(code.format(reply.body.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !no_body && !self.head.is_head {
            out.extend_from_slice(&reply.body);
        }
        self.tally.bytes_out += out.len() as u64;
        self.tally.finish(reply.status, None, &self.client_ip);
        let limit = self.gen.config.proxy.read_timeout;
        if self.client.write_all(&mut out, limit).await.is_err() || close {
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
    async fn read_head(&mut self) -> Result<(), HeadError> {
        // Between requests, the config may change: read under the newest.
        let gen = self.worker.gen();
        let server = &gen.config.server;
        let (limit, header_timeout, idle_timeout) = (
            server.max_header_bytes,
            server.header_read_timeout,
            server.keepalive_timeout,
        );
        let mut deadline: Option<Instant> = None;
        loop {
            if !self.down.is_empty() {
                match parse_request(&self.down, &mut self.head) {
                    Ok(Some(())) if self.head.head_len > limit => {
                        return Err(HeadError::Reply(431))
                    }
                    Ok(Some(())) => return Ok(()),
                    Ok(None) if self.down.len() >= limit => return Err(HeadError::Reply(431)),
                    Ok(None) => {}
                    // "PRI * HTTP/2.0": h2c with prior knowledge. (A
                    // plain connection's first bytes only; not a valid
                    // HTTP/1 request, so looked for only once it fails.)
                    Err(_)
                        if self.first
                            && !self.client.is_tls()
                            && super::h2::is_preface(&self.down) =>
                    {
                        return Err(HeadError::H2)
                    }
                    Err(e) => return Err(HeadError::Reply(e.status())),
                }
                // The slowloris clock starts with the head's first byte.
                deadline.get_or_insert_with(|| clock::now() + header_timeout);
            } else if self.worker.stopping.get() {
                return Err(HeadError::Close);
            }
            let wait = match deadline {
                None => idle_timeout,
                Some(d) => match d.checked_duration_since(clock::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Err(HeadError::Reply(408)),
                },
            };
            if self.down.len() == self.down.capacity() {
                let grow = self.down.capacity().max(INITIAL_BUF);
                self.down
                    .reserve(grow.min(limit + 1 - self.down.len().min(limit)));
            }
            if deadline.is_none() && self.down.is_empty() && idle_timeout > PARK_AFTER {
                // Between requests: a long wait parks the connection.
                let read =
                    self.client
                        .read_or_give_up(&mut self.down, PARK_AFTER, &mut self.canceller);
                match read.await {
                    Ok(_) => continue,
                    Err(IoFail::Timeout) => return Err(HeadError::Park),
                    Err(_) => return Err(HeadError::Close),
                }
            }
            match self.client.read_more(&mut self.down, wait).await {
                Ok(_) => {}
                Err(IoFail::Timeout) if deadline.is_some() => return Err(HeadError::Reply(408)),
                Err(_) => return Err(HeadError::Close),
            }
        }
    }
}

/// The route a request head (parsed from `buf`) takes, if any.
pub(crate) fn find_route(config: &Config, head: &RequestHead, buf: &[u8]) -> Option<usize> {
    let target = Target {
        host: head.host.get(buf),
        path: head.path.get(buf),
        method: head.method.get(buf),
    };
    config
        .router
        .find(target, |field, name, value| match field {
            Field::Header => head
                .headers
                .iter()
                .any(|h| h.name.get(buf).eq_ignore_ascii_case(name) && h.value.get(buf) == value),
            Field::Cookie => Headers::of_request(head, buf).cookie(name) == Some(value),
        })
}

/// Who sent a request, as its filters see it.
pub(crate) struct Client<'a> {
    pub(crate) ip: std::net::IpAddr,
    pub(crate) ip_text: &'a str,
    /// The request id sent upstream (empty: none).
    pub(crate) request_id: &'a [u8],
}

/// Runs route `route`'s request filters on a request head (parsed from
/// `buf`); `Some` when one answers.
pub(crate) fn request_filters(
    (w, gen, route): (&Worker, &Gen, usize),
    (head, buf): (&RequestHead, &[u8]),
    client: &Client<'_>,
    (edits, state): (&mut Edits, &mut State),
) -> Option<Reply> {
    let chain = &gen.chains[route];
    let mut cx = RequestCx {
        method: head.method.get(buf),
        path: head.path.get(buf),
        headers: Headers::of_request(head, buf),
        content_length: match head.body {
            BodyKind::Length(n) => Some(n),
            _ => None,
        },
        has_body: head.body != BodyKind::Empty,
        client_ip: client.ip,
        now_us: if chain.clock() { w.now_us() } else { 0 },
        now_unix_secs: if chain.wall_clock() {
            crate::clock::unix_secs()
        } else {
            0
        },
        client_ip_text: client.ip_text,
        request_id: client.request_id,
        route: &gen.config.routes[route].name,
        edits,
        state,
    };
    match chain.request(&mut cx) {
        Flow::Continue => None,
        Flow::Reply(r) => Some(r),
    }
}
