//! Gate: where connections come in — the per-worker SO_REUSEPORT
//! listeners, TLS termination, the HTTP/1.1 client connection loop, HTTP/2
//! from clients (h2c and ALPN h2), and the tunnels that WebSocket
//! connections become.

mod ask;
mod attempt;
pub mod client_cert;
mod conn;
mod exchange;
pub(crate) mod h2;
mod h2up;
pub(crate) mod io;
pub mod listener;
mod retries;
pub mod sni;
mod tally;
pub(crate) mod tls;
mod transport;
pub(crate) mod tunnel;
mod wakers;

pub(crate) use conn::connection;
pub(crate) use tls::serve as serve_tls;
pub(crate) use transport::Transport;
