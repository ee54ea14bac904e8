//! The `dao` binary: check, demo, running a config file, graceful stop.

// Tests time real sockets; the clock rule is for the data path.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn dao() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dao"))
}

/// Starts the binary and reads the address from its first line.
fn spawn(args: &[&str]) -> (Child, SocketAddr) {
    let (child, addrs) = spawn_reading(args, 1);
    (child, addrs[0])
}

/// Starts the binary and reads an address from each of its first `lines`
/// lines of output.
fn spawn_reading(args: &[&str], lines: usize) -> (Child, Vec<SocketAddr>) {
    let mut child = dao()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut addrs = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .parse()
            .unwrap();
        addrs.push(addr);
    }
    // Keep draining stdout so the child never blocks on it.
    std::thread::spawn(move || for _ in out.lines() {});
    (child, addrs)
}

/// Writes `text` to a config file in a fresh directory and runs `dao` on it.
fn spawn_with_config(tag: &str, text: &str) -> (std::path::PathBuf, Child, SocketAddr) {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dao.toml");
    std::fs::write(&path, text).unwrap();
    let (child, addr) = spawn(&["--config", path.to_str().unwrap()]);
    (dir, child, addr)
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn check_reports_field_errors_and_summaries() {
    let dir = std::env::temp_dir().join(format!("dao-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nworkers = 0\n[[routes.rule]]\nname = \"r\"\npolicy = \"fastest\"\n",
    )
    .unwrap();
    let out = dao()
        .args(["check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.workers: 0 is out of range"), "{err}");
    assert!(
        err.contains("routes.rule[0].policy: unknown policy \"fastest\""),
        "{err}"
    );

    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/dao.toml");
    let out = dao().args(["check", "--config", good]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 route(s)"), "{text}");
    assert!(
        text.contains("health check: GET /healthz every 5s (timeout 1s, up after 2, down after 3, status 200-299)"),
        "{text}"
    );

    // Running with a bad config refuses to start.
    let out = dao()
        .args(["--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn demo_serves_on_its_own() {
    let (mut child, addrs) = spawn_reading(&["demo", "--bind", "127.0.0.1:0", "--workers", "1"], 2);
    let (addr, telemetry) = (addrs[0], addrs[1]);
    let mut c = Client::connect(addr);
    let r = c.get("/a/hello");
    assert_eq!(r.status, 200);
    assert!(
        r.text().starts_with("demo-a answered: GET /a/hello"),
        "{}",
        r.text()
    );
    let r = c.get("/stream");
    assert!(r.text().contains("chunk 5 of 5"));
    // The demo's Sense listener counts both requests once they are merged.
    let counts = |m: &str| {
        let mut v: Vec<String> = m
            .lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .map(|l| l.split("{route=").nth(1).unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let mut seen = String::new();
    let started = Instant::now();
    while counts(&seen).len() < 2 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        seen = Client::connect(telemetry).get("/metrics").text();
    }
    let counts = counts(&seen);
    assert_eq!(counts.len(), 2, "{seen}");
    assert!(
        counts[0].starts_with("\"everything\",upstream=\"demo-"),
        "{seen}"
    );
    assert!(
        counts[0].ends_with(",method=\"GET\",status=\"200\"} 1"),
        "{seen}"
    );
    assert_eq!(
        counts[1],
        "\"only-a\",upstream=\"demo-a\",method=\"GET\",status=\"200\"} 1"
    );
    assert_eq!(Client::connect(telemetry).get("/health").status, 200);
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let backend = Backend::start(|_, s| {
        std::thread::sleep(Duration::from_millis(700));
        respond(s, 200, &[], b"finished");
        After::KeepAlive
    });
    let (dir, mut child, addr) = spawn_with_config(
        "dao-term",
        &config(2, "shutdown_timeout = \"5s\"", &[backend.addr]),
    );
    let mut idle = Client::connect(addr);
    assert_eq!(idle.get("/warm").status, 200);
    let mut c = Client::connect(addr);
    c.send(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));
    sigterm(&child);
    let r = c.read(false);
    assert_eq!(r.text(), "finished");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    // Stopped: the idle connection is closed and nothing accepts.
    assert!(idle.is_closed());
    assert!(std::net::TcpStream::connect(addr).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shutdown_timeout_bounds_the_wait() {
    let backend = Backend::start(|_, s| {
        std::thread::sleep(Duration::from_secs(5));
        respond(s, 200, &[], b"too late");
        After::KeepAlive
    });
    let (dir, mut child, addr) = spawn_with_config(
        "dao-term2",
        &config(1, "shutdown_timeout = \"300ms\"", &[backend.addr]),
    );
    let mut c = Client::connect(addr);
    c.send(b"GET /stuck HTTP/1.1\r\nHost: h\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(4)), Some(0));
    assert!(started.elapsed() < Duration::from_secs(3));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SIGHUP reads the config file again (here unchanged: the reload says so
/// in the admin API's status); an edited file is applied.
#[test]
fn sighup_reads_the_config_again() {
    let a = Backend::text("a");
    let b = Backend::text("b");
    let token = "cli-sighup-token-0123456";
    let text = |backend: SocketAddr| {
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n\
             [admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{token}\"\n\
             [[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"u\"\nurl = \"http://{backend}\"\n"
        )
    };
    let dir = std::env::temp_dir().join(format!("dao-cli-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dao.toml");
    std::fs::write(&path, text(a.addr)).unwrap();
    let (mut child, addrs) = spawn_reading(&["--config", path.to_str().unwrap()], 2);
    let (addr, admin) = (addrs[0], addrs[1]);
    let status = || -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_daoctl"))
            .args([
                "--admin",
                &format!("http://{admin}"),
                "--token",
                token,
                "--json",
                "status",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(Client::connect(addr).get("/").text(), "a");
    let hup = |child: &Child| {
        let s = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(s.success());
    };
    hup(&child);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = status();
        if s["last_reload"]["source"] == "signal" {
            assert_eq!(s["last_reload"]["result"], "unchanged", "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP not seen: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&path, text(b.addr)).unwrap();
    hup(&child);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Client::connect(addr).get("/").text() != "b" {
        assert!(Instant::now() < deadline, "the edited file was not applied");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status()["last_reload"]["result"], "applied");
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
