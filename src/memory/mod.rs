//! Memory: configuration state — the TOML schema, its validation into
//! types that cannot hold bad values, and the errors that name each field.

pub mod balancing;
pub mod config;
mod raw;
mod validate;

pub use balancing::{Balancing, HashOn, Outlier, PeakEwma, Policies, Policy, ResonantWeights};
pub use config::{
    ClientAuth, Config, HealthCheck, HostMatch, Listener, LogDestination, Proxy, Route, Server,
    Telemetry, Tls, TlsVersion, Upstream,
};
pub use validate::{load_file, parse, ConfigError, FieldError};
