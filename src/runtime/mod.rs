//! Runtime: the pinned worker threads, their start and their graceful stop.

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
use crate::memory::Config;
use crate::sense::control::{self, Published};
use crate::sense::{access_log, http, ResonanceTable, Slots};
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
    /// The active health checks' thread, when a route has checks.
    health: Option<Checker>,
}

impl Server {
    /// Binds the listeners and starts one pinned worker per configured core.
    pub fn start(config: Config) -> io::Result<Server> {
        Server::start_with(config, Arc::new(AtomicBool::new(false)), None)
    }

    /// As [`Server::start`], stopping when `stop` becomes true, or after
    /// `exit_after` responses on any one worker (for profiling runs, where
    /// a process blocked in io_uring under valgrind misses signals).
    pub fn start_with(
        config: Config,
        stop: Arc<AtomicBool>,
        exit_after: Option<u64>,
    ) -> io::Result<Server> {
        let started = clock::now();
        let config = Arc::new(config);
        let count = config.server.workers;
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
        if !monoio::utils::detect_uring() {
            tracing::warn!("io_uring is not available: workers use the legacy epoll driver");
        }
        let slots = Slots::new(&config);
        // Health checks need the control thread (validation refuses them
        // with telemetry off): verdicts reach the workers in its table.
        let (checks_tx, checks_rx) = std::sync::mpsc::channel();
        let (control, mut links) = if config.telemetry.enabled {
            let (handle, published, links) = control::start(
                &config.telemetry,
                slots.clone(),
                count,
                started,
                checks_rx,
                config
                    .rate_limits()
                    .iter()
                    .map(|r| r.limiter(count, 0).budget())
                    .collect(),
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
            Some(_) => Checker::start(&config, &slots, checks_tx)?,
            None => None,
        };
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut workers = Vec::with_capacity(count);
        for (id, listeners) in per_worker.into_iter().enumerate() {
            let setup = worker::Setup {
                id,
                core: (!cores.is_empty()).then(|| cores[id % cores.len()]),
                config: config.clone(),
                listeners,
                stop: stop.clone(),
                exit_after,
                slots: slots.clone(),
                link: links[id].take(),
                access_log: log_tx.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("dao-worker-{id}"))
                .spawn(move || worker::run(setup))?;
            workers.push(handle);
        }
        Ok(Server {
            addrs,
            stop,
            workers,
            control,
            telemetry,
            access_log,
            health,
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

    /// The address the first listener is bound to (`server.bind`, or the
    /// first `[[listeners]]`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listener's bound address, in `Config::listeners` order
    /// (`server.bind` first when it is served).
    pub fn listener_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Asks the workers to stop accepting and finish in-flight requests.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits until every worker has stopped; returns each one's upstream
    /// connection counters.
    pub fn wait(self) -> Vec<PoolStats> {
        let stats = self
            .workers
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        if let Some(checker) = self.health {
            checker.stop();
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
