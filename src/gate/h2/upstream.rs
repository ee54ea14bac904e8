//! An HTTP/2 stream's exchange with its upstream over HTTP/1.1: the
//! balancer's pick, a connection from the worker's pool (or a new one
//! within the circuit breaker's limits), the request head and its body
//! streamed from the h2 stream (flow-control capacity given back as the
//! bytes are forwarded), the response head read and sent as HTTP/2, and
//! the body streamed back as the client's window allows, chunked trailers
//! becoming HTTP/2 trailers.
//!
//! Upstreams with `protocol = "h2c"` take the HTTP/2 path of `passthrough`
//! instead. One attempt, no retries (the HTTP/1.1 path's retry policies are not
//! applied), except that a request without a body found a pooled
//! connection dead is sent once more on a fresh one. A client that resets
//! its stream stops the exchange at once, whatever it was waiting for: a
//! rapid-reset client does not keep upstream work going.

use std::future::{poll_fn, Future};
use std::io;
use std::ops::Range;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue, VIA};
use http::{HeaderMap, Response, StatusCode};

use super::stream::{append_lines, Stream};
use crate::align::breaker::Held;
use crate::clock;
use crate::error::ProxyError;
use crate::flow::{Headers, ResponseCx};
use crate::gate::attempt::{connect, upstream_error};
use crate::gate::exchange::retry_after_us;
use crate::gate::io::{within, IoFail};
use crate::proto::h1::head::write_request_head;
use crate::proto::h1::response::is_interim;
use crate::proto::h1::{parse_response, BodyKind, BodyState, HeaderKind, ResponseHead};
use crate::runtime::worker::Worker;
use crate::upstream::pool::UpstreamConn;

/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Room for each read of a response body.
const READ_SIZE: usize = 16 * 1024;

/// How an exchange ended.
pub(super) enum Outcome {
    /// The response was sent whole.
    Done,
    /// Nothing was sent to the client: answer with the error's status.
    Failed(ProxyError),
    /// The response had started, or the client reset the stream: reset it.
    Abort(ProxyError),
}

/// Buffers lent by the worker for one exchange, returned on drop (the
/// worker's usual size: a response head and its first body bytes fit; the
/// body's later reads go to `Bytes` handed to h2).
pub(super) struct Bufs {
    pub(super) worker: Rc<Worker>,
    /// The request head (and chunk framing) sent upstream.
    pub(super) out: Vec<u8>,
    /// The response head and the first body bytes.
    pub(super) up: Vec<u8>,
}

impl Drop for Bufs {
    fn drop(&mut self) {
        self.worker.give_buf(std::mem::take(&mut self.out));
        self.worker.give_buf(std::mem::take(&mut self.up));
    }
}

