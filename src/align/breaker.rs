//! Align: the circuit breaker — limits on what one upstream may be given
//! at once (open connections, requests waiting for a connection, requests
//! in flight). Thread-per-core: each core enforces its share of a limit,
//! `limit / workers` rounded up, on its own counters, so no counter is
//! shared between cores on the request path.

use std::cell::Cell;

/// `[routes.rule.circuit_breaker]`, validated: limits for all cores
/// together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Open connections to the upstream, idle in the pool or in use.
    pub max_connections: u32,
    /// Requests waiting for a new connection to the upstream.
    pub max_pending: u32,
    /// Requests in flight to the upstream.
    pub max_requests: u32,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_connections`.
    Connections = 0,
    /// `max_pending`.
    Pending = 1,
    /// `max_requests`.
    Requests = 2,
}

impl Limit {
    /// Label values, indexed by the discriminant.
    pub const NAMES: [&'static str; 3] = ["max_connections", "max_pending", "max_requests"];

    /// The limit's config key.
    pub fn name(self) -> &'static str {
        Limit::NAMES[self as usize]
    }
}

impl CircuitBreaker {
    /// One core's share when `workers` cores split the limits: each limit
    /// divided by the cores, rounded up (so never 0).
    pub fn per_core(&self, workers: usize) -> CircuitBreaker {
        let share = |n: u32| n.div_ceil(workers.max(1) as u32).max(1);
        CircuitBreaker {
            max_connections: share(self.max_connections),
            max_pending: share(self.max_pending),
            max_requests: share(self.max_requests),
        }
    }

    /// Whether one more request may go to an upstream that has `requests`
    /// in flight.
    pub fn admit(&self, requests: u32) -> Result<(), Limit> {
        if requests >= self.max_requests {
            return Err(Limit::Requests);
        }
        Ok(())
    }

    /// Whether a new connection may be opened to an upstream with `open`
    /// connections and `pending` requests already waiting for one.
    pub fn connect(&self, open: u32, pending: u32) -> Result<(), Limit> {
        if open.saturating_add(pending) >= self.max_connections {
            return Err(Limit::Connections);
        }
        if pending >= self.max_pending {
            return Err(Limit::Pending);
        }
        Ok(())
    }
}

/// One core's counters of one upstream address.
#[derive(Debug, Default)]
pub struct Load {
    /// Requests in flight to it.
    pub requests: Cell<u32>,
    /// Requests waiting for a new connection to it.
    pub pending: Cell<u32>,
}

/// One count held in a per-core gauge, given back when dropped (so a
/// failed or cancelled request cannot leak it).
#[derive(Debug)]
pub struct Held<'a>(&'a Cell<u32>);

impl<'a> Held<'a> {
    /// Adds one to `gauge` until the guard is dropped.
    pub fn new(gauge: &'a Cell<u32>) -> Held<'a> {
        gauge.set(gauge.get() + 1);
        Held(gauge)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: CircuitBreaker = CircuitBreaker {
        max_connections: 10,
        max_pending: 3,
        max_requests: 5,
    };

    #[test]
    fn per_core_share_rounds_up() {
        let one = B.per_core(1);
        assert_eq!(one, B);
        let four = B.per_core(4);
        assert_eq!(
            (four.max_connections, four.max_pending, four.max_requests),
            (3, 1, 2)
        );
        let many = B.per_core(64);
        assert_eq!(
            (many.max_connections, many.max_pending, many.max_requests),
            (1, 1, 1)
        );
    }

    #[test]
    fn limits_refuse_at_the_limit() {
        assert_eq!(B.admit(4), Ok(()));
        assert_eq!(B.admit(5), Err(Limit::Requests));
        assert_eq!(B.connect(6, 2), Ok(()));
        assert_eq!(B.connect(8, 2), Err(Limit::Connections));
        assert_eq!(B.connect(0, 3), Err(Limit::Pending));
        assert_eq!(Limit::Pending.name(), "max_pending");
    }

    #[test]
    fn held_counts_until_dropped() {
        let g = Cell::new(0);
        {
            let _a = Held::new(&g);
            let _b = Held::new(&g);
            assert_eq!(g.get(), 2);
        }
        assert_eq!(g.get(), 0);
    }
}
