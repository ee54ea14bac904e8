//! The control thread's arithmetic: per-core reports are absorbed as they
//! come; closing an interval advances the sliding window and yields the
//! next `ResonanceTable`. No I/O and no clock here: the caller says when an
//! interval closes and how long the proxy has run.
//!
//! The latency window is kept as `SLICES` slices, each the sum of a run of
//! interval histograms, plus their running sum: a new interval is added to
//! the newest slice and to the sum; when the oldest slice falls out of the
//! window it is subtracted from the sum. Quantiles are read from the sum,
//! so the window moves in tenths and costs one histogram per slice.

use std::collections::VecDeque;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::record::{new_histogram, Counters, Report};
use super::slots::Slots;
use super::table::{
    load_resonance, CheckCounts, Health, Resonance, ResonanceTable, UpstreamState, WorkerState,
};
use super::tls::TlsTable;

/// Time constant of `UpstreamState::recent_us`.
pub const RECENT: Duration = Duration::from_millis(500);

/// Slices in a window.
pub const SLICES: usize = 10;

/// How the window and the tempo are measured.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The merge interval.
    pub interval: Duration,
    /// Intervals per window slice (window / interval / `SLICES`, at least 1).
    pub slice_intervals: usize,
    /// Intervals over which RPS and tempo_spikiness are computed.
    pub tempo_intervals: usize,
    /// Normalisation of `load_resonance`.
    pub resonance: Resonance,
}

impl Shape {
    /// The shape for a window length.
    pub fn new(
        interval: Duration,
        window: Duration,
        tempo_intervals: usize,
        resonance: Resonance,
    ) -> Shape {
        let per_window = (window.as_nanos() / interval.as_nanos().max(1)) as usize;
        Shape {
            interval,
            slice_intervals: (per_window / SLICES).max(1),
            tempo_intervals: tempo_intervals.max(1),
            resonance,
        }
    }
}

#[derive(Debug, Default)]
struct Slice {
    requests: u64,
    errors: u64,
    histogram: Option<Histogram<u64>>,
}

#[derive(Debug, Default)]
struct Series {
    totals: Counters,
    /// Oldest first; the last one is filling.
    slices: VecDeque<Slice>,
    intervals_in_slice: usize,
    window: Option<Histogram<u64>>,
    window_requests: u64,
    window_errors: u64,
    /// Requests per closed interval, oldest first.
    tempo: VecDeque<u64>,
    interval_requests: u64,
    /// Timed requests and their summed latency this interval, and the
    /// moving average of the per-interval means (µs; 0: none yet).
    interval_timed: u64,
    interval_sum_us: u64,
    recent_us: f64,
    fail_streak: u32,
    /// Failures this interval, and the longest streak reported by a core
    /// that also saw a response (the streak since that response).
    interval_failures: u64,
    streak_after_response: Option<u32>,
    /// The latest verdict of active health checks, and their results.
    checked: Option<Health>,
    checks: CheckCounts,
}

/// Merged state of all cores.
#[derive(Debug)]
pub struct Merger {
    shape: Shape,
    slots: Slots,
    series: Vec<Series>,
    workers: Vec<WorkerState>,
    in_flight: Vec<Vec<u32>>,
    epoch: u64,
    /// TLS handshakes since start, per listener.
    tls: TlsTable,
    /// Emptied histograms to hand back, per worker.
    recycle: Vec<Vec<Histogram<u64>>>,
    spare: Vec<Histogram<u64>>,
}

impl Merger {
    /// A merger for `workers` cores.
    pub fn new(shape: Shape, slots: Slots, workers: usize) -> Merger {
        Merger {
            shape,
            series: (0..slots.len()).map(|_| Series::default()).collect(),
            in_flight: vec![vec![0; slots.len()]; workers],
            slots,
            workers: vec![WorkerState::default(); workers],
            epoch: 0,
            tls: TlsTable::default(),
            recycle: vec![Vec::new(); workers],
            spare: Vec::new(),
        }
    }

