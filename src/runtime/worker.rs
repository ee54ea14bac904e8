//! A worker: one thread pinned to one core, its own monoio runtime, its
//! own listener, balancers, pool and buffers. Nothing here is shared with
//! another core except the read-only config.
//!
//! Configs reach the worker in its inbox (`Applied`), looked at every tick
//! (100 ms): the worker builds a new generation from it (see
//! `generation`), makes it current, and swaps its listener when the
//! config moved it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use monoio::io::Canceller;
use monoio::net::TcpListener;

use super::generation::{self, Addresses, Gen};
use crate::align::balancer::{Ask, Seen};
use crate::clock;
use crate::memory::Config;
use crate::sense::access_log::{AccessLog, RequestIds};
use crate::sense::control::Link;
use crate::sense::record::Recorder;
use crate::sense::Slots;
use crate::upstream::pool::{Pool, PoolStats};
use std::sync::mpsc::Receiver;

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
    /// The generation new requests start under.
    gen: RefCell<Rc<Gen>>,
    /// The addresses pooled so far (numbers for `pool`).
    addresses: RefCell<Addresses>,
    /// Configs applied by the control side, for this worker.
    inbox: Option<Receiver<Applied>>,
    /// The accept loops running (one per listener).
    accepting: RefCell<Vec<Accepting>>,
    pub(crate) pool: Pool,
    /// Requests between a complete head and the end of their response.
    pub(crate) in_flight: Cell<usize>,
    /// Retries in flight on this core (for the retry budget).
    pub(crate) retries_active: Cell<u32>,
    /// Shutting down: no new requests on kept-alive connections.
    pub(crate) stopping: Cell<bool>,
    /// Open WebSocket tunnels, cut when the shutdown timeout runs out.
    pub(crate) tunnels: crate::gate::tunnel::Tunnels,
    /// Open HTTP/2 client connections, told when the worker stops.
    pub(crate) h2: crate::gate::h2::Connections,
    /// The time, refreshed every tick (100 ms): good enough for pool idle
    /// times and the response deadline, and free to read per request.
    pub(crate) coarse_now: Cell<std::time::Instant>,
    /// Sense's recording, when telemetry is enabled.
    pub(crate) recorder: Option<RefCell<Recorder>>,
    /// The access log, when enabled.
    pub(crate) access_log: Option<AccessLog>,
    /// Request id generator, when ids are generated.
    pub(crate) request_ids: Option<RequestIds>,
    /// Sense's channel to the control thread (dropped at exit).
    link: RefCell<Option<Link>>,
    /// Whether Sense or the access log time requests.
    sensed: bool,
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

    /// The current generation: what a request starting now runs under.
    #[inline]
    pub(crate) fn gen(&self) -> Rc<Gen> {
        self.gen.borrow().clone()
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
    pub(crate) fn pin(&self, gen: &Gen, route: usize, i: usize) -> usize {
        gen.balancers[route].started(i);
        i
    }

    /// Picks route `route`'s upstream for a request.
    pub(crate) fn pick(&self, gen: &Gen, route: usize, ask: &Ask) -> usize {
        let b = &gen.balancers[route];
        let i = b.pick(ask);
        b.started(i);
        if b.panicked() {
            if let Some(rec) = &self.recorder {
                rec.borrow_mut().panic_pick(gen.slots.of(route, i));
            }
        }
        i
    }

    /// Hands the interval to the control thread and the log lines to
    /// their writer; takes back emptied histograms; copies a new table's
    /// rows into the balancers.
    fn report(&self) {
        if let (Some(rec), Some(link)) = (&self.recorder, &*self.link.borrow()) {
            let gen = self.gen();
            let mut rec = rec.borrow_mut();
            while let Ok(h) = link.recycled.try_recv() {
                rec.give_back(h);
            }
            let mut report = rec.seal();
            report.limits = gen.limiters.iter().map(|l| l.borrow_mut().seal()).collect();
            report.config_epoch = gen.epoch;
            // The control thread is gone only at exit.
            let _ = link.reports.send(report);
            let table = link.table.load();
            if table.epoch != self.table_epoch.get() {
                self.table_epoch.set(table.epoch);
                self.observe(&gen, &table);
            }
        }
        if let Some(log) = &self.access_log {
            log.flush();
        }
    }

    /// Copies what `gen` needs from a table: the balancers' view and, when
    /// the table's shares are for `gen`'s config, the rate limit shares.
    fn observe(&self, gen: &Gen, table: &crate::sense::ResonanceTable) {
        let now = self.now_us();
        if table.limit_epoch == gen.epoch {
            if let Some(shares) = table.limit_shares.get(self.id) {
                for (l, share) in gen.limiters.iter().zip(shares) {
                    l.borrow_mut().apply(*share, now);
                }
            }
        }
        for (r, b) in gen.balancers.iter().enumerate() {
            // A table older than the config may lack its new slots.
            b.observe(now, |u| {
                table
                    .upstreams
                    .get(gen.slots.of(r, u))
                    .map_or_else(Seen::default, Seen::of)
            });
        }
    }

    /// Makes `applied` the current config: a new generation for requests
    /// that start from now on, and the listener moved if it changed.
    fn apply(self: &Rc<Self>, applied: Applied) {
        let Applied {
            epoch,
            config,
            slots,
            listeners,
        } = applied;
        let (gen, live) = generation::build(
            self.id,
            epoch,
            config,
            slots,
            &mut self.addresses.borrow_mut(),
            (self.now_us(), self.sensed),
        );
        self.pool.retain(&live);
        let proxy = &gen.config.proxy;
        self.pool
            .configure(proxy.pool_max_idle, proxy.pool_idle_timeout);
        self.pool
            .configure_h2(proxy.h2_max_connections_per_upstream);
        if let Some(rec) = &self.recorder {
            rec.borrow_mut().grow(gen.slots.len());
        }
        if let Some(link) = &*self.link.borrow() {
            self.observe(&gen, &link.table.load());
        }
        *self.gen.borrow_mut() = Rc::new(gen);
        if let Some(listeners) = listeners {
            // The old loops end at their next turn.
            drop(self.close_listeners());
            for (index, l) in listeners.into_iter().enumerate() {
                self.listen(l, index);
            }
        }
        tracing::debug!(worker = self.id, epoch, "config applied");
    }

    /// Starts accepting on `listener`, the socket of the config's
    /// `index`th listener (a task of its own).
    fn listen(self: &Rc<Self>, listener: std::net::TcpListener, index: usize) {
        let addr = listener.local_addr().ok();
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(worker = self.id, error = %e, "cannot adopt the listener");
                return;
            }
        };
        let canceller = Canceller::new();
        let closed = Rc::new(Cell::new(false));
        let task = accept_loop(
            listener,
            (self.clone(), index, addr),
            canceller.handle(),
            closed.clone(),
        );
        let task = monoio::spawn(task);
        self.accepting.borrow_mut().push(Accepting {
            addr,
            canceller,
            closed,
            task,
        });
    }

    /// Stops every accept loop; their listeners close once the loops
    /// have seen it (the returned tasks end then).
    fn close_listeners(&self) -> Vec<monoio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for a in self.accepting.borrow_mut().drain(..) {
            tracing::debug!(worker = self.id, addr = ?a.addr, "listener closed");
            a.closed.set(true);
            a.canceller.cancel();
            tasks.push(a.task);
        }
        tasks
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

