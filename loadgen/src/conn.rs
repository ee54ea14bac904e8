//! Conn: one connection slot, from connect through its sessions to the end
//! of the run. It owns the slot's place in the timetable, reconnects after
//! a close or an error, and hands each open stream to the protocol driver.

use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;
use monoio_rustls::ClientTlsStream;

use crate::clock;
use crate::http2;
use crate::plan::Protocol;
use crate::schedule::Timetable;
use crate::session;
use crate::stats::ErrorKind;
use crate::worker::Worker;

/// Back-off between failed connects in closed loop (open loop waits for
/// the next scheduled request instead).
const CLOSED_LOOP_RETRY: Duration = Duration::from_millis(10);

/// A connection slot's position in its request sequence.
#[derive(Debug)]
pub struct Cursor {
    /// The slot's timetable (open loop) or None (closed loop).
    pub timetable: Option<Timetable>,
    /// Number of the next request (index into the timetable).
    pub next: u64,
    /// Position in the URL/Host rotation.
    pub rotation: u64,
}

impl Cursor {
    /// Intended send time of the next request (open loop).
    pub fn due(&self) -> Option<Instant> {
        self.timetable.map(|t| t.intended(self.next))
    }

    /// Takes the next request: its rotation position.
    #[inline]
    pub fn advance(&mut self) -> u64 {
        let r = self.rotation;
        self.next += 1;
        self.rotation += 1;
        r
    }
}

/// How a session on one stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The run is over for this slot.
    End,
    /// The stream is gone (closed or failed, already counted): connect again.
    Reconnect,
    /// The protocol handshake on a new stream failed: a connect failure.
    ConnectFailed,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

/// Drives connection slot `index` (global across threads) until the run ends.
pub async fn drive(w: Rc<Worker>, index: usize) {
    let mut cur = Cursor {
        timetable: w.timetable(index),
        next: 0,
        rotation: index as u64,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        if !w.plan.keepalive {
            // One request per connection: the connect belongs to the request.
            if let Some(due) = cur.due() {
                if due >= w.window.end {
                    return;
                }
                w.pacer.sleep_until(due).await;
            }
        }
        let attempt = clock::now();
        if attempt >= w.window.end {
            return;
        }
        let outcome = match connect(&w).await {
            Some(Stream::Plain(s)) => serve(s, &w, &mut cur, &mut buf, attempt).await,
            Some(Stream::Tls(s)) => serve(*s, &w, &mut cur, &mut buf, attempt).await,
            None => Outcome::ConnectFailed,
        };
        match outcome {
            Outcome::End => return,
            Outcome::Reconnect => {}
            Outcome::ConnectFailed => connect_failed(&w, &mut cur).await,
        }
    }
}

/// Runs the protocol driver on an open stream.
async fn serve<S>(
    s: S,
    w: &Rc<Worker>,
    cur: &mut Cursor,
    buf: &mut Vec<u8>,
    attempt: Instant,
) -> Outcome
where
    S: AsyncReadRent + AsyncWriteRent + Split + 'static,
{
    w.connected();
    match w.plan.protocol {
        Protocol::Http1 if w.plan.pipeline > 1 => session::pipelined(s, w, cur, buf).await,
        Protocol::Http1 => session::serial(s, w, cur, buf, attempt).await,
        Protocol::Http2 => http2::session(s, w, cur).await,
    }
}

/// Opens a TCP (and TLS) connection within the timeout.
async fn connect(w: &Worker) -> Option<Stream> {
    let deadline = clock::now() + w.plan.timeout;
    let tcp = monoio::time::timeout(w.plan.timeout, TcpStream::connect_addr(w.plan.addr))
        .await
        .ok()?
        .ok()?;
    let _ = tcp.set_nodelay(true);
    match (&w.tls, &w.plan.tls) {
        (Some(connector), Some(tls)) => {
            let left = deadline.saturating_duration_since(clock::now());
            let handshake = connector.connect(tls.server_name.clone(), tcp);
            let s = monoio::time::timeout(left, handshake).await.ok()?.ok()?;
            if w.plan.protocol == Protocol::Http2 && s.alpn_protocol().as_deref() != Some(b"h2") {
                // The server would not speak HTTP/2 on this connection.
                return None;
            }
            Some(Stream::Tls(Box::new(s)))
        }
        _ => Some(Stream::Plain(tcp)),
    }
}

/// Accounts for a failed connect. Open loop: every request that came due
/// while there was no connection failed with a connect error (at least the
/// next one). Closed loop: one error, then a short back-off.
async fn connect_failed(w: &Worker, cur: &mut Cursor) {
    match cur.timetable {
        Some(tt) => {
            let due = tt.intended(cur.next);
            w.pacer.sleep_until(due).await;
            let now = clock::now();
            let reached = tt.first_at_or_after(now).max(cur.next + 1);
            let lost = reached - cur.next;
            cur.next = reached;
            cur.rotation += lost;
            w.error(ErrorKind::Connect, lost, now);
        }
        None => {
            w.error(ErrorKind::Connect, 1, clock::now());
            monoio::time::sleep(CLOSED_LOOP_RETRY).await;
        }
    }
}
