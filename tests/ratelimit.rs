//! Rate limiting end to end: 429 with its headers, a global rate that
//! holds across two workers whatever the connections' spread, and keyed
//! limits.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn over_the_limit_gets_429_with_its_headers() {
    let backend = Backend::text("ok");
    let dao = with_filters(
        &backend,
        1,
        "[telemetry]\nmerge_interval_ms = 50",
        "rate_limit_rps = 2\nrate_limit_burst = 5",
    );
    let mut c = Client::connect(dao.local_addr());
    let statuses: Vec<u16> = (0..8).map(|_| c.get("/").status).collect();
    assert_eq!(&statuses[..5], [200; 5], "{statuses:?}");
    let mut refused = Client::connect(dao.local_addr());
    let r = refused.get("/");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert!(r.header("x-ratelimit-reset").is_some());
    assert!(
        backend.request_count() <= 6,
        "refused requests never reach it"
    );
    // The connection stays open after a 429.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(refused.get("/").status, 200);
}

/// `threads` keep-alive clients hammering for `run`; returns the 200s
/// that arrived in the last `window` of it.
fn hammer(dao: &Server, threads: usize, run: Duration, window: Duration) -> usize {
    let ok = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let addr = dao.local_addr();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let ok = ok.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                while started.elapsed() < run {
                    let status = c.get("/").status;
                    if status == 200 && started.elapsed() >= run - window {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    if status == 429 {
                        // A refused client backs off a little, as real ones do.
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    ok.load(Ordering::SeqCst)
}

#[test]
fn the_global_rate_holds_across_two_workers() {
    let backend = Backend::text("ok");
    let dao = with_filters(
        &backend,
        2,
        "[telemetry]\nmerge_interval_ms = 50",
        "rate_limit_rps = 200\nrate_limit_burst = 20",
    );
    // 12 connections, spread over the two workers by the kernel as it
    // likes; 3 s of load, counted over the last 2 s (after the shares
    // settle).
    let admitted = hammer(&dao, 12, Duration::from_secs(3), Duration::from_secs(2));
    let rate = admitted as f64 / 2.0;
    eprintln!("admitted {rate} req/s over two workers");
    assert!(
        (180.0..=220.0).contains(&rate),
        "admitted {rate} req/s, want 200 ± 10 %"
    );
    // One connection: all the load on one core, the other idle. The busy
    // core's share grows to nearly all of the budget.
    let dao = with_filters(
        &backend,
        2,
        "[telemetry]\nmerge_interval_ms = 50",
        "rate_limit_rps = 200\nrate_limit_burst = 20",
    );
    let admitted = hammer(&dao, 1, Duration::from_secs(3), Duration::from_secs(2));
    let rate = admitted as f64 / 2.0;
    eprintln!("admitted {rate} req/s on one connection");
    assert!(
        (180.0..=220.0).contains(&rate),
        "admitted {rate} req/s, want 200 ± 10 %"
    );
}

#[test]
fn keyed_limits_give_each_key_its_own_budget() {
    let backend = Backend::text("ok");
    let dao = with_filters(
        &backend,
        1,
        "[telemetry]\nmerge_interval_ms = 50",
        "rate_limit_rps = 1\nrate_limit_burst = 3\nrate_limit_key = \"header:x-api-key\"",
    );
    let mut c = Client::connect(dao.local_addr());
    let mut for_key = |key: &str| {
        c.send(format!("GET / HTTP/1.1\r\nHost: h\r\nX-Api-Key: {key}\r\n\r\n").as_bytes());
        c.read(false).status
    };
    let a: Vec<u16> = (0..5).map(|_| for_key("alice")).collect();
    let b: Vec<u16> = (0..5).map(|_| for_key("bob")).collect();
    assert_eq!(a, [200, 200, 200, 429, 429]);
    assert_eq!(b, [200, 200, 200, 429, 429], "bob is not charged for alice");
}

#[test]
fn a_flood_of_keys_does_not_lift_the_limit() {
    let backend = Backend::text("ok");
    let dao = with_filters(&backend, 1, "[telemetry]\nmerge_interval_ms = 50",
        "rate_limit_rps = 1\nrate_limit_burst = 2\nrate_limit_key = \"header:x-api-key\"\nrate_limit_max_keys = 50",
    );
    let mut c = Client::connect(dao.local_addr());
    let mut as_key = |key: &str| {
        c.send(format!("GET / HTTP/1.1\r\nHost: h\r\nX-Api-Key: {key}\r\n\r\n").as_bytes());
        c.read(false).status
    };
    let hot: Vec<u16> = (0..3).map(|_| as_key("hot")).collect();
    assert_eq!(hot, [200, 200, 429]);
    // 2000 distinct keys: each is new (its burst admits it), and the
    // per-core key table stays at 50 entries, evicting the hot key.
    for i in 0..2000 {
        assert_eq!(as_key(&format!("flood-{i}")), 200);
    }
    // An evicted key comes back with one burst at most, then is limited.
    let again: Vec<u16> = (0..4).map(|_| as_key("hot")).collect();
    assert_eq!(&again[2..], [429, 429], "{again:?}");
}
