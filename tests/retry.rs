//! Retries, per-try timeouts, the retry budget and the circuit breaker,
//! end to end: DAO with one worker (so that the round robin order is
//! known) in front of real backends that refuse, reset, stall or fail.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// One worker over `backends` (named b0, b1, … in order), the route's
/// extra tables appended, and a telemetry listener.
fn proxy_with(route_tables: &str, backends: &[SocketAddr]) -> Server {
    let telemetry = "[telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 20\n";
    start(&(config(1, telemetry, backends) + route_tables))
}

/// `GET /` on a fresh connection.
fn get(dao: &Server) -> Resp {
    Client::connect(dao.local_addr()).get("/")
}

#[test]
fn connect_failures_are_retried_on_the_live_upstream() {
    let live = Backend::text("live");
    let backends = [dead_addr(), live.addr];
    // Outlier ejection off: it would take the dead upstream out after 5
    // failures (tests/align.rs shows that); here every first pick hits it.
    let dao = proxy_with(
        "[routes.rule.retry]\n[routes.rule.outlier_detection]\nenabled = false\n",
        &backends,
    );
    for _ in 0..10 {
        let r = get(&dao);
        assert_eq!((r.status, r.text().as_str()), (200, "live"));
    }
    // Round robin: every request's first pick is the dead one (its retry
    // takes the live one's turn).
    wait_metric(&dao, "dao_retries_total{route=\"all\"}", 10.0);
    wait_metric(
        &dao,
        "dao_upstream_attempts_total{route=\"all\",upstream=\"b0\",result=\"connect\"}",
        10.0,
    );
    wait_metric(
        &dao,
        "dao_upstream_attempts_total{route=\"all\",upstream=\"b1\",result=\"2xx\"}",
        10.0,
    );
    wait_metric(
        &dao,
        "dao_upstream_failures_total{route=\"all\",upstream=\"b0\",kind=\"connect\"}",
        10.0,
    );
    // One client request, one count, on the upstream that answered it.
    wait_metric(
        &dao,
        "http_requests_total{route=\"all\",upstream=\"b1\",method=\"GET\",status=\"200\"}",
        10.0,
    );
    wait_metric(&dao, "dao_upstream_up{route=\"all\",upstream=\"b0\"}", 0.0);
    dao.shutdown();

    // Without [retry]: the dead upstream's turns are 502s.
    let dao = proxy_with("", &backends);
    let statuses: Vec<u16> = (0..10).map(|_| get(&dao).status).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 502).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        5,
        "{statuses:?}"
    );
    dao.shutdown();
}

#[test]
fn resets_are_retried_for_idempotent_requests_only() {
    // Reads each request whole, then closes without a word.
    let closer = Backend::start(|_, _| After::Close);
    let live = Backend::start(|req, s| {
        respond(s, 200, &[], &req.body);
        After::KeepAlive
    });
    let dao = proxy_with("[routes.rule.retry]\n", &[closer.addr, live.addr]);
    for _ in 0..4 {
        assert_eq!(get(&dao).status, 200);
    }
    assert_eq!(closer.request_count(), 4, "each GET met the closer first");
    // The next pick is the closer again: a POST whose body went to it is
    // not sent again; the following POST goes to the live upstream.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect(dao.local_addr());
        c.send(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
        let r = c.read(false);
        statuses.push(r.status);
        if r.status == 200 {
            assert_eq!(r.text(), "abc");
        }
    }
    assert_eq!(statuses, [502, 200]);
    assert_eq!(closer.request_count(), 5);
    assert_eq!(closer.last_request().method, "POST");
    assert_eq!(live.request_count(), 5);
    dao.shutdown();
}

#[test]
fn per_try_timeout_moves_on_to_the_next_upstream() {
    let slow = Backend::start(|_, s| {
        std::thread::sleep(Duration::from_secs(2));
        respond(s, 200, &[], b"slow");
        After::Close
    });
    let fast = Backend::text("fast");
    let retry =
        "[routes.rule.retry]\nattempts = 1\nper_try_timeout = \"200ms\"\non = [\"timeout\"]\n";
    let dao = proxy_with(retry, &[slow.addr, fast.addr]);
    let t = Instant::now();
    let r = get(&dao);
    assert_eq!((r.status, r.text().as_str()), (200, "fast"));
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(slow.request_count(), 1);
    wait_metric(
        &dao,
        "dao_upstream_attempts_total{route=\"all\",upstream=\"b0\",result=\"timeout\"}",
        1.0,
    );
    dao.shutdown();

    // No attempt left: the timeout is the answer.
    let once = "[routes.rule.retry]\nattempts = 0\nper_try_timeout = \"200ms\"\n";
    let dao = proxy_with(once, &[slow.addr]);
    let t = Instant::now();
    assert_eq!(get(&dao).status, 504);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    dao.shutdown();
}

