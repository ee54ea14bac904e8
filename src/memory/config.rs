//! The validated configuration: every value here has been checked, so the
//! data path never re-validates. Built by `validate`, shared read-only by
//! every worker behind an `Arc`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::balancing::{Balancing, Policies, Policy};
use crate::align::{CircuitBreaker, RetryPolicy, Router};

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// `[server]`.
    pub server: Server,
    /// Every address served: `server.bind` (when given, or when there is
    /// no `[[listeners]]`) first, then `[[listeners]]` in file order.
    pub listeners: Vec<Listener>,
    /// `[proxy]`.
    pub proxy: Proxy,
    /// `[telemetry]`.
    pub telemetry: Telemetry,
    /// `[[routes.rule]]`, in file order.
    pub routes: Vec<Route>,
    /// Distinct upstream connection pools (an address and the TLS spoken
    /// to it); `Upstream::pool` indexes this list, so two routes naming the
    /// same upstream share one connection pool.
    pub pools: Vec<PoolKey>,
    /// The route table compiled from `routes`.
    pub router: Router,
    /// `[policies]`.
    pub policies: Policies,
    /// Every intent named in the config (routes, upstreams, relatedness),
    /// sorted; policies refer to them by index.
    pub intents: Vec<String>,
    /// The TOML text it was parsed from (kept for snapshots and diffs).
    pub source: std::sync::Arc<str>,
    /// `[memory]`.
    pub memory: Memory,
    /// `[admin]`: the admin API's listener and token; `None` when the
    /// section is absent (no admin API).
    pub admin: Option<Admin>,
    /// The `client_cert_header` of every TLS listener (lower case, each
    /// once): removed from every client's request on every listener, so
    /// that no client can pass one off as DAO's.
    pub client_cert_headers: Vec<String>,
}

impl Config {
    /// Every rate limit of every route, in `RateSpec::index` order.
    pub fn rate_limits(&self) -> Vec<&crate::flow::spec::RateSpec> {
        self.routes
            .iter()
            .flat_map(|r| &r.filters)
            .filter_map(|f| match f {
                crate::flow::FilterSpec::RateLimit(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// The index of an intent in `intents`.
    pub fn intent_index(&self, name: &[u8]) -> Option<usize> {
        self.intents.iter().position(|i| i.as_bytes() == name)
    }
}

/// `[memory]`: where applied configs and learned profiles are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// Directory of snapshots and profiles; `None`: kept in memory only,
    /// lost at exit.
    pub state_dir: Option<std::path::PathBuf>,
    /// Applied configs kept (the newest ones).
    pub snapshots_keep: usize,
    /// How often learned service profiles are written to `state_dir`.
    pub profile_interval: Duration,
}

/// One address DAO accepts connections on: `server.bind` or a
/// `[[listeners]]` entry.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Address to bind (port 0: a free port, different per listener).
    pub bind: SocketAddr,
    /// HTTPS: the TLS settings; `None`: plain HTTP.
    pub tls: Option<Arc<Tls>>,
}

/// `[listeners.tls]`, validated: certificates loaded and checked, ready
/// for handshakes. Built anew with each config, so a reload reloads the
/// certificates.
#[derive(Debug)]
pub struct Tls {
    /// The rustls settings: certificates chosen by SNI, ALPN, protocol
    /// versions, client certificate verification.
    pub server: Arc<rustls::ServerConfig>,
    /// The certificates and the names each one serves.
    pub certificates: Arc<crate::gate::sni::Certificates>,
    /// Refuse a ClientHello whose SNI names no certificate, with an
    /// `unrecognized_name` alert (otherwise it gets the first certificate).
    pub sni_strict: bool,
    /// Time a client gets to complete its handshake.
    pub handshake_timeout: Duration,
    /// Whether clients present certificates.
    pub client_auth: ClientAuth,
    /// The header (lower case) that carries a verified client
    /// certificate's details upstream (see `gate::client_cert`); `None`:
    /// they are not forwarded.
    pub client_cert_header: Option<String>,
    /// ALPN protocols offered, in preference order.
    pub alpn: Vec<String>,
    /// Lowest TLS version accepted.
    pub min_version: TlsVersion,
}

/// Client certificate verification (mTLS) of a TLS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// Asked for; a client without one is served, one with a bad one is not.
    Optional,
    /// A certificate signed by `client_ca` is required.
    Required,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    /// The versions rustls may use when this one is the lowest.
    pub fn and_later(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsVersion::Tls12 => rustls::ALL_VERSIONS,
            TlsVersion::Tls13 => &TLS13_ONLY,
        }
    }
}

