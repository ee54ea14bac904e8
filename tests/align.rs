//! Align end to end: the policies on real backends (a slow upstream gets
//! little traffic from the latency- and load-aware ones, consistent
//! hashing sticks, `x-dao-intent` steers the resonant policy), and outlier
//! ejection and `Retry-After` take an upstream out.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// One route with `route_keys` (policy and the like, then any tables) over
/// `backends` named b0, b1, … each with its `upstream_keys`.
fn config_with(
    workers: usize,
    route_keys: &str,
    backends: &[(SocketAddr, &str)],
    tables: &str,
) -> String {
    let mut text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = {workers}\n[telemetry]\nmerge_interval_ms = 20\n[[routes.rule]]\nname = \"all\"\n{route_keys}\n"
    );
    for (i, (b, keys)) in backends.iter().enumerate() {
        text +=
            &format!("[[routes.rule.upstreams]]\nname = \"b{i}\"\nurl = \"http://{b}\"\n{keys}\n");
    }
    text + tables
}

/// A backend answering its `name`, after `delay`.
fn named(name: &'static str, delay: Duration) -> Backend {
    Backend::start(move |_, s| {
        std::thread::sleep(delay);
        respond(s, 200, &[], name.as_bytes());
        After::KeepAlive
    })
}

/// `threads` keep-alive clients sending GETs for `run`; returns how many
/// answers each backend name gave.
fn load(addr: SocketAddr, threads: usize, run: Duration) -> (usize, usize) {
    let (fast, slow) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (fast, slow) = (fast.clone(), slow.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                while started.elapsed() < run {
                    let r = c.get("/");
                    assert_eq!(r.status, 200);
                    match r.text().as_str() {
                        "fast" => fast.fetch_add(1, Ordering::SeqCst),
                        _ => slow.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (fast.load(Ordering::SeqCst), slow.load(Ordering::SeqCst))
}

#[test]
fn a_slow_upstream_gets_little_traffic_from_aware_policies() {
    let fast = named("fast", Duration::ZERO);
    let slow = named("slow", Duration::from_millis(60));
    let ups = [(fast.addr, ""), (slow.addr, "")];
    let mut shares = Vec::new();
    for policy in ["round_robin", "least_request", "peak_ewma", "resonant"] {
        let dao = start(&config_with(2, &format!("policy = \"{policy}\""), &ups, ""));
        let (f, s) = load(dao.local_addr(), 6, Duration::from_millis(1500));
        shares.push((policy, s as f64 / (f + s) as f64));
    }
    eprintln!("slow upstream shares: {shares:?}");
    // Round robin gives the slow one half the requests; the others shun it.
    assert!((0.45..=0.55).contains(&shares[0].1), "{shares:?}");
    for (policy, share) in &shares[1..] {
        assert!(*share < 0.15, "{policy}: {shares:?}");
    }
}

#[test]
fn consistent_hash_sticks_to_a_key() {
    let names = ["b0", "b1", "b2"];
    let backends: Vec<Backend> = names.iter().map(|n| named(n, Duration::ZERO)).collect();
    let ups: Vec<(SocketAddr, &str)> = backends.iter().map(|b| (b.addr, "")).collect();
    let dao = start(&config_with(
        2,
        "policy = \"consistent_hash\"\nhash_on = \"header:x-user\"",
        &ups,
        "",
    ));
    let mut homes = std::collections::BTreeSet::new();
    for user in 0..12 {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..5 {
            // A new connection each time: another core may take it.
            let mut c = Client::connect(dao.local_addr());
            c.send(format!("GET / HTTP/1.1\r\nHost: h\r\nX-User: u{user}\r\n\r\n").as_bytes());
            seen.insert(c.read(false).text());
        }
        assert_eq!(seen.len(), 1, "user {user} went to {seen:?}");
        homes.extend(seen);
    }
    assert!(homes.len() >= 2, "12 users all on {homes:?}");
}

#[test]
fn the_intent_header_steers_the_resonant_policy() {
    let rt = named("realtime", Duration::ZERO);
    let batch = named("batch", Duration::ZERO);
    let ups = [
        (rt.addr, "intent = [\"realtime\"]"),
        (batch.addr, "intent = [\"batch\"]"),
    ];
    let dao = start(&config_with(
        1,
        "policy = \"resonant\"\nintent = \"batch\"",
        &ups,
        "",
    ));
    let mut c = Client::connect(dao.local_addr());
    for _ in 0..10 {
        assert_eq!(c.get("/").text(), "batch", "the route's intent");
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-DAO-Intent: realtime\r\n\r\n");
        assert_eq!(c.read(false).text(), "realtime", "the header's intent");
        // An intent the config does not know is ignored.
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-DAO-Intent: whatever\r\n\r\n");
        assert_eq!(c.read(false).text(), "batch");
    }
}

#[test]
fn consecutive_failures_eject_an_upstream() {
    let good = named("good", Duration::ZERO);
    let bad = Backend::start(|_, s| {
        respond(s, 503, &[], b"down");
        After::KeepAlive
    });
    let ups = [(good.addr, ""), (bad.addr, "")];
    let dao = start(&config_with(
        1,
        "policy = \"round_robin\"",
        &ups,
        "[routes.rule.outlier_detection]\nconsecutive_failures = 3\nbase_ejection_time = \"30s\"\n",
    ));
    let mut c = Client::connect(dao.local_addr());
    let statuses: Vec<u16> = (0..20).map(|_| c.get("/").status).collect();
    // Round robin alternates until the third 503 in a row from b1.
    assert_eq!(
        statuses.iter().filter(|&&s| s == 503).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(bad.request_count(), 3);
}

#[test]
fn retry_after_takes_an_upstream_out_for_that_long() {
    let good = named("good", Duration::ZERO);
    let throttled_once = Arc::new(AtomicUsize::new(0));
    let t = throttled_once.clone();
    let busy = Backend::start(move |_, s| {
        if t.fetch_add(1, Ordering::SeqCst) == 0 {
            respond(s, 429, &[("Retry-After", "1")], b"later");
        } else {
            respond(s, 200, &[], b"busy");
        }
        After::KeepAlive
    });
    let ups = [(busy.addr, ""), (good.addr, "")];
    let dao = start(&config_with(1, "policy = \"round_robin\"", &ups, ""));
    let mut c = Client::connect(dao.local_addr());
    assert_eq!(c.get("/").status, 429);
    let started = Instant::now();
    // Out for a second (at the 100 ms clock's resolution): all to "good".
    while started.elapsed() < Duration::from_millis(700) {
        assert_eq!(c.get("/").text(), "good");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(800));
    let back: Vec<String> = (0..4).map(|_| c.get("/").text()).collect();
    assert!(back.contains(&"busy".to_string()), "{back:?}");
}

#[test]
fn a_sticky_cookie_pins_a_client_to_its_upstream() {
    let backends: Vec<Backend> = ["b0", "b1", "b2"]
        .iter()
        .map(|n| named(n, Duration::ZERO))
        .collect();
    let ups: Vec<(SocketAddr, &str)> = backends.iter().map(|b| (b.addr, "")).collect();
    let dao = start(&config_with(
        2,
        "policy = \"round_robin\"",
        &ups,
        "[routes.rule.sticky]\ncookie = \"dao_s\"\nmax_age = \"1h\"\n",
    ));
    let get = |cookie: Option<&str>| {
        let mut c = Client::connect(dao.local_addr());
        let extra = cookie.map_or(String::new(), |v| {
            format!("Cookie: theme=dark; dao_s={v}\r\n")
        });
        c.send(format!("GET / HTTP/1.1\r\nHost: h\r\n{extra}\r\n").as_bytes());
        c.read(false)
    };
    // First visit: assigned, and told so.
    let first = get(None);
    let set = first
        .header("set-cookie")
        .expect("a Set-Cookie")
        .to_string();
    let token = set
        .strip_prefix("dao_s=")
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    assert_eq!(token.len(), 16, "{set}");
    assert!(set.ends_with("; Path=/; Max-Age=3600; HttpOnly"), "{set}");
    // With the cookie: always the same upstream, round robin or not, and
    // no new cookie.
    for _ in 0..9 {
        let r = get(Some(&token));
        assert_eq!(r.text(), first.text());
        assert!(r.header("set-cookie").is_none());
    }
    // A value naming no upstream: a fresh assignment.
    let r = get(Some("0000000000000000"));
    assert!(r.header("set-cookie").is_some());
}

#[test]
fn canary_by_weight_and_a_b_by_cookie() {
    let stable = named("stable", Duration::ZERO);
    let canary = named("canary", Duration::ZERO);
    let b_side = named("b-side", Duration::ZERO);
    // Rule "b" (cookie variant=b) first, then the weighted 95/5 split.
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
         [[routes.rule]]\nname = \"b\"\n[routes.rule.match]\ncookies = {{ variant = \"b\" }}\n\
         [[routes.rule.upstreams]]\nname = \"b-side\"\nurl = \"http://{}\"\n\
         [[routes.rule]]\nname = \"split\"\npolicy = \"weighted\"\n\
         [[routes.rule.upstreams]]\nname = \"stable\"\nurl = \"http://{}\"\nweight = 95\n\
         [[routes.rule.upstreams]]\nname = \"canary\"\nurl = \"http://{}\"\nweight = 5\n",
        b_side.addr, stable.addr, canary.addr
    );
    let dao = start(&text);
    let mut c = Client::connect(dao.local_addr());
    let mut canaries = 0;
    for _ in 0..200 {
        match c.get("/").text().as_str() {
            "canary" => canaries += 1,
            other => assert_eq!(other, "stable"),
        }
    }
    // Smooth weighted round robin on one core: exactly 5 %.
    assert_eq!(canaries, 10);
    for _ in 0..5 {
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\nCookie: variant=b\r\n\r\n");
        assert_eq!(c.read(false).text(), "b-side");
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\nCookie: variant=a\r\n\r\n");
        assert_ne!(c.read(false).text(), "b-side");
    }
}
