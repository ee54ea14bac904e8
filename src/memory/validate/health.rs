//! `[routes.rule.health_check]`: the probe's path (or gRPC service),
//! pace, thresholds, expected statuses and `Host`, each checked and named
//! by its path.

use std::time::Duration;

use super::super::config::{HealthCheck, Upstream, GRPC_HEALTH_PATH};
use super::super::raw::RawHealthCheck;
use super::Validator;

/// The keys of `[routes.rule.health_check]`, for the unknown-key error.
const KEYS: &[&str] = &[
    "path",
    "interval",
    "timeout",
    "healthy_threshold",
    "unhealthy_threshold",
    "expected_status",
    "host",
    "grpc_service",
];

/// Longest `grpc_service` name.
const MAX_SERVICE: usize = 200;

const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

impl Validator {
    /// Validates a route's `health_check` table (`path` is its field path).
    pub(super) fn health_check(
        &mut self,
        path: &str,
        table: Option<toml::Table>,
    ) -> Option<HealthCheck> {
        let table = table?;
        let before = self.errors.len();
        if !self.telemetry_enabled {
            self.err(
                path,
                "needs telemetry.enabled = true (check verdicts reach the workers \
                 through Sense's resonance table)",
            );
        }
        let mut unknown = false;
        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) {
                unknown = true;
                self.err(
                    format!("{path}.{key}"),
                    format!("unknown key (expected one of {})", KEYS.join(", ")),
                );
            }
        }
        if unknown {
            return None;
        }
        let raw: RawHealthCheck = match toml::Value::Table(table).try_into() {
            Ok(raw) => raw,
            Err(e) => {
                self.err(path, e.to_string().trim_end().to_string());
                return None;
            }
        };
        let grpc = raw.grpc_service.is_some();
        let check_path = match raw.path {
            None if grpc => GRPC_HEALTH_PATH.to_string(),
            Some(_) if grpc => {
                self.err(
                    format!("{path}.path"),
                    format!("does not go with grpc_service (gRPC checks call {GRPC_HEALTH_PATH})"),
                );
                String::new()
            }
            None => {
                self.err(format!("{path}.path"), "is required (e.g. \"/healthz\")");
                String::new()
            }
            Some(p) if !p.starts_with('/') => {
                self.err(format!("{path}.path"), "must start with '/'");
                p
            }
            Some(p) if p.bytes().any(|b| b <= b' ' || b == 0x7f) => {
                self.err(
                    format!("{path}.path"),
                    "must not contain spaces or control characters",
                );
                p
            }
            Some(p) => p,
        };
        let ipath = format!("{path}.interval");
        let interval = self.duration(&ipath, raw.interval, Duration::from_secs(5));
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            self.err(ipath, "must be between 100ms and 1h");
        }
        let tpath = format!("{path}.timeout");
        let timeout = self.duration(&tpath, raw.timeout, Duration::from_secs(1));
        if timeout >= interval {
            self.err(
                tpath,
                format!(
                    "must be less than the interval ({})",
                    humantime::format_duration(interval)
                ),
            );
        }
        let healthy_threshold = self.count(
            &format!("{path}.healthy_threshold"),
            raw.healthy_threshold,
            (1, 100),
            2,
        ) as u32;
        let unhealthy_threshold = self.count(
            &format!("{path}.unhealthy_threshold"),
            raw.unhealthy_threshold,
            (1, 100),
            3,
        ) as u32;
        let expected_status = match raw.expected_status.as_deref() {
            None => (200, 299),
            Some(_) if grpc => {
                self.err(
                    format!("{path}.expected_status"),
                    "does not go with grpc_service (gRPC checks pass on SERVING)",
                );
                (200, 299)
            }
            Some(text) => parse_statuses(text).unwrap_or_else(|| {
                self.err(
                    format!("{path}.expected_status"),
                    format!(
                        "{text:?} is not a status class or range such as \"2xx\" or \"200-399\" \
                         (100..=599)"
                    ),
                );
                (200, 299)
            }),
        };
        if let Some(host) = &raw.host {
            let bad = host.is_empty()
                || host
                    .bytes()
                    .any(|b| b <= b' ' || b == 0x7f || b == b',' || b == b'/');
            if bad {
                self.err(
                    format!("{path}.host"),
                    format!("{host:?} is not a host[:port] for the Host header"),
                );
            }
        }
        if let Some(service) = &raw.grpc_service {
            if service.len() > MAX_SERVICE || service.chars().any(|c| c.is_control()) {
                self.err(
                    format!("{path}.grpc_service"),
                    format!(
                        "must be a service name of at most {MAX_SERVICE} bytes without control \
                         characters (\"\": the server as a whole)"
                    ),
                );
            }
        }
        if self.errors.len() > before {
            return None;
        }
        Some(HealthCheck {
            path: check_path,
            interval,
            timeout,
            healthy_threshold,
            unhealthy_threshold,
            expected_status,
            host: raw.host,
            grpc_service: raw.grpc_service,
        })
    }
}

