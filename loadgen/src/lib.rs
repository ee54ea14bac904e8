//! dao-loadgen: a wrk2-style constant-rate HTTP load generator for DAO.
//!
//! ```text
//!  main ── cli ── plan (validated flags) ── run ─┬─ worker thread 0 (pinned, monoio)
//!                                                │    pacer (timerfd) + conn tasks:
//!                                                │    conn (connect, TLS, reconnect)
//!                                                │      → session (h1 serial / pipelined,
//!                                                │        h1 decoder) or http2 (h2 crate
//!                                                │        over compat) → stats
//!                                                └─ worker thread N …
//!  merged stats ── report (text, JSON) ── hgrm ── plot (SVG, --overlay)
//! ```
//!
//! Open loop (`-R`): every connection follows a fixed timetable (schedule)
//! and latency is measured from the intended send time, so a stalled server
//! is charged for the requests it delayed (coordinated omission corrected);
//! the latency from the actual send time is recorded alongside. Closed loop
//! (no `-R`): each connection sends as soon as the previous response is in.
//! HTTP/3 is refused at start-up until DAO's QUIC gate exists; a driver for
//! it would sit beside `session` and `http2` behind `plan::Protocol`.

pub mod cli;
pub mod clock;
pub mod compat;
pub mod conn;
pub mod h1;
pub mod h2req;
pub mod hgrm;
pub mod http2;
pub mod pacer;
pub mod plan;
pub mod plot;
pub mod progress;
pub mod report;
pub mod request;
pub mod run;
pub mod schedule;
pub mod session;
pub mod stats;
pub mod target;
pub mod tls;
pub mod worker;
