//! Flow: per-route filter chains. Each worker builds its own chain per
//! route from the validated `[routes.rule.filters]` (no state shared
//! between cores); a route without filters has an empty chain and pays
//! one length check per request.
//!
//! ```text
//!  request head ─► route ─► chain.request: f1 ─► f2 ─► … ─► pick upstream ─► send
//!                              │ Reply (403, 405, 413, 204 preflight, …)
//!                              ▼
//!                           answered by DAO (the upstream never sees it)
//!
//!  upstream head ─► chain.response: … ─► f2 ─► f1 (reverse order) ─► client
//! ```
//!
//! Request filters run in config order and the first `Reply` stops the
//! chain; response filters run in reverse order, so the filter that saw
//! the request first sees the response last (as middleware nests). A
//! filter edits headers through `Edits` (names to remove, lines to add),
//! which the head writers apply without copying the rest of the head.
//!
//! A custom filter is a type implementing [`Filter`]:
//!
//! ```
//! use dao::flow::{Filter, Flow, RequestCx, Reply};
//!
//! /// Refuses requests whose path contains "..".
//! struct NoDotDot;
//!
//! impl Filter for NoDotDot {
//!     fn request(&self, cx: &mut RequestCx<'_>) -> Flow {
//!         if cx.path.windows(2).any(|w| w == b"..") {
//!             return Flow::Reply(Reply::text(400, "no dot-dot paths\n"));
//!         }
//!         Flow::Continue
//!     }
//! }
//! ```
//!
//! The trait takes `&self` and plain byte views, so a sandboxed plug-in
//! (WASM, later) fits behind it as one more implementation.

mod access;
pub mod auth;
mod authn;
mod chain;
mod cors;
mod headers;
mod limits;
mod rate;
pub mod ratelimit;
pub mod spec;

pub use chain::Chain;

pub use spec::FilterSpec;

use std::net::IpAddr;

use crate::proto::h1::{RequestHead, ResponseHead};

/// What a request filter decides.
#[derive(Debug)]
pub enum Flow {
    /// On to the next filter (and then the upstream).
    Continue,
    /// Answer the client now with this response.
    Reply(Reply),
}

/// A response DAO sends itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Extra header lines, `Name: value\r\n` each.
    pub headers: Vec<u8>,
    /// The body (`text/plain` unless a header says otherwise).
    pub body: Vec<u8>,
}

impl Reply {
    /// A plain-text reply.
    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// Adds a header line.
    pub fn header(mut self, name: &str, value: &[u8]) -> Reply {
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value);
        self.headers.extend_from_slice(b"\r\n");
        self
    }
}

/// Header edits for one message: names to drop (lower case) and lines to
/// add. Kept per connection and cleared per request, so that editing
/// allocates nothing once warm.
#[derive(Debug, Default)]
pub struct Edits {
    remove: Vec<Vec<u8>>,
    removed: usize,
    add: Vec<u8>,
}

impl Edits {
    /// Forgets the previous request's edits (keeping the memory).
    pub fn clear(&mut self) {
        self.removed = 0;
        self.add.clear();
    }

    /// Drops every header called `name` (any case) from the message.
    pub fn remove(&mut self, name: &[u8]) {
        if self.removed == self.remove.len() {
            self.remove.push(Vec::new());
        }
        let slot = &mut self.remove[self.removed];
        slot.clear();
        slot.extend(name.iter().map(u8::to_ascii_lowercase));
        self.removed += 1;
    }

    /// Adds a header line; `value` is written by `write`.
    pub fn add_with(&mut self, name: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        self.add.extend_from_slice(name);
        self.add.extend_from_slice(b": ");
        write(&mut self.add);
        self.add.extend_from_slice(b"\r\n");
    }

    /// Adds a header line.
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        self.add_with(name, |out| out.extend_from_slice(value));
    }

    /// The names to drop (lower case).
    pub fn removed(&self) -> &[Vec<u8>] {
        &self.remove[..self.removed]
    }

    /// The lines to add, `Name: value\r\n` each.
    pub fn lines(&self) -> &[u8] {
        &self.add
    }
}

/// A read-only view of a message's headers.
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    spans: &'a [crate::proto::h1::HeaderSpan],
    buf: &'a [u8],
}

