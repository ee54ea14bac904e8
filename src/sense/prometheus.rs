//! The Prometheus text exposition (format 0.0.4) of a resonance table.

use std::fmt::Write;

use super::record::{Failure, ATTEMPT_RESULTS, BUCKETS_US, METHODS};
use super::table::{Health, ResonanceTable, UpstreamState};
use super::tls::{HandshakeFailure, TlsTable, ALPNS, VERSIONS};
use crate::align::breaker::Limit;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes `value` as a label value: `\`, `"` and newlines escaped.
fn label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `{route="…",upstream="…"` (left open for more labels).
fn open_labels(out: &mut String, name: &str, u: &UpstreamState) {
    out.push_str(name);
    out.push_str("{route=\"");
    label(out, &u.route);
    out.push_str("\",upstream=\"");
    label(out, &u.upstream);
    out.push('"');
}

/// The current config's upstream slots: the local one (`-`) has no
/// latency to speak of, and upstreams removed by a reload are left out.
fn upstreams(t: &ResonanceTable) -> Vec<&UpstreamState> {
    t.serving().collect()
}

fn gauge_per_upstream(
    out: &mut String,
    t: &ResonanceTable,
    name: &str,
    help: &str,
    value: impl Fn(&UpstreamState) -> f64,
) {
    header(out, name, "gauge", help);
    for u in upstreams(t) {
        open_labels(out, name, u);
        let _ = writeln!(out, "}} {}", value(u));
    }
}

/// The families of active health checks, for the upstreams that have them.
fn health_checks(out: &mut String, t: &ResonanceTable) {
    let checked = || t.serving().filter(|u| u.checked != Health::Unchecked);
    let name = "dao_upstream_health_check_up";
    header(
        out,
        name,
        "gauge",
        "Verdict of active health checks: 1 up, 0 down (upstreams of routes with health_check).",
    );
    for u in checked() {
        open_labels(out, name, u);
        let up = u8::from(u.checked == Health::Up);
        let _ = writeln!(out, "}} {up}");
    }
    let name = "dao_health_checks_total";
    header(
        out,
        name,
        "counter",
        "Active health check probes by result.",
    );
    for u in checked() {
        for (result, n) in [("success", u.checks.success), ("failure", u.checks.failure)] {
            open_labels(out, name, u);
            let _ = writeln!(out, ",result=\"{result}\"}} {n}");
        }
    }
    let name = "dao_upstream_panic_picks_total";
    header(
        out,
        name,
        "counter",
        "Requests sent to the upstream although active health checks had every upstream of its route down.",
    );
    for u in checked() {
        open_labels(out, name, u);
        let _ = writeln!(out, "}} {}", u.totals.panic_picks);
    }
}

/// A counter per upstream split by one label: `values` names the label's
/// values, `get` the counts in the same order.
fn labelled(
    out: &mut String,
    t: &ResonanceTable,
    (name, help): (&str, &str),
    (label, values): (&str, &[&str]),
    get: fn(&UpstreamState) -> &[u64],
) {
    header(out, name, "counter", help);
    for u in upstreams(t) {
        for (value, n) in values.iter().zip(get(u)) {
            open_labels(out, name, u);
            let _ = writeln!(out, ",{label}=\"{value}\"}} {n}");
        }
    }
}

/// One sample per route: `get` summed over the route's upstreams, routes
/// in the order they first appear.
fn per_route(out: &mut String, t: &ResonanceTable, name: &str, get: fn(&UpstreamState) -> u64) {
    let mut sums: Vec<(&str, u64)> = Vec::new();
    for u in t.serving() {
        match sums.iter_mut().find(|(r, _)| *r == &*u.route) {
            Some((_, sum)) => *sum += get(u),
            None => sums.push((&u.route, get(u))),
        }
    }
    for (route, sum) in sums {
        out.push_str(name);
        out.push_str("{route=\"");
        label(out, route);
        let _ = writeln!(out, "\"}} {sum}");
    }
}

