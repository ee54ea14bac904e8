use super::*;
use crate::memory::parse;
use proptest::prelude::*;

/// A config with one route of `policy`, `weights.len()` upstreams and
/// `extra` TOML appended to the route.
fn config(policy: &str, weights: &[u32], extra: &str) -> Config {
    let mut text = format!(
        "[server]\nworkers = 1\n[[routes.rule]]\nname = \"r\"\npolicy = \"{policy}\"\n{extra}\n"
    );
    for (i, w) in weights.iter().enumerate() {
        text += &format!(
            "[[routes.rule.upstreams]]\nname = \"u{i}\"\nurl = \"http://127.0.0.1:{}\"\n",
            1000 + i
        );
        if Policy::ALL
            .iter()
            .any(|(n, p)| *n == policy && p.uses_weights())
        {
            text += &format!("weight = {w}\n");
        }
    }
    parse(&text).unwrap()
}

fn balancer(policy: &str, weights: &[u32], extra: &str) -> Balancer {
    Balancer::new(&config(policy, weights, extra), 0, 0)
}

fn picks(b: &Balancer, n: usize) -> Vec<usize> {
    (0..n).map(|_| b.pick(&Ask::default())).collect()
}

fn counts(b: &Balancer, ups: usize, n: usize) -> Vec<usize> {
    let mut c = vec![0; ups];
    for i in picks(b, n) {
        c[i] += 1;
    }
    c
}

#[test]
fn round_robin_cycles() {
    let b = balancer("round_robin", &[1, 1, 1], "");
    assert_eq!(picks(&b, 7), [0, 1, 2, 0, 1, 2, 0]);
}

