//! Align: retries — which failures a route retries, the per-core retry
//! budget, and the choice of a different upstream for the next attempt.
//! Sans-IO: the exchange asks, these functions decide.

use std::time::Duration;

/// Most extra attempts a route may ask for.
pub const MAX_ATTEMPTS: u32 = 5;

/// `[routes.rule.retry]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first (0..=`MAX_ATTEMPTS`).
    pub attempts: u32,
    /// Deadline of one attempt from its start to the response head; `None`:
    /// only `proxy.connect_timeout` and `proxy.response_timeout` apply.
    pub per_try_timeout: Option<Duration>,
    /// What is retried.
    pub on: RetryOn,
    /// Retries in flight on a core may be this share (in %) of the core's
    /// active requests…
    pub budget_percent: u32,
    /// …but this many are always allowed.
    pub budget_min: u32,
}

/// A set of retry conditions (`on = [...]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn(u8);

impl RetryOn {
    /// Connecting failed: refused, unreachable, or `connect_timeout` passed.
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1);
    /// The connection was closed or reset before a complete response
    /// head, or the head was not valid HTTP.
    pub const RESET: RetryOn = RetryOn(2);
    /// `per_try_timeout` or `response_timeout` passed before the head.
    pub const TIMEOUT: RetryOn = RetryOn(4);
    /// Any 5xx response head.
    pub const STATUS_5XX: RetryOn = RetryOn(8);
    /// A 502, 503 or 504 response head.
    pub const GATEWAY_ERROR: RetryOn = RetryOn(16);
    /// A 409 response head (as Envoy's `retriable-4xx`).
    pub const RETRIABLE_4XX: RetryOn = RetryOn(32);

    /// The names accepted in `on`.
    pub const NAMES: [(&'static str, RetryOn); 6] = [
        ("connect-failure", RetryOn::CONNECT_FAILURE),
        ("reset", RetryOn::RESET),
        ("timeout", RetryOn::TIMEOUT),
        ("5xx", RetryOn::STATUS_5XX),
        ("gateway-error", RetryOn::GATEWAY_ERROR),
        ("retriable-4xx", RetryOn::RETRIABLE_4XX),
    ];

    /// The default set: connect failures, resets and gateway errors.
    pub const DEFAULT: RetryOn =
        RetryOn(RetryOn::CONNECT_FAILURE.0 | RetryOn::RESET.0 | RetryOn::GATEWAY_ERROR.0);

    /// The condition with this name.
    pub fn by_name(name: &str) -> Option<RetryOn> {
        RetryOn::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, c)| c)
    }

    /// Both sets together.
    pub fn with(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }

    /// Whether every condition of `other` is in the set.
    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// Whether a response with this status is retried.
    pub fn status(self, status: u16) -> bool {
        (self.contains(RetryOn::STATUS_5XX) && (500..600).contains(&status))
            || (self.contains(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504))
            || (self.contains(RetryOn::RETRIABLE_4XX) && status == 409)
    }

    /// Whether an attempt that ended this way is retried.
    pub fn cause(self, cause: Cause) -> bool {
        match cause {
            Cause::ConnectFailure => self.contains(RetryOn::CONNECT_FAILURE),
            Cause::Reset => self.contains(RetryOn::RESET),
            Cause::Timeout => self.contains(RetryOn::TIMEOUT),
            Cause::Status(s) => self.status(s),
        }
    }
}

/// How an attempt failed, as far as retrying cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// See [`RetryOn::CONNECT_FAILURE`].
    ConnectFailure,
    /// See [`RetryOn::RESET`].
    Reset,
    /// See [`RetryOn::TIMEOUT`].
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
}

/// Whether one more retry fits the budget: retries in flight on this core
/// stay below `max(budget_min, budget_percent % of active requests)`
/// (rounded down), as Envoy's retry budget.
pub fn budget_allows(policy: &RetryPolicy, active_requests: usize, active_retries: usize) -> bool {
    let share = active_requests.saturating_mul(policy.budget_percent as usize) / 100;
    active_retries < share.max(policy.budget_min as usize)
}

