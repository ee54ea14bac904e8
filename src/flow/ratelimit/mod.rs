//! Rate limiting (sans-IO): token buckets per core whose rates are shares
//! of one global rate, rebalanced every merge interval from the demand
//! each core sees.
//!
//! `rate_limit_rps` and `rate_limit_burst` hold for the whole process. With
//! SO_REUSEPORT the cores get uneven shares of the connections, so each
//! core's [`Limiter`] refills at its own [`Share`] of the rate, and the
//! [`Coordinator`] on the control thread moves the shares towards where
//! the demand is (the rule, with its maths and error bounds, is in
//! [`shares`]):
//!
//! ```text
//!  core i, per request:  Limiter::check(key, now_us) → Verdict
//!                          allowed → on; refused → 429 + Headers
//!  core i, every merge:  Limiter::seal() → Demand ──► control thread
//!  control thread:       Coordinator::new(N, interval, budgets)
//!                        Coordinator::report(i, demands) … close()
//!                          → [core][limit] Share ──► Limiter::apply(share)
//! ```
//!
//! `budgets` are the limits' [`Limiter::budget`] (the same on every core),
//! in the order in which each core reports its `Demand`s and reads its
//! shares. Sealing and applying ride on the existing once-per-interval
//! exchange with the control thread; nothing on the request path waits.
//!
//! Nothing here reads a clock or touches a socket: time comes in as
//! microseconds (`now_us`, from any fixed origin, the same for a limiter's
//! whole life), so the tests drive whole fleets of cores on virtual time.
//! A limit is either per route (one [`Bucket`]) or per key ([`Keyed`]:
//! client IP or a header value, at most `max_keys` keys per core).

pub mod bucket;
pub mod coordinator;
pub mod keyed;
mod lru;
pub mod shares;
pub mod verdict;

#[cfg(test)]
mod sim;

pub use bucket::{Bucket, Remaining, RetryAfterUs};
pub use coordinator::{Budget, Coordinator};
pub use keyed::{Keyed, MAX_KEYS};
pub use shares::Share;
pub use verdict::{Headers, Verdict, STATUS};

/// What one core saw of one limit during one merge interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Requests admitted.
    pub admitted: u64,
    /// Requests refused (429).
    pub refused: u64,
}

impl Demand {
    /// Requests offered: admitted and refused.
    pub fn total(&self) -> u64 {
        self.admitted.saturating_add(self.refused)
    }
}

#[derive(Debug)]
enum State {
    Route(Bucket),
    Keyed(Keyed),
}

/// One limit on one core: the bucket (or a bucket per key) refilled at
/// this core's share of the global rate, and the demand counted for the
/// coordinator.
#[derive(Debug)]
pub struct Limiter {
    /// The global rate and burst (per key for a keyed limit).
    rate: f64,
    burst: f64,
    share: Share,
    state: State,
    demand: Demand,
    /// `X-RateLimit-Limit`.
    limit: u64,
}

impl Limiter {
    /// A limit of `rate` requests/s with a burst of `burst` for the whole
    /// process, on one of `cores` cores: it starts with an even share
    /// (`1/cores`) and a full bucket. `rate` ≥ 0 and `burst` ≥ 1 are the
    /// config's to check; a smaller burst acts as 1.
    pub fn new(rate: f64, burst: f64, cores: usize, now_us: u64) -> Limiter {
        let share = Share::even(cores);
        let bucket = Bucket::new(share.rate(rate), share.burst(burst), now_us);
        Limiter::with_state(rate, burst, share, State::Route(bucket))
    }

    /// The same per key: `rate` and `burst` for each key, across the
    /// whole process, tracking at most `max_keys` keys on this core (see
    /// [`Keyed`] for how the rate is split and what eviction costs).
    pub fn keyed(rate: f64, burst: f64, cores: usize, max_keys: usize) -> Limiter {
        let share = Share::even(cores);
        let keyed = Keyed::new(share.rate(rate), share.burst(burst), max_keys);
        Limiter::with_state(rate, burst, share, State::Keyed(keyed))
    }

    fn with_state(rate: f64, burst: f64, share: Share, state: State) -> Limiter {
        Limiter {
            rate,
            burst,
            share,
            state,
            demand: Demand::default(),
            limit: rate.ceil().max(0.0) as u64,
        }
    }

    /// Decides one request at `now_us`, taking a token when admitted.
    /// `key` picks the bucket of a keyed limit (an IP's octets, a header's
    /// value; requests without one may pass `b""` and share a bucket); an
    /// unkeyed limit ignores it.
    pub fn check(&mut self, key: &[u8], now_us: u64) -> Verdict {
        let bucket = match &mut self.state {
            State::Route(b) => b,
            State::Keyed(k) => k.bucket(key, now_us),
        };
        let taken = bucket.try_take(now_us);
        let reset_s = verdict::secs_ceil(bucket.full_in_us(now_us));
        let (allowed, remaining, retry_after_s) = match taken {
            Ok(Remaining(r)) => {
                self.demand.admitted += 1;
                (true, r, None)
            }
            Err(RetryAfterUs(us)) => {
                self.demand.refused += 1;
                (false, 0, Some(verdict::secs_ceil(us).max(1)))
            }
        };
        Verdict {
            allowed,
            headers: Headers {
                limit: self.limit,
                remaining,
                reset_s,
                retry_after_s,
            },
        }
    }