/// Runs `f` until it ends or the client resets the stream (`None`).
pub(super) async fn or_reset<F: Future>(
    respond: &mut SendResponse<Bytes>,
    f: F,
) -> Option<F::Output> {
    let mut f = pin!(f);
    poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// As `or_reset`, once the response has started.
async fn or_reset_send<F: Future>(send: &mut SendStream<Bytes>, f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        match send.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
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
    mut body: RecvStream,
    respond: &mut SendResponse<Bytes>,
) -> Outcome {
    let worker = s.shared.worker.clone();
    let gen = s.gen.clone();
    let route = &gen.config.routes[route_index];
    let ask = crate::gate::ask::ask(
        &gen.config,
        route,
        &s.head,
        &s.down,
        &s.shared.client_ip,
        worker.coarse_us(),
    );
    // Sticky routes: the upstream the client's cookie names, if usable.
    let sticky = route.balancing.sticky.as_ref().map(|st| {
        Headers::of_request(&s.head, &s.down)
            .cookie(st.cookie.as_bytes())
            .and_then(|v| gen.balancers[route_index].sticky_find(v))
    });
    let picked = match sticky {
        Some(Some(i)) if gen.balancers[route_index].usable(i, &ask) => {
            worker.pin(&gen, route_index, i)
        }
        _ => worker.pick(&gen, route_index, &ask),
    };
    s.tally.picked(route_index, picked);
    let upstream = &route.upstreams[picked];
    let load = &gen.loads[upstream.pool];
    if let Some(b) = &gen.breakers[route_index] {
        if let Err(limit) = b.admit(load.requests.get()) {
            s.tally.breaker_open(limit);
            return Outcome::Failed(ProxyError::CircuitOpen(limit));
        }
    }
    let _request = Held::new(&load.requests);
    if upstream.protocol.is_h2() {
        let sticky = sticky
            .filter(|&had| had != Some(picked))
            .map(|_| (route_index, picked));
        return super::passthrough::exchange(s, (route_index, picked, sticky), body, respond).await;
    }
    let mut bufs = Bufs {
        worker: worker.clone(),
        out: worker.take_buf(),
        up: worker.take_buf(),
    };
    let fwd = s.forwarded(upstream);
    write_request_head(&mut bufs.out, &s.down, &s.head, &fwd);

    let pool = gen.pools[upstream.pool];
    let (up, reused) = match worker.pool.take(pool, worker.coarse_now.get()) {
        Some(c) => (c, true),
        None => {
            if let Some(b) = &gen.breakers[route_index] {
                if let Err(limit) = b.connect(worker.pool.open(pool), load.pending.get()) {
                    s.tally.breaker_open(limit);
                    return Outcome::Failed(ProxyError::CircuitOpen(limit));
                }
            }
            s.tally.sending();
            let _waiting = Held::new(&load.pending);
            match or_reset(respond, connect((&worker, &gen), upstream, None)).await {
                None => return Outcome::Abort(reset()),
                Some(Ok(c)) => (c, false),
                Some(Err((e, _))) => return Outcome::Failed(e),
            }
        }
    };
    s.tally.sending();
    let mut up = up;
    let timeout = route
        .request_timeout
        .unwrap_or(gen.config.proxy.response_timeout);
    let request = send_and_read_head(
        s,
        (&mut up, reused),
        &mut bufs,
        &mut body,
        (upstream, timeout),
    );
    match or_reset(respond, request).await {
        None => return Outcome::Abort(reset()),
        Some(Err(outcome)) => return outcome,
        Some(Ok(())) => {}
    }
    // The request is over: the stream's receiving side goes.
    drop(body);
    s.tally.status = s.resp.status;
    if s.resp.status == 429 {
        s.tally.retry_after_us = retry_after_us(&s.resp, &bufs.up);
    }
    let sticky = sticky
        .filter(|&had| had != Some(picked))
        .map(|_| (route_index, picked));
    let (outcome, clean) = respond_down(
        s,
        respond,
        &mut up,
        &mut bufs,
        (route_index, picked, sticky),
    )
    .await;
    if matches!(outcome, Outcome::Done) && clean && s.resp.keep_alive && !worker.stopping.get() {
        worker.pool.put(pool, up, worker.coarse_now.get());
    }
    outcome
}

/// Sends the request (the head in `bufs.out`, the body from `body`) and
/// reads the response head into `bufs.up` and `s.resp`. A pooled
/// connection found dead before any byte of a response came is replaced
/// once, when the request has no body.
async fn send_and_read_head(
    s: &mut Stream,
    (up, mut reused): (&mut UpstreamConn, bool),
    bufs: &mut Bufs,
    body: &mut RecvStream,
    (upstream, timeout): (&crate::memory::Upstream, Duration),
) -> Result<(), Outcome> {
    let gen = s.gen.clone();
    let worker = s.shared.worker.clone();
    let read_timeout = gen.config.proxy.read_timeout;
    let replayable = s.head.body == BodyKind::Empty;
    let failed = |e: IoFail| {
        let (error, _) = upstream_error(e);
        Err(Outcome::Failed(error))
    };
    let sent = up.write_all(&mut bufs.out, read_timeout).await;
    match sent {
        Ok(()) => {}
        Err(IoFail::Eof | IoFail::Io(_)) if reused && replayable => {
            reused = false;
            *up = connect((&worker, &gen), upstream, None)
                .await
                .map_err(|(e, _)| Outcome::Failed(e))?;
            if let Err(e) = up.write_all(&mut bufs.out, read_timeout).await {
                return failed(e);
            }
        }
        Err(e) => return failed(e),
    }
    if s.head.body != BodyKind::Empty {
        send_body(s, up, &mut bufs.out, body).await?;
    }
    let deadline = clock::now() + timeout;
    bufs.up.clear();
    loop {
        if !bufs.up.is_empty() {
            match parse_response(&bufs.up, s.head.is_head, &mut s.resp) {
                Ok(Some(())) if is_interim(s.resp.status) => {
                    // 1xx: not passed on (h2 could; nothing here needs it).
                    bufs.up.drain(..s.resp.head_len);
                    continue;
                }
                Ok(Some(())) if s.resp.status == 101 || s.resp.status < 100 => {
                    return Err(Outcome::Failed(ProxyError::BadResponse(
                        "unexpected status",
                    )));
                }
                Ok(Some(())) => return Ok(()),
                Ok(None) if bufs.up.len() >= MAX_RESPONSE_HEAD => {
                    return Err(Outcome::Failed(ProxyError::BadResponse(
                        "response head too large",
                    )));
                }
                Ok(None) => {}
                Err(_) => {
                    return Err(Outcome::Failed(ProxyError::BadResponse(
                        "malformed response head",
                    )))
                }
            }
        }
        let left = deadline.saturating_duration_since(clock::now());
        if left.is_zero() {
            return Err(Outcome::Failed(ProxyError::UpstreamTimeout));
        }
        if bufs.up.len() == bufs.up.capacity() {
            bufs.up.reserve(bufs.up.capacity().max(4096));
        }
        match up.read_more(&mut bufs.up, left).await {
            Ok(_) => {}
            Err(IoFail::Eof | IoFail::Io(_)) if reused && replayable && bufs.up.is_empty() => {
                // A pooled connection the upstream had closed.
                reused = false;
                *up = connect((&worker, &gen), upstream, None)
                    .await
                    .map_err(|(e, _)| Outcome::Failed(e))?;
                if let Err(e) = up.write_all(&mut bufs.out, read_timeout).await {
                    return failed(e);
                }
            }
            Err(e) => return failed(e),
        }
    }
}

/// Streams the request body from the h2 stream to the upstream, chunked
/// unless its length was declared, and gives each piece's flow-control
/// capacity back once it is written. Request trailers follow the last
/// chunk.
async fn send_body(
    s: &mut Stream,
    up: &mut UpstreamConn,
    out: &mut Vec<u8>,
    body: &mut RecvStream,
) -> Result<(), Outcome> {
    let read_timeout = s.gen.config.proxy.read_timeout;
    let chunked = s.head.body == BodyKind::Chunked;
    let limit = s.flow.body_limit;
    let mut seen = 0u64;
    let upstream_failed = |e: IoFail| Outcome::Failed(upstream_error(e).0);
    loop {
        let data = match within(read_timeout, body.data()).await {
            None => return Err(Outcome::Failed(ProxyError::ClientTimeout)),
            Some(None) => break,
            Some(Some(Err(e))) => return Err(Outcome::Abort(client_h2(e))),
            Some(Some(Ok(data))) => data,
        };
        let n = data.len();
        if n == 0 {
            continue;
        }
        seen += n as u64;
        s.tally.bytes_in += n as u64;
        if limit.is_some_and(|max| seen > max) {
            return Err(Outcome::Failed(ProxyError::BadRequest(
                "request body too large",
                413,
            )));
        }
        if chunked {
            out.clear();
            put_hex(out, n);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
            up.write_all(out, read_timeout)
                .await
                .map_err(upstream_failed)?;
        } else {
            up.write_bytes(data, read_timeout)
                .await
                .map_err(upstream_failed)?;
        }
        let _ = body.flow_control().release_capacity(n);
    }
    if chunked {
        out.clear();
        out.extend_from_slice(b"0\r\n");
        if let Some(Ok(Some(trailers))) = within(read_timeout, body.trailers()).await {
            for (name, value) in &trailers {
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
        up.write_all(out, read_timeout)
            .await
            .map_err(upstream_failed)?;
    }
    Ok(())
}

/// Appends `n` in hexadecimal (a chunk-size line's number).
fn put_hex(out: &mut Vec<u8>, n: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let shift = (usize::BITS - (n | 1).leading_zeros()).div_ceil(4) * 4;
    for s in (0..shift).step_by(4).rev() {
        out.push(DIGITS[(n >> s) & 15]);
    }
}

/// Runs the route's response filters on the head parsed into `s.resp`
/// (its text in `buf`), adds a sticky cookie when one is due, and returns
/// the head to send as HTTP/2.
pub(super) fn respond_filters(
    s: &mut Stream,
    buf: &[u8],
    (route_index, picked, sticky): (usize, usize, Option<(usize, usize)>),
) -> Response<()> {
    let gen = s.gen.clone();
    let route = &gen.config.routes[route_index];
    if !gen.chains[route_index].is_empty() {
        let mut cx = ResponseCx {
            status: s.resp.status,
            headers: Headers::of_response(&s.resp, buf),
            client_ip_text: &s.shared.client_ip,
            request_id: s.request_id.as_ref().map_or(&[], |id| &id[..]),
            route: &route.name,
            upstream: &route.upstreams[picked].name,
            edits: &mut s.resp_edits,
            state: &s.flow,
        };
        gen.chains[route_index].response(&mut cx);
    }
    if let Some((r, u)) = sticky {
        crate::gate::ask::set_cookie(&mut s.resp_edits, route, &gen.balancers[r], u);
    }
    response_head(&s.resp, buf, &s.resp_edits)
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
        let got = or_reset_send(&mut send, within(limit, up.read_bytes(buf))).await;
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

/// Sends `data` as the client's window allows, waiting for it no longer
/// than `limit` at a time (a client that never opens it has its stream
/// reset). `end` ends the stream with the last byte.
pub(super) async fn send_flow(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    limit: Duration,
) -> Result<(), ProxyError> {
    if data.is_empty() {
        return match end {
            true => send.send_data(data, true).map_err(client_h2),
            false => Ok(()),
        };
    }
    send.reserve_capacity(data.len());
    while !data.is_empty() {
        let cap = match within(limit, poll_fn(|cx| send.poll_capacity(cx))).await {
            None => return Err(ProxyError::ClientTimeout),
            Some(None) => return Err(reset()),
            Some(Some(Err(e))) => return Err(client_h2(e)),
            Some(Some(Ok(0))) => continue,
            Some(Some(Ok(n))) => n,
        };
        let piece = data.split_to(cap.min(data.len()));
        send.send_data(piece, end && data.is_empty())
            .map_err(client_h2)?;
    }
    Ok(())
}

/// Whether header `name` is listed in a `Connection` header of `resp`.
fn named_by_connection(resp: &ResponseHead, buf: &[u8], name: &[u8]) -> bool {
    resp.headers.iter().any(|h| {
        h.kind == HeaderKind::Connection
            && h.value
                .get(buf)
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
    })
}

/// The HTTP/2 response head for an HTTP/1.1 one: its status and headers
/// without the connection-specific ones (HTTP/2 forbids them) and the
/// names the filters drop, plus the filters' lines and `via`.
fn response_head(resp: &ResponseHead, buf: &[u8], edits: &crate::flow::Edits) -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let h = r.headers_mut();
    h.reserve(resp.headers.len() + 2);
    let drop = edits.removed();
    for span in &resp.headers {
        let name = span.name.get(buf);
        match span.kind {
            HeaderKind::Connection | HeaderKind::HopByHop | HeaderKind::TransferEncoding => {
                continue
            }
            HeaderKind::ContentLength if resp.body == BodyKind::Chunked => continue,
            _ => {}
        }
        if resp.connection_extra && named_by_connection(resp, buf, name) {
            continue;
        }
        if !drop.is_empty() && drop.iter().any(|d| d.eq_ignore_ascii_case(name)) {
            continue;
        }
        // Names and values HTTP/2 cannot carry are left out.
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(span.value.get(buf)),
        ) {
            h.append(n, v);
        }
    }
    append_lines(h, edits.lines());
    let via = if resp.minor_version == 0 {
        "1.0 dao"
    } else {
        "1.1 dao"
    };
    h.append(VIA, HeaderValue::from_static(via));
    r
}

/// The trailer fields of a chunked body (`Name: value\r\n` lines), as
/// HTTP/2 trailers; `None` when there are none to send.
fn parse_trailers(lines: &[u8]) -> Option<HeaderMap> {
    if lines.is_empty() {
        return None;
    }
    let mut map = HeaderMap::new();
    append_lines(&mut map, lines);
    // Framing and connection fields are not trailers HTTP/2 can carry.
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "content-length",
    ] {
        map.remove(name);
    }
    (!map.is_empty()).then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Edits;

    #[test]
    fn response_head_drops_connection_fields() {
        let raw = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
                   Keep-Alive: 5\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\n\
                   Set-Cookie: b=2\r\nX-Drop: y\r\n\r\n";
        let mut resp = ResponseHead::default();
        parse_response(raw.as_bytes(), false, &mut resp)
            .unwrap()
            .unwrap();
        let mut edits = Edits::default();
        edits.remove(b"x-drop");
        edits.add(b"X-Added", b"yes");
        let r = response_head(&resp, raw.as_bytes(), &edits);
        let h = r.headers();
        assert_eq!(r.status(), 200);
        for gone in [
            "connection",
            "x-hop",
            "keep-alive",
            "transfer-encoding",
            "x-drop",
        ] {
            assert!(!h.contains_key(gone), "{gone}: {h:?}");
        }
        let cookies: Vec<_> = h.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(h["x-added"], "yes");
        assert_eq!(h["via"], "1.1 dao");
    }

    #[test]
    fn chunk_sizes_in_hex() {
        for n in [0usize, 1, 9, 10, 15, 16, 255, 256, 16384, 0xabcdef] {
            let mut out = Vec::new();
            put_hex(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{n:x}"));
        }
    }

    #[test]
    fn trailers_become_a_header_map() {
        assert!(parse_trailers(b"").is_none());
        assert!(parse_trailers(b"Connection: close\r\n").is_none());
        let map = parse_trailers(b"Grpc-Status: 0\r\nGrpc-Message: ok\r\n").unwrap();
        assert_eq!(map["grpc-status"], "0");
        assert_eq!(map["grpc-message"], "ok");
    }
}
