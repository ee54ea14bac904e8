//! A worker's set of long-lived tasks that it must be able to wake all at
//! once (HTTP/2 connections when it stops, tunnels when its shutdown
//! deadline passes): a slot per task holding the waker of its last poll,
//! slots reused as tasks end.

use std::cell::RefCell;
use std::task::Waker;

/// The tasks of one worker, by slot.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    /// Per slot, the waker of its task's last wait (`None`: a free slot,
    /// or not waiting).
    slots: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Wakers {
    /// Tasks in the set.
    pub(crate) fn open(&self) -> usize {
        self.slots.borrow().len() - self.free.borrow().len()
    }

    /// A task joins; returns its slot.
    pub(crate) fn enter(&self) -> usize {
        match self.free.borrow_mut().pop() {
            Some(slot) => slot,
            None => {
                let mut slots = self.slots.borrow_mut();
                slots.push(None);
                slots.len() - 1
            }
        }
    }

    /// The task in `slot` waits: `waker` is woken by `wake_all`.
    pub(crate) fn register(&self, slot: usize, waker: &Waker) {
        match &mut self.slots.borrow_mut()[slot] {
            Some(w) if w.will_wake(waker) => {}
            other => *other = Some(waker.clone()),
        }
    }

    /// The task in `slot` has ended.
    pub(crate) fn leave(&self, slot: usize) {
        self.slots.borrow_mut()[slot] = None;
        self.free.borrow_mut().push(slot);
    }

    /// Wakes every waiting task.
    pub(crate) fn wake_all(&self) {
        // Taken first: a woken task may register again.
        let waiting: Vec<Waker> = self
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in waiting {
            w.wake();
        }
    }
}
