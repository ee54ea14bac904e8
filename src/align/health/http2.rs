//! One health probe of an HTTP/2 upstream (h2c, or h2 over TLS): on the
//! probe's own thread, a small monoio runtime (the legacy driver: no
//! io_uring instance per probe) runs the h2 crate's client handshake and
//! one request, `GET path` judged by its `:status`, or a gRPC
//! `grpc.health.v1.Health/Check` call judged by the status it answers;
//! connect, handshakes and answer together within the timeout. The
//! connection is driven beside the request, never spawned, so that no
//! socket outlives the probe; after an answer it closes with a GOAWAY.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{header, HeaderMap, Method, Request, Uri};
use monoio::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{grpc, Answer};
use crate::clock;
use crate::gate::h2::io::{socket, Socket, TlsIo};
use crate::gate::io::within;
use crate::gate::tls::{self, HandshakeError};
use crate::memory::UpstreamTls;

/// Largest response header list accepted.
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Time given, after the answer, to close the connection politely (a
/// GOAWAY rather than a bare close).
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// What an HTTP/2 probe sends.
#[derive(Debug, Clone)]
pub(super) struct Call {
    /// `scheme://authority/path`: `:scheme`, `:authority` and `:path`
    /// (or why they could not be made).
    uri: Result<Uri, String>,
    /// gRPC checks: the framed request message.
    grpc: Option<Bytes>,
}

impl Call {
    /// `GET path`, or the gRPC check of `grpc_service` (whose `path` is
    /// the Health service's), with `:authority` = `host`.
    pub(super) fn new(tls: bool, host: &str, path: &str, grpc_service: Option<&str>) -> Call {
        let scheme = if tls { "https" } else { "http" };
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(host)
            .path_and_query(path)
            .build()
            .map_err(|e| format!("no request target from {host:?} and {path:?}: {e}"));
        Call {
            uri,
            grpc: grpc_service.map(grpc::request),
        }
    }
}

#[cfg(test)]
impl Call {
    /// The request target, as text.
    pub(super) fn uri(&self) -> Option<String> {
        self.uri.as_ref().ok().map(Uri::to_string)
    }
}

/// Runs `call` against `addr` (over TLS with `tls`, whose ALPN must
/// choose h2) and returns what the upstream answered, or why there was no
/// answer within `timeout`.
pub(super) fn probe(
    addr: SocketAddr,
    tls: Option<&Arc<UpstreamTls>>,
    call: &Call,
    timeout: Duration,
) -> Result<Answer, String> {
    let uri = call.uri.clone()?;
    let deadline = clock::now() + timeout;
    let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("probe runtime: {e}"))?;
    // Nothing is spawned: every socket is closed when this returns (a
    // runtime dropped with tasks pending would leave theirs open).
    runtime.block_on(exchange(addr, tls, uri, call.grpc.clone(), deadline))
}

/// The time left before `deadline`.
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(clock::now())
}

fn timed_out<T>() -> Result<T, String> {
    Err("timed out".into())
}

/// A connection ready for the HTTP/2 preface.
enum Io {
    Plain(Socket),
    Tls(Box<TlsIo<Socket>>),
}

/// Connects (and runs the TLS handshake), then asks.
async fn exchange(
    addr: SocketAddr,
    tls: Option<&Arc<UpstreamTls>>,
    uri: Uri,
    grpc: Option<Bytes>,
    deadline: Instant,
) -> Result<Answer, String> {
    let io = within(left(deadline), connect(addr, tls))
        .await
        .unwrap_or_else(timed_out)?;
    match io {
        Io::Plain(io) => ask(io, uri, grpc, deadline).await,
        Io::Tls(io) => ask(io, uri, grpc, deadline).await,
    }
}

/// TCP to `addr`, then the TLS handshake with `tls` (ALPN must choose h2).
async fn connect(addr: SocketAddr, tls: Option<&Arc<UpstreamTls>>) -> Result<Io, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Io::Plain(socket(tcp)));
    };
    let stream = tls::connect(tcp, tls.client.clone(), tls.server_name.clone())
        .await
        .map_err(|e| match e {
            HandshakeError::Eof => "TLS: the upstream closed during the handshake".to_string(),
            e => format!("TLS handshake: {e}"),
        })?;
    if !stream.is_h2() {
        return Err("TLS: the upstream did not choose HTTP/2 (ALPN h2)".into());
    }
    let (tcp, conn, early) = stream.into_parts();
    Ok(Io::Tls(Box::new(TlsIo::new(socket(tcp), conn, early))))
}

