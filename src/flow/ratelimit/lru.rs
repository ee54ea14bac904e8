//! A bounded least-recently-used map from 64-bit key hashes to values: a
//! slab of nodes linked in recency order plus a hash map to their slots.
//! Lookup, insertion and eviction are O(1) and never allocate once the
//! slab has reached its capacity; the slab grows by doubling up to exactly
//! the capacity, never beyond.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// No slot.
const NIL: u32 = u32::MAX;

/// Passes a 64-bit hash through: the keys are already the output of a
/// randomly keyed SipHash (see `keyed`), hashing them again buys nothing.
#[derive(Debug, Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug)]
struct Node<V> {
    hash: u64,
    /// Towards the most recent.
    prev: u32,
    /// Towards the least recent.
    next: u32,
    value: V,
}

/// At most `capacity` values, the least recently used evicted first.
#[derive(Debug)]
pub(super) struct Lru<V> {
    map: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    slab: Vec<Node<V>>,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next to go.
    tail: u32,
    capacity: usize,
}

impl<V> Lru<V> {
    /// An empty map holding at most `capacity` values (1 … `u32::MAX - 1`).
    pub(super) fn new(capacity: usize) -> Lru<V> {
        Lru {
            map: HashMap::default(),
            slab: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity: capacity.clamp(1, NIL as usize - 1),
        }
    }

    /// Values held.
    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    /// The most values it holds.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes reserved by the slab and the map (their allocations, not
    /// what the values may point to).
    pub(super) fn memory_bytes(&self) -> usize {
        self.slab.capacity() * std::mem::size_of::<Node<V>>()
            + self.map.capacity() * (std::mem::size_of::<(u64, u32)>() + 1)
    }

    /// The value of `hash`, now the most recent; when absent, `make()`'s,
    /// inserted in the slot of the least recently used value if full
    /// (that value is dropped). The flag says whether it was inserted.
    pub(super) fn get_or_insert_with(
        &mut self,
        hash: u64,
        make: impl FnOnce() -> V,
    ) -> (&mut V, bool) {
        if let Some(&i) = self.map.get(&hash) {
            self.unlink(i);
            self.push_front(i);
            return (&mut self.slab[i as usize].value, false);
        }
        let node = Node {
            hash,
            prev: NIL,
            next: NIL,
            value: make(),
        };
        let i = if self.slab.len() < self.capacity {
            if self.slab.len() == self.slab.capacity() {
                let grown = (self.slab.len() * 2).max(16).min(self.capacity);
                self.slab.reserve_exact(grown - self.slab.len());
            }
            self.slab.push(node);
            (self.slab.len() - 1) as u32
        } else {
            let i = self.tail;
            self.unlink(i);
            self.map.remove(&self.slab[i as usize].hash);
            self.slab[i as usize] = node;
            i
        };
        self.map.insert(hash, i);
        self.push_front(i);
        (&mut self.slab[i as usize].value, true)
    }

    /// The value of `hash` without touching its recency.
    #[cfg(test)]
    pub(super) fn peek(&self, hash: u64) -> Option<&V> {
        self.map.get(&hash).map(|&i| &self.slab[i as usize].value)
    }

    /// Hashes from most to least recent.
    #[cfg(test)]
    fn order(&self) -> Vec<u64> {
        let mut out = Vec::new();
        let mut i = self.head;
        while i != NIL {
            out.push(self.slab[i as usize].hash);
            i = self.slab[i as usize].next;
        }
        out
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let n = &self.slab[i as usize];
            (n.prev, n.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slab[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slab[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let n = &mut self.slab[i as usize];
            n.prev = NIL;
            n.next = old;
        }
        match old {
            NIL => self.tail = i,
            o => self.slab[o as usize].prev = i,
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut l = Lru::new(3);
        for h in [1, 2, 3] {
            assert!(l.get_or_insert_with(h, || h * 10).1);
        }
        // Touch 1: now 2 is the oldest.
        assert_eq!(l.get_or_insert_with(1, || 0), (&mut 10, false));
        assert!(l.get_or_insert_with(4, || 40).1);
        assert_eq!(l.order(), vec![4, 1, 3]);
        assert_eq!(l.peek(2), None);
        assert_eq!(l.peek(3), Some(&30));
        assert_eq!(l.len(), 3);
        assert_eq!(l.capacity(), 3);
    }

    #[test]
    fn capacity_of_one() {
        let mut l = Lru::new(0);
        l.get_or_insert_with(7, || 'a');
        l.get_or_insert_with(8, || 'b');
        assert_eq!(l.order(), vec![8]);
        assert_eq!(l.get_or_insert_with(8, || 'c'), (&mut 'b', false));
    }

    #[test]
    fn slab_never_grows_past_capacity() {
        let mut l = Lru::new(1000);
        for h in 0..5000u64 {
            l.get_or_insert_with(h, || h);
            assert!(l.slab.capacity() <= 1000);
        }
        assert_eq!(l.len(), 1000);
        assert!(l.map.len() <= 1000);
    }

    proptest! {
        /// Same answers and order as a naive LRU (a vector, most recent
        /// first).
        #[test]
        fn matches_a_naive_model(cap in 1usize..8, ops in proptest::collection::vec(0u64..12, 0..200)) {
            let mut l = Lru::new(cap);
            let mut model: Vec<(u64, u64)> = Vec::new();
            for (t, h) in ops.into_iter().enumerate() {
                let (v, inserted) = l.get_or_insert_with(h, || t as u64);
                let v = *v;
                match model.iter().position(|&(k, _)| k == h) {
                    Some(p) => {
                        let e = model.remove(p);
                        prop_assert!(!inserted);
                        prop_assert_eq!(v, e.1);
                        model.insert(0, e);
                    }
                    None => {
                        prop_assert!(inserted);
                        prop_assert_eq!(v, t as u64);
                        model.insert(0, (h, t as u64));
                        model.truncate(cap);
                    }
                }
                prop_assert_eq!(l.order(), model.iter().map(|e| e.0).collect::<Vec<_>>());
                prop_assert_eq!(l.map.len(), model.len());
            }
        }
    }
}
