//! Guarded reload: after a reload, watch the traffic for a window and say
//! whether the new config passed or must be rolled back. Pure logic: the
//! caller feeds one `Sample` per merge interval with the time.
//!
//! The rule:
//!
//! - **5xx rate**: errors over requests, cumulative since the reload (every
//!   sample so far in the window). It is judged only once at least
//!   `min_requests` requests (and at least one) have been seen, so that
//!   two failures out of three requests do not roll back a config; past
//!   that, a rate above `max_5xx_rate` fails the reload.
//! - **p99**: fails when two consecutive intervals, each with requests and
//!   a p99, both have a p99 above `max_p99`. One slow interval is not
//!   enough (a cold pool, one slow request); an interval with no requests
//!   or no p99 breaks the run, as does one within the limit.
//! - **Passed** once the window has elapsed with no failure (including the
//!   sample that reaches the end of the window). Too little traffic to
//!   judge the 5xx rate is not a failure.
//!
//! The first verdict other than `Watching` is final: later samples return
//! it again. The thresholds are checked where they come in (the admin
//! API's `GuardRequest::validate`).

use std::time::{Duration, Instant};

/// What a guarded reload watches, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardSpec {
    /// How long after the reload the traffic is watched.
    pub window: Duration,
    /// Largest acceptable share of 5xx responses, in [0, 1].
    pub max_5xx_rate: Option<f64>,
    /// Largest acceptable p99 latency.
    pub max_p99: Option<Duration>,
    /// Requests needed before the 5xx rate is judged.
    pub min_requests: u64,
}

impl GuardSpec {}

/// One merge interval's figures, all upstreams together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Requests finished in the interval.
    pub requests: u64,
    /// Of which answered 5xx (gateway failures included).
    pub errors_5xx: u64,
    /// The interval's p99 latency (µs), if it had timed requests.
    pub p99_us: Option<u64>,
}

/// Where a guarded reload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The window is still open and nothing failed yet.
    Watching,
    /// The window elapsed with no failure: the new config stays.
    Passed,
    /// A threshold was crossed: roll back. The reason, with the figures.
    Failed(String),
}

/// One guarded reload being watched.
#[derive(Debug)]
pub struct Guard {
    spec: GuardSpec,
    started: Instant,
    requests: u64,
    errors: u64,
    /// The previous interval's p99 (µs) when it was above the limit.
    slow: Option<u64>,
    done: Option<Verdict>,
}

impl Guard {
    /// Starts watching a reload applied at `started`.
    pub fn new(spec: GuardSpec, started: Instant) -> Guard {
        Guard {
            spec,
            started,
            requests: 0,
            errors: 0,
            slow: None,
            done: None,
        }
    }

    /// What it watches.
    pub fn spec(&self) -> &GuardSpec {
        &self.spec
    }

    /// Takes one interval's figures, ending at `now`, and judges.
    pub fn observe(&mut self, now: Instant, s: Sample) -> Verdict {
        if let Some(v) = &self.done {
            return v.clone();
        }
        let elapsed = now.saturating_duration_since(self.started);
        self.requests += s.requests;
        self.errors += s.errors_5xx.min(s.requests);
        let verdict = self
            .rate_failure(elapsed)
            .or_else(|| self.p99_failure(s))
            .map(Verdict::Failed)
            .or_else(|| (elapsed >= self.spec.window).then_some(Verdict::Passed));
        match verdict {
            Some(v) => {
                self.done = Some(v.clone());
                v
            }
            None => Verdict::Watching,
        }
    }

    fn rate_failure(&self, elapsed: Duration) -> Option<String> {
        let max = self.spec.max_5xx_rate?;
        if self.requests == 0 || self.requests < self.spec.min_requests {
            return None;
        }
        let rate = self.errors as f64 / self.requests as f64;
        (rate > max).then(|| {
            format!(
                "5xx rate {:.1}% ({} of {} requests) is above the {:.1}% limit, {} after the reload",
                rate * 100.0,
                self.errors,
                self.requests,
                max * 100.0,
                secs(elapsed),
            )
        })
    }

    fn p99_failure(&mut self, s: Sample) -> Option<String> {
        let max = self.spec.max_p99?;
        let max_us = max.as_micros().min(u128::from(u64::MAX)) as u64;
        let over = match s.p99_us {
            Some(p) if s.requests > 0 && p > max_us => p,
            _ => {
                self.slow = None;
                return None;
            }
        };
        self.slow.replace(over).map(|before| {
            format!(
                "p99 {} then {} in two intervals in a row is above the {} limit",
                ms(before),
                ms(over),
                ms(max_us),
            )
        })
    }
}

/// Microseconds as milliseconds for people: `812.3ms`.
fn ms(us: u64) -> String {
    format!("{:.1}ms", us as f64 / 1000.0)
}

/// A duration in seconds for people: `12.4s`.
fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests;