    /// Takes in a reloaded config's slots: new slots start empty, kept ones
    /// keep their history; a slot whose route dropped its health checks
    /// forgets their verdict.
    pub fn relayout(&mut self, slots: Slots) {
        self.series.resize_with(slots.len(), Series::default);
        for (i, s) in self.series.iter_mut().enumerate() {
            if !slots.checked(i) {
                s.checked = None;
            }
        }
        self.slots = slots;
    }

    /// Gives slots with no latency seen yet a recent latency learned
    /// before (µs), so that the first tables are not cold.
    pub fn seed(&mut self, seeds: &[(usize, f64)]) {
        for &(slot, recent_us) in seeds {
            if let Some(s) = self.series.get_mut(slot) {
                if s.recent_us == 0.0 && recent_us.is_finite() && recent_us > 0.0 {
                    s.recent_us = recent_us;
                }
            }
        }
    }

    /// Absorbs one core's report.
    pub fn absorb(&mut self, mut report: Report) {
        let w = report.worker;
        if let Some(ws) = self.workers.get_mut(w) {
            ws.requests += report.requests;
            ws.connections = report.connections;
            ws.tunnels = report.tunnels;
            ws.tunnel_bytes += report.tunnel_bytes;
            self.in_flight[w] = std::mem::take(&mut report.in_flight);
        }
        if !report.tls.is_empty() {
            self.tls.add(&report.tls);
        }
        for sr in report.slots {
            let Some(s) = self.series.get_mut(sr.slot) else {
                continue;
            };
            s.totals.add(&sr.counters);
            s.interval_requests += sr.counters.requests;
            s.interval_timed += sr.counters.buckets.iter().sum::<u64>();
            s.interval_sum_us += sr.counters.sum_us;
            s.window_requests += sr.counters.requests;
            s.window_errors += sr.counters.errors;
            if s.slices.is_empty() {
                s.slices.push_back(Slice::default());
            }
            let slice = s.slices.back_mut().expect("one slice at least");
            slice.requests += sr.counters.requests;
            slice.errors += sr.counters.errors;
            if let Some(mut h) = sr.histogram {
                let spare = &mut self.spare;
                let mut fresh = || spare.pop().unwrap_or_else(new_histogram);
                // Same bounds everywhere: adding cannot fail.
                let _ = slice.histogram.get_or_insert_with(&mut fresh).add(&h);
                let _ = s.window.get_or_insert_with(fresh).add(&h);
                h.reset();
                if let Some(r) = self.recycle.get_mut(w) {
                    r.push(h);
                }
            }
            s.interval_failures += sr.counters.failures.iter().sum::<u64>();
            if sr.responded {
                s.streak_after_response =
                    Some(s.streak_after_response.unwrap_or(0).max(sr.fail_streak));
            }
        }
    }

    /// Takes in one active health check of the upstream of `slot`: whether
    /// it passed, and the verdict after it (`up`).
    pub fn checked(&mut self, slot: usize, passed: bool, up: bool) {
        let Some(s) = self.series.get_mut(slot) else {
            return;
        };
        if passed {
            s.checks.success += 1;
        } else {
            s.checks.failure += 1;
        }
        s.checked = Some(if up { Health::Up } else { Health::Down });
    }

