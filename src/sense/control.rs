//! The control thread: receives each core's sealed interval over a channel
//! (workers never wait on it), merges them, and every merge interval
//! publishes a new `ResonanceTable` with one pointer swap. Emptied
//! histograms go back to the core they came from, so recording allocates
//! nothing once warm. Active health check results (from the `dao-health`
//! thread) come in on a channel of their own and land in the next table.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use arc_swap::ArcSwap;
use hdrhistogram::Histogram;

use super::merge::{Merger, Shape};
use super::record::Report;
use super::slots::Slots;
use super::table::{Resonance, ResonanceTable};
use crate::clock;
use crate::flow::ratelimit::{Budget, Coordinator};
use crate::memory::Telemetry;

/// The published table, read by anyone with one lock-free load.
pub type Published = Arc<ArcSwap<ResonanceTable>>;

/// A worker's end of the control channel.
#[derive(Debug)]
pub struct Link {
    /// Sealed intervals go here.
    pub reports: Sender<Report>,
    /// Emptied histograms come back here.
    pub recycled: Receiver<Histogram<u64>>,
    /// The published table, loaded once per merge interval by the worker.
    pub table: Published,
}

/// One active health check result, sent by the health thread.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The slots of every (route, upstream) the probed address stands for.
    pub slots: Arc<[usize]>,
    /// Whether the probe got an expected status in time.
    pub passed: bool,
    /// The verdict after this probe.
    pub up: bool,
}

/// A reloaded config's shape, sent before any worker runs it: its slots
/// and its rate limits' budgets.
#[derive(Debug)]
pub struct Layout {
    /// The config's epoch.
    pub epoch: u64,
    /// Its slots (kept ones keep their number).
    pub slots: Slots,
    /// Its global rate limits, by `RateSpec::index`.
    pub budgets: Vec<Budget>,
    /// Recent latencies (µs) learned in an earlier run (service
    /// profiles), for slots that have none yet: the balancers start warm.
    pub seeds: Vec<(usize, f64)>,
}

/// Starts the control thread; returns it, the table it publishes and one
/// link per worker. The thread ends once every link's sender is dropped
/// (the workers have stopped), after a last merge. Health check results
/// sent on `checks` are taken in at every publication; a reload's
/// `Layout` on `layouts` before the next report is absorbed.
pub fn start(
    telemetry: &Telemetry,
    first: Layout,
    workers: usize,
    started: Instant,
    checks: Receiver<Checked>,
    layouts: Receiver<Layout>,
) -> std::io::Result<(JoinHandle<()>, Published, Vec<Link>)> {
    let Layout {
        epoch,
        slots,
        budgets,
        seeds,
    } = first;
    let published: Published = Arc::new(ArcSwap::from_pointee(ResonanceTable::empty(
        &slots, workers,
    )));
    let (tx, rx) = mpsc::channel();
    let mut back = Vec::with_capacity(workers);
    let mut links = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (btx, brx) = mpsc::channel();
        back.push(btx);
        links.push(Link {
            reports: tx.clone(),
            recycled: brx,
            table: published.clone(),
        });
    }
    drop(tx);
    let shape = Shape::new(
        telemetry.merge_interval,
        telemetry.window,
        telemetry.tempo_intervals,
        Resonance {
            latency_ref: telemetry.latency_ref,
            queue_ref: telemetry.queue_ref,
        },
    );
    let mut merger = Merger::new(shape, slots, workers);
    merger.seed(&seeds);
    let limits = Limits {
        epoch,
        workers,
        interval_us: shape.interval.as_micros() as u64,
        coordinator: None,
    }
    .with(&budgets);
    let inputs = Inputs {
        reports: rx,
        checks,
        layouts,
    };
    let out = published.clone();
    let handle = std::thread::Builder::new()
        .name("dao-control".into())
        .spawn(move || run(merger, limits, inputs, back, out, shape, started))?;
    Ok((handle, published, links))
}

/// The global rate limits of the config in force.
struct Limits {
    /// Its epoch: reports of workers still on another config are left out.
    epoch: u64,
    workers: usize,
    interval_us: u64,
    coordinator: Option<Coordinator>,
}

impl Limits {
    fn with(mut self, budgets: &[Budget]) -> Limits {
        self.coordinator = (!budgets.is_empty())
            .then(|| Coordinator::new(self.workers, self.interval_us, budgets));
        self
    }
}

/// What the control thread receives.
struct Inputs {
    reports: Receiver<Report>,
    checks: Receiver<Checked>,
    layouts: Receiver<Layout>,
}

impl Inputs {
    /// Takes in reloaded layouts (before any report made under them).
    fn relayout(&self, merger: &mut Merger, limits: &mut Limits) {
        while let Ok(l) = self.layouts.try_recv() {
            merger.relayout(l.slots);
            merger.seed(&l.seeds);
            limits.epoch = l.epoch;
            let fresh = Limits {
                coordinator: None,
                ..*limits
            };
            *limits = fresh.with(&l.budgets);
        }
    }
}

fn run(
    mut merger: Merger,
    mut limits: Limits,
    inputs: Inputs,
    back: Vec<Sender<Histogram<u64>>>,
    out: Published,
    shape: Shape,
    started: Instant,
) {
    let mut next = clock::now() + shape.interval;
    let publish = |merger: &mut Merger, limits: &mut Limits| {
        inputs.relayout(merger, limits);
        // (Disconnected: no health thread, or it has stopped.)
        while let Ok(c) = inputs.checks.try_recv() {
            for &slot in c.slots.iter() {
                merger.checked(slot, c.passed, c.up);
            }
        }
        let now = clock::now();
        let mut table = merger.close(now.saturating_duration_since(started));
        if let Some(c) = &mut limits.coordinator {
            table.limit_shares = c.close();
            table.limit_epoch = limits.epoch;
        }
        out.store(Arc::new(table));
        for (w, tx) in back.iter().enumerate() {
            for h in merger.take_recycled(w) {
                // A worker that has stopped no longer needs it.
                let _ = tx.send(h);
            }
        }
    };
    loop {
        let now = clock::now();
        if now >= next {
            publish(&mut merger, &mut limits);
            next += shape.interval;
            if next <= now {
                // Fell behind (a suspended process): skip, do not burst.
                next = now + shape.interval;
            }
            continue;
        }
        match inputs.reports.recv_timeout(next - now) {
            Ok(report) => {
                inputs.relayout(&mut merger, &mut limits);
                if let Some(c) = &mut limits.coordinator {
                    if report.config_epoch == limits.epoch {
                        c.report(report.worker, &report.limits);
                    }
                }
                merger.absorb(report)
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                publish(&mut merger, &mut limits);
                return;
            }
        }
    }
}
