//! Upstream side: per-core keep-alive connection pools and connecting,
//! HTTP/1.1 and HTTP/2, in cleartext or over TLS.

pub mod h2;
pub mod pool;
pub mod tls;

pub use pool::Pool;
