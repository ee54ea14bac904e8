//! Align: choosing where a request goes — the route table, the per-core
//! balancers that pick an upstream within a route, the active health
//! checks that keep picks off upstreams found down, retries and the
//! circuit breaker.

pub mod balancer;
pub mod breaker;
pub mod health;
pub mod retry;
pub mod router;

pub use balancer::Balancer;
pub use breaker::CircuitBreaker;
pub use retry::RetryPolicy;
pub use router::Router;
