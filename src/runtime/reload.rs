//! The reload thread (`dao-memory`): the one place where the running
//! config changes.
//!
//! A new config comes from the file (watched), SIGHUP, the admin API, a
//! rollback, or a failed guard. The thread parses and validates it whole,
//! checks that it changes nothing that needs a restart, opens the new
//! listening sockets if the address moved, records the snapshot, and only
//! then publishes it: the new slots and rate limit budgets to Sense's
//! control thread first, then the config to every worker's inbox. A
//! config that fails any step is refused with field errors and the running
//! one keeps serving. Commands come in one channel, so reloads are
//! serialised.
//!
//! The thread also keeps the learned service profiles (updated from every
//! table, saved every `profile_interval` and at exit), and watches a
//! guarded reload: when its 5xx rate or p99 goes over the thresholds
//! within the window, it rolls back to the config before it by itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::worker::Applied;
use crate::admin::{ApiError, Backend, GuardRequest, ReloadRequest};
use crate::align::health::Checker;
use crate::clock;
use crate::gate::listener;
use crate::memory::diff;
use crate::memory::guard::{Guard, GuardSpec, Sample, Verdict};
use crate::memory::history::{History, Snapshot, Source};
use crate::memory::profiles::Profiles;
use crate::memory::{self, Config, FieldError};
use crate::sense::control::{Checked, Layout, Published};
use crate::sense::{Health, Registry, ResonanceTable, Slots};

/// How often the thread looks at SIGHUP, the file, the guard and profiles.
const TICK: Duration = Duration::from_millis(200);
/// How often the config file's time and size are looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for the thread's answer to a command.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// A command for the reload thread; the answer comes back on `reply`.
enum Command {
    Reload {
        source: Source,
        text: Option<String>,
        guard: Option<GuardSpec>,
        reply: Sender<Result<Value, ApiError>>,
    },
    Rollback {
        epoch: u64,
        guard: Option<GuardSpec>,
        reply: Sender<Result<Value, ApiError>>,
    },
    Show {
        what: Show,
        reply: Sender<Result<Value, ApiError>>,
    },
    Stop,
}

/// What a read-only command asks for.
enum Show {
    Status,
    Routes,
    Upstreams,
    Snapshots,
    Snapshot(u64),
    Profiles,
    Drain,
}

/// A handle to the reload thread: cheap to clone, usable from any thread
/// (the admin API, tests).
#[derive(Clone, Debug)]
pub struct Reloads {
    tx: Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl Reloads {
    fn ask(
        &self,
        command: impl FnOnce(Sender<Result<Value, ApiError>>) -> Command,
    ) -> Result<Value, ApiError> {
        let (reply, answer) = mpsc::channel();
        let gone = || ApiError {
            status: 503,
            message: "DAO is stopping".into(),
            errors: Vec::new(),
        };
        self.tx.send(command(reply)).map_err(|_| gone())?;
        answer.recv_timeout(ANSWER_WITHIN).map_err(|_| gone())?
    }

    /// Applies `text` (or re-reads the config file when `None`), as the
    /// admin API does.
    pub fn reload(&self, text: Option<String>) -> Result<Value, ApiError> {
        self.ask(|reply| Command::Reload {
            source: Source::Api,
            text,
            guard: None,
            reply,
        })
    }

    fn show(&self, what: Show) -> Result<Value, ApiError> {
        self.ask(|reply| Command::Show { what, reply })
    }

    /// A read-only answer; when the thread is gone, `{"error": …}`.
    fn view(&self, what: Show) -> Value {
        self.show(what)
            .unwrap_or_else(|e| json!({"error": e.message}))
    }

    fn stop(&self) {
        let _ = self.tx.send(Command::Stop);
    }
}

/// Turns a guard request into a spec, checked by the API's rules (the
/// admin server has checked it already; direct callers have not).
fn guard_spec(g: Option<GuardRequest>) -> Result<Option<GuardSpec>, ApiError> {
    let Some(g) = g else { return Ok(None) };
    g.validate().map_err(|errors| ApiError {
        status: 422,
        message: "invalid guard".into(),
        errors,
    })?;
    Ok(Some(GuardSpec {
        window: Duration::from_millis(g.window_ms),
        max_5xx_rate: g.max_5xx_rate,
        max_p99: g.max_p99_ms.map(Duration::from_millis),
        min_requests: g.min_requests.unwrap_or(20),
    }))
}

impl Backend for Reloads {
    fn status(&self) -> Value {
        self.view(Show::Status)
    }
    fn routes(&self) -> Value {
        self.view(Show::Routes)
    }
    fn upstreams(&self) -> Value {
        self.view(Show::Upstreams)
    }
    fn reload(&self, req: ReloadRequest) -> Result<Value, ApiError> {
        let guard = guard_spec(req.guard)?;
        self.ask(|reply| Command::Reload {
            source: Source::Api,
            text: req.config,
            guard,
            reply,
        })
    }
    fn snapshots(&self) -> Value {
        self.view(Show::Snapshots)
    }
    fn snapshot(&self, epoch: u64) -> Result<Value, ApiError> {
        self.show(Show::Snapshot(epoch))
    }
    fn rollback(&self, epoch: u64, guard: Option<GuardRequest>) -> Result<Value, ApiError> {
        let guard = guard_spec(guard)?;
        self.ask(|reply| Command::Rollback {
            epoch,
            guard,
            reply,
        })
    }
    fn profiles(&self) -> Value {
        self.view(Show::Profiles)
    }
    fn drain(&self) -> Value {
        self.view(Show::Drain)
    }
}

/// What the reload thread starts with.
pub(crate) struct Start {
    pub(crate) config: Arc<Config>,
    pub(crate) epoch: u64,
    pub(crate) registry: Registry,
    pub(crate) slots: Slots,
    pub(crate) history: History,
    pub(crate) profiles: Profiles,
    pub(crate) path: Option<PathBuf>,
    pub(crate) inboxes: Vec<Sender<Applied>>,
    pub(crate) layouts: Sender<Layout>,
    pub(crate) checks: Sender<Checked>,
    pub(crate) checker: Option<Checker>,
    pub(crate) table: Option<Published>,
    pub(crate) started: Instant,
    /// The addresses the listeners are bound to.
    pub(crate) listen: Vec<SocketAddr>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) hup: Arc<AtomicBool>,
}

