//! Proto: wire protocols as sans-IO state machines (HTTP/1.1 today).

pub mod h1;
pub mod h1h2;
