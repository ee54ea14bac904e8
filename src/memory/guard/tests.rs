//! Guard tests on virtual time: each rule's edge, and the final verdict.

use std::time::{Duration, Instant};

use super::*;

fn spec() -> GuardSpec {
    GuardSpec {
        window: Duration::from_secs(10),
        max_5xx_rate: Some(0.05),
        max_p99: Some(Duration::from_millis(500)),
        min_requests: 100,
    }
}

fn sample(requests: u64, errors_5xx: u64, p99_ms: Option<u64>) -> Sample {
    Sample {
        requests,
        errors_5xx,
        p99_us: p99_ms.map(|ms| ms * 1000),
    }
}

fn at(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

fn failed(v: &Verdict) -> &str {
    match v {
        Verdict::Failed(why) => why,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn quiet_healthy_traffic_passes_at_the_end_of_the_window() {
    let t0 = crate::clock::now();
    let mut g = Guard::new(spec(), t0);
    for i in 1..50 {
        assert_eq!(
            g.observe(at(t0, i * 200), sample(40, 1, Some(20))),
            Verdict::Watching
        );
    }
    assert_eq!(
        g.observe(at(t0, 10_000), sample(40, 1, Some(20))),
        Verdict::Passed
    );
    // Final: a terrible sample afterwards changes nothing.
    assert_eq!(
        g.observe(at(t0, 10_200), sample(40, 40, Some(9000))),
        Verdict::Passed
    );
}

#[test]
fn the_rate_waits_for_min_requests() {
    let t0 = crate::clock::now();
    let mut g = Guard::new(spec(), t0);
    // 50 % errors, but only 60 requests so far: not judged.
    assert_eq!(
        g.observe(at(t0, 200), sample(60, 30, None)),
        Verdict::Watching
    );
    // 100 requests, 30 errors: 30 % > 5 %.
    let v = g.observe(at(t0, 400), sample(40, 0, None));
    assert_eq!(
        failed(&v),
        "5xx rate 30.0% (30 of 100 requests) is above the 5.0% limit, 0.4s after the reload"
    );
    assert_eq!(g.observe(at(t0, 600), sample(1000, 0, None)), v);
}

#[test]
fn the_rate_is_cumulative_and_at_the_limit_passes() {
    let t0 = crate::clock::now();
    let mut g = Guard::new(spec(), t0);
    // One bad interval diluted by the ones before it: 10 of 200 is 5 %,
    // exactly the limit.
    assert_eq!(
        g.observe(at(t0, 200), sample(190, 0, None)),
        Verdict::Watching
    );
    assert_eq!(
        g.observe(at(t0, 400), sample(10, 10, None)),
        Verdict::Watching
    );
    // One more error: 11 of 201.
    let v = g.observe(at(t0, 600), sample(1, 1, None));
    assert!(
        failed(&v).starts_with("5xx rate 5.5% (11 of 201 requests)"),
        "{v:?}"
    );
}

#[test]
fn too_little_traffic_passes() {
    let t0 = crate::clock::now();
    let mut g = Guard::new(spec(), t0);
    assert_eq!(
        g.observe(at(t0, 5_000), sample(10, 10, None)),
        Verdict::Watching
    );
    assert_eq!(
        g.observe(at(t0, 10_000), sample(0, 0, None)),
        Verdict::Passed
    );
}

#[test]
fn one_p99_spike_is_not_enough_two_in_a_row_are() {
    let t0 = crate::clock::now();
    let mut g = Guard::new(spec(), t0);
    assert_eq!(
        g.observe(at(t0, 200), sample(10, 0, Some(900))),
        Verdict::Watching
    );
    assert_eq!(
        g.observe(at(t0, 400), sample(10, 0, Some(30))),
        Verdict::Watching
    );
    assert_eq!(
        g.observe(at(t0, 600), sample(10, 0, Some(700))),
        Verdict::Watching
    );
    // An interval with no requests breaks the run.
    assert_eq!(
        g.observe(at(t0, 800), sample(0, 0, None)),
        Verdict::Watching
    );
    assert_eq!(
        g.observe(at(t0, 1000), sample(10, 0, Some(800))),
        Verdict::Watching
    );
    // At the limit is not above it.
    assert_eq!(
        g.observe(at(t0, 1200), sample(10, 0, Some(500))),
        Verdict::Watching
    );
    assert_eq!(
        g.observe(at(t0, 1400), sample(10, 0, Some(501))),
        Verdict::Watching
    );
    let v = g.observe(at(t0, 1600), sample(10, 0, Some(812)));
    assert_eq!(
        failed(&v),
        "p99 501.0ms then 812.0ms in two intervals in a row is above the 500.0ms limit"
    );
}

#[test]
fn a_failure_in_the_last_sample_wins_over_passing() {
    let t0 = crate::clock::now();
    let mut g = Guard::new(spec(), t0);
    g.observe(at(t0, 9_800), sample(10, 0, Some(600)));
    let v = g.observe(at(t0, 10_000), sample(10, 0, Some(600)));
    assert!(failed(&v).starts_with("p99 600.0ms then 600.0ms"));
}

#[test]
fn only_the_configured_thresholds_apply() {
    let t0 = crate::clock::now();
    let rate_only = GuardSpec {
        max_p99: None,
        ..spec()
    };
    let mut g = Guard::new(rate_only, t0);
    g.observe(at(t0, 200), sample(10, 0, Some(90_000)));
    g.observe(at(t0, 400), sample(10, 0, Some(90_000)));
    assert_eq!(
        g.observe(at(t0, 10_000), sample(0, 0, None)),
        Verdict::Passed
    );

    let p99_only = GuardSpec {
        max_5xx_rate: None,
        ..spec()
    };
    let mut g = Guard::new(p99_only, t0);
    assert_eq!(
        g.observe(at(t0, 200), sample(500, 500, None)),
        Verdict::Watching
    );
    assert_eq!(g.spec().min_requests, 100);
}
