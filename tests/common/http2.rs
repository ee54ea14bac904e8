//! HTTP/2 on both sides of DAO for the tests: the `h2` crate's client on a
//! monoio runtime of the test's own (as DAO's server side runs, over
//! monoio-compat), and a real h2c server (the `h2` crate's, on a tokio
//! runtime of its own) whose answers a handler chooses.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, Request, Response};

/// Runs `f` on a monoio runtime of the test's own.
pub fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(f)
}

/// An h2c client connection to `addr` (its connection task spawned),
/// granting `window` bytes per stream when given.
pub async fn h2c(addr: SocketAddr, window: Option<u32>) -> SendRequest<Bytes> {
    let tcp = monoio::net::TcpStream::connect(addr).await.unwrap();
    let io = Box::new(monoio_compat::StreamWrapper::new(tcp));
    let mut builder = h2::client::Builder::new();
    if let Some(w) = window {
        builder.initial_window_size(w);
    }
    client_over(&builder, io).await
}

/// An h2 client connection over `io` (h2c, or a TLS stream from
/// [`tls_io`]), its connection task spawned.
pub async fn client_over<T>(builder: &h2::client::Builder, io: T) -> SendRequest<Bytes>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let (client, conn) = builder.handshake::<_, Bytes>(io).await.unwrap();
    monoio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A response as the h2 client received it.
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `req` (with `body`, if any, in one DATA frame) and reads the
/// whole response.
pub async fn send(client: &mut SendRequest<Bytes>, req: Request<()>, body: &[u8]) -> Got {
    let mut client = client.clone().ready().await.unwrap();
    let (resp, mut stream) = client.send_request(req, body.is_empty()).unwrap();
    if !body.is_empty() {
        stream
            .send_data(Bytes::copy_from_slice(body), true)
            .unwrap();
    }
    read(resp.await.expect("a response")).await
}

/// Reads a response's body and trailers.
pub async fn read(resp: Response<h2::RecvStream>) -> Got {
    let (parts, mut recv) = resp.into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await.unwrap();
    Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        trailers,
    }
}

pub fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

/// Serves each connection to a new listener on 127.0.0.1:0 with
/// `serve`, in a task of a tokio runtime in a thread of its own; returns
/// the listener's address.
pub fn tokio_server<F, S>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> S + Send + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                if let Ok((tcp, _)) = listener.accept().await {
                    tokio::spawn(serve(tcp));
                }
            }
        });
    });
    addr
}

/// How the h2c server answers one request.
#[derive(Default)]
pub struct Answer {
    /// Interim heads sent first: status and headers.
    pub interim: Vec<(u16, Vec<(&'static str, &'static str)>)>,
    /// The final status (ignored when `reset`).
    pub status: u16,
    pub body: Vec<u8>,
    /// Reset the stream with this code instead of answering.
    pub reset: Option<h2::Reason>,
}

impl Answer {
    pub fn status(status: u16, body: &[u8]) -> Answer {
        Answer {
            status,
            body: body.to_vec(),
            ..Answer::default()
        }
    }
}

/// A request as the h2c server received it: method, path, headers, body.
pub type Seen = (String, String, HeaderMap, Vec<u8>);

type Handler = dyn Fn(&Seen) -> Answer + Send + Sync;

/// A real h2c server on 127.0.0.1:0 (prior knowledge, no TLS): each
/// request is read whole, recorded, and answered as `answer` says.
pub struct H2cBackend {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Seen>>>,
}

impl H2cBackend {
    pub fn start(answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> H2cBackend {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(answer);
        let seen = requests.clone();
        let addr = tokio_server(move |tcp| {
            let (handler, seen) = (handler.clone(), seen.clone());
            async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((req, respond))) = conn.accept().await {
                    let (handler, seen) = (handler.clone(), seen.clone());
                    tokio::spawn(answer_one(req, respond, handler, seen));
                }
            }
        });
        H2cBackend { addr, requests }
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn answer_one(
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    handler: Arc<Handler>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let (parts, mut recv) = req.into_parts();
    let mut body = Vec::new();
    while let Some(Ok(chunk)) = recv.data().await {
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    let path = parts.uri.path_and_query().map_or("", |p| p.as_str());
    let request = (
        parts.method.to_string(),
        path.to_string(),
        parts.headers,
        body,
    );
    let answer = handler(&request);
    seen.lock().unwrap().push(request);
    if let Some(reason) = answer.reset {
        respond.send_reset(reason);
        return;
    }
    for (status, headers) in answer.interim {
        let mut head = Response::builder().status(status);
        for (n, v) in headers {
            head = head.header(n, v);
        }
        let _ = respond.send_informational(head.body(()).unwrap());
    }
    let head = Response::builder()
        .status(answer.status)
        .header("content-length", answer.body.len())
        .body(())
        .unwrap();
    let empty = answer.body.is_empty();
    if let Ok(mut s) = respond.send_response(head, empty) {
        if !empty {
            let _ = s.send_data(Bytes::from(answer.body), true);
        }
    }
}

/// A TLS connection to `addr` (DAO's, as `localhost`, trusting `pki`'s
/// CA) whose ALPN chose `h2`, as the tokio-style stream the h2 crate's
/// client takes. Read and written at once through its halves:
/// monoio-rustls's stream read and written as one object loses its
/// write buffer.
pub async fn tls_io(pki: &super::pki::Pki, addr: SocketAddr) -> TlsDuplex {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(pki.path("ca.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = monoio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = monoio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(stream.alpn_protocol().as_deref(), Some(&b"h2"[..]));
    let (r, w) = monoio::io::Splitable::into_split(stream);
    Duplex {
        r: monoio_compat::StreamWrapper::new(r),
        w: monoio_compat::StreamWrapper::new(w),
    }
}

/// What [`tls_io`] returns.
pub type TlsDuplex = Duplex<
    monoio::io::OwnedReadHalf<monoio_rustls::ClientTlsStream<monoio::net::TcpStream>>,
    monoio::io::OwnedWriteHalf<monoio_rustls::ClientTlsStream<monoio::net::TcpStream>>,
>;

/// A stream's read and write halves as one tokio-style stream.
pub struct Duplex<R, W> {
    r: monoio_compat::StreamWrapper<R>,
    w: monoio_compat::StreamWrapper<W>,
}

impl<R, W: Unpin> tokio::io::AsyncRead for Duplex<R, W>
where
    R: monoio::io::AsyncReadRent + Unpin + 'static,
{
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.r).poll_read(cx, buf)
    }
}

impl<R: Unpin, W> tokio::io::AsyncWrite for Duplex<R, W>
where
    W: monoio::io::AsyncWriteRent + Unpin + 'static,
{
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.w).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.w).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.w).poll_shutdown(cx)
    }
}
