//! Gate: where connections come in — the per-worker SO_REUSEPORT
//! listeners and the HTTP/1.1 client connection loop.

mod ask;
mod attempt;
mod conn;
mod exchange;
pub(crate) mod io;
pub mod listener;
mod tally;

pub(crate) use conn::connection;