/// The running thread and its handle.
pub(crate) struct Thread {
    pub(crate) handle: JoinHandle<()>,
    pub(crate) reloads: Reloads,
}

impl Thread {
    /// Stops the thread (profiles are saved) and waits for it.
    pub(crate) fn stop(self) {
        self.reloads.stop();
        let _ = self.handle.join();
    }
}

/// Starts the reload thread.
pub(crate) fn start(s: Start) -> std::io::Result<Thread> {
    let (tx, rx) = mpsc::channel();
    let watched = s.path.as_deref().and_then(stamp);
    let next_save = clock::now() + s.config.memory.profile_interval;
    let r = Reloader {
        listen: s.listen,
        current: s.config,
        epoch: s.epoch,
        registry: s.registry,
        slots: s.slots,
        history: s.history,
        profiles: s.profiles,
        path: s.path,
        watched,
        next_watch: clock::now() + WATCH_EVERY,
        inboxes: s.inboxes,
        layouts: s.layouts,
        checks: s.checks,
        checker: s.checker,
        table: s.table,
        table_epoch: 0,
        started: s.started,
        stop: s.stop,
        hup: s.hup,
        last: None,
        watch: None,
        guard_state: None,
        next_save,
    };
    let handle = std::thread::Builder::new()
        .name("dao-memory".into())
        .spawn(move || run(r, rx))?;
    Ok(Thread {
        handle,
        reloads: Reloads { tx },
    })
}

/// The file's modification time and length: a change means "read again".
fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The outcome of the last reload attempt.
struct Last {
    epoch: u64,
    source: Source,
    time_unix: u64,
    result: &'static str,
    message: String,
}

/// A guarded reload being watched.
struct Watch {
    epoch: u64,
    /// The epoch to roll back to.
    back_to: u64,
    guard: Guard,
    /// Totals at the previous table: requests, 5xx, latency buckets.
    seen: Option<Totals>,
}

/// Sums over every live slot of a table.
struct Totals {
    requests: u64,
    errors: u64,
    buckets: Vec<u64>,
}

impl Totals {
    fn of(t: &ResonanceTable) -> Totals {
        let mut sum = Totals {
            requests: 0,
            errors: 0,
            buckets: vec![0; crate::sense::record::BUCKETS_US.len() + 1],
        };
        for u in t.live() {
            sum.requests += u.totals.requests;
            sum.errors += u.totals.errors;
            for (a, b) in sum.buckets.iter_mut().zip(&u.totals.buckets) {
                *a += b;
            }
        }
        sum
    }

