//! Report: the results of a run as a wrk2-like text summary and as JSON.
//!
//! The JSON report is also the input of `--overlay`, so it carries each
//! latency curve (corrected and uncorrected) as a percentile spectrum.

use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::hgrm;
use crate::plan::ConfigSummary;
use crate::run::RunResult;
use crate::stats::{ErrorCounts, StatusCounts};

/// Percentile levels of the summary table.
const LEVELS: [(f64, &str); 8] = [
    (50.0, "50.000%"),
    (75.0, "75.000%"),
    (90.0, "90.000%"),
    (99.0, "99.000%"),
    (99.9, "99.900%"),
    (99.99, "99.990%"),
    (99.999, "99.999%"),
    (100.0, "100.000%"),
];

/// A latency distribution summarised in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Responses recorded.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Minimum.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 75th percentile.
    pub p75: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    /// 99.99th percentile.
    #[serde(rename = "p99.99")]
    pub p99_99: f64,
    /// Maximum.
    pub max: f64,
    /// `[percentile (0..=100), milliseconds]` pairs, denser towards 100 %.
    pub spectrum: Vec<[f64; 2]>,
}

impl Latency {
    /// Summarises a nanosecond histogram.
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        let ms = |ns: u64| ns as f64 / 1e6;
        let at = |p: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_percentile(p))
            }
        };
        Latency {
            count: h.len(),
            mean: if h.is_empty() { 0.0 } else { h.mean() / 1e6 },
            stdev: if h.is_empty() { 0.0 } else { h.stdev() / 1e6 },
            min: if h.is_empty() { 0.0 } else { ms(h.min()) },
            p50: at(50.0),
            p75: at(75.0),
            p90: at(90.0),
            p99: at(99.0),
            p99_9: at(99.9),
            p99_99: at(99.99),
            max: if h.is_empty() { 0.0 } else { ms(h.max()) },
            spectrum: hgrm::spectrum(h)
                .into_iter()
                .map(|p| [p.quantile * 100.0, ms(p.value_ns)])
                .collect(),
        }
    }
}

/// Both latency views of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// From the intended send time (coordinated omission corrected).
    pub corrected: Latency,
    /// From the actual send time.
    pub uncorrected: Latency,
}

/// The JSON report of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always "dao-loadgen".
    pub tool: String,
    /// Version of the tool.
    pub version: String,
    /// Run label (for plots).
    pub label: String,
    /// "open-loop" (with -R) or "closed-loop".
    pub mode: String,
    /// How sends were paced: "timerfd", "1ms-timer" or "none" (closed loop).
    pub timer: String,
    /// "io_uring" or "epoll".
    pub io: String,
    /// The configuration used.
    pub config: ConfigSummary,
    /// Measured seconds.
    pub duration_s: f64,
    /// Completed responses in the measured window.
    pub requests: u64,
    /// Completed responses per second.
    pub throughput_rps: f64,
    /// Response bytes read.
    pub bytes_read: u64,
    /// Response bytes per second.
    pub transfer_bytes_per_s: f64,
    /// Connections opened (warm-up included).
    pub connects: u64,
    /// Responses by status class.
    pub status: StatusCounts,
    /// Failed requests by kind.
    pub errors: ErrorCounts,
    /// Latency in milliseconds.
    pub latency_ms: Latencies,
}

