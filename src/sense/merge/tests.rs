use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use proptest::prelude::*;

use super::*;
use crate::sense::record::{Failure, Outcome, Recorder};

fn slots(upstreams: usize) -> Slots {
    let mut text = String::from("[[routes.rule]]\nname = \"r\"\n");
    for i in 0..upstreams {
        text.push_str(&format!(
            "[[routes.rule.upstreams]]\nname = \"u{i}\"\nurl = \"http://127.0.0.1:{}\"\n",
            1000 + i
        ));
    }
    Slots::new(&crate::memory::parse(&text).unwrap())
}

fn shape(slice_intervals: usize, tempo: usize) -> Shape {
    Shape {
        interval: Duration::from_millis(200),
        slice_intervals,
        tempo_intervals: tempo,
        resonance: Resonance {
            latency_ref: Duration::from_millis(100),
            queue_ref: 32,
        },
    }
}

fn outcome(us: u64, status: u16) -> Outcome {
    Outcome {
        method: 0,
        status,
        duration_us: us,
        failure: None,
        responded: true,
        bytes_in: 1,
        bytes_out: 2,
        attempt: Some(0),
    }
}

fn failed() -> Outcome {
    Outcome {
        failure: Some(Failure::Connect),
        responded: false,
        ..outcome(10, 502)
    }
}

proptest! {
    /// Merging what several cores recorded equals recording it all in one
    /// histogram: same counts, same quantiles, same totals.
    #[test]
    fn merge_equals_one_recorder(
        samples in proptest::collection::vec((1u64..5_000_000, 0usize..3, prop::sample::select(vec![200u16, 404, 503])), 1..400),
        intervals in 1usize..4,
    ) {
        let s = slots(1);
        let mut merger = Merger::new(shape(1, 5), s.clone(), 3);
        let mut cores: Vec<Recorder> = (0..3).map(|w| Recorder::new(w, s.len())).collect();
        let mut one = Recorder::new(0, s.len());
        let mut reference = new_histogram();
        for (i, &(us, core, status)) in samples.iter().enumerate() {
            cores[core].record(0, &outcome(us, status), true);
            one.record(0, &outcome(us, status), true);
            reference.record(us).unwrap();
            // Seal at arbitrary points, as the cores' timers would.
            if i % (samples.len() / intervals + 1) == 0 {
                merger.absorb(cores[core].seal());
            }
        }
        for c in &mut cores {
            merger.absorb(c.seal());
        }
        let t = merger.close(Duration::from_secs(1));
        let u = &t.upstreams[0];
        prop_assert_eq!(u.window_requests, samples.len() as u64);
        prop_assert_eq!(u.p50_us, reference.value_at_quantile(0.5));
        prop_assert_eq!(u.p95_us, reference.value_at_quantile(0.95));
        prop_assert_eq!(u.p99_us, reference.value_at_quantile(0.99));
        let mut expected = one.seal().slots.remove(0).counters;
        let mut got = u.totals.clone();
        expected.codes.sort_unstable();
        got.codes.sort_unstable();
        prop_assert_eq!(got, expected);
        let worker_total: u64 = t.workers.iter().map(|w| w.requests).sum();
        prop_assert_eq!(worker_total, samples.len() as u64);
    }

    /// Epochs strictly increase, whatever arrives between closes.
    #[test]
    fn epochs_strictly_increase(reports in proptest::collection::vec(0usize..4, 1..30)) {
        let s = slots(2);
        let mut merger = Merger::new(shape(2, 5), s.clone(), 2);
        let mut rec = Recorder::new(1, s.len());
        let mut last = 0;
        for n in reports {
            for _ in 0..n {
                rec.record(1, &outcome(100, 200), true);
                merger.absorb(rec.seal());
            }
            let t = merger.close(Duration::ZERO);
            prop_assert!(t.epoch > last);
            last = t.epoch;
        }
    }
}

#[test]
fn window_forgets_old_intervals() {
    let s = slots(1);
    // Slices of 2 intervals, 10 slices: a window of 20 intervals.
    let mut merger = Merger::new(shape(2, 5), s.clone(), 1);
    let mut rec = Recorder::new(0, s.len());
    for _ in 0..10 {
        rec.record(0, &outcome(50_000, 500), true);
    }
    merger.absorb(rec.seal());
    let t = merger.close(Duration::ZERO);
    assert_eq!(t.upstreams[0].window_requests, 10);
    assert_eq!(t.upstreams[0].error_rate, 1.0);
    assert!(t.upstreams[0].p95_us >= 49_900);
    let mut last = t;
    for _ in 0..30 {
        rec.record(0, &outcome(1_000, 200), true);
        merger.absorb(rec.seal());
        last = merger.close(Duration::ZERO);
    }
    let u = &last.upstreams[0];
    assert!(
        u.window_requests < 21 && u.window_requests >= 18,
        "{}",
        u.window_requests
    );
    assert_eq!(u.error_rate, 0.0, "the slow errors left the window");
    assert!(u.p99_us <= 1_001, "{}", u.p99_us);
    assert_eq!(u.totals.requests, 40, "totals keep everything");
}

