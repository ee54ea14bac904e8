//! The admin listener: one std thread, blocking sockets, one request per
//! connection and one connection at a time (which serialises reloads).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::api::{self, Endpoint, Reply};
use super::{Backend, MAX_BODY};
use crate::clock;
use crate::proto::h1::{parse_request, BodyKind, HeaderKind, RequestHead};

/// Longest request head accepted (431 beyond).
const MAX_HEAD: usize = 16 * 1024;
/// Longest wait for any one read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client gets to send its whole request: a slow client holds the
/// (single) admin thread no longer than this.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How often the accept loop looks at `stop` while idle.
const POLL: Duration = Duration::from_millis(20);
/// After an early answer (401, 413, …) the unread request body is read and
/// dropped for at most this long and this much, so that closing does not
/// reset the connection before the client has read the answer.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 4 << 20;

/// Starts the admin API on `listener` in a thread named `dao-admin`; it
/// answers requests carrying `Authorization: Bearer <token>` from
/// `backend`, and returns within ~20 ms of `stop` being set (after the
/// request in progress, if any).
pub fn start(
    listener: TcpListener,
    token: Arc<str>,
    backend: Arc<dyn Backend>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    // Non-blocking accept, so that the loop sees `stop` while idle.
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("dao-admin".to_string())
        .spawn(move || serve(&listener, &token, &*backend, &stop))
}

fn serve(listener: &TcpListener, token: &str, backend: &dyn Backend, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, peer, token, backend) {
                    tracing::debug!(%peer, error = %e, "admin connection ended early");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "admin accept failed");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Reads one request from `stream`, answers it, closes.
fn answer(
    stream: TcpStream,
    peer: SocketAddr,
    token: &str,
    backend: &dyn Backend,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let deadline = clock::now() + REQUEST_DEADLINE;
    let mut conn = Conn {
        stream,
        buf: Vec::with_capacity(4096),
        deadline,
    };
    let mut head = RequestHead::default();
    loop {
        match parse_request(&conn.buf, &mut head) {
            Ok(Some(())) => break,
            Ok(None) if conn.buf.len() >= MAX_HEAD => {
                let reply = Reply::fail(431, "request head too large");
                return conn.send(&reply, false, true);
            }
            Ok(None) => {}
            Err(e) => {
                let reply = Reply::fail(e.status(), e.to_string());
                return conn.send(&reply, false, true);
            }
        }
        if conn.read_more()? == 0 {
            return Ok(()); // closed before a whole head came
        }
    }
    let reply = respond(&mut conn, &head, peer, token, backend)?;
    let head_only = head.is_head;
    let whole = match head.body {
        BodyKind::Length(n) => conn.buf.len() as u64 >= head.head_len as u64 + n,
        BodyKind::Chunked => false,
        _ => true,
    };
    conn.send(&reply, head_only, !whole)
}

