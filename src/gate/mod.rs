//! Gate: where connections come in — the per-worker SO_REUSEPORT
//! listeners and the HTTP/1.1 client connection loop.

mod conn;
mod exchange;
mod io;
pub mod listener;

pub(crate) use conn::connection;
