//! Session: the HTTP/1.1 driver of one open stream, serial or pipelined.
//!
//! Serial (`--pipeline 1`): wait for the request's intended time, write it,
//! read until the response is complete, record, repeat. Pipelined: the
//! stream is split; a writer keeps up to `--pipeline` requests in flight on
//! the timetable, a reader matches responses to them in order, and a
//! watchdog enforces the timeout of the oldest one. All three run in the
//! connection's task, so they share state through plain `RefCell`s.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split, Splitable};

use crate::clock;
use crate::conn::{Cursor, Outcome};
use crate::h1::{Response, ResponseDecoder};
use crate::stats::ErrorKind;
use crate::worker::Worker;

/// Serial HTTP/1.1 on one stream. `attempt` is when the connect began: in
/// closed loop it is the intended time of the first request, so a
/// per-request connect is charged to the corrected latency.
pub async fn serial<S>(
    mut s: S,
    w: &Worker,
    cur: &mut Cursor,
    buf: &mut Vec<u8>,
    attempt: Instant,
) -> Outcome
where
    S: AsyncReadRent + AsyncWriteRent,
{
    let mut dec = ResponseDecoder::new();
    let no_body = w.plan.requests.no_body();
    let mut first = Some(attempt);
    buf.clear();
    loop {
        let intended = match next(w, cur).await {
            Next::Due(t) => t,
            // Closed loop: a connect made during start-up is not part of
            // the first request.
            Next::Now => {
                let now = clock::now();
                first.take().filter(|&a| a >= w.window.start).unwrap_or(now)
            }
            Next::Over => return Outcome::End,
        };
        let req = w.plan.requests.get(cur.advance());
        let sent = clock::now();
        let exchange = exchange(&mut s, req, &mut dec, buf, no_body);
        let result = monoio::time::timeout(w.plan.timeout, exchange).await;
        let done = clock::now();
        match result {
            Ok(Ok((resp, bytes))) => {
                w.complete(intended, sent, done, resp.status, bytes);
                if resp.close || !w.plan.keepalive {
                    return Outcome::Reconnect;
                }
            }
            Ok(Err(kind)) => {
                w.error(kind, 1, done);
                return Outcome::Reconnect;
            }
            Err(_) => {
                w.error(ErrorKind::Timeout, 1, done);
                return Outcome::Reconnect;
            }
        }
    }
}

/// When the next request goes out.
pub enum Next {
    /// Open loop: it was due at this instant (now reached).
    Due(Instant),
    /// Closed loop: now.
    Now,
    /// The run is over.
    Over,
}

/// Waits for the next request of the timetable (open loop) or for the start
/// of the run (closed loop).
pub async fn next(w: &Worker, cur: &Cursor) -> Next {
    match cur.due() {
        Some(t) if t >= w.window.end => Next::Over,
        Some(t) => {
            w.pacer.sleep_until(t).await;
            Next::Due(t)
        }
        None => {
            if clock::now() < w.window.start {
                // Closed loop starts with everyone else, after start-up.
                w.pacer.sleep_until(w.window.start).await;
            }
            if clock::now() < w.window.end {
                Next::Now
            } else {
                Next::Over
            }
        }
    }
}

/// Writes one request and reads its response. Returns the response and the
/// bytes read for it.
async fn exchange<S>(
    s: &mut S,
    req: &'static [u8],
    dec: &mut ResponseDecoder,
    buf: &mut Vec<u8>,
    no_body: bool,
) -> Result<(Response, usize), ErrorKind>
where
    S: AsyncReadRent + AsyncWriteRent,
{
    let (res, _) = s.write_all(req).await;
    res.map_err(|_| ErrorKind::Write)?;
    let mut bytes = 0;
    loop {
        if !buf.is_empty() {
            let (used, done) = dec.decode(buf, no_body).map_err(|_| ErrorKind::Protocol)?;
            buf.drain(..used);
            if let Some(resp) = done {
                return Ok((resp, bytes));
            }
        }
        let n = read_more(s, buf).await.map_err(|_| ErrorKind::Read)?;
        if n == 0 {
            return match dec.eof() {
                Ok(Some(resp)) => Ok((resp, bytes)),
                _ => Err(ErrorKind::Read),
            };
        }
        bytes += n;
    }
}

/// Reads more bytes after the `buf.len()` already held, growing the buffer
/// when it is full (the decoder bounds how far a head can grow it).
async fn read_more<S: AsyncReadRent>(s: &mut S, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.len() == buf.capacity() {
        buf.reserve(buf.capacity().max(16 * 1024));
    }
    let len = buf.len();
    let cap = buf.capacity();
    let owned = std::mem::take(buf);
    let (res, slice) = s.read(owned.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    res
}

/// A request on the wire, waiting for its response.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    intended: Instant,
    sent: Instant,
}

/// How one of the pipelined halves stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Closed,
    Failed(ErrorKind),
}

