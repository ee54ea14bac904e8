//! HTTP/2's transport: a client connection seen through tokio's
//! `AsyncRead`/`AsyncWrite`, which the h2 crate drives. The socket is
//! monoio's readiness-based stream ([`Socket`], monoio's `poll-io`); on
//! top of it, [`Replay`] hands out first the bytes the connection loop read
//! before it knew the client speaks HTTP/2, and [`TlsIo`] runs the rustls
//! connection that the handshake (`gate::tls`) established (for HTTP/2, and
//! for the WebSocket tunnels of TLS clients: see `gate::tunnel`).
//!
//! Nothing here holds an I/O buffer of its own, idle or busy. monoio's
//! io_uring operations need a buffer they own for as long as they are in
//! flight, and a read on an idle connection is in flight for as long as
//! the connection idles: an adapter over them (monoio-compat's
//! `StreamWrapper`) kept two buffers of 16.5 KiB per connection for its
//! whole life. A readiness-based socket instead waits for the kernel to
//! say it is readable or writable, then reads or writes straight between
//! the caller's buffer and the kernel (the socket is registered with an
//! epoll instance that the worker's ring watches). So an idle HTTP/2
//! connection costs the h2 crate's own state, and over TLS rustls's, and
//! no more; `TlsIo` feeds rustls straight from the socket and writes its
//! records straight to it, as tokio-rustls does.
//!
//! A socket the readiness poller does not take (epoll refused it: out of
//! memory, or `fs.epoll.max_user_watches` reached) falls back to
//! `StreamWrapper`, buffers and all, rather than failing the connection.

