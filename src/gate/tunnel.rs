//! Tunnel: after a `101 Switching Protocols` to a WebSocket handshake, the
//! client connection and the upstream connection are joined and bytes are
//! relayed both ways as they arrive, until both directions have ended,
//! either side fails, no byte has moved either way for
//! `proxy.tunnel_idle_timeout`, or the worker's shutdown deadline cuts it.
//!
//! A side that closes its sending half (EOF) has the other side's writing
//! half shut down (a half-close passed on); the other direction goes on
//! until it ends too. Each direction reads into one buffer lent by the
//! worker and writes it out whole before the next read: no allocation per
//! message, and a peer that does not read stops the other from being read
//! (back-pressure). Bytes read early (frames a client sent behind its
//! handshake, or an upstream behind its 101) are relayed first.
//!
//! Each side is a pair of ends, one read ([`Source`]) and one written
//! ([`Sink`]), used at the same time: a monoio stream that may be read and
//! written at once (`Split`: plain TCP) through [`halves`], a TLS
//! connection (a client's, or an `https://` upstream's) through
//! [`tls_halves`], where both ends drive the one rustls connection
//! (records decrypted as read, encrypted as written; a `close_notify` is
//! that side's EOF, and the other side's EOF sends one), or an HTTP/2
//! stream opened by extended CONNECT (RFC 8441, see `h2::websocket`: DATA
//! frames, END_STREAM as EOF).

use std::cell::{Cell, RefCell, UnsafeCell};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{ready, Poll};
use std::time::{Duration, Instant};

use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Split,
};
use tokio::io::AsyncWrite;

use super::exchange::Upgraded;
use super::h2::io::{socket, Socket, TlsIo};
use super::io::within;
use super::tls::TlsStream;
use super::transport::Transport;
use super::wakers::Wakers;
use crate::clock;
use crate::runtime::worker::Worker;

/// How long ending a tunnel may spend shutting a side down (a TLS side
/// writes its close_notify).
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(1);

/// The open tunnels of one worker, and the signal that cuts them when the
/// worker's shutdown deadline passes.
#[derive(Debug, Default)]
pub(crate) struct Tunnels {
    /// Per open tunnel, the waker of its wait for the cut.
    waiting: Wakers,
    cut: Cell<bool>,
}

impl Tunnels {
    /// Tunnels open on this worker.
    pub(crate) fn open(&self) -> usize {
        self.waiting.open()
    }

    /// Ends every open tunnel (at their next poll) and any opened later.
    pub(crate) fn cut(&self) {
        self.cut.set(true);
        self.waiting.wake_all();
    }

    /// Resolves when the tunnel in `slot` is to be cut.
    fn cut_signal(&self, slot: usize) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.cut.get() {
                return Poll::Ready(());
            }
            self.waiting.register(slot, cx.waker());
            Poll::Pending
        })
    }
}

/// One open tunnel, counted on its worker (and in Sense's gauge) until
/// dropped, even by a panic.
struct Open<'w> {
    worker: &'w Worker,
    slot: usize,
}

impl<'w> Open<'w> {
    fn new(worker: &'w Worker) -> Open<'w> {
        if let Some(rec) = &worker.recorder {
            rec.borrow_mut().tunnel_opened();
        }
        Open {
            worker,
            slot: worker.tunnels.waiting.enter(),
        }
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.worker.tunnels.waiting.leave(self.slot);
        if let Some(rec) = &self.worker.recorder {
            rec.borrow_mut().tunnel_closed();
        }
    }
}

/// When a byte last moved, and where relayed bytes are counted.
struct Seen<'w> {
    last: Cell<Instant>,
    worker: &'w Worker,
}

impl Seen<'_> {
    /// Something was read: the tunnel is not idle.
    fn stamp(&self) {
        self.last.set(clock::now());
    }

    /// `n` bytes were relayed.
    fn relayed(&self, n: usize) {
        self.stamp();
        if let Some(rec) = &self.worker.recorder {
            rec.borrow_mut().tunnel_bytes(n as u64);
        }
    }
}

