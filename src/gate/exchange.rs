//! One request/response exchange with an upstream: pick it, send the head
//! and stream the request body, read the response head, stream the
//! response body back, and return the connection to the pool when both
//! sides ended cleanly.

use std::rc::Rc;
use std::time::Duration;

use monoio::net::TcpStream;

use super::conn::Conn;
use super::io::{read_more, write_all, write_range, write_static, IoFail};
use crate::clock;
use crate::error::ProxyError;
use crate::memory::Upstream;
use crate::proto::h1::head::{write_request_head, write_response_head, DownFraming, Forwarded};
use crate::proto::h1::response::is_interim;
use crate::proto::h1::{parse_response, BodyKind, BodyState, ResponseHead};
use crate::runtime::worker::Worker;
use crate::upstream::pool::ConnectError;

/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
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
}

/// Buffers borrowed from the worker for one exchange, returned on drop.
struct Bufs {
    worker: Rc<Worker>,
    out: Vec<u8>,
    up: Vec<u8>,
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
        let route = &worker.config.routes[route_index];
        let picked = worker.pick(route_index);
        let upstream = &route.upstreams[picked];
        conn.tally.picked(route_index, picked);
        let mut bufs = Bufs {
            worker: worker.clone(),
            out: worker.take_buf(),
            up: worker.take_buf(),
        };

        // The head sent upstream, and whatever body bytes came with it.
        let fwd = Forwarded {
            client_ip: conn.client_ip.as_bytes(),
            proto: b"http",
            extra: &route.request_headers,
            default_host: upstream.authority.as_bytes(),
            request_id: conn.request_id.as_ref().map_or(&[], |id| &id[..]),
        };
        write_request_head(&mut bufs.out, &conn.down, &conn.head, &fwd);
        let head_len = conn.head.head_len;
        let mut req_body = BodyState::new(conn.head.body);
        let prefix = &conn.down[head_len..];
        let used = match req_body.advance(prefix, |_| {}) {
            Ok(n) => n,
            Err(_) => return Outcome::Failed(ProxyError::BadRequest("invalid chunked body", 400)),
        };
        bufs.out.extend_from_slice(&prefix[..used]);
        conn.tally.bytes_in += used as u64;
        conn.consume(head_len + used);
        // A request held whole in `out` can be sent again on a fresh
        // connection if a pooled one turns out to be dead.
        let replayable = conn.head.idempotent && req_body.is_done();

        let proxy = &worker.config.proxy;
        let (mut up, mut reused) = match worker.pool.take(upstream.pool, worker.coarse_now.get()) {
            Some(s) => (s, true),
            None => match connect(&worker, upstream).await {
                Ok(s) => (s, false),
                Err(e) => return Outcome::Failed(e),
            },
        };
        if conn.head.expect_continue && !req_body.is_done() && conn.head.minor_version == 1 {
            let r = write_static(
                &mut conn.client,
                b"HTTP/1.1 100 Continue\r\n\r\n",
                proxy.read_timeout,
            )
            .await;
            if let Err(e) = r {
                return Outcome::Abort(ProxyError::ClientIo(e.into_io()));
            }
        }
        let mut sent = write_all(&mut up, &mut bufs.out, proxy.read_timeout).await;
        // (A timed-out write took the buffer with it: no retry then.)
        if matches!(sent, Err(IoFail::Eof | IoFail::Io(_))) && reused && replayable {
            up = match connect(&worker, upstream).await {
                Ok(s) => s,
                Err(e) => return Outcome::Failed(e),
            };
            reused = false;
            sent = write_all(&mut up, &mut bufs.out, proxy.read_timeout).await;
        }
        if let Err(e) = sent {
            return Outcome::Failed(upstream_error(e));
        }

