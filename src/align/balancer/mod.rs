//! Per-core balancers: each worker owns one per route, in plain `Cell`s,
//! so picking touches no memory shared with other cores. What the other
//! cores know arrives once per merge interval, when the worker copies the
//! route's rows of the resonance table in (`observe`).
//!
//! ```text
//!  pick(ask) ─► usable set: not avoided (tried), not ejected, not down
//!               (fewer than panic_threshold % usable → all of them)
//!           ─► the policy chooses among the usable
//!           ─► slow start: a ramping upstream is kept with probability
//!              = its ramp, else one re-pick
//!  started(i) … done(i, latency, verdict): in-flight, peak EWMA, outlier
//!  ejection (consecutive failures, 429 Retry-After)
//! ```

mod hash;
mod local;
mod resonant;
#[cfg(test)]
mod tests;

use std::cell::Cell;

pub use hash::key_hash;
use local::Local;
use resonant::Gaps;

use crate::memory::{Config, Outlier, Policy, Route};
use crate::sense::table::{Health, UpstreamState};

/// What a request brings to a pick.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask {
    /// The request's intent, as an index into `Config::intents`.
    pub intent: Option<usize>,
    /// The hashed `consistent_hash` key, when the request has one.
    pub key: Option<u64>,
    /// Upstreams not to pick (already tried), as bits of the first 64.
    pub avoid: u64,
    /// Now, in microseconds on the worker's clock.
    pub now_us: u64,
}

/// How a request to an upstream ended, as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A response that says nothing against the upstream.
    Ok,
    /// A 5xx or a gateway failure (connect, timeout, reset, bad response).
    Failed,
    /// 429, with the `Retry-After` delay if the upstream gave one.
    Throttled(Option<u64>),
    /// The client went away: no evidence either way.
    Unknown,
}

/// What the balancer learns from the resonance table, per upstream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// p95 latency over the window, µs.
    pub p95_us: f64,
    /// Requests in the window (0: the p95 means nothing).
    pub samples: u64,
    /// Recent mean latency, µs (0: none yet).
    pub recent_us: f64,
    /// Error rate over the window.
    pub error_rate: f64,
    /// Requests in flight, all cores together, at the merge.
    pub in_flight: f64,
    /// Coefficient of variation of req/s.
    pub tempo_spikiness: f64,
    /// Down by an active health check.
    pub down: bool,
}

impl Seen {
    /// The latency the resonant cost uses: the recent mean, else the
    /// window's p95 (0: nothing known).
    pub fn latency_us(&self) -> f64 {
        if self.recent_us > 0.0 {
            self.recent_us
        } else if self.samples > 0 {
            self.p95_us
        } else {
            0.0
        }
    }

    /// The balancer's view of a table row.
    pub fn of(state: &UpstreamState) -> Seen {
        Seen {
            p95_us: state.p95_us as f64,
            samples: state.window_requests,
            recent_us: state.recent_us,
            error_rate: state.error_rate,
            in_flight: state.in_flight as f64,
            tempo_spikiness: state.tempo_spikiness,
            down: state.checked == Health::Down,
        }
    }
}

/// A route's balancer on one core.
#[derive(Debug)]
pub struct Balancer {
    policy: Policy,
    ups: Box<[Local]>,
    /// Weights (all 1 where the policy ignores them).
    weights: Box<[u32]>,
    /// Round robin's next index.
    next: Cell<usize>,
    /// Consistent hashing's ring.
    ring: Option<hash::Ring>,
    bounded_load: Option<f64>,
    /// The resonant policy's intent gaps and weights.
    gaps: Gaps,
    weights_resonant: crate::memory::ResonantWeights,
    /// Peak EWMA: time constant and failure penalty, in µs.
    decay_us: f64,
    penalty_us: f64,
    /// The route's mean cost at the last merge (see `resonant`).
    cost_ref: Cell<f64>,
    /// Cores: one core's change in flight stands for every core's.
    workers: f64,
    outlier: Outlier,
    slow_start_us: u64,
    panic_threshold: u32,
    /// Whether the last pick was made in panic mode.
    panicked: Cell<bool>,
    /// Until when some upstream may be ejected (µs), and how many are down
    /// by active check: when neither, picks skip the health scan.
    out_until: Cell<u64>,
    downs: Cell<usize>,
    rng: Cell<u64>,
}

