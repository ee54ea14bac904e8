//! Service profiles: what DAO learned from Sense about each upstream —
//! latency quantiles, error rate and throughput when it served well and
//! when it served badly — kept in `<state_dir>/profiles.json` so that the
//! balancer does not start cold after a restart.
//!
//! A profile is kept per (upstream name, address, intent). The intent is
//! the route's `intent` ("" for a route without one): Sense records per
//! (route, upstream), not per request, so requests whose `x-dao-intent`
//! overrides the route's count under the route's intent. Routes that name
//! the same upstream (name and address) with the same intent share its
//! profile.
//!
//! Each `update` takes the interval since the previous table: requests and
//! errors are the growth of the table's since-start totals, throughput is
//! requests over the uptime elapsed, and the latency quantiles are the
//! table's sliding-window ones (Sense keeps no per-interval quantiles; they
//! lag a falling latency by up to one window). An interval with requests
//! is **bad** when
//!
//! - its error rate is above 1 % (`BAD_ERROR_RATE`), or
//! - its p99 is above twice the good summary's p99 plus 1 ms
//!   (`BAD_P99_FACTOR`, `BAD_P99_SLACK_MS`), once the good summary has
//!   `WARM` intervals (before, latency alone makes no interval bad; the
//!   slack keeps sub-millisecond jitter from counting);
//!
//! and **good** otherwise. It is folded into that summary by an
//! exponentially weighted average with a `TAU` time constant, or the plain
//! mean while the summary has seen fewer intervals than that weight
//! implies (so the first intervals do not weigh for ever). A latency that
//! has risen for good therefore keeps counting as bad: the profile says the
//! upstream serves worse than it used to.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Config;
use crate::sense::{ResonanceTable, Slots};

/// Error rate above which an interval is bad.
pub const BAD_ERROR_RATE: f64 = 0.01;
/// An interval whose p99 is above this many times the good p99 (plus
/// `BAD_P99_SLACK_MS`) is bad.
pub const BAD_P99_FACTOR: f64 = 2.0;
/// Absolute slack on the p99 test, in milliseconds.
pub const BAD_P99_SLACK_MS: f64 = 1.0;
/// Good intervals needed before latency can make an interval bad.
pub const WARM: u64 = 10;
/// Time constant of the summaries' averages.
pub const TAU: Duration = Duration::from_secs(300);

/// The file in the state directory.
const FILE: &str = "profiles.json";

/// How an upstream served over the intervals of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Share of requests that failed (5xx or gateway failure).
    pub error_rate: f64,
    /// Requests per second.
    pub rps: f64,
    /// Intervals folded in.
    pub intervals: u64,
}

impl Summary {
    fn first(f: &Figures) -> Summary {
        Summary {
            p50_ms: f.p50_ms,
            p95_ms: f.p95_ms,
            p99_ms: f.p99_ms,
            error_rate: f.error_rate,
            rps: f.rps,
            intervals: 1,
        }
    }

    fn fold(&mut self, f: &Figures, dt: Duration) {
        let ewma = 1.0 - (-dt.as_secs_f64() / TAU.as_secs_f64()).exp();
        let a = ewma.max(1.0 / (self.intervals as f64 + 1.0));
        let mix = |old: &mut f64, new: f64| *old += a * (new - *old);
        mix(&mut self.p50_ms, f.p50_ms);
        mix(&mut self.p95_ms, f.p95_ms);
        mix(&mut self.p99_ms, f.p99_ms);
        mix(&mut self.error_rate, f.error_rate);
        mix(&mut self.rps, f.rps);
        self.intervals += 1;
    }

    /// Whether every figure is finite and in range.
    fn is_sane(&self) -> bool {
        let figures = [self.p50_ms, self.p95_ms, self.p99_ms, self.rps];
        figures.iter().all(|v| v.is_finite() && *v >= 0.0)
            && (0.0..=1.0).contains(&self.error_rate)
            && self.intervals > 0
    }
}

/// What DAO learned about one (upstream, address, intent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Upstream name.
    pub upstream: String,
    /// Its address.
    pub addr: SocketAddr,
    /// The route's intent, "" for none.
    pub intent: String,
    /// Intervals in which it served well.
    pub good: Option<Summary>,
    /// Intervals in which it did not.
    pub bad: Option<Summary>,
    /// When an interval was last folded in, seconds since the Unix epoch.
    pub updated_unix: u64,
}

/// What the balancer can start from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seed {
    /// Typical latency (µs): the p50 of both summaries, weighted by their
    /// intervals.
    pub recent_us: u64,
    /// Typical error rate, weighted likewise.
    pub error_rate: f64,
}

