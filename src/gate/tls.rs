//! TLS on client connections: the handshake (within its deadline, with the
//! strict SNI check and the alerts a refused client gets) and the encrypted
//! stream the connection loop reads and writes through.
//!
//! rustls is driven directly over monoio's `TcpStream` (not through an
//! adapter crate) so that two things hold that the connection loop relies
//! on: a read cut off by its deadline loses no byte already taken from the
//! socket and leaves the stream usable (ciphertext is read into `rx`, which
//! is only refilled once rustls has taken all of it), and an idle
//! connection can be parked on socket readability only when neither `rx`
//! nor rustls hold anything unread (see [`TlsStream::park`]).

use std::future::{poll_fn, Future};
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::net::TcpStream;
use rustls::server::Acceptor;
use rustls::{ClientConnection, Connection, HandshakeKind};

use super::conn::connection;
use super::io::{within, IoFail};
use super::transport::Transport;
use crate::clock;
use crate::memory::Tls;
use crate::runtime::worker::Worker;
use crate::sense::tls::{Handshake, HandshakeFailure};

/// Room for one whole TLS record (16 KiB of payload and its overhead).
const RX_SIZE: usize = 16 * 1024 + 512;
/// A write buffer grown past this (a large response: rustls hands over up
/// to 64 KiB of records at a time) is not kept between writes.
const TX_KEEP: usize = 32 * 1024;
/// Time the `close_notify` alert gets to go out when a connection closes.
const CLOSE_LIMIT: Duration = Duration::from_secs(1);
/// A fatal `unrecognized_name` alert (RFC 6066), sent in the clear before
/// any key exists: record type 21, version 3.3, length 2, level 2, code 112.
const UNRECOGNIZED_NAME: &[u8] = &[21, 3, 3, 0, 2, 2, 112];

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("client closed during the handshake")]
    Eof,
    #[error("socket: {0}")]
    Io(io::Error),
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    #[error("no certificate for the server name {0:?} (sni_strict)")]
    UnknownName(String),
    #[error("handshake timeout")]
    Timeout,
}

impl HandshakeError {
    /// The reason Sense counts it under.
    fn reason(&self) -> HandshakeFailure {
        match self {
            HandshakeError::Eof => HandshakeFailure::Eof,
            HandshakeError::Io(_) => HandshakeFailure::Io,
            HandshakeError::Tls(e) => HandshakeFailure::of_rustls(e),
            HandshakeError::UnknownName(_) => HandshakeFailure::UnknownSni,
            HandshakeError::Timeout => HandshakeFailure::Timeout,
        }
    }
}

impl From<IoFail> for HandshakeError {
    fn from(e: IoFail) -> HandshakeError {
        match e {
            IoFail::Eof => HandshakeError::Eof,
            IoFail::Timeout => HandshakeError::Timeout,
            IoFail::Io(e) => HandshakeError::Io(e),
        }
    }
}

/// Handshakes a client accepted on the TLS listener bound to `listener`,
/// then serves it.
pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    worker: Rc<Worker>,
    tls: Arc<Tls>,
    listener: SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let started = clock::now();
    let shake = AssertUnwindSafe(within(tls.handshake_timeout, handshake(tcp, &tls)))
        .catch_unwind()
        .await;
    let error = match shake {
        Ok(Some(Ok(mut stream))) => {
            stream.established(&worker, &tls, listener, started);
            // ALPN chose HTTP/2.
            if stream.is_h2() {
                super::h2::spawn_tls(stream, peer, worker);
                return;
            }
            let client = Transport::Tls(Box::new(stream));
            return connection(client, peer, worker).await;
        }
        Ok(Some(Err(e))) => e,
        Ok(None) => HandshakeError::Timeout,
        Err(_) => {
            tracing::error!(worker = worker.id, %peer, "TLS handshake panicked; connection closed");
            worker.connection_closed();
            return;
        }
    };
    tracing::debug!(worker = worker.id, %peer, error = %error, "TLS handshake failed");
    if let Some(rec) = &worker.recorder {
        rec.borrow_mut().tls_failed(listener, error.reason());
    }
    worker.connection_closed();
}

