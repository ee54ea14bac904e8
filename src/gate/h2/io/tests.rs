//! The sockets and the TLS layer of `io` against a real peer on loopback
//! (a std thread), on io_uring and on the legacy driver, through the
//! readiness-based socket and through the buffered fallback.

use std::future::{poll_fn, Future};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::*;

/// Runs `test` on an io_uring runtime (where the kernel has io_uring) and
/// on a legacy (epoll) one.
fn on_each_driver<Fut: Future<Output = ()>>(test: impl Fn() -> Fut) {
    if let Ok(mut rt) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        rt.block_on(test());
    }
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(test());
}

/// An accepted socket whose peer runs `peer` on a thread of its own. The
/// peer's receive buffer is small (set before it connects, so that the
/// window it offers stays small): what it does not read holds writes back.
async fn pair<T: Send + 'static>(
    peer: impl FnOnce(std::net::TcpStream) -> T + Send + 'static,
) -> (TcpStream, JoinHandle<T>) {
    let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(64 * 1024).unwrap();
        s.connect(&addr.into()).unwrap();
        peer(s.into())
    });
    let (tcp, _) = listener.accept().await.unwrap();
    (tcp, peer)
}

/// Both ways of wrapping a socket.
fn ready(tcp: TcpStream) -> Socket {
    let s = socket(tcp);
    assert!(
        matches!(s.0, Way::Ready(_)),
        "taken by the readiness poller"
    );
    s
}

fn fallback(tcp: TcpStream) -> Socket {
    Socket(Way::Buffered(buffered(tcp)))
}

async fn read_some<T: AsyncRead + Unpin>(io: &mut T, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut rb = ReadBuf::new(buf);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut rb))?;
        Poll::Ready(Ok(rb.filled().len()))
    })
    .await
}

/// Writes `data` whole, adding what each write took to `taken`.
async fn write_all<T: AsyncWrite + Unpin>(io: &mut T, data: &[u8], taken: &Cell<usize>) {
    let mut at = 0;
    while at < data.len() {
        let n = poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, &data[at..]))
            .await
            .unwrap();
        assert!(n > 0);
        at += n;
        taken.set(taken.get() + n);
    }
    poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx))
        .await
        .unwrap();
}

async fn shutdown<T: AsyncWrite + Unpin>(io: &mut T) {
    poll_fn(|cx| Pin::new(&mut *io).poll_shutdown(cx))
        .await
        .unwrap();
}

/// Bytes no two neighbouring chunks share, to catch reordering.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn pieces_then_end(wrap: fn(TcpStream) -> Socket) {
    let (tcp, peer) = pair(|mut s| {
        for piece in [&b"abc"[..], b"defgh", b"i"] {
            s.write_all(piece).unwrap();
            thread::sleep(Duration::from_millis(30));
        }
        s.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        back
    })
    .await;
    let mut sock = wrap(tcp);
    let (mut got, mut reads) = (Vec::new(), 0);
    loop {
        let mut small = [0u8; 4];
        let n = read_some(&mut sock, &mut small).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&small[..n]);
        reads += 1;
    }
    assert_eq!(got, b"abcdefghi");
    assert!(reads >= 3, "each piece waited for: {reads} reads");
    // The end stays the end; the other way is still open.
    assert_eq!(read_some(&mut sock, &mut [0u8; 4]).await.unwrap(), 0);
    write_all(&mut sock, b"bye", &Cell::new(0)).await;
    shutdown(&mut sock).await;
    assert_eq!(peer.join().unwrap(), b"bye");
}

#[test]
fn reads_data_arriving_in_pieces_then_the_end() {
    on_each_driver(|| pieces_then_end(ready));
    on_each_driver(|| pieces_then_end(fallback));
}