/// The HTTP/2 handshake over `io` and the one request, the connection
/// driven beside it; then, with an answer, a polite close (GOAWAY).
async fn ask<T>(io: T, uri: Uri, grpc: Option<Bytes>, deadline: Instant) -> Result<Answer, String>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = h2::client::Builder::new()
        .enable_push(false)
        .max_header_list_size(MAX_HEADER_LIST)
        .handshake::<_, Bytes>(io);
    let (send, connection) = match within(left(deadline), handshake).await {
        None => return timed_out(),
        Some(done) => done.map_err(|e| h2_error("handshake", &e))?,
    };
    let mut connection = pin!(connection);
    let mut ended = false;
    let answer = {
        let request = pin!(request(send, uri, grpc));
        let both = beside(request, connection.as_mut(), &mut ended);
        within(left(deadline), both).await.unwrap_or_else(timed_out)
    };
    // The request's handles are gone: the connection says GOAWAY and ends.
    if answer.is_ok() && !ended {
        let _ = within(CLOSE_GRACE, connection).await;
    }
    answer
}

/// Polls `request` to its end, driving `connection` meanwhile (`ended`
/// is set when the connection ends first; it is not polled again).
async fn beside<R, C>(
    mut request: Pin<&mut R>,
    mut connection: Pin<&mut C>,
    ended: &mut bool,
) -> R::Output
where
    R: Future,
    C: Future,
{
    poll_fn(|cx| loop {
        if let Poll::Ready(out) = request.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if *ended {
            return Poll::Pending;
        }
        match connection.as_mut().poll(cx) {
            // The streams have learnt why: poll the request once more.
            Poll::Ready(_) => *ended = true,
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

/// Waits until the request may go, then sends it.
async fn request(
    send: SendRequest<Bytes>,
    uri: Uri,
    grpc: Option<Bytes>,
) -> Result<Answer, String> {
    let send = send.ready().await.map_err(|e| h2_error("handshake", &e))?;
    match grpc {
        None => get(send, uri).await,
        Some(message) => grpc_check(send, uri, message).await,
    }
}

/// `GET`: the response's `:status`.
async fn get(mut send: SendRequest<Bytes>, uri: Uri) -> Result<Answer, String> {
    let req = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::USER_AGENT, "dao-health")
        .header(header::ACCEPT, "*/*")
        .body(())
        .map_err(|e| e.to_string())?;
    let (response, _) = send
        .send_request(req, true)
        .map_err(|e| h2_error("request", &e))?;
    let response = response.await.map_err(|e| h2_error("response", &e))?;
    Ok(Answer::Status(response.status().as_u16()))
}

/// The gRPC health call: passes when the status is 200, `grpc-status` 0
/// and the message says `SERVING`.
async fn grpc_check(
    mut send: SendRequest<Bytes>,
    uri: Uri,
    message: Bytes,
) -> Result<Answer, String> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header(header::USER_AGENT, "dao-health")
        .body(())
        .map_err(|e| e.to_string())?;
    let (response, mut body) = send
        .send_request(req, false)
        .map_err(|e| h2_error("request", &e))?;
    body.send_data(message, true)
        .map_err(|e| h2_error("request", &e))?;
    let response = response.await.map_err(|e| h2_error("response", &e))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("gRPC health: status {status}"));
    }
    // A failed call may come as headers alone ("Trailers-Only").
    grpc_status(response.headers())?;
    let trailers_only = response.headers().contains_key("grpc-status");
    let mut body = response.into_body();
    let mut answer = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| h2_error("response body", &e))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if answer.len() + chunk.len() > grpc::MAX_ANSWER {
            return Err("gRPC health: answer too large".into());
        }
        answer.extend_from_slice(&chunk);
    }
    let trailers = body
        .trailers()
        .await
        .map_err(|e| h2_error("response trailers", &e))?;
    match trailers {
        Some(t) if t.contains_key("grpc-status") => grpc_status(&t)?,
        // Trailers-Only, with status 0: a call that sent no message.
        _ if trailers_only => {}
        _ => return Err("gRPC health: no grpc-status".into()),
    }
    grpc::judge(&answer)?;
    Ok(Answer::Serving)
}

