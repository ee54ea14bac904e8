//! Schedule: the constant-rate timetable of an open-loop run.
//!
//! A run at `rate` requests per second over `connections` connections gives
//! every connection the same period `connections / rate` and staggers the
//! connections by `1 / rate`, so the requests of the whole run are spread
//! evenly in time (wrk2 starts all connections of a thread together and
//! sends in bursts; spreading them avoids self-inflicted queueing).
//! Latency is measured from these intended times, which is what corrects
//! coordinated omission: a request that could not be sent on time because
//! the previous one was slow is charged for the wait.

use std::time::{Duration, Instant};

/// When each request of one connection is meant to be sent.
#[derive(Debug, Clone, Copy)]
pub struct Timetable {
    /// Intended time of request 0 (the run start plus this connection's phase).
    first: Instant,
    /// Nanoseconds between two requests of this connection.
    period_ns: f64,
}

impl Timetable {
    /// The timetable of connection `index` (0-based, across all threads) when
    /// `connections` connections share `rate` requests per second from `start`.
    ///
    /// `rate` must be finite and positive and `index < connections`.
    pub fn new(start: Instant, rate: f64, connections: usize, index: usize) -> Self {
        debug_assert!(rate.is_finite() && rate > 0.0);
        debug_assert!(index < connections);
        let gap_ns = 1e9 / rate;
        let phase = Duration::from_nanos((gap_ns * index as f64).round() as u64);
        Timetable {
            first: start + phase,
            period_ns: gap_ns * connections as f64,
        }
    }

    /// Intended send time of this connection's request number `k` (0-based).
    #[inline]
    pub fn intended(&self, k: u64) -> Instant {
        self.first + Duration::from_nanos((self.period_ns * k as f64).round() as u64)
    }

    /// Nanoseconds between two requests of this connection.
    pub fn period_ns(&self) -> f64 {
        self.period_ns
    }

    /// The first request number whose intended time is at or after `t`.
    pub fn first_at_or_after(&self, t: Instant) -> u64 {
        let Some(d) = t.checked_duration_since(self.first) else {
            return 0;
        };
        let mut k = (d.as_nanos() as f64 / self.period_ns).floor() as u64;
        while self.intended(k) < t {
            k += 1;
        }
        while k > 0 && self.intended(k - 1) >= t {
            k -= 1;
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Instant {
        crate::clock::now()
    }

    #[test]
    fn one_connection_sends_at_rate() {
        let s = base();
        let t = Timetable::new(s, 1000.0, 1, 0);
        assert_eq!(t.intended(0), s);
        assert_eq!(t.intended(1) - s, Duration::from_millis(1));
        assert_eq!(t.intended(1000) - s, Duration::from_secs(1));
    }

    #[test]
    fn connections_are_staggered_evenly() {
        let s = base();
        // 4 connections at 1000 req/s: each sends every 4 ms, offsets 0..3 ms.
        let all: Vec<Timetable> = (0..4).map(|i| Timetable::new(s, 1000.0, 4, i)).collect();
        let mut times: Vec<Duration> = Vec::new();
        for t in &all {
            assert!((t.period_ns() - 4e6).abs() < 1e-6);
            for k in 0..250 {
                times.push(t.intended(k) - s);
            }
        }
        times.sort();
        // The union is exactly one request per millisecond.
        for (i, d) in times.iter().enumerate() {
            assert_eq!(*d, Duration::from_millis(i as u64));
        }
    }

    #[test]
    fn fractional_periods_do_not_drift() {
        let s = base();
        // 3 req/s on one connection: period 333.33 ms, no accumulated error.
        let t = Timetable::new(s, 3.0, 1, 0);
        assert_eq!(t.intended(3) - s, Duration::from_secs(1));
        assert_eq!(t.intended(3000) - s, Duration::from_secs(1000));
        let d = t.intended(1) - s;
        assert_eq!(d.as_nanos(), 333_333_333);
    }

    #[test]
    fn first_at_or_after_finds_the_boundary() {
        let s = base();
        let t = Timetable::new(s, 100.0, 2, 1); // period 20 ms, phase 10 ms
        assert_eq!(t.first_at_or_after(s), 0);
        assert_eq!(t.first_at_or_after(s + Duration::from_millis(10)), 0);
        assert_eq!(t.first_at_or_after(s + Duration::from_millis(11)), 1);
        assert_eq!(t.first_at_or_after(s + Duration::from_millis(30)), 1);
        assert_eq!(t.first_at_or_after(s + Duration::from_millis(31)), 2);
    }

    /// A simulated serial connection against a server that stalls once:
    /// request `k` leaves at `max(intended, previous done)`, as the serial
    /// driver does, and both latencies go through the real `Stats`.
    #[test]
    fn simulated_stall_shows_in_corrected_latency_only() {
        use crate::clock::nanos_between;
        use crate::stats::Stats;
        let s = base();
        let t = Timetable::new(s, 1000.0, 1, 0);
        let mut stats = Stats::new();
        let mut free = s;
        let mut caught_up_at = None;
        for k in 0..2000 {
            let intended = t.intended(k);
            let sent = intended.max(free);
            let service = if k == 500 {
                Duration::from_millis(200)
            } else {
                Duration::from_micros(100)
            };
            let done = sent + service;
            stats.complete(
                nanos_between(intended, done),
                nanos_between(sent, done),
                200,
            );
            if k > 500 && caught_up_at.is_none() && sent == intended {
                caught_up_at = Some(k);
            }
            free = done;
        }
        let p = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_percentile(q) as f64 / 1e6;
        // ~200 requests were due during the stall: 10 % of the run queued.
        assert!(
            p(&stats.corrected, 99.0) > 150.0,
            "{}",
            p(&stats.corrected, 99.0)
        );
        assert!(p(&stats.corrected, 95.0) > 50.0);
        assert!(p(&stats.corrected, 50.0) < 0.2);
        // Uncorrected: one slow request among 2000.
        assert!(p(&stats.uncorrected, 99.0) < 0.2);
        assert!(p(&stats.uncorrected, 100.0) >= 199.0);
        // It catches up when 700 ms + 0.1 ms × (k − 500) ≤ k ms, at k ≈ 723.
        let k = caught_up_at.expect("caught up");
        assert!((720..=725).contains(&k), "caught up at {k}");
    }
}
