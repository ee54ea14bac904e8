//! Runtime: the pinned worker threads, their start and their graceful stop.

pub mod signals;
pub mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::gate::listener;
use crate::memory::Config;
use crate::upstream::pool::PoolStats;

/// A running proxy: its workers and the flag that stops them.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<PoolStats>>,
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
        let config = Arc::new(config);
        let count = config.server.workers;
        let listeners = listener::bind_all(config.server.bind, count)?;
        let addr = listeners[0].local_addr()?;
        if !monoio::utils::detect_uring() {
            tracing::warn!("io_uring is not available: workers use the legacy epoll driver");
        }
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut workers = Vec::with_capacity(count);
        for (id, listener) in listeners.into_iter().enumerate() {
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let (config, stop) = (config.clone(), stop.clone());
            let handle = std::thread::Builder::new()
                .name(format!("dao-worker-{id}"))
                .spawn(move || worker::run(id, core, config, listener, stop, exit_after))?;
            workers.push(handle);
        }
        Ok(Server {
            addr,
            stop,
            workers,
        })
    }

    /// The address the listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Asks the workers to stop accepting and finish in-flight requests.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits until every worker has stopped; returns each one's upstream
    /// connection counters.
    pub fn wait(self) -> Vec<PoolStats> {
        self.workers
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    }

    /// Stops and waits.
    pub fn shutdown(self) -> Vec<PoolStats> {
        self.stop();
        self.wait()
    }
}