/// Pipelined HTTP/1.1 on one stream (keep-alive only).
pub async fn pipelined<S>(s: S, w: &Worker, cur: &mut Cursor, buf: &mut Vec<u8>) -> Outcome
where
    S: AsyncReadRent + AsyncWriteRent + Split,
{
    let depth = w.plan.pipeline;
    let (mut rd, mut wr) = s.into_split();
    let queue: RefCell<VecDeque<InFlight>> = RefCell::new(VecDeque::with_capacity(depth));
    buf.clear();

    let writer = async {
        let mut out: Vec<u8> = Vec::with_capacity(1024);
        loop {
            wait_until(|| queue.borrow().len() < depth).await;
            let mut intended = match next(w, cur).await {
                Next::Due(t) => Some(t),
                Next::Now => None,
                // Leave the reader running: responses to the last requests
                // still count until the worker stops at the end.
                Next::Over => std::future::pending::<Option<Instant>>().await,
            };
            let sent = clock::now();
            out.clear();
            {
                let mut q = queue.borrow_mut();
                loop {
                    out.extend_from_slice(w.plan.requests.get(cur.advance()));
                    q.push_back(InFlight {
                        intended: intended.unwrap_or(sent),
                        sent,
                    });
                    if q.len() >= depth {
                        break;
                    }
                    // Batch the requests that are already due into one write.
                    match cur.due() {
                        Some(t) if t <= sent && t < w.window.end => intended = Some(t),
                        Some(_) => break,
                        None => {}
                    }
                }
            }
            let (res, o) = wr.write_all(out).await;
            out = o;
            if res.is_err() {
                return Stop::Failed(ErrorKind::Write);
            }
        }
    };

    let reader = async {
        let mut dec = ResponseDecoder::new();
        let no_body = w.plan.requests.no_body();
        let mut bytes = 0;
        loop {
            let n = match read_more(&mut rd, buf).await {
                Ok(n) => n,
                Err(_) => return Stop::Failed(ErrorKind::Read),
            };
            let now = clock::now();
            if n == 0 {
                return match dec.eof() {
                    Ok(Some(resp)) => match queue.borrow_mut().pop_front() {
                        Some(p) => {
                            w.complete(p.intended, p.sent, now, resp.status, bytes);
                            Stop::Closed
                        }
                        None => Stop::Failed(ErrorKind::Protocol),
                    },
                    Ok(None) if queue.borrow().is_empty() => Stop::Closed,
                    _ => Stop::Failed(ErrorKind::Read),
                };
            }
            bytes += n;
            let mut pos = 0;
            let stop = loop {
                let (used, done) = match dec.decode(&buf[pos..], no_body) {
                    Ok(x) => x,
                    Err(_) => break Some(Stop::Failed(ErrorKind::Protocol)),
                };
                pos += used;
                let Some(resp) = done else { break None };
                let Some(p) = queue.borrow_mut().pop_front() else {
                    break Some(Stop::Failed(ErrorKind::Protocol));
                };
                w.complete(p.intended, p.sent, now, resp.status, bytes);
                bytes = 0;
                if resp.close {
                    break Some(Stop::Closed);
                }
            };
            buf.drain(..pos);
            if let Some(stop) = stop {
                return stop;
            }
        }
    };

    let watchdog = async {
        loop {
            let oldest = queue.borrow().front().map(|p| p.sent);
            match oldest {
                Some(sent) => {
                    let deadline = sent + w.plan.timeout;
                    if clock::now() >= deadline {
                        return Stop::Failed(ErrorKind::Timeout);
                    }
                    monoio::time::sleep_until(monoio::time::Instant::from_std(deadline)).await;
                }
                None => wait_until(|| !queue.borrow().is_empty()).await,
            }
        }
    };

    let stop = first_of(reader, writer, watchdog).await;
    let lost = queue.borrow().len() as u64;
    let now = clock::now();
    match stop {
        // The server closed with requests still queued: they are lost.
        Stop::Closed => {
            w.error(ErrorKind::Read, lost, now);
            Outcome::Reconnect
        }
        Stop::Failed(kind) => {
            w.error(kind, lost.max(1), now);
            Outcome::Reconnect
        }
    }
}

/// Completes once `ready()` holds. It registers no waker: it is only used
/// inside [`first_of`], which polls every branch whenever the connection's
/// task wakes, and the state it watches only changes in sibling branches.
fn wait_until(ready: impl Fn() -> bool) -> impl Future<Output = ()> {
    poll_fn(move |_| {
        if ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

/// Runs three futures in one task and returns the first result; the others
/// are dropped (the stream they use is discarded with them). They are
/// polled in order on every wake-up.
pub async fn first_of<T>(
    a: impl Future<Output = T>,
    b: impl Future<Output = T>,
    c: impl Future<Output = T>,
) -> T {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let mut c = pin!(c);
    poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(v);
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(v);
        }
        c.as_mut().poll(cx)
    })
    .await
}
