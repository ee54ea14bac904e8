//! Profile tests: tables built by hand, one interval at a time.

use std::time::Duration;

use super::*;
use crate::memory::test_dir::TestDir;
use crate::sense::{ResonanceTable, Slots};

const CONFIG: &str = r#"
[[routes.rule]]
name = "api"
intent = "realtime"
  [routes.rule.match]
  path_prefix = "/api/"
  [[routes.rule.upstreams]]
  name = "a"
  url = "http://127.0.0.1:1"
  [[routes.rule.upstreams]]
  name = "b"
  url = "http://127.0.0.1:2"

[[routes.rule]]
name = "api2"
intent = "realtime"
  [routes.rule.match]
  path_prefix = "/api2/"
  [[routes.rule.upstreams]]
  name = "a"
  url = "http://127.0.0.1:1"

[[routes.rule]]
name = "rest"
  [[routes.rule.upstreams]]
  name = "a"
  url = "http://127.0.0.1:1"
"#;

/// The config's (route, upstream)s: 0 api/a, 1 api/b, 2 api2/a, 3 rest/a;
/// each is at slot index + 1 in the tables (slot 0 is DAO's own).
fn setup() -> (Profiles, ResonanceTable) {
    let config = crate::memory::parse(CONFIG).unwrap();
    let mut p = Profiles::new();
    let slots = Slots::new(&config);
    p.bind(&config, &slots);
    let table = ResonanceTable::empty(&slots, 1);
    (p, table)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One interval of `ms` milliseconds: for each (slot, requests, errors,
/// p50/p95/p99 in ms) the totals grow and the quantiles are set.
fn step(t: &mut ResonanceTable, ms: u64, slots: &[(usize, u64, u64, [u64; 3])]) {
    t.epoch += 1;
    t.uptime += Duration::from_millis(ms);
    for &(index, requests, errors, [p50, p95, p99]) in slots {
        let u = &mut t.upstreams[index + 1];
        u.totals.requests += requests;
        u.totals.errors += errors;
        (u.p50_us, u.p95_us, u.p99_us) = (p50 * 1000, p95 * 1000, p99 * 1000);
    }
}

fn profile<'a>(p: &'a Profiles, upstream: &str, port: u16, intent: &str) -> &'a Profile {
    p.list()
        .find(|x| x.upstream == upstream && x.addr == addr(port) && x.intent == intent)
        .unwrap_or_else(|| panic!("no profile {upstream} {port} {intent:?}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn the_first_table_only_sets_the_start() {
    let (mut p, mut t) = setup();
    step(&mut t, 1000, &[(1, 500, 0, [5, 8, 9])]);
    p.update(&t, 100);
    assert_eq!(p.to_json(), serde_json::json!({ "profiles": [] }));
    assert_eq!(p.seed("b", addr(2), "realtime"), None);
}

#[test]
fn good_intervals_in_the_exact_json_shape() {
    let (mut p, mut t) = setup();
    p.update(&t, 100);
    step(&mut t, 1000, &[(1, 100, 1, [10, 20, 30])]);
    p.update(&t, 101);
    step(&mut t, 2000, &[(1, 100, 0, [20, 30, 40])]);
    p.update(&t, 103);
    assert_eq!(
        p.to_json(),
        serde_json::json!({"profiles": [{
            "upstream": "b",
            "addr": "127.0.0.1:2",
            "intent": "realtime",
            "good": {
                "p50_ms": 15.0, "p95_ms": 25.0, "p99_ms": 35.0,
                "error_rate": 0.005, "rps": 75.0, "intervals": 2
            },
            "bad": null,
            "updated_unix": 103
        }]})
    );
}

#[test]
fn errors_above_one_percent_are_bad() {
    let (mut p, mut t) = setup();
    p.update(&t, 0);
    // Exactly 1 %: good. 2 %: bad.
    step(&mut t, 1000, &[(1, 100, 1, [10, 20, 30])]);
    p.update(&t, 1);
    step(&mut t, 1000, &[(1, 100, 2, [10, 20, 30])]);
    p.update(&t, 2);
    let b = profile(&p, "b", 2, "realtime");
    assert_eq!(b.good.unwrap().intervals, 1);
    let bad = b.bad.unwrap();
    assert_eq!(bad.intervals, 1);
    assert!(close(bad.error_rate, 0.02));
}

#[test]
fn slow_intervals_are_bad_once_the_good_baseline_is_warm() {
    let (mut p, mut t) = setup();
    p.update(&t, 0);
    // Slow from the start: no baseline yet, so it is good.
    step(&mut t, 1000, &[(1, 10, 0, [400, 500, 900])]);
    p.update(&t, 1);
    assert!(profile(&p, "b", 2, "realtime").bad.is_none());

    let (mut p, mut t) = setup();
    p.update(&t, 0);
    for i in 1..WARM {
        step(&mut t, 1000, &[(1, 10, 0, [10, 15, 20])]);
        p.update(&t, i);
    }
    // One interval short of warm: twice the p99 is still good.
    step(&mut t, 1000, &[(1, 10, 0, [10, 15, 60])]);
    p.update(&t, 10);
    assert!(profile(&p, "b", 2, "realtime").bad.is_none());
    for i in 0..WARM {
        step(&mut t, 1000, &[(1, 10, 0, [10, 15, 20])]);
        p.update(&t, 11 + i);
    }
    let good = profile(&p, "b", 2, "realtime").good.unwrap();
    // Above 2 × p99 + 1 ms: bad (and the good baseline stays).
    let limit = BAD_P99_FACTOR * good.p99_ms + BAD_P99_SLACK_MS;
    let above = (limit + 0.5).ceil() as u64;
    step(&mut t, 1000, &[(1, 10, 0, [30, 40, above])]);
    p.update(&t, 30);
    let b = profile(&p, "b", 2, "realtime");
    assert_eq!(b.good.unwrap(), good);
    assert_eq!(b.bad.unwrap().intervals, 1);
    assert!(close(b.bad.unwrap().p99_ms, above as f64));
    // At the limit: good.
    t.epoch += 1;
    t.uptime += Duration::from_secs(1);
    t.upstreams[2].totals.requests += 10;
    t.upstreams[2].p99_us = (limit * 1000.0).floor() as u64;
    p.update(&t, 31);
    let b = profile(&p, "b", 2, "realtime");
    assert_eq!(b.good.unwrap().intervals, good.intervals + 1);
    assert_eq!(b.bad.unwrap().intervals, 1);
}

#[test]
fn averages_are_means_at_first_then_weighted_by_time() {
    let (mut p, mut t) = setup();
    p.update(&t, 0);
    for p50 in [10, 20, 30] {
        step(&mut t, 1000, &[(1, 10, 0, [p50, p50, p50])]);
        p.update(&t, 1);
    }
    assert!(close(
        profile(&p, "b", 2, "realtime").good.unwrap().p50_ms,
        20.0
    ));
    // Long intervals: TAU decides. After one TAU-long interval the
    // average has moved 1 − 1/e of the way (more than the mean's 1/4).
    step(
        &mut t,
        TAU.as_millis() as u64,
        &[(1, 10, 0, [120, 120, 120])],
    );
    p.update(&t, 2);
    let want = 20.0 + (1.0 - (-1.0f64).exp()) * 100.0;
    assert!(close(
        profile(&p, "b", 2, "realtime").good.unwrap().p50_ms,
        want
    ));
}

#[test]
fn routes_sharing_an_upstream_and_intent_share_a_profile() {
    let (mut p, mut t) = setup();
    p.update(&t, 0);
    // api/a and api2/a: one profile, quantiles weighted by requests.
    // rest/a: the same upstream without an intent, a profile of its own.
    step(
        &mut t,
        500,
        &[
            (0, 30, 0, [10, 10, 10]),
            (2, 10, 0, [50, 50, 50]),
            (3, 5, 0, [7, 8, 9]),
        ],
    );
    p.update(&t, 9);
    let a = profile(&p, "a", 1, "realtime").good.unwrap();
    assert!(close(a.p50_ms, 20.0) && close(a.rps, 80.0), "{a:?}");
    let rest = profile(&p, "a", 1, "").good.unwrap();
    assert!(close(rest.p99_ms, 9.0) && close(rest.rps, 10.0), "{rest:?}");
    assert_eq!(p.list().count(), 2);
}

#[test]
fn mismatched_tables_repeats_and_resets_only_restart_the_count() {
    let (mut p, mut t) = setup();
    p.update(&t, 0);
    step(&mut t, 1000, &[(1, 100, 0, [10, 10, 10])]);
    p.update(&t, 1);
    // The same table again: ignored.
    p.update(&t, 2);
    assert_eq!(profile(&p, "b", 2, "realtime").good.unwrap().intervals, 1);
    // A table from another config generation: slot 1 is someone else.
    let mut other = t.clone();
    other.upstreams[2].upstream = "zz".into();
    step(&mut other, 1000, &[(1, 100, 100, [10, 10, 10])]);
    p.update(&other, 3);
    // Totals that went backwards (a new merger): restart, learn nothing.
    let mut reset = t.clone();
    reset.upstreams[2].totals.requests = 5;
    reset.epoch = other.epoch + 1;
    reset.uptime = other.uptime + Duration::from_secs(1);
    p.update(&reset, 4);
    let b = profile(&p, "b", 2, "realtime");
    assert_eq!(
        (b.good.unwrap().intervals, b.bad, b.updated_unix),
        (1, None, 1)
    );
    // Then counting goes on from the new totals.
    let mut next = reset.clone();
    step(&mut next, 1000, &[(1, 20, 10, [10, 10, 10])]);
    p.update(&next, 5);
    let bad = profile(&p, "b", 2, "realtime").bad.unwrap();
    assert!(
        close(bad.error_rate, 0.5) && close(bad.rps, 20.0),
        "{bad:?}"
    );
}

#[test]
fn seeds_blend_both_summaries_by_intervals() {
    let (mut p, mut t) = setup();
    p.update(&t, 0);
    for _ in 0..3 {
        step(&mut t, 1000, &[(1, 100, 0, [10, 10, 10])]);
        p.update(&t, 1);
    }
    step(&mut t, 1000, &[(1, 100, 50, [50, 50, 50])]);
    p.update(&t, 2);
    let seed = p.seed("b", addr(2), "realtime").unwrap();
    assert_eq!(seed.recent_us, 20_000);
    assert!(close(seed.error_rate, 0.125));
    assert_eq!(p.seed("b", addr(2), ""), None);
    assert_eq!(p.seed("b", addr(3), "realtime"), None);
    // Bound but never served: no seed.
    assert_eq!(p.seed("a", addr(1), ""), None);
}

#[test]
fn saved_profiles_load_and_keep_learning() {
    let dir = TestDir::new("profiles");
    let (mut p, mut t) = setup();
    p.update(&t, 0);
    step(
        &mut t,
        1000,
        &[(1, 100, 0, [10, 12, 14]), (3, 10, 5, [1, 2, 3])],
    );
    p.update(&t, 77);
    p.save(dir.path()).unwrap();
    assert!(!dir.path().join(".profiles.json.tmp").exists());

    let (mut loaded, warnings) = Profiles::load(dir.path());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(loaded.to_json(), p.to_json());
    assert_eq!(
        loaded.seed("b", addr(2), "realtime").unwrap().recent_us,
        10_000
    );
    // Bound to the config, it folds new intervals into what it loaded.
    let config = crate::memory::parse(CONFIG).unwrap();
    let slots = Slots::new(&config);
    loaded.bind(&config, &slots);
    let mut t = ResonanceTable::empty(&slots, 1);
    loaded.update(&t, 80);
    step(&mut t, 1000, &[(1, 100, 0, [20, 22, 24])]);
    loaded.update(&t, 81);
    let b = profile(&loaded, "b", 2, "realtime").good.unwrap();
    assert_eq!(b.intervals, 2);
    assert!(close(b.p50_ms, 15.0));
    assert_eq!(loaded.list().count(), 2);
}

#[test]
fn damaged_profile_files_are_reported() {
    let dir = TestDir::new("profiles-bad");
    // Missing: nothing, quietly.
    let (p, warnings) = Profiles::load(dir.path());
    assert!(warnings.is_empty() && p.list().next().is_none());
    let file = dir.path().join("profiles.json");
    for junk in ["", "{\"profiles\": [", "[1, 2]", "\u{0}\u{1}"] {
        std::fs::write(&file, junk).unwrap();
        let (p, warnings) = Profiles::load(dir.path());
        assert_eq!(p.list().count(), 0);
        assert_eq!(warnings.len(), 1, "{junk:?}: {warnings:?}");
        assert!(warnings[0].contains("not a profiles file"), "{warnings:?}");
    }
    // Unreadable (a directory in its place).
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let (_, warnings) = Profiles::load(dir.path());
    assert!(warnings[0].contains("cannot read"), "{warnings:?}");
    std::fs::remove_dir(&file).unwrap();
    // Damaged entries are skipped, good ones kept.
    let good = serde_json::json!({
        "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0,
        "error_rate": 0.0, "rps": 5.0, "intervals": 4
    });
    let mut bad_rate = good.clone();
    bad_rate["error_rate"] = 1.5.into();
    let entry = |upstream: &str, addr: &str, good: serde_json::Value| {
        serde_json::json!({
            "upstream": upstream, "addr": addr, "intent": "",
            "good": good, "bad": null, "updated_unix": 1
        })
    };
    let text = serde_json::json!({"profiles": [
        entry("a", "127.0.0.1:1", good.clone()),
        entry("b", "not an address", good.clone()),
        entry("c", "127.0.0.1:3", bad_rate),
        entry("d", "127.0.0.1:4", serde_json::Value::Null),
        entry("a", "127.0.0.1:1", good.clone()),
        entry("e", "127.0.0.1:5", good),
    ]});
    std::fs::write(&file, text.to_string()).unwrap();
    let (p, warnings) = Profiles::load(dir.path());
    let names: Vec<&str> = p.list().map(|x| x.upstream.as_str()).collect();
    assert_eq!(names, ["a", "e"]);
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    for (w, what) in warnings.iter().zip([
        "profiles[1]",
        "profiles[2]: figures out of range",
        "profiles[3]: no summaries",
        "profiles[4]: a 127.0.0.1:1 \"\" seen twice",
    ]) {
        assert!(w.contains(what), "{w} lacks {what}");
    }
}
