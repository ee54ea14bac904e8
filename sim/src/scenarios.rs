//! The scenarios S0–S6: backends, arrival rate over time, request classes
//! (intents with latency targets), timeouts and retries.

use dao::memory::Config;

use crate::model::{BackendSpec, Condition, Phase, Rng};

const SEC: u64 = 1_000_000;
const MS: u64 = 1_000;

/// A kind of request: its share of arrivals, intent and latency target.
#[derive(Debug, Clone)]
pub struct Class {
    pub name: String,
    pub share: f64,
    pub intent: Option<String>,
    pub target_us: Option<u64>,
}

/// The proxy's retry settings in a scenario.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Extra attempts after the first.
    pub attempts: u32,
    pub per_try_us: Option<u64>,
    /// Retry a 503 (an idempotent request) on another upstream.
    pub on_5xx: bool,
    pub budget_percent: f64,
    pub budget_min: u32,
}

impl Retry {
    fn none() -> Retry {
        Retry {
            attempts: 0,
            per_try_us: None,
            on_5xx: false,
            budget_percent: 20.0,
            budget_min: 3,
        }
    }
}

pub struct Scenario {
    pub name: &'static str,
    pub about: String,
    pub backends: Vec<BackendSpec>,
    pub cores: usize,
    pub duration_us: u64,
    /// Requests that arrive before this are not counted.
    pub warmup_us: u64,
    /// Arrivals per second at a time.
    pub rate: Box<dyn Fn(u64) -> f64>,
    pub classes: Vec<Class>,
    pub client_timeout_us: u64,
    pub retry: Retry,
    pub merge_us: u64,
    /// Extra TOML for the route (after `policy`).
    pub route_extra: String,
}

impl Scenario {
    /// The proxy config this scenario runs under, with `policy`.
    pub fn config(&self, policy: &str) -> Config {
        let mut route = self.route_extra.clone();
        // Extra route keys for experiments, e.g. DAO_SIM_RESONANT='resonant = { candidates = 3 }'.
        if policy == "resonant" {
            if let Ok(extra) = std::env::var("DAO_SIM_RESONANT") {
                route += &extra;
                route.push('\n');
            }
        }
        if policy == "consistent_hash" {
            route += "hash_on = \"header:x-key\"\n";
        }
        // merge_interval_ms has a floor of 10 in the proxy; the simulator
        // drives the merge itself, so it can go below.
        let mut text = format!(
            "[server]\nworkers = {}\n[telemetry]\nmerge_interval_ms = {}\nwindow = \"10s\"\n[[routes.rule]]\nname = \"sim\"\npolicy = \"{policy}\"\n{route}",
            self.cores,
            (self.merge_us / MS).clamp(10, 1000),
        );
        for (i, b) in self.backends.iter().enumerate() {
            text += &format!(
                "[[routes.rule.upstreams]]\nname = \"b{i}\"\nurl = \"http://127.0.0.1:{}\"\n",
                10_000 + i
            );
            if !b.intents.is_empty() {
                let list: Vec<String> = b.intents.iter().map(|i| format!("{i:?}")).collect();
                text += &format!("intent = [{}]\n", list.join(", "));
            }
        }
        dao::memory::parse(&text).unwrap_or_else(|e| panic!("scenario config: {e}\n{text}"))
    }

    pub fn capacity(&self) -> f64 {
        self.backends.iter().map(BackendSpec::capacity).sum()
    }
}

fn one_class() -> Vec<Class> {
    vec![Class {
        name: "all".into(),
        share: 1.0,
        intent: None,
        target_us: None,
    }]
}

fn base(name: &'static str, about: String, backends: Vec<BackendSpec>, load: f64) -> Scenario {
    let cap: f64 = backends.iter().map(BackendSpec::capacity).sum();
    Scenario {
        name,
        about,
        backends,
        cores: 4,
        duration_us: 60 * SEC,
        warmup_us: 5 * SEC,
        rate: Box::new(move |_| cap * load),
        classes: one_class(),
        client_timeout_us: 10 * SEC,
        retry: Retry::none(),
        merge_us: 200 * MS,
        route_extra: String::new(),
    }
}

/// Backends: 4 servers, 10 ms mean service (400 req/s each).
fn equal(n: usize) -> Vec<BackendSpec> {
    (0..n).map(|_| BackendSpec::new(4, 10_000.0)).collect()
}

pub fn s0() -> Scenario {
    base(
        "S0",
        "16 equal backends (4 servers, 10 ms exponential), load 70 %".into(),
        equal(16),
        0.7,
    )
}

