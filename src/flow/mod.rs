//! Flow: per-route filter chains (rate limiting so far).

pub mod ratelimit;
