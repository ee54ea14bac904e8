//! Active health checks: one `dao-health` thread probes every upstream of
//! the routes with `[routes.rule.health_check]`, turns the results into
//! up/down verdicts by their thresholds and sends them to Sense's control
//! thread, which puts them into the next resonance table. Workers read the
//! verdicts from their own copy of that table (`usable`), so no request
//! touches memory shared with another thread for them.
//!
//! ```text
//!  dao-health ─ probe (a short-lived thread per due probe: a blocking
//!      │         HTTP/1.1 GET, or an HTTP/2 GET or gRPC health call)
//!      │ Tracker: thresholds → up/down
//!      └─ Checked ──mpsc──► control thread ─ table.upstreams[slot].checked
//!                                   │ ArcSwap, once per merge interval
//!  worker: table copy ◄─────────────┘   pick → usable? → re-pick
//! ```

mod grpc;
mod http2;
mod probe;

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock;
use crate::memory::{Config, HealthCheck, PoolKey, UpstreamProtocol, UpstreamTls};
use crate::sense::control::Checked;
use crate::sense::Slots;

/// Longest the thread sleeps with nothing due (a result or a stop wakes it
/// sooner).
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Turns probe results into a verdict: up until `unhealthy` failures in a
/// row, then down until `healthy` successes in a row.
#[derive(Debug, Clone)]
pub struct Tracker {
    up: bool,
    streak: u32,
    healthy: u32,
    unhealthy: u32,
}

impl Tracker {
    /// A tracker that starts up (so that traffic flows from the start).
    pub fn new(healthy: u32, unhealthy: u32) -> Tracker {
        Tracker {
            up: true,
            streak: 0,
            healthy: healthy.max(1),
            unhealthy: unhealthy.max(1),
        }
    }

    /// Takes one result; returns the new verdict when it changes.
    pub fn observe(&mut self, passed: bool) -> Option<bool> {
        if passed == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up {
            self.unhealthy
        } else {
            self.healthy
        };
        if self.streak < needed {
            return None;
        }
        self.up = passed;
        self.streak = 0;
        Some(self.up)
    }

    /// The current verdict.
    pub fn is_up(&self) -> bool {
        self.up
    }
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// The response's status.
    Status(u16),
    /// A gRPC health check answered `SERVING`.
    Serving,
}

/// How a target is asked.
#[derive(Debug, Clone)]
enum Ask {
    /// HTTP/1.1: the request's bytes.
    H1(Arc<[u8]>),
    /// HTTP/2 (h2c, or h2 over TLS).
    H2(Arc<http2::Call>),
}

/// One distinct thing to probe: an address spoken to one way with a
/// check (its `Host` resolved), standing for every (route, upstream) that
/// shares all three.
#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    /// `https://` upstreams: probed over TLS.
    tls: Option<Arc<UpstreamTls>>,
    check: HealthCheck,
    ask: Ask,
    slots: Arc<[usize]>,
    /// `route/upstream` names, for the logs.
    names: String,
    tracker: Tracker,
    next: Instant,
    busy: bool,
}

/// The distinct targets of a config: upstreams of checked routes, one per
/// (address and TLS, HTTP version, check) however many routes name them.
fn targets(config: &Config, slots: &Slots, now: Instant) -> Vec<Target> {
    type Found = (
        PoolKey,
        UpstreamProtocol,
        HealthCheck,
        Vec<usize>,
        Vec<String>,
    );
    let mut found: Vec<Found> = Vec::new();
    for (r, route) in config.routes.iter().enumerate() {
        let Some(check) = &route.health_check else {
            continue;
        };
        for (u, upstream) in route.upstreams.iter().enumerate() {
            let mut check = check.clone();
            check.host = Some(check.host.unwrap_or_else(|| upstream.authority.clone()));
            let name = format!("{}/{}", route.name, upstream.name);
            let slot = slots.of(r, u);
            let key = &config.pools[upstream.pool];
            // HTTP/1.1 and HTTP/2 to one address are asked apart.
            let h2 = upstream.protocol.is_h2();
            match found
                .iter_mut()
                .find(|(k, p, c, _, _)| k == key && p.is_h2() == h2 && *c == check)
            {
                Some((_, _, _, s, n)) => {
                    s.push(slot);
                    n.push(name);
                }
                None => found.push((
                    key.clone(),
                    upstream.protocol,
                    check,
                    vec![slot],
                    vec![name],
                )),
            }
        }
    }
    found
        .into_iter()
        .map(|(key, protocol, check, slots, names)| Target {
            addr: key.addr,
            ask: ask(&check, protocol, key.tls.is_some()),
            tls: key.tls,
            tracker: Tracker::new(check.healthy_threshold, check.unhealthy_threshold),
            check,
            slots: slots.into(),
            names: names.join(", "),
            next: now,
            busy: false,
        })
        .collect()
}