use std::cell::Cell;
use std::io::{self, BufRead, IoSlice, Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use monoio::net::tcp::stream_poll::TcpStreamPoll;
use monoio::net::TcpStream;
use monoio_compat::StreamWrapper;
use rustls::Connection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The buffers of the fallback adapter, each way: one TLS record, or a
/// full-size HTTP/2 frame, per operation.
const FALLBACK_BUF: usize = 16 * 1024 + 512;

/// A client socket with tokio's I/O traits.
pub(crate) struct Socket(Way);

/// How a [`Socket`] does its I/O.
enum Way {
    /// Readiness: no buffer of its own.
    Ready(TcpStreamPoll),
    /// monoio-compat's adapter over io_uring operations (boxed: its armed
    /// operation points at the stream inside it, so it must not move).
    Buffered(Box<StreamWrapper<TcpStream>>),
}

thread_local! {
    /// Whether this worker has logged falling back to buffered sockets.
    static FELL_BACK: Cell<bool> = const { Cell::new(false) };
}

/// Wraps a client socket (on the worker thread that owns it).
pub(crate) fn socket(tcp: TcpStream) -> Socket {
    match tcp.try_into_poll_io() {
        Ok(s) => Socket(Way::Ready(s)),
        Err((e, tcp)) => {
            if !FELL_BACK.with(|f| f.replace(true)) {
                tracing::warn!(error = %e, "a socket could not be polled for readiness: HTTP/2 on it \
                     goes through buffered I/O (33 KiB a connection; logged once per worker)");
            }
            Socket(Way::Buffered(buffered(tcp)))
        }
    }
}

/// The fallback adapter over `tcp`.
fn buffered(tcp: TcpStream) -> Box<StreamWrapper<TcpStream>> {
    Box::new(StreamWrapper::new_with_buffer_size(
        tcp,
        FALLBACK_BUF,
        FALLBACK_BUF,
    ))
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Way::Ready(s) => Pin::new(s).poll_read(cx, buf),
            Way::Buffered(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Way::Ready(s) => Pin::new(s).poll_write(cx, data),
            Way::Buffered(s) => Pin::new(&mut **s).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Way::Ready(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Way::Buffered(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Way::Ready(s) => s.is_write_vectored(),
            Way::Buffered(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Way::Ready(s) => Pin::new(s).poll_flush(cx),
            Way::Buffered(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Way::Ready(s) => Pin::new(s).poll_shutdown(cx),
            Way::Buffered(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// A stream whose first reads return bytes already read from it.
pub(crate) struct Replay<T> {
    early: Vec<u8>,
    at: usize,
    io: T,
}

impl<T> Replay<T> {
    /// `io`, read from after `early`.
    pub(crate) fn new(early: Vec<u8>, io: T) -> Replay<T> {
        Replay { early, at: 0, io }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Replay<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.early.len() {
            let n = buf.remaining().min(this.early.len() - this.at);
            buf.put_slice(&this.early[this.at..this.at + n]);
            this.at += n;
            if this.at == this.early.len() {
                // Given back: the connection may live long.
                this.early = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Replay<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// An established rustls connection over a stream with tokio's I/O
/// traits: plaintext in and out, records to and from `io`. rustls reads
/// ciphertext straight from `io` into its own buffer and writes its records
/// straight to it; the only bytes kept here are those read before, and
/// only until rustls has taken them.
pub(crate) struct TlsIo<T> {
    io: T,
    tls: Connection,
    /// Ciphertext read from the socket before (with the handshake) that
    /// rustls has not taken: `early[early_at..]`, fed to it first.
    early: Vec<u8>,
    early_at: usize,
    /// `io` reached its end.
    eof: bool,
    /// `close_notify` was queued.
    closing: bool,
}

/// `io` as the blocking-style reader and writer rustls takes, for the
/// length of one poll: `Pending` is `WouldBlock` (and `cx` is registered).
struct Polled<'a, 'b, T> {
    io: &'a mut T,
    cx: &'a mut Context<'b>,
}

/// `Pending` as `WouldBlock`.
fn would_block<V>(p: Poll<io::Result<V>>) -> io::Result<V> {
    match p {
        Poll::Ready(r) => r,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl<T: AsyncRead + Unpin> Read for Polled<'_, '_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        would_block(Pin::new(&mut *self.io).poll_read(self.cx, &mut buf))?;
        Ok(buf.filled().len())
    }
}

impl<T: AsyncWrite + Unpin> Write for Polled<'_, '_, T> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        would_block(Pin::new(&mut *self.io).poll_write(self.cx, data))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        would_block(Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> TlsIo<T> {
    /// Continues `tls` over `io`; `early` is ciphertext already read from
    /// the socket that rustls has not taken.
    pub(crate) fn new(io: T, tls: Connection, early: Vec<u8>) -> TlsIo<T> {
        // Kept only while it holds bytes (the handshake's read buffer).
        let early = if early.is_empty() { Vec::new() } else { early };
        TlsIo {
            io,
            tls,
            early,
            early_at: 0,
            eof: false,
            closing: false,
        }
    }

    /// Writes the records rustls holds to `io`: `Ready(Ok)` once all went.
    fn poll_tx(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            let mut out = Polled {
                io: &mut self.io,
                cx,
            };
            match self.tls.write_tls(&mut out) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads ciphertext once into rustls: the early bytes while any are
    /// left, then the socket. `Ok(0)`: the socket's end.
    fn read_tls(&mut self, cx: &mut Context<'_>) -> io::Result<usize> {
        if self.early_at < self.early.len() {
            let mut rest = &self.early[self.early_at..];
            let read = self.tls.read_tls(&mut rest);
            self.early_at = self.early.len() - rest.len();
            if rest.is_empty() {
                // Given back: the connection may live long.
                self.early = Vec::new();
                self.early_at = 0;
            }
            return read;
        }
        let mut from = Polled {
            io: &mut self.io,
            cx,
        };
        self.tls.read_tls(&mut from)
    }

    /// Lets rustls process the ciphertext it was given; what it queues
    /// (alerts, key-update answers, session tickets) goes out as far as
    /// the socket takes it now, the rest with the next write or flush.
    fn process(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let processed = self.tls.process_new_packets();
        if let Poll::Ready(Err(e)) = self.poll_tx(cx) {
            return Err(e);
        }
        processed
            .map(|_| ())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// While reads wait: the records rustls still holds because the socket
    /// was busy (a handshake flight, alerts, key updates) go out, and so
    /// does what the socket took (the fallback adapter sends only while
    /// polled); `cx` is woken when the socket takes more. `Pending`, or
    /// the error writing met.
    fn poll_idle<V>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<V>> {
        match self.poll_tx(cx) {
            Poll::Ready(Ok(())) => {
                if let Poll::Ready(Err(e)) = Pin::new(&mut self.io).poll_flush(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        Poll::Pending
    }

    /// Reads once, appending plaintext to `buf` (which must have spare
    /// capacity): `Ok(0)` is the client's end.
    pub(crate) fn poll_append(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        let room = buf.capacity() - buf.len();
        self.poll_plain(cx, room, |chunk| buf.extend_from_slice(chunk))
    }

    /// Hands up to `room` bytes of plaintext to `put` as soon as rustls
    /// has some, reading and decrypting records until it has: `Ok(n)`
    /// with `n` bytes put, `Ok(0)` at the client's end (its close_notify,
    /// or the socket closed).
    fn poll_plain(
        &mut self,
        cx: &mut Context<'_>,
        room: usize,
        mut put: impl FnMut(&[u8]),
    ) -> Poll<io::Result<usize>> {
        if room == 0 {
            return Poll::Ready(Ok(0));
        }
        loop {
            let mut reader = self.tls.reader();
            match reader.fill_buf() {
                Ok(chunk) => {
                    // Empty: the client's close_notify, the end.
                    let n = chunk.len().min(room);
                    put(&chunk[..n]);
                    reader.consume(n);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: the protocol above tells
                // whether anything was cut short.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Ok(0));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.eof {
                return Poll::Ready(Ok(0));
            }
            match self.read_tls(cx) {
                Ok(0) => self.eof = true,
                Ok(_) => self.process(cx)?,
                // Only the socket says it: `cx` waits for it.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.poll_idle(cx),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let room = buf.remaining();
        self.get_mut()
            .poll_plain(cx, room, |chunk| buf.put_slice(chunk))
            .map_ok(|_| ())
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> TlsIo<T> {
    /// Gives rustls plaintext (`give` writes it to the rustls writer) and
    /// starts its records out: `Ready(Ok(n))` once it took `n` bytes.
    fn poll_give(
        &mut self,
        cx: &mut Context<'_>,
        mut give: impl FnMut(&mut rustls::Writer<'_>) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            // rustls keeps up to its buffer limit (64 KiB) of records
            // that the socket did not take yet: past it, back-pressure.
            let n = give(&mut self.tls.writer())?;
            if n > 0 {
                // Out now as far as the socket takes them; the rest go
                // with a later write or flush.
                if let Poll::Ready(Err(e)) = self.poll_tx(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(n));
            }
            if !self.tls.wants_write() {
                // Nothing to wait for would make room.
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            ready!(self.poll_tx(cx))?;
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.get_mut().poll_give(cx, |w| w.write(data))
    }

    /// A frame's header and payload given together go out in the same
    /// records (rather than a record for the 9-byte header).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        self.get_mut().poll_give(cx, |w| w.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_tx(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.closing = true;
            this.tls.send_close_notify();
        }
        ready!(this.poll_tx(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
