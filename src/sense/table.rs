//! The resonance table: an immutable picture of every (route, upstream)
//! built by the control thread each merge interval and published with an
//! epoch; and `load_resonance`, the one number the balancer reads first.

use std::sync::Arc;
use std::time::Duration;

use super::record::Counters;
use super::slots::Slots;

/// An upstream's state as active health checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Its route has no `health_check`.
    Unchecked,
    /// Checks pass (or have not failed enough yet).
    Up,
    /// Checks failed `unhealthy_threshold` times in a row.
    Down,
}

/// Active health check results of one upstream since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckCounts {
    /// Probes that got an expected status in time.
    pub success: u64,
    /// Probes that did not.
    pub failure: u64,
}

/// The reference points that bring each term of `load_resonance` to [0, 1].
#[derive(Debug, Clone, Copy)]
pub struct Resonance {
    /// The p95 at which the latency term is one half.
    pub latency_ref: Duration,
    /// The in-flight count at which the queue term is one half.
    pub queue_ref: u32,
}

/// Weights of the latency, error and queue terms (they sum to 1).
pub const LOAD_WEIGHTS: (f64, f64, f64) = (0.4, 0.4, 0.2);

/// How loaded an upstream looks, in [0, 1] (0: idle and healthy):
///
/// ```text
/// load_resonance = 0.4 × p95 / (p95 + latency_ref)
///                + 0.4 × error_rate
///                + 0.2 × in_flight / (in_flight + queue_ref)
/// ```
///
/// Each term is in [0, 1]: the latency and queue terms grow smoothly and
/// reach one half at their reference point (no cliff at an arbitrary
/// maximum, and still ordered far beyond it); the error rate already is a
/// share. Errors weigh as much as latency so that an upstream failing fast
/// does not look attractive.
pub fn load_resonance(p95_us: u64, error_rate: f64, in_flight: u64, r: &Resonance) -> f64 {
    let lat_ref = r.latency_ref.as_micros().max(1) as f64;
    let p95 = p95_us as f64;
    let latency = p95 / (p95 + lat_ref);
    let q = in_flight as f64;
    let queue = q / (q + f64::from(r.queue_ref.max(1)));
    let (wl, we, wq) = LOAD_WEIGHTS;
    (wl * latency + we * error_rate.clamp(0.0, 1.0) + wq * queue).clamp(0.0, 1.0)
}

/// One (route, upstream) in the table.
#[derive(Debug, Clone)]
pub struct UpstreamState {
    /// Whether the current config names it (rows of upstreams removed by a
    /// reload stay, not live, so that slot numbers keep their meaning).
    pub live: bool,
    /// Route name (`-` for requests that reached no upstream).
    pub route: Arc<str>,
    /// Upstream name (`-` likewise).
    pub upstream: Arc<str>,
    /// Latency quantiles over the sliding window, in microseconds.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Requests in the window.
    pub window_requests: u64,
    /// Share of the window's requests that failed (5xx or gateway failure).
    pub error_rate: f64,
    /// Requests per second over the recent tempo intervals.
    pub rps: f64,
    /// Requests in flight now, summed over cores.
    pub in_flight: u64,
    /// Coefficient of variation of the per-interval request rate over the
    /// recent tempo intervals (0 for a steady or idle upstream).
    pub tempo_spikiness: f64,
    /// Mean latency of recent requests (µs): the per-interval means
    /// averaged with a 500 ms time constant (`merge::RECENT`); 0 before
    /// the first. Fresher than the window's quantiles, for balancing.
    pub recent_us: f64,
    /// See [`load_resonance`].
    pub load_resonance: f64,
    /// Gateway failures in a row with no response in between: the upstream
    /// is considered down from `DOWN_AFTER` on.
    pub fail_streak: u32,
    /// The verdict of active health checks.
    pub checked: Health,
    /// Active health check results since start.
    pub checks: CheckCounts,
    /// Everything since start.
    pub totals: Counters,
}

/// Gateway failures in a row after which an upstream counts as down.
pub const DOWN_AFTER: u32 = 3;

impl UpstreamState {
    /// Whether the upstream is considered down: by its last gateway
    /// attempts (passive), or by active health checks.
    pub fn is_down(&self) -> bool {
        self.fail_streak >= DOWN_AFTER || self.checked == Health::Down
    }
}

/// One worker's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerState {
    /// Requests finished since start.
    pub requests: u64,
    /// Client connections open.
    pub connections: u64,
    /// WebSocket tunnels open.
    pub tunnels: u64,
    /// Bytes relayed through tunnels since start, both ways.
    pub tunnel_bytes: u64,
}