/// The request a check makes of an upstream spoken to by `protocol`
/// (over TLS with `tls`).
fn ask(check: &HealthCheck, protocol: UpstreamProtocol, tls: bool) -> Ask {
    let host = check.host.as_deref().unwrap_or("");
    if protocol.is_h2() {
        let grpc = check.grpc_service.as_deref();
        Ask::H2(Arc::new(http2::Call::new(tls, host, &check.path, grpc)))
    } else {
        Ask::H1(probe::request(&check.path, host).into())
    }
}

#[derive(Debug)]
enum Msg {
    Stop,
    Done {
        target: usize,
        result: Result<Answer, String>,
    },
}

/// The running `dao-health` thread.
#[derive(Debug)]
pub struct Checker {
    handle: JoinHandle<()>,
    tx: Sender<Msg>,
}

impl Checker {
    /// Starts the thread when some route has checks; results go to `out`.
    pub fn start(
        config: &Config,
        slots: &Slots,
        out: Sender<Checked>,
    ) -> io::Result<Option<Checker>> {
        let targets = targets(config, slots, clock::now());
        if targets.is_empty() {
            return Ok(None);
        }
        let (tx, rx) = mpsc::channel();
        let probes = tx.clone();
        let handle = std::thread::Builder::new()
            .name("dao-health".into())
            .spawn(move || run(targets, probes, rx, out))?;
        Ok(Some(Checker { handle, tx }))
    }

    /// Stops the thread and waits for it (probes still in flight finish on
    /// their own, within their timeout, and are ignored).
    pub fn stop(self) {
        let _ = self.tx.send(Msg::Stop);
        let _ = self.handle.join();
    }
}

