//! Per-core recording: what one worker saw, per (route, upstream) slot, in
//! plain memory of its own (no atomics, no locks), sealed into a `Report`
//! for the control thread once per merge interval.

use std::net::SocketAddr;

use hdrhistogram::Histogram;

use super::tls::{Handshake, HandshakeFailure, TlsTable};

/// Largest latency a histogram tracks (100 s); longer ones count as 100 s.
pub const MAX_US: u64 = 100_000_000;

/// Upper bounds, in microseconds, of the exported duration buckets
/// (`http_request_duration_seconds`); a last bucket holds the rest (+Inf).
pub const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Method labels; anything else is `OTHER`, so a client cannot grow the
/// label set.
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "OTHER",
];

/// The label index of a request method.
pub fn method_index(method: &[u8]) -> u8 {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| m.as_bytes() == method)
        .unwrap_or(METHODS.len() - 1) as u8
}

/// A new, empty latency histogram: 1 µs to `MAX_US`, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant bounds are valid")
}

/// A gateway failure: the upstream could not be used for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connecting failed (refused, unreachable).
    Connect = 0,
    /// Connecting or waiting for the response took too long.
    Timeout = 1,
    /// The connection was reset or closed before or during the response.
    Reset = 2,
    /// The upstream's response was not valid HTTP.
    Invalid = 3,
}

impl Failure {
    /// Label values, indexed by the discriminant.
    pub const NAMES: [&'static str; 4] = ["connect", "timeout", "reset", "invalid"];
}

/// Label values of `dao_upstream_attempts_total`'s `result`: the status
/// class of the response head the attempt got, else how it failed
/// (`client`: the client failed or went away during the attempt).
pub const ATTEMPT_RESULTS: [&str; 9] = [
    "2xx", "3xx", "4xx", "5xx", "connect", "timeout", "reset", "invalid", "client",
];

/// The `ATTEMPT_RESULTS` index of an attempt that got a response head with
/// `status` (0: none) or failed with `failure`.
pub fn attempt_result(status: u16, failure: Option<Failure>) -> usize {
    match (failure, status) {
        (Some(f), _) => 4 + f as usize,
        (None, 100..=299) => 0,
        (None, 300..=399) => 1,
        (None, 400..=499) => 2,
        (None, 500..=599) => 3,
        (None, _) => 8,
    }
}

/// What happened to one request, as far as Sense cares.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The method's label index (`method_index`).
    pub method: u8,
    /// The status the client got (499 when it went away first).
    pub status: u16,
    /// From the complete request head to the end of the response.
    pub duration_us: u64,
    /// A gateway failure, if the upstream failed.
    pub failure: Option<Failure>,
    /// Whether the upstream sent a response head.
    pub responded: bool,
    /// Bytes read from the client (head and body).
    pub bytes_in: u64,
    /// Bytes written to the client.
    pub bytes_out: u64,
    /// The request's last attempt (`attempt_result` index), if one was
    /// sent to the upstream.
    pub attempt: Option<usize>,
}

/// Counters that only grow; merged by addition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests finished.
    pub requests: u64,
    /// Requests that ended in a 5xx or a gateway failure.
    pub errors: u64,
    /// Gateway failures by kind (`Failure` discriminant).
    pub failures: [u64; 4],
    /// Bytes from clients.
    pub bytes_in: u64,
    /// Bytes to clients.
    pub bytes_out: u64,
    /// Durations per `BUCKETS_US` bucket (not cumulative), +Inf last.
    pub buckets: [u64; BUCKETS_US.len() + 1],
    /// Sum of durations, in microseconds.
    pub sum_us: u64,
    /// Requests per (method index, status), in first-seen order.
    pub codes: Vec<(u8, u16, u64)>,
    /// Requests sent here although active health checks had every
    /// upstream of the route down ("panic mode": all rather than none).
    pub panic_picks: u64,
    /// Attempts sent to the upstream, by `ATTEMPT_RESULTS` index (the final
    /// attempt of each request included).
    pub attempts: [u64; ATTEMPT_RESULTS.len()],
    /// Retries made after an attempt on this upstream failed.
    pub retries: u64,
    /// Retries the budget refused after an attempt on this upstream failed.
    pub retries_refused: u64,
    /// Requests the circuit breaker refused, by `Limit` discriminant.
    pub breaker_open: [u64; 3],
}

