//! Per-key token buckets on one core (client IP, API key…), bounded by a
//! least-recently-used map of `max_keys` entries, so that a flood of
//! distinct keys costs a fixed amount of memory and O(1) per request.
//!
//! # Keys
//!
//! A key is any byte string (`ip.octets()`, a header value). It is stored
//! as its 64-bit SipHash under a key drawn at random per limiter
//! (`RandomState`): no key bytes are copied or allocated, and a client who
//! does not know the hash key cannot aim collisions at a victim's bucket.
//! Two distinct keys sharing a hash would share a bucket; among 10 000
//! keys the odds of any such pair are about 3·10⁻¹².
//!
//! # The global rate per key
//!
//! A limit of `r` requests/s per key is split over cores with the route's
//! own core shares (from the demand of all its keys together, see
//! `shares`): on core `i` every key refills at `r·wᵢ` with a burst of
//! `max(1, b·wᵢ)`. Per-key demand is not reported (keys are unbounded),
//! so this is an approximation with a one-sided error:
//!
//! - Never over: the rates of one key's buckets sum to at most `r` across
//!   cores, so over `t` seconds a key gets at most `r·t + b + N` (with the
//!   eviction caveat below), wherever its connections land.
//! - Under when a key's traffic is spread over cores differently from the
//!   route's: a key saturating only the cores in `C` gets `r·Σ_{i∈C} wᵢ`.
//!   A key spread like the route's traffic (many connections, or a hot key
//!   dominating the route) gets its full rate ±the `shares` bounds; a
//!   client on one keep-alive connection, on a route spread evenly over 4
//!   cores, gets `r/4`. Operators wanting a per-client cap closer to `r`
//!   configure a larger one; the limit is never exceeded. (Reporting the
//!   heaviest keys per core and giving them shares of their own would
//!   close the gap for hot keys; not built.)
//!
//! # Eviction
//!
//! A key comes back after eviction with a new, full bucket: `max(1,
//! b·wᵢ)` tokens, this core's share of the burst, not the whole burst. A
//! key is evicted only after `max_keys` other distinct keys were seen on
//! this core since its last request, so a key can gain at most one
//! core-share of burst per `max_keys` distinct keys sent in between; a
//! flood of keys is itself admitted at one burst per new key, which a
//! route-wide (unkeyed) limit beside the keyed one caps.
//!
//! # Rate changes
//!
//! A new share is applied lazily, when a key is next seen: its bucket is
//! refilled at its old rate up to that moment, then takes the new one (as
//! `Bucket::set_rate`). A key idle across several changes is thus refilled
//! at a stale rate, which cannot take it beyond its (new) capacity.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use super::bucket::Bucket;
use super::lru::Lru;

/// Keys tracked per core and limit by default.
pub const MAX_KEYS: usize = 10_000;

#[derive(Debug)]
struct Entry {
    /// The `Keyed::epoch` this bucket's rate comes from.
    epoch: u32,
    bucket: Bucket,
}

/// One core's buckets of one keyed limit.
#[derive(Debug)]
pub struct Keyed {
    hasher: RandomState,
    buckets: Lru<Entry>,
    /// This core's rate and capacity per key.
    rate: f64,
    burst: f64,
    /// Bumped by every `set_rate`.
    epoch: u32,
}

impl Keyed {
    /// Buckets of `rate` tokens/s and `burst` tokens per key (this core's
    /// part), at most `max_keys` of them (at least 1).
    pub fn new(rate: f64, burst: f64, max_keys: usize) -> Keyed {
        Keyed {
            hasher: RandomState::new(),
            buckets: Lru::new(max_keys),
            rate,
            burst,
            epoch: 0,
        }
    }

    /// The bucket of `key` at `now_us`, made the most recently used: a new
    /// full one when the key is not tracked (evicting the least recently
    /// used key when `max_keys` are), else its own, brought to the current
    /// rate.
    pub fn bucket(&mut self, key: &[u8], now_us: u64) -> &mut Bucket {
        let hash = self.hasher.hash_one(key);
        let (rate, burst, epoch) = (self.rate, self.burst, self.epoch);
        let (entry, _) = self.buckets.get_or_insert_with(hash, || Entry {
            epoch,
            bucket: Bucket::new(rate, burst, now_us),
        });
        if entry.epoch != epoch {
            entry.bucket.set_rate(rate, burst, now_us);
            entry.epoch = epoch;
        }
        &mut entry.bucket
    }

    /// Sets this core's rate and capacity per key; each bucket takes them
    /// when its key is next seen.
    pub fn set_rate(&mut self, rate: f64, burst: f64) {
        self.rate = rate;
        self.burst = burst;
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// Keys tracked now (never more than `max_keys`).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys tracked.
    pub fn max_keys(&self) -> usize {
        self.buckets.capacity()
    }

    /// Bytes reserved for the buckets and their index.
    pub fn memory_bytes(&self) -> usize {
        self.buckets.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::ratelimit::bucket::{Remaining, RetryAfterUs};

    #[test]
    fn keys_have_buckets_of_their_own() {
        let mut k = Keyed::new(1.0, 2.0, 100);
        assert!(k.is_empty());
        assert_eq!(k.bucket(b"a", 0).try_take(0), Ok(Remaining(1)));
        assert_eq!(k.bucket(b"a", 0).try_take(0), Ok(Remaining(0)));
        assert_eq!(k.bucket(b"a", 0).try_take(0), Err(RetryAfterUs(1_000_000)));
        assert_eq!(k.bucket(b"b", 0).try_take(0), Ok(Remaining(1)));
        assert_eq!(k.len(), 2);
        assert_eq!(k.max_keys(), 100);
    }

    #[test]
    fn an_evicted_key_comes_back_with_the_core_share_of_burst_only() {
        let mut k = Keyed::new(10.0, 3.0, 2);
        for _ in 0..3 {
            k.bucket(b"hot", 0).try_take(0).unwrap();
        }
        assert!(k.bucket(b"hot", 0).try_take(0).is_err());
        k.bucket(b"x", 0);
        k.bucket(b"y", 0); // "hot" is the least recent: evicted.
        assert_eq!(k.len(), 2);
        let b = k.bucket(b"hot", 0);
        assert_eq!(b.tokens(0), 3.0);
        assert_eq!(b.burst(), 3.0);
    }

    #[test]
    fn rate_changes_reach_buckets_lazily() {
        let mut k = Keyed::new(10.0, 10.0, 10);
        for _ in 0..10 {
            k.bucket(b"a", 0).try_take(0).unwrap();
        }
        k.set_rate(100.0, 5.0);
        // Refilled at the old rate until seen (1 s × 10/s), capped at 5.
        let b = k.bucket(b"a", 1_000_000);
        assert_eq!(
            (b.rate(), b.burst(), b.tokens(1_000_000)),
            (100.0, 5.0, 5.0)
        );
        // New keys start at the new rate and capacity.
        let b = k.bucket(b"new", 1_000_000);
        assert_eq!((b.rate(), b.tokens(1_000_000)), (100.0, 5.0));
    }

    #[test]
    fn a_flood_of_keys_stays_within_max_keys() {
        let mut k = Keyed::new(1.0, 1.0, 1000);
        for i in 0u32..100_000 {
            assert!(k.bucket(&i.to_be_bytes(), 0).try_take(0).is_ok());
            assert!(k.len() <= 1000);
        }
        assert_eq!(k.len(), 1000);
        assert!(k.memory_bytes() <= 1000 * 160, "{}", k.memory_bytes());
    }
}
