//! One health probe of an HTTP/1.1 upstream: a blocking `GET` over
//! `std::net` (over TLS for `https://` upstreams), judged by its status
//! line alone, connect, handshake and read together within the timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock;
use crate::memory::UpstreamTls;

/// Longest status line read.
const MAX_LINE: usize = 512;

/// The probe's request bytes.
pub(super) fn request(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: dao-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Sends `request` to `addr` (over TLS with `tls`) and returns the
/// response's status, or why there was none within `timeout`.
pub(super) fn status(
    addr: SocketAddr,
    tls: Option<&Arc<UpstreamTls>>,
    request: &[u8],
    timeout: Duration,
) -> Result<u16, String> {
    let deadline = clock::now() + timeout;
    let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "connect timed out".to_string(),
        _ => format!("connect: {e}"),
    })?;
    let sock = s.try_clone().map_err(|e| e.to_string())?;
    match tls {
        None => exchange(s, &sock, request, deadline),
        Some(tls) => {
            let conn = rustls::ClientConnection::new(tls.client.clone(), tls.server_name.clone())
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(rustls::StreamOwned::new(conn, s), &sock, request, deadline)
        }
    }
}

/// Writes `request` on `s` and reads up to the status line; `sock` is the
/// socket beneath, whose timeouts bound each step.
fn exchange<S: Read + Write>(
    mut s: S,
    sock: &TcpStream,
    request: &[u8],
    deadline: Instant,
) -> Result<u16, String> {
    sock.set_write_timeout(Some(left(deadline)?))
        .map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(left(deadline)?))
        .map_err(|e| e.to_string())?;
    s.write_all(request).map_err(|e| io_error("write", &e))?;
    s.flush().map_err(|e| io_error("write", &e))?;
    let mut buf = [0u8; MAX_LINE];
    let mut len = 0;
    loop {
        if let Some(end) = buf[..len].iter().position(|&b| b == b'\n') {
            return parse_status_line(&buf[..end]);
        }
        if len == buf.len() {
            return Err("status line too long".into());
        }
        sock.set_read_timeout(Some(left(deadline)?))
            .map_err(|e| e.to_string())?;
        match s.read(&mut buf[len..]) {
            Ok(0) => return Err("closed before a status line".into()),
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("read", &e)),
        }
    }
}

/// Time left before `deadline`, or the timeout error.
fn left(deadline: Instant) -> Result<Duration, String> {
    deadline
        .checked_duration_since(clock::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "timed out".to_string())
}

fn io_error(what: &str, e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timed out".into(),
        _ => format!("{what}: {e}"),
    }
}

/// `HTTP/1.x NNN[ reason]` (the line without its `\n`) → `NNN`.
fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let bad = || {
        format!(
            "not an HTTP/1 status line: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(64)])
        )
    };
    let rest = line.strip_prefix(b"HTTP/1.").ok_or_else(bad)?;
    match rest {
        [v, b' ', a, b, c, tail @ ..]
            if v.is_ascii_digit()
                && [a, b, c].iter().all(|d| d.is_ascii_digit())
                && (tail.is_empty() || tail[0] == b' ') =>
        {
            Ok(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r"), Ok(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503"), Ok(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 204 "), Ok(204));
        for bad in [
            &b"HTTP/2 200 OK"[..],
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000",
            b"hello",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
    }

    fn serve_once(answer: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 256];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    return;
                }
                head.extend_from_slice(&b[..n]);
            }
            assert!(head.starts_with(b"GET /hz HTTP/1.1\r\nHost: h\r\n"));
            assert!(head.windows(17).any(|w| w == b"Connection: close"));
            let _ = s.write_all(answer);
            // Hold the connection a while: a slow body must not matter.
            std::thread::sleep(Duration::from_millis(300));
        });
        addr
    }

    #[test]
    fn probes_read_the_status_and_time_out() {
        let t = Duration::from_secs(2);
        let req = request("/hz", "h");
        let ok = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
        assert_eq!(status(ok, None, &req, t), Ok(200));
        let sick = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(status(sick, None, &req, t), Ok(503));
        let silent = serve_once(b"HTTP/1.1 200");
        let e = status(silent, None, &req, Duration::from_millis(100)).unwrap_err();
        assert_eq!(e, "timed out");
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = status(dead, None, &req, t).unwrap_err();
        assert!(e.starts_with("connect:"), "{e}");
    }
}
