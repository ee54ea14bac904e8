//! The control-thread side of rate limiting: takes each core's [`Demand`]
//! for every limit once per merge interval and hands back each core's
//! [`Share`] for the next one (the rule is in [`super::shares`]).
//!
//! ```text
//!  core i: Limiter::seal() → Demand ─┐ (with the Sense report, mpsc)
//!                                    ▼
//!  control thread: Coordinator::report(i, &[Demand; M]) … close()
//!                                    │ Vec<Vec<Share>>: [core][limit]
//!  core i: Limiter::apply(share) ◄───┘ (with the next published table)
//! ```
//!
//! Smoothing, per (limit, core), on the demand as a rate `d` (requests per
//! second over the interval): `D ← max(d, α·d + (1−α)·D)` with
//! `α = ALPHA`. A rise is taken at once (a core whose connections just
//! grew must not wait several intervals for its share), a fall decays by
//! half each interval (one quiet interval does not give a busy core's
//! share away). A core whose report arrived late sends two in the next
//! interval: they are averaged; a core with no report keeps its estimate
//! ("no news" is not "no demand") until it has been silent for `STALE`
//! intervals, when it counts as idle (a stopped worker must not keep its
//! share). Built for a fixed set of cores and limits: a new configuration
//! builds a new coordinator.

use super::shares::{split, Share, FLOOR};
use super::Demand;

/// Weight of the newest interval when demand falls.
pub const ALPHA: f64 = 0.5;

/// Intervals without a report after which a core counts as idle.
pub const STALE: u32 = 5;

/// What the coordinator knows of one limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// A route limit of this many requests a second for the process.
    Rate(f64),
    /// A keyed limit: each key has its own rate, so the aggregate demand
    /// has nothing to be compared with; shares follow it (`σ = φ`).
    PerKey,
}

/// Splits the global budget of each limit over the cores, every merge
/// interval, from the demand the cores report.
#[derive(Debug, Clone)]
pub struct Coordinator {
    cores: usize,
    /// Global rate per limit (0: per key).
    rates: Vec<f64>,
    /// Seconds per merge interval.
    interval_s: f64,
    /// Total floor `φ`.
    phi: f64,
    /// Smoothed demand, requests/s, `[limit * cores + core]`.
    smoothed: Vec<f64>,
    /// Requests reported in the open interval, same layout.
    pending: Vec<u64>,
    /// Reports received from each core in the open interval.
    reports: Vec<u32>,
    /// Intervals each core has been silent.
    silent: Vec<u32>,
    /// Scratch for one limit's shares.
    shares: Vec<f64>,
}

impl Coordinator {
    /// A coordinator for `cores` cores and one limit per entry of
    /// `budgets`, closed every `interval_us` microseconds (the merge
    /// interval), with the default floor ([`FLOOR`]).
    pub fn new(cores: usize, interval_us: u64, budgets: &[Budget]) -> Coordinator {
        let cores = cores.max(1);
        let limits = budgets.len();
        Coordinator {
            cores,
            rates: budgets
                .iter()
                .map(|b| match *b {
                    Budget::Rate(r) if r.is_finite() && r > 0.0 => r,
                    _ => 0.0,
                })
                .collect(),
            interval_s: interval_us.max(1) as f64 / 1e6,
            phi: FLOOR,
            smoothed: vec![0.0; cores * limits],
            pending: vec![0; cores * limits],
            reports: vec![0; cores],
            silent: vec![0; cores],
            shares: vec![0.0; cores],
        }
    }

    /// The same with a total floor of `phi` (0…1) of the budget, split
    /// evenly over the cores: more makes a burst on an idle core wait
    /// less, and leaves more unspent when demand sits on few cores.
    pub fn with_floor(mut self, phi: f64) -> Coordinator {
        self.phi = if phi.is_finite() {
            phi.clamp(0.0, 1.0)
        } else {
            FLOOR
        };
        self
    }

    /// The number of cores.
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Takes core `core`'s demand for each limit (`demand[l]` for limit
    /// `l`; missing limits count as none, extra ones and unknown cores
    /// are ignored).
    pub fn report(&mut self, core: usize, demand: &[Demand]) {
        if core >= self.cores {
            return;
        }
        self.reports[core] += 1;
        for (l, d) in demand.iter().take(self.rates.len()).enumerate() {
            let p = &mut self.pending[l * self.cores + core];
            *p = p.saturating_add(d.total());
        }
    }