impl Report {
    /// Builds the report of a finished run.
    pub fn new(r: &RunResult, label: Option<&str>) -> Report {
        let secs = r.measured.as_secs_f64();
        let c = &r.plan.summary;
        let default_label = match c.rate {
            Some(rate) => format!("R={rate} c={} t={}", c.connections, c.threads),
            None => format!("closed c={} t={}", c.connections, c.threads),
        };
        Report {
            tool: "dao-loadgen".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            label: label.map_or(default_label, str::to_string),
            mode: if c.rate.is_some() {
                "open-loop"
            } else {
                "closed-loop"
            }
            .into(),
            timer: match (c.rate.is_some(), r.precise_timer) {
                (false, _) => "none",
                (true, true) => "timerfd",
                (true, false) => "1ms-timer",
            }
            .into(),
            io: if r.uring { "io_uring" } else { "epoll" }.into(),
            config: c.clone(),
            duration_s: secs,
            requests: r.stats.requests,
            throughput_rps: r.stats.requests as f64 / secs,
            bytes_read: r.stats.bytes_read,
            transfer_bytes_per_s: r.stats.bytes_read as f64 / secs,
            connects: r.stats.connects,
            status: r.stats.status,
            errors: r.stats.errors,
            latency_ms: Latencies {
                corrected: Latency::from_histogram(&r.stats.corrected),
                uncorrected: Latency::from_histogram(&r.stats.uncorrected),
            },
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Reads a report written by `--json`.
    pub fn from_json(text: &str) -> Result<Report, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

/// The wrk2-like text summary; `detailed` adds the percentile spectrum.
pub fn text(r: &RunResult, rep: &Report, detailed: bool) -> String {
    let c = &rep.config;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Running {} test @ {}",
        secs(c.duration_s),
        c.urls.join(", ")
    );
    let threads = if c.threads == 1 { "thread" } else { "threads" };
    let _ = match c.rate {
        Some(rate) => writeln!(
            s,
            "  {} {threads} and {} connections, open loop at {rate} req/s ({} pacer, {})",
            c.threads, c.connections, rep.timer, rep.io
        ),
        None => writeln!(
            s,
            "  {} {threads} and {} connections, closed loop ({})",
            c.threads, c.connections, rep.io
        ),
    };
    if c.warmup_s > 0.0 {
        let _ = writeln!(s, "  after {} of warm-up (excluded)", secs(c.warmup_s));
    }
    let (lc, lu) = (&rep.latency_ms.corrected, &rep.latency_ms.uncorrected);
    let _ = writeln!(
        s,
        "  {:<13}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "Latency", "Avg", "Stdev", "p50", "p90", "p99", "p99.9", "Max"
    );
    for (name, l) in [("corrected", lc), ("uncorrected", lu)] {
        let _ = writeln!(
            s,
            "    {name:<11}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            ms(l.mean),
            ms(l.stdev),
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p99_9),
            ms(l.max)
        );
    }
    if detailed {
        detailed_spectrum(&mut s, r);
    }
    let _ = writeln!(
        s,
        "  {} requests in {}, {} read",
        rep.requests,
        secs(rep.duration_s),
        bytes(rep.bytes_read as f64)
    );
    let st = &rep.status;
    let _ = writeln!(
        s,
        "  Status: 2xx {}, 3xx {}, 4xx {}, 5xx {}{}",
        st.s2xx,
        st.s3xx,
        st.s4xx,
        st.s5xx,
        if st.s1xx + st.other > 0 {
            format!(", other {}", st.s1xx + st.other)
        } else {
            String::new()
        }
    );
    if st.non_2xx_3xx() > 0 {
        let _ = writeln!(s, "  Non-2xx or 3xx responses: {}", st.non_2xx_3xx());
    }
    let e = &rep.errors;
    if e.total() > 0 {
        let _ = writeln!(
            s,
            "  Socket errors: connect {}, read {}, write {}, timeout {}, protocol {}",
            e.connect, e.read, e.write, e.timeout, e.protocol
        );
    }
    let _ = writeln!(s, "Requests/sec: {:>10.2}", rep.throughput_rps);
    let _ = writeln!(s, "Transfer/sec: {:>10}", bytes(rep.transfer_bytes_per_s));
    if let Some(rate) = c.rate {
        if rep.throughput_rps < rate * 0.98 && rep.requests > 0 {
            let _ = writeln!(
                s,
                "  note: achieved {:.1} % of the target rate: the target (or this generator) \
                 is saturated; corrected latencies include the queueing",
                100.0 * rep.throughput_rps / rate
            );
        }
    }
    s
}

fn detailed_spectrum(s: &mut String, r: &RunResult) {
    let (hc, hu) = (&r.stats.corrected, &r.stats.uncorrected);
    let _ = writeln!(
        s,
        "  Latency Distribution (HdrHistogram - Recorded Latency)"
    );
    let _ = writeln!(s, "  {:>9} {:>11} {:>12}", "", "corrected", "uncorrected");
    for (p, name) in LEVELS {
        let v = |h: &Histogram<u64>| {
            if h.is_empty() {
                "-".to_string()
            } else {
                ms(h.value_at_percentile(p) as f64 / 1e6)
            }
        };
        let _ = writeln!(s, "  {name:>9} {:>11} {:>12}", v(hc), v(hu));
    }
    let _ = writeln!(
        s,
        "\n  Detailed Percentile spectrum (ms; uncorrected at the same levels):"
    );
    let _ = writeln!(
        s,
        "  {:>12} {:>12} {:>14} {:>10} {:>14}",
        "Value", "Uncorrected", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for p in hgrm::spectrum(hc) {
        let un = hu.value_at_quantile(p.quantile) as f64 / 1e6;
        let inv = if p.quantile < 1.0 {
            format!("{:14.2}", 1.0 / (1.0 - p.quantile))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  {:12.3} {un:12.3} {:14.12} {:10} {inv}",
            p.value_ns as f64 / 1e6,
            p.quantile,
            p.total_count
        );
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        hc.mean() / 1e6,
        hc.stdev() / 1e6
    );
    let _ = writeln!(
        s,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        hc.max() as f64 / 1e6,
        hc.len()
    );
    let _ = writeln!(
        s,
        "----------------------------------------------------------"
    );
}

/// Milliseconds in wrk's style: 612.00us, 1.23ms, 2.50s.
pub fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{:.2}us", v * 1000.0)
    } else if v < 1000.0 {
        format!("{v:.2}ms")
    } else {
        format!("{:.2}s", v / 1000.0)
    }
}

fn secs(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}s")
    } else {
        format!("{v:.2}s")
    }
}

fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = v;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2}{}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(ms(0.6123), "612.30us");
        assert_eq!(ms(12.5), "12.50ms");
        assert_eq!(ms(2500.0), "2.50s");
        assert_eq!(bytes(1536.0), "1.50KB");
        assert_eq!(secs(10.0), "10s");
    }

    #[test]
    fn latency_summary_of_a_histogram() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for i in 1..=100u64 {
            h.record(i * 1_000_000).unwrap(); // 1..100 ms
        }
        let l = Latency::from_histogram(&h);
        assert_eq!(l.count, 100);
        assert!((l.p50 - 50.0).abs() < 0.1, "{}", l.p50);
        assert!((l.p99 - 99.0).abs() < 0.1);
        assert!((l.max - 100.0).abs() < 0.1);
        assert_eq!(l.spectrum.last().unwrap()[0], 100.0);
        let empty = Latency::from_histogram(&Histogram::<u64>::new(3).unwrap());
        assert_eq!(empty.count, 0);
        assert!(empty.spectrum.is_empty());
    }
}
