//! A worker: one thread pinned to one core, its own monoio runtime, its
//! own listener, balancers, pool and buffers. Nothing here is shared with
//! another core except the read-only config.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpListener;

use crate::align::balancer::{Ask, Balancer, Seen};
use crate::align::breaker::Load;
use crate::align::CircuitBreaker;
use crate::clock;
use crate::memory::Config;
use crate::sense::access_log::{AccessLog, RequestIds};
use crate::sense::control::Link;
use crate::sense::record::Recorder;
use crate::sense::Slots;
use crate::upstream::pool::{Pool, PoolStats};

/// Capacity of the buffers lent to exchanges.
const BUF_SIZE: usize = 16 * 1024;
/// Spare buffers kept per worker: enough for the exchanges in flight on a
/// busy core (two each), few enough not to hold memory after a burst.
const MAX_SPARE: usize = 128;
/// How often the stop flag and idle pools are looked at.
const TICK: Duration = Duration::from_millis(100);

/// The state of one worker, shared by its connection tasks.
pub(crate) struct Worker {
    pub(crate) id: usize,
    pub(crate) config: Arc<Config>,
    pub(crate) balancers: Box<[Balancer]>,
    /// Each route's filter chain, built on this core.
    pub(crate) chains: Box<[crate::flow::Chain]>,
    /// This core's rate limiters (shared with the chains' filters), by
    /// `RateSpec::index`.
    limiters: Vec<Rc<RefCell<crate::flow::ratelimit::Limiter>>>,
    pub(crate) pool: Pool,
    /// Per route, this core's share of its circuit breaker limits.
    pub(crate) breakers: Box<[Option<CircuitBreaker>]>,
    /// Per upstream address (`Upstream::pool`), requests in flight and
    /// waiting for a connection on this core.
    pub(crate) loads: Box<[Load]>,
    /// Requests between a complete head and the end of their response.
    pub(crate) in_flight: Cell<usize>,
    /// Retries in flight on this core (for the retry budget).
    pub(crate) retries_active: Cell<u32>,
    /// Shutting down: no new requests on kept-alive connections.
    pub(crate) stopping: Cell<bool>,
    /// The time, refreshed every tick (100 ms): good enough for pool idle
    /// times and the response deadline, and free to read per request.
    pub(crate) coarse_now: Cell<std::time::Instant>,
    /// Where each (route, upstream) is recorded.
    pub(crate) slots: Slots,
    /// Sense's recording, when telemetry is enabled.
    pub(crate) recorder: Option<RefCell<Recorder>>,
    /// The access log, when enabled.
    pub(crate) access_log: Option<AccessLog>,
    /// Request id generator, when ids are generated.
    pub(crate) request_ids: Option<RequestIds>,
    /// Sense's channel to the control thread (dropped at exit).
    link: RefCell<Option<Link>>,
    /// Whether requests are timed: for Sense, the access log or a
    /// latency-aware policy.
    timed: bool,
    /// The epoch of the table last copied into the balancers.
    table_epoch: Cell<u64>,
    /// The worker's clock origin, for the balancers' microseconds.
    origin: std::time::Instant,
    /// Responses finished (or failed) so far.
    handled: Cell<u64>,
    exit_after: Option<u64>,
    stop: Arc<AtomicBool>,
    spare: RefCell<Vec<Vec<u8>>>,
}

