//! Route lookup and balancer picks, the per-request work of Align:
//! nanoseconds per call on a 20-rule table and a 5-upstream route.
//!
//!   cargo bench -p dao-bench --bench align
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::hint::black_box;
use std::time::Instant;

use dao::align::router::Target;
use dao::align::Balancer;

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

fn per_call(n: u64, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed().as_nanos() as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
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
    for (name, host, path) in lookups {
        let t = Target {
            host,
            path,
            method: b"GET",
        };
        let ns = median(
            (0..9)
                .map(|_| {
                    per_call(1_000_000, || {
                        black_box(config.router.find(black_box(t), |_, _| false));
                    })
                })
                .collect(),
        );
        println!("route lookup, {name}: {ns:.1} ns");
    }
    let route = &config.routes[0];
    for (name, balancer) in [
        ("weighted (5 upstreams)", Balancer::new(route)),
        ("round_robin", {
            let mut rr = route.clone();
            rr.policy = dao::memory::Policy::RoundRobin;
            Balancer::new(&rr)
        }),
    ] {
        let ns = median(
            (0..9)
                .map(|_| {
                    per_call(10_000_000, || {
                        black_box(balancer.pick());
                    })
                })
                .collect(),
        );
        println!("balancer pick, {name}: {ns:.2} ns");
    }
}
