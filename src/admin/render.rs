//! What `daoctl` prints: the admin API's JSON as aligned tables and
//! `key: value` lines. A field missing from the JSON prints as `-`.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

/// How a column is aligned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}
use Align::{Left, Right};

/// Lays out rows under a header, columns two spaces apart.
fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, ((_, align), cell)) in columns.iter().zip(row).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i] - cell.chars().count();
            if *align == Right {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key: value` lines with the values aligned.
fn pairs(items: &[(&str, String)]) -> String {
    let width = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in items {
        out.push_str(&format!("{:<width$} {v}\n", format!("{k}:")));
    }
    out
}

/// A string or number as text; `-` when absent or null.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => (if *b { "yes" } else { "no" }).to_string(),
        other => other.to_string(),
    }
}

/// Milliseconds, with fewer decimals as they grow.
fn ms(v: &Value) -> String {
    match v.as_f64() {
        None => "-".to_string(),
        Some(x) if x < 10.0 => format!("{x:.2}ms"),
        Some(x) if x < 100.0 => format!("{x:.1}ms"),
        Some(x) => format!("{x:.0}ms"),
    }
}

/// A fraction as a percentage.
fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or("-".to_string(), |x| format!("{:.2}%", x * 100.0))
}

fn fixed(v: &Value, decimals: usize) -> String {
    v.as_f64()
        .map_or("-".to_string(), |x| format!("{x:.decimals$}"))
}

/// Unix seconds as an RFC 3339 UTC time.
fn time(v: &Value) -> String {
    v.as_u64().map_or("-".to_string(), |s| {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string()
    })
}

/// The first 12 hex digits of a hash.
fn short_hash(v: &Value) -> String {
    v.as_str()
        .map_or("-".to_string(), |h| h.chars().take(12).collect())
}

/// The items of `v[key]` (empty when missing).
fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `GET /api/v1/status` as `key: value` lines.
pub fn status(v: &Value) -> String {
    let listen: Vec<String> = list(v, "listen").iter().map(text).collect();
    let last_reload = match &v["last_reload"] {
        Value::Null => "none".to_string(),
        r => {
            let mut s = format!(
                "epoch {} {} ({}, {})",
                text(&r["epoch"]),
                text(&r["result"]),
                text(&r["source"]),
                time(&r["time_unix"])
            );
            if let Some(m) = r["message"].as_str().filter(|m| !m.is_empty()) {
                s.push_str(": ");
                s.push_str(m);
            }
            s
        }
    };
    let guard = match &v["guard"] {
        Value::Null => "none".to_string(),
        g => {
            let mut s = format!("epoch {} {}", text(&g["epoch"]), text(&g["state"]));
            if let Some(m) = g["message"].as_str().filter(|m| !m.is_empty()) {
                s.push_str(": ");
                s.push_str(m);
            }
            s
        }
    };
    let uptime = v["uptime_s"].as_u64().map_or("-".to_string(), |s| {
        humantime::format_duration(Duration::from_secs(s)).to_string()
    });
    let tls = &v["tls"];
    let mut lines = vec![
        ("version", text(&v["version"])),
        ("uptime", uptime),
        ("config epoch", text(&v["config_epoch"])),
        ("table epoch", text(&v["table_epoch"])),
        ("workers", text(&v["workers"])),
        ("draining", text(&v["draining"])),
        (
            "listen",
            if listen.is_empty() {
                "-".to_string()
            } else {
                listen.join(", ")
            },
        ),
        ("last reload", last_reload),
        ("guard", guard),
    ];
    // Only once a TLS listener has seen a connection.
    if !tls.is_null() {
        lines.push((
            "tls",
            format!(
                "{} handshakes ({} resumed, {} with a client certificate), {} failed",
                text(&tls["handshakes"]),
                text(&tls["resumed"]),
                text(&tls["client_certificates"]),
                text(&tls["failures"]),
            ),
        ));
    }
    pairs(&lines)
}

/// `GET /api/v1/routes` as a table.
pub fn routes(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(v, "routes")
        .iter()
        .map(|r| {
            let ups: Vec<String> = list(r, "upstreams").iter().map(text).collect();
            vec![
                text(&r["name"]),
                text(&r["host"]),
                text(&r["path_prefix"]),
                text(&r["policy"]),
                ups.join(","),
            ]
        })
        .collect();
    table(
        &[
            ("NAME", Left),
            ("HOST", Left),
            ("PATH", Left),
            ("POLICY", Left),
            ("UPSTREAMS", Left),
        ],
        &rows,
    )
}

/// `GET /api/v1/upstreams` as a table.
pub fn upstreams(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(v, "upstreams")
        .iter()
        .map(|u| {
            vec![
                text(&u["route"]),
                text(&u["upstream"]),
                text(&u["addr"]),
                text(&u["weight"]),
                text(&u["health"]),
                text(&u["in_flight"]),
                fixed(&u["rps"], 1),
                ms(&u["p50_ms"]),
                ms(&u["p95_ms"]),
                ms(&u["p99_ms"]),
                percent(&u["error_rate"]),
                fixed(&u["load_resonance"], 2),
            ]
        })
        .collect();
    table(
        &[
            ("ROUTE", Left),
            ("UPSTREAM", Left),
            ("ADDR", Left),
            ("WEIGHT", Right),
            ("HEALTH", Left),
            ("IN-FLIGHT", Right),
            ("RPS", Right),
            ("P50", Right),
            ("P95", Right),
            ("P99", Right),
            ("ERRORS", Right),
            ("LOAD", Right),
        ],
        &rows,
    )
}

/// A guard's thresholds in words.
fn guard(g: &Value) -> String {
    let window = g["window_ms"].as_u64().map_or("-".to_string(), |w| {
        humantime::format_duration(Duration::from_millis(w)).to_string()
    });
    let mut limits = Vec::new();
    if !g["max_5xx_rate"].is_null() {
        limits.push(format!("5xx rate over {}", percent(&g["max_5xx_rate"])));
    }
    if !g["max_p99_ms"].is_null() {
        limits.push(format!("p99 over {}", ms(&g["max_p99_ms"])));
    }
    let mut s = format!("for {window}, rolls back on {}", limits.join(" or "));
    if let Some(n) = g["min_requests"].as_u64() {
        s.push_str(&format!(" (once {n} requests are seen)"));
    }
    s
}

/// A reload's or rollback's answer in one or two lines.
pub fn change(v: &Value) -> String {
    if v["changed"] == Value::Bool(false) {
        return format!(
            "no change: the configuration is the one of epoch {}\n",
            text(&v["epoch"])
        );
    }
    let mut out = format!(
        "applied epoch {} (source {}, sha256 {})\n",
        text(&v["epoch"]),
        text(&v["source"]),
        short_hash(&v["sha256"])
    );
    if !v["guard"].is_null() {
        out.push_str(&format!("guard: {}\n", guard(&v["guard"])));
    }
    out
}

/// `GET /api/v1/snapshots` as a table, the current epoch marked `*`.
pub fn snapshots(v: &Value) -> String {
    let current = v["current"].as_u64();
    let rows: Vec<Vec<String>> = list(v, "snapshots")
        .iter()
        .map(|s| {
            let mark = if s["epoch"].as_u64().is_some() && s["epoch"].as_u64() == current {
                "*"
            } else {
                ""
            };
            vec![
                mark.to_string(),
                text(&s["epoch"]),
                time(&s["time_unix"]),
                text(&s["source"]),
                short_hash(&s["sha256"]),
                text(&s["note"]),
            ]
        })
        .collect();
    table(
        &[
            ("", Left),
            ("EPOCH", Right),
            ("TIME", Left),
            ("SOURCE", Left),
            ("SHA256", Left),
            ("NOTE", Left),
        ],
        &rows,
    )
}

/// `GET /api/v1/snapshots/{epoch}`: its diff to the current configuration.
pub fn diff(v: &Value) -> String {
    let d = v["diff"].as_str().unwrap_or_default();
    if d.is_empty() || d.ends_with('\n') {
        d.to_string()
    } else {
        format!("{d}\n")
    }
}

/// `GET /api/v1/profiles` as a table: a `good` row and, when known, a
/// `bad` row per upstream and intent.
pub fn profiles(v: &Value) -> String {
    let mut rows = Vec::new();
    for p in list(v, "profiles") {
        for state in ["good", "bad"] {
            let f = &p[state];
            if f.is_null() {
                continue;
            }
            rows.push(vec![
                text(&p["upstream"]),
                text(&p["addr"]),
                text(&p["intent"]),
                state.to_string(),
                ms(&f["p50_ms"]),
                ms(&f["p95_ms"]),
                ms(&f["p99_ms"]),
                percent(&f["error_rate"]),
                fixed(&f["rps"], 1),
                text(&f["intervals"]),
                time(&p["updated_unix"]),
            ]);
        }
    }
    table(
        &[
            ("UPSTREAM", Left),
            ("ADDR", Left),
            ("INTENT", Left),
            ("STATE", Left),
            ("P50", Right),
            ("P95", Right),
            ("P99", Right),
            ("ERRORS", Right),
            ("RPS", Right),
            ("INTERVALS", Right),
            ("UPDATED", Left),
        ],
        &rows,
    )
}

/// `POST /api/v1/drain`.
pub fn drain(v: &Value) -> String {
    if v["draining"] == Value::Bool(true) {
        "draining: new connections are refused; in-flight requests are finishing\n".to_string()
    } else {
        "not draining\n".to_string()
    }
}

#[cfg(test)]
mod tests;
