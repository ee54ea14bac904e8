//! The response side of an HTTP/2 stream, whatever its upstream: the head
//! (the route's response filters, the sticky cookie, then the HTTP/2
//! form of an HTTP/1.1 head), data sent as the client's window allows,
//! and trailers.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::SendStream;
use http::header::{HeaderName, HeaderValue, VIA};
use http::{HeaderMap, Response, StatusCode};

use super::stream::{append_lines, Stream};
use super::upstream::{client_h2, reset};
use crate::error::ProxyError;
use crate::flow::{Headers, ResponseCx};
use crate::gate::io::within;
use crate::proto::h1::{BodyKind, HeaderKind, ResponseHead};

pin_project_lite::pin_project! {
    /// `f`, cut short when the client resets the stream (see [`or_reset`]).
    /// A plain future rather than an `async fn`: those keep their argument
    /// beside the pinned copy of it, doubling the size of what they wrap.
    pub(super) struct OrReset<F, C> {
        #[pin]
        f: F,
        reset: C,
    }
}

impl<F: Future, C: FnMut(&mut Context<'_>) -> bool> Future for OrReset<F, C> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.f.poll(cx) {
            return Poll::Ready(Some(v));
        }
        match (this.reset)(cx) {
            true => Poll::Ready(None),
            false => Poll::Pending,
        }
    }
}

/// Runs `f` until it ends, or until `reset` (polled after it, with the
/// same context) says the client reset the stream: `None`.
pub(super) fn or_reset<F: Future, C: FnMut(&mut Context<'_>) -> bool>(
    f: F,
    reset: C,
) -> OrReset<F, C> {
    OrReset { f, reset }
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
pub(super) fn response_head(
    resp: &ResponseHead,
    buf: &[u8],
    edits: &crate::flow::Edits,
) -> Response<()> {
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
pub(super) fn parse_trailers(lines: &[u8]) -> Option<HeaderMap> {
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
    use crate::proto::h1::parse_response;

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
    fn trailers_become_a_header_map() {
        assert!(parse_trailers(b"").is_none());
        assert!(parse_trailers(b"Connection: close\r\n").is_none());
        let map = parse_trailers(b"Grpc-Status: 0\r\nGrpc-Message: ok\r\n").unwrap();
        assert_eq!(map["grpc-status"], "0");
        assert_eq!(map["grpc-message"], "ok");
    }
}
