//! End-to-end: the dao-loadgen binary against loopback test backends.

mod common;

use std::time::Duration;

use common::{dead_port, f, loadgen, loadgen_rejects, u, Backend, Reply};

#[test]
fn open_loop_sends_exactly_the_timetable() {
    let b = Backend::start(|_| Reply::OK);
    // 2 connections x 10 req/s for 1 s: intended times 0, 50, 100 … 950 ms
    // (the last one 50 ms before the end, so a busy machine still sends it).
    let (r, stdout) = loadgen(&["-c", "2", "-R", "20", "-d", "1s", &b.url("/")]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b.requests(), 20, "backend saw {} requests", b.requests());
    let done = u(&r, &["requests"]);
    assert!((19..=20).contains(&done), "report counted {done}");
    assert_eq!(u(&r, &["status", "2xx"]), done);
    assert_eq!(u(&r, &["errors", "connect"]), 0);
    assert_eq!(u(&r, &["connects"]), 2);
    assert_eq!(b.connections(), 2);
    assert_eq!(r["mode"], "open-loop");
    assert!((f(&r, &["throughput_rps"]) - 20.0).abs() < 1.5);
    assert!(stdout.contains("Requests/sec"), "{stdout}");
}

#[test]
fn warmup_is_sent_but_not_counted() {
    let b = Backend::start(|_| Reply::OK);
    // 20 req/s: 10 requests in the warm-up, 10 measured (the last at 950 ms).
    let (r, _) = loadgen(&[
        "-c",
        "1",
        "-R",
        "20",
        "--warmup",
        "500ms",
        "-d",
        "500ms",
        &b.url("/"),
    ]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b.requests(), 20);
    let done = u(&r, &["requests"]);
    assert!((9..=10).contains(&done), "report counted {done}");
}

#[test]
fn closed_loop_counts_match_the_backend() {
    let b = Backend::start(|_| Reply::OK);
    let (r, _) = loadgen(&["-c", "4", "-t", "2", "-d", "1s", &b.url("/")]);
    std::thread::sleep(Duration::from_millis(100));
    let done = u(&r, &["requests"]);
    assert!(done > 100, "only {done} requests in closed loop");
    // Requests still in flight when the run ends are not counted.
    let seen = b.requests();
    assert!(
        seen >= done && seen <= done + 4,
        "backend {seen}, report {done}"
    );
    assert_eq!(r["mode"], "closed-loop");
    assert_eq!(
        u(&r, &["errors", "read"]) + u(&r, &["errors", "timeout"]),
        0
    );
}

#[test]
fn corrected_latency_shows_a_stall_that_uncorrected_hides() {
    // One connection at 500 req/s; request 200 stalls the server for 300 ms.
    // The 150 requests due during the stall queue behind it: corrected
    // latency charges them their wait, uncorrected sees one slow request.
    let b = Backend::start(|n| Reply {
        delay: if n == 200 {
            Duration::from_millis(300)
        } else {
            Duration::ZERO
        },
        ..Reply::OK
    });
    let (r, _) = loadgen(&["-c", "1", "-R", "500", "-d", "2s", &b.url("/")]);
    let c99 = f(&r, &["latency_ms", "corrected", "p99"]);
    let u99 = f(&r, &["latency_ms", "uncorrected", "p99"]);
    let c90 = f(&r, &["latency_ms", "corrected", "p90"]);
    let umax = f(&r, &["latency_ms", "uncorrected", "max"]);
    assert!(c99 > 200.0, "corrected p99 {c99} ms should show the stall");
    assert!(c90 > 50.0, "corrected p90 {c90} ms should show the queue");
    assert!(u99 < 50.0, "uncorrected p99 {u99} ms should hide it");
    assert!(
        umax >= 290.0,
        "uncorrected max {umax} ms is the one slow request"
    );
    assert!(c99 > 4.0 * u99);
}

#[test]
fn refused_connections_are_connect_errors() {
    let url = format!("http://127.0.0.1:{}/", dead_port());
    let (r, stdout) = loadgen(&["-c", "1", "-R", "100", "-d", "500ms", &url]);
    assert_eq!(u(&r, &["requests"]), 0);
    let connect = u(&r, &["errors", "connect"]);
    // One per scheduled request (50), give or take the edges of the window.
    assert!((45..=51).contains(&connect), "connect errors {connect}");
    assert_eq!(
        u(&r, &["errors", "read"]) + u(&r, &["errors", "timeout"]),
        0
    );
    assert!(stdout.contains("Socket errors: connect"), "{stdout}");
}

