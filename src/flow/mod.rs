//! Flow: per-route filter chains (authentication so far).

pub mod auth;
