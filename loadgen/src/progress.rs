//! Progress: a one-line status on stderr while a run is going, refreshed
//! once a second from the threads' live counters (only on a terminal unless
//! asked for).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock;
use crate::stats::Live;
use crate::worker::Window;

/// Handle to the progress thread.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the progress line for `window`, reading `live`.
    pub fn start(window: Window, live: Vec<Arc<Live>>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("loadgen-progress".into())
            .spawn(move || show(window, &live, &flag))
            .ok();
        Progress { stop, thread }
    }

    /// Stops and erases the line.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn show(window: Window, live: &[Arc<Live>], stop: &AtomicBool) {
    let mut err = std::io::stderr();
    let total = window.end.saturating_duration_since(window.start);
    let mut last = (0u64, clock::now());
    while !stop.load(Ordering::Relaxed) {
        // Sleep in short steps so finishing is prompt.
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let now = clock::now();
        let (done, errors) = live.iter().fold((0, 0), |(d, e), l| {
            let (d2, e2) = l.read();
            (d + d2, e + e2)
        });
        let secs = now.saturating_duration_since(last.1).as_secs_f64();
        let rate = if secs > 0.0 {
            (done - last.0) as f64 / secs
        } else {
            0.0
        };
        last = (done, now);
        let elapsed = now.saturating_duration_since(window.start);
        let phase = if now < window.measure_from {
            "warm-up"
        } else {
            "measuring"
        };
        let _ = write!(
            err,
            "\r\x1b[2K[{:>5.1}s / {:.1}s] {phase}: {:>10.0} req/s, {done} done, {errors} errors",
            elapsed.as_secs_f64().min(total.as_secs_f64()),
            total.as_secs_f64(),
            rate,
        );
        let _ = err.flush();
    }
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
}
