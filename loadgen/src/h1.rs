//! HTTP/1.1 response decoder: a sans-IO state machine over a byte buffer.
//!
//! The caller reads bytes into its own buffer and hands the unread part to
//! [`ResponseDecoder::decode`], which says how many bytes it consumed and
//! whether a response ended there. Bodies are skipped as they stream past,
//! never buffered: a 1 MiB body costs no copies. Framing follows RFC 9112:
//! HEAD and 1xx/204/304 responses have no body, `Transfer-Encoding: chunked`
//! wins over `Content-Length`, and a response with neither is delimited by
//! the server closing the connection.

use std::fmt;

/// Longest response head accepted before giving up on the connection.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers accepted in one response head.
const MAX_HEADERS: usize = 96;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// One complete response, as far as the load generator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The connection cannot carry another request after this response.
    pub close: bool,
}

/// Why a response could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H1Error {
    /// The head is not valid HTTP/1.x.
    Head(httparse::Error),
    /// The head is longer than [`MAX_HEAD`].
    HeadTooLarge,
    /// Missing, repeated-with-different-values or unparsable Content-Length.
    ContentLength,
    /// A transfer coding other than chunked last.
    TransferEncoding,
    /// Malformed chunked framing.
    Chunk,
    /// The connection closed in the middle of a response.
    UnexpectedEof,
}

impl fmt::Display for H1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            H1Error::Head(e) => write!(f, "invalid response head: {e}"),
            H1Error::HeadTooLarge => write!(f, "response head over {MAX_HEAD} bytes"),
            H1Error::ContentLength => write!(f, "invalid Content-Length"),
            H1Error::TransferEncoding => write!(f, "unsupported Transfer-Encoding"),
            H1Error::Chunk => write!(f, "malformed chunked body"),
            H1Error::UnexpectedEof => write!(f, "connection closed mid-response"),
        }
    }
}

impl std::error::Error for H1Error {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    UntilEof,
}

/// Decodes a stream of responses on one connection.
#[derive(Debug, Clone)]
pub struct ResponseDecoder {
    state: State,
    current: Response,
    /// Bytes of the current response consumed so far (0 while idle).
    progress: u64,
}

impl Default for ResponseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseDecoder {
    /// A decoder waiting for the first response head.
    pub fn new() -> Self {
        ResponseDecoder {
            state: State::Head,
            current: Response {
                status: 0,
                close: false,
            },
            progress: 0,
        }
    }

    /// True between responses: no part of a response has been consumed.
    pub fn is_idle(&self) -> bool {
        self.state == State::Head && self.progress == 0
    }