impl Worker {
    /// An empty buffer of `BUF_SIZE` capacity, reused when possible.
    pub(crate) fn take_buf(&self) -> Vec<u8> {
        self.spare
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_SIZE))
    }

    /// Counts a finished request; asks for a stop after `exit_after`.
    pub(crate) fn finished(&self) {
        let n = self.handled.get() + 1;
        self.handled.set(n);
        if self.exit_after == Some(n) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Whether requests are timed (for Sense, the access log or a
    /// latency-aware policy).
    #[inline]
    pub(crate) fn timing(&self) -> bool {
        self.timed
    }

    /// A client connection was accepted.
    pub(crate) fn connection_opened(&self) {
        if let Some(rec) = &self.recorder {
            rec.borrow_mut().connection_opened();
        }
    }

    /// A client connection was closed.
    pub(crate) fn connection_closed(&self) {
        if let Some(rec) = &self.recorder {
            rec.borrow_mut().connection_closed();
        }
    }

    /// Microseconds since the worker started, at the last tick (100 ms).
    pub(crate) fn coarse_us(&self) -> u64 {
        self.coarse_now
            .get()
            .saturating_duration_since(self.origin)
            .as_micros() as u64
    }

    /// Microseconds since the worker started, now.
    pub(crate) fn now_us(&self) -> u64 {
        clock::now()
            .saturating_duration_since(self.origin)
            .as_micros() as u64
    }

    /// Sends a request of route `route` to upstream `i` (a sticky pin).
    pub(crate) fn pin(&self, route: usize, i: usize) -> usize {
        self.balancers[route].started(i);
        i
    }

    /// Picks route `route`'s upstream for a request.
    pub(crate) fn pick(&self, route: usize, ask: &Ask) -> usize {
        let b = &self.balancers[route];
        let i = b.pick(ask);
        b.started(i);
        if b.panicked() {
            if let Some(rec) = &self.recorder {
                rec.borrow_mut().panic_pick(self.slots.of(route, i));
            }
        }
        i
    }

    /// Hands the interval to the control thread and the log lines to
    /// their writer; takes back emptied histograms; copies a new table's
    /// rows into the balancers.
    fn report(&self) {
        if let (Some(rec), Some(link)) = (&self.recorder, &*self.link.borrow()) {
            let mut rec = rec.borrow_mut();
            while let Ok(h) = link.recycled.try_recv() {
                rec.give_back(h);
            }
            let mut report = rec.seal();
            report.limits = self
                .limiters
                .iter()
                .map(|l| l.borrow_mut().seal())
                .collect();
            // The control thread is gone only at exit.
            let _ = link.reports.send(report);
            let table = link.table.load();
            if table.epoch != self.table_epoch.get() {
                self.table_epoch.set(table.epoch);
                let now = self.now_us();
                if let Some(shares) = table.limit_shares.get(self.id) {
                    for (l, share) in self.limiters.iter().zip(shares) {
                        l.borrow_mut().apply(*share, now);
                    }
                }
                for (r, b) in self.balancers.iter().enumerate() {
                    b.observe(now, |u| Seen::of(&table.upstreams[self.slots.of(r, u)]));
                }
            }
        }
        if let Some(log) = &self.access_log {
            log.flush();
        }
    }

    /// A buffer for upstream responses: twice the usual size, so that a
    /// head and a 16 KiB body arrive in one read.
    pub(crate) fn take_up_buf(&self) -> Vec<u8> {
        let mut buf = self.take_buf();
        buf.reserve_exact(2 * BUF_SIZE - buf.len());
        buf
    }

    /// Gives a buffer back for reuse.
    pub(crate) fn give_buf(&self, mut buf: Vec<u8>) {
        let mut spare = self.spare.borrow_mut();
        // Buffers grown for a long body are not kept: memory goes back.
        if (BUF_SIZE..=2 * BUF_SIZE).contains(&buf.capacity()) && spare.len() < MAX_SPARE {
            buf.clear();
            spare.push(buf);
        }
    }
}

/// What a worker is started with.
pub(crate) struct Setup {
    pub(crate) id: usize,
    pub(crate) core: Option<core_affinity::CoreId>,
    pub(crate) config: Arc<Config>,
    /// This worker's socket of each of `config.listeners`, in that order.
    pub(crate) listeners: Vec<std::net::TcpListener>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) exit_after: Option<u64>,
    pub(crate) slots: Slots,
    pub(crate) link: Option<Link>,
    pub(crate) access_log: Option<std::sync::mpsc::Sender<Vec<u8>>>,
}

