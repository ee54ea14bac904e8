//! One HTTP/2 stream, one request: its head re-expressed as HTTP/1.1 and
//! parsed as such, routed, filtered, sent upstream (see `upstream`), and
//! recorded in Sense and the access log like an HTTP/1.1 request. Replies
//! DAO makes itself (no route, a filter's answer, an upstream failure)
//! go out on the stream. A WebSocket's extended CONNECT is re-expressed as
//! its HTTP/1.1 handshake (see `websocket`) and becomes a tunnel once
//! answered (see `ws_tunnel`).

use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use bytes::Bytes;
use futures_util::FutureExt;
use h2::server::SendResponse;
use h2::RecvStream;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST};
use http::{Request, Response, StatusCode};

use super::conn::{Open, Shared};
use super::upstream::{self, Outcome};
use super::{websocket, ws_tunnel};
use crate::error::ProxyError;
use crate::flow::{Edits, Reply, State};
use crate::gate::conn::{find_route, request_filters, Client, InFlight};
use crate::gate::tally::Tally;
use crate::memory::Upstream;
use crate::proto::h1::head::reason;
use crate::proto::h1::head::{CertHeader, Forwarded};
use crate::proto::h1::{parse_request, RequestHead, ResponseHead};
use crate::runtime::generation::Gen;
use crate::sense::access_log::AccessLog;

/// A request in progress on a stream, and its buffers.
pub(super) struct Stream {
    pub(super) shared: Rc<Shared>,
    pub(super) gen: Rc<Gen>,
    pub(super) tally: Tally,
    /// The request head as HTTP/1.1 (allocated to its size).
    pub(super) down: Vec<u8>,
    pub(super) head: RequestHead,
    pub(super) resp: ResponseHead,
    /// The id generated for the request, if it came without one.
    pub(super) request_id: Option<[u8; 32]>,
    /// Filter edits of the head sent upstream, and of the response head.
    pub(super) edits: Edits,
    pub(super) resp_edits: Edits,
    pub(super) flow: State,
}

impl Stream {
    /// What the head sent to `upstream` adds and drops (the client's
    /// address and scheme, the filters' edits, the request id).
    pub(super) fn forwarded<'a>(&'a self, upstream: &'a Upstream) -> Forwarded<'a> {
        Forwarded {
            client_ip: self.shared.client_ip.as_bytes(),
            proto: if self.shared.tls { b"https" } else { b"http" },
            extra: self.edits.lines(),
            drop: self.edits.removed(),
            default_host: upstream.authority.as_bytes(),
            request_id: self.request_id.as_ref().map_or(&[], |id| &id[..]),
            client_cert: CertHeader {
                strip: &self.gen.config.client_cert_headers,
                line: &self.shared.client_cert,
            },
        }
    }
}

/// Serves one stream (panics stay in it); `open` counts it on its
/// connection until it ends.
pub(super) async fn serve(open: Open, req: Request<RecvStream>, respond: SendResponse<Bytes>) {
    let shared = open.shared().clone();
    let run = AssertUnwindSafe(handle(shared.clone(), req, respond))
        .catch_unwind()
        .await;
    if run.is_err() {
        tracing::error!(
            worker = shared.worker.id,
            "HTTP/2 stream task panicked; stream reset"
        );
    }
    drop(open);
}

