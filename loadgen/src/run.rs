//! Run: starts the worker threads on a shared timetable, shows progress,
//! and merges what the threads measured.

use std::sync::Arc;
use std::time::Duration;

use crate::clock;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::stats::{Live, Stats};
use crate::worker::{self, Window};

/// What a finished run measured.
#[derive(Debug)]
pub struct RunResult {
    /// The run's plan.
    pub plan: Arc<Plan>,
    /// Merged measurements.
    pub stats: Stats,
    /// Length of the measured window.
    pub measured: Duration,
    /// All threads used io_uring.
    pub uring: bool,
    /// All threads paced with sub-millisecond timers (open loop only).
    pub precise_timer: bool,
}

/// Time given to threads to start and open their connections before the
/// timetable begins.
fn startup(connections: usize) -> Duration {
    Duration::from_millis(100) + Duration::from_micros(20 * connections as u64)
}

/// Runs the plan to completion.
pub fn run(plan: Plan, show_progress: bool) -> Result<RunResult, String> {
    let plan = Arc::new(plan);
    let start = clock::now() + startup(plan.connections);
    let measure_from = start + plan.warmup;
    let window = Window {
        start,
        measure_from,
        end: measure_from + plan.duration,
    };
    let live: Vec<Arc<Live>> = (0..plan.threads)
        .map(|_| Arc::new(Live::default()))
        .collect();
    let mut handles = Vec::with_capacity(plan.threads);
    for (id, l) in live.iter().enumerate() {
        let h = worker::spawn(
            id,
            Arc::clone(&plan),
            window,
            plan.connections_of(id),
            Arc::clone(l),
        )
        .map_err(|e| format!("cannot start thread {id}: {e}"))?;
        handles.push(h);
    }
    let progress = show_progress.then(|| Progress::start(window, live.clone()));
    let mut stats = Stats::new();
    let mut uring = true;
    let mut precise_timer = true;
    let mut failure = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => {
                stats.merge(&r.stats);
                uring &= r.uring;
                precise_timer &= r.precise_timer;
            }
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some("a worker thread panicked".to_string()),
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(RunResult {
        measured: plan.duration,
        precise_timer: precise_timer && plan.rate.is_some(),
        plan,
        stats,
        uring,
    })
}
