//! The rebalancing rule: how one limit's global budget is split over cores
//! for the next merge interval, from each core's smoothed demand.
//!
//! # The rule
//!
//! A limit allows `R` requests a second with a burst of `B`, for the whole
//! process. Core `i` (of `N`) reports per interval the requests it admitted
//! and refused; its demand `dᵢ` is their sum as a rate (what was offered,
//! whatever its share was), smoothed into `Dᵢ` by the
//! [`Coordinator`](super::Coordinator). With `D = Σ Dᵢ`, the next share of
//! core `i`, as a fraction of the budget, is
//!
//! ```text
//!     σ  = clamp(1 − D/R, φ, 1)          the spare part, at least φ
//!     wᵢ = σ/N + (1 − σ) · Dᵢ/D          (D = 0: wᵢ = 1/N)
//! ```
//!
//! with `φ` the total floor ([`FLOOR`], 5 % by default). In words: the part
//! of the budget that demand does not need, and never less than `φ`, is
//! split evenly; the rest follows demand. Core `i` then refills at `R·wᵢ`
//! tokens/s and holds at most `max(1, B·wᵢ)` tokens (its share of the
//! burst; a bucket needs room for one whole token). A keyed limit has no
//! aggregate rate to compare `D` with (its `R` is per key): there `σ = φ`
//! always, shares in proportion to the demand of all its keys.
//!
//! # Properties
//!
//! - (a) `Σ wᵢ = σ + (1 − σ) = 1`: the shares sum to the global rate, and
//!   the bursts to the global burst (plus at most one token a core where
//!   `B·wᵢ < 1`).
//! - (b) Every `wᵢ ≥ φ/N`, out of the budget: an idle core keeps at least
//!   `R·φ/N` tokens/s (12.5 rps of 1000 on 4 cores), so a burst landing on
//!   it is served at once, and at its demand-based share two intervals on.
//!   The price: the floors of idle cores go unspent under overload.
//! - (c) Shares follow demand: beyond the even part, `wᵢ ∝ Dᵢ`. The rule is
//!   continuous in the demands (at `D = (1 − φ)·R` both forms agree).
//!
//! # Error bounds (steady state, demand estimates exact)
//!
//! Core `i` admits `min(dᵢ, R·wᵢ)`.
//!
//! - Below the rate, `D ≤ (1 − φ)·R`: `R·wᵢ = Dᵢ + (R − D)/N`, each core
//!   gets its demand plus an even part of what is left, so everything is
//!   admitted (save what the shape of arrivals within an interval costs:
//!   a core's burst is its share of `B`), and each core has `(R − D)/N` of
//!   headroom for a burst or for connections moving to it.
//! - Above, `σ = φ`: `R·wᵢ = R·φ/N + (1 − φ)·R·Dᵢ/D` with `(1 − φ)·R/D ≤ 1`,
//!   so the demand-following part never exceeds `dᵢ` and a core can leave
//!   at most its floor `R·φ/N` unspent. Unless every core has room (and
//!   then all of `Σ dᵢ` is admitted), at least one spends its whole share.
//!   Hence, whatever the spread of connections over cores,
//!
//!   ```text
//!     min(Σ dᵢ, R·(1 − φ·(N−1)/N))  ≤  admitted rate  ≤  R
//!   ```
//!
//!   (≥ 96.25 % of `R` under overload on 4 cores, ≥ 95 % on any number).
//! - Never over: tokens are only created by refilling, at `Σ R·wᵢ = R`, so
//!   over any window `t` the cores admit at most `R·t + B + N` (the tokens
//!   held when it opened). In the proxy each core picks up a new share at
//!   its own tick, within one merge interval of the others; in that gap the
//!   sum is off by the change in shares, briefly.
//! - Moving demand: a rise is taken at once and a fall decays by `ALPHA`
//!   per interval (see the coordinator); with the trip through the control
//!   thread, the cores see a new spread two intervals after it happened
//!   (0.4 s at 200 ms). Meanwhile a core gaining demand has its floor and
//!   headroom, and cores losing it leave part of their share unspent.

/// The total floor `φ` by default: 5 % of the budget, split evenly, kept
/// by cores whatever their demand.
pub const FLOOR: f64 = 0.05;

/// One core's part of a limit's global budget, for the next interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// `wᵢ`: the fraction of the global rate (and burst) this core gets;
    /// the fractions of all cores sum to 1.
    pub fraction: f64,
}

impl Share {
    /// An even share among `cores` cores: the split before any report.
    pub fn even(cores: usize) -> Share {
        Share {
            fraction: 1.0 / cores.max(1) as f64,
        }
    }

    /// This core's rate, tokens/s, out of a global `rate`.
    pub fn rate(self, rate: f64) -> f64 {
        rate * self.fraction
    }

    /// This core's capacity out of a global `burst`: at least one token.
    pub fn burst(self, burst: f64) -> f64 {
        (burst * self.fraction).max(1.0)
    }
}