async fn handle(shared: Rc<Shared>, req: Request<RecvStream>, mut respond: SendResponse<Bytes>) {
    let worker = shared.worker.clone();
    let in_flight = InFlight::new(&worker);
    let gen = worker.gen();
    let mut s = Stream {
        tally: Tally::new(worker.clone()),
        down: Vec::new(),
        head: RequestHead::default(),
        resp: ResponseHead::default(),
        request_id: None,
        edits: Edits::default(),
        resp_edits: Edits::default(),
        flow: State::default(),
        gen,
        shared,
    };
    let (mut parts, body) = req.into_parts();
    // An extended CONNECT for a WebSocket (RFC 8441) goes on as the
    // HTTP/1.1 handshake it stands for.
    let websocket = websocket::from_connect(&mut parts);
    s.down.reserve_exact(synthesized_len(&parts));
    let has_body = websocket.is_none() && !body.is_end_stream();
    synthesize(&parts, has_body, &mut s.down);
    drop(parts);
    let parsed = if s.down.len() > s.gen.config.server.max_header_bytes {
        Err(431)
    } else {
        match parse_request(&s.down, &mut s.head) {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err(400),
            Err(e) => Err(e.status()),
        }
    };
    if let Err(status) = parsed {
        // No head to speak of: counted on DAO's own slot.
        s.tally.start(b"", &s.gen);
        if worker.access_log.is_some() {
            AccessLog::begin_line(&mut s.tally.log_scratch, b"-", b"-", b"-");
        }
        return error_reply(&mut s, &mut respond, status, None);
    }
    let gen = s.gen.clone();
    let (buf, head) = (&s.down, &s.head);
    s.tally.start(head.method.get(buf), &gen);
    s.tally.bytes_in = head.head_len as u64;
    // The request id: the client's, or a new one sent upstream.
    let mut client_id: &[u8] = b"";
    if worker.request_ids.is_some() || worker.access_log.is_some() {
        if let Some(h) = head
            .headers
            .iter()
            .find(|h| h.name.get(buf).eq_ignore_ascii_case(b"x-request-id"))
        {
            client_id = h.value.get(buf);
        } else if let Some(ids) = &worker.request_ids {
            s.request_id = Some(ids.next());
        }
    }
    if worker.access_log.is_some() {
        let id = s.request_id.as_ref().map_or(client_id, |id| &id[..]);
        let id: &[u8] = if id.is_empty() { b"-" } else { id };
        let (method, target) = (head.method.get(buf), head.target.get(buf));
        AccessLog::begin_line(&mut s.tally.log_scratch, id, method, target);
    }
    let Some(route) = find_route(&gen.config, head, buf) else {
        return error_reply(&mut s, &mut respond, ProxyError::NoRoute.status(), None);
    };
    if !gen.chains[route].is_empty() {
        let client = Client {
            ip: s.shared.peer_ip,
            ip_text: &s.shared.client_ip,
            request_id: s.request_id.as_ref().map_or(&[], |id| &id[..]),
        };
        let reply = request_filters(
            (&worker, &gen, route),
            (head, buf),
            &client,
            (&mut s.edits, &mut s.flow),
        );
        if let Some(reply) = reply {
            return filter_reply(&mut s, &mut respond, reply);
        }
    }
    let outcome = match websocket {
        None => upstream::exchange(&mut s, route, body, &mut respond).await,
        // Boxed, as the tunnel below: a WebSocket's futures are large and
        // rare; every stream's task would otherwise carry their size.
        Some(hs) => {
            match Box::pin(ws_tunnel::exchange(&mut s, route, &hs, body, &mut respond)).await {
                Ok(tunnel) => {
                    // The request ends with the 200 (its latency: time to the
                    // 200); the tunnel is counted on its own.
                    s.tally.finish(200, None, &s.shared.client_ip);
                    drop(in_flight);
                    drop(s);
                    Box::pin(tunnel.run(&worker)).await;
                    return;
                }
                Err(outcome) => outcome,
            }
        }
    };
    match outcome {
        Outcome::Done => {
            let status = s.tally.status;
            s.tally.finish(status, None, &s.shared.client_ip);
        }
        Outcome::Failed(e) => {
            tracing::debug!(worker = worker.id, error = %e, "HTTP/2 request failed before the response");
            error_reply(&mut s, &mut respond, e.status(), Some(&e));
        }
        Outcome::Abort(e) => {
            tracing::debug!(worker = worker.id, error = %e, "HTTP/2 stream cut mid-exchange");
            let status = s.tally.status;
            s.tally.finish(status, Some(&e), &s.shared.client_ip);
            respond.send_reset(h2::Reason::CANCEL);
        }
    }
}

/// The most bytes `synthesize` writes for `parts`.
fn synthesized_len(parts: &http::request::Parts) -> usize {
    let fields: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let target = parts.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    let authority = parts.uri.authority().map_or(0, |a| a.as_str().len());
    // Request line, host line, chunked framing line, final CRLF.
    parts.method.as_str().len() + target + authority + fields + 80
}

