//! Align: choosing where a request goes — the route table, the per-core
//! balancers that pick an upstream within a route, and the active health
//! checks that keep picks off upstreams found down.

pub mod balancer;
pub mod health;
pub mod router;

pub use balancer::Balancer;
pub use router::Router;