    /// Takes this core's new share at `now_us` (from the coordinator's
    /// latest `close`): the bucket refills at `rate × fraction` and holds
    /// `max(1, burst × fraction)`, keeping its tokens (see
    /// [`Bucket::set_rate`]); keyed buckets take it when next used.
    pub fn apply(&mut self, share: Share, now_us: u64) {
        self.share = share;
        let (rate, burst) = (share.rate(self.rate), share.burst(self.burst));
        match &mut self.state {
            State::Route(b) => b.set_rate(rate, burst, now_us),
            State::Keyed(k) => k.set_rate(rate, burst),
        }
    }

    /// The interval's demand, for the coordinator; counting starts again.
    pub fn seal(&mut self) -> Demand {
        std::mem::take(&mut self.demand)
    }

    /// What the coordinator needs to know of this limit.
    pub fn budget(&self) -> Budget {
        match self.state {
            State::Route(_) => Budget::Rate(self.rate),
            State::Keyed(_) => Budget::PerKey,
        }
    }

    /// This core's current share.
    pub fn share(&self) -> Share {
        self.share
    }

    /// The per-key buckets, for a keyed limit.
    pub fn keys(&self) -> Option<&Keyed> {
        match &self.state {
            State::Route(_) => None,
            State::Keyed(k) => Some(k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_limit_starts_with_an_even_share() {
        // 100 rps, burst 20 over 4 cores: 25 rps and 5 tokens here.
        let mut l = Limiter::new(100.0, 20.0, 4, 0);
        for i in 0..5 {
            let v = l.check(b"", 0);
            assert!(v.allowed);
            assert_eq!(v.headers.remaining, 4 - i);
            assert_eq!(v.headers.limit, 100);
        }
        let v = l.check(b"ignored", 0);
        assert!(!v.allowed);
        assert_eq!(
            v.headers,
            Headers {
                limit: 100,
                remaining: 0,
                reset_s: 1, // 5 tokens at 25/s: 0.2 s
                retry_after_s: Some(1),
            }
        );
        assert_eq!(
            l.seal(),
            Demand {
                admitted: 5,
                refused: 1
            }
        );
        assert_eq!(l.seal(), Demand::default());
    }

    #[test]
    fn apply_changes_rate_and_burst() {
        let mut l = Limiter::new(1000.0, 100.0, 4, 0);
        l.apply(Share { fraction: 0.5 }, 0);
        assert_eq!(l.share(), Share { fraction: 0.5 });
        // Still 25 tokens (a larger bucket is room, not tokens), then
        // 500/s: 50 more in 100 ms, capped at 50.
        let admitted = (0..100).filter(|_| l.check(b"", 0).allowed).count();
        assert_eq!(admitted, 25);
        let admitted = (0..100).filter(|_| l.check(b"", 100_000).allowed).count();
        assert_eq!(admitted, 50);
    }

    #[test]
    fn retry_after_for_slow_limits() {
        // 0.1 rps on one core: a token every 10 s.
        let mut l = Limiter::new(0.1, 1.0, 1, 0);
        assert!(l.check(b"", 0).allowed);
        let v = l.check(b"", 2_500_000);
        assert_eq!(v.headers.retry_after_s, Some(8));
        assert_eq!(v.headers.reset_s, 8);
        assert_eq!(v.headers.limit, 1);
    }

    #[test]
    fn keyed_limit_per_key() {
        let mut l = Limiter::keyed(10.0, 4.0, 2, 100);
        // 5 rps and 2 tokens per key on this core.
        assert!(l.check(b"k1", 0).allowed);
        assert!(l.check(b"k1", 0).allowed);
        let v = l.check(b"k1", 0);
        assert!(!v.allowed);
        assert_eq!(v.headers.retry_after_s, Some(1));
        assert!(l.check(b"k2", 0).allowed);
        assert!(l.check(b"k1", 200_000).allowed);
        assert_eq!(l.keys().map(Keyed::len), Some(2));
        assert!(Limiter::new(1.0, 1.0, 1, 0).keys().is_none());
        assert_eq!(l.budget(), Budget::PerKey);
        assert_eq!(Limiter::new(7.0, 1.0, 1, 0).budget(), Budget::Rate(7.0));
        l.apply(Share { fraction: 1.0 }, 200_000);
        // k2 was left with 1 token at 0 and is refilled at its old rate
        // (5/s) and capacity (2) until seen again: 2 tokens, then 10/s.
        let n = (0..10).filter(|_| l.check(b"k2", 400_000).allowed).count();
        assert_eq!(n, 2);
        let n = (0..10).filter(|_| l.check(b"k2", 700_000).allowed).count();
        assert_eq!(n, 3);
        assert_eq!(
            l.seal(),
            Demand {
                admitted: 9,
                refused: 16
            }
        );
    }
}
