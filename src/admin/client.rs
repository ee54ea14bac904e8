//! A small blocking HTTP/1.1 client for the admin API (what `daoctl`
//! speaks): one request per connection, JSON in and out.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use super::ApiError;
use crate::memory::FieldError;
use crate::proto::h1::{parse_response, BodyKind, ChunkedDecoder, ResponseHead};

/// Time allowed to establish the connection (each address tried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response accepted.
const MAX_RESPONSE: usize = 64 << 20;

/// Where the admin API is and the token to show it.
#[derive(Clone)]
pub struct Client {
    /// `host:port` to connect to.
    authority: String,
    /// Path the API is mounted under (`""`, or `/prefix` behind a proxy).
    base: String,
    token: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("authority", &self.authority)
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A response as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Its status code.
    pub status: u16,
    /// Its body, de-chunked.
    pub body: Vec<u8>,
}

/// Why a call did not return a 2xx JSON body.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A bad URL or token: the caller's mistake (daoctl exits 2).
    #[error("{0}")]
    Usage(String),
    /// The API could not be reached (daoctl exits 3).
    #[error("cannot connect to the admin API at {authority}: {reason}")]
    Connect {
        /// `host:port` tried.
        authority: String,
        /// Why it failed.
        reason: String,
    },
    /// Connected, but the exchange failed or the answer was not HTTP/JSON.
    #[error("admin API at {authority}: {reason}")]
    Exchange {
        /// `host:port` talked to.
        authority: String,
        /// What went wrong.
        reason: String,
    },
    /// The API refused the request (4xx/5xx), with its message and fields.
    #[error("{0}")]
    Api(ApiError),
}

impl ClientError {
    /// `daoctl`'s exit status: 1 refused or failed, 2 usage, 3 unreachable.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            ClientError::Connect { .. } => 3,
            ClientError::Exchange { .. } | ClientError::Api(_) => 1,
        }
    }
}

impl Client {
    /// A client for the API at `url` (`http://host[:port][/prefix]`; a
    /// bare `host:port` is read as http), sending `token` if given.
    pub fn new(url: &str, token: Option<String>) -> Result<Client, ClientError> {
        let (authority, base) = parse_url(url).map_err(ClientError::Usage)?;
        if let Some(t) = &token {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ClientError::Usage(
                    "the token must be visible ASCII characters (no spaces or control characters)"
                        .to_string(),
                ));
            }
        }
        Ok(Client {
            authority,
            base,
            token,
            timeout: Duration::from_secs(30),
        })
    }

    /// Sets the time allowed for each read and write (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// `host:port` this client connects to.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `GET` an API path (such as `/api/v1/status`): its JSON body.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.json(self.send("GET", path, None)?)
    }

    /// `POST` an API path with an optional JSON body: the JSON answer.
    pub fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        self.json(self.send("POST", path, bytes.as_deref())?)
    }

    /// Reads a 2xx body as JSON; turns anything else into an error.
    fn json(&self, response: Response) -> Result<Value, ClientError> {
        if (200..300).contains(&response.status) {
            return serde_json::from_slice(&response.body)
                .map_err(|e| self.exchange(format!("the answer is not JSON: {e}")));
        }
        Err(ClientError::Api(api_error(&response)))
    }

    fn exchange(&self, reason: impl Into<String>) -> ClientError {
        ClientError::Exchange {
            authority: self.authority.clone(),
            reason: reason.into(),
        }
    }

    /// Sends one request and reads the whole response.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let mut stream = self.connect()?;
        let io = |e: io::Error| self.exchange(e.to_string());
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let mut request = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: daoctl/{}\r\n\
             Accept: application/json\r\nConnection: close\r\n",
            self.base,
            self.authority,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(t) = &self.token {
            request.push_str("Authorization: Bearer ");
            request.push_str(t);
            request.push_str("\r\n");
        }
        match body {
            Some(b) => {
                request.push_str("Content-Type: application/json\r\n");
                request.push_str(&format!("Content-Length: {}\r\n", b.len()));
            }
            None if method == "POST" => request.push_str("Content-Length: 0\r\n"),
            None => {}
        }
        request.push_str("\r\n");
        let mut out = request.into_bytes();
        out.extend_from_slice(body.unwrap_or_default());
        // The server may answer early (401, 413) and stop reading: its
        // answer is still worth reading when our write fails.
        let written = stream.write_all(&out);
        match (read_response(&mut stream), written) {
            (Ok(r), _) => Ok(r),
            (Err(e), Err(w)) => Err(self.exchange(format!("sending the request: {w} ({e})"))),
            (Err(e), Ok(())) => Err(self.exchange(e)),
        }
    }

    fn connect(&self) -> Result<TcpStream, ClientError> {
        let fail = |reason: String| ClientError::Connect {
            authority: self.authority.clone(),
            reason,
        };
        let addrs: Vec<SocketAddr> = self
            .authority
            .to_socket_addrs()
            .map_err(|e| fail(e.to_string()))?
            .collect();
        let mut last = "the name resolves to no address".to_string();
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT.min(self.timeout)) {
                Ok(s) => return Ok(s),
                Err(e) => last = e.to_string(),
            }
        }
        Err(fail(last))
    }
}