    /// The interval since `before`: its requests, 5xx and p99 (the upper
    /// bound of the latency bucket it falls in).
    fn since(&self, before: &Totals) -> Sample {
        let requests = self.requests.saturating_sub(before.requests);
        let errors_5xx = self.errors.saturating_sub(before.errors);
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .zip(&before.buckets)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let total: u64 = counts.iter().sum();
        let p99_us = (total > 0).then(|| {
            let rank = (total * 99).div_ceil(100);
            let mut seen = 0;
            let bounds = crate::sense::record::BUCKETS_US;
            for (i, n) in counts.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    // The +Inf bucket: twice the last bound stands for it.
                    return bounds
                        .get(i)
                        .copied()
                        .unwrap_or(2 * bounds[bounds.len() - 1]);
                }
            }
            2 * bounds[bounds.len() - 1]
        });
        Sample {
            requests,
            errors_5xx,
            p99_us,
        }
    }
}

struct Reloader {
    current: Arc<Config>,
    epoch: u64,
    registry: Registry,
    slots: Slots,
    history: History,
    profiles: Profiles,
    path: Option<PathBuf>,
    watched: Option<(SystemTime, u64)>,
    next_watch: Instant,
    inboxes: Vec<Sender<Applied>>,
    layouts: Sender<Layout>,
    checks: Sender<Checked>,
    checker: Option<Checker>,
    table: Option<Published>,
    table_epoch: u64,
    started: Instant,
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    listen: Vec<SocketAddr>,
    last: Option<Last>,
    watch: Option<Watch>,
    /// The last guard's state, for status: (epoch, state, message).
    guard_state: Option<(u64, &'static str, String)>,
    next_save: Instant,
}

fn run(mut r: Reloader, rx: Receiver<Command>) {
    loop {
        match rx.recv_timeout(TICK) {
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(c) => r.handle(c),
            Err(RecvTimeoutError::Timeout) => {}
        }
        r.tick();
    }
    if let Some(c) = r.checker.take() {
        c.stop();
    }
    r.save_profiles();
}

fn unix_now() -> u64 {
    clock::unix_secs()
}

impl Reloader {
    fn handle(&mut self, c: Command) {
        match c {
            Command::Reload {
                source,
                text,
                guard,
                reply,
            } => {
                let r = self.reload(source, text, guard, None);
                let _ = reply.send(r);
            }
            Command::Rollback {
                epoch,
                guard,
                reply,
            } => {
                let r = self.rollback(epoch, guard, Source::Rollback, None);
                let _ = reply.send(r);
            }
            Command::Show { what, reply } => {
                let _ = reply.send(self.show(what));
            }
            Command::Stop => {}
        }
    }

    /// SIGHUP, the watched file, the guard, the profiles.
    fn tick(&mut self) {
        if self.hup.swap(false, Ordering::Relaxed) {
            match &self.path {
                Some(_) => {
                    let _ = self.reload(Source::Signal, None, None, None);
                }
                None => tracing::warn!(
                    "SIGHUP: no config file to read again (started without --config)"
                ),
            }
        }
        let now = clock::now();
        if now >= self.next_watch {
            self.next_watch = now + WATCH_EVERY;
            if let Some(path) = &self.path {
                let seen = stamp(path);
                if seen.is_some() && seen != self.watched {
                    self.watched = seen;
                    let _ = self.reload(Source::File, None, None, None);
                }
            }
        }
        let Some(table) = self.table.as_ref().map(|t| t.load_full()) else {
            return;
        };
        if table.epoch == self.table_epoch {
            return;
        }
        self.table_epoch = table.epoch;
        self.profiles.update(&table, unix_now());
        if now >= self.next_save {
            self.next_save = now + self.current.memory.profile_interval;
            self.save_profiles();
        }
        self.judge(&table, now);
    }