/// `[server]`: the downstream side.
#[derive(Debug, Clone)]
pub struct Server {
    /// The first listener's address (`server.bind`, or the first
    /// `[[listeners]]` when `server.bind` is not given).
    pub bind: SocketAddr,
    /// Number of worker threads, one per core.
    pub workers: usize,
    /// Largest request head accepted; larger is answered 431.
    pub max_header_bytes: usize,
    /// Time allowed to receive a whole request head once it has started.
    pub header_read_timeout: Duration,
    /// Time an idle keep-alive client connection is kept.
    pub keepalive_timeout: Duration,
    /// Time in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// Streams one HTTP/2 client connection may have open at once
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub h2_max_concurrent_streams: u32,
    /// WebSocket over HTTP/2 (RFC 8441): `SETTINGS_ENABLE_CONNECT_PROTOCOL`
    /// is advertised and extended CONNECT streams are served.
    pub h2_websocket: bool,
}

/// `[proxy]`: the upstream side.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Time allowed to establish an upstream connection.
    pub connect_timeout: Duration,
    /// Time from the request being sent to the response head arriving.
    pub response_timeout: Duration,
    /// Longest wait for any single read of a body, either side.
    pub read_timeout: Duration,
    /// Idle connections kept per upstream, per worker.
    pub pool_max_idle: usize,
    /// Idle pooled connections older than this are closed.
    pub pool_idle_timeout: Duration,
    /// A WebSocket tunnel with no byte either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// HTTP/2 connections opened per h2c upstream, per worker (each
    /// carries many concurrent streams).
    pub h2_max_connections_per_upstream: usize,
}

/// `[telemetry]`: Sense, the exporter and the access log.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// Per-core recording, merging and the resonance table.
    pub enabled: bool,
    /// How often cores hand their figures to the control thread.
    pub merge_interval: Duration,
    /// Length of the sliding window of latency quantiles and error rate.
    pub window: Duration,
    /// Merge intervals over which RPS and tempo_spikiness are computed.
    pub tempo_intervals: usize,
    /// The p95 at which load_resonance's latency term is one half.
    pub latency_ref: Duration,
    /// The in-flight count at which load_resonance's queue term is one half.
    pub queue_ref: u32,
    /// Where `/metrics` and `/health` are served, if anywhere.
    pub prometheus_bind: Option<SocketAddr>,
    /// Where access log lines go; `None`: no access log.
    pub access_log: Option<LogDestination>,
    /// Generate `x-request-id` for requests that come without one.
    pub request_id: bool,
}

/// Where a log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    /// Standard output.
    Stdout,
    /// A file, appended to (created if missing).
    File(std::path::PathBuf),
}

/// How a route's host is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Any host.
    Any,
    /// Exactly this host (lower case, no port).
    Exact(String),
    /// `*.suffix`: any subdomain of the suffix (stored as `.suffix`).
    Suffix(String),
}

impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMatch::Any => f.write_str("any host"),
            HostMatch::Exact(h) => f.write_str(h),
            HostMatch::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

/// One `[[routes.rule]]`.
#[derive(Debug, Clone)]
pub struct Route {
    /// The rule's name (unique).
    pub name: String,
    /// Host to match.
    pub host: HostMatch,
    /// Path prefix to match (`/` when absent).
    pub path_prefix: String,
    /// Methods accepted (upper case); empty means any.
    pub methods: Vec<String>,
    /// Headers that must be present with exactly this value (names lower case).
    pub headers: Vec<(String, String)>,
    /// Cookies that must be present with exactly this value.
    pub cookies: Vec<(String, String)>,
    /// Balancing policy.
    pub policy: Policy,
    /// The policy's options, outlier detection, slow start, panic mode.
    pub balancing: Balancing,
    /// The route's intent label, read by intent-aware policies.
    pub intent: Option<String>,
    /// Upstreams, in file order.
    pub upstreams: Vec<Upstream>,
    /// `[routes.rule.filters]`, in running order.
    pub filters: Vec<crate::flow::FilterSpec>,
    /// `filters.request_timeout`: this route's deadline for the response
    /// head (instead of `proxy.response_timeout`).
    pub request_timeout: Option<Duration>,
    /// `[routes.rule.retry]`: none means one attempt only.
    pub retry: Option<RetryPolicy>,
    /// `[routes.rule.circuit_breaker]`: limits per upstream, all cores
    /// together (each core enforces its share).
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Active health checks of every upstream of the route, if configured.
    pub health_check: Option<HealthCheck>,
}