/// An immutable, published picture of the traffic.
#[derive(Debug, Clone)]
pub struct ResonanceTable {
    /// Strictly increases with every publication.
    pub epoch: u64,
    /// Time since the proxy started.
    pub uptime: Duration,
    /// Per slot number (see `Slots`): the local slot first, then every
    /// (route, upstream) configured since start, live or not.
    pub upstreams: Vec<UpstreamState>,
    /// Per worker.
    pub workers: Vec<WorkerState>,
    /// Each core's share of each rate limit for the next interval,
    /// `[worker][RateSpec::index]` (empty when the config has none).
    pub limit_shares: Vec<Vec<crate::flow::ratelimit::Share>>,
    /// The epoch of the config whose rate limits `limit_shares` are for.
    pub limit_epoch: u64,
    /// TLS handshakes since start, per listener address.
    pub tls: super::tls::TlsTable,
}

impl ResonanceTable {
    /// The table before the first merge: epoch 0, all zeros.
    pub fn empty(slots: &Slots, workers: usize) -> ResonanceTable {
        let upstreams = (0..slots.len())
            .map(|i| {
                let (route, upstream) = slots.names(i).clone();
                UpstreamState {
                    live: slots.live(i),
                    route,
                    upstream,
                    p50_us: 0,
                    p95_us: 0,
                    p99_us: 0,
                    window_requests: 0,
                    error_rate: 0.0,
                    rps: 0.0,
                    in_flight: 0,
                    tempo_spikiness: 0.0,
                    recent_us: 0.0,
                    load_resonance: 0.0,
                    fail_streak: 0,
                    checked: slots.initial_health(i),
                    checks: CheckCounts::default(),
                    totals: Counters::default(),
                }
            })
            .collect();
        ResonanceTable {
            epoch: 0,
            uptime: Duration::ZERO,
            upstreams,
            workers: vec![WorkerState::default(); workers],
            limit_shares: Vec::new(),
            limit_epoch: 0,
            tls: Default::default(),
        }
    }

    /// The state of a route's upstream, by names (live rows only).
    pub fn get(&self, route: &str, upstream: &str) -> Option<&UpstreamState> {
        self.serving()
            .find(|u| &*u.route == route && &*u.upstream == upstream)
    }

    /// The rows of the upstreams the current config names (not the local
    /// slot, not upstreams removed by a reload).
    pub fn serving(&self) -> impl Iterator<Item = &UpstreamState> {
        self.upstreams.iter().skip(1).filter(|u| u.live)
    }

    /// The live rows, the local slot first.
    pub fn live(&self) -> impl Iterator<Item = &UpstreamState> {
        self.upstreams.iter().filter(|u| u.live)
    }

    /// Client connections open, all workers together.
    pub fn connections(&self) -> u64 {
        self.workers.iter().map(|w| w.connections).sum()
    }

    /// WebSocket tunnels open, all workers together.
    pub fn tunnels(&self) -> u64 {
        self.workers.iter().map(|w| w.tunnels).sum()
    }

    /// Bytes relayed through tunnels since start, all workers together.
    pub fn tunnel_bytes(&self) -> u64 {
        self.workers.iter().map(|w| w.tunnel_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Resonance = Resonance {
        latency_ref: Duration::from_millis(100),
        queue_ref: 32,
    };

    #[test]
    fn terms_are_normalised() {
        assert_eq!(load_resonance(0, 0.0, 0, &R), 0.0);
        let half_latency = load_resonance(100_000, 0.0, 0, &R);
        assert!((half_latency - 0.2).abs() < 1e-9, "{half_latency}");
        let half_queue = load_resonance(0, 0.0, 32, &R);
        assert!((half_queue - 0.1).abs() < 1e-9);
        assert!((load_resonance(0, 1.0, 0, &R) - 0.4).abs() < 1e-9);
        let worst = load_resonance(u64::MAX / 2, 1.0, u64::MAX / 2, &R);
        assert!(worst <= 1.0 && worst > 0.99);
        assert!(load_resonance(0, 7.0, 0, &R) <= 1.0);
    }

    #[test]
    fn slower_means_higher() {
        let a = load_resonance(2_000, 0.0, 4, &R);
        let b = load_resonance(50_000, 0.0, 4, &R);
        let c = load_resonance(50_000, 0.1, 4, &R);
        assert!(a < b && b < c);
    }
}
