//! Socket reads and writes with deadlines, on owned buffers (monoio moves
//! a buffer into each io_uring operation and hands it back when done).

use std::io;
use std::ops::Range;
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
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
    match monoio::time::timeout(limit, stream.read(owned.slice_mut(len..cap))).await {
        Err(_) => Err(IoFail::Timeout),
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            match res {
                Ok(0) => Err(IoFail::Eof),
                Ok(n) => Ok(n),
                Err(e) => Err(IoFail::Io(e)),
            }
        }
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
    match monoio::time::timeout(limit, stream.write_all(owned.slice(range))).await {
        Err(_) => Err(IoFail::Timeout),
        Ok((res, slice)) => {
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
    match monoio::time::timeout(limit, stream.write_all(bytes)).await {
        Err(_) => Err(IoFail::Timeout),
        Ok((res, _)) => res.map(|_| ()).map_err(IoFail::Io),
    }
}
