//! `[telemetry]`: Sense's intervals and window, the exporter's address,
//! the access log and request ids.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::config::{LogDestination, Telemetry};
use super::super::raw::RawTelemetry;
use super::Validator;

impl Validator {
    pub(super) fn telemetry(&mut self, raw: RawTelemetry) -> Option<Telemetry> {
        let enabled = raw.enabled.unwrap_or(true);
        let interval_ms = self.count(
            "telemetry.merge_interval_ms",
            raw.merge_interval_ms,
            (10, 10_000),
            200,
        );
        let merge_interval = Duration::from_millis(interval_ms as u64);
        let window = self.duration("telemetry.window", raw.window, Duration::from_secs(10));
        // The window moves in tenths, each at least one interval long.
        if window < merge_interval * 10 {
            self.err(
                "telemetry.window",
                format!(
                    "must be at least 10 merge intervals ({:?})",
                    merge_interval * 10
                ),
            );
        } else if window > Duration::from_secs(3600) {
            self.err("telemetry.window", "must be at most 1h");
        }
        let tempo_intervals = self.count(
            "telemetry.tempo_intervals",
            raw.tempo_intervals,
            (2, 10_000),
            25,
        );
        let latency_ref = self.duration(
            "telemetry.latency_ref",
            raw.latency_ref,
            Duration::from_millis(100),
        );
        let queue_ref = self.count("telemetry.queue_ref", raw.queue_ref, (1, 1_000_000), 32) as u32;
        let prometheus_bind = match raw.prometheus_bind {
            None => None,
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(a) if enabled => Some(a),
                Ok(_) => {
                    self.err(
                        "telemetry.prometheus_bind",
                        "needs telemetry.enabled = true (the exporter serves Sense's table)",
                    );
                    None
                }
                Err(_) => {
                    self.err(
                        "telemetry.prometheus_bind",
                        format!("{text:?} is not an address such as \"127.0.0.1:9102\""),
                    );
                    None
                }
            },
        };
        let access_log = match (raw.access_log.unwrap_or(false), raw.access_log_path) {
            (false, _) => None,
            (true, None) => Some(LogDestination::Stdout),
            (true, Some(p)) if p == "stdout" || p == "-" => Some(LogDestination::Stdout),
            (true, Some(p)) if p.is_empty() => {
                self.err(
                    "telemetry.access_log_path",
                    "is empty; write \"stdout\" or a file path",
                );
                None
            }
            (true, Some(p)) => Some(LogDestination::File(p.into())),
        };
        Some(Telemetry {
            enabled,
            merge_interval,
            window,
            tempo_intervals,
            latency_ref,
            queue_ref,
            prometheus_bind,
            access_log,
            request_id: raw.request_id.unwrap_or(true),
        })
    }
}
