//! A worker's generation: what one core builds from one applied config
//! (balancers, filter chains, rate limiters, circuit breakers, the slots
//! it records into) and what every request that starts under that config
//! keeps until it ends.
//!
//! A reload gives each worker a new config; the worker builds a new
//! generation from it and makes it current. A request holds its
//! generation (`Rc`) from its head to the end of its response, so a reload
//! never changes the rules under a request in flight; a kept-alive
//! connection takes the current generation at its next request. The old
//! generation is freed when its last request ends.
//!
//! What outlives generations stays in the worker: the upstream connection
//! pool and the per-address load gauges (shared by every generation that
//! names the address), the Sense recorder, buffers.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::align::balancer::Balancer;
use crate::align::breaker::Load;
use crate::align::CircuitBreaker;
use crate::flow::ratelimit::Limiter;
use crate::flow::Chain;
use crate::memory::{Config, Policy, PoolKey};
use crate::sense::Slots;

/// One applied config as one core runs it.
pub(crate) struct Gen {
    /// The config's epoch.
    pub(crate) epoch: u64,
    pub(crate) config: Arc<Config>,
    /// Where each (route, upstream) is recorded.
    pub(crate) slots: Slots,
    /// Per route.
    pub(crate) balancers: Box<[Balancer]>,
    /// Each route's filter chain.
    pub(crate) chains: Box<[Chain]>,
    /// The rate limiters the chains use, by `RateSpec::index`.
    pub(crate) limiters: Vec<Rc<RefCell<Limiter>>>,
    /// Per route, this core's share of its circuit breaker limits.
    pub(crate) breakers: Box<[Option<CircuitBreaker>]>,
    /// Per config address (`Upstream::pool`), the worker's pool number.
    pub(crate) pools: Box<[usize]>,
    /// Per config address, its requests in flight and waiting for a
    /// connection on this core (the same gauges in every generation).
    pub(crate) loads: Box<[Rc<Load>]>,
    /// Whether requests are timed: for Sense, the access log or a
    /// latency-aware policy.
    pub(crate) timed: bool,
}

/// A config's addresses as a worker numbers them: per config address its
/// pool number and gauges; per pool number, whether the config names it.
struct Mapped {
    pools: Box<[usize]>,
    loads: Box<[Rc<Load>]>,
    live: Vec<bool>,
}

/// The worker's side of generations: the addresses it has pooled so far.
#[derive(Default)]
pub(crate) struct Addresses {
    /// Per pool number, the upstream (address and TLS) and its gauges.
    known: Vec<(PoolKey, Rc<Load>)>,
}

impl Addresses {
    /// Pool numbers and gauges of `config`'s addresses (new ones added);
    /// and, per pool number, whether `config` still names it.
    fn map(&mut self, config: &Config) -> Mapped {
        let mut pools = Vec::with_capacity(config.pools.len());
        let mut loads = Vec::with_capacity(config.pools.len());
        for key in &config.pools {
            let id = match self.known.iter().position(|(k, _)| k == key) {
                Some(id) => id,
                None => {
                    self.known.push((key.clone(), Rc::new(Load::default())));
                    self.known.len() - 1
                }
            };
            pools.push(id);
            loads.push(self.known[id].1.clone());
        }
        let mut live = vec![false; self.known.len()];
        for &id in &pools {
            live[id] = true;
        }
        Mapped {
            pools: pools.into(),
            loads: loads.into(),
            live,
        }
    }
}

/// Builds the generation of `config` for worker `worker`; returns it and,
/// per pool number, whether the config names that address.
pub(crate) fn build(
    worker: usize,
    epoch: u64,
    config: Arc<Config>,
    slots: Slots,
    addresses: &mut Addresses,
    (now_us, sensed): (u64, bool),
) -> (Gen, Vec<bool>) {
    let cores = config.server.workers;
    let limiters: Vec<_> = config
        .rate_limits()
        .iter()
        .map(|spec| Rc::new(RefCell::new(spec.limiter(cores, now_us))))
        .collect();
    let Mapped { pools, loads, live } = addresses.map(&config);
    let gen = Gen {
        epoch,
        timed: sensed || config.routes.iter().any(|r| r.policy == Policy::PeakEwma),
        chains: config
            .routes
            .iter()
            .map(|r| Chain::build(&r.filters, &limiters))
            .collect(),
        limiters,
        balancers: (0..config.routes.len())
            .map(|r| Balancer::new(&config, r, worker))
            .collect(),
        breakers: config
            .routes
            .iter()
            .map(|r| r.circuit_breaker.map(|b| b.per_core(cores)))
            .collect(),
        pools,
        loads,
        slots,
        config,
    };
    (gen, live)
}