/// The TLS handshake families, per listener (its bound address).
fn tls(out: &mut String, t: &TlsTable) {
    let name = "dao_tls_handshakes_total";
    header(
        out,
        name,
        "counter",
        "TLS handshakes completed, by listener, protocol version and ALPN protocol (none: the client offered none).",
    );
    for (addr, c) in &t.0 {
        for (version, row) in VERSIONS.iter().zip(&c.handshakes) {
            for (alpn, n) in ALPNS.iter().zip(row) {
                let _ = writeln!(
                    out,
                    "{name}{{listener=\"{addr}\",version=\"{version}\",alpn=\"{alpn}\"}} {n}"
                );
            }
        }
    }
    let name = "dao_tls_handshake_failures_total";
    header(
        out,
        name,
        "counter",
        "TLS handshakes that failed, by listener and reason: timeout, eof, io, protocol, incompatible, unknown_sni, client_cert, alert.",
    );
    for (addr, c) in &t.0 {
        for (reason, n) in HandshakeFailure::NAMES.iter().zip(c.failures) {
            let _ = writeln!(out, "{name}{{listener=\"{addr}\",reason=\"{reason}\"}} {n}");
        }
    }
    let name = "dao_tls_handshake_duration_seconds";
    header(
        out,
        name,
        "histogram",
        "Time from accepting a connection to the end of its TLS handshake (completed handshakes).",
    );
    for (addr, c) in &t.0 {
        let mut cumulative = 0;
        for (i, n) in c.buckets.iter().enumerate() {
            cumulative += n;
            let _ = match BUCKETS_US.get(i) {
                Some(&le) => writeln!(
                    out,
                    "{name}_bucket{{listener=\"{addr}\",le=\"{}\"}} {cumulative}",
                    le as f64 / 1e6
                ),
                None => writeln!(
                    out,
                    "{name}_bucket{{listener=\"{addr}\",le=\"+Inf\"}} {cumulative}"
                ),
            };
        }
        let _ = writeln!(
            out,
            "{name}_sum{{listener=\"{addr}\"}} {}",
            c.sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{listener=\"{addr}\"}} {cumulative}");
    }
    for (name, help, get) in [
        (
            "dao_tls_resumed_total",
            "TLS handshakes that resumed a session (a ticket), by listener.",
            (|c: &super::tls::TlsCounters| c.resumed) as fn(&super::tls::TlsCounters) -> u64,
        ),
        (
            "dao_tls_client_certificates_total",
            "TLS handshakes in which the client presented a certificate that client_ca vouches for, by listener.",
            |c: &super::tls::TlsCounters| c.client_certs,
        ),
    ] {
        header(out, name, "counter", help);
        for (addr, c) in &t.0 {
            let _ = writeln!(out, "{name}{{listener=\"{addr}\"}} {}", get(c));
        }
    }
}

/// Renders every metric of `t`.
pub fn render(t: &ResonanceTable, out: &mut String) {
    header(
        out,
        "http_requests_total",
        "counter",
        "Requests answered, by route, upstream, method and status (route \"-\": answered by DAO itself).",
    );
    for u in t.live() {
        let mut codes = u.totals.codes.clone();
        codes.sort_unstable();
        for (m, s, n) in codes {
            open_labels(out, "http_requests_total", u);
            let _ = writeln!(
                out,
                ",method=\"{}\",status=\"{s}\"}} {n}",
                METHODS[m as usize]
            );
        }
    }

    let name = "http_request_duration_seconds";
    header(
        out,
        name,
        "histogram",
        "Time from a complete request head to the end of its response.",
    );
    for u in upstreams(t) {
        let mut cumulative = 0;
        for (i, n) in u.totals.buckets.iter().enumerate() {
            cumulative += n;
            open_labels(out, "http_request_duration_seconds_bucket", u);
            match BUCKETS_US.get(i) {
                Some(&le) => {
                    let _ = writeln!(out, ",le=\"{}\"}} {cumulative}", le as f64 / 1e6);
                }
                None => {
                    let _ = writeln!(out, ",le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        open_labels(out, "http_request_duration_seconds_sum", u);
        let _ = writeln!(out, "}} {}", u.totals.sum_us as f64 / 1e6);
        open_labels(out, "http_request_duration_seconds_count", u);
        let _ = writeln!(out, "}} {}", u.totals.requests);
    }

    header(
        out,
        "active_connections",
        "gauge",
        "Client connections open.",
    );
    let _ = writeln!(out, "active_connections {}", t.connections());
    header(
        out,
        "dao_tunnels_open",
        "gauge",
        "WebSocket tunnels open (connections past their 101).",
    );
    let _ = writeln!(out, "dao_tunnels_open {}", t.tunnels());
    header(
        out,
        "dao_tunnel_bytes_total",
        "counter",
        "Bytes relayed through WebSocket tunnels, both ways.",
    );
    let _ = writeln!(out, "dao_tunnel_bytes_total {}", t.tunnel_bytes());

    if !t.tls.is_empty() {
        tls(out, &t.tls);
    }

    gauge_per_upstream(
        out,
        t,
        "dao_upstream_in_flight",
        "Requests in flight to the upstream, summed over cores.",
        |u| u.in_flight as f64,
    );
    let name = "dao_upstream_latency_seconds";
    header(
        out,
        name,
        "summary",
        "Latency quantiles over the sliding window (sum and count since start).",
    );
    for u in upstreams(t) {
        for (q, v) in [("0.5", u.p50_us), ("0.95", u.p95_us), ("0.99", u.p99_us)] {
            open_labels(out, name, u);
            let _ = writeln!(out, ",quantile=\"{q}\"}} {}", v as f64 / 1e6);
        }
        open_labels(out, "dao_upstream_latency_seconds_sum", u);
        let _ = writeln!(out, "}} {}", u.totals.sum_us as f64 / 1e6);
        open_labels(out, "dao_upstream_latency_seconds_count", u);
        let _ = writeln!(out, "}} {}", u.totals.requests);
    }
    gauge_per_upstream(
        out,
        t,
        "dao_upstream_error_rate",
        "Share of the window's requests that ended in a 5xx or a gateway failure.",
        |u| u.error_rate,
    );
    gauge_per_upstream(
        out,
        t,
        "dao_upstream_rps",
        "Requests per second over the recent tempo intervals.",
        |u| u.rps,
    );
    gauge_per_upstream(
        out,
        t,
        "dao_upstream_tempo_spikiness",
        "Coefficient of variation of the request rate over the recent tempo intervals.",
        |u| u.tempo_spikiness,
    );
    gauge_per_upstream(
        out,
        t,
        "dao_upstream_load_resonance",
        "0.4 p95/(p95+latency_ref) + 0.4 error_rate + 0.2 in_flight/(in_flight+queue_ref).",
        |u| u.load_resonance,
    );
    gauge_per_upstream(
        out,
        t,
        "dao_upstream_up",
        "1 unless the upstream's last gateway attempts all failed or active health checks have it down.",
        |u| if u.is_down() { 0.0 } else { 1.0 },
    );
    if upstreams(t).iter().any(|u| u.checked != Health::Unchecked) {
        health_checks(out, t);
    }
    labelled(
        out,
        t,
        ("dao_upstream_failures_total", "Gateway failures by kind (every attempt, retried ones included): connect, timeout, reset, invalid response."),
        ("kind", &Failure::NAMES),
        |u| &u.totals.failures,
    );
    labelled(
        out,
        t,
        ("dao_upstream_attempts_total", "Attempts sent to the upstream, retried ones included, by result: the response's status class, or connect, timeout, reset, invalid, client (the client failed)."),
        ("result", &ATTEMPT_RESULTS),
        |u| &u.totals.attempts,
    );
    for (name, help, get) in [
        (
            "dao_retries_total",
            "Retries made after a failed attempt, by route.",
            (|u: &UpstreamState| u.totals.retries) as fn(&UpstreamState) -> u64,
        ),
        (
            "dao_retry_budget_exhausted_total",
            "Retries the per-core retry budget refused (the failure went to the client), by route.",
            |u: &UpstreamState| u.totals.retries_refused,
        ),
    ] {
        header(out, name, "counter", help);
        per_route(out, t, name, get);
    }
    labelled(
        out,
        t,
        ("dao_circuit_breaker_open_total", "Requests a circuit breaker refused (503 x-dao-overloaded, or retried elsewhere), by limit."),
        ("limit", &Limit::NAMES),
        |u| &u.totals.breaker_open,
    );
    for (name, help, get) in [
        (
            "dao_received_bytes_total",
            "Bytes read from clients (heads and bodies).",
            (|u: &UpstreamState| u.totals.bytes_in) as fn(&UpstreamState) -> u64,
        ),
        (
            "dao_sent_bytes_total",
            "Bytes written to clients (heads and bodies).",
            |u: &UpstreamState| u.totals.bytes_out,
        ),
    ] {
        header(out, name, "counter", help);
        for u in t.live() {
            open_labels(out, name, u);
            let _ = writeln!(out, "}} {}", get(u));
        }
    }

    header(
        out,
        "dao_resonance_epoch",
        "gauge",
        "Epoch of the resonance table these figures come from.",
    );
    let _ = writeln!(out, "dao_resonance_epoch {}", t.epoch);
    header(
        out,
        "dao_worker_requests_total",
        "counter",
        "Requests answered by each worker.",
    );
    for (i, w) in t.workers.iter().enumerate() {
        let _ = writeln!(
            out,
            "dao_worker_requests_total{{worker=\"{i}\"}} {}",
            w.requests
        );
    }
    header(
        out,
        "dao_uptime_seconds",
        "gauge",
        "Time since DAO started.",
    );
    let _ = writeln!(out, "dao_uptime_seconds {}", t.uptime.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_summed_per_route() {
        let text = "[[routes.rule]]\nname = \"a\"\n\
            [[routes.rule.upstreams]]\nname = \"x\"\nurl = \"http://127.0.0.1:1\"\n\
            [[routes.rule.upstreams]]\nname = \"y\"\nurl = \"http://127.0.0.1:2\"\n\
            [[routes.rule]]\nname = \"b\"\n\
            [[routes.rule.upstreams]]\nname = \"x\"\nurl = \"http://127.0.0.1:1\"\n";
        let config = crate::memory::parse(text).unwrap();
        let slots = crate::sense::Slots::new(&config);
        let mut t = ResonanceTable::empty(&slots, 1);
        // Slot 0 is DAO's own.
        t.upstreams[1].totals.retries = 2;
        t.upstreams[2].totals.retries = 3;
        t.upstreams[3].totals.retries = 4;
        t.upstreams[2].totals.breaker_open[Limit::Pending as usize] = 1;
        let mut out = String::new();
        render(&t, &mut out);
        assert!(
            out.contains("\ndao_retries_total{route=\"a\"} 5\n"),
            "{out}"
        );
        assert!(
            out.contains("\ndao_retries_total{route=\"b\"} 4\n"),
            "{out}"
        );
        assert!(!out.contains("dao_retries_total{route=\"-\"}"));
        assert!(out.contains(
            "dao_circuit_breaker_open_total{route=\"a\",upstream=\"y\",limit=\"max_pending\"} 1\n"
        ));
        assert!(out.contains(
            "dao_upstream_attempts_total{route=\"b\",upstream=\"x\",result=\"client\"} 0\n"
        ));
    }

    #[test]
    fn tls_families_per_listener() {
        use crate::sense::tls::Handshake;
        let config = crate::memory::parse(
            "[[routes.rule]]\nname = \"a\"\n[[routes.rule.upstreams]]\nname = \"x\"\nurl = \"http://127.0.0.1:1\"\n",
        )
        .unwrap();
        let slots = crate::sense::Slots::new(&config);
        let mut t = ResonanceTable::empty(&slots, 1);
        let mut out = String::new();
        render(&t, &mut out);
        assert!(
            !out.contains("dao_tls_"),
            "no TLS listener, no TLS families"
        );
        let l: std::net::SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let c = t.tls.of(l);
        c.completed(&Handshake {
            version: 1,
            alpn: 0,
            resumed: true,
            client_cert: false,
            duration_us: 2_000,
        });
        c.failed(HandshakeFailure::UnknownSni);
        out.clear();
        render(&t, &mut out);
        for line in [
            "dao_tls_handshakes_total{listener=\"127.0.0.1:8443\",version=\"TLSv1.3\",alpn=\"h2\"} 1\n",
            "dao_tls_handshakes_total{listener=\"127.0.0.1:8443\",version=\"TLSv1.2\",alpn=\"none\"} 0\n",
            "dao_tls_handshake_failures_total{listener=\"127.0.0.1:8443\",reason=\"unknown_sni\"} 1\n",
            "dao_tls_handshake_duration_seconds_bucket{listener=\"127.0.0.1:8443\",le=\"0.001\"} 0\n",
            "dao_tls_handshake_duration_seconds_bucket{listener=\"127.0.0.1:8443\",le=\"0.0025\"} 1\n",
            "dao_tls_handshake_duration_seconds_count{listener=\"127.0.0.1:8443\"} 1\n",
            "dao_tls_handshake_duration_seconds_sum{listener=\"127.0.0.1:8443\"} 0.002\n",
            "dao_tls_resumed_total{listener=\"127.0.0.1:8443\"} 1\n",
            "dao_tls_client_certificates_total{listener=\"127.0.0.1:8443\"} 0\n",
        ] {
            assert!(out.contains(line), "{line} missing from\n{out}");
        }
    }

    #[test]
    fn labels_are_escaped() {
        let mut s = String::new();
        label(&mut s, "a\"b\\c\nd");
        assert_eq!(s, r#"a\"b\\c\nd"#);
    }
}
