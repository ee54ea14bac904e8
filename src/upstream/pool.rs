//! A per-core pool of idle upstream connections, one LIFO stack per
//! upstream address: the most recently used connection is the warmest and
//! the least likely to have been closed by the upstream.
//!
//! Lives in one worker (`RefCell`, no locks). Connections idle longer than
//! the idle timeout are dropped when met and by a periodic sweep. Every
//! open connection, idle or in use, is counted per upstream address (for
//! the circuit breaker's `max_connections`).
//!
//! Addresses are numbered by the worker for its whole life: a config
//! reload adds numbers (`resize`) and retires the addresses it no longer
//! names (`retain`): their idle connections close at once, and the ones in
//! use close when their request ends instead of coming back.

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::tls::Clients;
use crate::gate::io::within;
use crate::gate::Transport;
use crate::memory::Upstream;

/// An open upstream connection (plain or TLS), counted in its address's
/// open gauge until it is dropped.
pub(crate) struct UpstreamConn {
    stream: Transport,
    open: Counted,
}

/// A place in an address's gauge of open connections, left when dropped.
pub(crate) struct Counted(Rc<Cell<u32>>);

impl Counted {
    fn new(gauge: Rc<Cell<u32>>) -> Counted {
        gauge.set(gauge.get() + 1);
        Counted(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl UpstreamConn {
    /// The stream, and its place in the gauge (for a tunnel, which keeps
    /// the connection counted while it relays).
    pub(crate) fn into_parts(self) -> (Transport, Counted) {
        (self.stream, self.open)
    }
}

impl Deref for UpstreamConn {
    type Target = Transport;
    fn deref(&self) -> &Transport {
        &self.stream
    }
}

impl DerefMut for UpstreamConn {
    fn deref_mut(&mut self) -> &mut Transport {
        &mut self.stream
    }
}

/// An upstream connection and when it was last used.
struct Idle {
    stream: UpstreamConn,
    since: Instant,
}

/// Connection reuse counters of one worker (for tests and reports).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections opened.
    pub opened: u64,
    /// Requests that went out on a pooled connection.
    pub reused: u64,
    /// HTTP/2 (h2c) connections opened.
    pub h2_opened: u64,
    /// HTTP/2 streams opened on a connection already open.
    pub h2_reused: u64,
}

/// Idle upstream connections of one worker.
pub struct Pool {
    /// The h2c connections, numbered by the same addresses.
    h2: super::h2::H2Pool,
    stacks: RefCell<Vec<Vec<Idle>>>,
    /// Open connections per address, idle or in use.
    open: RefCell<Vec<Rc<Cell<u32>>>>,
    /// Per address, whether the config in force names it.
    live: RefCell<Vec<bool>>,
    max_idle: Cell<usize>,
    idle_timeout: Cell<Duration>,
    opened: Cell<u64>,
    reused: Cell<u64>,
    /// This worker's TLS client settings for `https://` upstreams.
    tls: Rc<Clients>,
}

impl Pool {
    /// A pool for `pools` upstream addresses.
    pub fn new(pools: usize, max_idle: usize, idle_timeout: Duration) -> Pool {
        let tls = Rc::new(Clients::default());
        let pool = Pool {
            h2: super::h2::H2Pool::new(2, idle_timeout, tls.clone()),
            tls,
            stacks: RefCell::new(Vec::new()),
            open: RefCell::new(Vec::new()),
            live: RefCell::new(Vec::new()),
            max_idle: Cell::new(max_idle),
            idle_timeout: Cell::new(idle_timeout),
            opened: Cell::new(0),
            reused: Cell::new(0),
        };
        pool.retain(&vec![true; pools]);
        pool
    }

    /// Applies a reloaded config: `live[n]` says whether it names address
    /// `n` (numbers past the pool's are added); idle connections to the
    /// others close now.
    pub fn retain(&self, live: &[bool]) {
        let mut stacks = self.stacks.borrow_mut();
        let mut open = self.open.borrow_mut();
        let n = live.len().max(stacks.len());
        stacks.resize_with(n, Vec::new);
        open.resize_with(n, || Rc::new(Cell::new(0)));
        for (stack, &keep) in stacks.iter_mut().zip(live) {
            if !keep {
                stack.clear();
            }
        }
        let mut l = self.live.borrow_mut();
        l.clear();
        l.extend_from_slice(live);
        l.resize(stacks.len(), false);
        self.h2.retain(&l);
    }

    /// Applies a reloaded config's `pool_max_idle` and `pool_idle_timeout`.
    pub fn configure(&self, max_idle: usize, idle_timeout: Duration) {
        self.max_idle.set(max_idle);
        self.idle_timeout.set(idle_timeout);
    }

    /// Applies a reloaded config's `h2_max_connections_per_upstream` (and
    /// `pool_idle_timeout`, for h2c connections without streams).
    pub fn configure_h2(&self, max_connections: usize) {
        self.h2.configure(max_connections, self.idle_timeout.get());
    }

    /// The h2c connections.
    pub fn h2(&self) -> &super::h2::H2Pool {
        &self.h2
    }

    /// Leases an HTTP/2 stream to `upstream`, whose pool is number `pool`
    /// (see [`super::h2::H2Pool::lease`]); a new connection is counted in
    /// the address's open gauge with the HTTP/1.1 ones.
    pub async fn h2_lease(
        &self,
        (pool, upstream): (usize, &Upstream),
        admission: super::h2::Admission<'_>,
        limits: super::h2::Limits,
    ) -> Result<super::h2::Lease, super::h2::LeaseError> {
        let open = self.open.borrow()[pool].clone();
        self.h2
            .lease((pool, upstream), &open, admission, limits)
            .await
    }

    /// Takes the warmest idle connection to upstream `pool`, if one is fresh.
    pub(crate) fn take(&self, pool: usize, now: Instant) -> Option<UpstreamConn> {
        let mut stacks = self.stacks.borrow_mut();
        let stack = &mut stacks[pool];
        while let Some(idle) = stack.pop() {
            if now.saturating_duration_since(idle.since) < self.idle_timeout.get() {
                self.reused.set(self.reused.get() + 1);
                return Some(idle.stream);
            }
        }
        None
    }

    /// Returns a connection whose last response was complete (closed
    /// instead when its address was retired by a reload).
    pub(crate) fn put(&self, pool: usize, stream: UpstreamConn, now: Instant) {
        if !self.live.borrow()[pool] {
            return;
        }
        let mut stacks = self.stacks.borrow_mut();
        let stack = &mut stacks[pool];
        if stack.len() < self.max_idle.get() {
            stack.push(Idle { stream, since: now });
        }
    }

    /// Opens a new connection to `upstream`, whose pool is number `pool`,
    /// within `timeout` (its TLS handshake included); it goes back with
    /// `put` when it may be reused.
    pub(crate) async fn connect(
        &self,
        pool: usize,
        upstream: &Upstream,
        timeout: Duration,
    ) -> Result<UpstreamConn, ConnectError> {
        self.opened.set(self.opened.get() + 1);
        let open = self.open.borrow()[pool].clone();
        match within(timeout, open_stream(upstream, &self.tls)).await {
            Some(Ok(stream)) => Ok(UpstreamConn {
                stream,
                open: Counted::new(open),
            }),
            Some(Err(e)) => Err(ConnectError::Io(e)),
            None => Err(ConnectError::Timeout),
        }
    }

    /// Sends `req` to upstream `pool` at `addr` over HTTP/2 and returns
    /// the response head and body: a stream leased as by `h2_lease`, then
    /// [`super::h2::Lease::exchange`] (the request `body` relayed from a
    /// task of its own). For HTTP/2 downstreams (gRPC end to end).
    pub async fn h2_send(
        &self,
        target: (usize, &Upstream),
        (admission, limits): (super::h2::Admission<'_>, super::h2::Limits),
        req: http::Request<()>,
        body: Option<h2::RecvStream>,
        timeouts: (Duration, Duration),
    ) -> Result<(http::response::Parts, super::h2::Body), super::h2::ExchangeError> {
        let lease = self
            .h2_lease(target, admission, limits)
            .await
            .map_err(super::h2::ExchangeError::Lease)?;
        lease.exchange(req, body, timeouts).await
    }

    /// Drops connections idle past the timeout; returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut closed = 0;
        let timeout = self.idle_timeout.get();
        for stack in self.stacks.borrow_mut().iter_mut() {
            let before = stack.len();
            // Oldest first: stop at the first fresh one.
            let stale = stack
                .iter()
                .position(|i| now.saturating_duration_since(i.since) < timeout)
                .unwrap_or(stack.len());
            stack.drain(..stale);
            closed += before - stack.len();
        }
        closed + self.h2.sweep(now)
    }

    /// Connections open to `pool`'s address, idle or in use.
    pub fn open(&self, pool: usize) -> u32 {
        self.open.borrow()[pool].get()
    }

    /// Reuse counters so far.
    pub fn stats(&self) -> PoolStats {
        let (h2_opened, h2_reused) = self.h2.stats();
        PoolStats {
            opened: self.opened.get(),
            reused: self.reused.get(),
            h2_opened,
            h2_reused,
        }
    }
}

/// A new connection to `upstream`, over TLS when it is `https://`.
pub(crate) async fn open_stream(
    upstream: &Upstream,
    clients: &Clients,
) -> std::io::Result<Transport> {
    let tcp = TcpStream::connect(upstream.addr).await?;
    // Heads and small bodies go out in one write; do not wait.
    let _ = tcp.set_nodelay(true);
    Ok(match &upstream.tls {
        None => Transport::Plain(tcp),
        Some(tls) => Transport::Tls(Box::new(clients.handshake(tcp, tls).await?)),
    })
}

/// Why an upstream connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// Refused, unreachable, …
    Io(std::io::Error),
    /// No answer within the connect timeout.
    Timeout,
}