/// One interval's figures for a profile.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    error_rate: f64,
    rps: f64,
}

/// One table slot's tie to its profile, and its totals at the last update.
#[derive(Debug)]
struct Link {
    /// The (route, upstream)'s slot in the tables.
    slot: usize,
    route: Arc<str>,
    upstream: Arc<str>,
    profile: usize,
    requests: u64,
    errors: u64,
    /// Whether `requests`/`errors` hold a previous reading.
    primed: bool,
}

/// One interval's sums for a profile (several slots may feed one).
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    requests: u64,
    errors: u64,
    /// Quantiles (µs) weighted by each slot's requests.
    p50: f64,
    p95: f64,
    p99: f64,
}

/// Every profile, and how the current config's slots feed them.
#[derive(Debug, Default)]
pub struct Profiles {
    profiles: Vec<Profile>,
    /// Per-profile scratch, as long as `profiles`.
    acc: Vec<Acc>,
    /// Per table slot of the bound config (the local slot excluded).
    links: Vec<Link>,
    /// Epoch and uptime of the last table taken in.
    last: Option<(u64, Duration)>,
}

impl Profiles {
    /// No profiles.
    pub fn new() -> Profiles {
        Profiles::default()
    }

    /// Ties the slots of `config`'s tables to their profiles (creating
    /// empty ones for new keys). Call it with the config the tables come
    /// from, before the first `update` and again after each reload; the
    /// first table after it only sets the starting totals.
    pub fn bind(&mut self, config: &Config, slots: &Slots) {
        self.links.clear();
        for (r, route) in config.routes.iter().enumerate() {
            let intent = route.intent.as_deref().unwrap_or("");
            let route_name: Arc<str> = route.name.as_str().into();
            for (i, u) in route.upstreams.iter().enumerate() {
                let profile = self.index(&u.name, u.addr, intent);
                self.links.push(Link {
                    slot: slots.of(r, i),
                    route: route_name.clone(),
                    upstream: u.name.as_str().into(),
                    profile,
                    requests: 0,
                    errors: 0,
                    primed: false,
                });
            }
        }
        self.acc.resize(self.profiles.len(), Acc::default());
    }

    fn index(&mut self, upstream: &str, addr: SocketAddr, intent: &str) -> usize {
        match self.find(upstream, addr, intent) {
            Some(i) => i,
            None => {
                self.profiles.push(Profile {
                    upstream: upstream.to_string(),
                    addr,
                    intent: intent.to_string(),
                    good: None,
                    bad: None,
                    updated_unix: 0,
                });
                self.profiles.len() - 1
            }
        }
    }

    fn find(&self, upstream: &str, addr: SocketAddr, intent: &str) -> Option<usize> {
        self.profiles
            .iter()
            .position(|p| p.upstream == upstream && p.addr == addr && p.intent == intent)
    }

    /// Folds the interval since the previous table into the profiles.
    /// Slots whose names do not match the bound config (a table from
    /// another config generation), and totals that went backwards (a new
    /// merger), only restart the count. Allocates nothing.
    pub fn update(&mut self, table: &ResonanceTable, now_unix: u64) {
        let dt = match self.last {
            Some((epoch, _)) if epoch == table.epoch => return,
            Some((_, uptime)) if table.uptime > uptime => Some(table.uptime - uptime),
            _ => None,
        };
        self.last = Some((table.epoch, table.uptime));
        for a in &mut self.acc {
            *a = Acc::default();
        }
        for link in self.links.iter_mut() {
            let Some(state) = table.upstreams.get(link.slot) else {
                link.primed = false;
                continue;
            };
            if *link.route != *state.route || *link.upstream != *state.upstream {
                link.primed = false;
                continue;
            }
            let (requests, errors) = (state.totals.requests, state.totals.errors);
            let fresh = link.primed && requests >= link.requests && errors >= link.errors;
            let (new_requests, new_errors) = if fresh {
                (requests - link.requests, errors - link.errors)
            } else {
                (0, 0)
            };
            (link.requests, link.errors, link.primed) = (requests, errors, true);
            if dt.is_none() || new_requests == 0 {
                continue;
            }
            let acc = &mut self.acc[link.profile];
            let w = new_requests as f64;
            acc.requests += new_requests;
            acc.errors += new_errors.min(new_requests);
            acc.p50 += w * state.p50_us as f64;
            acc.p95 += w * state.p95_us as f64;
            acc.p99 += w * state.p99_us as f64;
        }
        let Some(dt) = dt else { return };
        for (profile, acc) in self.profiles.iter_mut().zip(&self.acc) {
            if acc.requests == 0 {
                continue;
            }
            let n = acc.requests as f64;
            let f = Figures {
                p50_ms: acc.p50 / n / 1000.0,
                p95_ms: acc.p95 / n / 1000.0,
                p99_ms: acc.p99 / n / 1000.0,
                error_rate: acc.errors as f64 / n,
                rps: n / dt.as_secs_f64(),
            };
            let slow = profile.good.as_ref().is_some_and(|g| {
                g.intervals >= WARM && f.p99_ms > BAD_P99_FACTOR * g.p99_ms + BAD_P99_SLACK_MS
            });
            let summary = if f.error_rate > BAD_ERROR_RATE || slow {
                &mut profile.bad
            } else {
                &mut profile.good
            };
            match summary {
                Some(s) => s.fold(&f, dt),
                None => *summary = Some(Summary::first(&f)),
            }
            profile.updated_unix = now_unix;
        }
    }