    /// Closes the interval: folds the reports into the smoothed demand
    /// and returns every core's share of every limit, `[core][limit]`.
    pub fn close(&mut self) -> Vec<Vec<Share>> {
        for core in 0..self.cores {
            let n = self.reports[core];
            self.silent[core] = if n == 0 {
                self.silent[core].saturating_add(1)
            } else {
                0
            };
            for l in 0..self.rates.len() {
                let i = l * self.cores + core;
                let d = match n {
                    0 if self.silent[core] < STALE => continue,
                    0 => 0.0,
                    n => self.pending[i] as f64 / n as f64 / self.interval_s,
                };
                let s = &mut self.smoothed[i];
                *s = d.max(ALPHA * d + (1.0 - ALPHA) * *s);
                self.pending[i] = 0;
            }
            self.reports[core] = 0;
        }
        let mut out = vec![Vec::with_capacity(self.rates.len()); self.cores];
        for (l, &rate) in self.rates.iter().enumerate() {
            let row = &self.smoothed[l * self.cores..(l + 1) * self.cores];
            split(row, rate, self.phi, &mut self.shares);
            for (core, &fraction) in self.shares.iter().enumerate() {
                out[core].push(Share { fraction });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn d(n: u64) -> Demand {
        Demand {
            admitted: n,
            refused: 0,
        }
    }

    fn fractions(shares: &[Vec<Share>], limit: usize) -> Vec<f64> {
        shares.iter().map(|s| s[limit].fraction).collect()
    }

    fn near(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn even_before_any_report() {
        let mut c = Coordinator::new(4, 200_000, &[Budget::Rate(1000.0), Budget::PerKey]);
        let s = c.close();
        assert_eq!(s.len(), 4);
        assert_eq!(fractions(&s, 0), vec![0.25; 4]);
        assert_eq!(fractions(&s, 1), vec![0.25; 4]);
        assert_eq!(c.cores(), 4);
    }

    #[test]
    fn follows_demand_per_limit() {
        let mut c = Coordinator::new(2, SECOND, &[Budget::PerKey; 2]).with_floor(0.0);
        let mixed = Demand {
            admitted: 10,
            refused: 20,
        };
        c.report(0, &[mixed, d(0)]);
        c.report(1, &[d(10), d(5)]);
        let s = c.close();
        assert!(near(&fractions(&s, 0), &[0.75, 0.25]));
        assert!(near(&fractions(&s, 1), &[0.0, 1.0]));
    }

    #[test]
    fn compares_demand_with_the_rate() {
        // 90 and 10 requests in 200 ms: 450 and 50 rps of 1000.
        let mut c = Coordinator::new(2, 200_000, &[Budget::Rate(1000.0)]);
        c.report(0, &[d(90)]);
        c.report(1, &[d(10)]);
        // σ = 0.5: each gets its demand and half of the 500 left.
        assert!(near(&fractions(&c.close(), 0), &[0.7, 0.3]));
    }

    #[test]
    fn rises_at_once_and_falls_by_half() {
        let mut c = Coordinator::new(2, SECOND, &[Budget::PerKey]).with_floor(0.0);
        c.report(0, &[d(100)]);
        c.report(1, &[d(0)]);
        assert!(near(&fractions(&c.close(), 0), &[1.0, 0.0]));
        c.report(0, &[d(0)]);
        c.report(1, &[d(100)]);
        // D = (50, 100).
        assert!(near(&fractions(&c.close(), 0), &[1.0 / 3.0, 2.0 / 3.0]));
    }

    #[test]
    fn late_reports_are_averaged_and_silence_kept_then_dropped() {
        let mut c = Coordinator::new(2, SECOND, &[Budget::PerKey]).with_floor(0.0);
        c.report(0, &[d(100)]);
        c.report(1, &[d(100)]);
        assert!(near(&fractions(&c.close(), 0), &[0.5, 0.5]));
        // Core 1's report comes late: nothing, then two at once.
        c.report(0, &[d(100)]);
        assert!(near(&fractions(&c.close(), 0), &[0.5, 0.5]));
        c.report(0, &[d(100)]);
        c.report(1, &[d(100)]);
        c.report(1, &[d(100)]);
        assert!(near(&fractions(&c.close(), 0), &[0.5, 0.5]));
        // Core 1 stops: it keeps its estimate for STALE - 1 intervals…
        for _ in 1..STALE {
            c.report(0, &[d(100)]);
            assert!(near(&fractions(&c.close(), 0), &[0.5, 0.5]));
        }
        // …then counts as idle.
        c.report(0, &[d(100)]);
        assert!(near(&fractions(&c.close(), 0), &[2.0 / 3.0, 1.0 / 3.0]));
    }

    #[test]
    fn floor_and_unknown_input() {
        let mut c = Coordinator::new(4, SECOND, &[Budget::PerKey]);
        c.report(0, &[d(1000)]);
        c.report(9, &[d(1000)]);
        c.report(1, &[]);
        let f = FLOOR / 4.0;
        assert!(near(&fractions(&c.close(), 0), &[1.0 - 3.0 * f, f, f, f]));
    }
}