impl<'a> Headers<'a> {
    /// The request's headers.
    pub fn of_request(head: &'a RequestHead, buf: &'a [u8]) -> Headers<'a> {
        Headers {
            spans: &head.headers,
            buf,
        }
    }

    /// The response's headers.
    pub fn of_response(head: &'a ResponseHead, buf: &'a [u8]) -> Headers<'a> {
        Headers {
            spans: &head.headers,
            buf,
        }
    }

    /// The first value of header `name` (any case).
    pub fn get(&self, name: &[u8]) -> Option<&'a [u8]> {
        let buf = self.buf;
        self.spans
            .iter()
            .find(|h| h.name.get(buf).eq_ignore_ascii_case(name))
            .map(|h| h.value.get(buf))
    }

    /// The value of cookie `name`, from any `Cookie` header.
    pub fn cookie(&self, name: &[u8]) -> Option<&'a [u8]> {
        let buf = self.buf;
        self.spans
            .iter()
            .filter(|h| h.name.get(buf).eq_ignore_ascii_case(b"cookie"))
            .flat_map(|h| h.value.get(buf).split(|&b| b == b';'))
            .find_map(|pair| {
                let pair = pair.trim_ascii();
                let eq = pair.iter().position(|&b| b == b'=')?;
                (&pair[..eq] == name).then(|| &pair[eq + 1..])
            })
    }
}

/// What filters share about one request, from its request phase to its
/// response phase.
#[derive(Debug, Default)]
pub struct State {
    /// The most request-body bytes allowed (`max_body_bytes`).
    pub body_limit: Option<u64>,
    /// The `Origin` a CORS filter allowed, to echo on the response.
    pub cors_origin: Vec<u8>,
    /// Whether a CORS filter answered for this request.
    pub cors: bool,
    /// Who an authentication filter found the client to be (empty: no one).
    pub identity: Vec<u8>,
}

impl State {
    /// Forgets the previous request.
    pub fn clear(&mut self) {
        self.body_limit = None;
        self.cors_origin.clear();
        self.cors = false;
        self.identity.clear();
    }
}

/// The request as a filter sees it.
pub struct RequestCx<'a> {
    /// The method.
    pub method: &'a [u8],
    /// The path, without the query.
    pub path: &'a [u8],
    /// The request's headers.
    pub headers: Headers<'a>,
    /// The declared body length (`None`: chunked or none).
    pub content_length: Option<u64>,
    /// Whether the request has a body at all.
    pub has_body: bool,
    /// The client's address.
    pub client_ip: IpAddr,
    /// Now, in microseconds on the worker's clock (0 unless a filter of
    /// the chain needs it: `Chain::clock`).
    pub now_us: u64,
    /// Now, in seconds since the Unix epoch (0 unless a filter needs it:
    /// `Chain::wall_clock`).
    pub now_unix_secs: u64,
    /// The client's address as text (for header values).
    pub client_ip_text: &'a str,
    /// The request id sent upstream (empty: none).
    pub request_id: &'a [u8],
    /// The route's name.
    pub route: &'a str,
    /// Edits of the head sent upstream.
    pub edits: &'a mut Edits,
    /// Shared with the response phase.
    pub state: &'a mut State,
}

/// The response as a filter sees it.
pub struct ResponseCx<'a> {
    /// The upstream's status.
    pub status: u16,
    /// The upstream's headers.
    pub headers: Headers<'a>,
    /// The client's address as text.
    pub client_ip_text: &'a str,
    /// The request id (empty: none).
    pub request_id: &'a [u8],
    /// The route's name.
    pub route: &'a str,
    /// The upstream that answered.
    pub upstream: &'a str,
    /// Edits of the head sent to the client.
    pub edits: &'a mut Edits,
    /// What the request phase left.
    pub state: &'a State,
}

/// A filter: request and response phases, both optional.
pub trait Filter {
    /// Runs before the upstream is picked; may answer instead.
    fn request(&self, cx: &mut RequestCx<'_>) -> Flow {
        let _ = cx;
        Flow::Continue
    }

    /// Runs on the upstream's response head before it goes to the client.
    fn response(&self, cx: &mut ResponseCx<'_>) {
        let _ = cx;
    }
}