/// Splits an admin URL into `host:port` and the base path.
fn parse_url(url: &str) -> Result<(String, String), String> {
    let bad = |why: &str| format!("bad admin URL {url:?}: {why}");
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err(bad(
                "https is not supported; the admin API speaks plain HTTP",
            ))
        }
        Some(_) => return Err(bad("the scheme must be http://")),
        None => url,
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if path.contains(['?', '#']) {
        return Err(bad("queries and fragments are not allowed"));
    }
    if authority.contains('@') {
        return Err(bad("credentials belong in --token, not the URL"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        (format!("[{addr}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(bad("no host"));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
    {
        return Err(bad("invalid host"));
    }
    let port: u16 = match port {
        None => 80,
        Some(p) => p.parse().map_err(|_| bad("invalid port"))?,
    };
    if path.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(bad("invalid path"));
    }
    Ok((
        format!("{host}:{port}"),
        path.trim_end_matches('/').to_string(),
    ))
}

/// Reads a response head and its body (by length, chunked, or to close).
fn read_response(stream: &mut TcpStream) -> Result<Response, String> {
    let mut buf = Vec::with_capacity(4096);
    let mut head = ResponseHead::default();
    let mut chunk = [0u8; 16 * 1024];
    let mut read = |stream: &mut TcpStream, buf: &mut Vec<u8>| -> Result<usize, String> {
        let n = stream.read(&mut chunk).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "no answer in time".to_string(),
            _ => format!("reading the answer: {e}"),
        })?;
        if buf.len() + n > MAX_RESPONSE {
            return Err("the answer is too large".to_string());
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    };
    loop {
        match parse_response(&buf, false, &mut head) {
            // Interim 1xx answers (100 Continue) come before the real one.
            Ok(Some(())) if (100..200).contains(&head.status) => {
                buf.drain(..head.head_len);
                continue;
            }
            Ok(Some(())) => break,
            Ok(None) => {}
            Err(e) => return Err(format!("not an HTTP answer ({e})")),
        }
        if read(stream, &mut buf)? == 0 {
            return Err(if buf.is_empty() {
                "the connection closed without an answer".to_string()
            } else {
                "the connection closed in the middle of the answer".to_string()
            });
        }
    }
    let mut body = buf.split_off(head.head_len);
    match head.body {
        BodyKind::Empty => body.clear(),
        BodyKind::Length(n) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > MAX_RESPONSE {
                return Err("the answer is too large".to_string());
            }
            while body.len() < n {
                if read(stream, &mut body)? == 0 {
                    return Err("the connection closed in the middle of the answer".to_string());
                }
            }
            body.truncate(n);
        }
        BodyKind::UntilClose => while read(stream, &mut body)? > 0 {},
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            let mut data = Vec::new();
            let mut fed = 0;
            loop {
                let progress = decoder
                    .feed(&body[fed..], |r| {
                        data.extend_from_slice(&body[fed + r.start..fed + r.end])
                    })
                    .map_err(|e| format!("bad chunked answer ({e:?})"))?;
                fed += progress.consumed;
                if progress.done {
                    break;
                }
                if read(stream, &mut body)? == 0 {
                    return Err("the connection closed in the middle of the answer".to_string());
                }
            }
            body = data;
        }
    }
    Ok(Response {
        status: head.status,
        body,
    })
}

/// The API's error body as an [`ApiError`]; a body of another shape is
/// quoted in the message.
fn api_error(response: &Response) -> ApiError {
    let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(message) = message else {
        let text = String::from_utf8_lossy(&response.body);
        let text = text.trim();
        let mut message = format!("HTTP {}", response.status);
        if !text.is_empty() {
            let cut: String = text.chars().take(200).collect();
            message = format!("{message}: {cut}");
        }
        return ApiError::new(response.status, message);
    };
    let errors = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|e| FieldError {
                    path: e
                        .get("path")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    message: e
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    ApiError {
        status: response.status,
        message,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |u: &str| parse_url(u).unwrap();
        assert_eq!(
            ok("http://127.0.0.1:9901"),
            ("127.0.0.1:9901".into(), "".into())
        );
        assert_eq!(ok("HTTP://localhost/"), ("localhost:80".into(), "".into()));
        assert_eq!(ok("127.0.0.1:1"), ("127.0.0.1:1".into(), "".into()));
        assert_eq!(
            ok("http://[::1]:9901/dao/admin/"),
            ("[::1]:9901".into(), "/dao/admin".into())
        );
        assert_eq!(ok("http://[::1]"), ("[::1]:80".into(), "".into()));
        for bad in [
            "https://127.0.0.1:9901",
            "ftp://x",
            "http://",
            "http://:80",
            "http://h:99999",
            "http://h:x",
            "http://u:p@h:1",
            "http://[::1",
            "http://h:1/?q",
            "http://h o:1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_bodies() {
        let r = Response {
            status: 422,
            body: br#"{"error":"invalid configuration (1 error)","errors":[{"path":"routes.rule[0].name","message":"must not be empty"}]}"#.to_vec(),
        };
        let e = api_error(&r);
        assert_eq!(e.status, 422);
        assert_eq!(e.errors[0].path, "routes.rule[0].name");
        assert_eq!(
            e.to_string(),
            "invalid configuration (1 error) (HTTP 422)\n  routes.rule[0].name: must not be empty"
        );
        let r = Response {
            status: 502,
            body: b"<html>bad gateway</html>".to_vec(),
        };
        assert_eq!(api_error(&r).message, "HTTP 502: <html>bad gateway</html>");
    }

    #[test]
    fn tokens_are_checked() {
        assert!(Client::new("http://h:1", Some("a b".into())).is_err());
        assert!(Client::new("http://h:1", Some("a\r\nX: y".into())).is_err());
        let c = Client::new("http://h:1", Some("secret-token".into())).unwrap();
        assert!(!format!("{c:?}").contains("secret-token"));
    }
}
