//! The exporter against the real thing: `promtool check metrics` lints the
//! exposition, and a Prometheus server scrapes DAO and agrees on the
//! counts. `.ci/run` installs Prometheus and sets `DAO_REQUIRE_TOOLS=1`,
//! which turns a missing binary into a failure; elsewhere it is skipped
//! with a message.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// GETs `path`, reading the body by its Content-Length: not to EOF, which
/// may come late when a child process spawned by another test meanwhile
/// inherited the server's end of the connection (monoio's io_uring accept
/// does not set close-on-exec).
fn http_get(addr: SocketAddr, path: &str) -> String {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        &s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = std::io::BufReader::new(s);
    let mut length = None;
    loop {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = vec![0; length.expect("a Content-Length")];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// DAO with telemetry after `n` requests; returns it and its addresses.
fn dao_with_traffic(n: usize) -> (Server, SocketAddr, Backend) {
    let backend = Backend::text("ok");
    let extra = "[telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 50\n";
    let dao = start(&config(2, extra, &[backend.addr]));
    let mut c = Client::connect(dao.local_addr());
    for _ in 0..n {
        assert_eq!(c.get("/").status, 200);
    }
    let t = dao.telemetry_addr().unwrap();
    // Wait for the merge.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !http_get(t, "/metrics").contains(&format!("status=\"200\"}} {n}\n")) {
        assert!(Instant::now() < deadline, "never merged");
        std::thread::sleep(Duration::from_millis(20));
    }
    (dao, t, backend)
}

#[test]
fn promtool_accepts_the_exposition() {
    if !tool("promtool") {
        return;
    }
    let (dao, t, _b) = dao_with_traffic(5);
    let text = http_get(t, "/metrics");
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dao.shutdown();
}

/// Kills the Prometheus server however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_dao() {
    if !tool("prometheus") {
        return;
    }
    let (dao, t, _b) = dao_with_traffic(9);
    let dir = std::env::temp_dir().join(format!("dao-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dao\n    \
             static_configs:\n      - targets: ['{t}']\n"
        ),
    )
    .unwrap();
    // A free port for Prometheus' own API, chosen now (not a fixed one).
    let web = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", conf.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let query = "/api/v1/query?query=sum(http_requests_total)";
    loop {
        if let Ok(s) = TcpStream::connect(web) {
            drop(s);
            let targets = http_get(web, "/api/v1/targets");
            assert!(
                !targets.contains("\"health\":\"down\""),
                "scrape failed: {targets}"
            );
            let up = targets.contains("\"health\":\"up\"");
            if up && targets.contains("\"lastError\":\"\"") {
                let result = http_get(web, query);
                if result.contains("\"value\":[") {
                    assert!(result.contains(",\"9\"]"), "{result}");
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "Prometheus never scraped DAO");
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = http_get(
        web,
        "/api/v1/query?query=http_request_duration_seconds_count",
    );
    assert!(
        r.contains("\"route\":\"all\"") && r.contains(",\"9\"]"),
        "{r}"
    );
    drop(_running);
    dao.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
