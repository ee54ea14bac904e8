//! A per-core pool of idle upstream connections, one LIFO stack per
//! upstream address: the most recently used connection is the warmest and
//! the least likely to have been closed by the upstream.
//!
//! Lives in one worker (`RefCell`, no locks). Connections idle longer than
//! the idle timeout are dropped when met and by a periodic sweep. Every
//! open connection, idle or in use, is counted per upstream address (for
//! the circuit breaker's `max_connections`).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

/// An open upstream connection, counted in its address's open gauge until
/// it is dropped.
#[derive(Debug)]
pub struct UpstreamConn {
    stream: TcpStream,
    open: Rc<Cell<u32>>,
}

impl Deref for UpstreamConn {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        &self.stream
    }
}

impl DerefMut for UpstreamConn {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

impl Drop for UpstreamConn {
    fn drop(&mut self) {
        self.open.set(self.open.get().saturating_sub(1));
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
}

/// Idle upstream connections of one worker.
pub struct Pool {
    stacks: Vec<RefCell<Vec<Idle>>>,
    /// Open connections per address, idle or in use.
    open: Vec<Rc<Cell<u32>>>,
    max_idle: usize,
    idle_timeout: Duration,
    opened: Cell<u64>,
    reused: Cell<u64>,
}

impl Pool {
    /// A pool for `pools` upstream addresses.
    pub fn new(pools: usize, max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            stacks: (0..pools).map(|_| RefCell::new(Vec::new())).collect(),
            open: (0..pools).map(|_| Rc::new(Cell::new(0))).collect(),
            max_idle,
            idle_timeout,
            opened: Cell::new(0),
            reused: Cell::new(0),
        }
    }

    /// Takes the warmest idle connection to upstream `pool`, if one is fresh.
    pub fn take(&self, pool: usize, now: Instant) -> Option<UpstreamConn> {
        let mut stack = self.stacks[pool].borrow_mut();
        while let Some(idle) = stack.pop() {
            if now.saturating_duration_since(idle.since) < self.idle_timeout {
                self.reused.set(self.reused.get() + 1);
                return Some(idle.stream);
            }
        }
        None
    }

    /// Returns a connection whose last response was complete.
    pub fn put(&self, pool: usize, stream: UpstreamConn, now: Instant) {
        let mut stack = self.stacks[pool].borrow_mut();
        if stack.len() < self.max_idle {
            stack.push(Idle { stream, since: now });
        }
    }

    /// Opens a new connection to `addr`, the address of `pool`, within
    /// `timeout`; it goes back with `put` when it may be reused.
    pub async fn connect(
        &self,
        pool: usize,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<UpstreamConn, ConnectError> {
        self.opened.set(self.opened.get() + 1);
        match monoio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Heads and small bodies go out in one write; do not wait.
                let _ = stream.set_nodelay(true);
                let open = self.open[pool].clone();
                open.set(open.get() + 1);
                Ok(UpstreamConn { stream, open })
            }
            Ok(Err(e)) => Err(ConnectError::Io(e)),
            Err(_) => Err(ConnectError::Timeout),
        }
    }

    /// Drops connections idle past the timeout; returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut closed = 0;
        for stack in &self.stacks {
            let mut stack = stack.borrow_mut();
            let before = stack.len();
            // Oldest first: stop at the first fresh one.
            let stale = stack
                .iter()
                .position(|i| now.saturating_duration_since(i.since) < self.idle_timeout)
                .unwrap_or(stack.len());
            stack.drain(..stale);
            closed += before - stack.len();
        }
        closed
    }

    /// Connections open to `pool`'s address, idle or in use.
    pub fn open(&self, pool: usize) -> u32 {
        self.open[pool].get()
    }

    /// Reuse counters so far.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            opened: self.opened.get(),
            reused: self.reused.get(),
        }
    }
}

/// Why an upstream connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// Refused, unreachable, …
    Io(std::io::Error),
    /// No answer within the connect timeout.
    Timeout,
}
