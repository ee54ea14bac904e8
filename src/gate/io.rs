//! Socket reads and writes with deadlines, on owned buffers (monoio moves
//! a buffer into each io_uring operation and hands it back when done).

use std::future::{poll_fn, Future};
use std::io;
use std::ops::Range;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;

/// Why a socket operation did not complete.
#[derive(Debug)]
pub(crate) enum IoFail {
    /// The peer closed the connection.
    Eof,
    /// The deadline passed. The buffer went with the cancelled operation.
    Timeout,
    /// The socket failed.
    Io(io::Error),
}

impl IoFail {
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            IoFail::Eof => io::ErrorKind::UnexpectedEof.into(),
            IoFail::Timeout => io::ErrorKind::TimedOut.into(),
            IoFail::Io(e) => e,
        }
    }
}

/// Runs `op` until it completes or `limit` passes (`None`).
///
/// Both futures are pinned where they stand, so the io_uring operation's
/// future is not moved again once built (monoio's `timeout` wrapper moves
/// it twice, which showed up as memcpy in callgrind profiles). A plain
/// future, not an `async fn`: one of those keeps `op` twice (the argument
/// and its pinned copy), and every future awaiting it carries that size.
pub(crate) fn within<F: Future>(limit: Duration, op: F) -> Within<F> {
    Within {
        op,
        limit,
        sleep: None,
    }
}

pin_project_lite::pin_project! {
    /// See [`within`].
    pub(crate) struct Within<F> {
        #[pin]
        op: F,
        limit: Duration,
        // Started at the first poll, as the `async fn` it replaces did.
        #[pin]
        sleep: Option<monoio::time::Sleep>,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(v) = this.op.poll(cx) {
            return Poll::Ready(Some(v));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(monoio::time::sleep(*this.limit)));
        }
        match this.sleep.as_pin_mut().map(|s| s.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

/// Reads once, appending to `buf` (which must have spare capacity).
pub(crate) async fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: Duration,
) -> Result<usize, IoFail> {
    let owned = std::mem::take(buf);
    let len = owned.len();
    debug_assert!(owned.capacity() > len, "read_more needs spare capacity");
    let cap = owned.capacity();
    match within(limit, stream.read(owned.slice_mut(len..cap))).await {
        None => Err(IoFail::Timeout),
        Some((res, slice)) => {
            *buf = slice.into_inner();
            match res {
                Ok(0) => Err(IoFail::Eof),
                Ok(n) => Ok(n),
                Err(e) => Err(IoFail::Io(e)),
            }
        }
    }
}

/// Reads once, appending to `buf`, for at most `limit`. When the time
/// runs out the read is cancelled *and awaited*, so bytes that raced the
/// cancellation are kept: `Err(IoFail::Timeout)` here means nothing was
/// read and `buf` is intact (unlike [`read_more`], whose buffer goes with
/// the dropped operation).
pub(crate) async fn read_or_give_up(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: Duration,
    canceller: &mut Canceller,
) -> Result<usize, IoFail> {
    let owned = std::mem::take(buf);
    let (len, cap) = (owned.len(), owned.capacity());
    let handle = canceller.handle();
    let mut op = pin!(stream.cancelable_read(owned.slice_mut(len..cap), handle));
    let mut sleep = pin!(monoio::time::sleep(limit));
    let mut fired = false;
    let (res, slice) = poll_fn(|cx| {
        if let Poll::Ready(done) = op.as_mut().poll(cx) {
            return Poll::Ready(done);
        }
        if !fired && sleep.as_mut().poll(cx).is_ready() {
            fired = true;
            // The read now completes, cancelled or with data, and wakes us.
            *canceller = std::mem::take(canceller).cancel();
        }
        Poll::Pending
    })
    .await;
    *buf = slice.into_inner();
    match res {
        Ok(0) => Err(IoFail::Eof),
        Ok(n) => Ok(n),
        // ECANCELED: the deadline passed with nothing read.
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => Err(IoFail::Timeout),
        Err(e) => Err(IoFail::Io(e)),
    }
}

/// Writes `buf[range]` whole, without copying it.
pub(crate) async fn write_range(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    range: Range<usize>,
    limit: Duration,
) -> Result<(), IoFail> {
    if range.is_empty() {
        return Ok(());
    }
    let owned = std::mem::take(buf);
    match within(limit, stream.write_all(owned.slice(range))).await {
        None => Err(IoFail::Timeout),
        Some((res, slice)) => {
            *buf = slice.into_inner();
            res.map(|_| ()).map_err(IoFail::Io)
        }
    }
}

/// Writes all of `buf`.
pub(crate) async fn write_all(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: Duration,
) -> Result<(), IoFail> {
    let len = buf.len();
    write_range(stream, buf, 0..len, limit).await
}

/// Writes a static response (error pages, `100 Continue`).
pub(crate) async fn write_static(
    stream: &mut TcpStream,
    bytes: &'static [u8],
    limit: Duration,
) -> Result<(), IoFail> {
    match within(limit, stream.write_all(bytes)).await {
        None => Err(IoFail::Timeout),
        Some((res, _)) => res.map(|_| ()).map_err(IoFail::Io),
    }
}
