//! The event loop: open-loop arrivals spread over simulated cores, each
//! core with its own real `Balancer` and Sense `Recorder`; every merge
//! interval the real `Merger` builds the resonance table and each core's
//! balancers read it, exactly as workers do. Retries, per-try and client
//! timeouts follow the proxy's rules. Time is virtual (µs).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use dao::align::balancer::{Ask, Balancer, Seen, Verdict};
use dao::memory::Config;
use dao::sense::merge::{Merger, Shape};
use dao::sense::record::{attempt_result, Failure, Outcome, Recorder};
use dao::sense::table::Resonance;
use dao::sense::Slots;
use hdrhistogram::Histogram;

use crate::model::{Backend, Job, Rng};
use crate::scenarios::Scenario;

/// Who picks the backend.
#[derive(Debug, Clone)]
pub enum Chooser {
    /// DAO's balancer with this policy (config name).
    Policy(String),
    /// Knows every queue and condition: least expected completion time.
    Oracle,
}

/// What one run measured, per request class.
pub struct ClassStats {
    pub latency: Histogram<u64>,
    pub requests: u64,
    pub ok: u64,
    /// Succeeded within the class's latency target, if it has one.
    pub on_target: u64,
}

pub struct RunStats {
    pub classes: Vec<ClassStats>,
    /// Attempts answered 503 by a failing backend (before any retry).
    pub failed_attempts: u64,
    pub attempts: u64,
}

impl RunStats {
    pub fn all(&self) -> ClassStats {
        let mut latency = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        let (mut requests, mut ok, mut on_target) = (0, 0, 0);
        for c in &self.classes {
            latency.add(&c.latency).unwrap();
            requests += c.requests;
            ok += c.ok;
            on_target += c.on_target;
        }
        ClassStats {
            latency,
            requests,
            ok,
            on_target,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Merge,
    Arrive,
    Finish {
        backend: usize,
        job: (usize, u32),
        fail: bool,
    },
    TryTimeout {
        request: usize,
        attempt: u32,
    },
    ClientTimeout {
        request: usize,
    },
}

struct Request {
    core: usize,
    class: usize,
    arrival: u64,
    attempt: u32,
    backend: usize,
    attempt_start: u64,
    avoid: u64,
    done: bool,
}

struct Core {
    balancer: Option<Balancer>,
    recorder: Recorder,
    active: u32,
    retries: u32,
}

struct Sim<'a> {
    scn: &'a Scenario,
    config: Config,
    slots: Slots,
    backends: Vec<Backend>,
    cores: Vec<Core>,
    requests: Vec<Request>,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    rng: Rng,
    intents: Vec<Option<usize>>,
    stats: RunStats,
    oracle: bool,
}

/// Runs `scn` with `chooser` and `seed`; `merge_us` overrides the merge
/// interval (for the sensitivity scenario).
pub fn run(scn: &Scenario, chooser: &Chooser, seed: u64) -> RunStats {
    let policy = match chooser {
        Chooser::Policy(p) => p.as_str(),
        Chooser::Oracle => "round_robin",
    };
    let config = scn.config(policy);
    let slots = Slots::new(&config);
    let cores = (0..scn.cores)
        .map(|c| Core {
            balancer: matches!(chooser, Chooser::Policy(_)).then(|| Balancer::new(&config, 0, c)),
            recorder: Recorder::new(c, slots.len()),
            active: 0,
            retries: 0,
        })
        .collect();
    let intents = scn
        .classes
        .iter()
        .map(|c| {
            c.intent
                .as_deref()
                .and_then(|i| config.intent_index(i.as_bytes()))
        })
        .collect();
    let mut sim = Sim {
        scn,
        slots,
        backends: scn.backends.iter().cloned().map(Backend::new).collect(),
        cores,
        requests: Vec::new(),
        events: BinaryHeap::new(),
        seq: 0,
        rng: Rng::new(seed),
        intents,
        stats: RunStats {
            classes: scn
                .classes
                .iter()
                .map(|_| ClassStats {
                    latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap(),
                    requests: 0,
                    ok: 0,
                    on_target: 0,
                })
                .collect(),
            failed_attempts: 0,
            attempts: 0,
        },
        oracle: matches!(chooser, Chooser::Oracle),
        config,
    };
    sim.go();
    sim.stats
}

impl Sim<'_> {
    fn at(&mut self, t: u64, e: Event) {
        self.seq += 1;
        self.events.push(Reverse((t, self.seq, e)));
    }

