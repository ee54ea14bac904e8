//! Upstream side: per-core keep-alive connection pools and connecting.

pub mod pool;

pub use pool::Pool;
