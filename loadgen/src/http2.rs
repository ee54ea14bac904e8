//! Http2: the HTTP/2 driver of one open stream (h2c with prior knowledge,
//! or h2 negotiated by ALPN over TLS), built on the h2 crate through the
//! [`Compat`](crate::compat::Compat) adapter.
//!
//! A sender follows the timetable (or, in closed loop, keeps the pipe full)
//! and opens up to `--streams` concurrent streams; each stream runs as its
//! own task that reads the response to the end and records it. The
//! connection future runs beside the sender in the connection's task.

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use h2::client::ResponseFuture;
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};

use crate::clock;
use crate::compat::Compat;
use crate::conn::{Cursor, Outcome};
use crate::session::{first_of, next, Next};
use crate::stats::ErrorKind;
use crate::worker::Worker;

/// Stream-level flow-control window we grant the server per stream.
const STREAM_WINDOW: u32 = 1 << 20;
/// Connection-level window.
const CONNECTION_WINDOW: u32 = 16 << 20;

/// Streams of one connection that are still open.
#[derive(Default)]
struct Open {
    count: Cell<usize>,
    sender: Cell<Option<Waker>>,
}

impl Open {
    fn closed_one(&self) {
        self.count.set(self.count.get() - 1);
        if let Some(w) = self.sender.take() {
            w.wake();
        }
    }
}

/// Runs HTTP/2 on an established stream until it fails or the run ends.
/// A failed HTTP/2 handshake counts as a connect failure.
pub async fn session<S>(s: S, w: &Rc<Worker>, cur: &mut Cursor) -> Outcome
where
    S: AsyncReadRent + AsyncWriteRent + Split + 'static,
{
    let Some(templates) = w.plan.http2.as_ref() else {
        return Outcome::End;
    };
    let handshake = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false)
        .handshake::<_, Bytes>(Compat::new(s));
    let (client, connection) = match monoio::time::timeout(w.plan.timeout, handshake).await {
        Ok(Ok(pair)) => pair,
        _ => return Outcome::ConnectFailed,
    };
    let open = Rc::new(Open::default());
    let limit = w.plan.streams;

    let driver = async {
        let _ = connection.await;
        Outcome::Reconnect
    };

    let sender = async {
        let mut client = client;
        loop {
            // Room for another stream?
            poll_fn(|cx| {
                if open.count.get() < limit {
                    Poll::Ready(())
                } else {
                    open.sender.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
            let intended = match next(w, cur).await {
                Next::Due(t) => Some(t),
                Next::Now => None,
                // Queued frames are written by the connection future:
                // keep it running until the worker stops at the end.
                Next::Over => std::future::pending::<Option<Instant>>().await,
            };
            client = match client.ready().await {
                Ok(c) => c,
                // GOAWAY or a dead connection: open a new one.
                Err(_) => return Outcome::Reconnect,
            };
            let sent = clock::now();
            let request = templates.request(cur.advance());
            let body = templates.body();
            let (response, mut stream) = match client.send_request(request, body.is_empty()) {
                Ok(pair) => pair,
                Err(_) => {
                    w.error(ErrorKind::Write, 1, sent);
                    return Outcome::Reconnect;
                }
            };
            if !body.is_empty() && stream.send_data(body, true).is_err() {
                w.error(ErrorKind::Write, 1, sent);
                continue;
            }
            open.count.set(open.count.get() + 1);
            monoio::spawn(exchange(
                Rc::clone(w),
                Rc::clone(&open),
                response,
                intended.unwrap_or(sent),
                sent,
            ));
        }
    };

    let idle = std::future::pending::<Outcome>();
    first_of(driver, sender, idle).await
}

/// Awaits one response and its body, and records it.
async fn exchange(
    w: Rc<Worker>,
    open: Rc<Open>,
    response: ResponseFuture,
    intended: Instant,
    sent: Instant,
) {
    let read = async {
        let response = response.await.map_err(kind)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = 0;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(kind)?;
            bytes += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        Ok::<_, ErrorKind>((status, bytes))
    };
    let result = monoio::time::timeout(w.plan.timeout, read).await;
    let done = clock::now();
    open.closed_one();
    match result {
        Ok(Ok((status, bytes))) => w.complete(intended, sent, done, status, bytes),
        Ok(Err(k)) => w.error(k, 1, done),
        Err(_) => w.error(ErrorKind::Timeout, 1, done),
    }
}

/// A stream reset or protocol violation by the server is a protocol error;
/// a lost connection is a read error.
fn kind(e: h2::Error) -> ErrorKind {
    if e.is_io() || e.is_go_away() {
        ErrorKind::Read
    } else {
        ErrorKind::Protocol
    }
}
