//! `[policies]` and each route's balancing keys: the policy and its
//! options, outlier detection, slow start and the panic threshold.

use std::time::Duration;

use super::super::balancing::{
    Balancing, HashOn, Outlier, PeakEwma, Policies, Policy, ResonantWeights, Sticky,
};
use super::super::raw::{RawOutlier, RawPolicies, RawResonant, RawRule, RawSticky};
use super::Validator;

/// The config names of every policy, for error messages.
fn policy_names() -> String {
    Policy::ALL.map(|(n, _)| n).join(", ")
}

impl Validator {
    pub(super) fn policies(&mut self, raw: RawPolicies) -> Policies {
        let mut policies = Policies::default();
        if let Some(r) = raw.resonant {
            let mut related = Vec::new();
            for (from, to) in r.related.iter().flatten() {
                for (upstream_intent, gap) in to {
                    let path = format!("policies.resonant.related.{from}.{upstream_intent}");
                    if !(0.0..=1.0).contains(gap) {
                        self.err(path, format!("{gap} is not a gap in 0.0..=1.0"));
                    } else if from == upstream_intent {
                        self.err(path, "an intent is always 0.0 from itself");
                    } else {
                        related.push((from.clone(), upstream_intent.clone(), *gap));
                    }
                }
            }
            policies.related = related;
            policies.resonant = self.resonant("policies.resonant", &r, ResonantWeights::default());
        }
        if let Some(p) = raw.peak_ewma {
            let d = PeakEwma::default();
            policies.peak_ewma = PeakEwma {
                decay: self.duration("policies.peak_ewma.decay", p.decay, d.decay),
                failure_penalty: self.duration(
                    "policies.peak_ewma.failure_penalty",
                    p.failure_penalty,
                    d.failure_penalty,
                ),
            };
        }
        policies
    }

    fn resonant(&mut self, path: &str, r: &RawResonant, base: ResonantWeights) -> ResonantWeights {
        let mut weight = |name: &str, v: Option<f64>, default: f64| match v {
            None => default,
            Some(w) if w.is_finite() && (0.0..=100.0).contains(&w) => w,
            Some(w) => {
                self.err(
                    format!("{path}.{name}"),
                    format!("{w} is not a weight in 0..=100"),
                );
                default
            }
        };
        let w = ResonantWeights {
            w_load: weight("w_load", r.w_load, base.w_load),
            w_intent: weight("w_intent", r.w_intent, base.w_intent),
            w_tempo: weight("w_tempo", r.w_tempo, base.w_tempo),
            candidates: self.count(
                &format!("{path}.candidates"),
                r.candidates,
                (1, 64),
                base.candidates,
            ),
        };
        if w.w_load + w.w_intent + w.w_tempo == 0.0 {
            self.err(path, "the weights must not all be zero");
        }
        w
    }

    /// The route's policy (with `path` the route's path).
    pub(super) fn policy(&mut self, path: &str, raw: Option<&str>) -> Policy {
        let Some(name) = raw else {
            return Policy::RoundRobin;
        };
        match Policy::ALL.iter().find(|(n, _)| *n == name) {
            Some((_, p)) => *p,
            None => {
                self.err(
                    format!("{path}.policy"),
                    format!("unknown policy {name:?} ({})", policy_names()),
                );
                Policy::RoundRobin
            }
        }
    }