impl Counters {
    /// Counts one request (its duration too when `timed`).
    fn count(&mut self, o: &Outcome, timed: bool) {
        self.requests += 1;
        if o.status >= 500 || o.failure.is_some() {
            self.errors += 1;
        }
        if let Some(f) = o.failure {
            self.failures[f as usize] += 1;
        }
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        if timed {
            let b = BUCKETS_US.partition_point(|&le| le < o.duration_us);
            self.buckets[b] += 1;
            self.sum_us += o.duration_us;
        }
        self.bump(o.method, o.status, 1);
        if let Some(r) = o.attempt {
            self.attempts[r] += 1;
        }
    }

    fn bump(&mut self, method: u8, status: u16, n: u64) {
        match self
            .codes
            .iter_mut()
            .find(|(m, s, _)| *m == method && *s == status)
        {
            Some(c) => c.2 += n,
            None => self.codes.push((method, status, n)),
        }
    }

    /// Adds another set of counters to this one.
    pub fn add(&mut self, other: &Counters) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (a, b) in self.failures.iter_mut().zip(other.failures) {
            *a += b;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.sum_us += other.sum_us;
        for &(m, s, n) in &other.codes {
            self.bump(m, s, n);
        }
        self.panic_picks += other.panic_picks;
        for (a, b) in self.attempts.iter_mut().zip(other.attempts) {
            *a += b;
        }
        self.retries += other.retries;
        self.retries_refused += other.retries_refused;
        for (a, b) in self.breaker_open.iter_mut().zip(other.breaker_open) {
            *a += b;
        }
    }
}

/// One slot's share of a report.
#[derive(Debug)]
pub struct SlotReport {
    /// The slot (see `Slots`).
    pub slot: usize,
    /// What the interval added.
    pub counters: Counters,
    /// The interval's latencies, when any were recorded.
    pub histogram: Option<Histogram<u64>>,
    /// Gateway failures in a row since this core's last response from the
    /// upstream.
    pub fail_streak: u32,
    /// Whether the upstream responded at least once in the interval.
    pub responded: bool,
}

/// What one core hands the control thread every merge interval.
#[derive(Debug)]
pub struct Report {
    /// The worker's index.
    pub worker: usize,
    /// The slots that saw requests.
    pub slots: Vec<SlotReport>,
    /// Requests in flight now, per slot (a gauge, not a delta).
    pub in_flight: Vec<u32>,
    /// Client connections open now (a gauge).
    pub connections: u64,
    /// WebSocket tunnels open now (a gauge).
    pub tunnels: u64,
    /// Bytes relayed through tunnels in the interval, both ways.
    pub tunnel_bytes: u64,
    /// TLS handshakes in the interval, per listener.
    pub tls: TlsTable,
    /// Requests finished in the interval, all slots together.
    pub requests: u64,
    /// Rate-limit demand in the interval, by `RateSpec::index` of the
    /// config `config_epoch`.
    pub limits: Vec<crate::flow::ratelimit::Demand>,
    /// The epoch of the config the worker runs (0 before any is applied).
    pub config_epoch: u64,
}

#[derive(Debug, Default)]
struct Slot {
    counters: Counters,
    histogram: Option<Histogram<u64>>,
    in_flight: u32,
    fail_streak: u32,
    responded: bool,
    touched: bool,
}

