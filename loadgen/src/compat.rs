//! Compat: tokio's `AsyncRead`/`AsyncWrite` over a monoio stream, so the h2
//! crate can drive HTTP/2 on a monoio (io_uring) connection.
//!
//! monoio hands buffers to the kernel and gets them back ("rent" I/O);
//! tokio's traits lend a slice for one poll. The adapter owns one read and
//! one write buffer: a read completes into its buffer and is copied out as
//! the caller asks; a write copies the caller's bytes in and reports them
//! written at once, the ring write finishing in the background (a failure
//! surfaces on the next write or flush, as with a buffered writer).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Split,
    Splitable,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Size of each side's buffer.
const BUF: usize = 16 * 1024;

type Pending<H> = Pin<Box<dyn Future<Output = (H, io::Result<usize>, Vec<u8>)>>>;

enum Side<H> {
    Idle(H, Vec<u8>),
    Busy(Pending<H>),
    Gone,
}

/// A monoio stream seen through tokio's I/O traits.
pub struct Compat<S: AsyncWriteRent> {
    read: Side<OwnedReadHalf<S>>,
    /// Bytes read but not yet handed out: `read_buf[read_pos..]`, valid
    /// while `read` is idle.
    read_pos: usize,
    write: Side<OwnedWriteHalf<S>>,
}

impl<S> Compat<S>
where
    S: AsyncReadRent + AsyncWriteRent + Split + 'static,
{
    /// Wraps a stream.
    pub fn new(stream: S) -> Compat<S> {
        let (r, w) = stream.into_split();
        Compat {
            read: Side::Idle(r, Vec::with_capacity(BUF)),
            read_pos: 0,
            write: Side::Idle(w, Vec::with_capacity(BUF)),
        }
    }
}

impl<S> AsyncRead for Compat<S>
where
    S: AsyncReadRent + AsyncWriteRent + 'static,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match std::mem::replace(&mut this.read, Side::Gone) {
                Side::Idle(half, buf) if this.read_pos < buf.len() => {
                    let n = out.remaining().min(buf.len() - this.read_pos);
                    out.put_slice(&buf[this.read_pos..this.read_pos + n]);
                    this.read_pos += n;
                    this.read = Side::Idle(half, buf);
                    return Poll::Ready(Ok(()));
                }
                Side::Idle(mut half, mut buf) => {
                    buf.clear();
                    this.read_pos = 0;
                    this.read = Side::Busy(Box::pin(async move {
                        let (res, buf) = half.read(buf).await;
                        (half, res, buf)
                    }));
                }
                Side::Busy(mut fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.read = Side::Busy(fut);
                        return Poll::Pending;
                    }
                    Poll::Ready((half, res, buf)) => {
                        this.read = Side::Idle(half, buf);
                        match res {
                            // End of stream: leave `out` unfilled.
                            Ok(0) => return Poll::Ready(Ok(())),
                            Ok(_) => {}
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                    }
                },
                Side::Gone => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }
}

impl<S> Compat<S>
where
    S: AsyncReadRent + AsyncWriteRent + 'static,
{
    /// Waits for the write in flight, if any.
    fn poll_write_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match std::mem::replace(&mut self.write, Side::Gone) {
            Side::Busy(mut fut) => match fut.as_mut().poll(cx) {
                Poll::Pending => {
                    self.write = Side::Busy(fut);
                    Poll::Pending
                }
                Poll::Ready((half, res, buf)) => {
                    self.write = Side::Idle(half, buf);
                    Poll::Ready(res.map(|_| ()))
                }
            },
            idle @ Side::Idle(..) => {
                self.write = idle;
                Poll::Ready(Ok(()))
            }
            Side::Gone => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }
}

impl<S> AsyncWrite for Compat<S>
where
    S: AsyncReadRent + AsyncWriteRent + 'static,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_write_idle(cx))?;
        let Side::Idle(mut half, mut buf) = std::mem::replace(&mut this.write, Side::Gone) else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        buf.clear();
        buf.extend_from_slice(data);
        this.write = Side::Busy(Box::pin(async move {
            let (res, buf) = half.write_all(buf).await;
            (half, res, buf)
        }));
        // Start the write now; its completion is collected later.
        if let Side::Busy(fut) = &mut this.write {
            if let Poll::Ready((half, res, buf)) = fut.as_mut().poll(cx) {
                this.write = Side::Idle(half, buf);
                res?;
            }
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_idle(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_idle(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn echo_through_the_adapter() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            monoio::spawn(async move {
                let (s, _) = listener.accept().await.expect("accept");
                let mut s = Compat::new(s);
                let mut buf = vec![0u8; 100_000];
                s.read_exact(&mut buf).await.expect("server read");
                s.write_all(&buf).await.expect("server write");
                s.flush().await.expect("flush");
            });
            let s = monoio::net::TcpStream::connect_addr(addr)
                .await
                .expect("connect");
            let mut s = Compat::new(s);
            let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
            s.write_all(&data).await.expect("client write");
            s.flush().await.expect("flush");
            let mut back = vec![0u8; data.len()];
            s.read_exact(&mut back).await.expect("client read");
            assert_eq!(back, data);
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.expect("eof");
            assert!(rest.is_empty());
        });
    }
}
