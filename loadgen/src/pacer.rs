//! Pacer: sub-millisecond timers for the open-loop timetable, one per thread.
//!
//! monoio's timer wheel has a resolution of one millisecond and rounds every
//! deadline up, so a request due at 10.1 ms would leave at 11 ms, and the
//! 0.9 ms the load generator dawdled would be charged to the server as
//! latency. On io_uring the pacer arms one timerfd per thread for the
//! earliest pending deadline and reads it through the ring; the other
//! deadlines wait in a heap. With the legacy (epoll) driver a blocking
//! timerfd read would stall the thread, so the pacer falls back to monoio's
//! millisecond timer and the run says so.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

use crate::clock;

/// A deadline closer than this counts as reached: arming a timer for it would
/// cost more than the wait.
const SLACK: Duration = Duration::from_micros(2);

/// Per-thread source of precise sleeps. Cheap to clone.
#[derive(Clone)]
pub struct Pacer {
    inner: Option<Rc<Inner>>,
}

struct Inner {
    timer: OwnedFd,
    heap: RefCell<BinaryHeap<Entry>>,
    armed: Cell<Option<Instant>>,
    seq: Cell<u64>,
    /// Set if reading the timerfd failed; sleeps then use the coarse timer.
    broken: Cell<bool>,
}

struct Entry {
    deadline: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline && self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap and we want the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline
            .cmp(&self.deadline)
            .then(other.seq.cmp(&self.seq))
    }
}

impl Pacer {
    /// A pacer for the current monoio thread. With `precise`, it arms a
    /// timerfd and spawns the task that reads it (io_uring only); otherwise,
    /// or if the timerfd cannot be made, it uses monoio's millisecond timer.
    /// Returns the pacer and whether it is precise.
    pub fn start(precise: bool) -> (Pacer, bool) {
        if !precise {
            return (Pacer { inner: None }, false);
        }
        let made = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC)
            .map_err(std::io::Error::from)
            .and_then(|fd| {
                let reader = fd.try_clone()?;
                let file = monoio::fs::File::from_std(std::fs::File::from(reader))?;
                Ok((fd, file))
            });
        let Ok((timer, file)) = made else {
            return (Pacer { inner: None }, false);
        };
        let inner = Rc::new(Inner {
            timer,
            heap: RefCell::new(BinaryHeap::new()),
            armed: Cell::new(None),
            seq: Cell::new(0),
            broken: Cell::new(false),
        });
        monoio::spawn(read_loop(Rc::clone(&inner), file));
        (Pacer { inner: Some(inner) }, true)
    }

    /// A future that completes at `deadline` (immediately if it has passed).
    pub fn sleep_until(&self, deadline: Instant) -> PacedSleep {
        PacedSleep {
            inner: self.inner.clone(),
            deadline,
            registered: false,
            coarse: None,
        }
    }
}

impl Inner {
    fn register(&self, deadline: Instant, waker: Waker) {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1));
        self.heap.borrow_mut().push(Entry {
            deadline,
            seq,
            waker,
        });
        match self.armed.get() {
            Some(armed) if armed <= deadline => {}
            _ => self.arm(deadline),
        }
    }

    fn arm(&self, deadline: Instant) {
        let wait = deadline.saturating_duration_since(clock::now());
        // A zero it_value would disarm the timer; one nanosecond fires at once.
        let wait = wait.max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: wait.as_secs() as _,
                tv_nsec: wait.subsec_nanos() as _,
            },
        };
        if timerfd_settime(&self.timer, TimerfdTimerFlags::empty(), &spec).is_ok() {
            self.armed.set(Some(deadline));
        }
    }

    /// Wakes every sleeper that is due and re-arms for the next one.
    fn fire(&self) {
        self.armed.set(None);
        let due = clock::now() + SLACK;
        let mut heap = self.heap.borrow_mut();
        while let Some(top) = heap.peek() {
            if top.deadline > due {
                let next = top.deadline;
                drop(heap);
                self.arm(next);
                return;
            }
            if let Some(entry) = heap.pop() {
                entry.waker.wake();
            }
        }
    }
}

async fn read_loop(inner: Rc<Inner>, file: monoio::fs::File) {
    let mut buf = vec![0u8; 8];
    loop {
        let (res, b) = file.read_at(buf, 0).await;
        buf = b;
        if res.is_err() {
            // Not expected on Linux. Wake everyone so nobody hangs; their
            // sleeps and all later ones go to the coarse timer.
            inner.broken.set(true);
            let mut heap = inner.heap.borrow_mut();
            while let Some(e) = heap.pop() {
                e.waker.wake();
            }
            return;
        }
        inner.fire();
    }
}

/// The future returned by [`Pacer::sleep_until`].
pub struct PacedSleep {
    inner: Option<Rc<Inner>>,
    deadline: Instant,
    registered: bool,
    coarse: Option<Pin<Box<monoio::time::Sleep>>>,
}

impl Future for PacedSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if clock::now() + SLACK >= self.deadline {
            return Poll::Ready(());
        }
        let this = &mut *self;
        match &this.inner {
            Some(inner) if !inner.broken.get() => {
                if !this.registered {
                    this.registered = true;
                    inner.register(this.deadline, cx.waker().clone());
                }
                Poll::Pending
            }
            _ => {
                let deadline = monoio::time::Instant::from_std(this.deadline);
                let sleep = this
                    .coarse
                    .get_or_insert_with(|| Box::pin(monoio::time::sleep_until(deadline)));
                sleep.as_mut().poll(cx)
            }
        }
    }
}