/// `[routes.rule.health_check]`: how each upstream of a route is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path of the `GET` (starts with `/`).
    pub path: String,
    /// Time between the starts of two probes of one upstream.
    pub interval: Duration,
    /// Time a probe gets to connect and read the status line (< interval).
    pub timeout: Duration,
    /// Successes in a row that bring a down upstream back up.
    pub healthy_threshold: u32,
    /// Failures in a row that take an up upstream down.
    pub unhealthy_threshold: u32,
    /// Statuses that count as success, both ends included.
    pub expected_status: (u16, u16),
    /// `Host` header (`:authority` over HTTP/2) of the probe; `None`: the
    /// upstream's authority.
    pub host: Option<String>,
    /// gRPC checks (`grpc_service`, HTTP/2 upstreams only): the service
    /// asked about in a `grpc.health.v1.Health/Check` call (`""`: the
    /// server as a whole), which passes on `SERVING`; `path` is then
    /// [`GRPC_HEALTH_PATH`] and `expected_status` unused.
    pub grpc_service: Option<String>,
}

/// The method a gRPC health check calls.
pub const GRPC_HEALTH_PATH: &str = "/grpc.health.v1.Health/Check";

/// One `[[routes.rule.upstreams]]`.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Its name (unique within the route).
    pub name: String,
    /// Resolved address.
    pub addr: SocketAddr,
    /// `host:port` from the URL, sent as `Host` when the client sent none.
    pub authority: String,
    /// Weight for the weighted policy (1..=1000).
    pub weight: u32,
    /// Intents this upstream serves well.
    pub intents: Vec<String>,
    /// Index of its connection pool in `Config::pools`.
    pub pool: usize,
    /// The HTTP version spoken to it.
    pub protocol: UpstreamProtocol,
    /// `https://` upstreams: how their connections are encrypted.
    pub tls: Option<Arc<UpstreamTls>>,
}

/// What makes two upstreams share a connection pool: the same address
/// reached the same way (plain, or TLS with the same settings).
#[derive(Debug, Clone)]
pub struct PoolKey {
    /// The upstream's address.
    pub addr: SocketAddr,
    /// Its TLS settings, if it is an `https://` upstream.
    pub tls: Option<Arc<UpstreamTls>>,
}

impl PartialEq for PoolKey {
    fn eq(&self, other: &PoolKey) -> bool {
        self.addr == other.addr
            && match (&self.tls, &other.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => a.settings == b.settings,
                _ => false,
            }
    }
}

/// `[routes.rule.upstreams.tls]` of an `https://` upstream, validated:
/// trust anchors and client certificate loaded, ready for handshakes.
pub struct UpstreamTls {
    /// The rustls client settings (ALPN per the upstream's protocol).
    pub client: Arc<rustls::ClientConfig>,
    /// The name sent in SNI and checked against the upstream's
    /// certificate (an IP address: no SNI, checked against IP SANs).
    pub server_name: rustls::pki_types::ServerName<'static>,
    /// Whether the upstream's certificate is checked at all.
    pub verify: bool,
    /// The settings as written, canonical: equal settings share a pool.
    pub settings: String,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The HTTP version DAO speaks to an upstream (`protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 over keep-alive connections (`"h1"`, the default).
    #[default]
    H1,
    /// HTTP/2 over cleartext TCP with prior knowledge (`"h2c"`): a few
    /// multiplexed connections per worker.
    H2c,
    /// HTTP/2 over TLS, agreed by ALPN (`"h2"`, `https://` upstreams
    /// only): pooled and multiplexed as h2c.
    H2,
}

impl UpstreamProtocol {
    /// Whether it is HTTP/2 (multiplexed through the h2 pool).
    pub fn is_h2(self) -> bool {
        matches!(self, UpstreamProtocol::H2c | UpstreamProtocol::H2)
    }
}

/// `[admin]`: where the admin API listens and the bearer token it wants.
#[derive(Clone, PartialEq, Eq)]
pub struct Admin {
    /// Listening address (default `127.0.0.1:9901`).
    pub bind: SocketAddr,
    /// The bearer token every request must carry (at least 16 visible
    /// ASCII characters), from `token` or read from `token_file`.
    pub token: Arc<str>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never in logs or panic messages.
        f.debug_struct("Admin")
            .field("bind", &self.bind)
            .field("token", &"<redacted>")
            .finish()
    }
}
