//! Route lookup and balancer picks, the per-request work of Align: time per
//! call on a 20-rule table and a 5-upstream route, measured by criterion.
//!
//!   cargo bench -p dao-bench --bench align
//!   cargo bench -p dao-bench --bench align -- --quick

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use dao::align::balancer::{key_hash, Ask, Seen};
use dao::align::router::Target;
use dao::align::Balancer;

/// 20 rules cycling through an exact host, a `*.suffix` host and any host,
/// each with its own path prefix; 5 weighted upstreams per rule.
fn config() -> dao::memory::Config {
    let mut text = String::new();
    for i in 0..20 {
        let host = match i % 3 {
            0 => format!("host = \"svc{i}.example.com\"\n"),
            1 => format!("host = \"*.zone{i}.example.com\"\n"),
            _ => String::new(),
        };
        text += &format!(
            "[[routes.rule]]\nname = \"r{i}\"\npolicy = \"weighted\"\n[routes.rule.match]\n{host}path_prefix = \"/api/v{i}/\"\n"
        );
        for u in 0..5 {
            text += &format!(
                "[[routes.rule.upstreams]]\nname = \"u{u}\"\nurl = \"http://127.0.0.1:{}\"\nweight = {}\n",
                9000 + u,
                u + 1
            );
        }
    }
    dao::memory::parse(&text).expect("bench config")
}

fn route_lookup(c: &mut Criterion) {
    let config = config();
    let lookups = [
        (
            "exact host, deep rule",
            &b"svc18.example.com"[..],
            &b"/api/v18/items"[..],
        ),
        ("wildcard host", b"a.zone19.example.com:8080", b"/api/v19/x"),
        ("any host, last rule", b"other.org", b"/api/v17/x"),
        ("miss (404)", b"other.org", b"/nothing"),
    ];
    let mut group = c.benchmark_group("route lookup");
    for (name, host, path) in lookups {
        let t = Target {
            host,
            path,
            method: b"GET",
        };
        group.bench_function(name, |b| {
            b.iter(|| config.router.find(black_box(t), |_, _, _| false));
        });
    }
    group.finish();
}

/// One route of `n` upstreams under `policy`, as a config.
fn policy_config(policy: &str, n: usize) -> dao::memory::Config {
    let extra = match policy {
        "consistent_hash" => "hash_on = \"header:x-user\"\nbounded_load = 1.25\n",
        "resonant" => "intent = \"realtime\"\n",
        _ => "",
    };
    let mut text = format!("[[routes.rule]]\nname = \"r\"\npolicy = \"{policy}\"\n{extra}");
    for u in 0..n {
        text += &format!(
            "[[routes.rule.upstreams]]\nname = \"u{u}\"\nurl = \"http://127.0.0.1:{}\"\nintent = [\"{}\"]\n",
            9000 + u,
            if u % 2 == 0 { "realtime" } else { "batch" }
        );
    }
    dao::memory::parse(&text).expect("bench config")
}

fn balancer_pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("balancer pick");
    for n in [5, 16] {
        for policy in dao::memory::Policy::ALL.map(|(name, _)| name) {
            let config = policy_config(policy, n);
            let balancer = Balancer::new(&config, 0, 0);
            // Some load in flight and a table view, as on a busy core.
            for i in 0..n {
                for _ in 0..i % 3 {
                    balancer.started(i);
                }
            }
            balancer.observe(0, |i| Seen {
                p95_us: 1000.0 * (1 + i % 5) as f64,
                samples: 100,
                recent_us: 800.0 * (1 + i % 5) as f64,
                error_rate: 0.0,
                in_flight: (i % 4) as f64,
                tempo_spikiness: 0.1,
                down: false,
            });
            let ask = Ask {
                intent: config.intent_index(b"realtime"),
                key: Some(key_hash(b"user-42")),
                avoid: 0,
                now_us: 1_000_000,
            };
            group.bench_function(format!("{policy} ({n} upstreams)"), |b| {
                b.iter(|| balancer.pick(black_box(&ask)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, route_lookup, balancer_pick);
criterion_main!(benches);