#[test]
fn server_errors_are_counted_as_5xx() {
    let b = Backend::start(|n| Reply {
        status: if n % 2 == 0 { 500 } else { 404 },
        ..Reply::OK
    });
    let (r, stdout) = loadgen(&["-c", "2", "-R", "200", "-d", "500ms", &b.url("/")]);
    let done = u(&r, &["requests"]);
    assert!(done >= 95);
    assert_eq!(u(&r, &["status", "5xx"]) + u(&r, &["status", "4xx"]), done);
    assert!(u(&r, &["status", "5xx"]) >= 45);
    assert_eq!(u(&r, &["status", "2xx"]), 0);
    assert!(stdout.contains("Non-2xx or 3xx responses"), "{stdout}");
}

#[test]
fn slow_responses_are_timeouts() {
    let b = Backend::start(|n| Reply {
        delay: if n < 2 {
            Duration::from_millis(600)
        } else {
            Duration::ZERO
        },
        ..Reply::OK
    });
    let (r, _) = loadgen(&[
        "-c",
        "2",
        "-R",
        "20",
        "-d",
        "1s",
        "--timeout",
        "200ms",
        &b.url("/"),
    ]);
    assert_eq!(u(&r, &["errors", "timeout"]), 2);
    assert!(u(&r, &["requests"]) >= 15);
    // The timed-out connections were replaced.
    assert!(u(&r, &["connects"]) >= 4);
}

#[test]
fn pipelining_keeps_counts_exact() {
    let b = Backend::start(|_| Reply::OK);
    // 2 connections at 20 req/s each: the last requests are due at 950 and
    // 975 ms, so a busy machine still sends them before the end.
    let (r, _) = loadgen(&[
        "-c",
        "2",
        "--pipeline",
        "8",
        "-R",
        "40",
        "-d",
        "1s",
        &b.url("/"),
    ]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b.requests(), 40);
    assert!(u(&r, &["requests"]) >= 39, "{r}");
    assert_eq!(
        u(&r, &["errors", "protocol"]) + u(&r, &["errors", "read"]),
        0
    );
    // Closed loop with a full pipe.
    let b = Backend::start(|_| Reply::OK);
    let (r, _) = loadgen(&["-c", "2", "--pipeline", "16", "-d", "500ms", &b.url("/")]);
    std::thread::sleep(Duration::from_millis(100));
    let done = u(&r, &["requests"]);
    assert!(done > 100);
    let seen = b.requests();
    assert!(
        seen >= done && seen <= done + 32,
        "backend {seen}, report {done}"
    );
}

#[test]
fn no_keepalive_opens_a_connection_per_request() {
    let b = Backend::start(|_| Reply::OK);
    let (r, _) = loadgen(&[
        "-c",
        "2",
        "-R",
        "20",
        "-d",
        "1s",
        "--no-keepalive",
        &b.url("/"),
    ]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b.requests(), 20);
    assert_eq!(b.connections(), 20);
    assert!(u(&r, &["requests"]) >= 19);
    assert_eq!(u(&r, &["errors", "read"]), 0);
}

#[test]
fn server_close_chunked_and_head_are_handled() {
    // Every 5th response closes the connection; all are chunked.
    let b = Backend::start(|n| Reply {
        chunked: true,
        close: n % 5 == 4,
        ..Reply::OK
    });
    let (r, _) = loadgen(&["-c", "1", "-R", "100", "-d", "500ms", &b.url("/")]);
    assert!(u(&r, &["requests"]) >= 48);
    assert_eq!(
        u(&r, &["errors", "read"]) + u(&r, &["errors", "protocol"]),
        0
    );
    assert!(u(&r, &["connects"]) >= 10);
    let b = Backend::start(|_| Reply::OK);
    let (r, _) = loadgen(&[
        "-c",
        "1",
        "-R",
        "100",
        "-d",
        "300ms",
        "-m",
        "HEAD",
        &b.url("/"),
    ]);
    assert!(u(&r, &["requests"]) >= 28);
    assert_eq!(
        u(&r, &["errors", "read"]) + u(&r, &["errors", "timeout"]),
        0
    );
}

#[test]
fn rejected_features_say_so() {
    let url = format!("http://127.0.0.1:{}/", dead_port());
    assert!(loadgen_rejects(&["--streams", "4", &url]).contains("--streams needs --http2"));
    assert!(loadgen_rejects(&["--http3", &url]).contains("HTTP/3 is not supported yet"));
    assert!(loadgen_rejects(&["-c", "1", "-t", "2", &url]).contains("more threads"));
}