impl Balancer {
    /// A fresh balancer for route `index` of `config`, on worker `worker`.
    pub fn new(config: &Config, index: usize, worker: usize) -> Balancer {
        Balancer::for_route(config, &config.routes[index], index, worker)
    }

    /// A fresh balancer for `route` (which need not be in `config`: the
    /// simulator builds its own), seeded by `(index, worker)`.
    pub fn for_route(config: &Config, route: &Route, index: usize, worker: usize) -> Balancer {
        let b = &route.balancing;
        let weights: Box<[u32]> = route
            .upstreams
            .iter()
            .map(|u| {
                if route.policy.uses_weights() {
                    u.weight
                } else {
                    1
                }
            })
            .collect();
        let ring = (route.policy == Policy::ConsistentHash).then(|| hash::Ring::new(route));
        Balancer {
            policy: route.policy,
            ups: route
                .upstreams
                .iter()
                .map(|u| {
                    let name = format!("{}\0{}", route.name, u.name);
                    Local::new(crate::hex::hex16(key_hash(name.as_bytes())))
                })
                .collect(),
            next: Cell::new(0),
            ring,
            bounded_load: b.bounded_load,
            gaps: Gaps::new(config, route),
            weights_resonant: b.resonant,
            decay_us: config.policies.peak_ewma.decay.as_micros() as f64,
            penalty_us: config.policies.peak_ewma.failure_penalty.as_micros() as f64,
            cost_ref: Cell::new(1.0),
            workers: config.server.workers.max(1) as f64,
            outlier: b.outlier,
            slow_start_us: b.slow_start.map_or(0, |d| d.as_micros() as u64),
            panic_threshold: b.panic_threshold,
            panicked: Cell::new(false),
            out_until: Cell::new(0),
            downs: Cell::new(0),
            rng: Cell::new(
                0x9e37_79b9_7f4a_7c15 ^ ((index as u64) << 32) ^ (worker as u64).wrapping_add(1),
            ),
            weights,
        }
    }

    /// The index of the upstream for this request.
    pub fn pick(&self, ask: &Ask) -> usize {
        let n = self.ups.len();
        if n == 1 {
            return 0;
        }
        let now = ask.now_us;
        let healthy = |i: usize| !avoided(ask.avoid, i) && self.ups[i].healthy(now);
        // The common case: nothing tried, ejected or down.
        let all_well = ask.avoid == 0 && now >= self.out_until.get() && self.downs.get() == 0;
        let usable = if all_well {
            n
        } else {
            (0..n).filter(|&i| healthy(i)).count()
        };
        // Panic mode: too few healthy upstreams, so health is ignored (but
        // tried ones are still avoided while others remain).
        let panic = usable == 0 || usable * 100 < self.panic_threshold as usize * n;
        self.panicked.set(panic);
        let pick = if all_well {
            self.choose(ask, &|_| true)
        } else if panic {
            let untried = (0..n).any(|i| !avoided(ask.avoid, i));
            self.choose(ask, &|i| !untried || !avoided(ask.avoid, i))
        } else {
            self.choose(ask, &healthy)
        };
        // Slow start: a ramping upstream keeps the pick with probability
        // equal to its ramp; otherwise one more pick without it.
        if self.slow_start_us > 0 {
            let ramp = self.ups[pick].ramp(now, self.slow_start_us);
            if ramp < 1.0 && self.unit() >= ramp {
                let other = Ask {
                    avoid: ask.avoid | bit(pick),
                    ..*ask
                };
                if (0..n).any(|i| !avoided(other.avoid, i) && self.ups[i].healthy(now)) {
                    return self.choose(&other, &|i| {
                        !avoided(other.avoid, i) && self.ups[i].healthy(now)
                    });
                }
            }
        }
        pick
    }

