//! Plan: the validated description of a run, built from the command line.
//!
//! Everything that can be wrong with the arguments is caught here, before a
//! thread starts: a run either does what its flags say or does not start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use serde::Serialize;

use crate::cli::{parse_cpus, Args};
use crate::h2req::H2Requests;
use crate::request::{RequestSet, RequestSpec};
use crate::target::{Scheme, Target};
use crate::tls;

/// Most connections accepted (the machine's `ulimit -n` is about 20,000).
const MAX_CONNECTIONS: usize = 1_000_000;

/// The wire protocol a connection speaks. The connection driver dispatches
/// on this; HTTP/3 is the one still to be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive and optional pipelining.
    #[serde(rename = "http/1.1")]
    Http1,
    /// HTTP/2 with concurrent streams.
    #[serde(rename = "h2")]
    Http2,
}

/// TLS settings of a run.
#[derive(Debug, Clone)]
pub struct TlsPlan {
    /// Shared rustls client configuration.
    pub config: Arc<ClientConfig>,
    /// SNI and verification name.
    pub server_name: ServerName<'static>,
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The URLs, in rotation order.
    pub targets: Vec<Target>,
    /// Where to connect.
    pub addr: SocketAddr,
    /// TLS, for https targets.
    pub tls: Option<TlsPlan>,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Rendered requests (HTTP/1.1).
    pub requests: RequestSet,
    /// Request templates (HTTP/2).
    pub http2: Option<H2Requests>,
    /// Concurrent streams per HTTP/2 connection.
    pub streams: usize,
    /// Total connections.
    pub connections: usize,
    /// Worker threads.
    pub threads: usize,
    /// CPU of each thread (None: not pinned).
    pub cpus: Vec<Option<usize>>,
    /// Total rate (open loop), or None for closed loop.
    pub rate: Option<f64>,
    /// Measured duration.
    pub duration: Duration,
    /// Warm-up before the measured duration.
    pub warmup: Duration,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Reuse connections.
    pub keepalive: bool,
    /// Connect and response timeout.
    pub timeout: Duration,
    /// Pace open-loop sends with the sub-millisecond timer.
    pub precise_timer: bool,
    /// What the report echoes back.
    pub summary: ConfigSummary,
}

/// The configuration as recorded in reports.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ConfigSummary {
    /// URLs.
    pub urls: Vec<String>,
    /// Method.
    pub method: String,
    /// Extra headers as given.
    pub headers: Vec<String>,
    /// Host header values rotated.
    pub hosts: Vec<String>,
    /// Body size in bytes.
    pub body_bytes: usize,
    /// Connections.
    pub connections: usize,
    /// Threads.
    pub threads: usize,
    /// CPU per thread (null: unpinned).
    pub cpus: Vec<Option<usize>>,
    /// Target rate (null: closed loop).
    pub rate: Option<f64>,
    /// Measured seconds.
    pub duration_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Pipelining depth.
    pub pipeline: usize,
    /// HTTP/2 streams per connection.
    #[serde(default)]
    pub streams: usize,
    /// Keep-alive.
    pub keepalive: bool,
    /// Timeout seconds.
    pub timeout_s: f64,
    /// Protocol name.
    pub protocol: String,
    /// TLS in use.
    pub tls: bool,
}

