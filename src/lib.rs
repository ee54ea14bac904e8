//! DAO: a thread-per-core edge reverse proxy on io_uring.
//!
//! ```text
//!             control thread (std thread, not on the data path)
//!    config file / signals ──► Memory: parse → validate → Config
//!                                         │ Arc<Config> handed to each core
//!  core 0 ─ monoio io_uring loop ─ Gate(listener SO_REUSEPORT) → proto::h1
//!           → Flow(request headers) → Align(route, balance) → upstream pool
//!  core 1 ─ same, sharing nothing on the request path
//! ```
//!
//! Each worker thread is pinned to one core and runs its own monoio runtime
//! with its own listener (SO_REUSEPORT), upstream connection pools and
//! balancer state (`Rc`/`Cell`, no atomics or locks on the request path).
//! Protocol and policy logic (`proto`, `align`, `memory`) are sans-IO: they
//! take bytes and return decisions, so they are tested and fuzzed directly.

pub mod admin;
pub mod align;
mod alloc;
pub mod clock;
pub mod demo;
pub mod error;
pub mod flow;
pub mod gate;
pub mod hex;
pub mod memory;
pub mod proto;
pub mod runtime;
pub mod sense;
pub mod upstream;