    fn choose(&self, ask: &Ask, ok: &dyn Fn(usize) -> bool) -> usize {
        match self.policy {
            Policy::RoundRobin => self.round_robin(ok),
            Policy::Weighted => self.smooth_weighted(ok),
            Policy::Random => self.random(ok),
            Policy::LeastRequest => self.two_choices(ok, |i| f64::from(self.ups[i].in_flight())),
            Policy::PeakEwma => self.two_choices(ok, |i| {
                let u = &self.ups[i];
                u.ewma(ask.now_us, self.decay_us) * f64::from(u.in_flight() + 1)
            }),
            Policy::ConsistentHash => match (ask.key, &self.ring) {
                (Some(key), Some(ring)) => ring.find(key, ok, self.bound()),
                _ => self.random(ok),
            },
            Policy::Resonant => self.resonant(ask, ok),
        }
    }

    /// The request went to upstream `i`.
    pub fn started(&self, i: usize) {
        self.ups[i].start();
    }

    /// The request to upstream `i` ended after `latency_us` (0 when not
    /// timed), at `now_us`.
    pub fn done(&self, i: usize, latency_us: u64, verdict: Verdict, now_us: u64) {
        let u = &self.ups[i];
        u.end();
        if self.policy == Policy::PeakEwma && verdict != Verdict::Unknown {
            let rtt = match verdict {
                Verdict::Ok => latency_us as f64,
                _ => (latency_us as f64).max(self.penalty_us),
            };
            u.observe_rtt(rtt, now_us, self.decay_us);
        }
        if !self.outlier.enabled {
            return;
        }
        let eject_for = match verdict {
            Verdict::Ok => {
                u.succeeded(now_us, self.outlier.max_ejection_time.as_micros() as u64);
                None
            }
            Verdict::Unknown => None,
            Verdict::Throttled(Some(after_us)) => Some((after_us, false)),
            Verdict::Failed | Verdict::Throttled(None) => {
                (u.failed() >= self.outlier.consecutive_failures).then(|| {
                    let n = u64::from(u.ejections() + 1);
                    let base = self.outlier.base_ejection_time.as_micros() as u64;
                    (base.saturating_mul(n), true)
                })
            }
        };
        if let Some((us, counted)) = eject_for {
            let max = self.outlier.max_ejection_time.as_micros() as u64;
            let ejected = self.ups.iter().filter(|u| u.ejected(now_us)).count();
            // At most max_ejection_percent of the route (at least one when
            // it is above zero), and never every upstream.
            let pct = self.outlier.max_ejection_percent as usize;
            let n = self.ups.len();
            let allowed = match n * pct / 100 {
                0 if pct > 0 => 1,
                a => a,
            }
            .min(n - 1);
            if u.ejected(now_us) || ejected < allowed {
                let until = now_us + us.min(max);
                u.eject(until, counted);
                self.out_until.set(self.out_until.get().max(until));
            }
        }
    }

    /// Copies in what a new table says, `seen(i)` for upstream `i`, at
    /// `now_us`, and the route's references for the resonant score.
    pub fn observe(&self, now_us: u64, seen: impl Fn(usize) -> Seen) {
        let rows: Vec<Seen> = (0..self.ups.len()).map(seen).collect();
        // An upstream with no latency yet counts as the route's average.
        let known: Vec<f64> = rows
            .iter()
            .map(Seen::latency_us)
            .filter(|&l| l > 0.0)
            .collect();
        let mean = known.iter().sum::<f64>() / known.len().max(1) as f64;
        let latency = |s: &Seen| match s.latency_us() {
            l if l > 0.0 => l,
            _ => mean.max(1.0),
        };
        let cost = rows
            .iter()
            .map(|s| latency(s) * (s.in_flight + 1.0))
            .sum::<f64>();
        self.cost_ref
            .set((cost / rows.len().max(1) as f64).max(1.0));
        self.downs.set(rows.iter().filter(|s| s.down).count());
        for (u, s) in self.ups.iter().zip(rows) {
            u.observe(s, latency(&s), now_us);
        }
    }

    /// Whether upstream `i` is ejected at `now_us` (for tests and metrics).
    pub fn is_ejected(&self, i: usize, now_us: u64) -> bool {
        self.ups[i].ejected(now_us)
    }

    /// Whether upstream `i` may take `ask` now: not tried, ejected or down.
    pub fn usable(&self, i: usize, ask: &Ask) -> bool {
        i < self.ups.len() && !avoided(ask.avoid, i) && self.ups[i].healthy(ask.now_us)
    }

