//! Sense: DAO feeling its traffic. Each worker records per (route,
//! upstream) into plain per-core memory (`record`); every merge interval it
//! seals the interval and sends it to the control thread (`control`), which
//! merges the cores (`merge`) and publishes an immutable `ResonanceTable`
//! (`table`) by one pointer swap. The telemetry listener (`http`) serves
//! the table as Prometheus text and as `/health`; access logs
//! (`access_log`) are written by a thread of their own.
//!
//! The same round trip carries two more things: active health check
//! verdicts (from the `dao-health` thread, into the table) and each core's
//! rate-limit demand (in its report), from which the control thread's
//! `flow::ratelimit::Coordinator` computes every core's share of each
//! global limit for the next interval (`ResonanceTable::limit_shares`).
//! Workers copy what they need out of a new table once per interval (the
//! balancers' view, their limit shares): nothing per request.
//!
//! ```text
//!  core 0: Recorder ─seal every interval─┐
//!  core 1: Recorder ─seal every interval─┤ mpsc   control thread: Merger
//!                                        └──────► absorb … close → table(epoch+1)
//!                                                   │ ArcSwap::store
//!            /metrics, /health ◄── load ───────────┘
//! ```

pub mod access_log;
pub mod control;
pub mod http;
mod json;
pub mod merge;
pub mod prometheus;
pub mod record;
pub mod slots;
pub mod table;
pub mod tls;

pub use slots::{Registry, Slots};
pub use table::{load_resonance, CheckCounts, Health, ResonanceTable, UpstreamState};
