//! HTTP/2's transport: a client connection seen through tokio's
//! `AsyncRead`/`AsyncWrite`, which the h2 crate drives. The socket itself
//! goes through monoio-compat's `StreamWrapper` (monoio's owned-buffer
//! reads and writes behind poll functions); on top of it, [`Replay`] hands
//! out first the bytes the connection loop read before it knew the client
//! speaks HTTP/2, and [`TlsIo`] runs the rustls connection that the
//! handshake (`gate::tls`) established (for HTTP/2, and for the WebSocket
//! tunnels of TLS clients: see `gate::tunnel`).
//!
//! `StreamWrapper` keeps its in-flight operation pointing at the stream
//! inside it, so it must not move once an operation is armed: it is boxed
//! (`Socket`), and only the box moves.

use std::io::{self, BufRead, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use monoio::net::TcpStream;
use monoio_compat::StreamWrapper;
use rustls::Connection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The size of the socket adapter's read and write buffers: one TLS
/// record, or a full-size HTTP/2 frame, per operation.
const SOCKET_BUF: usize = 16 * 1024 + 512;
/// Ciphertext read from the socket at a time.
const RX_SIZE: usize = 16 * 1024 + 512;
/// TLS records buffered for the socket before a write waits for them to
/// go out (back-pressure on the h2 connection).
const TX_HIGH: usize = 64 * 1024;

/// A client socket with tokio's I/O traits (boxed: see the module docs).
pub(crate) type Socket = Box<StreamWrapper<TcpStream>>;

/// Wraps a client socket.
pub(crate) fn socket(tcp: TcpStream) -> Socket {
    Box::new(StreamWrapper::new_with_buffer_size(
        tcp, SOCKET_BUF, SOCKET_BUF,
    ))
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

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// An established rustls server connection over a stream with tokio's
/// I/O traits: plaintext in and out, records to and from `io`.
pub(crate) struct TlsIo<T> {
    io: T,
    tls: Connection,
    /// Ciphertext read from `io`; `rx[rx_at..rx_end]` is not in rustls yet.
    rx: Box<[u8]>,
    rx_at: usize,
    rx_end: usize,
    /// `io` reached its end.
    eof: bool,
    /// Records on their way to `io`: `tx[tx_at..]` is not written yet.
    tx: Vec<u8>,
    tx_at: usize,
    /// `close_notify` was queued.
    closing: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> TlsIo<T> {
    /// Continues `tls` over `io`; `early` is ciphertext already read from
    /// the socket that rustls has not taken.
    pub(crate) fn new(io: T, tls: Connection, early: Vec<u8>) -> TlsIo<T> {
        let mut rx = vec![0u8; RX_SIZE.max(early.len())].into_boxed_slice();
        rx[..early.len()].copy_from_slice(&early);
        TlsIo {
            io,
            tls,
            rx,
            rx_at: 0,
            rx_end: early.len(),
            eof: false,
            tx: Vec::new(),
            tx_at: 0,
            closing: false,
        }
    }

    /// Moves the records rustls has ready into `tx`.
    fn take_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.tx)?;
        }
        Ok(())
    }

    /// Writes `tx` out whole.
    fn poll_tx(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tx_at < self.tx.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.tx[self.tx_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.tx_at += n;
        }
        self.tx.clear();
        self.tx_at = 0;
        Poll::Ready(Ok(()))
    }

    /// Hands rustls the ciphertext in `rx` and lets it process it; a
    /// fatal alert it queues goes out as far as the socket takes it now.
    fn feed(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let mut input = &self.rx[self.rx_at..self.rx_end];
        let before = input.len();
        let read = self.tls.read_tls(&mut input);
        self.rx_at += before - input.len();
        read?;
        let processed = self.tls.process_new_packets();
        // Alerts, key-update answers, session tickets.
        self.take_records()?;
        if let Poll::Ready(Err(e)) = self.poll_tx(cx) {
            return Err(e);
        }
        processed
            .map(|_| ())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
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
            if self.rx_at < self.rx_end {
                self.feed(cx)?;
                continue;
            }
            if self.eof {
                return Poll::Ready(Ok(0));
            }
            self.rx_at = 0;
            self.rx_end = 0;
            let mut space = ReadBuf::new(&mut self.rx[..RX_SIZE]);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut space))?;
            let n = space.filled().len();
            self.rx_end = n;
            if n == 0 {
                self.eof = true;
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

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if this.tx.len() - this.tx_at >= TX_HIGH {
                ready!(this.poll_tx(cx))?;
            }
            let n = this.tls.writer().write(data)?;
            this.take_records()?;
            if n == 0 {
                // rustls holds all it takes: wait for the socket.
                ready!(this.poll_tx(cx))?;
                continue;
            }
            // Started now; finished by a later write or flush.
            if let Poll::Ready(Err(e)) = this.poll_tx(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(n));
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.take_records()?;
        ready!(this.poll_tx(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.closing = true;
            this.tls.send_close_notify();
        }
        this.take_records()?;
        ready!(this.poll_tx(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