    /// Histograms emptied for `worker` since the last call.
    pub fn take_recycled(&mut self, worker: usize) -> Vec<Histogram<u64>> {
        self.recycle
            .get_mut(worker)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Closes the interval and returns the next table.
    pub fn close(&mut self, uptime: Duration) -> ResonanceTable {
        let shape = self.shape;
        let mut upstreams = Vec::with_capacity(self.series.len());
        for (i, s) in self.series.iter_mut().enumerate() {
            // Health: a response resets the streak to what followed it.
            s.fail_streak = match s.streak_after_response.take() {
                Some(after) => after,
                None => s
                    .fail_streak
                    .saturating_add(s.interval_failures.min(u64::from(u32::MAX)) as u32),
            };
            s.interval_failures = 0;
            // Tempo.
            s.tempo.push_back(std::mem::take(&mut s.interval_requests));
            while s.tempo.len() > shape.tempo_intervals {
                s.tempo.pop_front();
            }
            let (rps, spikiness) = tempo(&s.tempo, shape.interval);
            // Recent latency: an average of the interval means with a
            // RECENT time constant, whatever the interval; kept as it was
            // through intervals without requests.
            if s.interval_timed > 0 {
                let mean = s.interval_sum_us as f64 / s.interval_timed as f64;
                let a = 1.0 - (-shape.interval.as_secs_f64() / RECENT.as_secs_f64()).exp();
                s.recent_us = if s.recent_us == 0.0 {
                    mean
                } else {
                    s.recent_us + a * (mean - s.recent_us)
                };
            }
            s.interval_timed = 0;
            s.interval_sum_us = 0;
            // Window.
            s.intervals_in_slice += 1;
            if s.intervals_in_slice >= shape.slice_intervals {
                s.intervals_in_slice = 0;
                if !s.slices.is_empty() {
                    s.slices.push_back(Slice::default());
                }
                while s.slices.len() > SLICES {
                    let old = s.slices.pop_front().expect("non-empty");
                    s.window_requests -= old.requests;
                    s.window_errors -= old.errors;
                    if let (Some(mut h), Some(w)) = (old.histogram, s.window.as_mut()) {
                        let _ = w.subtract(&h);
                        h.reset();
                        self.spare.push(h);
                    }
                }
            }
            let q = |p| {
                s.window
                    .as_ref()
                    .filter(|w| !w.is_empty())
                    .map_or(0, |w| w.value_at_quantile(p))
            };
            let (p50_us, p95_us, p99_us) = (q(0.5), q(0.95), q(0.99));
            let error_rate = if s.window_requests == 0 {
                0.0
            } else {
                s.window_errors as f64 / s.window_requests as f64
            };
            // A core reports as many slots as its config had.
            let in_flight: u64 = self
                .in_flight
                .iter()
                .map(|w| w.get(i).map_or(0, |&n| u64::from(n)))
                .sum();
            let (route, upstream) = self.slots.names(i).clone();
            upstreams.push(UpstreamState {
                live: self.slots.live(i),
                route,
                upstream,
                p50_us,
                p95_us,
                p99_us,
                window_requests: s.window_requests,
                error_rate,
                rps,
                in_flight,
                tempo_spikiness: spikiness,
                recent_us: s.recent_us,
                load_resonance: load_resonance(p95_us, error_rate, in_flight, &shape.resonance),
                fail_streak: s.fail_streak,
                checked: s.checked.unwrap_or_else(|| self.slots.initial_health(i)),
                checks: s.checks,
                totals: s.totals.clone(),
            });
        }
        self.epoch += 1;
        ResonanceTable {
            epoch: self.epoch,
            uptime,
            upstreams,
            workers: self.workers.clone(),
            limit_shares: Vec::new(),
            limit_epoch: 0,
            tls: self.tls.clone(),
        }
    }
}

/// Mean requests per second and the coefficient of variation of the
/// per-interval counts (population standard deviation over the mean).
fn tempo(counts: &VecDeque<u64>, interval: Duration) -> (f64, f64) {
    if counts.is_empty() {
        return (0.0, 0.0);
    }
    let n = counts.len() as f64;
    let mean = counts.iter().sum::<u64>() as f64 / n;
    let rps = mean / interval.as_secs_f64();
    if mean == 0.0 {
        return (rps, 0.0);
    }
    let var = counts
        .iter()
        .map(|&c| (c as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    (rps, var.sqrt() / mean)
}

#[cfg(test)]
mod tests;