/// The upstreams one request has tried (at most `1 + MAX_ATTEMPTS`).
#[derive(Debug, Default, Clone)]
pub struct Tried {
    list: [usize; 1 + MAX_ATTEMPTS as usize],
    len: usize,
}

impl Tried {
    /// Notes an attempt on upstream `i`.
    pub fn push(&mut self, i: usize) {
        if self.len < self.list.len() {
            self.list[self.len] = i;
            self.len += 1;
        }
    }

    /// Whether upstream `i` was tried.
    pub fn contains(&self, i: usize) -> bool {
        self.list[..self.len].contains(&i)
    }

    /// Attempts made so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The tried upstreams as the balancer's avoid mask.
    pub fn mask(&self) -> u64 {
        self.list[..self.len]
            .iter()
            .filter(|&&i| i < 64)
            .fold(0, |m, &i| m | 1 << i)
    }

    /// Whether no attempt was made yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn policy(percent: u32, min: u32) -> RetryPolicy {
        RetryPolicy {
            attempts: 1,
            per_try_timeout: None,
            on: RetryOn::DEFAULT,
            budget_percent: percent,
            budget_min: min,
        }
    }

    #[test]
    fn budget_is_a_share_of_active_requests_with_a_floor() {
        let p = policy(20, 3);
        // The floor: 3 retries in flight whatever the load.
        assert!(budget_allows(&p, 1, 0));
        assert!(budget_allows(&p, 1, 2));
        assert!(!budget_allows(&p, 1, 3));
        // 20 % of 100 active requests: 20.
        assert!(budget_allows(&p, 100, 19));
        assert!(!budget_allows(&p, 100, 20));
        // Rounded down: 20 % of 24 is 4.
        assert!(!budget_allows(&p, 24, 4));
        let strict = policy(0, 1);
        assert!(budget_allows(&strict, 1000, 0));
        assert!(!budget_allows(&strict, 1000, 1));
        let share_only = policy(50, 0);
        assert!(!budget_allows(&share_only, 1, 0));
        assert!(budget_allows(&share_only, 2, 0));
        assert!(budget_allows(&policy(100, 0), usize::MAX, 0));
    }

    #[test]
    fn conditions() {
        let on = RetryOn::DEFAULT;
        assert!(on.cause(Cause::ConnectFailure));
        assert!(on.cause(Cause::Reset));
        assert!(!on.cause(Cause::Timeout));
        for (s, want) in [
            (502, true),
            (503, true),
            (504, true),
            (500, false),
            (409, false),
        ] {
            assert_eq!(on.cause(Cause::Status(s)), want, "{s}");
        }
        let all = RetryOn::STATUS_5XX.with(RetryOn::RETRIABLE_4XX);
        assert!(all.status(500) && all.status(599) && all.status(409));
        assert!(!all.status(429) && !all.status(200) && !all.status(404));
        assert!(!all.cause(Cause::ConnectFailure));
        assert_eq!(RetryOn::by_name("timeout"), Some(RetryOn::TIMEOUT));
        assert_eq!(RetryOn::by_name("5XX"), None);
        assert!(!RetryOn::default().contains(RetryOn::default()));
    }

    #[test]
    fn tried_upstreams_become_the_avoid_mask() {
        let mut tried = Tried::default();
        assert_eq!(tried.mask(), 0);
        tried.push(0);
        tried.push(5);
        tried.push(70); // beyond the mask: never avoided
        assert_eq!(tried.mask(), 0b10_0001);
    }

    #[test]
    fn tried_is_bounded() {
        let mut t = Tried::default();
        assert!(t.is_empty());
        for i in 0..10 {
            t.push(i);
        }
        assert_eq!(t.len(), 1 + MAX_ATTEMPTS as usize);
        assert!(t.contains(5) && !t.contains(6));
    }
}
