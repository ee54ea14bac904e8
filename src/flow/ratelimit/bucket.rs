//! A token bucket in plain fields (no atomics, no clock): the caller passes
//! the time in microseconds, so the maths is exact and testable.
//!
//! Tokens are kept in integer nanotokens (10⁻⁹ token) and the rate in
//! milli-tokens per second, which is the same number as nanotokens per
//! microsecond: a refill is one multiplication, `elapsed_us × rate`, with
//! no rounding, and the wait for the next token is an exact ceiling
//! division. Rates are thus resolved to 0.001 token/s.

/// Nanotokens in one token: the cost of one request.
const TOKEN: u64 = 1_000_000_000;

/// Whole tokens left in the bucket after a request took its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining(pub u64);

/// Microseconds until the bucket holds a whole token again (`u64::MAX`
/// when the rate is zero: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfterUs(pub u64);

/// A token bucket: `rate` tokens a second, at most `burst` tokens held.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Milli-tokens per second = nanotokens per microsecond.
    rate: u64,
    /// Capacity, in nanotokens (at least one token).
    burst: u64,
    /// Tokens held at `last_us`, in nanotokens (≤ `burst`).
    tokens: u64,
    /// When `tokens` was last brought up to date.
    last_us: u64,
}

/// `rate` tokens/s as milli-tokens/s (negative or NaN: 0; saturating).
fn to_rate(rate: f64) -> u64 {
    (rate * 1e3).round().max(0.0) as u64
}

/// `burst` tokens as nanotokens, at least one token: a request costs a
/// whole token, so a smaller bucket could never admit anything.
fn to_burst(burst: f64) -> u64 {
    ((burst * 1e9).round().max(0.0) as u64).max(TOKEN)
}

impl Bucket {
    /// A full bucket of `burst` tokens (at least 1) refilled at `rate`
    /// tokens a second (resolved to 0.001; ≤ 0 or NaN: never refilled).
    pub fn new(rate: f64, burst: f64, now_us: u64) -> Bucket {
        let burst = to_burst(burst);
        Bucket {
            rate: to_rate(rate),
            burst,
            tokens: burst,
            last_us: now_us,
        }
    }

    /// The refill rate, tokens a second.
    pub fn rate(&self) -> f64 {
        self.rate as f64 / 1e3
    }

    /// The capacity, in tokens.
    pub fn burst(&self) -> f64 {
        self.burst as f64 / 1e9
    }

    /// Tokens held at `now_us` (fractional), without taking any.
    pub fn tokens(&self, now_us: u64) -> f64 {
        self.tokens_at(now_us) as f64 / 1e9
    }

    /// Takes one token at `now_us`: the whole tokens left, or how long to
    /// wait until one is there (exact: at `now_us + wait` the take
    /// succeeds, one microsecond earlier it does not, if nothing else took
    /// or changed the rate in between).
    pub fn try_take(&mut self, now_us: u64) -> Result<Remaining, RetryAfterUs> {
        self.refill(now_us);
        if self.tokens >= TOKEN {
            self.tokens -= TOKEN;
            Ok(Remaining(self.tokens / TOKEN))
        } else {
            Err(RetryAfterUs(self.wait_us(TOKEN - self.tokens)))
        }
    }

    /// Microseconds from `now_us` until the bucket is full again (0 when
    /// full; `u64::MAX` when it never will be).
    pub fn full_in_us(&self, now_us: u64) -> u64 {
        self.wait_us(self.burst - self.tokens_at(now_us))
    }

    /// Changes the rate and capacity at `now_us`, keeping the tokens
    /// consistent: the time until now is refilled at the old rate, then
    /// the tokens are capped at the new capacity (a smaller bucket loses
    /// its excess; a larger one gains room, not tokens). Tokens are never
    /// created by a change, so a limiter whose rates always sum to `R`
    /// admits at most `R × t` plus the tokens held at the start.
    pub fn set_rate(&mut self, rate: f64, burst: f64, now_us: u64) {
        self.refill(now_us);
        self.rate = to_rate(rate);
        self.burst = to_burst(burst);
        self.tokens = self.tokens.min(self.burst);
    }

    /// Tokens at `now_us`; a time before the last update counts as no time
    /// passed (the clock is monotonic, callers may still disagree by a µs).
    fn tokens_at(&self, now_us: u64) -> u64 {
        let elapsed = now_us.saturating_sub(self.last_us) as u128;
        let full = self.tokens as u128 + elapsed * self.rate as u128;
        full.min(self.burst as u128) as u64
    }

    fn refill(&mut self, now_us: u64) {
        if now_us > self.last_us {
            self.tokens = self.tokens_at(now_us);
            self.last_us = now_us;
        }
    }