fn run(mut targets: Vec<Target>, probes: Sender<Msg>, rx: Receiver<Msg>, out: Sender<Checked>) {
    loop {
        let now = clock::now();
        let mut wait = IDLE_WAIT;
        for (i, t) in targets.iter_mut().enumerate() {
            if t.busy {
                continue;
            }
            if t.next <= now {
                t.next = now + t.check.interval;
                t.busy = launch(i, t, &probes);
            }
            if !t.busy {
                wait = wait.min(t.next.saturating_duration_since(now));
            }
        }
        match rx.recv_timeout(wait) {
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Msg::Done { target, result }) => {
                if let Some(t) = targets.get_mut(target) {
                    t.busy = false;
                    settle(t, result, &out);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Starts one probe on a thread of its own, so that a slow upstream delays
/// neither the others nor a stop. Returns whether it started.
fn launch(i: usize, t: &Target, probes: &Sender<Msg>) -> bool {
    let (addr, ask, timeout) = (t.addr, t.ask.clone(), t.check.timeout);
    let tls = t.tls.clone();
    let tx = probes.clone();
    let started = std::thread::Builder::new()
        .name("dao-health-probe".into())
        .spawn(move || {
            let result = match &ask {
                Ask::H1(request) => {
                    probe::status(addr, tls.as_ref(), request, timeout).map(Answer::Status)
                }
                Ask::H2(call) => http2::probe(addr, tls.as_ref(), call, timeout),
            };
            // The checker is gone when the server stopped meanwhile.
            let _ = tx.send(Msg::Done { target: i, result });
        });
    if let Err(e) = &started {
        tracing::warn!(upstream = %t.addr, error = %e, "cannot start a health probe");
    }
    started.is_ok()
}

/// Judges one result, logs a change of verdict and sends it on.
fn settle(t: &mut Target, result: Result<Answer, String>, out: &Sender<Checked>) {
    let (lo, hi) = t.check.expected_status;
    let passed = match result {
        Ok(Answer::Status(s)) => (lo..=hi).contains(&s),
        Ok(Answer::Serving) => true,
        Err(_) => false,
    };
    let why = match &result {
        Ok(Answer::Status(s)) => format!("status {s}"),
        Ok(Answer::Serving) => "SERVING".to_string(),
        Err(e) => e.clone(),
    };
    if !passed {
        tracing::debug!(upstream = %t.addr, path = %t.check.path, reason = %why, "health check failed");
    }
    match t.tracker.observe(passed) {
        Some(true) => tracing::info!(
            upstream = %t.addr,
            routes = %t.names,
            path = %t.check.path,
            "upstream up: health checks pass again"
        ),
        Some(false) => tracing::warn!(
            upstream = %t.addr,
            routes = %t.names,
            path = %t.check.path,
            reason = %why,
            "upstream down: health checks fail"
        ),
        None => {}
    }
    // The control thread is gone only at shutdown.
    let _ = out.send(Checked {
        slots: t.slots.clone(),
        passed,
        up: t.tracker.is_up(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::parse;
    use crate::sense::Health;

    #[test]
    fn thresholds_move_the_verdict() {
        let mut t = Tracker::new(2, 3);
        assert!(t.is_up());
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None, "a success resets the failures");
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None, "a failure resets the successes");
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
        assert!(t.is_up());
    }

    #[test]
    fn shared_addresses_are_probed_once() {
        let hc = "[routes.rule.health_check]\npath = \"/healthz\"\ninterval = \"2s\"\n";
        let text = format!(
            "[[routes.rule]]\nname = \"a\"\n[routes.rule.match]\nhost = \"a.test\"\n{hc}\
             [[routes.rule.upstreams]]\nname = \"x\"\nurl = \"http://127.0.0.1:1001\"\n\
             [[routes.rule.upstreams]]\nname = \"y\"\nurl = \"http://127.0.0.1:1002\"\n\
             [[routes.rule]]\nname = \"b\"\n{hc}\
             [[routes.rule.upstreams]]\nname = \"x2\"\nurl = \"http://127.0.0.1:1001\"\n\
             [[routes.rule]]\nname = \"c\"\n[routes.rule.match]\nhost = \"c.test\"\n\
             [[routes.rule.upstreams]]\nname = \"x\"\nurl = \"http://127.0.0.1:1001\"\n"
        );
        let config = parse(&text).unwrap();
        let slots = Slots::new(&config);
        let t = targets(&config, &slots, clock::now());
        assert_eq!(t.len(), 2, "{t:?}");
        // Slot 0 is DAO's own; the routes' upstreams follow in order.
        assert_eq!(&*t[0].slots, &[1, 3]);
        assert_eq!(t[0].names, "a/x, b/x2");
        assert_eq!(&*t[1].slots, &[2]);
        let Ask::H1(request) = &t[0].ask else {
            panic!("{:?}", t[0].ask)
        };
        assert!(std::str::from_utf8(request)
            .unwrap()
            .starts_with("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:1001\r\n"));
        assert!(matches!(t[1].ask, Ask::H1(_)));
        // The unchecked route's slot stays unchecked.
        assert_eq!(slots.initial_health(4), Health::Unchecked);
        assert_eq!(slots.initial_health(1), Health::Up);
    }

    #[test]
    fn http2_upstreams_are_asked_over_http2_apart_from_http1() {
        let text = "[[routes.rule]]\nname = \"a\"\n\
             [routes.rule.health_check]\npath = \"/hz\"\n\
             [[routes.rule.upstreams]]\nname = \"x\"\nurl = \"http://127.0.0.1:1001\"\n\
             [[routes.rule.upstreams]]\nname = \"y\"\nurl = \"http://127.0.0.1:1001\"\nprotocol = \"h2c\"\n";
        let config = parse(text).unwrap();
        let slots = Slots::new(&config);
        let t = targets(&config, &slots, clock::now());
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(matches!(t[0].ask, Ask::H1(_)));
        let Ask::H2(call) = &t[1].ask else {
            panic!("{:?}", t[1].ask)
        };
        assert_eq!(call.uri().as_deref(), Some("http://127.0.0.1:1001/hz"));
        assert_eq!(t[1].names, "a/y");
    }
}