/// The server side of a handshake: reads the ClientHello, refuses unknown
/// names when strict, then completes the handshake with rustls.
pub(crate) async fn handshake(mut tcp: TcpStream, tls: &Tls) -> Result<TlsStream, HandshakeError> {
    let mut acceptor = Acceptor::default();
    let mut rx: Vec<u8> = Vec::with_capacity(RX_SIZE);
    let mut at = 0;
    let accepted = loop {
        if at == rx.len() {
            rx.clear();
            at = 0;
            let (res, buf) = tcp.read(rx).await;
            rx = buf;
            match res {
                Ok(0) => return Err(HandshakeError::Eof),
                Ok(_) => {}
                Err(e) => return Err(HandshakeError::Io(e)),
            }
        }
        let mut input = &rx[at..];
        let before = input.len();
        let read = acceptor.read_tls(&mut input);
        at += before - input.len();
        read.map_err(HandshakeError::Io)?;
        match acceptor.accept() {
            Ok(None) => {}
            Ok(Some(a)) => break a,
            Err((e, mut alert)) => {
                let mut out = Vec::new();
                let _ = alert.write_all(&mut out);
                let _ = tcp.write_all(out).await;
                return Err(HandshakeError::Tls(e));
            }
        }
    };
    let hello = accepted.client_hello();
    if tls.certificates.refuses(hello.server_name()) {
        let name = hello.server_name().unwrap_or_default().to_string();
        let _ = tcp.write_all(UNRECOGNIZED_NAME).await;
        return Err(HandshakeError::UnknownName(name));
    }
    let conn = match accepted.into_connection(tls.server.clone()) {
        Ok(c) => c,
        Err((e, mut alert)) => {
            let mut out = Vec::new();
            let _ = alert.write_all(&mut out);
            let _ = tcp.write_all(out).await;
            return Err(HandshakeError::Tls(e));
        }
    };
    let stream = TlsStream {
        tcp,
        tls: Connection::Server(conn),
        rx,
        rx_at: at,
        tx: Vec::new(),
        torn: false,
        client_cert: Box::default(),
    };
    stream.complete().await
}

/// The client side of a handshake with an upstream: `name` is sent in SNI
/// and checked against its certificate (as `config` says).
pub(crate) async fn connect(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
) -> Result<TlsStream, HandshakeError> {
    let conn = ClientConnection::new(config, name).map_err(HandshakeError::Tls)?;
    let stream = TlsStream {
        tcp,
        tls: Connection::Client(conn),
        rx: Vec::with_capacity(RX_SIZE),
        rx_at: 0,
        tx: Vec::new(),
        torn: false,
        client_cert: Box::default(),
    };
    stream.complete().await
}

impl TlsStream {
    /// Runs the handshake to its end (either side).
    async fn complete(mut self) -> Result<TlsStream, HandshakeError> {
        loop {
            if self.tls.wants_write() {
                self.flush().await?;
            }
            if !self.tls.is_handshaking() {
                return Ok(self);
            }
            if self.rx_at < self.rx.len() {
                if let Err(e) = self.feed() {
                    // rustls queued the alert that says why.
                    let _ = self.flush().await;
                    return Err(match e.into_inner() {
                        Some(inner) => match inner.downcast::<rustls::Error>() {
                            Ok(t) => HandshakeError::Tls(*t),
                            Err(other) => HandshakeError::Io(io::Error::other(other)),
                        },
                        None => HandshakeError::Io(io::ErrorKind::InvalidData.into()),
                    });
                }
                continue;
            }
            self.recv().await?;
        }
    }
}

/// An established TLS connection: a client's to DAO, or DAO's to an
/// upstream.
pub(crate) struct TlsStream {
    tcp: TcpStream,
    tls: Connection,
    /// Ciphertext read from the socket; `rx[rx_at..]` is not in rustls yet.
    rx: Vec<u8>,
    rx_at: usize,
    /// Records on their way to the socket (empty between writes).
    tx: Vec<u8>,
    /// A write was dropped mid-record (its deadline passed): the stream
    /// cannot carry another record.
    torn: bool,
    /// The client certificate header line its requests carry upstream
    /// (empty: none; see `client_cert`).
    client_cert: Box<[u8]>,
}

impl TlsStream {
    /// The handshake is done: counted in Sense, and the client
    /// certificate's details made once for all the requests to come.
    fn established(&mut self, worker: &Worker, tls: &Tls, listener: SocketAddr, started: Instant) {
        let cert = self.tls.peer_certificates().and_then(|c| c.first());
        if let (Some(name), Some(der)) = (&tls.client_cert_header, cert) {
            self.client_cert = super::client_cert::header_line(name, der);
        }
        if let Some(rec) = &worker.recorder {
            let h = Handshake {
                version: Handshake::version_index(self.tls.protocol_version()),
                alpn: Handshake::alpn_index(self.tls.alpn_protocol()),
                resumed: self.tls.handshake_kind() == Some(HandshakeKind::Resumed),
                client_cert: cert.is_some(),
                duration_us: clock::now().saturating_duration_since(started).as_micros() as u64,
            };
            rec.borrow_mut().tls_completed(listener, &h);
        }
    }

