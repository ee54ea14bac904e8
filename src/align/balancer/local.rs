//! One core's state for one upstream of a route: in flight, the peak EWMA,
//! outlier ejection and slow start, and the table's last word on it.

use std::cell::Cell;

use super::Seen;

#[derive(Debug, Default)]
pub(super) struct Local {
    /// Its sticky-cookie token: 16 hex digits of a hash of the route's and
    /// its names.
    pub(super) token: [u8; 16],
    in_flight: Cell<u32>,
    /// Smooth weighted round robin's running score.
    pub(super) current: Cell<i64>,
    /// The table's view, and this core's in-flight count when it came.
    seen: Cell<Seen>,
    /// The latency the resonant cost uses, µs.
    latency: Cell<f64>,
    in_flight_at_seen: Cell<u32>,
    /// Peak EWMA of latency (µs) and when it was last updated.
    ewma_us: Cell<f64>,
    stamp_us: Cell<u64>,
    /// Consecutive failures, ejections so far, ejected until (µs).
    fails: Cell<u32>,
    ejections: Cell<u32>,
    ejected_until: Cell<u64>,
    /// Back in service since (µs; 0: never out), for slow start.
    back_since: Cell<u64>,
}

impl Local {
    pub(super) fn new(token: [u8; 16]) -> Local {
        Local {
            token,
            ..Local::default()
        }
    }

    pub(super) fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }

    pub(super) fn start(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
    }

    pub(super) fn end(&self) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
    }

    pub(super) fn observe(&self, seen: Seen, latency: f64, now_us: u64) {
        self.latency.set(latency);
        if self.seen.get().down && !seen.down {
            self.back_since.set(now_us.max(1));
        }
        self.seen.set(seen);
        self.in_flight_at_seen.set(self.in_flight.get());
    }

    pub(super) fn seen(&self) -> Seen {
        self.seen.get()
    }

    pub(super) fn latency(&self) -> f64 {
        self.latency.get()
    }

    /// This core's change in flight since the table came (may be < 0).
    pub(super) fn in_flight_delta(&self) -> f64 {
        f64::from(self.in_flight.get()) - f64::from(self.in_flight_at_seen.get())
    }

    /// Not ejected and not down by an active check.
    pub(super) fn healthy(&self, now_us: u64) -> bool {
        !self.ejected(now_us) && !self.seen.get().down
    }

    pub(super) fn ejected(&self, now_us: u64) -> bool {
        now_us < self.ejected_until.get()
    }

    /// Slow start's share in [0, 1]: how long the upstream has been back
    /// (from an ejection or a failed health check), over `window_us`; 1
    /// when it was never out.
    pub(super) fn ramp(&self, now_us: u64, window_us: u64) -> f64 {
        let since = self.back_since.get();
        if since == 0 || now_us < since {
            return 1.0;
        }
        ((now_us - since) as f64 / window_us as f64).min(1.0)
    }

    /// The peak EWMA decayed to `now_us` (time constant `tau_us`).
    pub(super) fn ewma(&self, now_us: u64, tau_us: f64) -> f64 {
        let dt = now_us.saturating_sub(self.stamp_us.get()) as f64;
        self.ewma_us.get() * (-dt / tau_us).exp()
    }

    /// A latency sample: a higher one is taken at once (the peak), a lower
    /// one is averaged in with weight growing with the time since the last.
    pub(super) fn observe_rtt(&self, rtt_us: f64, now_us: u64, tau_us: f64) {
        let old = self.ewma_us.get();
        let dt = now_us.saturating_sub(self.stamp_us.get()) as f64;
        let w = (-dt / tau_us).exp();
        self.ewma_us.set(if rtt_us > old {
            rtt_us
        } else {
            old * w + rtt_us * (1.0 - w)
        });
        self.stamp_us.set(now_us);
    }

    pub(super) fn succeeded(&self, now_us: u64, forgive_after_us: u64) {
        self.fails.set(0);
        // Long healthy after its last ejection: the backoff starts over.
        let until = self.ejected_until.get();
        if self.ejections.get() > 0 && now_us > until.saturating_add(forgive_after_us) {
            self.ejections.set(0);
        }
    }

    /// Counts a failure; returns the consecutive count.
    pub(super) fn failed(&self) -> u32 {
        let n = self.fails.get() + 1;
        self.fails.set(n);
        n
    }

    pub(super) fn ejections(&self) -> u32 {
        self.ejections.get()
    }

    /// Ejected until `until_us`; `counted` ejections lengthen the next one.
    pub(super) fn eject(&self, until_us: u64, counted: bool) {
        let until = self.ejected_until.get().max(until_us);
        self.ejected_until.set(until);
        self.back_since.set(until);
        if counted {
            self.ejections.set(self.ejections.get() + 1);
        }
        self.fails.set(0);
    }
}