/// Writes the HTTP/1.1 head that stands for an HTTP/2 request: its
/// method and path, `:authority` as `Host` (it wins over a `host` header,
/// RFC 9113 §8.3.1), its headers in order with `cookie` fields joined into
/// one (§8.2.3), and, for a body of undeclared length, chunked framing.
/// h2 has already refused what HTTP/2 forbids (connection-specific
/// headers, uppercase names, invalid values).
pub(super) fn synthesize(parts: &http::request::Parts, has_body: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(if pq.is_empty() { b"/" } else { pq.as_bytes() });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = parts.uri.authority();
    if let Some(a) = authority {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(a.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut cookies = false;
    for (name, value) in &parts.headers {
        if *name == HOST && authority.is_some() {
            continue;
        }
        if *name == COOKIE {
            if !cookies {
                cookies = true;
                out.extend_from_slice(b"cookie: ");
                for (i, c) in parts.headers.get_all(COOKIE).iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b"; ");
                    }
                    out.extend_from_slice(c.as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if has_body && !parts.headers.contains_key(CONTENT_LENGTH) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a response of `status` has no body.
fn bodiless(status: u16) -> bool {
    status == 204 || status == 304 || (100..200).contains(&status)
}

/// Sends a response DAO makes itself: `status`, extra header lines
/// (`Name: value\r\n` each), a plain-text body unless a header types it.
/// Recorded in Sense with `error`, the failure that caused it, if any.
fn send_own(
    s: &mut Stream,
    respond: &mut SendResponse<Bytes>,
    (status, lines, body): (u16, &[u8], Bytes),
    error: Option<&ProxyError>,
) {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    append_lines(h, lines);
    if !h.contains_key(CONTENT_TYPE) && !body.is_empty() {
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    let no_body = bodiless(status);
    if !no_body {
        h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let empty = no_body || s.head.is_head || body.is_empty();
    s.tally.bytes_out += (lines.len() + if empty { 0 } else { body.len() }) as u64;
    s.tally.finish(status, error, &s.shared.client_ip);
    // A client that went away has nothing more to learn.
    if let Ok(mut send) = respond.send_response(r, empty) {
        if !empty {
            // Small: within any window a client opens with.
            let _ = send.send_data(body, true);
        }
    }
}

/// Answers with DAO's page for `status`.
pub(super) fn error_reply(
    s: &mut Stream,
    respond: &mut SendResponse<Bytes>,
    status: u16,
    error: Option<&ProxyError>,
) {
    let text = match (reason(status), status) {
        ("", 501) => "Not Implemented",
        ("", _) => "Error",
        (r, _) => r,
    };
    let body = Bytes::from(format!("{text}\n"));
    let lines: &[u8] = match error {
        Some(ProxyError::CircuitOpen(_)) => b"x-dao-overloaded: circuit-breaker\r\n",
        _ => b"",
    };
    send_own(s, respond, (status, lines, body), error);
}

/// Sends a filter's reply.
fn filter_reply(s: &mut Stream, respond: &mut SendResponse<Bytes>, reply: Reply) {
    let Reply {
        status,
        headers,
        body,
    } = reply;
    send_own(s, respond, (status, &headers, Bytes::from(body)), None);
}

/// Adds `Name: value\r\n` lines (filter edits, replies) to `h`; lines
/// HTTP/2 cannot carry are left out.
pub(super) fn append_lines(h: &mut http::HeaderMap, lines: &[u8]) {
    for line in lines.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            h.append(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(req: Request<()>, has_body: bool) -> String {
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        synthesize(&parts, has_body, &mut out);
        assert!(out.len() <= synthesized_len(&parts));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn h2_request_becomes_an_http1_head() {
        let req = Request::builder()
            .method("POST")
            .uri("https://example.com:8443/a/b?q=1")
            .header("host", "ignored.example")
            .header("cookie", "a=1")
            .header("x-one", "1")
            .header("cookie", "b=2")
            .body(())
            .unwrap();
        let text = head_of(req, true);
        assert_eq!(
            text,
            "POST /a/b?q=1 HTTP/1.1\r\nhost: example.com:8443\r\ncookie: a=1; b=2\r\n\
             x-one: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut head = RequestHead::default();
        parse_request(text.as_bytes(), &mut head).unwrap().unwrap();
        assert_eq!(head.host.get(text.as_bytes()), b"example.com:8443");
        assert_eq!(head.body, crate::proto::h1::BodyKind::Chunked);
    }

    #[test]
    fn declared_length_and_no_body() {
        let req = Request::builder()
            .uri("http://h/up")
            .method("PUT")
            .header("content-length", "5")
            .body(())
            .unwrap();
        let text = head_of(req, true);
        assert!(text.ends_with("content-length: 5\r\n\r\n"), "{text}");
        let req = Request::builder().uri("http://h/").body(()).unwrap();
        assert_eq!(head_of(req, false), "GET / HTTP/1.1\r\nhost: h\r\n\r\n");
        // No :authority: the host header stays.
        let req = Request::builder()
            .uri("/x")
            .header("host", "from-header")
            .body(())
            .unwrap();
        assert_eq!(
            head_of(req, false),
            "GET /x HTTP/1.1\r\nhost: from-header\r\n\r\n"
        );
    }

    #[test]
    fn reply_lines_become_headers() {
        let mut h = http::HeaderMap::new();
        append_lines(
            &mut h,
            b"WWW-Authenticate: Bearer\r\nRetry-After: 3\r\nbad line\r\nx: \x01\r\n",
        );
        assert_eq!(h["www-authenticate"], "Bearer");
        assert_eq!(h["retry-after"], "3");
        assert_eq!(h.len(), 2);
    }
}