    /// The client certificate header line (`Name: value\r\n`) of the
    /// connection's requests; empty when none.
    pub(crate) fn client_cert(&self) -> &[u8] {
        &self.client_cert
    }

    /// Takes the client certificate header line (for HTTP/2, whose
    /// streams share it).
    pub(crate) fn take_client_cert(&mut self) -> Box<[u8]> {
        std::mem::take(&mut self.client_cert)
    }

    /// Whether the two ends agreed on HTTP/2 (ALPN `h2`).
    pub(crate) fn is_h2(&self) -> bool {
        self.tls.alpn_protocol() == Some(b"h2")
    }

    /// The socket, the rustls connection, and the ciphertext read from
    /// the socket that rustls has not taken yet (a client's first records
    /// after its handshake often come with its last handshake message).
    pub(crate) fn into_parts(mut self) -> (TcpStream, Connection, Vec<u8>) {
        self.rx.drain(..self.rx_at);
        (self.tcp, self.tls, self.rx)
    }

    /// Reads once, appending plaintext to `buf` (which must have spare
    /// capacity), for at most `limit`.
    pub(crate) async fn read_more(
        &mut self,
        buf: &mut Vec<u8>,
        limit: Duration,
    ) -> Result<usize, IoFail> {
        debug_assert!(buf.capacity() > buf.len(), "read_more needs spare capacity");
        within(limit, self.read_inner(buf))
            .await
            .unwrap_or(Err(IoFail::Timeout))
    }

    async fn read_inner(&mut self, buf: &mut Vec<u8>) -> Result<usize, IoFail> {
        loop {
            if let Some(n) = self.take_plaintext(buf).await? {
                return Ok(n);
            }
            self.recv().await?;
        }
    }

    /// As `read_more`, but when `limit` passes with no plaintext the
    /// socket read is cancelled and awaited, so that nothing is lost:
    /// `Err(IoFail::Timeout)` leaves `rx` empty and rustls with no
    /// plaintext, the state [`TlsStream::park`] needs.
    pub(crate) async fn read_or_give_up(
        &mut self,
        buf: &mut Vec<u8>,
        limit: Duration,
        canceller: &mut Canceller,
    ) -> Result<usize, IoFail> {
        let deadline = clock::now() + limit;
        loop {
            if let Some(n) = self.take_plaintext(buf).await? {
                return Ok(n);
            }
            let left = deadline.saturating_duration_since(clock::now());
            if left.is_zero() {
                return Err(IoFail::Timeout);
            }
            let mut rx = std::mem::take(&mut self.rx);
            rx.clear();
            self.rx_at = 0;
            rx.reserve_exact(RX_SIZE);
            let handle = canceller.handle();
            // The whole (empty) Vec, not a slice of it: a read of another
            // buffer type than the plain path's, which therefore keeps its
            // own inlined copy of the operation.
            let mut op = pin!(self.tcp.cancelable_read(rx, handle));
            let mut sleep = pin!(monoio::time::sleep(left));
            let mut fired = false;
            let (res, slice) = poll_fn(|cx| {
                if let Poll::Ready(done) = op.as_mut().poll(cx) {
                    return Poll::Ready(done);
                }
                if !fired && sleep.as_mut().poll(cx).is_ready() {
                    fired = true;
                    *canceller = std::mem::take(canceller).cancel();
                }
                Poll::Pending
            })
            .await;
            self.rx = slice;
            match res {
                Ok(0) => return Err(IoFail::Eof),
                // Maybe a whole record, maybe part of one: looked at above.
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => return Err(IoFail::Timeout),
                Err(e) => return Err(IoFail::Io(e)),
            }
        }
    }

