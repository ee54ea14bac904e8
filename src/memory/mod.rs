//! Memory: configuration state — the TOML schema, its validation into
//! types that cannot hold bad values, and the errors that name each field;
//! the history of applied configs (`history`) and the diffs between them
//! (`diff`), guarded-reload verdicts (`guard`), and the service profiles
//! learned from Sense (`profiles`).

mod atomic;
pub mod balancing;
pub mod config;
pub mod diff;
pub mod guard;
pub mod history;
pub mod profiles;
mod raw;
#[cfg(test)]
mod test_dir;
mod validate;

pub use balancing::{Balancing, HashOn, Outlier, PeakEwma, Policies, Policy, ResonantWeights};
pub use config::{
    Admin, ClientAuth, Config, HealthCheck, HostMatch, Listener, LogDestination, Memory, PoolKey,
    Proxy, Route, Server, Telemetry, Tls, TlsVersion, Upstream, UpstreamProtocol, UpstreamTls,
    GRPC_HEALTH_PATH,
};
pub use validate::{load_file, parse, ConfigError, FieldError};