    /// The opaque sticky-cookie value naming upstream `i`: 16 hex digits
    /// of a hash of the route's and the upstream's names (stable across
    /// restarts and cores, and revealing neither).
    pub fn sticky_token(&self, i: usize) -> &[u8; 16] {
        &self.ups[i].token
    }

    /// The upstream a sticky cookie's value names, if any.
    pub fn sticky_find(&self, value: &[u8]) -> Option<usize> {
        self.ups.iter().position(|u| u.token == value)
    }

    /// Whether the last pick ignored health (panic mode).
    pub fn panicked(&self) -> bool {
        self.panicked.get()
    }

    fn round_robin(&self, ok: &dyn Fn(usize) -> bool) -> usize {
        let n = self.ups.len();
        for _ in 0..n {
            let i = self.next.get();
            self.next.set(if i + 1 >= n { 0 } else { i + 1 });
            if ok(i) {
                return i;
            }
        }
        self.next.get()
    }

    /// Smooth weighted round robin over the usable upstreams: each pick
    /// adds every usable weight to its running score, takes the highest
    /// and subtracts the usable total from the winner.
    fn smooth_weighted(&self, ok: &dyn Fn(usize) -> bool) -> usize {
        let mut best = None;
        let mut best_score = i64::MIN;
        let mut total = 0i64;
        for (i, (u, &w)) in self.ups.iter().zip(self.weights.iter()).enumerate() {
            if !ok(i) {
                continue;
            }
            let score = u.current.get() + i64::from(w);
            u.current.set(score);
            total += i64::from(w);
            if score > best_score {
                best = Some(i);
                best_score = score;
            }
        }
        let best = best.unwrap_or(0);
        self.ups[best].current.set(best_score - total);
        best
    }

    /// In proportion to the weights, among the usable.
    fn random(&self, ok: &dyn Fn(usize) -> bool) -> usize {
        let total: u64 = (0..self.ups.len())
            .filter(|&i| ok(i))
            .map(|i| u64::from(self.weights[i]))
            .sum();
        let mut r = self.below(total.max(1));
        for i in (0..self.ups.len()).filter(|&i| ok(i)) {
            let w = u64::from(self.weights[i]);
            if r < w {
                return i;
            }
            r -= w;
        }
        0
    }

    /// Power of two choices: two distinct random usable upstreams, the one
    /// with the lower cost wins (ties: the first drawn).
    fn two_choices(&self, ok: &dyn Fn(usize) -> bool, cost: impl Fn(usize) -> f64) -> usize {
        let a = self.random_usable(ok, usize::MAX);
        let b = self.random_usable(ok, a);
        if b == a || cost(a) <= cost(b) {
            a
        } else {
            b
        }
    }

    /// A uniformly random usable upstream other than `not` (or `not` when
    /// it is the only one).
    fn random_usable(&self, ok: &dyn Fn(usize) -> bool, not: usize) -> usize {
        let n = self.ups.len();
        for _ in 0..8 {
            let i = self.below(n as u64) as usize;
            if i != not && ok(i) {
                return i;
            }
        }
        // Few usable: walk from a random start.
        let start = self.below(n as u64) as usize;
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| i != not && ok(i))
            .unwrap_or(if not < n { not } else { start })
    }

    /// Per-core in-flight bound of consistent hashing with bounded load.
    fn bound(&self) -> Option<(u32, &[Local])> {
        self.bounded_load.map(|f| {
            let total: u32 = self.ups.iter().map(Local::in_flight).sum();
            let cap = (f * f64::from(total + 1) / self.ups.len() as f64).ceil() as u32;
            (cap.max(1), &self.ups[..])
        })
    }

    /// xorshift64*: a few instructions, per core, no shared state.
    fn next_u64(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; bias below 2^-32 for
    /// the sizes here).
    fn below(&self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in [0, 1).
    fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn bit(i: usize) -> u64 {
    if i < 64 {
        1 << i
    } else {
        0
    }
}

fn avoided(mask: u64, i: usize) -> bool {
    mask & bit(i) != 0
}
