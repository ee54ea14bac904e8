//! Clock: the one place in the load generator that reads the monotonic clock.
//!
//! Everything else takes instants as arguments, so the scheduling and
//! correction maths stay testable with made-up times.

use std::time::{Duration, Instant};

/// The current monotonic time.
#[allow(clippy::disallowed_methods)] // this module is the sanctioned clock
#[inline]
pub fn now() -> Instant {
    Instant::now()
}

/// `later - earlier` in nanoseconds, saturating at zero.
#[inline]
pub fn nanos_between(earlier: Instant, later: Instant) -> u64 {
    let d = later.saturating_duration_since(earlier);
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Converts a duration to whole nanoseconds, saturating.
#[inline]
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
