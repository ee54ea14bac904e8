//! The resonant policy. Per pick, `candidates` (k, default 2) distinct
//! usable upstreams are drawn at random and the lowest score wins:
//!
//! ```text
//! score = w_load   × load
//!       + w_intent × intent_gap(request intent, upstream intents)
//!       + w_tempo  × tempo_spikiness
//! load  = 0.4 × p95 / (p95 + latency_ref)            ┐ from the table
//!       + 0.4 × error_rate                           ┘ (one merge old)
//!       + 0.2 × q / (q + queue_ref),
//!   q   = in flight at the merge (all cores)
//!       + workers × (this core's in flight now − at the merge)
//! ```
//!
//! `load` is Sense's `load_resonance` with its queue term brought up to
//! date: the table is up to one merge interval old, so each core adds
//! what it has sent since (scaled by the number of cores, which are
//! assumed to do alike). Drawing k random candidates instead of taking
//! the global minimum keeps cores that read the same table from all
//! herding onto the same upstream until the next merge.
//!
//! intent_gap is 0 when the request has no intent or the upstream serves
//! it, the `[policies.resonant.related]` value for a related pair, 0.5 for
//! an upstream that declares no intents, and 1 otherwise.

use super::{Ask, Balancer};
use crate::memory::{Config, Route};
use crate::sense::table::LOAD_WEIGHTS;

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
        let (wl, we, wq) = LOAD_WEIGHTS;
        let load = wl * seen.latency
            + we * seen.error_rate.clamp(0.0, 1.0)
            + wq * q / (q + self.queue_ref);
        let w = &self.weights_resonant;
        w.w_load * load
            + w.w_intent * self.gaps.get(ask.intent, i)
            + w.w_tempo * seen.tempo_spikiness
    }

    pub(super) fn resonant(&self, ask: &Ask, ok: &dyn Fn(usize) -> bool) -> usize {
        let k = self.weights_resonant.candidates.min(self.ups.len());
        let mut best = self.random_usable(ok, usize::MAX);
        let mut best_score = self.resonant_score(best, ask);
        let mut drawn = super::bit(best);
        for _ in 1..k {
            let c = self.random_usable(&|i| ok(i) && drawn & super::bit(i) == 0, usize::MAX);
            if drawn & super::bit(c) != 0 {
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