impl Validator {
    /// Checks a route's validated `check` against its `upstreams`: gRPC
    /// checks need HTTP/2 upstreams, and HTTP/2 probes need `host` and
    /// `path` to make an `:authority` and a `:path`.
    pub(super) fn h2_health_check(
        &mut self,
        path: &str,
        check: &HealthCheck,
        upstreams: &[Upstream],
    ) {
        if check.grpc_service.is_some() {
            if let Some(u) = upstreams.iter().find(|u| !u.protocol.is_h2()) {
                self.err(
                    format!("{path}.grpc_service"),
                    format!(
                        "gRPC checks need HTTP/2 upstreams (protocol = \"h2c\" or \"h2\"); \
                         upstream {:?} speaks HTTP/1.1",
                        u.name
                    ),
                );
            }
        }
        if !upstreams.iter().any(|u| u.protocol.is_h2()) {
            return;
        }
        if let Some(host) = &check.host {
            if http::uri::Authority::try_from(host.as_str()).is_err() {
                self.err(
                    format!("{path}.host"),
                    format!("{host:?} is not a host[:port] for HTTP/2's :authority"),
                );
            }
        }
        if http::uri::PathAndQuery::try_from(check.path.as_str()).is_err() {
            self.err(
                format!("{path}.path"),
                format!("{:?} is not a path for HTTP/2's :path", check.path),
            );
        }
    }
}

/// `"2xx"` → (200, 299); `"200-399"` → (200, 399); `"204"` → (204, 204).
fn parse_statuses(text: &str) -> Option<(u16, u16)> {
    let code = |s: &str| {
        let s = s.trim();
        (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok())
            .flatten()
            .filter(|c| (100..=599).contains(c))
    };
    let lower = text.trim().to_ascii_lowercase();
    let range = if let Some(class) = lower.strip_suffix("xx") {
        let c = code(&format!("{class}00"))?;
        (c, c + 99)
    } else if let Some((a, b)) = lower.split_once('-') {
        (code(a)?, code(b)?)
    } else {
        let c = code(&lower)?;
        (c, c)
    };
    (range.0 <= range.1).then_some(range)
}

#[cfg(test)]
mod tests {
    use super::parse_statuses;

    #[test]
    fn status_ranges() {
        assert_eq!(parse_statuses("2xx"), Some((200, 299)));
        assert_eq!(parse_statuses("3XX"), Some((300, 399)));
        assert_eq!(parse_statuses("200-399"), Some((200, 399)));
        assert_eq!(parse_statuses(" 204 "), Some((204, 204)));
        for bad in [
            "", "xx", "6xx", "0xx", "399-200", "200-", "2000", "abc", "099", "20x",
        ] {
            assert_eq!(parse_statuses(bad), None, "{bad:?}");
        }
    }
}