        // The rest of the request body, read into `down` and forwarded from
        // there; bytes past its end stay for the next request.
        while !req_body.is_done() {
            if conn.down.capacity() - conn.down.len() < 1024 {
                conn.down.reserve(16 * 1024);
            }
            match read_more(&mut conn.client, &mut conn.down, proxy.read_timeout).await {
                Ok(_) => {}
                Err(IoFail::Timeout) => return Outcome::Failed(ProxyError::ClientTimeout),
                Err(e) => return Outcome::Abort(ProxyError::ClientIo(e.into_io())),
            }
            let used = match req_body.advance(&conn.down, |_| {}) {
                Ok(n) => n,
                Err(_) => {
                    return Outcome::Failed(ProxyError::BadRequest("invalid chunked body", 400))
                }
            };
            conn.tally.bytes_in += used as u64;
            if let Err(e) = write_range(&mut up, &mut conn.down, 0..used, proxy.read_timeout).await
            {
                return Outcome::Failed(upstream_error(e));
            }
            conn.consume(used);
        }

        // The response head; interim responses pass or drop on the way.
        let mut resp = std::mem::take(&mut conn.resp);
        let outcome = Self::respond(
            conn,
            &worker,
            &mut bufs,
            &mut up,
            &mut resp,
            (reused && replayable, upstream),
        )
        .await;
        conn.resp = resp;
        if let Outcome::Done { reuse: true, .. } = &outcome {
            if conn.resp.keep_alive && !worker.stopping.get() {
                worker.pool.put(upstream.pool, up, worker.coarse_now.get());
            }
        }
        outcome
    }

    /// Reads the response and streams it to the client.
    async fn respond(
        conn: &mut Conn,
        worker: &Rc<Worker>,
        bufs: &mut Bufs,
        up: &mut TcpStream,
        resp: &mut ResponseHead,
        (mut can_retry, upstream): (bool, &Upstream),
    ) -> Outcome {
        let proxy = &worker.config.proxy;
        // The first wait gets the whole timeout; only a head that needs more
        // reads pays for reading the clock again.
        let started = clock::now();
        let mut left = proxy.response_timeout;
        loop {
            if !bufs.up.is_empty() {
                match parse_response(&bufs.up, conn.head.is_head, resp) {
                    Ok(Some(())) if is_interim(resp.status) => {
                        let n = resp.head_len;
                        // 100 was ours to send (or not); others go to 1.1 clients.
                        if resp.status != 100 && conn.head.minor_version == 1 {
                            conn.tally.bytes_out += n as u64;
                            if let Err(e) = write_range(
                                &mut conn.client,
                                &mut bufs.up,
                                0..n,
                                proxy.read_timeout,
                            )
                            .await
                            {
                                return Outcome::Abort(ProxyError::ClientIo(e.into_io()));
                            }
                        }
                        bufs.up.drain(..n);
                        continue;
                    }
                    Ok(Some(())) if resp.status == 101 || resp.status < 100 => {
                        return Outcome::Failed(ProxyError::BadResponse("unexpected status"));
                    }
                    Ok(Some(())) => break,
                    Ok(None) if bufs.up.len() >= MAX_RESPONSE_HEAD => {
                        return Outcome::Failed(ProxyError::BadResponse("response head too large"));
                    }
                    Ok(None) => {}
                    Err(_) => {
                        return Outcome::Failed(ProxyError::BadResponse("malformed response head"))
                    }
                }
            }
            if left.is_zero() {
                left = proxy
                    .response_timeout
                    .saturating_sub(clock::now().saturating_duration_since(started));
                if left.is_zero() {
                    return Outcome::Failed(ProxyError::UpstreamTimeout);
                }
            }
            if bufs.up.len() == bufs.up.capacity() {
                bufs.up.reserve(bufs.up.capacity().max(4096));
            }
            let read = read_more(up, &mut bufs.up, left).await;
            // Any further read of this head gets what is left of the timeout.
            left = Duration::ZERO;
            match read {
                Ok(_) => {}
                Err(IoFail::Timeout) => return Outcome::Failed(ProxyError::UpstreamTimeout),
                Err(e) if can_retry && bufs.up.is_empty() => {
                    // A pooled connection the upstream had closed: once more
                    // on a fresh one.
                    tracing::debug!(error = ?e, "pooled upstream connection was dead; retrying");
                    can_retry = false;
                    *up = match connect(worker, upstream).await {
                        Ok(s) => s,
                        Err(e) => return Outcome::Failed(e),
                    };
                    if let Err(e) = write_all(up, &mut bufs.out, proxy.read_timeout).await {
                        return Outcome::Failed(upstream_error(e));
                    }
                }
                Err(e) => return Outcome::Failed(upstream_error(e)),
            }
        }

        let dechunk = resp.body == BodyKind::Chunked && conn.head.minor_version == 0;
        let framing = if dechunk {
            DownFraming::Dechunk
        } else {
            DownFraming::Same
        };
        let close = !conn.head.keep_alive
            || worker.stopping.get()
            || resp.body == BodyKind::UntilClose
            || dechunk;
        bufs.out.clear();
        write_response_head(
            &mut bufs.out,
            &bufs.up,
            resp,
            conn.head.minor_version,
            framing,
            close,
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
        conn.tally.bytes_out += (bufs.out.len() + if direct { used } else { 0 }) as u64;
        if let Err(e) = write_all(&mut conn.client, &mut bufs.out, limit).await {
            return Outcome::Abort(ProxyError::ClientIo(e.into_io()));
        }
        if direct {
            if let Err(e) =
                write_range(&mut conn.client, &mut bufs.up, start..start + used, limit).await
            {
                return Outcome::Abort(ProxyError::ClientIo(e.into_io()));
            }
        }
        // Anything past the body is garbage from the upstream: do not pool.
        let mut clean = start + used == bufs.up.len();

        // The rest of the body, chunk by chunk as it arrives.
        while !body.is_done() {
            bufs.up.clear();
            match read_more(up, &mut bufs.up, limit).await {
                Ok(_) => {}
                Err(IoFail::Eof) if matches!(body, BodyState::UntilClose) => break,
                Err(IoFail::Timeout) => return Outcome::Abort(ProxyError::UpstreamTimeout),
                Err(e) => return Outcome::Abort(ProxyError::UpstreamMidResponse(e.into_io())),
            }
            let sent = if dechunk {
                bufs.out.clear();
                let (input, out) = (&bufs.up, &mut bufs.out);
                let used = match body.advance(input, |r| out.extend_from_slice(&input[r])) {
                    Ok(n) => n,
                    Err(_) => {
                        return Outcome::Abort(ProxyError::BadResponse("invalid chunked body"))
                    }
                };
                clean = used == bufs.up.len();
                conn.tally.bytes_out += bufs.out.len() as u64;
                write_all(&mut conn.client, &mut bufs.out, limit).await
            } else {
                let used = match body.advance(&bufs.up, |_| {}) {
                    Ok(n) => n,
                    Err(_) => {
                        return Outcome::Abort(ProxyError::BadResponse("invalid chunked body"))
                    }
                };
                clean = used == bufs.up.len();
                conn.tally.bytes_out += used as u64;
                write_range(&mut conn.client, &mut bufs.up, 0..used, limit).await
            };
            if let Err(e) = sent {
                return Outcome::Abort(ProxyError::ClientIo(e.into_io()));
            }
        }
        Outcome::Done {
            keep_alive: !close,
            reuse: clean,
        }
    }
}

async fn connect(worker: &Worker, upstream: &Upstream) -> Result<TcpStream, ProxyError> {
    worker
        .pool
        .connect(upstream.addr, worker.config.proxy.connect_timeout)
        .await
        .map_err(|e| match e {
            ConnectError::Io(e) => ProxyError::Connect(e),
            ConnectError::Timeout => ProxyError::UpstreamTimeout,
        })
}

fn upstream_error(e: IoFail) -> ProxyError {
    match e {
        IoFail::Timeout => ProxyError::UpstreamTimeout,
        e => ProxyError::UpstreamBeforeResponse(e.into_io()),
    }
}
