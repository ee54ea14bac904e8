//! Gate: where connections come in — the per-worker SO_REUSEPORT
//! listeners, the HTTP/1.1 client connection loop, and the tunnels that
//! WebSocket connections become.

mod ask;
mod attempt;
mod conn;
mod exchange;
pub(crate) mod io;
pub mod listener;
mod tally;
pub(crate) mod tunnel;

pub(crate) use conn::connection;