    /// Moves plaintext rustls holds into `buf`, handing rustls buffered
    /// ciphertext while it has none. `Some(n)`: `n` bytes appended;
    /// `None`: everything read is used up, the socket must be read.
    async fn take_plaintext(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>, IoFail> {
        let room = buf.capacity() - buf.len();
        self.take_into(room, |chunk| buf.extend_from_slice(chunk))
            .await
    }

    /// As `take_plaintext`, handing at most `room` bytes to `put`.
    async fn take_into(
        &mut self,
        room: usize,
        mut put: impl FnMut(&[u8]),
    ) -> Result<Option<usize>, IoFail> {
        loop {
            let mut reader = self.tls.reader();
            match reader.fill_buf() {
                Ok([]) => return Err(IoFail::Eof),
                Ok(chunk) => {
                    let n = chunk.len().min(room);
                    put(&chunk[..n]);
                    reader.consume(n);
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // TCP closed without close_notify: HTTP framing tells
                // whether anything was cut short.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(IoFail::Eof),
                Err(e) => return Err(IoFail::Io(e)),
            }
            if self.rx_at == self.rx.len() {
                return Ok(None);
            }
            if let Err(e) = self.feed() {
                let _ = self.flush().await;
                return Err(IoFail::Io(e));
            }
            // A key update's answer, an alert.
            if self.tls.wants_write() {
                self.flush().await?;
            }
        }
    }

    /// Reads once, appending plaintext to `buf` (up to its spare
    /// capacity, which must not be zero); `Ok(0)` at the end of the stream.
    pub(crate) async fn read_bytes(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        debug_assert!(
            buf.capacity() > buf.len(),
            "read_bytes needs spare capacity"
        );
        loop {
            let room = buf.capacity() - buf.len();
            match self
                .take_into(room, |chunk| buf.extend_from_slice(chunk))
                .await
            {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(IoFail::Eof) => return Ok(0),
                Err(e) => return Err(e.into_io()),
            }
            match self.recv().await {
                Ok(()) => {}
                Err(IoFail::Eof) => return Ok(0),
                Err(e) => return Err(e.into_io()),
            }
        }
    }

    /// Hands rustls what it takes of `rx` and lets it process the records.
    fn feed(&mut self) -> io::Result<()> {
        let mut input = &self.rx[self.rx_at..];
        let before = input.len();
        let read = self.tls.read_tls(&mut input);
        self.rx_at += before - input.len();
        read?;
        self.tls
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(())
    }

    /// Reads from the socket into the (used up) `rx`. Dropped mid-way, it
    /// leaves `rx` empty: nothing unread is lost.
    async fn recv(&mut self) -> Result<(), IoFail> {
        debug_assert_eq!(self.rx_at, self.rx.len(), "rx refilled before use");
        let mut rx = std::mem::take(&mut self.rx);
        rx.clear();
        self.rx_at = 0;
        rx.reserve_exact(RX_SIZE);
        let (res, rx) = self.tcp.read(rx).await;
        self.rx = rx;
        match res {
            Ok(0) => Err(IoFail::Eof),
            Ok(_) => Ok(()),
            Err(e) => Err(IoFail::Io(e)),
        }
    }

    /// Encrypts and sends all of `data`, for at most `limit`.
    pub(crate) async fn write(&mut self, data: &[u8], limit: Duration) -> Result<(), IoFail> {
        within(limit, self.write_inner(data))
            .await
            .unwrap_or(Err(IoFail::Timeout))
    }

    async fn write_inner(&mut self, mut data: &[u8]) -> Result<(), IoFail> {
        while !data.is_empty() {
            // rustls takes up to its buffer limit (64 KiB) at a time.
            let n = self.tls.writer().write(data).map_err(IoFail::Io)?;
            data = &data[n..];
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends every record rustls has ready.
    async fn flush(&mut self) -> Result<(), IoFail> {
        if self.torn {
            return Err(IoFail::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "a TLS record was cut off",
            )));
        }
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.tx).map_err(IoFail::Io)?;
        }
        if self.tx.is_empty() {
            return Ok(());
        }
        self.torn = true;
        let tx = std::mem::take(&mut self.tx);
        let (res, mut tx) = self.tcp.write_all(tx).await;
        res.map_err(IoFail::Io)?;
        self.torn = false;
        tx.clear();
        if tx.capacity() <= TX_KEEP {
            self.tx = tx;
        }
        Ok(())
    }

    /// Says goodbye (`close_notify`) before the socket closes, so that a
    /// client reading a body delimited by the close knows it is whole.
    pub(crate) async fn close(&mut self) {
        if self.torn {
            return;
        }
        self.tls.send_close_notify();
        let _ = within(CLOSE_LIMIT, self.flush()).await;
    }

    /// Whether nothing read is waiting in `rx` or in rustls: only then may
    /// the connection wait on socket readability.
    pub(crate) fn drained(&mut self) -> bool {
        self.rx_at == self.rx.len()
            && matches!(self.tls.reader().fill_buf(), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Gives the buffers back while the connection idles; they come back
    /// with the next read or write.
    pub(crate) fn park(&mut self) {
        debug_assert!(self.drained(), "parking a TLS stream with unread bytes");
        self.rx = Vec::new();
        self.rx_at = 0;
        self.tx = Vec::new();
    }

    /// Waits until the client sends something.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.tcp.readable(false).await
    }
}