async fn write_waits_for_the_peer(wrap: fn(TcpStream) -> Socket) {
    const TOTAL: usize = 16 << 20;
    const WAIT: Duration = Duration::from_millis(200);
    let data = Rc::new(pattern(TOTAL));
    let (go, read) = mpsc::channel::<()>();
    let (tcp, peer) = pair(move |s| {
        // Reads nothing until told, then everything.
        read.recv().unwrap();
        let mut got = Vec::with_capacity(TOTAL);
        (&s).read_to_end(&mut got).unwrap();
        got
    })
    .await;
    let mut sock = wrap(tcp);
    let taken = Rc::new(Cell::new(0));
    let done = Rc::new(Cell::new(false));
    let writer = monoio::spawn({
        let (data, taken, done) = (data.clone(), taken.clone(), done.clone());
        async move {
            write_all(&mut sock, &data, &taken).await;
            shutdown(&mut sock).await;
            done.set(true);
        }
    });
    monoio::time::sleep(WAIT).await;
    // The kernel's buffers took what they could, and no more was taken.
    let stalled = taken.get();
    assert!(stalled > 0 && stalled < TOTAL, "{stalled} of {TOTAL} taken");
    monoio::time::sleep(WAIT / 2).await;
    assert_eq!(
        taken.get(),
        stalled,
        "writes went on while the peer read nothing"
    );
    assert!(!done.get());
    go.send(()).unwrap();
    writer.await;
    let got = peer.join().unwrap();
    assert_eq!(got.len(), TOTAL);
    assert!(got == *data, "bytes out of order");
}

#[test]
fn writes_wait_for_a_peer_that_does_not_read() {
    on_each_driver(|| write_waits_for_the_peer(ready));
    on_each_driver(|| write_waits_for_the_peer(fallback));
}

/// A server config for `localhost`, and a client config that trusts it.
fn tls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

async fn tls_both_ways(wrap: fn(TcpStream) -> Socket) {
    const TOTAL: usize = 16 << 20;
    const WAIT: Duration = Duration::from_millis(200);
    let (server, client) = tls_configs();
    let data = Rc::new(pattern(TOTAL));
    let (go, read) = mpsc::channel::<()>();
    let (tcp, peer) = pair(move |s| {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(client, name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, s);
        tls.write_all(b"hello ").unwrap();
        tls.flush().unwrap();
        thread::sleep(Duration::from_millis(50));
        tls.write_all(b"world").unwrap();
        tls.flush().unwrap();
        // The answer waits for this reader.
        read.recv().unwrap();
        let mut got = vec![0u8; TOTAL];
        tls.read_exact(&mut got).unwrap();
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        // Until the server's close_notify.
        assert_eq!(tls.read(&mut [0u8; 8]).unwrap(), 0);
        got
    })
    .await;
    let conn = rustls::ServerConnection::new(server).unwrap();
    let mut tls = TlsIo::new(wrap(tcp), Connection::Server(conn), Vec::new());
    let mut got = Vec::new();
    while got.len() < b"hello world".len() {
        let mut small = [0u8; 3];
        let n = read_some(&mut tls, &mut small).await.unwrap();
        assert!(n > 0, "the client's end before its request");
        got.extend_from_slice(&small[..n]);
    }
    assert_eq!(got, b"hello world");
    let taken = Rc::new(Cell::new(0));
    let writer = monoio::spawn({
        let (data, taken) = (data.clone(), taken.clone());
        async move {
            write_all(&mut tls, &data, &taken).await;
            tls
        }
    });
    monoio::time::sleep(WAIT).await;
    // The socket's buffers and rustls's took what they could.
    let stalled = taken.get();
    assert!(stalled > 0 && stalled < TOTAL, "{stalled} of {TOTAL} taken");
    go.send(()).unwrap();
    let mut tls = writer.await;
    // The client's close_notify.
    assert_eq!(read_some(&mut tls, &mut [0u8; 8]).await.unwrap(), 0);
    shutdown(&mut tls).await;
    assert!(peer.join().unwrap() == *data, "bytes out of order");
}

#[test]
fn tls_reads_and_writes_straight_through_the_socket() {
    on_each_driver(|| tls_both_ways(ready));
    on_each_driver(|| tls_both_ways(fallback));
}
