//! The configuration as written: serde structs that mirror the TOML and
//! refuse unknown keys. Nothing here is trusted until `validate` runs.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) server: RawServer,
    #[serde(default)]
    pub(crate) proxy: RawProxy,
    #[serde(default)]
    pub(crate) routes: RawRoutes,
    #[serde(default)]
    pub(crate) telemetry: RawTelemetry,
    #[serde(default)]
    pub(crate) policies: RawPolicies,
    #[serde(default)]
    pub(crate) memory: RawMemory,
    /// `[[listeners]]`: addresses served besides (or instead of) `server.bind`.
    pub(crate) listeners: Option<Vec<RawListener>>,
    /// Read as a table so that unknown keys are named by their path; then
    /// deserialised into `RawAdmin`.
    pub(crate) admin: Option<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMemory {
    pub(crate) state_dir: Option<String>,
    pub(crate) snapshots_keep: Option<i64>,
    pub(crate) profile_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) bind: Option<String>,
    pub(crate) workers: Option<i64>,
    pub(crate) max_header_bytes: Option<i64>,
    pub(crate) header_read_timeout: Option<String>,
    pub(crate) keepalive_timeout: Option<String>,
    pub(crate) shutdown_timeout: Option<String>,
    pub(crate) h2_max_concurrent_streams: Option<i64>,
    pub(crate) h2_websocket: Option<bool>,
    /// Removed keys: kept so that validation can point to `[[listeners]]`.
    pub(crate) tls_cert: Option<toml::Value>,
    pub(crate) tls_key: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub(crate) bind: String,
    pub(crate) tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    #[serde(default)]
    pub(crate) certificates: Vec<RawCertificate>,
    pub(crate) sni_strict: Option<bool>,
    pub(crate) alpn: Option<Vec<String>>,
    pub(crate) min_version: Option<String>,
    pub(crate) client_ca: Option<String>,
    pub(crate) client_auth: Option<String>,
    pub(crate) client_cert_header: Option<String>,
    pub(crate) handshake_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub(crate) cert: String,
    pub(crate) key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    pub(crate) enabled: Option<bool>,
    pub(crate) merge_interval_ms: Option<i64>,
    pub(crate) window: Option<String>,
    pub(crate) tempo_intervals: Option<i64>,
    pub(crate) latency_ref: Option<String>,
    pub(crate) queue_ref: Option<i64>,
    pub(crate) prometheus_bind: Option<String>,
    pub(crate) access_log: Option<bool>,
    pub(crate) access_log_path: Option<String>,
    pub(crate) request_id: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxy {
    pub(crate) connect_timeout: Option<String>,
    pub(crate) response_timeout: Option<String>,
    pub(crate) read_timeout: Option<String>,
    pub(crate) pool_max_idle: Option<i64>,
    pub(crate) pool_idle_timeout: Option<String>,
    pub(crate) tunnel_idle_timeout: Option<String>,
    pub(crate) h2_max_connections_per_upstream: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoutes {
    #[serde(default)]
    pub(crate) rule: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) name: String,
    pub(crate) policy: Option<String>,
    pub(crate) intent: Option<String>,
    #[serde(rename = "match", default)]
    pub(crate) matcher: RawMatch,
    #[serde(default)]
    pub(crate) upstreams: Vec<RawUpstream>,
    pub(crate) filters: Option<toml::Table>,
    pub(crate) retry: Option<RawRetry>,
    pub(crate) circuit_breaker: Option<RawCircuitBreaker>,
    pub(crate) hash_on: Option<String>,
    pub(crate) bounded_load: Option<f64>,
    pub(crate) resonant: Option<RawResonant>,
    pub(crate) outlier_detection: Option<RawOutlier>,
    pub(crate) slow_start: Option<String>,
    pub(crate) panic_threshold: Option<i64>,
    pub(crate) sticky: Option<RawSticky>,
    /// Read as a table so that errors, unknown keys included, can name the
    /// field's path; then deserialised into `RawHealthCheck`.
    pub(crate) health_check: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    pub(crate) path: Option<String>,
    pub(crate) interval: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) healthy_threshold: Option<i64>,
    pub(crate) unhealthy_threshold: Option<i64>,
    pub(crate) expected_status: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) grpc_service: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicies {
    pub(crate) resonant: Option<RawResonant>,
    pub(crate) peak_ewma: Option<RawPeakEwma>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub(crate) attempts: Option<i64>,
    pub(crate) per_try_timeout: Option<String>,
    pub(crate) on: Option<Vec<String>>,
    pub(crate) budget_percent: Option<i64>,
    pub(crate) budget_min: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResonant {
    pub(crate) w_load: Option<f64>,
    pub(crate) w_intent: Option<f64>,
    pub(crate) w_tempo: Option<f64>,
    pub(crate) candidates: Option<i64>,
    /// Only in `[policies.resonant]`: request intent → upstream intent → gap.
    pub(crate) related: Option<BTreeMap<String, BTreeMap<String, f64>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeakEwma {
    pub(crate) decay: Option<String>,
    pub(crate) failure_penalty: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSticky {
    pub(crate) cookie: Option<String>,
    pub(crate) max_age: Option<String>,
    pub(crate) path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutlier {
    pub(crate) enabled: Option<bool>,
    pub(crate) consecutive_failures: Option<i64>,
    pub(crate) base_ejection_time: Option<String>,
    pub(crate) max_ejection_time: Option<String>,
    pub(crate) max_ejection_percent: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCircuitBreaker {
    pub(crate) max_connections: Option<i64>,
    pub(crate) max_pending: Option<i64>,
    pub(crate) max_requests: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    pub(crate) host: Option<String>,
    pub(crate) path_prefix: Option<String>,
    pub(crate) methods: Option<Vec<String>>,
    pub(crate) headers: Option<BTreeMap<String, String>>,
    pub(crate) cookies: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) protocol: Option<String>,
    pub(crate) weight: Option<i64>,
    pub(crate) intent: Option<Vec<String>>,
    pub(crate) tls: Option<RawUpstreamTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub(crate) ca: Option<String>,
    pub(crate) server_name: Option<String>,
    pub(crate) verify: Option<bool>,
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) min_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) bind: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) token_file: Option<String>,
}
