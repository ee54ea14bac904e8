//! What Sense and the access log learn about the request in flight: the
//! upstream it went to, the bytes each way, the status sent, and its
//! duration; recorded once when the request ends, on the upstream of its
//! last attempt. Attempts that were retried are recorded on their own
//! upstreams as they end (`abandon`).

use std::rc::Rc;
use std::time::Instant;

use crate::align::balancer::Verdict;
use crate::align::breaker::Limit;
use crate::clock;
use crate::error::ProxyError;
use crate::runtime::generation::Gen;
use crate::runtime::worker::Worker;
use crate::sense::access_log::Line;
use crate::sense::record::{attempt_result, method_index, Failure, Outcome};

/// One request's figures. Dropped without `finish` (a panic), it still
/// takes its request off the upstream's in-flight gauge.
pub(crate) struct Tally {
    worker: Rc<Worker>,
    /// The generation of the request (its balancers and slots).
    gen: Rc<Gen>,
    /// The upstream's slot once one is picked (counted in flight).
    slot: Option<(usize, usize)>,
    /// Whether the current attempt was sent to that upstream (the circuit
    /// breaker let it through).
    attempted: bool,
    started: Option<Instant>,
    method: u8,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    /// The status of the response head sent to the client (0: none yet).
    pub(crate) status: u16,
    /// The request's own fields of the access log line.
    pub(crate) log_scratch: Vec<u8>,
    /// A 429's `Retry-After`, for the balancer.
    pub(crate) retry_after_us: Option<u64>,
}

impl Tally {
    pub(crate) fn new(worker: Rc<Worker>) -> Tally {
        Tally {
            gen: worker.gen(),
            worker,
            slot: None,
            attempted: false,
            started: None,
            method: 0,
            bytes_in: 0,
            bytes_out: 0,
            status: 0,
            log_scratch: Vec::new(),
            retry_after_us: None,
        }
    }

    /// A request head is complete: the clock starts. The request runs
    /// under `gen`.
    pub(crate) fn start(&mut self, method: &[u8], gen: &Rc<Gen>) {
        if !Rc::ptr_eq(&self.gen, gen) {
            self.gen = gen.clone();
        }
        self.slot = None;
        self.attempted = false;
        self.bytes_in = 0;
        self.bytes_out = 0;
        self.status = 0;
        self.retry_after_us = None;
        self.method = method_index(method);
        self.started = self.gen.timed.then(clock::now);
    }

    /// The request goes to upstream `upstream` of route `route` (the
    /// balancer counts it in flight already).
    pub(crate) fn picked(&mut self, route: usize, upstream: usize) {
        if let Some(rec) = &self.worker.recorder {
            rec.borrow_mut().begin(self.gen.slots.of(route, upstream));
        }
        self.slot = Some((route, upstream));
        self.attempted = false;
    }

    /// The attempt goes out to the picked upstream.
    pub(crate) fn sending(&mut self) {
        self.attempted = true;
    }

    /// The current attempt ended with `error`, or with a response head of
    /// `status`, and the request is retried: recorded on its upstream,
    /// which no longer counts the request in flight.
    pub(crate) fn abandon(&mut self, error: Option<&ProxyError>, status: u16) {
        let Some((r, u)) = self.slot.take() else {
            return;
        };
        let (w, g) = (&self.worker, &self.gen);
        // Not sent (the breaker refused): no evidence about the upstream.
        let verdict = match (self.attempted, error) {
            (false, _) => Verdict::Unknown,
            (true, Some(_)) => Verdict::Failed,
            (true, None) if status >= 500 => Verdict::Failed,
            (true, None) => Verdict::Ok,
        };
        g.balancers[r].done(u, 0, verdict, w.coarse_us());
        let Some(rec) = &w.recorder else {
            return;
        };
        let slot = g.slots.of(r, u);
        let mut rec = rec.borrow_mut();
        if self.attempted {
            rec.abandoned(slot, attempt_result(status, error.and_then(failure_of)));
        }
        rec.end(slot);
    }