    /// The route's balancing options; `policies` are the shared defaults.
    pub(super) fn balancing(
        &mut self,
        path: &str,
        policy: Policy,
        raw: &mut RawRule,
        policies: &Policies,
    ) -> Balancing {
        let hash_on = match (policy, raw.hash_on.take()) {
            (Policy::ConsistentHash, None) => {
                self.err(
                    format!("{path}.hash_on"),
                    "consistent_hash needs hash_on = \"header:NAME\", \"cookie:NAME\" or \"client_ip\"",
                );
                None
            }
            (Policy::ConsistentHash, Some(text)) => self.hash_on(&format!("{path}.hash_on"), &text),
            (_, Some(_)) => {
                self.err(
                    format!("{path}.hash_on"),
                    format!(
                        "applies only with policy = \"consistent_hash\" (this route is {policy})"
                    ),
                );
                None
            }
            (_, None) => None,
        };
        let bounded_load = match raw.bounded_load {
            None => None,
            Some(_) if policy != Policy::ConsistentHash => {
                self.err(
                    format!("{path}.bounded_load"),
                    format!(
                        "applies only with policy = \"consistent_hash\" (this route is {policy})"
                    ),
                );
                None
            }
            Some(f) if f.is_finite() && (1.0..=100.0).contains(&f) => Some(f),
            Some(f) => {
                self.err(
                    format!("{path}.bounded_load"),
                    format!("{f} is not a load factor in 1.0..=100.0 (1.25: no upstream above 125 % of the mean)"),
                );
                None
            }
        };
        let resonant = match raw.resonant.take() {
            None => policies.resonant,
            Some(r) => {
                let rpath = format!("{path}.resonant");
                if policy != Policy::Resonant {
                    self.err(
                        &rpath,
                        format!("applies only with policy = \"resonant\" (this route is {policy})"),
                    );
                }
                if r.related.is_some() {
                    self.err(
                        format!("{rpath}.related"),
                        "intent relatedness is global: set it in [policies.resonant.related]",
                    );
                }
                self.resonant(&rpath, &r, policies.resonant)
            }
        };
        let outlier = self.outlier(
            &format!("{path}.outlier_detection"),
            raw.outlier_detection.take().unwrap_or_default(),
        );
        let slow_start = raw
            .slow_start
            .take()
            .map(|s| self.duration(&format!("{path}.slow_start"), Some(s), Duration::ZERO));
        let panic_threshold = self.count(
            &format!("{path}.panic_threshold"),
            raw.panic_threshold,
            (0, 100),
            50,
        ) as u32;
        let sticky = raw
            .sticky
            .take()
            .and_then(|s| self.sticky(&format!("{path}.sticky"), s));
        Balancing {
            hash_on,
            bounded_load,
            resonant,
            outlier,
            slow_start,
            panic_threshold,
            sticky,
        }
    }

    fn sticky(&mut self, path: &str, raw: RawSticky) -> Option<Sticky> {
        let Some(cookie) = raw.cookie else {
            self.err(format!("{path}.cookie"), "the cookie's name is required");
            return None;
        };
        if cookie.is_empty() || !cookie.bytes().all(super::is_token) {
            self.err(
                format!("{path}.cookie"),
                format!("{cookie:?} is not a cookie name"),
            );
        }
        let max_age = raw
            .max_age
            .map(|m| self.duration(&format!("{path}.max_age"), Some(m), Duration::ZERO));
        let cookie_path = raw.path.unwrap_or_else(|| "/".to_string());
        if !cookie_path.starts_with('/')
            || cookie_path
                .bytes()
                .any(|b| b == b';' || b.is_ascii_control())
        {
            self.err(
                format!("{path}.path"),
                format!("{cookie_path:?} is not a cookie path"),
            );
        }
        Some(Sticky {
            cookie,
            max_age,
            path: cookie_path,
        })
    }

    fn hash_on(&mut self, path: &str, text: &str) -> Option<HashOn> {
        let named = |prefix: &str| {
            text.strip_prefix(prefix)
                .filter(|n| !n.is_empty() && n.bytes().all(super::is_token))
        };
        if text == "client_ip" {
            Some(HashOn::ClientIp)
        } else if let Some(name) = named("header:") {
            Some(HashOn::Header(name.to_ascii_lowercase()))
        } else if let Some(name) = named("cookie:") {
            Some(HashOn::Cookie(name.to_string()))
        } else {
            self.err(
                path,
                format!("{text:?}: write \"header:NAME\", \"cookie:NAME\" or \"client_ip\""),
            );
            None
        }
    }

    fn outlier(&mut self, path: &str, raw: RawOutlier) -> Outlier {
        let d = Outlier::default();
        let o = Outlier {
            enabled: raw.enabled.unwrap_or(d.enabled),
            consecutive_failures: self.count(
                &format!("{path}.consecutive_failures"),
                raw.consecutive_failures,
                (1, 1000),
                d.consecutive_failures as usize,
            ) as u32,
            base_ejection_time: self.duration(
                &format!("{path}.base_ejection_time"),
                raw.base_ejection_time,
                d.base_ejection_time,
            ),
            max_ejection_time: self.duration(
                &format!("{path}.max_ejection_time"),
                raw.max_ejection_time,
                d.max_ejection_time,
            ),
            max_ejection_percent: self.count(
                &format!("{path}.max_ejection_percent"),
                raw.max_ejection_percent,
                (0, 100),
                d.max_ejection_percent as usize,
            ) as u32,
        };
        if o.max_ejection_time < o.base_ejection_time {
            self.err(
                format!("{path}.max_ejection_time"),
                "must not be shorter than base_ejection_time",
            );
        }
        o
    }
}