/// `Err` when `headers` carry a `grpc-status` other than 0.
fn grpc_status(headers: &HeaderMap) -> Result<(), String> {
    let Some(status) = headers.get("grpc-status") else {
        return Ok(());
    };
    if status.as_bytes() == b"0" {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .unwrap_or_default();
    Err(format!(
        "gRPC health: grpc-status {} {message}",
        String::from_utf8_lossy(status.as_bytes())
    )
    .trim_end()
    .to_string())
}

/// An h2 error, said plainly (what failed, then why).
fn h2_error(what: &str, e: &h2::Error) -> String {
    if let Some(reason) = e.reason() {
        return format!("HTTP/2 {what}: {reason:?}");
    }
    format!("HTTP/2 {what}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A frame head: length, type, flags, stream.
    fn frame(len: usize, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
        let mut f = (len as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f
    }

    /// A minimal HTTP/2 server: answers the first request with `:status
    /// 500` (HPACK static entry 14, one byte), then reports the types of
    /// the frames the client sent until it closed.
    fn frames_seen() -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&frame(0, 4, 0, 0)).unwrap();
            let mut preface = [0u8; 24];
            s.read_exact(&mut preface).unwrap();
            assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
            let mut kinds = Vec::new();
            let mut head = [0u8; 9];
            while s.read_exact(&mut head).is_ok() {
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0u8; len];
                if s.read_exact(&mut payload).is_err() {
                    break;
                }
                kinds.push(head[3]);
                if head[3] == 1 {
                    // HEADERS: END_STREAM | END_HEADERS, `:status 500`.
                    let mut answer = frame(0, 4, 1, 0);
                    answer.extend(frame(1, 1, 0x5, 1));
                    answer.push(0x80 | 14);
                    s.write_all(&answer).unwrap();
                }
            }
            let _ = tx.send(kinds);
        });
        (addr, rx)
    }

    #[test]
    fn probes_read_the_status_and_say_goaway() {
        let (addr, seen) = frames_seen();
        let call = Call::new(false, "h", "/hz", None);
        let answer = probe(addr, None, &call, Duration::from_secs(2));
        assert_eq!(answer, Ok(Answer::Status(500)));
        let kinds = seen.recv_timeout(Duration::from_secs(5)).unwrap();
        // SETTINGS, … HEADERS, …, and a GOAWAY before the close.
        assert_eq!(kinds.first(), Some(&4), "{kinds:?}");
        assert!(kinds.contains(&1), "{kinds:?}");
        assert!(kinds.contains(&7), "no GOAWAY: {kinds:?}");
    }

    #[test]
    fn calls_carry_scheme_authority_and_path() {
        let call = Call::new(true, "svc.test:8443", "/hz?deep=1", None);
        let uri = call.uri.unwrap();
        assert_eq!(uri.to_string(), "https://svc.test:8443/hz?deep=1");
        assert!(call.grpc.is_none());
        let call = Call::new(false, "a", crate::memory::GRPC_HEALTH_PATH, Some("s"));
        assert_eq!(
            call.uri.unwrap().to_string(),
            "http://a/grpc.health.v1.Health/Check"
        );
        assert_eq!(call.grpc.as_deref(), Some(&grpc::request("s")[..]));
        let bad = Call::new(false, "a b", "/", None);
        let e = probe(
            "127.0.0.1:1".parse().unwrap(),
            None,
            &bad,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.starts_with("no request target"), "{e}");
    }

    #[test]
    fn probes_time_out_and_report_refusals() {
        // Accepts, reads, never answers; reports whether the probe closed
        // its end (a timed-out probe leaves no socket open behind it).
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let (tx, closed) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = silent.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut b = [0u8; 1024];
            loop {
                match s.read(&mut b) {
                    Ok(0) => break tx.send(true).unwrap(),
                    Ok(_) => {}
                    Err(_) => break tx.send(false).unwrap(),
                }
            }
        });
        let call = Call::new(false, "h", "/hz", None);
        let started = crate::clock::now();
        let e = probe(addr, None, &call, Duration::from_millis(200)).unwrap_err();
        assert_eq!(e, "timed out");
        assert!(crate::clock::now() - started < Duration::from_secs(1));
        assert_eq!(closed.recv_timeout(Duration::from_secs(5)), Ok(true));
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = probe(dead, None, &call, Duration::from_secs(1)).unwrap_err();
        assert!(e.starts_with("connect:"), "{e}");
    }
}