/// The recording side of one worker.
#[derive(Debug)]
pub struct Recorder {
    worker: usize,
    slots: Vec<Slot>,
    requests: u64,
    connections: u64,
    tunnels: u64,
    tunnel_bytes: u64,
    tls: TlsTable,
    /// Emptied histograms given back by the control thread.
    spare: Vec<Histogram<u64>>,
}

impl Recorder {
    /// A recorder for `slots` slots.
    pub fn new(worker: usize, slots: usize) -> Recorder {
        Recorder {
            worker,
            slots: (0..slots).map(|_| Slot::default()).collect(),
            requests: 0,
            connections: 0,
            tunnels: 0,
            tunnel_bytes: 0,
            tls: TlsTable::default(),
            spare: Vec::new(),
        }
    }

    /// Makes room for slots handed out by a reload (kept ones stay).
    pub fn grow(&mut self, slots: usize) {
        if slots > self.slots.len() {
            self.slots.resize_with(slots, Slot::default);
        }
    }

    /// A request was handed to the upstream of `slot`.
    pub fn begin(&mut self, slot: usize) {
        self.slots[slot].in_flight += 1;
    }

    /// A request went to `slot` although every upstream of its route was
    /// down by active health check.
    pub fn panic_pick(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.touched = true;
        s.counters.panic_picks += 1;
    }

    /// The request handed to `slot` ended (recorded or not).
    pub fn end(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.in_flight = s.in_flight.saturating_sub(1);
    }

    /// Records a finished request. `timed` slots (real upstreams) keep its
    /// latency; the slot of requests answered by DAO itself only counts.
    pub fn record(&mut self, slot: usize, o: &Outcome, timed: bool) {
        self.requests += 1;
        let s = &mut self.slots[slot];
        s.touched = true;
        s.counters.count(o, timed);
        if timed {
            let spare = &mut self.spare;
            s.histogram
                .get_or_insert_with(|| spare.pop().unwrap_or_else(new_histogram))
                .saturating_record(o.duration_us.clamp(1, MAX_US));
        }
        if o.failure.is_some() {
            s.fail_streak = s.fail_streak.saturating_add(1);
        } else if o.responded {
            s.fail_streak = 0;
            s.responded = true;
        }
    }

    /// Records an attempt on `slot`'s upstream that the request did not
    /// keep (it was retried; `result` is an `attempt_result` index). Its
    /// failure counts in the upstream's failures and health streak even
    /// though the request then succeeded elsewhere; a response resets the
    /// streak. The request itself is recorded once, where it ends.
    pub fn abandoned(&mut self, slot: usize, result: usize) {
        let s = &mut self.slots[slot];
        s.touched = true;
        s.counters.attempts[result] += 1;
        if let Some(f) = result.checked_sub(4).filter(|&f| f < Failure::NAMES.len()) {
            s.counters.failures[f] += 1;
            s.fail_streak = s.fail_streak.saturating_add(1);
        } else if result < 4 {
            s.fail_streak = 0;
            s.responded = true;
        }
    }

    /// An attempt on `slot`'s upstream failed and the request was retried
    /// (`true`) or the retry budget refused (`false`).
    pub fn retry(&mut self, slot: usize, made: bool) {
        let s = &mut self.slots[slot];
        s.touched = true;
        if made {
            s.counters.retries += 1;
        } else {
            s.counters.retries_refused += 1;
        }
    }

    /// `slot`'s circuit breaker refused a request at `limit` (a `Limit`
    /// discriminant).
    pub fn breaker_open(&mut self, slot: usize, limit: usize) {
        let s = &mut self.slots[slot];
        s.touched = true;
        s.counters.breaker_open[limit] += 1;
    }

    /// A client connection opened.
    pub fn connection_opened(&mut self) {
        self.connections += 1;
    }

    /// A client connection closed.
    pub fn connection_closed(&mut self) {
        self.connections = self.connections.saturating_sub(1);
    }

    /// A WebSocket tunnel opened (its request was recorded at the 101).
    pub fn tunnel_opened(&mut self) {
        self.tunnels += 1;
    }

