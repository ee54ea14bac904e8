//! The client side of a connection: a plain socket or a TLS stream, with
//! the deadline-bound reads and writes of `io` for both. Plain sockets go
//! straight to `io`'s functions; TLS adds its records around them.

use std::ops::Range;
use std::time::Duration;

use monoio::io::Canceller;
use monoio::net::TcpStream;

use super::io::{self, IoFail};
use super::tls::TlsStream;

/// A client connection's transport.
pub(crate) enum ClientStream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS (boxed: the rustls state is large, plain sockets stay small).
    Tls(Box<TlsStream>),
}

impl ClientStream {
    /// Whether the client came over TLS.
    #[inline]
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// Reads once, appending to `buf` (which must have spare capacity).
    #[inline]
    pub(crate) async fn read_more(
        &mut self,
        buf: &mut Vec<u8>,
        limit: Duration,
    ) -> Result<usize, IoFail> {
        match self {
            ClientStream::Plain(s) => io::read_more(s, buf, limit).await,
            ClientStream::Tls(t) => t.read_more(buf, limit).await,
        }
    }

    /// Reads once for at most `limit`; on `Err(IoFail::Timeout)` nothing
    /// was read and nothing is left buffered (see `io::read_or_give_up`).
    #[inline]
    pub(crate) async fn read_or_give_up(
        &mut self,
        buf: &mut Vec<u8>,
        limit: Duration,
        canceller: &mut Canceller,
    ) -> Result<usize, IoFail> {
        match self {
            ClientStream::Plain(s) => io::read_or_give_up(s, buf, limit, canceller).await,
            ClientStream::Tls(t) => t.read_or_give_up(buf, limit, canceller).await,
        }
    }

    /// Writes `buf[range]` whole.
    #[inline]
    pub(crate) async fn write_range(
        &mut self,
        buf: &mut Vec<u8>,
        range: Range<usize>,
        limit: Duration,
    ) -> Result<(), IoFail> {
        match self {
            ClientStream::Plain(s) => io::write_range(s, buf, range, limit).await,
            ClientStream::Tls(t) => t.write(&buf[range], limit).await,
        }
    }

    /// Writes all of `buf`.
    #[inline]
    pub(crate) async fn write_all(
        &mut self,
        buf: &mut Vec<u8>,
        limit: Duration,
    ) -> Result<(), IoFail> {
        let len = buf.len();
        self.write_range(buf, 0..len, limit).await
    }

    /// Writes a static response (error pages, `100 Continue`).
    #[inline]
    pub(crate) async fn write_static(
        &mut self,
        bytes: &'static [u8],
        limit: Duration,
    ) -> Result<(), IoFail> {
        match self {
            ClientStream::Plain(s) => io::write_static(s, bytes, limit).await,
            ClientStream::Tls(t) => t.write(bytes, limit).await,
        }
    }

    /// Before the connection closes: TLS says `close_notify`.
    #[inline]
    pub(crate) async fn close(&mut self) {
        if let ClientStream::Tls(t) = self {
            t.close().await;
        }
    }

    /// Drops buffers before idling (after a timed-out `read_or_give_up`).
    #[inline]
    pub(crate) fn park(&mut self) {
        if let ClientStream::Tls(t) = self {
            t.park();
        }
    }

    /// Waits until the client sends something (no buffer held meanwhile).
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.readable(false).await,
            ClientStream::Tls(t) => t.readable().await,
        }
    }
}
