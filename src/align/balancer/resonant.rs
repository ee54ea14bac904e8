//! The resonant policy. Per pick, `candidates` (k, default 2) distinct
//! usable upstreams are drawn at random and the lowest score wins:
//!
//! ```text
//! score = w_load   × load
//!       + w_intent × intent_gap(request intent, upstream intents)
//!       + w_tempo  × tempo_spikiness / (1 + tempo_spikiness)
//! load  = latency × (q + 1) / route mean of latency × (q_merge + 1)
//!       + 2 × error_rate
//!   latency = the table's recent mean latency (500 ms moving average of
//!             each merge interval's mean; the window's p95 before that;
//!             the route's average for an upstream never measured)
//!   q       = in flight at the merge (all cores)
//!           + workers × (this core's in flight now − at the merge)
//! ```
//!
//! `load` is an expected completion time (latency × queue, as in peak
//! EWMA) relative to the route's average: 1 is average, 2 twice as slow
//! to answer. It is not bounded, so an overloaded upstream loses to any
//! intent or tempo preference once it is far enough above the others; a
//! failing upstream pays 2 per unit of error rate, so failing fast does
//! not look attractive. The queue is brought up to date on each core: the
//! table is up to one merge interval old, so each core adds what it has
//! sent since, scaled by the number of cores (assumed to do alike).
//! Drawing k random candidates instead of taking the global minimum keeps
//! cores that read the same table from all herding onto one upstream
//! until the next merge. When the request has an intent, the first
//! candidate is drawn among the upstreams that serve it (if any is
//! usable), the others among all.
//!
//! This is not Sense's `load_resonance` (bounded in [0, 1] against fixed
//! references, for dashboards): with fixed references the latency and
//! queue terms flatten out exactly when upstreams are most unequal, and
//! the simulator (`sim/`) showed the pick losing to least_request there.
//!
//! intent_gap is 0 when the request has no intent or the upstream serves
//! it, the `[policies.resonant.related]` value for a related pair, 0.5 for
//! an upstream that declares no intents, and 1 otherwise.

use super::{Ask, Balancer};
use crate::memory::{Config, Route};

/// Intent gaps of one route: `[intent index][upstream index]`.
#[derive(Debug, Default)]
pub(super) struct Gaps {
    upstreams: usize,
    gaps: Box<[f32]>,
}

impl Gaps {
    pub(super) fn new(config: &Config, route: &Route) -> Gaps {
        let n = route.upstreams.len();
        let mut gaps = Vec::with_capacity(config.intents.len() * n);
        for intent in &config.intents {
            for u in &route.upstreams {
                gaps.push(gap(config, intent, &u.intents) as f32);
            }
        }
        Gaps {
            upstreams: n,
            gaps: gaps.into(),
        }
    }

    fn get(&self, intent: Option<usize>, upstream: usize) -> f64 {
        intent.map_or(0.0, |k| {
            f64::from(
                self.gaps
                    .get(k * self.upstreams + upstream)
                    .copied()
                    .unwrap_or(0.0),
            )
        })
    }
}

/// The gap between a request's intent and an upstream's intents.
fn gap(config: &Config, intent: &str, serves: &[String]) -> f64 {
    if serves.is_empty() {
        return 0.5;
    }
    if serves.iter().any(|s| s == intent) {
        return 0.0;
    }
    config
        .policies
        .related
        .iter()
        .filter(|(from, to, _)| from == intent && serves.contains(to))
        .map(|&(_, _, g)| g)
        .fold(1.0, f64::min)
}

impl Balancer {
    /// The resonant score of upstream `i` for `ask`.
    pub fn resonant_score(&self, i: usize, ask: &Ask) -> f64 {
        let u = &self.ups[i];
        let seen = u.seen();
        let q = (seen.in_flight + self.workers * u.in_flight_delta()).max(0.0);
        // Before the first table every latency is the same (1 µs): the
        // pick goes by queue alone, as least_request.
        let load = u.latency().max(1.0) * (q + 1.0) / self.cost_ref.get()
            + 2.0 * seen.error_rate.clamp(0.0, 1.0);
        let tempo = seen.tempo_spikiness / (1.0 + seen.tempo_spikiness);
        let w = &self.weights_resonant;
        w.w_load * load + w.w_intent * self.gaps.get(ask.intent, i) + w.w_tempo * tempo
    }

    pub(super) fn resonant(&self, ask: &Ask, ok: &dyn Fn(usize) -> bool) -> usize {
        let k = self.weights_resonant.candidates.min(self.ups.len());
        // The first candidate serves the request's intent when one can:
        // with half the upstreams unsuited, two blind draws would both be
        // unsuited a quarter of the time.
        let suited = |i: usize| ok(i) && self.gaps.get(ask.intent, i) == 0.0;
        let mut best = match ask.intent {
            Some(_) => self.random_usable(&suited, usize::MAX),
            None => usize::MAX,
        };
        if best >= self.ups.len() || !suited(best) {
            best = self.random_usable(ok, usize::MAX);
        }
        let mut best_score = self.resonant_score(best, ask);
        let mut drawn = super::bit(best);
        for _ in 1..k {
            let c = self.random_usable(&|i| ok(i) && drawn & super::bit(i) == 0, usize::MAX);
            if drawn & super::bit(c) != 0 || !ok(c) {
                break; // no other usable upstream
            }
            drawn |= super::bit(c);
            let s = self.resonant_score(c, ask);
            if s < best_score {
                best = c;
                best_score = s;
            }
        }
        best
    }
}
