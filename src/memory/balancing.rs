//! Validated balancing settings: `[policies]` (shared defaults) and each
//! route's policy options, outlier detection, slow start and panic mode.

use std::time::Duration;

/// Load-balancing policy of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Each upstream in turn.
    RoundRobin,
    /// Smooth weighted round robin (as nginx's).
    Weighted,
    /// Uniformly random, in proportion to the weights.
    Random,
    /// Power of two choices on requests in flight.
    LeastRequest,
    /// Power of two choices on peak-EWMA latency × (in flight + 1).
    PeakEwma,
    /// A ring hashed on a request key, optionally with bounded load.
    ConsistentHash,
    /// Power of k choices on the resonant score (see `align::balancer::resonant`).
    Resonant,
}

impl Policy {
    /// Every policy, by its config name.
    pub const ALL: [(&'static str, Policy); 7] = [
        ("round_robin", Policy::RoundRobin),
        ("weighted", Policy::Weighted),
        ("random", Policy::Random),
        ("least_request", Policy::LeastRequest),
        ("peak_ewma", Policy::PeakEwma),
        ("consistent_hash", Policy::ConsistentHash),
        ("resonant", Policy::Resonant),
    ];

    /// Whether upstream weights mean something to this policy.
    pub fn uses_weights(self) -> bool {
        matches!(
            self,
            Policy::Weighted | Policy::Random | Policy::ConsistentHash
        )
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = Policy::ALL
            .iter()
            .find(|(_, p)| p == self)
            .map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

/// What `consistent_hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// A request header's value (name in lower case).
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The client's IP address.
    ClientIp,
}

/// The resonant score's weights and choice size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResonantWeights {
    /// Weight of `load_resonance`.
    pub w_load: f64,
    /// Weight of the intent gap.
    pub w_intent: f64,
    /// Weight of `tempo_spikiness`.
    pub w_tempo: f64,
    /// Random candidates compared per pick (default 3; 2: power of two
    /// choices).
    pub candidates: usize,
}

impl Default for ResonantWeights {
    fn default() -> ResonantWeights {
        ResonantWeights {
            w_load: 0.6,
            w_intent: 0.3,
            w_tempo: 0.1,
            candidates: 3,
        }
    }
}

/// `[policies]`: defaults shared by every route.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// `[policies.resonant]` weights (a route may override them).
    pub resonant: ResonantWeights,
    /// `[policies.resonant.related]`: intent gap between a request's intent
    /// and an upstream's, for pairs that are neither equal nor unrelated.
    pub related: Vec<(String, String, f64)>,
    /// `[policies.peak_ewma]`.
    pub peak_ewma: PeakEwma,
}

/// `[policies.peak_ewma]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeakEwma {
    /// Time constant of the moving average.
    pub decay: Duration,
    /// Latency charged for a failed request, so that fast failures do not
    /// look attractive.
    pub failure_penalty: Duration,
}

impl Default for PeakEwma {
    fn default() -> PeakEwma {
        PeakEwma {
            decay: Duration::from_secs(10),
            failure_penalty: Duration::from_secs(1),
        }
    }
}

/// `[routes.rule.outlier_detection]`: passive ejection, per core.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outlier {
    /// Off: nothing is ejected.
    pub enabled: bool,
    /// Consecutive 5xx or gateway failures that eject an upstream.
    pub consecutive_failures: u32,
    /// Ejection time for the first ejection; the n-th lasts n times this.
    pub base_ejection_time: Duration,
    /// Longest ejection.
    pub max_ejection_time: Duration,
    /// At most this share of the route's upstreams is ejected at once.
    pub max_ejection_percent: u32,
}

impl Default for Outlier {
    fn default() -> Outlier {
        Outlier {
            enabled: true,
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// `[routes.rule.sticky]`: a client is pinned to the upstream that first
/// served it, by a cookie DAO sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    /// The cookie's name.
    pub cookie: String,
    /// Its `Max-Age`; `None`: a session cookie.
    pub max_age: Option<Duration>,
    /// Its `Path`.
    pub path: String,
}

/// A route's balancing settings beyond the policy name.
#[derive(Debug, Clone, Default)]
pub struct Balancing {
    /// The key of `consistent_hash`.
    pub hash_on: Option<HashOn>,
    /// `consistent_hash` with bounded load: no upstream takes more than
    /// this factor × the mean load (per core). `None`: unbounded.
    pub bounded_load: Option<f64>,
    /// The resonant weights in force for this route.
    pub resonant: ResonantWeights,
    /// Passive outlier ejection.
    pub outlier: Outlier,
    /// A recovered upstream's share ramps up linearly over this time.
    pub slow_start: Option<Duration>,
    /// Below this percentage of usable upstreams, health is ignored and
    /// traffic goes to all of them (panic mode).
    pub panic_threshold: u32,
    /// Sticky assignment by cookie, if configured.
    pub sticky: Option<Sticky>,
}