    fn go(&mut self) {
        let telemetry = &self.config.telemetry;
        let shape = Shape::new(
            Duration::from_micros(self.scn.merge_us),
            telemetry.window,
            telemetry.tempo_intervals,
            Resonance {
                latency_ref: telemetry.latency_ref,
                queue_ref: telemetry.queue_ref,
            },
        );
        let mut merger = Merger::new(shape, self.slots.clone(), self.scn.cores);
        self.at(self.scn.merge_us, Event::Merge);
        let first = self.next_arrival(0);
        self.at(first, Event::Arrive);
        while let Some(Reverse((t, _, e))) = self.events.pop() {
            if t > self.scn.duration_us && matches!(e, Event::Arrive | Event::Merge) {
                continue;
            }
            match e {
                Event::Merge => self.merge(&mut merger, t),
                Event::Arrive => {
                    self.arrive(t);
                    let next = self.next_arrival(t);
                    self.at(next, Event::Arrive);
                }
                Event::Finish { backend, job, fail } => self.finish(backend, job, fail, t),
                Event::TryTimeout { request, attempt } => self.try_timeout(request, attempt, t),
                Event::ClientTimeout { request } => self.client_timeout(request, t),
            }
        }
    }

    fn next_arrival(&mut self, t: u64) -> u64 {
        let rate = (self.scn.rate)(t).max(1e-3);
        t + self.rng.exp(1e6 / rate).max(1.0) as u64
    }

    fn merge(&mut self, merger: &mut Merger, t: u64) {
        for (c, core) in self.cores.iter_mut().enumerate() {
            merger.absorb(core.recorder.seal());
            for h in merger.take_recycled(c) {
                core.recorder.give_back(h);
            }
        }
        let table = merger.close(Duration::from_micros(t));
        for core in &self.cores {
            if let Some(b) = &core.balancer {
                b.observe(t, |i| Seen::of(&table.upstreams[self.slots.of(0, i)]));
            }
        }
        self.at(t + self.scn.merge_us, Event::Merge);
    }

    fn arrive(&mut self, t: u64) {
        let core = self.rng.below(self.scn.cores);
        let mut r = self.rng.unit();
        let class = self
            .scn
            .classes
            .iter()
            .position(|c| {
                r -= c.share;
                r <= 0.0
            })
            .unwrap_or(self.scn.classes.len() - 1);
        let id = self.requests.len();
        self.requests.push(Request {
            core,
            class,
            arrival: t,
            attempt: 0,
            backend: 0,
            attempt_start: t,
            avoid: 0,
            done: false,
        });
        self.cores[core].active += 1;
        self.at(
            t + self.scn.client_timeout_us,
            Event::ClientTimeout { request: id },
        );
        self.dispatch(id, t);
    }

    fn dispatch(&mut self, id: usize, t: u64) {
        let (core, avoid, class) = {
            let r = &self.requests[id];
            (r.core, r.avoid, r.class)
        };
        let b = if self.oracle {
            self.oracle_pick(avoid, t)
        } else {
            let ask = Ask {
                intent: self.intents[class],
                key: Some(self.rng.next_u64()),
                avoid,
                now_us: t,
            };
            let bal = self.cores[core].balancer.as_ref().unwrap();
            let b = bal.pick(&ask);
            bal.started(b);
            b
        };
        self.cores[core].recorder.begin(self.slots.of(0, b));
        self.stats.attempts += 1;
        let r = &mut self.requests[id];
        r.backend = b;
        r.attempt_start = t;
        let job = Job {
            request: id,
            attempt: r.attempt,
        };
        if let Some(ptt) = self.scn.retry.per_try_us {
            let attempt = r.attempt;
            self.at(
                t + ptt,
                Event::TryTimeout {
                    request: id,
                    attempt,
                },
            );
        }
        let backend = &mut self.backends[b];
        if backend.busy < backend.spec.servers {
            self.start(b, job, t);
        } else {
            backend.queue.push_back(job);
        }
    }

    fn oracle_pick(&mut self, avoid: u64, t: u64) -> usize {
        let mut best = Vec::new();
        let mut best_cost = f64::INFINITY;
        for (i, b) in self.backends.iter().enumerate() {
            if i < 64 && avoid & (1 << i) != 0 {
                continue;
            }
            let c = b.expected_completion(t);
            if c < best_cost - 1e-9 {
                best_cost = c;
                best.clear();
                best.push(i);
            } else if (c - best_cost).abs() <= 1e-9 {
                best.push(i);
            }
        }
        if best.is_empty() {
            return self.rng.below(self.backends.len());
        }
        best[self.rng.below(best.len())]
    }