    /// Microseconds to gather `need` nanotokens, rounded up.
    fn wait_us(&self, need: u64) -> u64 {
        match (need, self.rate) {
            (0, _) => 0,
            (_, 0) => u64::MAX,
            (need, rate) => need.div_ceil(rate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn starts_full_and_drains() {
        let mut b = Bucket::new(10.0, 3.0, 0);
        assert_eq!(b.try_take(0), Ok(Remaining(2)));
        assert_eq!(b.try_take(0), Ok(Remaining(1)));
        assert_eq!(b.try_take(0), Ok(Remaining(0)));
        // 10 tokens/s: one token every 100 ms.
        assert_eq!(b.try_take(0), Err(RetryAfterUs(100_000)));
        assert_eq!(b.try_take(40_000), Err(RetryAfterUs(60_000)));
    }

    #[test]
    fn refills_from_elapsed_time() {
        let mut b = Bucket::new(10.0, 5.0, 0);
        for _ in 0..5 {
            b.try_take(0).unwrap();
        }
        assert_eq!(b.tokens(0), 0.0);
        assert_eq!(b.tokens(250_000), 2.5);
        assert_eq!(b.try_take(250_000), Ok(Remaining(1)));
        assert_eq!(b.tokens(250_000), 1.5);
    }

    #[test]
    fn refill_is_capped_at_burst() {
        let mut b = Bucket::new(1000.0, 4.0, 0);
        b.try_take(0).unwrap();
        assert_eq!(b.tokens(3_600_000_000), 4.0);
        assert_eq!(b.try_take(3_600_000_000), Ok(Remaining(3)));
        // The idle hour did not bank anything beyond the burst.
        for _ in 0..3 {
            b.try_take(3_600_000_000).unwrap();
        }
        assert!(b.try_take(3_600_000_000).is_err());
    }

    #[test]
    fn retry_after_is_exact_for_fractional_rates() {
        // 3 tokens/s: 333_333.33… µs per token, so the wait rounds up.
        let mut b = Bucket::new(3.0, 1.0, 0);
        b.try_take(0).unwrap();
        let Err(RetryAfterUs(w)) = b.try_take(0) else {
            panic!("empty bucket admitted")
        };
        assert_eq!(w, 333_334);
        assert!(b.try_take(w - 1).is_err());
        assert_eq!(b.try_take(w), Ok(Remaining(0)));
    }

    #[test]
    fn full_in_counts_to_capacity() {
        let mut b = Bucket::new(2.0, 4.0, 0);
        assert_eq!(b.full_in_us(0), 0);
        b.try_take(0).unwrap();
        b.try_take(0).unwrap();
        assert_eq!(b.full_in_us(0), 1_000_000);
        assert_eq!(b.full_in_us(600_000), 400_000);
    }

    #[test]
    fn time_going_back_is_no_time() {
        let mut b = Bucket::new(10.0, 2.0, 1_000_000);
        b.try_take(1_000_000).unwrap();
        b.try_take(1_000_000).unwrap();
        assert!(b.try_take(500_000).is_err());
        assert_eq!(b.tokens(1_000_000), 0.0);
        assert_eq!(b.try_take(1_100_000), Ok(Remaining(0)));
    }

    #[test]
    fn zero_rate_never_refills() {
        let mut b = Bucket::new(0.0, 1.0, 0);
        b.try_take(0).unwrap();
        assert_eq!(b.try_take(u64::MAX), Err(RetryAfterUs(u64::MAX)));
        assert_eq!(b.full_in_us(5), u64::MAX);
    }

    #[test]
    fn burst_below_one_token_is_one_token() {
        let mut b = Bucket::new(1.0, 0.25, 0);
        assert_eq!(b.burst(), 1.0);
        assert!(b.try_take(0).is_ok());
    }

    #[test]
    fn set_rate_refills_at_old_rate_then_caps() {
        let mut b = Bucket::new(10.0, 10.0, 0);
        for _ in 0..10 {
            b.try_take(0).unwrap();
        }
        // 0.5 s at 10/s = 5 tokens, then the new capacity of 3 caps them.
        b.set_rate(100.0, 3.0, 500_000);
        assert_eq!(b.tokens(500_000), 3.0);
        assert_eq!((b.rate(), b.burst()), (100.0, 3.0));
        // From now on at the new rate.
        assert_eq!(b.tokens(510_000), 3.0);
        b.set_rate(100.0, 50.0, 510_000);
        // A larger capacity is room, not tokens.
        assert_eq!(b.tokens(510_000), 3.0);
        assert_eq!(b.tokens(610_000), 13.0);
    }

    proptest! {
        /// Whatever the rate and state, the announced wait is exact.
        #[test]
        fn retry_after_is_exact(rate in 0.001f64..100_000.0, burst in 1.0f64..1000.0,
                                takes in 0usize..2000, at in 0u64..10_000_000) {
            let mut b = Bucket::new(rate, burst, 0);
            for _ in 0..takes {
                if b.try_take(at).is_err() { break; }
            }
            if let Err(RetryAfterUs(w)) = b.try_take(at) {
                let mut early = b.clone();
                prop_assert!(w == 0 || early.try_take(at + w - 1).is_err());
                prop_assert!(b.try_take(at + w).is_ok());
            }
        }

        /// Over any run, admitted ≤ burst + rate × elapsed.
        #[test]
        fn never_beyond_rate_and_burst(rate in 0.1f64..10_000.0, burst in 1.0f64..100.0,
                                       gaps in proptest::collection::vec(0u64..50_000, 1..500)) {
            let mut b = Bucket::new(rate, burst, 0);
            let (mut now, mut admitted) = (0u64, 0u64);
            for g in gaps {
                now += g;
                if b.try_take(now).is_ok() { admitted += 1; }
            }
            let bound = b.burst() + b.rate() * now as f64 / 1e6;
            prop_assert!(admitted as f64 <= bound + 1e-9, "{admitted} > {bound}");
        }
    }
}