pub fn s1() -> Scenario {
    let mut b = equal(16);
    b[14].mean_us *= 4.0;
    b[15].mean_us *= 16.0;
    base(
        "S1",
        "16 backends, two of them 4× and 16× slower; load 70 % of the total capacity".into(),
        b,
        0.7,
    )
}

pub fn s2() -> Scenario {
    let mut b = equal(11);
    b[0].phases.push(Phase {
        from_us: 10 * SEC,
        to_us: 40 * SEC,
        condition: Condition::Stuck(2 * SEC),
    });
    let mut s = base(
        "S2",
        "11 backends, one stuck at 2 s from 10 s to 40 s; load 60 %; success = 200 within the 1 s timeout; retry: 1 more attempt, 250 ms per try".into(),
        b,
        0.6,
    );
    s.duration_us = 50 * SEC;
    s.client_timeout_us = SEC;
    s.retry = Retry {
        attempts: 1,
        per_try_us: Some(250 * MS),
        ..Retry::none()
    };
    s
}

/// S3: the ramp is relative to the provisioned capacity, taken as 60 % of
/// what the backends can serve at most (`peak` = 1.5 × 0.6 = 90 %); S3x
/// ramps against the raw maximum (`peak` = 1.5: a 50 % overload that no
/// balancer can absorb, shown for the shedding behaviour).
pub fn s3(seed: u64, provisioned: f64) -> Scenario {
    let mut b = equal(16);
    // Background bursts: backends 0–3 each run 4× slower for 2 s, every
    // 8–12 s, at seeded times.
    let mut rng = Rng::new(seed ^ 0x53);
    for spec in b.iter_mut().take(4) {
        let mut t = rng.below(8) as u64 * SEC;
        while t < 60 * SEC {
            spec.phases.push(Phase {
                from_us: t,
                to_us: t + 2 * SEC,
                condition: Condition::Slow(4.0),
            });
            t += (8 + rng.below(5) as u64) * SEC;
        }
    }
    let (name, about) = if provisioned < 1.0 {
        ("S3", format!("16 backends, load ramps from 0.6× to 1.5× of the provisioned capacity ({:.0} % of the maximum) over 60 s, i.e. {:.0} % → {:.0} % utilisation; 4 backends take 2 s bursts of 4× slowness every 8–12 s; client timeout 10 s", provisioned * 100.0, 60.0 * provisioned, 150.0 * provisioned))
    } else {
        ("S3x", "as S3 but the ramp goes from 0.6× to 1.5× of the backends' maximum: a 50 % overload at the end".to_string())
    };
    let mut s = base(name, about, b, 1.0);
    let cap = s.capacity() * provisioned;
    let d = s.duration_us as f64;
    s.rate = Box::new(move |t| cap * (0.6 + 0.9 * (t as f64 / d).min(1.0)));
    s
}

pub fn s4() -> Scenario {
    let mut b = equal(16);
    for spec in b.iter_mut().take(2) {
        spec.phases.push(Phase {
            from_us: 0,
            to_us: u64::MAX,
            condition: Condition::Failing,
        });
    }
    base(
        "S4",
        "16 backends, two answer 503 at once; load 60 % of the healthy capacity; no retries (failures avoided by the balancer alone)".into(),
        b,
        0.6 * 14.0 / 16.0,
    )
}

pub fn s5() -> Scenario {
    // 4 realtime backends (fast, small) and 4 batch backends (slow, big).
    let mut b = Vec::new();
    for _ in 0..4 {
        let mut s = BackendSpec::new(4, 5_000.0);
        s.intents = vec!["realtime".into()];
        b.push(s);
    }
    for _ in 0..4 {
        let mut s = BackendSpec::new(8, 40_000.0);
        s.intents = vec!["batch".into()];
        b.push(s);
    }
    let mut s = base(
        "S5",
        "intent mix: 4 realtime backends (4 servers, 5 ms) and 4 batch backends (8 servers, 40 ms); 30 % realtime requests with a 25 ms target, 70 % batch; load 60 %".into(),
        b,
        0.6,
    );
    s.classes = vec![
        Class {
            name: "realtime".into(),
            share: 0.3,
            intent: Some("realtime".into()),
            target_us: Some(25 * MS),
        },
        Class {
            name: "batch".into(),
            share: 0.7,
            intent: Some("batch".into()),
            target_us: None,
        },
    ];
    s
}

/// S1 with another merge interval.
pub fn s6(merge_us: u64) -> Scenario {
    let mut s = s1();
    s.name = "S6";
    s.about = format!("S1 with a {} ms merge interval", merge_us as f64 / 1000.0);
    s.merge_us = merge_us;
    s.duration_us = 30 * SEC;
    s
}