    /// The profiles that have learned something, in the order first seen.
    pub fn list(&self) -> impl Iterator<Item = &Profile> {
        self.profiles
            .iter()
            .filter(|p| p.good.is_some() || p.bad.is_some())
    }

    /// `{"profiles": [{"upstream", "addr", "intent", "good", "bad",
    /// "updated_unix"}, …]}`, summaries `null` when not seen yet.
    pub fn to_json(&self) -> serde_json::Value {
        let list: Vec<serde_json::Value> = self
            .list()
            .map(|p| serde_json::to_value(p).expect("plain data serialises"))
            .collect();
        serde_json::json!({ "profiles": list })
    }

    /// Where the balancer can start for an upstream, if it has a profile.
    pub fn seed(&self, upstream: &str, addr: SocketAddr, intent: &str) -> Option<Seed> {
        let p = &self.profiles[self.find(upstream, addr, intent)?];
        let parts = [p.good, p.bad];
        let n: u64 = parts.iter().flatten().map(|s| s.intervals).sum();
        if n == 0 {
            return None;
        }
        let mean = |f: fn(&Summary) -> f64| {
            parts
                .iter()
                .flatten()
                .map(|s| f(s) * s.intervals as f64)
                .sum::<f64>()
                / n as f64
        };
        Some(Seed {
            recent_us: (mean(|s| s.p50_ms) * 1000.0).round() as u64,
            error_rate: mean(|s| s.error_rate),
        })
    }

    /// Writes `<dir>/profiles.json` atomically.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.to_json()).map_err(io::Error::other)?;
        super::atomic::write(dir, FILE, &bytes)
    }

    /// Reads `<dir>/profiles.json`. A missing file gives no profiles; one
    /// that cannot be read or parsed gives none and a warning; a damaged
    /// entry (bad figures, a key seen twice) is skipped with a warning.
    pub fn load(dir: &Path) -> (Profiles, Vec<String>) {
        let path = dir.join(FILE);
        let mut profiles = Profiles::new();
        let mut warnings = Vec::new();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (profiles, warnings),
            Err(e) => {
                warnings.push(format!(
                    "{}: cannot read: {e}; starting with no profiles",
                    path.display()
                ));
                return (profiles, warnings);
            }
        };
        #[derive(Deserialize)]
        struct File {
            profiles: Vec<serde_json::Value>,
        }
        let file: File = match serde_json::from_slice(&bytes) {
            Ok(f) => f,
            Err(e) => {
                warnings.push(format!(
                    "{}: not a profiles file ({e}); starting with no profiles",
                    path.display()
                ));
                return (profiles, warnings);
            }
        };
        for (i, entry) in file.profiles.into_iter().enumerate() {
            let why = match serde_json::from_value::<Profile>(entry) {
                Err(e) => e.to_string(),
                Ok(p) if p.good.is_none() && p.bad.is_none() => "no summaries".to_string(),
                Ok(p) if !p.good.iter().chain(&p.bad).all(Summary::is_sane) => {
                    "figures out of range".to_string()
                }
                Ok(p) if profiles.find(&p.upstream, p.addr, &p.intent).is_some() => {
                    format!("{} {} {:?} seen twice", p.upstream, p.addr, p.intent)
                }
                Ok(p) => {
                    profiles.profiles.push(p);
                    continue;
                }
            };
            warnings.push(format!("{}: profiles[{i}]: {why}; skipped", path.display()));
        }
        profiles.acc.resize(profiles.profiles.len(), Acc::default());
        (profiles, warnings)
    }
}

#[cfg(test)]
mod tests;