#[test]
fn slow_upstream_resonates_higher() {
    let s = slots(2);
    let mut merger = Merger::new(shape(1, 5), s.clone(), 1);
    let mut rec = Recorder::new(0, s.len());
    for _ in 0..100 {
        rec.record(0, &outcome(1_000, 200), true);
        rec.record(1, &outcome(80_000, 200), true);
    }
    merger.absorb(rec.seal());
    let t = merger.close(Duration::ZERO);
    let (fast, slow) = (&t.upstreams[0], &t.upstreams[1]);
    assert!(slow.p95_us > fast.p95_us * 50);
    assert!(slow.load_resonance > fast.load_resonance + 0.1);
}

#[test]
fn tempo_and_rps() {
    let s = slots(2);
    let mut merger = Merger::new(shape(1, 4), s.clone(), 1);
    let mut rec = Recorder::new(0, s.len());
    let mut t = None;
    for burst in [0, 40, 0, 40] {
        for _ in 0..10 {
            rec.record(0, &outcome(100, 200), true);
        }
        for _ in 0..burst {
            rec.record(1, &outcome(100, 200), true);
        }
        merger.absorb(rec.seal());
        t = Some(merger.close(Duration::ZERO));
    }
    let t = t.unwrap();
    // 10 per 200 ms interval: 50/s, steady.
    assert!((t.upstreams[0].rps - 50.0).abs() < 1e-9);
    assert_eq!(t.upstreams[0].tempo_spikiness, 0.0);
    // 0, 40, 0, 40: mean 20, standard deviation 20.
    assert!((t.upstreams[1].rps - 100.0).abs() < 1e-9);
    assert!((t.upstreams[1].tempo_spikiness - 1.0).abs() < 1e-9);
}

#[test]
fn in_flight_sums_the_cores_latest_gauges() {
    let s = slots(1);
    let mut merger = Merger::new(shape(1, 4), s.clone(), 2);
    let mut a = Recorder::new(0, s.len());
    let mut b = Recorder::new(1, s.len());
    a.begin(0);
    a.begin(0);
    b.begin(0);
    merger.absorb(a.seal());
    merger.absorb(b.seal());
    assert_eq!(merger.close(Duration::ZERO).upstreams[0].in_flight, 3);
    a.end(0);
    merger.absorb(a.seal());
    assert_eq!(merger.close(Duration::ZERO).upstreams[0].in_flight, 2);
}

#[test]
fn consecutive_failures_mark_down_and_a_response_revives() {
    let s = slots(1);
    let mut merger = Merger::new(shape(1, 4), s.clone(), 2);
    let mut a = Recorder::new(0, s.len());
    let mut b = Recorder::new(1, s.len());
    a.record(0, &failed(), true);
    b.record(0, &failed(), true);
    merger.absorb(a.seal());
    merger.absorb(b.seal());
    assert!(!merger.close(Duration::ZERO).upstreams[0].is_down());
    b.record(0, &failed(), true);
    merger.absorb(b.seal());
    let t = merger.close(Duration::ZERO);
    assert!(t.upstreams[0].is_down(), "three in a row over two cores");
    // Nothing new: still down.
    assert!(merger.close(Duration::ZERO).upstreams[0].is_down());
    a.record(0, &outcome(10, 200), true);
    merger.absorb(a.seal());
    assert!(!merger.close(Duration::ZERO).upstreams[0].is_down());
}

#[test]
fn histograms_go_back_to_their_core() {
    let s = slots(1);
    let mut merger = Merger::new(shape(1, 4), s.clone(), 2);
    let mut b = Recorder::new(1, s.len());
    b.record(0, &outcome(10, 200), true);
    merger.absorb(b.seal());
    assert!(merger.take_recycled(0).is_empty());
    let back = merger.take_recycled(1);
    assert_eq!(back.len(), 1);
    assert!(back[0].is_empty(), "handed back emptied");
}

/// Readers loading the published table while the publisher swaps it never
/// see a mix of two tables, and never see the epoch go back.
#[test]
fn readers_never_see_a_torn_table() {
    let s = slots(4);
    let published = Arc::new(ArcSwap::from_pointee(ResonanceTable::empty(&s, 1)));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (p, done) = (published.clone(), done.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                let mut seen = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let t = p.load();
                    assert!(t.epoch >= last, "epoch went back");
                    last = t.epoch;
                    // Every upstream of a table carries its epoch.
                    for u in &t.upstreams {
                        assert_eq!(u.totals.requests, t.epoch, "torn table");
                    }
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    let mut merger = Merger::new(shape(1, 4), s.clone(), 1);
    let mut rec = Recorder::new(0, s.len());
    for _ in 0..500 {
        for slot in 0..s.len() {
            rec.record(slot, &outcome(10, 200), slot != s.local());
        }
        merger.absorb(rec.seal());
        published.store(Arc::new(merger.close(Duration::ZERO)));
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}
