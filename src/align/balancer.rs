//! Per-core balancers: each worker owns one per route, in plain `Cell`s,
//! so picking touches no memory shared with other cores.

use std::cell::Cell;

use crate::memory::{Policy, Route};

/// A route's balancer on one core.
#[derive(Debug)]
pub enum Balancer {
    /// Each upstream in turn.
    RoundRobin {
        /// The next index to hand out.
        next: Cell<usize>,
        /// How many upstreams there are.
        len: usize,
    },
    /// Smooth weighted round robin: every pick adds each weight to its
    /// upstream's running score, takes the highest, and subtracts the total
    /// from the winner; picks interleave in proportion to the weights.
    Weighted {
        /// The configured weights.
        weights: Box<[i64]>,
        /// Running scores.
        current: Box<[Cell<i64>]>,
        /// Sum of the weights.
        total: i64,
    },
}

impl Balancer {
    /// A fresh balancer for `route`.
    pub fn new(route: &Route) -> Balancer {
        match route.policy {
            Policy::RoundRobin => Balancer::RoundRobin {
                next: Cell::new(0),
                len: route.upstreams.len(),
            },
            Policy::Weighted => {
                let weights: Box<[i64]> = route
                    .upstreams
                    .iter()
                    .map(|u| i64::from(u.weight))
                    .collect();
                Balancer::Weighted {
                    total: weights.iter().sum(),
                    current: weights.iter().map(|_| Cell::new(0)).collect(),
                    weights,
                }
            }
        }
    }

    /// The index of the next upstream in the route's list.
    #[inline]
    pub fn pick(&self) -> usize {
        match self {
            Balancer::RoundRobin { next, len } => {
                let i = next.get();
                next.set(if i + 1 >= *len { 0 } else { i + 1 });
                i
            }
            Balancer::Weighted {
                weights,
                current,
                total,
            } => {
                let mut best = 0;
                let mut best_score = i64::MIN;
                for (i, (w, c)) in weights.iter().zip(current.iter()).enumerate() {
                    let score = c.get() + w;
                    c.set(score);
                    if score > best_score {
                        best = i;
                        best_score = score;
                    }
                }
                current[best].set(best_score - total);
                best
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::parse;
    use proptest::prelude::*;

    fn route(policy: &str, weights: &[u32]) -> Route {
        let mut text = format!("[[routes.rule]]\nname = \"r\"\npolicy = \"{policy}\"\n");
        for (i, w) in weights.iter().enumerate() {
            text += &format!(
                "[[routes.rule.upstreams]]\nname = \"u{i}\"\nurl = \"http://127.0.0.1:{}\"\n",
                1000 + i
            );
            if policy == "weighted" {
                text += &format!("weight = {w}\n");
            }
        }
        parse(&text).unwrap().routes.remove(0)
    }

    #[test]
    fn round_robin_cycles() {
        let b = Balancer::new(&route("round_robin", &[1, 1, 1]));
        let picks: Vec<usize> = (0..7).map(|_| b.pick()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn weighted_is_smooth() {
        // nginx's example: weights 5, 1, 1 give a a b a c a a, not a a a a a b c.
        let b = Balancer::new(&route("weighted", &[5, 1, 1]));
        let picks: Vec<usize> = (0..7).map(|_| b.pick()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    proptest! {
        #[test]
        fn weighted_shares_are_exact_per_cycle(weights in proptest::collection::vec(1u32..20, 1..6)) {
            let b = Balancer::new(&route("weighted", &weights));
            let total: u32 = weights.iter().sum();
            let mut counts = vec![0u32; weights.len()];
            for _ in 0..total * 3 {
                counts[b.pick()] += 1;
            }
            for (c, w) in counts.iter().zip(&weights) {
                prop_assert_eq!(*c, w * 3);
            }
        }
    }
}
