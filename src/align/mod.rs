//! Align: choosing where a request goes — the route table and the
//! per-core balancers that pick an upstream within a route.

pub mod balancer;
pub mod router;

pub use balancer::Balancer;
pub use router::Router;
