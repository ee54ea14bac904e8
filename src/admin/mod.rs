//! Admin: the operator's HTTP/JSON API on its own listener (`[admin]`),
//! the blocking client `daoctl` uses, and the tables it prints.
//!
//! The API layer here knows nothing of how DAO keeps its state: it parses
//! requests, checks the bearer token, and asks a [`Backend`] for the JSON
//! to send. The server is one std thread answering one request at a time,
//! which also serialises reloads and rollbacks.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::memory::{ConfigError, FieldError};

mod api;
pub mod client;
pub mod render;
mod server;

pub use client::{Client, ClientError};
pub use server::start;

/// Largest request body the admin API accepts (a config's TOML text).
pub const MAX_BODY: usize = 1 << 20;

/// What the admin API asks of the running proxy. Every method returns the
/// JSON body of a 200 response; the shapes are documented in the README's
/// admin section. Calls come from the admin thread, one at a time.
pub trait Backend: Send + Sync + 'static {
    /// `GET /api/v1/status`: version, uptime, epochs, workers, last reload.
    fn status(&self) -> Value;
    /// `GET /api/v1/routes`: the routes of the running configuration.
    fn routes(&self) -> Value;
    /// `GET /api/v1/upstreams`: every upstream with its live Sense figures.
    fn upstreams(&self) -> Value;
    /// `POST /api/v1/config/reload`: validate and apply a configuration;
    /// an invalid one is an [`ApiError`] with status 422 and field errors.
    fn reload(&self, request: ReloadRequest) -> Result<Value, ApiError>;
    /// `GET /api/v1/snapshots`: the kept snapshots, oldest first.
    fn snapshots(&self) -> Value;
    /// `GET /api/v1/snapshots/{epoch}`: one snapshot, its text and its diff
    /// to the current configuration (404 when not kept).
    fn snapshot(&self, epoch: u64) -> Result<Value, ApiError>;
    /// `POST /api/v1/snapshots/{epoch}/rollback`: apply a kept snapshot.
    fn rollback(&self, epoch: u64, guard: Option<GuardRequest>) -> Result<Value, ApiError>;
    /// `GET /api/v1/profiles`: the learned service profiles.
    fn profiles(&self) -> Value;
    /// `POST /api/v1/drain`: stop accepting, let in-flight requests finish.
    fn drain(&self) -> Value;
}

/// The body of `POST /api/v1/config/reload`; an empty body is the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// The new configuration's TOML text; `None`: re-read the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Roll back by itself if the new configuration misbehaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardRequest>,
}

/// A guarded reload's thresholds: within `window_ms` of the change, a 5xx
/// rate or p99 above them rolls the configuration back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardRequest {
    /// How long the new configuration is watched, in milliseconds.
    pub window_ms: u64,
    /// Largest 5xx share of responses (0..=1) tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_5xx_rate: Option<f64>,
    /// Largest p99 latency tolerated, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<u64>,
    /// Responses needed in the window before the thresholds are judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
}

/// Longest guard window accepted: one hour.
pub const MAX_GUARD_WINDOW_MS: u64 = 3_600_000;

impl GuardRequest {
    /// Checks the values (the API answers 422 with these errors, each
    /// path under `guard.`): a window of 1 ms to 1 h, a 5xx rate within
    /// 0..=1, a p99 of at least 1 ms, and at least one threshold.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut err = |path: &str, message: String| {
            errors.push(FieldError {
                path: format!("guard.{path}"),
                message,
            })
        };
        if self.window_ms == 0 || self.window_ms > MAX_GUARD_WINDOW_MS {
            err(
                "window_ms",
                format!(
                    "{} is out of range 1..={MAX_GUARD_WINDOW_MS}",
                    self.window_ms
                ),
            );
        }
        if let Some(r) = self.max_5xx_rate {
            if !(0.0..=1.0).contains(&r) {
                err("max_5xx_rate", format!("{r} is out of range 0..=1"));
            }
        }
        if self.max_p99_ms == Some(0) {
            err("max_p99_ms", "must be at least 1".to_string());
        }
        if self.max_5xx_rate.is_none() && self.max_p99_ms.is_none() {
            err(
                "max_5xx_rate",
                "a guard needs a threshold: max_5xx_rate, max_p99_ms or both".to_string(),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// A refusal: the HTTP status, a sentence, and the fields at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (4xx or 5xx; anything else is sent as 500).
    pub status: u16,
    /// What went wrong, in one sentence.
    pub message: String,
    /// The fields at fault, if any (a config's validation errors).
    pub errors: Vec<FieldError>,
}

impl ApiError {
    /// An error with no field errors.
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    /// 404 with a message.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, message)
    }

    /// 422 for a configuration that failed validation, with its errors.
    pub fn invalid_config(e: ConfigError) -> ApiError {
        ApiError {
            status: 422,
            message: format!(
                "invalid configuration ({} error{})",
                e.errors.len(),
                if e.errors.len() == 1 { "" } else { "s" }
            ),
            errors: e.errors,
        }
    }

    /// The response body: `{"error": message, "errors": [{"path", "message"}]}`.
    pub fn to_json(&self) -> Value {
        json!({
            "error": self.message,
            "errors": self
                .errors
                .iter()
                .map(|e| json!({ "path": e.path, "message": e.message }))
                .collect::<Vec<_>>(),
        })
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> ApiError {
        ApiError::invalid_config(e)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {})", self.message, self.status)?;
        for e in &self.errors {
            if e.path.is_empty() {
                write!(f, "\n  {}", e.message)?;
            } else {
                write!(f, "\n  {}: {}", e.path, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests;
