//! `[routes.rule.retry]` and `[routes.rule.circuit_breaker]`: how a route
//! retries failed attempts and how much one upstream may be given at once.

use std::time::Duration;

use super::super::raw::{RawCircuitBreaker, RawRetry};
use super::Validator;
use crate::align::retry::{RetryOn, MAX_ATTEMPTS};
use crate::align::{CircuitBreaker, RetryPolicy};

/// Largest value of a circuit breaker limit.
const MAX_LIMIT: i64 = 1_000_000;

impl Validator {
    pub(super) fn retry(&mut self, path: &str, raw: RawRetry) -> RetryPolicy {
        let attempts = self.count(
            &format!("{path}.attempts"),
            raw.attempts,
            (0, i64::from(MAX_ATTEMPTS)),
            1,
        ) as u32;
        let per_try_timeout = raw.per_try_timeout.map(|text| {
            self.duration(
                &format!("{path}.per_try_timeout"),
                Some(text),
                Duration::from_secs(1),
            )
        });
        let on = match raw.on {
            None => RetryOn::DEFAULT,
            Some(names) => {
                if names.is_empty() {
                    let all: Vec<&str> = RetryOn::NAMES.iter().map(|(n, _)| *n).collect();
                    self.err(
                        format!("{path}.on"),
                        format!("must name at least one of {}", all.join(", ")),
                    );
                }
                let mut on = RetryOn::default();
                for (i, name) in names.iter().enumerate() {
                    match RetryOn::by_name(name) {
                        Some(c) => on = on.with(c),
                        None => {
                            let all: Vec<&str> = RetryOn::NAMES.iter().map(|(n, _)| *n).collect();
                            self.err(
                                format!("{path}.on[{i}]"),
                                format!("unknown condition {name:?} ({})", all.join(", ")),
                            );
                        }
                    }
                }
                on
            }
        };
        let budget_percent = self.count(
            &format!("{path}.budget_percent"),
            raw.budget_percent,
            (0, 100),
            20,
        ) as u32;
        let budget_min = self.count(
            &format!("{path}.budget_min"),
            raw.budget_min,
            (0, 10_000),
            3,
        ) as u32;
        if budget_percent == 0 && budget_min == 0 {
            self.err(
                format!("{path}.budget_min"),
                "with budget_percent = 0 too, no retry would ever be allowed",
            );
        }
        RetryPolicy {
            attempts,
            per_try_timeout,
            on,
            budget_percent,
            budget_min,
        }
    }

    pub(super) fn circuit_breaker(&mut self, path: &str, raw: RawCircuitBreaker) -> CircuitBreaker {
        let mut limit = |key: &str, value: Option<i64>| {
            self.count(&format!("{path}.{key}"), value, (1, MAX_LIMIT), 1024) as u32
        };
        CircuitBreaker {
            max_connections: limit("max_connections", raw.max_connections),
            max_pending: limit("max_pending", raw.max_pending),
            max_requests: limit("max_requests", raw.max_requests),
        }
    }
}
