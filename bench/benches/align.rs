//! Route lookup and balancer picks, the per-request work of Align: time per
//! call on a 20-rule table and a 5-upstream route, measured by criterion.
//!
//!   cargo bench -p dao-bench --bench align
//!   cargo bench -p dao-bench --bench align -- --quick

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
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
            b.iter(|| config.router.find(black_box(t), |_, _| false));
        });
    }
    group.finish();
}

fn balancer_pick(c: &mut Criterion) {
    let config = config();
    let route = &config.routes[0];
    let mut rr = route.clone();
    rr.policy = dao::memory::Policy::RoundRobin;
    let mut group = c.benchmark_group("balancer pick");
    for (name, balancer) in [
        ("weighted (5 upstreams)", Balancer::new(route)),
        ("round_robin", Balancer::new(&rr)),
    ] {
        group.bench_function(name, |b| b.iter(|| balancer.pick()));
    }
    group.finish();
}

criterion_group!(benches, route_lookup, balancer_pick);
criterion_main!(benches);