/// A config applied by the control side, as one worker receives it.
pub(crate) struct Applied {
    /// The config's epoch.
    pub(crate) epoch: u64,
    pub(crate) config: Arc<Config>,
    /// Its slots (kept upstreams keep their number).
    pub(crate) slots: Slots,
    /// This worker's socket of each of `config.listeners`, in that order,
    /// when the set of addresses changed (the old ones then close).
    pub(crate) listeners: Option<Vec<std::net::TcpListener>>,
}

/// One running accept loop.
struct Accepting {
    addr: Option<std::net::SocketAddr>,
    canceller: Canceller,
    /// Set before cancelling: the loop ends instead of backing off.
    closed: Rc<Cell<bool>>,
    task: monoio::task::JoinHandle<()>,
}

/// What a worker is started with.
pub(crate) struct Setup {
    pub(crate) id: usize,
    pub(crate) core: Option<core_affinity::CoreId>,
    /// The first config, with its listener.
    pub(crate) first: Applied,
    /// Later configs.
    pub(crate) inbox: Option<Receiver<Applied>>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) exit_after: Option<u64>,
    pub(crate) link: Option<Link>,
    pub(crate) access_log: Option<std::sync::mpsc::Sender<Vec<u8>>>,
}

/// The worker thread's body; returns its pool counters when it stops.
pub(crate) fn run(setup: Setup) -> PoolStats {
    let Setup {
        id,
        core,
        mut first,
        inbox,
        stop,
        exit_after,
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
        let sensed = link.is_some() || access_log.is_some();
        let listeners = first.listeners.take().unwrap_or_default();
        let mut addresses = Addresses::default();
        let (gen, live) = generation::build(
            id,
            first.epoch,
            first.config,
            first.slots,
            &mut addresses,
            (0, sensed),
        );
        let config = &gen.config;
        let pool = Pool::new(
            0,
            config.proxy.pool_max_idle,
            config.proxy.pool_idle_timeout,
        );
        pool.retain(&live);
        pool.configure_h2(config.proxy.h2_max_connections_per_upstream);
        let worker = Rc::new(Worker {
            id,
            sensed,
            recorder: link
                .is_some()
                .then(|| RefCell::new(Recorder::new(id, gen.slots.len()))),
            request_ids: config.telemetry.request_id.then(|| RequestIds::new(id)),
            gen: RefCell::new(Rc::new(gen)),
            addresses: RefCell::new(addresses),
            inbox,
            accepting: RefCell::new(Vec::new()),
            pool,
            in_flight: Cell::new(0),
            retries_active: Cell::new(0),
            stopping: Cell::new(false),
            tunnels: Default::default(),
            h2: Default::default(),
            spare: RefCell::new(Vec::new()),
            handled: Cell::new(0),
            link: RefCell::new(link),
            table_epoch: Cell::new(0),
            origin: clock::now(),
            access_log: access_log.map(AccessLog::new),
            coarse_now: Cell::new(clock::now()),
            exit_after,
            stop: stop.clone(),
        });
        for (index, l) in listeners.into_iter().enumerate() {
            worker.listen(l, index);
        }
        {
            let watch = std::pin::pin!(watch(&worker, &stop));
            let report = std::pin::pin!(report_loop(&worker));
            futures_util::future::select(watch, report).await;
        }
        // The sockets close now: new connections are refused while the
        // ones in flight finish.
        for task in worker.close_listeners() {
            task.await;
        }
        worker.stopping.set(true);
        // HTTP/2 clients get their GOAWAY now.
        worker.h2.stop();
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

/// Accepts on the worker's socket of the config's `index`th listener
/// (bound to `addr`) until `closed`; TLS listeners' connections start with
/// a handshake, with the certificates of the config current when they are
/// accepted, counted in Sense under `addr`.
async fn accept_loop(
    listener: TcpListener,
    (worker, index, addr): (Rc<Worker>, usize, Option<std::net::SocketAddr>),
    cancel: monoio::io::CancelHandle,
    closed: Rc<Cell<bool>>,
) {
    while !closed.get() {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, peer)) => {
                worker.connection_opened();
                let tls = worker
                    .gen()
                    .config
                    .listeners
                    .get(index)
                    .and_then(|l| l.tls.clone());
                match tls {
                    None => {
                        let client = crate::gate::Transport::Plain(stream);
                        monoio::spawn(crate::gate::connection(client, peer, worker.clone()));
                    }
                    Some(tls) => {
                        let local = addr.unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
                        let serve =
                            crate::gate::serve_tls(stream, peer, worker.clone(), tls, local);
                        monoio::spawn(serve);
                    }
                }
            }
            Err(_) if closed.get() => break,
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
async fn watch(worker: &Rc<Worker>, stop: &AtomicBool) {
    let mut ticks = 0u32;
    while !stop.load(Ordering::Relaxed) {
        monoio::time::sleep(TICK).await;
        worker.coarse_now.set(clock::now());
        while let Some(applied) = worker.inbox.as_ref().and_then(|i| i.try_recv().ok()) {
            worker.apply(applied);
        }
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(10) {
            worker.pool.sweep(clock::now());
            crate::alloc::collect();
        }
    }
}

/// Every merge interval, hands Sense's interval and the access log over.
async fn report_loop(worker: &Worker) {
    // Telemetry settings do not change on reload.
    let every = worker.gen().config.telemetry.merge_interval;
    loop {
        monoio::time::sleep(every).await;
        worker.report();
    }
}

/// Waits for in-flight requests, open tunnels and HTTP/2 connections
/// (their last frames written after GOAWAY), up to the shutdown timeout;
/// then cuts the tunnels left.
async fn drain(worker: &Worker) {
    let deadline = clock::now() + worker.gen().config.server.shutdown_timeout;
    while worker.in_flight.get() > 0 || worker.tunnels.open() > 0 || worker.h2.open() > 0 {
        if clock::now() >= deadline {
            tracing::warn!(
                worker = worker.id,
                left = worker.in_flight.get(),
                tunnels = worker.tunnels.open(),
                "shutdown timeout: cutting requests and tunnels"
            );
            worker.tunnels.cut();
            // The cut tunnels shut their connections down when next
            // polled, which this pause lets them be.
            monoio::time::sleep(Duration::from_millis(10)).await;
            return;
        }
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}
