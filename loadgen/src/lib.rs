//! dao-loadgen: a wrk2-style constant-rate HTTP load generator for DAO.
//!
//! ```text
//!  main ── plan (validated flags) ── run ─┬─ worker thread 0 (pinned, monoio)
//!                                         │    pacer (timerfd) + conn tasks
//!                                         │      conn → session (h1 serial /
//!                                         │             pipelined) → stats
//!                                         └─ worker thread N …
//!  merge stats ── report (text, JSON) ── hgrm ── plot (SVG)
//! ```
//!
//! Open loop (`-R`): every connection follows a fixed timetable and latency
//! is measured from the intended send time, so a stalled server is charged
//! for the requests it delayed (coordinated omission corrected); the
//! latency from the actual send time is recorded alongside. Closed loop
//! (no `-R`): each connection sends as soon as the previous response is in.

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