    /// One table's worth of a guarded reload.
    fn judge(&mut self, table: &ResonanceTable, now: Instant) {
        let Some(w) = &mut self.watch else { return };
        let totals = Totals::of(table);
        let Some(seen) = w.seen.replace(Totals::of(table)) else {
            return;
        };
        match w.guard.observe(now, totals.since(&seen)) {
            Verdict::Watching => {}
            Verdict::Passed => {
                tracing::info!(epoch = w.epoch, "guarded reload passed");
                self.guard_state =
                    Some((w.epoch, "passed", "thresholds held over the window".into()));
                self.watch = None;
            }
            Verdict::Failed(reason) => {
                let (epoch, back_to) = (w.epoch, w.back_to);
                self.watch = None;
                tracing::error!(epoch, back_to, %reason, "guarded reload failed: rolling back");
                let note =
                    format!("guard on epoch {epoch} failed ({reason}): rolled back to {back_to}");
                let message = match self.rollback(back_to, None, Source::Guard, Some(note.clone())) {
                    Ok(_) => note,
                    Err(e) => format!("guard on epoch {epoch} failed ({reason}); the rollback to {back_to} failed: {}", e.message),
                };
                self.guard_state = Some((epoch, "failed", message));
            }
        }
    }

    fn save_profiles(&self) {
        if let Some(dir) = &self.current.memory.state_dir {
            if let Err(e) = self.profiles.save(dir) {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot save service profiles");
            }
        }
    }

    fn rollback(
        &mut self,
        epoch: u64,
        guard: Option<GuardSpec>,
        source: Source,
        note: Option<String>,
    ) -> Result<Value, ApiError> {
        let Some(snap) = self.history.get(epoch) else {
            return Err(ApiError {
                status: 404,
                message: format!("no snapshot with epoch {epoch} (see GET /api/v1/snapshots)"),
                errors: Vec::new(),
            });
        };
        let text = snap.text.to_string();
        let note = note.or_else(|| Some(format!("rollback to epoch {epoch}")));
        self.reload(source, Some(text), guard, note)
    }

    /// Validates and applies a config; the running one stays on any error.
    fn reload(
        &mut self,
        source: Source,
        text: Option<String>,
        guard: Option<GuardSpec>,
        note: Option<String>,
    ) -> Result<Value, ApiError> {
        let result = self.apply(source, text, guard, note);
        let (result_word, message) = match &result {
            Ok(v) if v["changed"] == json!(false) => {
                ("unchanged", "same config as running".to_string())
            }
            Ok(_) => ("applied", String::new()),
            Err(e) => {
                let mut m = e.message.clone();
                for fe in &e.errors {
                    m.push_str(&format!("; {}: {}", fe.path, fe.message));
                }
                tracing::error!(source = ?source, error = %m, "config reload refused; the running config stays");
                ("rejected", m)
            }
        };
        self.last = Some(Last {
            epoch: self.epoch,
            source,
            time_unix: unix_now(),
            result: result_word,
            message,
        });
        result
    }