    /// A WebSocket tunnel closed.
    pub fn tunnel_closed(&mut self) {
        self.tunnels = self.tunnels.saturating_sub(1);
    }

    /// `n` bytes went through a tunnel, either way.
    pub fn tunnel_bytes(&mut self, n: u64) {
        self.tunnel_bytes += n;
    }

    /// A TLS handshake on the listener bound to `listener` completed.
    pub fn tls_completed(&mut self, listener: SocketAddr, h: &Handshake) {
        self.tls.of(listener).completed(h);
    }

    /// A TLS handshake on the listener bound to `listener` failed.
    pub fn tls_failed(&mut self, listener: SocketAddr, why: HandshakeFailure) {
        self.tls.of(listener).failed(why);
    }

    /// Takes back an emptied histogram for reuse.
    pub fn give_back(&mut self, mut h: Histogram<u64>) {
        if self.spare.len() < self.slots.len() {
            h.reset();
            self.spare.push(h);
        }
    }

    /// Seals the interval: its deltas move into the report, gauges are
    /// copied.
    pub fn seal(&mut self) -> Report {
        let mut slots = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if !s.touched {
                continue;
            }
            s.touched = false;
            slots.push(SlotReport {
                slot: i,
                counters: std::mem::take(&mut s.counters),
                histogram: s.histogram.take(),
                fail_streak: s.fail_streak,
                responded: std::mem::take(&mut s.responded),
            });
        }
        Report {
            worker: self.worker,
            slots,
            in_flight: self.slots.iter().map(|s| s.in_flight).collect(),
            connections: self.connections,
            tunnels: self.tunnels,
            tunnel_bytes: std::mem::take(&mut self.tunnel_bytes),
            tls: std::mem::take(&mut self.tls),
            requests: std::mem::take(&mut self.requests),
            limits: Vec::new(),
            config_epoch: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(status: u16, us: u64) -> Outcome {
        Outcome {
            method: 0,
            status,
            duration_us: us,
            failure: None,
            responded: true,
            bytes_in: 10,
            bytes_out: 100,
            attempt: Some(attempt_result(status, None)),
        }
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(METHODS[method_index(b"GET") as usize], "GET");
        assert_eq!(METHODS[method_index(b"PATCH") as usize], "PATCH");
        assert_eq!(METHODS[method_index(b"BREW") as usize], "OTHER");
        assert_eq!(METHODS[method_index(b"get") as usize], "OTHER");
    }

    #[test]
    fn buckets_are_le() {
        let mut r = Recorder::new(0, 2);
        for us in [1, 500, 501, 10_000_000, 10_000_001] {
            r.record(0, &ok(200, us), true);
        }
        let rep = r.seal();
        let c = &rep.slots[0].counters;
        assert_eq!(c.buckets[0], 2, "1 and 500 are ≤ 0.0005 s");
        assert_eq!(c.buckets[1], 1);
        assert_eq!(c.buckets[13], 1);
        assert_eq!(c.buckets[14], 1, "+Inf");
        assert_eq!(c.sum_us, 1 + 500 + 501 + 10_000_000 + 10_000_001);
        assert_eq!(rep.slots[0].histogram.as_ref().unwrap().len(), 5);
    }

    #[test]
    fn seal_moves_deltas_and_keeps_gauges() {
        let mut r = Recorder::new(3, 2);
        r.begin(1);
        r.begin(1);
        r.record(1, &ok(200, 10), true);
        r.record(1, &ok(502, 10), true);
        r.end(1);
        r.connection_opened();
        let rep = r.seal();
        assert_eq!(rep.worker, 3);
        assert_eq!(rep.requests, 2);
        assert_eq!(rep.in_flight, vec![0, 1]);
        assert_eq!(rep.connections, 1);
        assert_eq!(rep.slots.len(), 1);
        let c = &rep.slots[0].counters;
        assert_eq!((c.requests, c.errors), (2, 1));
        assert_eq!(c.codes, vec![(0, 200, 1), (0, 502, 1)]);
        let again = r.seal();
        assert!(again.slots.is_empty(), "deltas were taken");
        assert_eq!(again.requests, 0);
        assert_eq!(again.in_flight, vec![0, 1], "gauges stay");
    }

    #[test]
    fn tunnels_are_a_gauge_and_their_bytes_a_delta() {
        let mut r = Recorder::new(0, 1);
        r.tunnel_opened();
        r.tunnel_opened();
        r.tunnel_bytes(10);
        r.tunnel_bytes(5);
        r.tunnel_closed();
        let rep = r.seal();
        assert_eq!((rep.tunnels, rep.tunnel_bytes), (1, 15));
        let again = r.seal();
        assert_eq!((again.tunnels, again.tunnel_bytes), (1, 0));
    }

    #[test]
    fn tls_handshakes_are_deltas_per_listener() {
        let l: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let mut r = Recorder::new(0, 1);
        let h = Handshake {
            version: 1,
            alpn: 1,
            resumed: false,
            client_cert: true,
            duration_us: 700,
        };
        r.tls_completed(l, &h);
        r.tls_failed(l, HandshakeFailure::Protocol);
        let rep = r.seal();
        assert_eq!(rep.tls.0.len(), 1);
        let c = &rep.tls.0[0].1;
        assert_eq!(
            (c.completed_total(), c.failed_total(), c.client_certs),
            (1, 1, 1)
        );
        assert!(r.seal().tls.is_empty(), "deltas were taken");
    }

    #[test]
    fn fail_streak_resets_on_a_response() {
        let mut r = Recorder::new(0, 1);
        let failed = Outcome {
            failure: Some(Failure::Connect),
            responded: false,
            ..ok(502, 5)
        };
        r.record(0, &failed, true);
        r.record(0, &failed, true);
        assert_eq!(r.seal().slots[0].fail_streak, 2);
        r.record(0, &ok(500, 5), true);
        let rep = r.seal();
        assert_eq!(rep.slots[0].fail_streak, 0);
        assert!(rep.slots[0].responded);
        assert_eq!(rep.slots[0].counters.failures, [0; 4]);
    }

    #[test]
    fn abandoned_attempts_count_on_their_upstream_only() {
        let mut r = Recorder::new(0, 2);
        let refused = attempt_result(0, Some(Failure::Connect));
        r.abandoned(0, refused);
        r.retry(0, true);
        r.abandoned(0, refused);
        r.retry(0, false);
        r.breaker_open(1, 2);
        r.record(1, &ok(200, 5), true);
        let rep = r.seal();
        let (a, b) = (&rep.slots[0], &rep.slots[1]);
        assert_eq!(
            a.counters.requests, 0,
            "a request counts once, where it ends"
        );
        assert_eq!(a.counters.attempts[4], 2);
        assert_eq!(a.counters.failures[Failure::Connect as usize], 2);
        assert_eq!((a.counters.retries, a.counters.retries_refused), (1, 1));
        assert_eq!(a.fail_streak, 2);
        assert_eq!(b.counters.requests, 1);
        assert_eq!(b.counters.attempts[0], 1);
        assert_eq!(b.counters.breaker_open, [0, 0, 1]);
        // A 503 that was retried is a response: the streak ends.
        r.abandoned(0, attempt_result(503, None));
        let rep = r.seal();
        assert_eq!(rep.slots[0].fail_streak, 0);
        assert_eq!(rep.slots[0].counters.attempts[3], 1);
        let mut sum = Counters::default();
        sum.add(&a.counters);
        sum.add(&rep.slots[0].counters);
        assert_eq!(sum.attempts[3..5], [1, 2]);
        assert_eq!(attempt_result(0, None), 8);
        assert_eq!(ATTEMPT_RESULTS[attempt_result(304, None)], "3xx");
    }
}
