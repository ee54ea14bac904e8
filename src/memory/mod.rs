//! Memory: configuration state — the TOML schema, its validation into
//! types that cannot hold bad values, and the errors that name each field.

pub mod config;
mod raw;
mod validate;

pub use config::{
    Config, HealthCheck, HostMatch, LogDestination, Policy, Proxy, Route, Server, Telemetry,
    Upstream,
};
pub use validate::{load_file, parse, ConfigError, FieldError};