    fn start(&mut self, b: usize, job: Job, t: u64) {
        let (dur, fail) = self.backends[b].service(t, &mut self.rng);
        self.backends[b].busy += 1;
        self.at(
            t + dur,
            Event::Finish {
                backend: b,
                job: (job.request, job.attempt),
                fail,
            },
        );
    }

    fn finish(&mut self, b: usize, (id, attempt): (usize, u32), fail: bool, t: u64) {
        self.backends[b].busy -= 1;
        if let Some(next) = self.backends[b].queue.pop_front() {
            self.start(b, next, t);
        }
        let r = &self.requests[id];
        if r.done || r.attempt != attempt {
            return; // given up on: the backend worked for nobody
        }
        if fail {
            self.stats.failed_attempts += 1;
        }
        let latency = t - r.attempt_start;
        let status = if fail { 503 } else { 200 };
        self.attempt_ended(id, latency, status, None, t);
        if fail && self.scn.retry.on_5xx && self.can_retry(id) {
            self.retry(id, t);
        } else {
            self.complete(id, t, !fail);
        }
    }

    fn try_timeout(&mut self, id: usize, attempt: u32, t: u64) {
        let r = &self.requests[id];
        if r.done || r.attempt != attempt {
            return;
        }
        let latency = t - r.attempt_start;
        self.attempt_ended(id, latency, 504, Some(Failure::Timeout), t);
        if self.can_retry(id) {
            self.retry(id, t);
        } else {
            self.complete(id, t, false);
        }
    }

    fn client_timeout(&mut self, id: usize, t: u64) {
        let r = &self.requests[id];
        if r.done {
            return;
        }
        let latency = t - r.attempt_start;
        self.attempt_ended(id, latency, 504, Some(Failure::Timeout), t);
        self.complete(id, t, false);
    }

    /// The balancer and Sense learn how an attempt ended.
    fn attempt_ended(
        &mut self,
        id: usize,
        latency: u64,
        status: u16,
        failure: Option<Failure>,
        t: u64,
    ) {
        let r = &self.requests[id];
        let core = &mut self.cores[r.core];
        let verdict = if status >= 500 {
            Verdict::Failed
        } else {
            Verdict::Ok
        };
        if let Some(b) = &core.balancer {
            b.done(r.backend, latency, verdict, t);
        }
        let slot = self.slots.of(0, r.backend);
        core.recorder.record(
            slot,
            &Outcome {
                method: 0,
                status,
                duration_us: latency,
                failure,
                responded: failure.is_none(),
                bytes_in: 0,
                bytes_out: 0,
                attempt: Some(attempt_result(status, failure)),
            },
            true,
        );
        core.recorder.end(slot);
    }

    /// The proxy's retry rule: attempts left, and the per-core budget
    /// (retries in flight ≤ max(budget_min, budget_percent × active)).
    fn can_retry(&self, id: usize) -> bool {
        let r = &self.requests[id];
        let core = &self.cores[r.core];
        let retry = &self.scn.retry;
        let budget = (f64::from(core.active) * retry.budget_percent / 100.0) as u32;
        r.attempt < retry.attempts && core.retries < budget.max(retry.budget_min)
    }

    fn retry(&mut self, id: usize, t: u64) {
        let r = &mut self.requests[id];
        if r.attempt == 0 {
            self.cores[r.core].retries += 1;
        }
        if r.backend < 64 {
            r.avoid |= 1 << r.backend;
        }
        r.attempt += 1;
        self.dispatch(id, t);
    }

    fn complete(&mut self, id: usize, t: u64, ok: bool) {
        let r = &mut self.requests[id];
        r.done = true;
        let core = &mut self.cores[r.core];
        core.active -= 1;
        if r.attempt > 0 {
            core.retries -= 1;
        }
        if r.arrival < self.scn.warmup_us {
            return;
        }
        let latency = t - r.arrival;
        let class = &self.scn.classes[r.class];
        let s = &mut self.stats.classes[r.class];
        s.requests += 1;
        s.latency.saturating_record(latency.max(1));
        let ok = ok && latency <= self.scn.client_timeout_us;
        if ok {
            s.ok += 1;
            if class.target_us.is_none_or(|target| latency <= target) {
                s.on_target += 1;
            }
        }
    }
}
