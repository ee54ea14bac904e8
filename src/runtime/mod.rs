//! Runtime: the pinned worker threads, their start and their graceful stop.

pub(crate) mod generation;
pub mod reload;
pub mod signals;
pub mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::align::health::Checker;
use crate::clock;
use crate::gate::listener;
use crate::memory::history::{History, Source};
use crate::memory::profiles::Profiles;
use crate::memory::Config;
use crate::sense::control::{self, Layout, Published};
use crate::sense::{access_log, http, Registry, ResonanceTable};
use crate::upstream::pool::PoolStats;

/// A running proxy: its workers, the threads beside them, and the flag
/// that stops them.
pub struct Server {
    /// Each listener's bound address, in `Config::listeners` order.
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<PoolStats>>,
    /// Sense's control thread and what it publishes.
    control: Option<(JoinHandle<()>, Published)>,
    /// The telemetry listener's address, thread and stop flag.
    telemetry: Option<(SocketAddr, JoinHandle<()>, Arc<AtomicBool>)>,
    access_log: Option<JoinHandle<()>>,
    /// The reload thread (it owns the active health checks' thread).
    reload: Option<reload::Thread>,
    /// The admin listener's address, thread and stop flag.
    admin: Option<(SocketAddr, JoinHandle<()>, Arc<AtomicBool>)>,
}

/// How a [`Server`] runs besides its config.
#[derive(Debug, Default)]
pub struct Options {
    /// Set to stop (graceful); a fresh flag when `None`.
    pub stop: Option<Arc<AtomicBool>>,
    /// Stop after this many responses on any one worker (profiling runs,
    /// where a process blocked in io_uring under valgrind misses signals).
    pub exit_after: Option<u64>,
    /// The file the config came from: watched, and read again on SIGHUP
    /// or an API reload without a body.
    pub config_path: Option<std::path::PathBuf>,
    /// Set by SIGHUP (see `signals::install_reload`).
    pub hup: Option<Arc<AtomicBool>>,
}

impl Server {
    /// Binds the listeners and starts one pinned worker per configured core.
    pub fn start(config: Config) -> io::Result<Server> {
        Server::start_opts(config, Options::default())
    }

    /// As [`Server::start`], stopping when `stop` becomes true, or after
    /// `exit_after` responses on any one worker (for profiling runs, where
    /// a process blocked in io_uring under valgrind misses signals).
    pub fn start_with(
        config: Config,
        stop: Arc<AtomicBool>,
        exit_after: Option<u64>,
    ) -> io::Result<Server> {
        let opts = Options {
            stop: Some(stop),
            exit_after,
            ..Options::default()
        };
        Server::start_opts(config, opts)
    }