/// Splits a budget of 1 over `demand.len()` cores (see the module docs):
/// `demand[i]` is core `i`'s smoothed demand in requests/s, `rate` the
/// global rate `R` (0 when there is none to compare with, as for a keyed
/// limit: then `σ = φ`), `phi` the total floor `φ` (0…1). Demands that are
/// negative or not finite count as 0. `out` must be as long as `demand`.
pub fn split(demand: &[f64], rate: f64, phi: f64, out: &mut [f64]) {
    let n = demand.len();
    assert_eq!(n, out.len(), "one share per demand");
    let clean = |d: f64| if d.is_finite() && d > 0.0 { d } else { 0.0 };
    let total: f64 = demand.iter().map(|&d| clean(d)).sum();
    if total <= 0.0 {
        out.fill(1.0 / n.max(1) as f64);
        return;
    }
    let phi = if phi.is_finite() {
        phi.clamp(0.0, 1.0)
    } else {
        FLOOR
    };
    let spare = if rate > 0.0 && rate.is_finite() {
        (1.0 - total / rate).clamp(phi, 1.0)
    } else {
        phi
    };
    for (o, &d) in out.iter_mut().zip(demand) {
        *o = spare / n as f64 + (1.0 - spare) * clean(d) / total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shares(demand: &[f64], rate: f64, phi: f64) -> Vec<f64> {
        let mut out = vec![0.0; demand.len()];
        split(demand, rate, phi, &mut out);
        out
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    }

    #[test]
    fn no_demand_is_an_even_split() {
        assert!(close(&shares(&[0.0; 4], 1000.0, FLOOR), &[0.25; 4]));
        assert!(close(&shares(&[f64::NAN, -3.0], 10.0, 0.1), &[0.5, 0.5]));
        // Not finite counts as no demand: 1 rps of 10, σ = 0.9.
        assert!(close(
            &shares(&[f64::INFINITY, 1.0], 10.0, 0.1),
            &[0.45, 0.55]
        ));
    }

    #[test]
    fn overload_follows_demand_above_the_floor() {
        // 3000 rps offered against 1000: σ = φ = 5 %, 1.25 % each.
        let s = shares(&[2700.0, 150.0, 90.0, 60.0], 1000.0, FLOOR);
        assert!(close(&s, &[0.8675, 0.06, 0.041, 0.0315]), "{s:?}");
    }

    #[test]
    fn below_the_rate_each_core_gets_its_demand_and_an_even_part_of_the_rest() {
        // 500 of 1000: each gets its demand + 125.
        let s = shares(&[450.0, 25.0, 15.0, 10.0], 1000.0, FLOOR);
        assert!(close(&s, &[0.575, 0.15, 0.14, 0.135]), "{s:?}");
    }

    #[test]
    fn idle_cores_keep_the_floor_out_of_the_budget() {
        let s = shares(&[3000.0, 0.0, 0.0, 0.0], 1000.0, FLOOR);
        assert!(
            close(&s, &[1.0 - 3.0 * 0.0125, 0.0125, 0.0125, 0.0125]),
            "{s:?}"
        );
    }

    #[test]
    fn without_a_rate_shares_follow_demand() {
        // A keyed limit: σ = φ whatever the demand.
        assert!(close(&shares(&[30.0, 10.0], 0.0, 0.0), &[0.75, 0.25]));
        assert!(close(&shares(&[3.0, 1.0], 0.0, 0.2), &[0.7, 0.3]));
    }

    #[test]
    fn share_rate_and_burst() {
        let s = Share { fraction: 0.25 };
        assert_eq!(s.rate(1000.0), 250.0);
        assert_eq!(s.burst(100.0), 25.0);
        assert_eq!(Share { fraction: 0.001 }.burst(100.0), 1.0);
        assert_eq!(Share::even(4), s);
    }

    proptest! {
        /// (a) the shares sum to 1; (b) each is at least the floor; (c)
        /// more demand never means a smaller share; and the error bound of
        /// the module docs: admitted = Σ min(dᵢ, R·wᵢ) lies within
        /// [min(Σd, R·(1 − φ·(N−1)/N)), R].
        #[test]
        fn split_properties(demand in proptest::collection::vec(0.0f64..10_000.0, 1..64),
                            rate in 1.0f64..50_000.0, phi in 0.0f64..0.5) {
            let n = demand.len() as f64;
            let s = shares(&demand, rate, phi);
            let sum: f64 = s.iter().sum();
            prop_assert!((sum - 1.0).abs() < 1e-9, "sum {sum}");
            for (&w, &d) in s.iter().zip(&demand) {
                prop_assert!(w >= phi / n - 1e-12);
                for (&w2, &d2) in s.iter().zip(&demand) {
                    if d > d2 {
                        prop_assert!(w >= w2 - 1e-12);
                    }
                }
            }
            let offered: f64 = demand.iter().sum();
            let admitted: f64 = s.iter().zip(&demand).map(|(w, d)| d.min(rate * w)).sum();
            let low = offered.min(rate * (1.0 - phi * (n - 1.0) / n));
            prop_assert!(admitted >= low * (1.0 - 1e-9), "{admitted} < {low}");
            prop_assert!(admitted <= rate * (1.0 + 1e-9));
            if offered <= (1.0 - phi) * rate {
                prop_assert!((admitted - offered).abs() <= 1e-9 * rate, "all admitted");
            }
        }
    }
}