/// The worker thread's body; returns its pool counters when it stops.
pub(crate) fn run(setup: Setup) -> PoolStats {
    let Setup {
        id,
        core,
        config,
        listeners,
        stop,
        exit_after,
        slots,
        link,
        access_log,
    } = setup;
    if let Some(core) = core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(worker = id, core = core.id, "could not pin the worker");
        }
    }
    let mut runtime = match build_runtime() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(worker = id, error = %e, "cannot start the worker's runtime");
            return PoolStats::default();
        }
    };
    runtime.block_on(async move {
        let listeners = match listeners
            .into_iter()
            .map(TcpListener::from_std)
            .collect::<std::io::Result<Vec<_>>>()
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(worker = id, error = %e, "cannot adopt the listeners");
                return PoolStats::default();
            }
        };
        let timed = link.is_some()
            || access_log.is_some()
            || config
                .routes
                .iter()
                .any(|r| r.policy == crate::memory::Policy::PeakEwma);
        let limiters: Vec<_> = config
            .rate_limits()
            .iter()
            .map(|spec| Rc::new(RefCell::new(spec.limiter(config.server.workers, 0))))
            .collect();
        let worker = Rc::new(Worker {
            id,
            timed,
            chains: config
                .routes
                .iter()
                .map(|r| crate::flow::Chain::build(&r.filters, &limiters))
                .collect(),
            limiters,
            balancers: (0..config.routes.len())
                .map(|r| Balancer::new(&config, r, id))
                .collect(),
            pool: Pool::new(
                config.pools.len(),
                config.proxy.pool_max_idle,
                config.proxy.pool_idle_timeout,
            ),
            breakers: config
                .routes
                .iter()
                .map(|r| r.circuit_breaker.map(|b| b.per_core(config.server.workers)))
                .collect(),
            loads: config.pools.iter().map(|_| Load::default()).collect(),
            in_flight: Cell::new(0),
            retries_active: Cell::new(0),
            stopping: Cell::new(false),
            spare: RefCell::new(Vec::new()),
            handled: Cell::new(0),
            recorder: link
                .is_some()
                .then(|| RefCell::new(Recorder::new(id, slots.len()))),
            link: RefCell::new(link),
            table_epoch: Cell::new(0),
            origin: clock::now(),
            slots,
            access_log: access_log.map(AccessLog::new),
            request_ids: config.telemetry.request_id.then(|| RequestIds::new(id)),
            coarse_now: Cell::new(clock::now()),
            exit_after,
            stop: stop.clone(),
            config,
        });
        {
            let accept = std::pin::pin!(futures_util::future::join_all(
                listeners
                    .iter()
                    .enumerate()
                    .map(|(i, l)| accept_loop(l, i, &worker)),
            ));
            let watch = std::pin::pin!(watch(&worker, &stop));
            let report = std::pin::pin!(report_loop(&worker));
            let both = futures_util::future::select(watch, report);
            futures_util::future::select(accept, both).await;
        }
        drop(listeners);
        worker.stopping.set(true);
        {
            // Keep reporting while in-flight requests finish.
            let d = std::pin::pin!(drain(&worker));
            let report = std::pin::pin!(report_loop(&worker));
            futures_util::future::select(d, report).await;
        }
        // The last figures and lines; then the channels close, so that the
        // control and log threads can finish even if a task still holds
        // this worker.
        worker.report();
        worker.link.borrow_mut().take();
        if let Some(log) = &worker.access_log {
            log.close();
        }
        worker.pool.stats()
    })
}

/// A worker's runtime type: io_uring, or epoll where io_uring is missing.
type Runtime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// The worker's runtime: io_uring when the kernel has it. The ring is only
/// ever touched by this thread, which lets the kernel skip the work of
/// waking other threads for completions (COOP_TASKRUN, SINGLE_ISSUER);
/// kernels without those flags get a plain ring.
fn build_runtime() -> std::io::Result<Runtime> {
    let mut ring = io_uring::IoUring::builder();
    ring.setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_single_issuer();
    let tuned = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .uring_builder(ring)
        .enable_timer()
        .build();
    match tuned {
        Ok(r) => Ok(r),
        Err(_) => monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build(),
    }
}

/// Accepts on the worker's socket of `config.listeners[index]`; TLS
/// listeners' connections start with a handshake.
async fn accept_loop(listener: &TcpListener, index: usize, worker: &Rc<Worker>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                worker.connection_opened();
                match &worker.config.listeners[index].tls {
                    None => {
                        let client = crate::gate::ClientStream::Plain(stream);
                        monoio::spawn(crate::gate::connection(client, peer, worker.clone()));
                    }
                    Some(tls) => {
                        let (w, tls) = (worker.clone(), tls.clone());
                        monoio::spawn(crate::gate::serve_tls(stream, peer, w, tls));
                    }
                }
            }
            Err(e) => {
                // Out of descriptors and the like: back off briefly.
                tracing::warn!(worker = worker.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Returns when the stop flag is set; once a second, sweeps idle upstream
/// connections and hands freed memory back.
async fn watch(worker: &Worker, stop: &AtomicBool) {
    let mut ticks = 0u32;
    while !stop.load(Ordering::Relaxed) {
        monoio::time::sleep(TICK).await;
        worker.coarse_now.set(clock::now());
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(10) {
            worker.pool.sweep(clock::now());
            crate::alloc::collect();
        }
    }
}

/// Every merge interval, hands Sense's interval and the access log over.
async fn report_loop(worker: &Worker) {
    let every = worker.config.telemetry.merge_interval;
    loop {
        monoio::time::sleep(every).await;
        worker.report();
    }
}

/// Waits for in-flight requests, up to the shutdown timeout.
async fn drain(worker: &Worker) {
    let deadline = clock::now() + worker.config.server.shutdown_timeout;
    while worker.in_flight.get() > 0 {
        if clock::now() >= deadline {
            tracing::warn!(
                worker = worker.id,
                left = worker.in_flight.get(),
                "shutdown timeout: cutting requests"
            );
            return;
        }
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}