#[test]
fn weighted_is_smooth() {
    // nginx's example: weights 5, 1, 1 give a a b a c a a, not a a a a a b c.
    let b = balancer("weighted", &[5, 1, 1], "");
    assert_eq!(picks(&b, 7), [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn random_follows_weights() {
    let b = balancer("random", &[3, 1], "");
    let c = counts(&b, 2, 40_000);
    assert!((29_000..31_000).contains(&c[0]), "{c:?}");
}

#[test]
fn least_request_avoids_the_busy() {
    let b = balancer("least_request", &[1, 1, 1], "");
    for _ in 0..50 {
        b.started(0);
    }
    let c = counts(&b, 3, 3000);
    // Upstream 0 wins only when drawn twice... never: the pair is distinct.
    assert_eq!(c[0], 0, "{c:?}");
}

#[test]
fn peak_ewma_prefers_the_fast_and_penalises_failures() {
    let b = balancer("peak_ewma", &[1, 1], "");
    let now = 1_000_000;
    for _ in 0..10 {
        b.started(0);
        b.done(0, 50_000, Verdict::Ok, now);
        b.started(1);
        b.done(1, 1_000, Verdict::Ok, now);
    }
    let ask = Ask {
        now_us: now,
        ..Ask::default()
    };
    assert_eq!(b.pick(&ask), 1);
    // A fast failure costs the failure penalty (1 s), not its 10 µs.
    b.started(1);
    b.done(1, 10, Verdict::Failed, now);
    assert_eq!(b.pick(&ask), 0);
}

#[test]
fn consistent_hash_is_stable_and_remaps_little() {
    let b5 = balancer("consistent_hash", &[1; 5], "hash_on = \"header:x-user\"");
    let b4 = balancer("consistent_hash", &[1; 4], "hash_on = \"header:x-user\"");
    let mut moved = 0;
    let mut on_removed = 0;
    for k in 0..10_000u32 {
        let ask = Ask {
            key: Some(key_hash(&k.to_le_bytes())),
            ..Ask::default()
        };
        let a = b5.pick(&ask);
        assert_eq!(a, b5.pick(&ask), "same key, same upstream");
        if a == 4 {
            on_removed += 1;
        } else if b4.pick(&ask) != a {
            moved += 1;
        }
    }
    // Removing u4 moves only u4's keys (about a fifth of them).
    assert_eq!(moved, 0);
    assert!((1_500..2_500).contains(&on_removed), "{on_removed}");
}

#[test]
fn consistent_hash_bounded_load_spills_over() {
    let b = balancer(
        "consistent_hash",
        &[1; 4],
        "hash_on = \"client_ip\"\nbounded_load = 1.25",
    );
    let ask = Ask {
        key: Some(key_hash(b"10.0.0.1")),
        ..Ask::default()
    };
    let home = b.pick(&ask);
    // One hot key, 8 requests in flight: the cap is ceil(1.25 × 9 / 4) = 3.
    let mut seen = vec![0; 4];
    for _ in 0..8 {
        let i = b.pick(&ask);
        b.started(i);
        seen[i] += 1;
    }
    assert!(seen[home] <= 3, "{seen:?}");
    assert!(seen.iter().filter(|&&c| c > 0).count() >= 3, "{seen:?}");
}

#[test]
fn resonant_prefers_low_load_and_matching_intent() {
    let cfg = config(
        "resonant",
        &[1, 1, 1],
        "intent = \"realtime\"\nresonant = { candidates = 3 }",
    );
    let mut cfg = cfg;
    cfg.routes[0].upstreams[1].intents = vec!["realtime".into()];
    cfg.routes[0].upstreams[2].intents = vec!["batch".into()];
    cfg.intents = vec!["batch".into(), "realtime".into()];
    let b = Balancer::for_route(&cfg, &cfg.routes[0], 0, 0);
    let realtime = Ask {
        intent: cfg.intent_index(b"realtime"),
        ..Ask::default()
    };
    let batch = Ask {
        intent: cfg.intent_index(b"batch"),
        ..Ask::default()
    };
    // Same load: the intent decides (k = 3 sees all of them).
    assert_eq!(b.pick(&realtime), 1);
    assert_eq!(b.pick(&batch), 2);
    // A heavily loaded match loses to an idle neutral upstream.
    b.observe(0, |i| Seen {
        p95_us: if i == 1 { 500_000.0 } else { 1_000.0 },
        samples: 100,
        error_rate: if i == 1 { 0.9 } else { 0.0 },
        in_flight: if i == 1 { 500.0 } else { 1.0 },
        ..Seen::default()
    });
    assert_eq!(b.pick(&realtime), 0);
    assert!(b.resonant_score(1, &realtime) > b.resonant_score(0, &realtime));
}

#[test]
fn resonant_counts_its_own_sends_since_the_merge() {
    let b = balancer("resonant", &[1, 1], "resonant = { candidates = 2 }");
    let ask = Ask::default();
    let before = b.resonant_score(0, &ask);
    for _ in 0..10 {
        b.started(0);
    }
    assert!(b.resonant_score(0, &ask) > before);
    assert_eq!(b.pick(&ask), 1);
}

#[test]
fn avoid_mask_skips_tried_upstreams() {
    for policy in [
        "round_robin",
        "random",
        "least_request",
        "peak_ewma",
        "resonant",
    ] {
        let b = balancer(policy, &[1, 1, 1], "");
        for _ in 0..50 {
            let i = b.pick(&Ask {
                avoid: 0b011,
                ..Ask::default()
            });
            assert_eq!(i, 2, "{policy}");
        }
    }
}

#[test]
fn consecutive_failures_eject_with_backoff_and_a_cap() {
    let b = balancer(
        "round_robin",
        &[1, 1, 1, 1],
        "[routes.rule.outlier_detection]\nconsecutive_failures = 2\nbase_ejection_time = \"10s\"\nmax_ejection_percent = 50",
    );
    let s = 1_000_000;
    for _ in 0..2 {
        b.started(0);
        b.done(0, 100, Verdict::Failed, s);
    }
    assert!(b.is_ejected(0, s) && b.is_ejected(0, s + 9 * s) && !b.is_ejected(0, s + 11 * s));
    let ask = Ask {
        now_us: s,
        ..Ask::default()
    };
    assert!(!picks_at(&b, &ask, 12).contains(&0));
    // A second upstream may go (50 % of 4), a third may not.
    for u in [1, 2] {
        for _ in 0..2 {
            b.done(u, 100, Verdict::Failed, s);
        }
    }
    assert!(b.is_ejected(1, s) && !b.is_ejected(2, s));
    // Ejected again later: twice as long.
    let later = 20 * s;
    for _ in 0..2 {
        b.done(0, 100, Verdict::Failed, later);
    }
    assert!(b.is_ejected(0, later + 19 * s) && !b.is_ejected(0, later + 21 * s));
}

fn picks_at(b: &Balancer, ask: &Ask, n: usize) -> Vec<usize> {
    (0..n).map(|_| b.pick(ask)).collect()
}

#[test]
fn retry_after_is_honoured() {
    let b = balancer("round_robin", &[1, 1], "");
    b.done(0, 100, Verdict::Throttled(Some(3_000_000)), 1_000_000);
    assert!(b.is_ejected(0, 3_900_000));
    assert!(!b.is_ejected(0, 4_100_000));
}

#[test]
fn panic_mode_routes_to_all_when_too_few_are_healthy() {
    let b = balancer(
        "round_robin",
        &[1, 1, 1, 1],
        "panic_threshold = 50\n[routes.rule.outlier_detection]\nconsecutive_failures = 1\nmax_ejection_percent = 100",
    );
    let now = 5;
    for u in 0..3 {
        b.done(u, 1, Verdict::Failed, now);
    }
    // 3 of 4 ejected (max_ejection_percent lets 3 go, never all 4): 25 %
    // healthy is below 50 %, so all four take traffic.
    let c = {
        let mut c = [0; 4];
        for i in picks_at(
            &b,
            &Ask {
                now_us: now,
                ..Ask::default()
            },
            40,
        ) {
            c[i] += 1;
        }
        c
    };
    assert_eq!(c, [10, 10, 10, 10]);
}

#[test]
fn slow_start_ramps_a_recovered_upstream() {
    let b = balancer(
        "random",
        &[1, 1],
        "slow_start = \"10s\"\n[routes.rule.outlier_detection]\nconsecutive_failures = 1\nbase_ejection_time = \"1s\"",
    );
    b.done(0, 1, Verdict::Failed, 0);
    // Back at 1 s; at 3.5 s the ramp is 25 %: about 0.5 × 0.25 of picks.
    let ask = Ask {
        now_us: 3_500_000,
        ..Ask::default()
    };
    let share = picks_at(&b, &ask, 20_000)
        .iter()
        .filter(|&&i| i == 0)
        .count();
    assert!((2_000..3_000).contains(&share), "{share}");
    let ask = Ask {
        now_us: 20_000_000,
        ..Ask::default()
    };
    let share = picks_at(&b, &ask, 20_000)
        .iter()
        .filter(|&&i| i == 0)
        .count();
    assert!((9_500..10_500).contains(&share), "{share}");
}

proptest! {
    #[test]
    fn weighted_shares_are_exact_per_cycle(weights in proptest::collection::vec(1u32..20, 1..6)) {
        let b = balancer("weighted", &weights, "");
        let total: u32 = weights.iter().sum();
        let c = counts(&b, weights.len(), (total * 3) as usize);
        for (c, w) in c.iter().zip(&weights) {
            prop_assert_eq!(*c as u32, w * 3);
        }
    }
}
