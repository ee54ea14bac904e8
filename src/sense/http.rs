//! The telemetry listener (`[telemetry] prometheus_bind`): `GET /metrics`
//! (Prometheus text) and `GET /health` (the fleet's JSON shape), served
//! from the latest published table on a thread of its own, away from the
//! workers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};

use super::control::Published;
use super::json::push_str as json_str;
use super::prometheus;
use super::table::ResonanceTable;
use crate::gate::io::{read_more, write_all};
use crate::proto::h1::{parse_request, RequestHead};

/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client gets to send its request, and to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The health verdict and its JSON body.
pub fn health(t: &ResonanceTable) -> (bool, String) {
    // A route is usable while one of its upstreams is not down; a name
    // used in several routes is down when any of them is.
    let mut routes: BTreeMap<&str, bool> = BTreeMap::new();
    let mut deps: BTreeMap<&str, bool> = BTreeMap::new();
    for u in t.serving() {
        *routes.entry(&u.route).or_insert(false) |= !u.is_down();
        *deps.entry(&u.upstream).or_insert(true) &= !u.is_down();
    }
    let healthy = routes.values().all(|&usable| usable);
    let mut body = String::with_capacity(128 + 32 * deps.len());
    body.push_str("{\"status\":\"");
    body.push_str(if healthy { "healthy" } else { "degraded" });
    body.push_str("\",\"service\":\"dao\",\"version\":\"");
    body.push_str(env!("CARGO_PKG_VERSION"));
    body.push_str("\",\"uptime\":");
    body.push_str(&t.uptime.as_secs().to_string());
    body.push_str(",\"dependencies\":{");
    for (i, (name, up)) in deps.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        json_str(&mut body, name);
        body.push_str(if *up { ":\"up\"" } else { ":\"down\"" });
    }
    body.push_str("}}");
    (healthy, body)
}

/// Serves the telemetry listener until `stop` is set.
pub fn serve(listener: std::net::TcpListener, table: Published, stop: Arc<AtomicBool>) {
    let runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build();
    let mut runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the telemetry listener's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot adopt the telemetry listener");
                return;
            }
        };
        let accept = std::pin::pin!(async {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        monoio::spawn(answer(stream, table.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "telemetry accept failed");
                        monoio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        let watch = std::pin::pin!(async {
            while !stop.load(Ordering::Relaxed) {
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        futures_util::future::select(accept, watch).await;
    });
}

/// Answers one request, then closes.
async fn answer(mut stream: TcpStream, table: Published) {
    let mut buf = Vec::with_capacity(1024);
    let mut head = RequestHead::default();
    let parsed = loop {
        match parse_request(&buf, &mut head) {
            Ok(Some(())) => break Ok(()),
            Ok(None) if buf.len() >= MAX_HEAD => break Err(431),
            Ok(None) => {}
            Err(e) => break Err(e.status()),
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        if read_more(&mut stream, &mut buf, IO_TIMEOUT).await.is_err() {
            return;
        }
    };
    let (status, ctype, body, extra) = match parsed {
        Err(status) => (status, "text/plain", "bad request\n".to_string(), ""),
        Ok(()) => {
            let method = head.method.get(&buf);
            let get = method == b"GET" || method == b"HEAD";
            match head.path.get(&buf) {
                b"/metrics" | b"/health" if !get => (
                    405,
                    "text/plain",
                    "method not allowed\n".to_string(),
                    "Allow: GET, HEAD\r\n",
                ),
                b"/metrics" => {
                    let mut text = String::with_capacity(16 * 1024);
                    prometheus::render(&table.load(), &mut text);
                    (200, prometheus::CONTENT_TYPE, text, "")
                }
                b"/health" => {
                    let (healthy, json) = health(&table.load());
                    (
                        if healthy { 200 } else { 503 },
                        "application/json",
                        json,
                        "",
                    )
                }
                _ => (
                    404,
                    "text/plain",
                    "not found: try /metrics or /health\n".to_string(),
                    "",
                ),
            }
        }
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let head_only = parsed.is_ok() && head.method.get(&buf) == b"HEAD";
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    let _ = write_all(&mut stream, &mut out, IO_TIMEOUT).await;
}
