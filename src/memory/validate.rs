//! Validation: raw TOML → `Config`, collecting every problem with the path
//! of the field it concerns (`routes.rule[0].upstreams[1].url: …`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::balancing::{Policies, Policy};
use super::config::{Config, HostMatch, PoolKey, Proxy, Route, Server, Upstream};
use super::raw::{RawConfig, RawProxy, RawRule, RawServer};
use crate::align::Router;

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field (empty for a syntax error).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in file order.
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if e.path.is_empty() {
                write!(f, "{}", e.message)?;
            } else {
                write!(f, "{}: {}", e.path, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            errors: vec![FieldError {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

/// Reads and validates a configuration file. Files it names (certificates,
/// keys) are found relative to its directory.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::one("", format!("cannot read {}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    parse_in(&text, Some(dir.to_path_buf()))
}

/// Parses and validates a configuration from TOML text. Files it names are
/// found relative to the working directory.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_in(text, None)
}

fn parse_in(text: &str, base: Option<PathBuf>) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        // toml names the key and its line; keep its message whole.
        ConfigError::one("", e.to_string().trim_end().to_string())
    })?;
    let mut v = Validator {
        errors: Vec::new(),
        telemetry_enabled: true,
        base,
        system_roots: None,
    };
    let config = v.config(raw);
    if v.errors.is_empty() {
        let mut config = config.expect("no errors means a config");
        config.source = text.into();
        Ok(config)
    } else {
        Err(ConfigError { errors: v.errors })
    }
}

mod admin;
mod balancing;
mod filters;
mod health;
mod listeners;
mod memory;
mod resilience;
mod telemetry;
mod upstreams;

struct Validator {
    errors: Vec<FieldError>,
    /// `telemetry.enabled`, which health checks need.
    telemetry_enabled: bool,
    /// Where relative file names start (`None`: the working directory).
    base: Option<PathBuf>,
    /// The system's trust anchors, once an `https://` upstream needed them.
    system_roots: Option<Arc<rustls::RootCertStore>>,
}