    fn apply(
        &mut self,
        source: Source,
        text: Option<String>,
        guard: Option<GuardSpec>,
        note: Option<String>,
    ) -> Result<Value, ApiError> {
        let text = match text {
            Some(t) => t,
            None => {
                let Some(path) = &self.path else {
                    return Err(refused(
                        400,
                        "DAO was started without --config: send the config text",
                        Vec::new(),
                    ));
                };
                std::fs::read_to_string(path).map_err(|e| {
                    refused(
                        422,
                        &format!("cannot read {}: {e}", path.display()),
                        Vec::new(),
                    )
                })?
            }
        };
        let config =
            memory::parse(&text).map_err(|e| refused(422, "invalid configuration", e.errors))?;
        let fixed = needs_restart(&self.current, &config);
        if !fixed.is_empty() {
            return Err(refused(
                422,
                "these fields cannot change while DAO runs (restart it)",
                fixed,
            ));
        }
        if config.source == self.current.source && guard.is_none() {
            let snap = self.history.get(self.epoch);
            return Ok(json!({
                "epoch": self.epoch,
                "sha256": snap.map(|s| s.sha256.clone()),
                "source": source,
                "changed": false,
                "guard": null,
            }));
        }
        // Everything that can fail comes before anything is published.
        let workers = self.inboxes.len();
        let binds = |c: &Config| c.listeners.iter().map(|l| l.bind).collect::<Vec<_>>();
        let mut sockets: Vec<Option<Vec<std::net::TcpListener>>> =
            (0..workers).map(|_| None).collect();
        let mut listen = None;
        if binds(&config) != binds(&self.current) {
            // Per worker, one socket of each listener (all rebound).
            let mut per_worker: Vec<Vec<std::net::TcpListener>> =
                (0..workers).map(|_| Vec::new()).collect();
            let mut addrs = Vec::new();
            for l in &config.listeners {
                let bound = listener::bind_all(l.bind, workers).map_err(|e| {
                    let path = if config.listeners.len() == 1 {
                        "server.bind"
                    } else {
                        "listeners"
                    };
                    refused(
                        422,
                        "cannot listen on the new address",
                        vec![FieldError {
                            path: path.into(),
                            message: format!("{}: {e}", l.bind),
                        }],
                    )
                })?;
                addrs.push(bound[0].local_addr().unwrap_or(l.bind));
                for (w, sock) in per_worker.iter_mut().zip(bound) {
                    w.push(sock);
                }
            }
            sockets = per_worker.into_iter().map(Some).collect();
            listen = Some(addrs);
        }
        let snap = self
            .history
            .record(source, &text, note, unix_now())
            .map_err(|e| refused(500, &format!("cannot record the snapshot: {e}"), Vec::new()))?;
        let previous = self.epoch;
        let epoch = snap.epoch;
        let config = Arc::new(config);
        let slots = self.registry.layout(&config);
        // Sense first: it must know the new slots before any report uses them.
        let _ = self.layouts.send(Layout {
            epoch,
            slots: slots.clone(),
            budgets: super::budgets(&config),
            seeds: super::seeds(&self.profiles, &config, &slots),
        });
        self.restart_checks(&config, &slots);
        if let Some(addrs) = listen {
            self.listen = addrs;
        }
        for (inbox, listeners) in self.inboxes.iter().zip(sockets) {
            // A worker that has stopped no longer needs it.
            let _ = inbox.send(Applied {
                epoch,
                config: config.clone(),
                slots: slots.clone(),
                listeners,
            });
        }
        tracing::info!(epoch, source = ?source, sha256 = %snap.sha256, "config applied");
        self.profiles.bind(&config, &slots);
        self.current = config;
        self.slots = slots;
        self.epoch = epoch;
        self.watch = guard.clone().map(|spec| Watch {
            epoch,
            back_to: previous,
            guard: Guard::new(spec, clock::now()),
            seen: self.table.as_ref().map(|t| Totals::of(&t.load())),
        });
        if let Some(w) = &self.watch {
            self.guard_state = Some((w.epoch, "watching", String::new()));
        }
        Ok(json!({
            "epoch": epoch,
            "sha256": snap.sha256,
            "source": source,
            "changed": true,
            "guard": guard.map(|g| json!({
                "window_ms": g.window.as_millis() as u64,
                "max_5xx_rate": g.max_5xx_rate,
                "max_p99_ms": g.max_p99.map(|d| d.as_millis() as u64),
                "min_requests": g.min_requests,
            })),
        }))
    }

    /// Restarts the active health checks when their targets changed.
    fn restart_checks(&mut self, config: &Config, slots: &Slots) {
        if self.table.is_none() {
            return;
        }
        let key = |c: &Config, s: &Slots| {
            let mut k = Vec::new();
            for (r, route) in c.routes.iter().enumerate() {
                if let Some(hc) = &route.health_check {
                    for (u, up) in route.upstreams.iter().enumerate() {
                        // The pool key: the address and the TLS spoken;
                        // the protocol picks HTTP/1.1 or HTTP/2 probes.
                        let how = (c.pools[up.pool].clone(), up.protocol);
                        k.push((how, hc.clone(), s.of(r, u)));
                    }
                }
            }
            k
        };
        if key(config, slots) == key(&self.current, &self.slots) {
            return;
        }
        if let Some(c) = self.checker.take() {
            c.stop();
        }
        match Checker::start(config, slots, self.checks.clone()) {
            Ok(c) => self.checker = c,
            Err(e) => tracing::error!(error = %e, "cannot restart the health checks"),
        }
    }

    fn show(&mut self, what: Show) -> Result<Value, ApiError> {
        Ok(match what {
            Show::Status => self.status(),
            Show::Routes => self.routes(),
            Show::Upstreams => self.upstreams(),
            Show::Snapshots => json!({
                "current": self.epoch,
                "snapshots": self.history.list().iter().map(snapshot_meta).collect::<Vec<_>>(),
            }),
            Show::Snapshot(epoch) => {
                let Some(s) = self.history.get(epoch) else {
                    return Err(refused(
                        404,
                        &format!("no snapshot with epoch {epoch}"),
                        Vec::new(),
                    ));
                };
                let mut v = snapshot_meta(s);
                v["text"] = json!(&*s.text);
                v["diff"] = json!(diff::unified(
                    &s.text,
                    &self.current.source,
                    &format!("epoch {epoch}"),
                    &format!("current (epoch {})", self.epoch),
                ));
                v
            }
            Show::Profiles => self.profiles.to_json(),
            Show::Drain => {
                tracing::info!(
                    "drain asked: no new connections; in-flight requests finish, then DAO exits"
                );
                self.stop.store(true, Ordering::Relaxed);
                json!({"draining": true})
            }
        })
    }