    /// Consumes bytes from `buf`, stopping after at most one complete
    /// response. `no_body` says the request was HEAD. Returns how many bytes
    /// were consumed and the response if it ended; `(n, None)` means the
    /// decoder needs more bytes (any unconsumed tail must be presented again).
    pub fn decode(
        &mut self,
        buf: &[u8],
        no_body: bool,
    ) -> Result<(usize, Option<Response>), H1Error> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                State::Head => match self.head(rest, no_body)? {
                    None => return Ok((pos, None)),
                    Some((n, done)) => {
                        pos += n;
                        self.progress += n as u64;
                        if done {
                            return Ok((pos, Some(self.finish())));
                        }
                    }
                },
                State::Fixed(remaining) => {
                    let take = remaining.min(rest.len() as u64);
                    pos += take as usize;
                    self.progress += take;
                    if take == remaining {
                        return Ok((pos, Some(self.finish())));
                    }
                    self.state = State::Fixed(remaining - take);
                    return Ok((pos, None));
                }
                State::ChunkSize => {
                    let Some(line) = line(rest)? else {
                        return Ok((pos, None));
                    };
                    let size = chunk_size(&rest[..line])?;
                    pos += line + 2;
                    self.progress += line as u64 + 2;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkData(remaining) => {
                    let take = remaining.min(rest.len() as u64);
                    pos += take as usize;
                    self.progress += take;
                    if take < remaining {
                        self.state = State::ChunkData(remaining - take);
                        return Ok((pos, None));
                    }
                    self.state = State::ChunkDataEnd;
                }
                State::ChunkDataEnd => {
                    if rest.len() < 2 {
                        return Ok((pos, None));
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(H1Error::Chunk);
                    }
                    pos += 2;
                    self.progress += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let Some(line) = line(rest)? else {
                        return Ok((pos, None));
                    };
                    pos += line + 2;
                    self.progress += line as u64 + 2;
                    if line == 0 {
                        return Ok((pos, Some(self.finish())));
                    }
                }
                State::UntilEof => {
                    self.progress += rest.len() as u64;
                    return Ok((buf.len(), None));
                }
            }
        }
    }

    /// The peer closed the connection. Completes a close-delimited body;
    /// `Ok(None)` if the decoder was idle (a clean close between responses).
    pub fn eof(&mut self) -> Result<Option<Response>, H1Error> {
        match self.state {
            State::UntilEof => Ok(Some(self.finish())),
            State::Head if self.progress == 0 => Ok(None),
            _ => Err(H1Error::UnexpectedEof),
        }
    }

    fn finish(&mut self) -> Response {
        self.state = State::Head;
        self.progress = 0;
        self.current
    }

    /// Parses a head. `None`: incomplete. `Some((consumed, done))`: `done`
    /// when the response has no body (or the head was an interim 1xx that
    /// was skipped, in which case `done` is false and the state stays Head).
    fn head(&mut self, buf: &[u8], no_body: bool) -> Result<Option<(usize, bool)>, H1Error> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut headers);
        let n = match res.parse(buf).map_err(H1Error::Head)? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial if buf.len() > MAX_HEAD => {
                return Err(H1Error::HeadTooLarge);
            }
            httparse::Status::Partial => return Ok(None),
        };
        let status = res.code.unwrap_or(0);
        let http10 = res.version == Some(0);
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut close = http10;
        for h in res.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or(H1Error::ContentLength)?;
                if length.is_some_and(|l| l != v) {
                    return Err(H1Error::ContentLength);
                }
                length = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                if !trim(last).eq_ignore_ascii_case(b"chunked") {
                    return Err(H1Error::TransferEncoding);
                }
                chunked = true;
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = trim(token);
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                        close = false;
                    }
                }
            }
        }
        if (100..200).contains(&status) && status != 101 {
            // Interim response (100 Continue, 103 Early Hints): skip it.
            return Ok(Some((n, false)));
        }
        self.current = Response { status, close };
        if status == 101 {
            // Switching protocols: the connection is no longer HTTP/1.1.
            self.current.close = true;
            return Ok(Some((n, true)));
        }
        if no_body || status == 204 || status == 304 {
            return Ok(Some((n, true)));
        }
        if chunked {
            self.state = State::ChunkSize;
            return Ok(Some((n, false)));
        }
        match length {
            Some(0) => Ok(Some((n, true))),
            Some(len) => {
                self.state = State::Fixed(len);
                Ok(Some((n, false)))
            }
            None => {
                self.current.close = true;
                self.state = State::UntilEof;
                Ok(Some((n, false)))
            }
        }
    }
}

/// Length of the line at the start of `buf` (without its CRLF), if complete.
fn line(buf: &[u8]) -> Result<Option<usize>, H1Error> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(i)),
        None if buf.len() > MAX_LINE => Err(H1Error::Chunk),
        None => Ok(None),
    }
}

fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let digits = line.split(|&b| b == b';').next().unwrap_or(b"");
    let digits = trim(digits);
    if digits.is_empty() || digits.len() > 15 {
        return Err(H1Error::Chunk);
    }
    let mut size: u64 = 0;
    for &b in digits {
        let d = (b as char).to_digit(16).ok_or(H1Error::Chunk)?;
        size = size * 16 + u64::from(d);
    }
    Ok(size)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests;
