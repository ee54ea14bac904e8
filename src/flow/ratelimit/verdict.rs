//! What a rate limit decided for one request and the headers that tell
//! the client: the wiring side writes them (on a 429 with `Retry-After`,
//! and if it likes on admitted responses too) without allocating.

/// The status of a refused request: Too Many Requests.
pub const STATUS: u16 = 429;

/// Header names, lowercase (valid as they are in HTTP/1.1 and HTTP/2).
pub const RETRY_AFTER: &str = "retry-after";
/// See [`Headers::limit`].
pub const LIMIT: &str = "x-ratelimit-limit";
/// See [`Headers::remaining`].
pub const REMAINING: &str = "x-ratelimit-remaining";
/// See [`Headers::reset_s`].
pub const RESET: &str = "x-ratelimit-reset";

/// The rate-limit headers of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// `X-RateLimit-Limit`: the configured rate, requests a second for the
    /// whole process (per key for a keyed limit), rounded up.
    pub limit: u64,
    /// `X-RateLimit-Remaining`: whole tokens left in the bucket that
    /// answered (this core's, or this core's for the key), so requests
    /// that may follow at once; 0 when refused.
    pub remaining: u64,
    /// `X-RateLimit-Reset`: seconds until that bucket is full again,
    /// rounded up (delta seconds, not a date).
    pub reset_s: u64,
    /// `Retry-After`: when refused, seconds until a token is back, rounded
    /// up and at least 1 (HTTP counts in whole seconds); `None` when
    /// admitted.
    pub retry_after_s: Option<u64>,
}

impl Headers {
    /// Calls `f(name, value)` for each header to send: `retry-after` first
    /// when refused, then the three `x-ratelimit-*` headers.
    pub fn each(&self, mut f: impl FnMut(&'static str, &str)) {
        let mut b = itoa::Buffer::new();
        if let Some(s) = self.retry_after_s {
            f(RETRY_AFTER, b.format(s));
        }
        f(LIMIT, b.format(self.limit));
        f(REMAINING, b.format(self.remaining));
        f(RESET, b.format(self.reset_s));
    }
}

/// Whether a request may go on, and what to tell the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Admitted; when false, answer [`STATUS`] with the headers.
    pub allowed: bool,
    /// The rate-limit headers.
    pub headers: Headers,
}

/// Microseconds as whole seconds, rounded up (`u64::MAX` µs, "never",
/// stays a very large number of seconds).
pub(super) fn secs_ceil(us: u64) -> u64 {
    us.div_ceil(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(h: &Headers) -> Vec<(String, String)> {
        let mut out = Vec::new();
        h.each(|n, v| out.push((n.to_string(), v.to_string())));
        out
    }

    #[test]
    fn refused_headers_lead_with_retry_after() {
        let h = Headers {
            limit: 1000,
            remaining: 0,
            reset_s: 3,
            retry_after_s: Some(1),
        };
        let w = written(&h);
        let w: Vec<(&str, &str)> = w.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            w,
            vec![
                ("retry-after", "1"),
                ("x-ratelimit-limit", "1000"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "3"),
            ]
        );
    }

    #[test]
    fn admitted_headers_have_no_retry_after() {
        let h = Headers {
            limit: 5,
            remaining: 4,
            reset_s: 1,
            retry_after_s: None,
        };
        assert_eq!(written(&h).len(), 3);
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(secs_ceil(0), 0);
        assert_eq!(secs_ceil(1), 1);
        assert_eq!(secs_ceil(1_000_000), 1);
        assert_eq!(secs_ceil(1_000_001), 2);
        assert_eq!(secs_ceil(u64::MAX), 18_446_744_073_710);
    }
}