    fn status(&self) -> Value {
        let table = self.table.as_ref().map(|t| t.load_full());
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": clock::now().saturating_duration_since(self.started).as_secs(),
            "config_epoch": self.epoch,
            "table_epoch": table.as_ref().map_or(0, |t| t.epoch),
            "workers": self.inboxes.len(),
            "draining": self.stop.load(Ordering::Relaxed),
            "listen": self.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "last_reload": self.last.as_ref().map(|l| json!({
                "epoch": l.epoch,
                "source": l.source,
                "time_unix": l.time_unix,
                "result": l.result,
                "message": l.message,
            })),
            "guard": self.guard_state.as_ref().map(|(epoch, state, message)| json!({
                "epoch": epoch,
                "state": state,
                "message": message,
            })),
            "tls": table.as_ref().filter(|t| !t.tls.is_empty()).map(|t| {
                let all = t.tls.total();
                json!({
                    "handshakes": all.completed_total(),
                    "resumed": all.resumed,
                    "client_certificates": all.client_certs,
                    "failures": all.failed_total(),
                })
            }),
        })
    }

    fn routes(&self) -> Value {
        let routes: Vec<Value> = self
            .current
            .routes
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "host": r.host.to_string(),
                    "path_prefix": r.path_prefix,
                    "policy": r.policy.to_string(),
                    "upstreams": r.upstreams.iter().map(|u| u.name.clone()).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "routes": routes })
    }

    fn upstreams(&self) -> Value {
        let table = self.table.as_ref().map(|t| t.load_full());
        let mut out = Vec::new();
        for (r, route) in self.current.routes.iter().enumerate() {
            for (u, up) in route.upstreams.iter().enumerate() {
                let row = table
                    .as_ref()
                    .and_then(|t| t.upstreams.get(self.slots.of(r, u)));
                let ms = |us: u64| us as f64 / 1000.0;
                out.push(json!({
                    "route": route.name,
                    "upstream": up.name,
                    "addr": up.addr.to_string(),
                    "weight": up.weight,
                    "health": match row {
                        Some(s) if s.is_down() => "down",
                        Some(s) if s.checked == Health::Unchecked => "unchecked",
                        Some(_) => "up",
                        None => if route.health_check.is_some() { "up" } else { "unchecked" },
                    },
                    "in_flight": row.map_or(0, |s| s.in_flight),
                    "rps": row.map_or(0.0, |s| s.rps),
                    "p50_ms": row.map_or(0.0, |s| ms(s.p50_us)),
                    "p95_ms": row.map_or(0.0, |s| ms(s.p95_us)),
                    "p99_ms": row.map_or(0.0, |s| ms(s.p99_us)),
                    "error_rate": row.map_or(0.0, |s| s.error_rate),
                    "load_resonance": row.map_or(0.0, |s| s.load_resonance),
                }));
            }
        }
        json!({ "upstreams": out })
    }
}

fn snapshot_meta(s: &Snapshot) -> Value {
    json!({
        "epoch": s.epoch,
        "sha256": s.sha256,
        "time_unix": s.time_unix,
        "source": s.source,
        "note": s.note,
    })
}

fn refused(status: u16, message: &str, errors: Vec<FieldError>) -> ApiError {
    ApiError {
        status,
        message: message.to_string(),
        errors,
    }
}

/// The fields a running DAO cannot change, each named when it differs:
/// the worker count, telemetry (the control thread's shape, the listeners
/// and log writer it owns), the admin listener and the state directory.
fn needs_restart(old: &Config, new: &Config) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut differs = |path: &str, same: bool| {
        if !same {
            errors.push(FieldError {
                path: path.into(),
                message: "cannot change on reload: restart DAO to change it".into(),
            });
        }
    };
    differs("server.workers", old.server.workers == new.server.workers);
    differs("telemetry", old.telemetry == new.telemetry);
    differs("admin", old.admin == new.admin);
    differs("memory", old.memory == new.memory);
    errors
}