/// Checks the token, finds the endpoint, reads the body, asks the backend.
fn respond(
    conn: &mut Conn,
    head: &RequestHead,
    peer: SocketAddr,
    token: &str,
    backend: &dyn Backend,
) -> io::Result<Reply> {
    let method = head.method.get(&conn.buf).to_vec();
    let path = String::from_utf8_lossy(head.path.get(&conn.buf)).into_owned();
    let method_text = String::from_utf8_lossy(&method);
    if let Err(presented) = authorized(&conn.buf, head, token) {
        tracing::warn!(%peer, method = %method_text, path, presented, "admin request refused: bad token");
        return Ok(api::unauthorized(presented));
    }
    let endpoint = match api::route(&method, path.as_bytes()) {
        Ok(e) => e,
        Err(reply) => return Ok(reply),
    };
    let length = match head.body {
        BodyKind::Length(n) => n,
        BodyKind::Chunked => {
            return Ok(Reply::fail(
                411,
                "chunked request bodies are not accepted: send Content-Length",
            ))
        }
        _ => {
            let has_length = head
                .headers
                .iter()
                .any(|h| h.kind == HeaderKind::ContentLength);
            // Bytes after the head with no length: a body we cannot frame.
            if method == b"POST" && !has_length && conn.buf.len() > head.head_len {
                return Ok(Reply::fail(
                    411,
                    "a request body needs a Content-Length header",
                ));
            }
            0
        }
    };
    if length > MAX_BODY as u64 {
        return Ok(Reply::fail(
            413,
            format!("request body of {length} bytes is over the limit of {MAX_BODY}"),
        ));
    }
    let end = head.head_len + length as usize;
    if head.expect_continue && conn.buf.len() < end {
        conn.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    while conn.buf.len() < end {
        if conn.read_more()? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the whole body came",
            ));
        }
    }
    let body = &conn.buf[head.head_len..end];
    let started = clock::now();
    let reply = catch_unwind(AssertUnwindSafe(|| api::call(backend, endpoint, body)))
        .unwrap_or_else(|_| {
            tracing::error!(%peer, path, "admin backend panicked");
            Reply::fail(500, "internal error: the request failed; see DAO's log")
        });
    let took_ms = clock::now().duration_since(started).as_millis() as u64;
    if method == b"POST" {
        let error = reply.body.get("error").and_then(|e| e.as_str());
        tracing::info!(%peer, path, status = reply.status, error, took_ms, "admin request");
    } else {
        tracing::debug!(%peer, method = %method_text, path, status = reply.status, took_ms, "admin request");
    }
    if endpoint == Endpoint::Drain && reply.status == 200 {
        tracing::info!("drain requested through the admin API");
    }
    Ok(reply)
}

/// Checks `Authorization: Bearer <token>` in constant time. `Err(true)`:
/// a credential was presented but is wrong; `Err(false)`: none was sent.
fn authorized(buf: &[u8], head: &RequestHead, token: &str) -> Result<(), bool> {
    let mut found = head
        .headers
        .iter()
        .filter(|h| h.name.get(buf).eq_ignore_ascii_case(b"authorization"));
    let (Some(header), None) = (found.next(), found.next()) else {
        let presented = head
            .headers
            .iter()
            .any(|h| h.name.get(buf).eq_ignore_ascii_case(b"authorization"));
        return Err(presented);
    };
    let value = header.value.get(buf);
    let Some(presented) = value
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        .map(|_| value[7..].trim_ascii())
    else {
        return Err(true);
    };
    if bool::from(presented.ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(true)
    }
}

/// One accepted connection and what has been read from it.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
}

impl Conn {
    /// Reads what is available (waiting up to the per-read timeout and the
    /// request deadline); 0 at end of stream.
    fn read_more(&mut self) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(clock::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request not received in time",
            ));
        }
        self.stream.set_read_timeout(Some(left.min(IO_TIMEOUT)))?;
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Writes the response and closes; with `unread`, first drops what the
    /// client is still sending, for a moment.
    fn send(&mut self, reply: &Reply, head_only: bool, unread: bool) -> io::Result<()> {
        let mut body = serde_json::to_vec(&reply.body).unwrap_or_default();
        body.push(b'\n');
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            reply.status,
            reason(reply.status),
            body.len()
        );
        if reply.status == 401 {
            out.push_str("WWW-Authenticate: Bearer realm=\"dao-admin\"\r\n");
        }
        if let Some(allow) = reply.allow {
            out.push_str("Allow: ");
            out.push_str(allow);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if !head_only {
            out.extend_from_slice(&body);
        }
        self.stream.write_all(&out)?;
        if unread {
            self.linger();
        }
        Ok(())
    }

    /// Half-closes and reads until the client closes, briefly.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let until = clock::now() + LINGER;
        let mut chunk = [0u8; 16 * 1024];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            let left = until.saturating_duration_since(clock::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => dropped += n,
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}