impl Validator {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let bind_given = raw.server.bind.is_some();
        let mut server = self.server(raw.server);
        let listeners = self.listeners(server.as_ref().map(|s| s.bind), bind_given, raw.listeners);
        if let (Some(s), Some(first)) = (&mut server, listeners.first()) {
            s.bind = first.bind;
        }
        let proxy = self.proxy(raw.proxy);
        self.telemetry_enabled = raw.telemetry.enabled.unwrap_or(true);
        let telemetry = self.telemetry(raw.telemetry);
        let policies = self.policies(raw.policies);
        let memory = self.memory(raw.memory);
        let admin = self.admin(raw.admin);
        let mut pools: Vec<PoolKey> = Vec::new();
        let mut routes = Vec::new();
        if raw.routes.rule.is_empty() {
            self.err("routes.rule", "at least one [[routes.rule]] is required");
        }
        for (i, rule) in raw.routes.rule.into_iter().enumerate() {
            let path = format!("routes.rule[{i}]");
            if routes.iter().any(|r: &Route| r.name == rule.name) {
                self.err(
                    format!("{path}.name"),
                    format!("duplicate route name {:?}", rule.name),
                );
            }
            if let Some(route) = self.route(&path, rule, &mut pools, &policies) {
                routes.push(route);
            }
        }
        if let Some(t) = &telemetry {
            for (i, r) in routes.iter().enumerate() {
                if r.policy == Policy::Resonant && !t.enabled {
                    self.err(
                        format!("routes.rule[{i}].policy"),
                        "resonant reads Sense's table: it needs telemetry.enabled = true",
                    );
                }
            }
        }
        // Rate limits are numbered across the config (the coordinator's order).
        let mut next_limit = 0;
        for r in &mut routes {
            for f in &mut r.filters {
                if let crate::flow::FilterSpec::RateLimit(spec) = f {
                    spec.index = next_limit;
                    next_limit += 1;
                }
            }
        }
        let router = Router::new(&routes);
        let mut intents: Vec<String> = routes
            .iter()
            .flat_map(|r| {
                r.intent
                    .iter()
                    .chain(r.upstreams.iter().flat_map(|u| &u.intents))
            })
            .chain(policies.related.iter().flat_map(|(a, b, _)| [a, b]))
            .cloned()
            .collect();
        intents.sort();
        intents.dedup();
        let mut client_cert_headers: Vec<String> = listeners
            .iter()
            .filter_map(|l| l.tls.as_ref()?.client_cert_header.clone())
            .collect();
        client_cert_headers.sort();
        client_cert_headers.dedup();
        Some(Config {
            server: server?,
            listeners,
            proxy: proxy?,
            telemetry: telemetry?,
            routes,
            pools,
            router,
            policies,
            intents,
            source: Arc::from(""),
            memory,
            admin,
            client_cert_headers,
        })
    }

    fn duration(&mut self, path: &str, value: Option<String>, default: Duration) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                self.err(path, "must be greater than zero");
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.err(
                    path,
                    format!("invalid duration {text:?} ({e}); write e.g. \"500ms\" or \"30s\""),
                );
                default
            }
        }
    }

    fn count(
        &mut self,
        path: &str,
        value: Option<i64>,
        range: (i64, i64),
        default: usize,
    ) -> usize {
        match value {
            None => default,
            Some(n) if n >= range.0 && n <= range.1 => n as usize,
            Some(n) => {
                self.err(
                    path,
                    format!("{n} is out of range {}..={}", range.0, range.1),
                );
                default
            }
        }
    }

    fn server(&mut self, raw: RawServer) -> Option<Server> {
        for (key, given) in [("tls_cert", &raw.tls_cert), ("tls_key", &raw.tls_key)] {
            if given.is_some() {
                self.err(
                    format!("server.{key}"),
                    "removed: TLS is set per listener, in [[listeners]] with a \
                     [listeners.tls] table (certificates = [{ cert = \"...\", key = \"...\" }])",
                );
            }
        }
        let bind_text = raw.bind.unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let bind = match bind_text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    "server.bind",
                    format!("{bind_text:?} is not an address such as \"0.0.0.0:8080\""),
                );
                None
            }
        };
        let cores = core_affinity::get_core_ids().map_or(1, |c| c.len().max(1));
        Some(Server {
            workers: self.count("server.workers", raw.workers, (1, 1024), cores),
            max_header_bytes: self.count(
                "server.max_header_bytes",
                raw.max_header_bytes,
                (1024, 1 << 20),
                64 * 1024,
            ),
            header_read_timeout: self.duration(
                "server.header_read_timeout",
                raw.header_read_timeout,
                Duration::from_secs(10),
            ),
            keepalive_timeout: self.duration(
                "server.keepalive_timeout",
                raw.keepalive_timeout,
                Duration::from_secs(60),
            ),
            shutdown_timeout: self.duration(
                "server.shutdown_timeout",
                raw.shutdown_timeout,
                Duration::from_secs(30),
            ),
            h2_max_concurrent_streams: self.count(
                "server.h2_max_concurrent_streams",
                raw.h2_max_concurrent_streams,
                (1, 10_000),
                128,
            ) as u32,
            h2_websocket: raw.h2_websocket.unwrap_or(true),
            bind: bind?,
        })
    }

    fn proxy(&mut self, raw: RawProxy) -> Option<Proxy> {
        Some(Proxy {
            connect_timeout: self.duration(
                "proxy.connect_timeout",
                raw.connect_timeout,
                Duration::from_secs(3),
            ),
            response_timeout: self.duration(
                "proxy.response_timeout",
                raw.response_timeout,
                Duration::from_secs(60),
            ),
            read_timeout: self.duration(
                "proxy.read_timeout",
                raw.read_timeout,
                Duration::from_secs(60),
            ),
            pool_max_idle: self.count("proxy.pool_max_idle", raw.pool_max_idle, (0, 100_000), 64),
            pool_idle_timeout: self.duration(
                "proxy.pool_idle_timeout",
                raw.pool_idle_timeout,
                Duration::from_secs(15),
            ),
            tunnel_idle_timeout: self.duration(
                "proxy.tunnel_idle_timeout",
                raw.tunnel_idle_timeout,
                Duration::from_secs(3600),
            ),
            h2_max_connections_per_upstream: self.count(
                "proxy.h2_max_connections_per_upstream",
                raw.h2_max_connections_per_upstream,
                (1, 64),
                2,
            ),
        })
    }

    fn route(
        &mut self,
        path: &str,
        mut raw: RawRule,
        pools: &mut Vec<PoolKey>,
        policies: &Policies,
    ) -> Option<Route> {
        let before = self.errors.len();
        if raw.name.trim().is_empty() {
            self.err(format!("{path}.name"), "must not be empty");
        }
        let policy = self.policy(path, raw.policy.as_deref());
        let balancing = self.balancing(path, policy, &mut raw, policies);
        let host = match raw.matcher.host.as_deref() {
            None | Some("*") => HostMatch::Any,
            Some(h) => self.host(&format!("{path}.match.host"), h),
        };
        let path_prefix = raw.matcher.path_prefix.unwrap_or_else(|| "/".to_string());
        if !path_prefix.starts_with('/') {
            self.err(format!("{path}.match.path_prefix"), "must start with '/'");
        }
        let mut methods = Vec::new();
        for (j, m) in raw
            .matcher
            .methods
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
                self.err(
                    format!("{path}.match.methods[{j}]"),
                    format!("{m:?} is not a method"),
                );
            }
            methods.push(m.to_ascii_uppercase());
        }
        let mut headers = Vec::new();
        for (name, value) in raw.matcher.headers.unwrap_or_default() {
            self.header(&format!("{path}.match.headers.{name}"), &name, &value);
            headers.push((name.to_ascii_lowercase(), value));
        }
        let mut cookies = Vec::new();
        for (name, value) in raw.matcher.cookies.take().unwrap_or_default() {
            let cpath = format!("{path}.match.cookies.{name}");
            if name.is_empty() || !name.bytes().all(is_token) {
                self.err(&cpath, format!("{name:?} is not a cookie name"));
            }
            if value.bytes().any(|b| b == b';' || b.is_ascii_control()) {
                self.err(&cpath, "a cookie value has no ';' or control characters");
            }
            cookies.push((name, value));
        }
        if let Some(intent) = &raw.intent {
            if intent.trim().is_empty() {
                self.err(format!("{path}.intent"), "must not be empty");
            }
        }
        if raw.upstreams.is_empty() {
            self.err(
                format!("{path}.upstreams"),
                "at least one upstream is required",
            );
        }
        let mut upstreams: Vec<Upstream> = Vec::new();
        for (j, u) in raw.upstreams.into_iter().enumerate() {
            let upath = format!("{path}.upstreams[{j}]");
            if upstreams.iter().any(|x| x.name == u.name) {
                self.err(
                    format!("{upath}.name"),
                    format!("duplicate upstream name {:?}", u.name),
                );
            }
            if let Some(up) = self.upstream(&upath, u, policy, pools) {
                upstreams.push(up);
            }
        }
        let filters = self.filters(&format!("{path}.filters"), raw.filters.take());
        let health_check = self.health_check(&format!("{path}.health_check"), raw.health_check);
        if let Some(check) = &health_check {
            self.h2_health_check(&format!("{path}.health_check"), check, &upstreams);
        }
        let retry = raw.retry.map(|r| self.retry(&format!("{path}.retry"), r));
        let circuit_breaker = raw
            .circuit_breaker
            .map(|b| self.circuit_breaker(&format!("{path}.circuit_breaker"), b));
        if self.errors.len() > before {
            return None;
        }
        Some(Route {
            name: raw.name,
            host,
            path_prefix,
            methods,
            headers,
            cookies,
            policy,
            balancing,
            intent: raw.intent,
            upstreams,
            filters: filters.specs,
            request_timeout: filters.request_timeout,
            health_check,
            retry,
            circuit_breaker,
        })
    }

    fn host(&mut self, path: &str, h: &str) -> HostMatch {
        let lower = h.to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !name.starts_with('.')
            && !name.ends_with('.');
        if !valid {
            self.err(
                path,
                format!("{h:?} is not a host name or \"*.suffix\" (no port)"),
            );
        }
        if wild {
            HostMatch::Suffix(format!(".{name}"))
        } else {
            HostMatch::Exact(name.to_string())
        }
    }

    fn header(&mut self, path: &str, name: &str, value: &str) {
        if name.is_empty() || !name.bytes().all(is_token) {
            self.err(path, format!("{name:?} is not a valid header name"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            self.err(path, "header value must not contain CR, LF or NUL");
        }
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