    /// A failed attempt was retried (`true`), or the retry budget refused.
    pub(crate) fn retry(&mut self, made: bool) {
        if let (Some((r, u)), Some(rec)) = (self.slot, &self.worker.recorder) {
            rec.borrow_mut().retry(self.gen.slots.of(r, u), made);
        }
    }

    /// The picked upstream's circuit breaker refused the request.
    pub(crate) fn breaker_open(&mut self, limit: Limit) {
        if let (Some((r, u)), Some(rec)) = (self.slot, &self.worker.recorder) {
            rec.borrow_mut()
                .breaker_open(self.gen.slots.of(r, u), limit as usize);
        }
    }

    /// Records the request once its answer is decided: `error` is why it
    /// failed, if it did; `status` is what the client got (0: nothing, the
    /// client or the upstream went away).
    pub(crate) fn finish(&mut self, status: u16, error: Option<&ProxyError>, client: &str) {
        let (w, g) = (self.worker.clone(), self.gen.clone());
        let duration_us = self.started.map_or(0, |t| {
            clock::now().saturating_duration_since(t).as_micros() as u64
        });
        if let Some((r, u)) = self.slot {
            let verdict = match (status, error) {
                (_, Some(e)) if e.origin() == crate::error::Origin::Downstream => Verdict::Unknown,
                (_, Some(_)) => Verdict::Failed,
                (0, None) => Verdict::Unknown,
                (429, None) => Verdict::Throttled(self.retry_after_us),
                (s, None) if s >= 500 => Verdict::Failed,
                _ => Verdict::Ok,
            };
            g.balancers[r].done(u, duration_us, verdict, w.coarse_us());
        }
        if !g.timed {
            self.slot = None;
            return;
        }
        let failure = error.and_then(failure_of);
        // The last attempt's result: the head the client got, else why the
        // upstream failed, else the client's doing.
        let attempt = self
            .attempted
            .then(|| attempt_result(self.status, failure.filter(|_| self.status == 0)));
        let status = match (status, error) {
            (0, Some(e)) if e.origin() == crate::error::Origin::Downstream => 499,
            (0, Some(e)) => e.status(),
            (0, None) => 499,
            (s, _) => s,
        };
        let slot = self.slot.take();
        let (index, names) = match slot {
            Some((r, u)) => {
                let i = g.slots.of(r, u);
                (i, g.slots.names(i))
            }
            None => (g.slots.local(), g.slots.names(g.slots.local())),
        };
        if let Some(rec) = &w.recorder {
            let outcome = Outcome {
                method: self.method,
                status,
                duration_us,
                failure,
                responded: self.status != 0,
                bytes_in: self.bytes_in,
                bytes_out: self.bytes_out,
                attempt,
            };
            let mut rec = rec.borrow_mut();
            rec.record(index, &outcome, slot.is_some());
            if slot.is_some() {
                rec.end(index);
            }
        }
        if let Some(log) = &w.access_log {
            let line = Line {
                route: &names.0,
                upstream: &names.1,
                status,
                duration_us,
                bytes: self.bytes_out,
                client,
            };
            log.write(&self.log_scratch, &line);
        }
    }
}

/// The gateway failure an error stands for, if the upstream failed.
fn failure_of(e: &ProxyError) -> Option<Failure> {
    match e {
        ProxyError::Connect(_) => Some(Failure::Connect),
        ProxyError::UpstreamTimeout => Some(Failure::Timeout),
        ProxyError::UpstreamBeforeResponse(_) | ProxyError::UpstreamMidResponse(_) => {
            Some(Failure::Reset)
        }
        ProxyError::BadResponse(_) => Some(Failure::Invalid),
        _ => None,
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if let Some((r, u)) = self.slot.take() {
            let (w, g) = (&self.worker, &self.gen);
            g.balancers[r].done(u, 0, Verdict::Unknown, w.coarse_us());
            if let Some(rec) = &w.recorder {
                rec.borrow_mut().end(g.slots.of(r, u));
            }
        }
    }
}