#[test]
fn gateway_errors_are_retried_only_when_asked() {
    let busy = Backend::start(|_, s| {
        respond(s, 503, &[("Retry-After", "1")], b"busy");
        After::KeepAlive
    });
    let live = Backend::text("live");
    let on = "[routes.rule.retry]\non = [\"gateway-error\"]\n";
    let dao = proxy_with(on, &[busy.addr, live.addr]);
    for _ in 0..4 {
        let r = get(&dao);
        assert_eq!((r.status, r.text().as_str()), (200, "live"));
    }
    assert_eq!(busy.request_count(), 4);
    wait_metric(
        &dao,
        "dao_upstream_attempts_total{route=\"all\",upstream=\"b0\",result=\"5xx\"}",
        4.0,
    );
    dao.shutdown();

    // Gateway errors not in `on`: the upstream's 503 passes through
    // unchanged.
    let dao = proxy_with(
        "[routes.rule.retry]\non = [\"reset\"]\n",
        &[busy.addr, live.addr],
    );
    let answers: Vec<Resp> = (0..4).map(|_| get(&dao)).collect();
    let busy_ones: Vec<&Resp> = answers.iter().filter(|r| r.status == 503).collect();
    assert_eq!(busy_ones.len(), 2);
    for r in busy_ones {
        assert_eq!(r.text(), "busy");
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    dao.shutdown();
}

/// Sends `GET /` from a thread; returns its response when joined.
fn get_in_background(addr: SocketAddr) -> std::thread::JoinHandle<Resp> {
    let h = std::thread::spawn(move || Client::connect(addr).get("/"));
    // Let it reach the upstream.
    std::thread::sleep(Duration::from_millis(150));
    h
}

#[test]
fn the_budget_refuses_retries_beyond_it() {
    // Two dead upstreams take the first picks; the third answers after a
    // second. The first request retries its way to the third; while that
    // retry is in flight, the second request fails on the first dead
    // upstream and, with room for one retry in flight, gets its 502.
    let slow = Backend::slow(Duration::from_millis(1000));
    let budget = "[routes.rule.retry]\nattempts = 2\nbudget_percent = 0\nbudget_min = 1\n";
    let dao = proxy_with(budget, &[dead_addr(), dead_addr(), slow.addr]);
    let first = get_in_background(dao.local_addr());
    assert_eq!(get(&dao).status, 502);
    assert_eq!(first.join().unwrap().text(), "slow");
    wait_metric(&dao, "dao_retries_total{route=\"all\"}", 2.0);
    wait_metric(&dao, "dao_retry_budget_exhausted_total{route=\"all\"}", 1.0);
    // The budget is free again: the same path now succeeds.
    assert_eq!(get(&dao).status, 200);
    dao.shutdown();
}

#[test]
fn circuit_breaker_fails_fast_with_a_marked_503() {
    let slow = Backend::slow(Duration::from_millis(1000));
    let dao = proxy_with(
        "[routes.rule.circuit_breaker]\nmax_requests = 1\n",
        &[slow.addr],
    );
    let first = get_in_background(dao.local_addr());
    let t = Instant::now();
    let refused = get(&dao);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("x-dao-overloaded"), Some("circuit-breaker"));
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(slow.request_count(), 1);
    // The limit is free again.
    assert_eq!(get(&dao).status, 200);
    wait_metric(
        &dao,
        "dao_circuit_breaker_open_total{route=\"all\",upstream=\"b0\",limit=\"max_requests\"}",
        1.0,
    );
    dao.shutdown();

    // max_connections counts open connections, idle or in use.
    let dao = proxy_with(
        "[routes.rule.circuit_breaker]\nmax_connections = 1\n",
        &[slow.addr],
    );
    let first = get_in_background(dao.local_addr());
    let refused = get(&dao);
    assert_eq!(refused.status, 503);
    assert_eq!(first.join().unwrap().status, 200);
    // Pooled and idle, the one connection serves the next request.
    assert_eq!(get(&dao).status, 200);
    wait_metric(
        &dao,
        "dao_circuit_breaker_open_total{route=\"all\",upstream=\"b0\",limit=\"max_connections\"}",
        1.0,
    );
    dao.shutdown();
}

#[test]
fn a_refused_request_is_retried_on_another_upstream() {
    let slow = Backend::slow(Duration::from_millis(1000));
    let fast = Backend::text("fast");
    let tables = "[routes.rule.retry]\n[routes.rule.circuit_breaker]\nmax_requests = 1\n";
    let dao = proxy_with(tables, &[slow.addr, fast.addr]);
    // Round robin: the slow upstream, the fast one, then the slow one
    // again, which is full: that request goes to the fast one.
    let first = get_in_background(dao.local_addr());
    assert_eq!(get(&dao).text(), "fast");
    let t = Instant::now();
    let r = get(&dao);
    assert_eq!((r.status, r.text().as_str()), (200, "fast"));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(slow.request_count(), 1);
    wait_metric(
        &dao,
        "dao_circuit_breaker_open_total{route=\"all\",upstream=\"b0\",limit=\"max_requests\"}",
        1.0,
    );
    wait_metric(&dao, "dao_retries_total{route=\"all\"}", 1.0);
    dao.shutdown();
}