/// How a tunnel ended.
#[derive(Debug)]
enum End {
    /// Both directions ended (EOF each way), or one failed.
    Relayed(io::Result<()>),
    /// No byte either way for the idle timeout.
    Idle,
    /// The worker's shutdown deadline passed.
    Cut,
    /// The client side went away on its own (an HTTP/2 stream reset).
    Gone,
}

/// Relays between the client's ends and the upgraded upstream connection
/// until the tunnel ends; `early` holds client bytes read past the
/// handshake. Both connections are shut down (or closed by the caller)
/// when it returns.
pub(crate) async fn run<R, W>(
    client: (R, W),
    early: Vec<u8>,
    upgraded: Upgraded,
    how: (&Rc<Worker>, std::time::Duration),
) where
    R: Source,
    W: Sink,
{
    run_until(client, early, upgraded, how, std::future::pending()).await
}

/// As [`run`], also ending when `gone` resolves: the client side ended in
/// a way neither of its ends sees while it waits on the other side (an
/// HTTP/2 stream reset after the client's END_STREAM).
pub(crate) async fn run_until<R, W>(
    client: (R, W),
    early: Vec<u8>,
    upgraded: Upgraded,
    how: (&Rc<Worker>, std::time::Duration),
    gone: impl Future<Output = ()>,
) where
    R: Source,
    W: Sink,
{
    let Upgraded { up, early: from_up } = upgraded;
    // Counted as open until the tunnel ends.
    let (stream, _open) = up.into_parts();
    let ahead = (early, from_up);
    match stream {
        Transport::Plain(mut tcp) => relay(client, halves(&mut tcp), ahead, how, gone).await,
        Transport::Tls(tls) => relay(client, tls_halves(*tls), ahead, how, gone).await,
    }
}

/// `run`'s relay, once both sides are pairs of ends; `early` goes up
/// first, and `from_up` (bytes the upstream sent past its 101) down.
async fn relay<R, W, UR, UW>(
    (mut client_r, mut client_w): (R, W),
    (mut up_r, mut up_w): (UR, UW),
    (early, mut from_up): (Vec<u8>, Vec<u8>),
    (worker, idle_timeout): (&Rc<Worker>, std::time::Duration),
    gone: impl Future<Output = ()>,
) where
    R: Source,
    W: Sink,
    UR: Source,
    UW: Sink,
{
    let open = Open::new(worker);
    let seen = Seen {
        last: Cell::new(clock::now()),
        worker,
    };
    let mut to_up = worker.take_buf();
    let end = {
        let upward = pump(&mut client_r, &mut up_w, early, &mut to_up, &seen);
        let downward = pump(&mut up_r, &mut client_w, Vec::new(), &mut from_up, &seen);
        let mut relays = pin!(futures_util::future::try_join(upward, downward));
        let mut idle = pin!(idle(&seen.last, idle_timeout));
        let mut cut = pin!(worker.tunnels.cut_signal(open.slot));
        let mut gone = pin!(gone);
        poll_fn(|cx| {
            if let Poll::Ready(r) = relays.as_mut().poll(cx) {
                return Poll::Ready(End::Relayed(r.map(|_| ())));
            }
            if idle.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End::Idle);
            }
            if cut.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End::Cut);
            }
            if gone.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End::Gone);
            }
            Poll::Pending
        })
        .await
        // The relays are dropped here: their pending reads are cancelled.
    };
    if !matches!(end, End::Relayed(Ok(()))) {
        // Both peers learn at once that the tunnel is over, whatever
        // operation of theirs is still being cancelled.
        let _ = within(SHUTDOWN_LIMIT, client_w.end()).await;
        let _ = within(SHUTDOWN_LIMIT, up_w.end()).await;
    }
    tracing::debug!(worker = worker.id, end = ?end, "tunnel closed");
    // Buffers whose operation was cancelled went with it (empty here).
    worker.give_buf(to_up);
    worker.give_buf(from_up);
    drop(open);
}

/// A stream's read and write halves, to be used at the same time. Monoio
/// splits only owned streams; these halves share a borrow instead, which
/// is sound exactly when monoio's own split would be: the stream is
/// `Split` (its reads and writes may run concurrently).
pub(crate) fn halves<S>(stream: &mut S) -> (OwnedReadHalf<&mut S>, OwnedWriteHalf<&mut S>)
where
    S: AsyncReadRent + AsyncWriteRent + Split,
{
    let shared = Rc::new(UnsafeCell::new(stream));
    (OwnedReadHalf(shared.clone()), OwnedWriteHalf(shared))
}