impl Plan {
    /// Validates the arguments of a load run.
    pub fn from_args(a: &Args) -> Result<Plan, String> {
        if a.http3 {
            return Err(
                "HTTP/3 is not supported yet by dao-loadgen (it waits on DAO's QUIC gate)".into(),
            );
        }
        if a.urls.is_empty() {
            return Err("no URL given".into());
        }
        let targets = a
            .urls
            .iter()
            .map(|u| Target::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        let first = &targets[0];
        if let Some(other) = targets.iter().find(|t| !first.same_origin(t)) {
            return Err(format!(
                "all URLs must share scheme, host and port ({first} vs {other}); \
                 run one dao-loadgen per origin"
            ));
        }
        if a.connections == 0 || a.connections > MAX_CONNECTIONS {
            return Err(format!("-c must be 1..={MAX_CONNECTIONS}"));
        }
        if a.threads == 0 {
            return Err("-t must be at least 1".into());
        }
        if a.threads > a.connections {
            return Err(format!(
                "more threads ({}) than connections ({})",
                a.threads, a.connections
            ));
        }
        if a.duration.is_zero() {
            return Err("-d must be positive".into());
        }
        if a.timeout.is_zero() {
            return Err("--timeout must be positive".into());
        }
        if a.pipeline == 0 || a.pipeline > 1024 {
            return Err("--pipeline must be 1..=1024".into());
        }
        if a.no_keepalive && a.pipeline > 1 {
            return Err("--pipeline needs keep-alive (drop --no-keepalive)".into());
        }
        if a.streams == 0 || a.streams > 10_000 {
            return Err("--streams must be 1..=10000".into());
        }
        if a.http2 && (a.pipeline > 1 || a.no_keepalive) {
            return Err(
                "--http2 multiplexes streams: use --streams, not --pipeline or --no-keepalive"
                    .into(),
            );
        }
        if !a.http2 && a.streams > 1 {
            return Err("--streams needs --http2".into());
        }
        let cpus = thread_cpus(a)?;
        let headers = a
            .headers
            .iter()
            .map(|h| {
                let (n, v) = h
                    .split_once(':')
                    .ok_or_else(|| format!("-H {h:?}: expected \"Name: value\""))?;
                Ok((n.trim().to_string(), v.trim().to_string()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let host_header = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"));
        if host_header && !a.hosts.is_empty() {
            return Err("give Host values either with --host or with -H Host:, not both".into());
        }
        let hosts: Vec<String> = if host_header {
            Vec::new()
        } else if a.hosts.is_empty() {
            vec![first.authority.clone()]
        } else {
            a.hosts.clone()
        };
        let body = match (&a.body, &a.body_file) {
            (Some(b), _) => b.as_bytes().to_vec(),
            (None, Some(p)) => {
                std::fs::read(p).map_err(|e| format!("--body-file {}: {e}", p.display()))?
            }
            (None, None) => Vec::new(),
        };
        let paths: Vec<String> = targets.iter().map(|t| t.path.clone()).collect();
        let requests = RequestSet::build(&RequestSpec {
            method: &a.method,
            paths: &paths,
            hosts: &hosts,
            headers: &headers,
            body: &body,
            close: a.no_keepalive,
        })?;
        let protocol = if a.http2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        let http2 = if a.http2 {
            let authorities = if a.hosts.is_empty() {
                vec![first.authority.clone()]
            } else {
                a.hosts.clone()
            };
            let scheme = match first.scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            };
            Some(H2Requests::build(
                scheme,
                &a.method,
                &paths,
                &authorities,
                &headers,
                &body,
            )?)
        } else {
            None
        };
        let alpn: &[u8] = if a.http2 { b"h2" } else { b"http/1.1" };
        let tls = match first.scheme {
            Scheme::Http => {
                if a.insecure || a.cacert.is_some() {
                    return Err("--insecure/--cacert need an https:// URL".into());
                }
                None
            }
            Scheme::Https => Some(TlsPlan {
                config: tls::client_config(a.insecure, a.cacert.as_deref(), alpn)?,
                server_name: tls::server_name(&first.host)?,
            }),
        };
        let addr = first.resolve()?;
        let summary = ConfigSummary {
            urls: targets.iter().map(|t| t.to_string()).collect(),
            method: a.method.clone(),
            headers: a.headers.clone(),
            hosts: hosts.clone(),
            body_bytes: body.len(),
            connections: a.connections,
            threads: a.threads,
            cpus: cpus.clone(),
            rate: a.rate,
            duration_s: a.duration.as_secs_f64(),
            warmup_s: a.warmup.as_secs_f64(),
            pipeline: a.pipeline,
            streams: a.streams,
            keepalive: !a.no_keepalive,
            timeout_s: a.timeout.as_secs_f64(),
            protocol: if a.http2 { "h2" } else { "http/1.1" }.into(),
            tls: tls.is_some(),
        };
        Ok(Plan {
            targets,
            addr,
            tls,
            protocol,
            requests,
            http2,
            streams: a.streams,
            connections: a.connections,
            threads: a.threads,
            cpus,
            rate: a.rate,
            duration: a.duration,
            warmup: a.warmup,
            pipeline: a.pipeline,
            keepalive: !a.no_keepalive,
            timeout: a.timeout,
            precise_timer: a.timer != "coarse",
            summary,
        })
    }

    /// The global connection indices served by thread `t` (contiguous,
    /// sizes differing by at most one).
    pub fn connections_of(&self, t: usize) -> std::ops::Range<usize> {
        let base = self.connections / self.threads;
        let extra = self.connections % self.threads;
        let start = t * base + t.min(extra);
        let len = base + usize::from(t < extra);
        start..start + len
    }
}

fn thread_cpus(a: &Args) -> Result<Vec<Option<usize>>, String> {
    if a.no_pin {
        return Ok(vec![None; a.threads]);
    }
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let list = match &a.pin {
        Some(s) => {
            let list = parse_cpus(s)?;
            if let Some(bad) = list.iter().find(|c| !allowed.contains(c)) {
                return Err(format!(
                    "--pin: CPU {bad} is not available to this process (allowed: {allowed:?})"
                ));
            }
            list
        }
        None if allowed.is_empty() => return Ok(vec![None; a.threads]),
        None => allowed,
    };
    Ok((0..a.threads).map(|i| Some(list[i % list.len()])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let mut v = vec!["dao-loadgen"];
        v.extend_from_slice(args);
        Plan::from_args(&Args::try_parse_from(v).map_err(|e| e.to_string())?)
    }

    #[test]
    fn splits_connections_over_threads() {
        let p = plan(&["-c", "10", "-t", "3", "--no-pin", "http://127.0.0.1:1/"]).unwrap();
        let ranges: Vec<_> = (0..3).map(|t| p.connections_of(t)).collect();
        assert_eq!(ranges, vec![0..4, 4..7, 7..10]);
    }

    #[test]
    fn rejects_what_is_not_built_or_wrong() {
        let url = "http://127.0.0.1:1/";
        for args in [
            vec!["--http3", url],
            vec!["--http2", "--pipeline", "2", url],
            vec!["--http2", "--no-keepalive", url],
            vec!["--streams", "4", url],
            vec!["--http2", "-H", "Host: x", url],
            vec!["h3://127.0.0.1:1/"],
            vec!["-c", "1", "-t", "2", url],
            vec!["--pipeline", "4", "--no-keepalive", url],
            vec!["-k", url],
            vec!["-H", "Host: a", "--host", "b", url],
            vec!["-H", "nocolon", url],
            vec![url, "http://127.0.0.1:2/"],
            vec!["--pin", "9999", url],
            vec!["-d", "0s", url],
        ] {
            let err = plan(&args).expect_err(&format!("{args:?} must be rejected"));
            assert!(!err.is_empty());
        }
        let err = plan(&["--http3", url]).unwrap_err();
        assert!(err.contains("not supported yet"), "{err}");
        let p = plan(&["--http2", "--streams", "8", "--no-pin", url]).unwrap();
        assert_eq!((p.protocol, p.streams), (Protocol::Http2, 8));
        assert!(p.http2.is_some());
    }

    #[test]
    fn default_host_is_the_authority() {
        let p = plan(&["--no-pin", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"]).unwrap();
        assert_eq!(p.requests.len(), 2);
        assert!(p
            .requests
            .get(1)
            .starts_with(b"GET /b HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"));
        assert!(p.tls.is_none());
        assert_eq!(p.cpus, vec![None]);
    }
}