    /// Starts with `opts`: see [`Options`].
    pub fn start_opts(config: Config, opts: Options) -> io::Result<Server> {
        let Options {
            stop,
            exit_after,
            config_path,
            hup,
        } = opts;
        let stop = stop.unwrap_or_default();
        let started = clock::now();
        let config = Arc::new(config);
        let count = config.server.workers;
        // The state directory: applied configs and learned profiles.
        let (mut history, warnings) = History::open(
            config.memory.state_dir.as_deref(),
            config.memory.snapshots_keep,
        )
        .map_err(|e| io::Error::new(e.kind(), format!("memory.state_dir: {e}")))?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        let (mut profiles, warnings) = match &config.memory.state_dir {
            Some(dir) => Profiles::load(dir),
            None => (Profiles::new(), Vec::new()),
        };
        for w in warnings {
            tracing::warn!("{w}");
        }
        let admin_listener = match &config.admin {
            Some(a) => Some(
                std::net::TcpListener::bind(a.bind)
                    .map_err(|e| io::Error::new(e.kind(), format!("admin.bind {}: {e}", a.bind)))?,
            ),
            None => None,
        };
        // Per listener, one socket per worker; then per worker, one of each.
        let mut per_worker: Vec<Vec<std::net::TcpListener>> =
            (0..count).map(|_| Vec::new()).collect();
        let mut addrs = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let socks = listener::bind_all(l.bind, count)
                .map_err(|e| io::Error::new(e.kind(), format!("listen on {}: {e}", l.bind)))?;
            addrs.push(socks[0].local_addr()?);
            for (w, s) in per_worker.iter_mut().zip(socks) {
                w.push(s);
            }
        }
        let telemetry_listener = match config.telemetry.prometheus_bind {
            Some(bind) => Some(std::net::TcpListener::bind(bind).map_err(|e| {
                io::Error::new(e.kind(), format!("telemetry.prometheus_bind {bind}: {e}"))
            })?),
            None => None,
        };
        // Probed on a thread of its own: the probe's ring, torn down by the
        // kernel after it is closed, would otherwise queue work for the
        // calling thread and cut one of its blocking calls short (EINTR),
        // which an embedding program (a test client) does not expect.
        let uring = std::thread::spawn(monoio::utils::detect_uring)
            .join()
            .unwrap_or(false);
        if !uring {
            tracing::warn!("io_uring is not available: workers use the legacy epoll driver");
        }
        let mut registry = Registry::default();
        let slots = registry.layout(&config);
        profiles.bind(&config, &slots);
        let epoch = history
            .record(Source::Start, &config.source, None, clock::unix_secs())
            .map_err(|e| io::Error::new(e.kind(), format!("memory.state_dir: {e}")))?
            .epoch;
        // Health checks need the control thread (validation refuses them
        // with telemetry off): verdicts reach the workers in its table.
        let (checks_tx, checks_rx) = std::sync::mpsc::channel();
        let (layouts_tx, layouts_rx) = std::sync::mpsc::channel();
        let (control, mut links) = if config.telemetry.enabled {
            let (handle, published, links) = control::start(
                &config.telemetry,
                Layout {
                    epoch,
                    slots: slots.clone(),
                    budgets: budgets(&config),
                    seeds: seeds(&profiles, &config, &slots),
                },
                count,
                started,
                checks_rx,
                layouts_rx,
            )?;
            (
                Some((handle, published)),
                links.into_iter().map(Some).collect(),
            )
        } else {
            (None, (0..count).map(|_| None).collect::<Vec<_>>())
        };
        let (access_log, log_tx) = match &config.telemetry.access_log {
            Some(dest) => {
                let (h, tx) = access_log::start(dest)?;
                (Some(h), Some(tx))
            }
            None => (None, None),
        };
        let telemetry = match (telemetry_listener, &control) {
            (Some(l), Some((_, published))) => {
                let taddr = l.local_addr()?;
                let tstop = Arc::new(AtomicBool::new(false));
                let (published, flag) = (published.clone(), tstop.clone());
                let h = std::thread::Builder::new()
                    .name("dao-telemetry".into())
                    .spawn(move || http::serve(l, published, flag))?;
                Some((taddr, h, tstop))
            }
            _ => None,
        };
        let health = match &control {
            Some(_) => Checker::start(&config, &slots, checks_tx.clone())?,
            None => None,
        };
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut workers = Vec::with_capacity(count);
        let mut inboxes = Vec::with_capacity(count);
        for (id, listeners) in per_worker.into_iter().enumerate() {
            let (inbox_tx, inbox) = std::sync::mpsc::channel();
            inboxes.push(inbox_tx);
            let setup = worker::Setup {
                id,
                core: (!cores.is_empty()).then(|| cores[id % cores.len()]),
                first: worker::Applied {
                    epoch,
                    config: config.clone(),
                    slots: slots.clone(),
                    listeners: Some(listeners),
                },
                inbox: Some(inbox),
                stop: stop.clone(),
                exit_after,
                link: links[id].take(),
                access_log: log_tx.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("dao-worker-{id}"))
                .spawn(move || worker::run(setup))?;
            workers.push(handle);
        }
        let reload = reload::start(reload::Start {
            config: config.clone(),
            epoch,
            registry,
            slots,
            history,
            profiles,
            path: config_path,
            inboxes,
            layouts: layouts_tx,
            checks: checks_tx,
            checker: health,
            table: control.as_ref().map(|(_, p)| p.clone()),
            started,
            listen: addrs.clone(),
            stop: stop.clone(),
            hup: hup.unwrap_or_default(),
        })?;
        let admin = match (admin_listener, &config.admin) {
            (Some(l), Some(a)) => {
                let aaddr = l.local_addr()?;
                let astop = Arc::new(AtomicBool::new(false));
                let backend: Arc<dyn crate::admin::Backend> = Arc::new(reload.reloads.clone());
                let h = crate::admin::start(l, a.token.clone(), backend, astop.clone())?;
                Some((aaddr, h, astop))
            }
            _ => None,
        };
        Ok(Server {
            addrs,
            stop,
            workers,
            control,
            telemetry,
            access_log,
            reload: Some(reload),
            admin,
        })
    }

    /// The address `/metrics` and `/health` are served on, if configured.
    pub fn telemetry_addr(&self) -> Option<SocketAddr> {
        self.telemetry.as_ref().map(|t| t.0)
    }

    /// The latest resonance table (`None` when telemetry is disabled).
    pub fn resonance(&self) -> Option<Arc<ResonanceTable>> {
        self.control.as_ref().map(|(_, p)| p.load_full())
    }

    /// The address the first listener was first bound to (`server.bind`,
    /// or the first `[[listeners]]`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listener's bound address, in `Config::listeners` order
    /// (`server.bind` first when it is served).
    pub fn listener_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The admin API's address, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.0)
    }

    /// A handle to apply configs, as the admin API does.
    pub fn reloads(&self) -> reload::Reloads {
        self.reload
            .as_ref()
            .map(|r| r.reloads.clone())
            .expect("the reload thread runs until wait")
    }

    /// Asks the workers to stop accepting and finish in-flight requests.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits until every worker has stopped; returns each one's upstream
    /// connection counters.
    pub fn wait(mut self) -> Vec<PoolStats> {
        let stats = std::mem::take(&mut self.workers)
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        if let Some((_, h, stop)) = self.admin.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
        // It stops the health checks and saves the profiles.
        if let Some(r) = self.reload.take() {
            r.stop();
        }
        // The workers' senders are gone: these threads finish their queues
        // (a last merge, the last log lines) and end.
        if let Some((h, _)) = self.control {
            let _ = h.join();
        }
        if let Some(h) = self.access_log {
            let _ = h.join();
        }
        if let Some((_, h, stop)) = self.telemetry {
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
        stats
    }

    /// Stops and waits.
    pub fn shutdown(self) -> Vec<PoolStats> {
        self.stop();
        self.wait()
    }
}

/// The global rate limits' budgets of a config, by `RateSpec::index`.
fn budgets(config: &Config) -> Vec<crate::flow::ratelimit::Budget> {
    config
        .rate_limits()
        .iter()
        .map(|r| r.limiter(config.server.workers, 0).budget())
        .collect()
}

/// Recent latencies learned in earlier runs, for the slots of `config`.
fn seeds(profiles: &Profiles, config: &Config, slots: &crate::sense::Slots) -> Vec<(usize, f64)> {
    let mut out = Vec::new();
    for (r, route) in config.routes.iter().enumerate() {
        let intent = route.intent.as_deref().unwrap_or("");
        for (u, up) in route.upstreams.iter().enumerate() {
            if let Some(seed) = profiles.seed(&up.name, up.addr, intent) {
                out.push((slots.of(r, u), seed.recent_us as f64));
            }
        }
    }
    out
}