/// The end of a side that the tunnel reads.
pub(crate) trait Source {
    /// Reads once into `buf` (empty, with spare capacity), handing it
    /// back; `Ok(0)`: the side will send nothing more.
    async fn read_some(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
}

/// The end of a side that the tunnel writes.
pub(crate) trait Sink {
    /// Writes all of `buf` out, handing it back.
    async fn write_whole(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>);
    /// Ends this direction: the side reads EOF (after a TLS close_notify).
    async fn end(&mut self) -> io::Result<()>;
}

impl<R: AsyncReadRent> Source for R {
    async fn read_some(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.read(buf).await
    }
}

impl<W: AsyncWriteRent> Sink for W {
    async fn write_whole(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (res, buf) = self.write_all(buf).await;
        (res.map(|_| ()), buf)
    }

    async fn end(&mut self) -> io::Result<()> {
        self.shutdown().await
    }
}

/// A TLS client's ends for a tunnel: the socket, the rustls connection
/// and what either holds unread (ciphertext past the request, plaintext
/// rustls decrypted and the connection loop did not take) go on under
/// one [`TlsIo`], which both ends drive. They are polled by the tunnel's
/// one task, one at a time, so each borrows it only within a poll.
pub(crate) fn tls_halves(stream: TlsStream) -> (TlsEnd, TlsEnd) {
    let (tcp, tls, unread) = stream.into_parts();
    let io = Rc::new(RefCell::new(TlsIo::new(socket(tcp), tls, unread)));
    (TlsEnd(io.clone()), TlsEnd(io))
}

/// One end of a TLS client in a tunnel (see [`tls_halves`]).
pub(crate) struct TlsEnd(Rc<RefCell<TlsIo<Socket>>>);

impl Source for TlsEnd {
    async fn read_some(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let res = poll_fn(|cx| self.0.borrow_mut().poll_append(cx, &mut buf)).await;
        (res, buf)
    }
}

impl Sink for TlsEnd {
    async fn write_whole(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut at = 0;
        let res = poll_fn(|cx| {
            let mut io = self.0.borrow_mut();
            while at < buf.len() {
                at += ready!(Pin::new(&mut *io).poll_write(cx, &buf[at..]))?;
            }
            // Out to the socket before the next read: the relay holds
            // nothing back.
            Pin::new(&mut *io).poll_flush(cx)
        })
        .await;
        (res, buf)
    }

    async fn end(&mut self) -> io::Result<()> {
        poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_shutdown(cx)).await
    }
}

/// One direction: writes `ahead`, then what `buf` holds, then relays
/// `from` to `to` through `buf` until `from` ends (EOF: `to` is shut down
/// for writing) or either side fails. `buf` is back in its slot after
/// every operation that completed.
async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    ahead: Vec<u8>,
    buf: &mut Vec<u8>,
    seen: &Seen<'_>,
) -> io::Result<()>
where
    R: Source,
    W: Sink,
{
    if !ahead.is_empty() {
        let n = ahead.len();
        to.write_whole(ahead).await.0?;
        seen.relayed(n);
    }
    loop {
        if !buf.is_empty() {
            let n = buf.len();
            let (res, owned) = to.write_whole(std::mem::take(buf)).await;
            *buf = owned;
            res?;
            seen.relayed(n);
        }
        buf.clear();
        let (res, owned) = from.read_some(std::mem::take(buf)).await;
        *buf = owned;
        if res? == 0 {
            // A failed shutdown means the peer is gone: the other
            // direction finds out on its own.
            let _ = to.end().await;
            return Ok(());
        }
        seen.stamp();
    }
}

/// Resolves once `last` is `limit` old.
async fn idle(last: &Cell<Instant>, limit: Duration) {
    let mut wait = limit;
    loop {
        monoio::time::sleep(wait).await;
        let quiet = clock::now().saturating_duration_since(last.get());
        if quiet >= limit {
            return;
        }
        wait = limit - quiet;
    }
}
