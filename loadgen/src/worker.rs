//! Worker: one pinned thread per `-t`, each running its own monoio runtime
//! and the connections assigned to it; nothing is shared on the request path.

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use monoio_rustls::TlsConnector;

use crate::conn;
use crate::pacer::Pacer;
use crate::plan::Plan;
use crate::schedule::Timetable;
use crate::stats::{ErrorKind, Live, Stats};

/// The phases of a run, shared by all threads.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Time zero of the timetable (connections are opened just before).
    pub start: Instant,
    /// Start of the measured period (end of warm-up).
    pub measure_from: Instant,
    /// End of the run.
    pub end: Instant,
}

impl Window {
    /// Whether an event at `t` counts.
    #[inline]
    pub fn counts(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.end
    }
}

/// What a finished thread hands back.
#[derive(Debug)]
pub struct WorkerResult {
    /// Its measurements.
    pub stats: Stats,
    /// Whether the open-loop pacer had sub-millisecond timers (io_uring).
    pub precise_timer: bool,
    /// Whether the runtime used io_uring.
    pub uring: bool,
}

/// Per-thread state the connection tasks share (through `Rc`).
pub struct Worker {
    /// The run.
    pub plan: Arc<Plan>,
    /// Its phases.
    pub window: Window,
    /// Precise sleeps for the timetable.
    pub pacer: Pacer,
    /// TLS connector when the target is https.
    pub tls: Option<TlsConnector>,
    stats: RefCell<Stats>,
    live: Arc<Live>,
}

impl Worker {
    /// The timetable of global connection `index`, or None in closed loop.
    pub fn timetable(&self, index: usize) -> Option<Timetable> {
        self.plan
            .rate
            .map(|rate| Timetable::new(self.window.start, rate, self.plan.connections, index))
    }

    /// Records a completed response of `bytes` bytes that was meant to leave
    /// at `intended`, left at `sent` and was complete at `done`.
    #[inline]
    pub fn complete(
        &self,
        intended: Instant,
        sent: Instant,
        done: Instant,
        status: u16,
        bytes: usize,
    ) {
        self.live.completed();
        if self.window.counts(done) {
            let corrected = crate::clock::nanos_between(intended, done);
            let uncorrected = crate::clock::nanos_between(sent, done);
            let mut stats = self.stats.borrow_mut();
            stats.complete(corrected, uncorrected, status);
            stats.bytes_read += bytes as u64;
        }
    }

    /// Records `n` requests that failed at `at`.
    pub fn error(&self, kind: ErrorKind, n: u64, at: Instant) {
        if n == 0 {
            return;
        }
        self.live.errors(n);
        if self.window.counts(at) {
            self.stats.borrow_mut().error(kind, n);
        }
    }

    /// Records a new connection.
    pub fn connected(&self) {
        self.stats.borrow_mut().connects += 1;
    }
}

/// io_uring set-up: cooperative task running (Linux 5.19+) when the kernel
/// has it. Without it, every completion that arrives while the thread runs
/// user code is announced with an inter-processor interrupt; with it, the
/// kernel runs the completion work at the thread's next entry. Measured
/// here: about +25 % closed-loop requests per second on one core.
fn uring_builder() -> io_uring::Builder {
    let mut coop = io_uring::IoUring::builder();
    coop.setup_coop_taskrun().setup_taskrun_flag();
    if coop.build(8).is_ok() {
        coop
    } else {
        io_uring::IoUring::builder()
    }
}

/// Starts thread `id` serving the connections `conns`.
pub fn spawn(
    id: usize,
    plan: Arc<Plan>,
    window: Window,
    conns: Range<usize>,
    live: Arc<Live>,
) -> std::io::Result<JoinHandle<Result<WorkerResult, String>>> {
    std::thread::Builder::new()
        .name(format!("loadgen-{id}"))
        .spawn(move || run(id, plan, window, conns, live))
}

fn run(
    id: usize,
    plan: Arc<Plan>,
    window: Window,
    conns: Range<usize>,
    live: Arc<Live>,
) -> Result<WorkerResult, String> {
    if let Some(cpu) = plan.cpus[id] {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            return Err(format!("thread {id}: cannot pin to CPU {cpu}"));
        }
    }
    let uring = monoio::utils::detect_uring();
    // Room for a read, a write and a timer per connection in one batch.
    let entries = (conns.len() * 2).next_power_of_two().clamp(256, 32_768) as u32;
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .uring_builder(uring_builder())
        .with_entries(entries)
        .enable_timer()
        .build()
        .map_err(|e| format!("thread {id}: cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let (pacer, precise_timer) =
            Pacer::start(uring && plan.rate.is_some() && plan.precise_timer);
        let tls = plan
            .tls
            .as_ref()
            .map(|t| TlsConnector::from(Arc::clone(&t.config)));
        let worker = Rc::new(Worker {
            plan,
            window,
            pacer,
            tls,
            stats: RefCell::new(Stats::new()),
            live,
        });
        for index in conns {
            monoio::spawn(conn::drive(Rc::clone(&worker), index));
        }
        monoio::time::sleep_until(monoio::time::Instant::from_std(window.end)).await;
        let stats = worker.stats.replace(Stats::new());
        Ok(WorkerResult {
            stats,
            precise_timer,
            uring,
        })
    })
}
