//! Consistent hashing: a ring of points per upstream (more for heavier
//! ones), placed by hashing the upstream's name, so adding or removing one
//! upstream moves only the keys on its arcs. With bounded load, a key
//! whose upstream is above the cap walks on to the next one.

use super::local::Local;
use crate::memory::Route;

/// Ring points per unit of weight.
const POINTS: u32 = 100;

/// A 64-bit hash of a request key (FNV-1a, then a finaliser): fixed, so
/// every core and every restart maps a key the same way.
pub fn key_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[derive(Debug)]
pub(super) struct Ring {
    /// (point, upstream index), sorted by point.
    points: Box<[(u64, u32)]>,
}

impl Ring {
    pub(super) fn new(route: &Route) -> Ring {
        let mut points = Vec::new();
        for (i, u) in route.upstreams.iter().enumerate() {
            for k in 0..POINTS * u.weight {
                let mut name = u.name.as_bytes().to_vec();
                name.extend_from_slice(&k.to_le_bytes());
                points.push((key_hash(&name), i as u32));
            }
        }
        points.sort_unstable();
        Ring {
            points: points.into(),
        }
    }

    /// The upstream owning `key`: the first usable one clockwise from the
    /// key's point, skipping those at or above `bound`'s cap.
    pub(super) fn find(
        &self,
        key: u64,
        ok: &dyn Fn(usize) -> bool,
        bound: Option<(u32, &[Local])>,
    ) -> usize {
        let start = self.points.partition_point(|&(p, _)| p < key);
        let n = self.points.len();
        let mut first_ok = None;
        for k in 0..n {
            let i = self.points[(start + k) % n].1 as usize;
            if !ok(i) {
                continue;
            }
            match bound {
                Some((cap, ups)) if ups[i].in_flight() >= cap => {
                    first_ok.get_or_insert(i);
                }
                _ => return i,
            }
        }
        first_ok.unwrap_or(self.points[start % n].1 as usize)
    }
}
