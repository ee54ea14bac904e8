//! Stats: what one worker thread counts, merged across threads at the end.
//!
//! Latencies are recorded in nanoseconds into two HdrHistograms: corrected
//! (from the intended send time of the timetable) and uncorrected (from the
//! moment the request was actually written). Threads merge by adding counts;
//! percentiles are never averaged.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms hold (one hour); longer ones are clamped.
pub const MAX_LATENCY_NS: u64 = 3_600 * 1_000_000_000;
/// Significant decimal digits kept by the histograms.
const SIGFIGS: u8 = 3;

/// Kinds of failed requests, counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection could not be established (refused, unreachable,
    /// connect or TLS handshake timed out or failed).
    Connect,
    /// Reading the response failed or the peer closed mid-response.
    Read,
    /// Writing the request failed.
    Write,
    /// No complete response within `--timeout`.
    Timeout,
    /// The response was not valid HTTP/1.1.
    Protocol,
}

/// Error counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// See [`ErrorKind::Connect`].
    pub connect: u64,
    /// See [`ErrorKind::Read`].
    pub read: u64,
    /// See [`ErrorKind::Write`].
    pub write: u64,
    /// See [`ErrorKind::Timeout`].
    pub timeout: u64,
    /// See [`ErrorKind::Protocol`].
    pub protocol: u64,
}

impl ErrorCounts {
    /// All errors together.
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.protocol
    }

    fn add(&mut self, kind: ErrorKind, n: u64) {
        let slot = match kind {
            ErrorKind::Connect => &mut self.connect,
            ErrorKind::Read => &mut self.read,
            ErrorKind::Write => &mut self.write,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Protocol => &mut self.protocol,
        };
        *slot += n;
    }

    fn merge(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.read += o.read;
        self.write += o.write;
        self.timeout += o.timeout;
        self.protocol += o.protocol;
    }
}

/// Completed responses by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    /// 1xx (only 101 reaches the count; interim responses are skipped).
    #[serde(rename = "1xx")]
    pub s1xx: u64,
    /// 2xx.
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    /// 3xx.
    #[serde(rename = "3xx")]
    pub s3xx: u64,
    /// 4xx.
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    /// 5xx.
    #[serde(rename = "5xx")]
    pub s5xx: u64,
    /// Anything outside 100..=599.
    pub other: u64,
}

impl StatusCounts {
    fn add(&mut self, status: u16) {
        match status {
            100..=199 => self.s1xx += 1,
            200..=299 => self.s2xx += 1,
            300..=399 => self.s3xx += 1,
            400..=499 => self.s4xx += 1,
            500..=599 => self.s5xx += 1,
            _ => self.other += 1,
        }
    }

    fn merge(&mut self, o: &StatusCounts) {
        self.s1xx += o.s1xx;
        self.s2xx += o.s2xx;
        self.s3xx += o.s3xx;
        self.s4xx += o.s4xx;
        self.s5xx += o.s5xx;
        self.other += o.other;
    }

    /// Responses that are neither 2xx nor 3xx.
    pub fn non_2xx_3xx(&self) -> u64 {
        self.s1xx + self.s4xx + self.s5xx + self.other
    }
}

/// The measurements of one thread (or, after merging, of the run).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency from the intended send time (coordinated omission corrected).
    pub corrected: Histogram<u64>,
    /// Latency from the actual send time.
    pub uncorrected: Histogram<u64>,
    /// Completed responses inside the measurement window.
    pub requests: u64,
    /// Completed responses by status class.
    pub status: StatusCounts,
    /// Failed requests by kind.
    pub errors: ErrorCounts,
    /// Response bytes read inside the window (heads and bodies, after TLS).
    pub bytes_read: u64,
    /// Connections established (during the whole run, warm-up included).
    pub connects: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty stats.
    pub fn new() -> Stats {
        let h = || {
            Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGFIGS)
                .expect("static histogram bounds are valid")
        };
        Stats {
            corrected: h(),
            uncorrected: h(),
            requests: 0,
            status: StatusCounts::default(),
            errors: ErrorCounts::default(),
            bytes_read: 0,
            connects: 0,
        }
    }

    /// Records a completed response.
    #[inline]
    pub fn complete(&mut self, corrected_ns: u64, uncorrected_ns: u64, status: u16) {
        self.corrected.saturating_record(corrected_ns.max(1));
        self.uncorrected.saturating_record(uncorrected_ns.max(1));
        self.requests += 1;
        self.status.add(status);
    }

    /// Records `n` failed requests.
    pub fn error(&mut self, kind: ErrorKind, n: u64) {
        self.errors.add(kind, n);
    }

    /// Adds another thread's stats to these.
    pub fn merge(&mut self, o: &Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.corrected.add(&o.corrected);
        let _ = self.uncorrected.add(&o.uncorrected);
        self.requests += o.requests;
        self.status.merge(&o.status);
        self.errors.merge(&o.errors);
        self.bytes_read += o.bytes_read;
        self.connects += o.connects;
    }
}

/// Live counters a thread publishes for the progress line. Each thread
/// writes only its own (no contention); the progress thread reads them.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Live {
    completed: AtomicU64,
    errors: AtomicU64,
}

impl Live {
    /// One more completed response.
    #[inline]
    pub fn completed(&self) {
        // Single writer: a plain load + store avoids a locked instruction.
        let v = self.completed.load(Ordering::Relaxed);
        self.completed.store(v + 1, Ordering::Relaxed);
    }

    /// `n` more failed requests.
    pub fn errors(&self, n: u64) {
        let v = self.errors.load(Ordering::Relaxed);
        self.errors.store(v + n, Ordering::Relaxed);
    }

    /// (completed, errors) so far.
    pub fn read(&self) -> (u64, u64) {
        (
            self.completed.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.complete(1_000_000, 500_000, 200);
        b.complete(3_000_000, 500_000, 503);
        b.error(ErrorKind::Timeout, 2);
        a.merge(&b);
        assert_eq!(a.requests, 2);
        assert_eq!(a.status.s2xx, 1);
        assert_eq!(a.status.s5xx, 1);
        assert_eq!(a.status.non_2xx_3xx(), 1);
        assert_eq!(a.errors.timeout, 2);
        assert_eq!(a.errors.total(), 2);
        assert_eq!(a.corrected.len(), 2);
        assert!(a.corrected.max() >= 2_990_000);
    }

    #[test]
    fn huge_latencies_are_clamped() {
        let mut s = Stats::new();
        s.complete(u64::MAX, 0, 200);
        assert_eq!(s.corrected.len(), 1);
        assert!(s.corrected.max() >= MAX_LATENCY_NS / 2);
        assert_eq!(s.uncorrected.min(), 1);
    }
}
