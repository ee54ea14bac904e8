//! Upstream side: per-core keep-alive connection pools and connecting,
//! HTTP/1.1 and HTTP/2 (h2c).

pub mod h2;
pub mod pool;

pub use pool::Pool;
