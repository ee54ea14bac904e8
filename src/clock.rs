//! Clock: the one place that reads the monotonic clock.
//!
//! Protocol and policy code takes `Instant`s as arguments; only the drivers
//! (gate, upstream pool, runtime) call [`now`], so logic can be tested on
//! virtual time.

use std::time::Instant;

/// The current monotonic time.
#[inline]
#[allow(clippy::disallowed_methods)] // the single sanctioned call site
pub fn now() -> Instant {
    Instant::now()
}

/// Seconds since the Unix epoch (wall clock), for token expiry checks.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
