//! Simulated backends: a number of servers in front of one FIFO queue,
//! service times drawn from a distribution, and conditions that change
//! over time (slowdowns, a stuck period, fast failures).

use std::collections::VecDeque;

/// A small deterministic generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Exponential with this mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -self.unit().ln() * mean
    }

    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// What a backend is doing during a period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    /// Service times multiplied by this factor.
    Slow(f64),
    /// Every request takes this long (µs), whatever the queue.
    Stuck(u64),
    /// Every request is answered 503 at once.
    Failing,
}

/// A condition between two times (µs).
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub from_us: u64,
    pub to_us: u64,
    pub condition: Condition,
}

/// A backend's description.
#[derive(Debug, Clone)]
pub struct BackendSpec {
    pub servers: u32,
    /// Mean service time (exponential), µs.
    pub mean_us: f64,
    pub intents: Vec<String>,
    pub phases: Vec<Phase>,
}

impl BackendSpec {
    pub fn new(servers: u32, mean_us: f64) -> BackendSpec {
        BackendSpec {
            servers,
            mean_us,
            intents: Vec::new(),
            phases: Vec::new(),
        }
    }

    /// The condition at `t` (the last phase that covers it wins).
    pub fn condition(&self, t: u64) -> Condition {
        self.phases
            .iter()
            .rev()
            .find(|p| p.from_us <= t && t < p.to_us)
            .map_or(Condition::Slow(1.0), |p| p.condition)
    }

    /// Requests per second it can serve in its normal condition.
    pub fn capacity(&self) -> f64 {
        f64::from(self.servers) * 1e6 / self.mean_us
    }
}

/// One attempt of a request, as the backend holds it.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    pub request: usize,
    pub attempt: u32,
}

/// A backend's live state.
#[derive(Debug)]
pub struct Backend {
    pub spec: BackendSpec,
    pub busy: u32,
    pub queue: VecDeque<Job>,
}

impl Backend {
    pub fn new(spec: BackendSpec) -> Backend {
        Backend {
            spec,
            busy: 0,
            queue: VecDeque::new(),
        }
    }

    /// How long a job started at `t` takes, and whether it fails (503).
    pub fn service(&self, t: u64, rng: &mut Rng) -> (u64, bool) {
        match self.spec.condition(t) {
            Condition::Slow(f) => ((rng.exp(self.spec.mean_us) * f).max(1.0) as u64, false),
            Condition::Stuck(us) => (us, false),
            Condition::Failing => (200, true),
        }
    }

    /// The oracle's estimate: when a new job would complete, from now.
    pub fn expected_completion(&self, t: u64) -> f64 {
        let mean = match self.spec.condition(t) {
            Condition::Slow(f) => self.spec.mean_us * f,
            Condition::Stuck(us) => return us as f64,
            Condition::Failing => return f64::INFINITY,
        };
        let ahead = (self.busy as usize + self.queue.len()) as f64;
        let servers = f64::from(self.spec.servers);
        let wait = ((ahead - servers + 1.0) / servers).max(0.0) * mean;
        wait + mean
    }
}
