//! A connection's transport, a plain socket or a TLS stream, with the
//! deadline-bound reads and writes of `io` for both: the client side of
//! a connection, and DAO's connections to upstreams. Plain sockets go
//! straight to `io`'s functions; TLS adds its records around them.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use monoio::io::Canceller;
use monoio::net::TcpStream;

use super::io::{self, IoFail};
use super::tls::TlsStream;

/// A client connection's transport.
pub(crate) enum Transport {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS (boxed: the rustls state is large, plain sockets stay small).
    Tls(Box<TlsStream>),
}

impl Transport {
    /// Whether the client came over TLS.
    #[inline]
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// The header line with the client's verified certificate, for
    /// upstreams (empty: none, or plain HTTP).
    #[inline]
    pub(crate) fn client_cert(&self) -> &[u8] {
        match self {
            Transport::Plain(_) => b"",
            Transport::Tls(t) => t.client_cert(),
        }
    }

    // The operations below return the plain socket's future as it is (no
    // wrapper state, no larger variant beside it: that would be copied
    // with every call on the plain path) or a boxed TLS one, whose
    // allocation is small next to its record work.

    /// Reads once, appending to `buf` (which must have spare capacity).
    #[inline]
    pub(crate) fn read_more<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
        limit: Duration,
    ) -> impl Future<Output = Result<usize, IoFail>> + 'a {
        match self {
            Transport::Plain(s) => Either::Left(io::read_more(s, buf, limit)),
            Transport::Tls(t) => Either::Right(Box::pin(t.read_more(buf, limit))),
        }
    }

    /// Reads once for at most `limit`; on `Err(IoFail::Timeout)` nothing
    /// was read and nothing is left buffered (see `io::read_or_give_up`).
    #[inline]
    pub(crate) fn read_or_give_up<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
        limit: Duration,
        canceller: &'a mut Canceller,
    ) -> impl Future<Output = Result<usize, IoFail>> + 'a {
        match self {
            Transport::Plain(s) => Either::Left(io::read_or_give_up(s, buf, limit, canceller)),
            Transport::Tls(t) => Either::Right(Box::pin(t.read_or_give_up(buf, limit, canceller))),
        }
    }

    /// Writes `buf[range]` whole.
    #[inline]
    pub(crate) fn write_range<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
        range: Range<usize>,
        limit: Duration,
    ) -> impl Future<Output = Result<(), IoFail>> + 'a {
        match self {
            Transport::Plain(s) => Either::Left(io::write_range(s, buf, range, limit)),
            Transport::Tls(t) => Either::Right(Box::pin(t.write(&buf[range], limit))),
        }
    }

    /// Writes all of `buf`.
    #[inline]
    pub(crate) fn write_all<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
        limit: Duration,
    ) -> impl Future<Output = Result<(), IoFail>> + 'a {
        let len = buf.len();
        self.write_range(buf, 0..len, limit)
    }

    /// Writes a static response (error pages, `100 Continue`).
    #[inline]
    pub(crate) fn write_static(
        &mut self,
        bytes: &'static [u8],
        limit: Duration,
    ) -> impl Future<Output = Result<(), IoFail>> + '_ {
        match self {
            Transport::Plain(s) => Either::Left(io::write_static(s, bytes, limit)),
            Transport::Tls(t) => Either::Right(Box::pin(t.write(bytes, limit))),
        }
    }

    /// Writes `data` whole (a body piece handed over as `Bytes`).
    #[inline]
    pub(crate) async fn write_bytes(&mut self, data: Bytes, limit: Duration) -> Result<(), IoFail> {
        match self {
            Transport::Plain(s) => match io::within(limit, s.write_all(data)).await {
                None => Err(IoFail::Timeout),
                Some((res, _)) => res.map(|_| ()).map_err(IoFail::Io),
            },
            Transport::Tls(t) => Box::pin(t.write(&data, limit)).await,
        }
    }

    /// Reads once into `buf`'s spare capacity (not zero), handing it back;
    /// `Ok(0)` at the end of the stream. No deadline: the caller's.
    #[inline]
    pub(crate) async fn read_bytes(&mut self, buf: BytesMut) -> (std::io::Result<usize>, BytesMut) {
        match self {
            Transport::Plain(s) => s.read(buf).await,
            Transport::Tls(t) => {
                let mut buf = buf;
                let res = Box::pin(t.read_bytes(&mut buf)).await;
                (res, buf)
            }
        }
    }

    /// Before the connection closes: TLS says `close_notify`.
    #[inline]
    pub(crate) async fn close(&mut self) {
        if let Transport::Tls(t) = self {
            Box::pin(t.close()).await;
        }
    }

    /// Drops buffers before idling (after a timed-out `read_or_give_up`).
    #[inline]
    pub(crate) fn park(&mut self) {
        if let Transport::Tls(t) = self {
            t.park();
        }
    }

    /// Waits until the client sends something (no buffer held meanwhile).
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.readable(false).await,
            Transport::Tls(t) => t.readable().await,
        }
    }
}
