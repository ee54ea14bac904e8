//! Routes' retry policies and interim (1xx) responses on HTTP/2 streams,
//! end to end: HTTP/2 clients (the h2 crate's over h2c prior knowledge;
//! curl, also over TLS by ALPN) through DAO with one worker (so that the
//! round robin order is known) to HTTP/1.1 and h2c upstreams that refuse,
//! reset, stall, fail or send early hints. The rules are those of
//! HTTP/1.1 clients (tests/retry.rs).
//!
//! `.ci/run` sets `DAO_REQUIRE_TOOLS=1`: there a missing curl fails the
//! tests that use it instead of skipping them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::future::poll_fn;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::http2::{get, h2c, read, run, send, Answer, Got, H2cBackend};
use common::pki::Pki;
use common::*;
use http::Request;

const URI: &str = "http://test.local/";

/// Telemetry merged often, for `wait_metric`.
const TELEMETRY: &str = "[telemetry]\nprometheus_bind = \"127.0.0.1:0\"\nmerge_interval_ms = 20\n";

/// Retries on, outlier detection off (it would take a failing upstream
/// out of the round robin after a few failures).
const RETRY: &str = "[routes.rule.retry]\n[routes.rule.outlier_detection]\nenabled = false\n";

/// One worker over HTTP/1.1 `backends` (b0, b1, … in order), the route's
/// extra tables appended.
fn proxy_with(route_tables: &str, backends: &[SocketAddr]) -> Server {
    start(&(config(1, TELEMETRY, backends) + route_tables))
}

/// As `proxy_with`, over h2c upstreams.
fn h2c_proxy_with(route_tables: &str, backends: &[SocketAddr]) -> Server {
    let mut text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = 1\n{TELEMETRY}\n\
         [[routes.rule]]\nname = \"all\"\n"
    );
    for (i, b) in backends.iter().enumerate() {
        text += &format!(
            "[[routes.rule.upstreams]]\nname = \"b{i}\"\nurl = \"http://{b}\"\nprotocol = \"h2c\"\n"
        );
    }
    start(&(text + route_tables))
}

/// Sends each request (method, content-length to declare, body) on one
/// h2c connection, in turn; returns the responses.
fn h2_requests(dao: &Server, reqs: &[(&str, Option<usize>, &[u8])]) -> Vec<Got> {
    run(async {
        let mut c = h2c(dao.local_addr(), None).await;
        let mut got = Vec::new();
        for (method, length, body) in reqs {
            let mut r = Request::builder().method(*method).uri(URI);
            if let Some(n) = length {
                r = r.header("content-length", *n);
            }
            got.push(send(&mut c, r.body(()).unwrap(), body).await);
        }
        got
    })
}

/// `n` GETs on one h2c connection.
fn h2_gets(dao: &Server, n: usize) -> Vec<Got> {
    h2_requests(dao, &vec![("GET", None, &b""[..]); n])
}

/// Answers 200 with what it got: `METHOD LENGTH BODY`.
fn echo_backend() -> Backend {
    Backend::start(|req, s| {
        let text = format!(
            "{} {} {}",
            req.method,
            req.body.len(),
            String::from_utf8_lossy(&req.body)
        );
        respond(s, 200, &[], text.as_bytes());
        After::KeepAlive
    })
}

/// Reads each request whole, then closes without a word.
fn closer() -> Backend {
    Backend::start(|_, _| After::Close)
}

fn statuses(got: &[Got]) -> Vec<u16> {
    got.iter().map(|g| g.status).collect()
}

#[test]
fn h2_gets_are_retried_on_http1_upstreams() {
    let live = echo_backend();
    // Connect failures: every request's first pick is the dead upstream
    // (its retry takes the live one's turn).
    let dao = proxy_with(RETRY, &[dead_addr(), live.addr]);
    for g in h2_gets(&dao, 4) {
        assert_eq!((g.status, g.text().as_str()), (200, "GET 0 "));
    }
    wait_metric(&dao, "dao_retries_total{route=\"all\"}", 4.0);
    wait_metric(
        &dao,
        "dao_upstream_attempts_total{route=\"all\",upstream=\"b0\",result=\"connect\"}",
        4.0,
    );
    wait_metric(
        &dao,
        "dao_upstream_attempts_total{route=\"all\",upstream=\"b1\",result=\"2xx\"}",
        4.0,
    );
    // One client request, one count, on the upstream that answered it.
    wait_metric(
        &dao,
        "http_requests_total{route=\"all\",upstream=\"b1\",method=\"GET\",status=\"200\"}",
        4.0,
    );
    dao.shutdown();

    // Closed before a response (reset), and 503s (gateway errors).
    let closer = closer();
    let busy = Backend::start(|_, s| {
        respond(s, 503, &[], b"busy");
        After::KeepAlive
    });
    for (failing, result) in [(closer.addr, "reset"), (busy.addr, "5xx")] {
        let dao = proxy_with(RETRY, &[failing, live.addr]);
        for g in h2_gets(&dao, 3) {
            assert_eq!((g.status, g.text().as_str()), (200, "GET 0 "));
        }
        wait_metric(&dao, "dao_retries_total{route=\"all\"}", 3.0);
        let series = format!(
            "dao_upstream_attempts_total{{route=\"all\",upstream=\"b0\",result=\"{result}\"}}"
        );
        wait_metric(&dao, &series, 3.0);
        dao.shutdown();
    }
    assert_eq!((closer.request_count(), busy.request_count()), (3, 3));

    // Without [retry]: one attempt, the failing upstream's turns fail.
    let dao = proxy_with("", &[busy.addr, live.addr]);
    assert_eq!(statuses(&h2_gets(&dao, 4)), [503, 200, 503, 200]);
    dao.shutdown();
}

#[test]
fn bodies_are_retried_only_when_held_whole_or_never_sent() {
    let closer = closer();
    let live = echo_backend();
    let dao = proxy_with(RETRY, &[closer.addr, live.addr]);
    let got = h2_requests(
        &dao,
        &[
            // A small PUT of declared length is held whole: retried.
            ("PUT", Some(3), b"abc"),
            // A POST is not idempotent: once sent, never again.
            ("POST", Some(3), b"abc"),
            // (The closer took only that turn: this one meets the live.)
            ("POST", Some(3), b"def"),
            // A body of undeclared length streams: not held, not retried.
            ("PUT", None, b"ghi"),
        ],
    );
    assert_eq!(statuses(&got), [200, 502, 200, 502]);
    assert_eq!(got[0].text(), "PUT 3 abc");
    assert_eq!(got[2].text(), "POST 3 def");
    let seen: Vec<(String, Vec<u8>)> = closer
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.method.clone(), r.body.clone()))
        .collect();
    let want = [("PUT", b"abc"), ("POST", b"abc"), ("PUT", b"ghi")];
    assert_eq!(seen.len(), want.len());
    for ((m, b), (wm, wb)) in seen.iter().zip(want) {
        assert_eq!((m.as_str(), &b[..]), (wm, &wb[..]));
    }
    assert_eq!(live.request_count(), 2);
    dao.shutdown();

    // A POST that never reached an upstream (refused) goes to the next.
    let dao = proxy_with(RETRY, &[dead_addr(), live.addr]);
    let got = h2_requests(&dao, &[("POST", None, b"xyz")]);
    assert_eq!((got[0].status, got[0].text().as_str()), (200, "POST 3 xyz"));
    dao.shutdown();
}

#[test]
fn h2_streams_are_retried_on_h2c_upstreams() {
    let live = H2cBackend::start(|(method, _, _, body)| {
        let text = format!("{method} {}", String::from_utf8_lossy(body));
        Answer::status(200, text.as_bytes())
    });
    let busy = H2cBackend::start(|_| Answer::status(503, b"busy"));
    let resetter = H2cBackend::start(|_| Answer {
        reset: Some(h2::Reason::INTERNAL_ERROR),
        ..Answer::default()
    });
    for (failing, result) in [
        (dead_addr(), "connect"),
        (busy.addr, "5xx"),
        (resetter.addr, "reset"),
    ] {
        let tables =
            "[routes.rule.retry]\non = [\"connect-failure\", \"reset\", \"gateway-error\"]\n\
                      [routes.rule.outlier_detection]\nenabled = false\n";
        let dao = h2c_proxy_with(tables, &[failing, live.addr]);
        let got = h2_requests(&dao, &[("GET", None, b""), ("PUT", Some(4), b"held")]);
        assert_eq!((got[0].status, got[0].text().as_str()), (200, "GET "));
        assert_eq!((got[1].status, got[1].text().as_str()), (200, "PUT held"));
        wait_metric(&dao, "dao_retries_total{route=\"all\"}", 2.0);
        let series = format!(
            "dao_upstream_attempts_total{{route=\"all\",upstream=\"b0\",result=\"{result}\"}}"
        );
        wait_metric(&dao, &series, 2.0);
        dao.shutdown();
    }
    // The resetter's PUT came whole; a POST sent to it is not sent again.
    assert_eq!(resetter.requests.lock().unwrap()[1].3, b"held");
    let dao = h2c_proxy_with(RETRY, &[resetter.addr, live.addr]);
    let got = h2_requests(&dao, &[("POST", Some(3), b"abc")]);
    assert_eq!(got[0].status, 502);
    assert_eq!(resetter.request_count(), 3);
    dao.shutdown();
    // HTTP/1.1 clients of the same h2c upstreams: the same rules.
    let dao = h2c_proxy_with(RETRY, &[resetter.addr, live.addr]);
    let r = Client::connect(dao.local_addr()).get("/");
    assert_eq!((r.status, r.text().as_str()), (200, "GET "));
    dao.shutdown();
}

#[test]
fn the_budget_refuses_retries_beyond_it() {
    // Two dead upstreams take the first picks; the third answers after a
    // second. The first request retries its way to the third; while that
    // retry is in flight, the second request, on another stream of the
    // same connection, fails on the first dead upstream and, with room
    // for one retry in flight, gets its 502.
    let slow = Backend::slow(Duration::from_millis(1000));
    let budget = "[routes.rule.retry]\nattempts = 2\nbudget_percent = 0\nbudget_min = 1\n";
    let dao = proxy_with(budget, &[dead_addr(), dead_addr(), slow.addr]);
    let (first, second) = run(async {
        let c = h2c(dao.local_addr(), None).await;
        let mut a = c.clone();
        let first = monoio::spawn(async move { send(&mut a, get(URI), b"").await });
        monoio::time::sleep(Duration::from_millis(150)).await;
        let mut b = c.clone();
        let second = send(&mut b, get(URI), b"").await;
        (first.await, second)
    });
    assert_eq!(second.status, 502);
    assert_eq!((first.status, first.text().as_str()), (200, "slow"));
    wait_metric(&dao, "dao_retries_total{route=\"all\"}", 2.0);
    wait_metric(&dao, "dao_retry_budget_exhausted_total{route=\"all\"}", 1.0);
    // The budget is free again: the same path now succeeds.
    assert_eq!(statuses(&h2_gets(&dao, 1)), [200]);
    dao.shutdown();
}

#[test]
fn per_try_timeout_moves_on_to_the_next_upstream() {
    let slow = Backend::slow(Duration::from_millis(2000));
    let fast = echo_backend();
    let retry =
        "[routes.rule.retry]\nattempts = 1\nper_try_timeout = \"200ms\"\non = [\"timeout\"]\n";
    let dao = proxy_with(retry, &[slow.addr, fast.addr]);
    let t = Instant::now();
    let got = h2_gets(&dao, 1);
    assert_eq!((got[0].status, got[0].text().as_str()), (200, "GET 0 "));
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    wait_metric(
        &dao,
        "dao_upstream_attempts_total{route=\"all\",upstream=\"b0\",result=\"timeout\"}",
        1.0,
    );
    dao.shutdown();
}

#[test]
fn curl_over_tls_gets_the_second_upstreams_answer() {
    if !tool("curl") {
        return;
    }
    let pki = Pki::new("h2retry");
    let busy = Backend::start(|_, s| {
        respond(s, 503, &[], b"busy");
        After::KeepAlive
    });
    let live = echo_backend();
    let text = format!(
        "[server]\nworkers = 1\n[[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n\
         certificates = [{{ cert = \"{}\", key = \"{}\" }}]\nalpn = [\"h2\", \"http/1.1\"]\n\
         [[routes.rule]]\nname = \"r\"\n\
         [[routes.rule.upstreams]]\nname = \"busy\"\nurl = \"http://{}\"\n\
         [[routes.rule.upstreams]]\nname = \"live\"\nurl = \"http://{}\"\n\
         [routes.rule.retry]\non = [\"gateway-error\"]\n",
        pki.path("server.pem"),
        pki.path("server.key"),
        busy.addr,
        live.addr,
    );
    let dao = start(&text);
    let port = dao.local_addr().port();
    let (url, resolve) = (
        format!("https://localhost:{port}/"),
        format!("localhost:{port}:127.0.0.1"),
    );
    let ca = pki.path("ca.pem");
    for _ in 0..2 {
        let out = curl(&[
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            "--http2",
            "-w",
            "\n%{http_version} %{response_code}",
            &url,
        ]);
        assert_eq!(stdout(&out), "GET 0 \n2 200", "{out:?}");
    }
    assert_eq!((busy.request_count(), live.request_count()), (2, 2));
    dao.shutdown();
}

/// Sends 103 Early Hints, then `200 hinted` (or, `close`, closes).
fn hinter(close: bool) -> Backend {
    Backend::start(move |_, s| {
        let _ = s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n");
        let _ = s.flush();
        std::thread::sleep(Duration::from_millis(50));
        if close {
            return After::Close;
        }
        respond(s, 200, &[], b"hinted");
        After::KeepAlive
    })
}

/// Sends `GET /` and returns the interim heads (status, `link`) that came
/// before the final response, and that response.
fn interim_and_final(dao: &Server) -> (Vec<(u16, String)>, Got) {
    run(async {
        let c = h2c(dao.local_addr(), None).await;
        let mut c = c.ready().await.unwrap();
        let (mut resp, _) = c.send_request(get(URI), true).unwrap();
        let mut interim = Vec::new();
        while let Some(head) = poll_fn(|cx| resp.poll_informational(cx)).await {
            let head = head.unwrap();
            let link = head
                .headers()
                .get("link")
                .map_or("", |v| v.to_str().unwrap());
            interim.push((head.status().as_u16(), link.to_string()));
        }
        (interim, read(resp.await.unwrap()).await)
    })
}

#[test]
fn early_hints_reach_h2_clients() {
    let hints = vec![(103, "</style.css>; rel=preload".to_string())];
    // From an HTTP/1.1 upstream.
    let h1 = hinter(false);
    let dao = proxy_with("", &[h1.addr]);
    let (interim, got) = interim_and_final(&dao);
    assert_eq!(interim, hints);
    assert_eq!((got.status, got.text().as_str()), (200, "hinted"));
    dao.shutdown();

    // From an h2c upstream.
    let h2 = H2cBackend::start(|_| Answer {
        interim: vec![(103, vec![("link", "</style.css>; rel=preload")])],
        ..Answer::status(200, b"hinted over h2")
    });
    let dao = h2c_proxy_with("", &[h2.addr]);
    let (interim, got) = interim_and_final(&dao);
    assert_eq!(interim, hints);
    assert_eq!((got.status, got.text().as_str()), (200, "hinted over h2"));
    dao.shutdown();

    // Once a hint went out the response has started: an upstream that
    // closes after it is not retried, whatever the policy says.
    let dies = hinter(true);
    let live = echo_backend();
    let dao = proxy_with(RETRY, &[dies.addr, live.addr]);
    let (interim, got) = interim_and_final(&dao);
    assert_eq!(interim, hints);
    assert_eq!(got.status, 502);
    assert_eq!(live.request_count(), 0);
    dao.shutdown();

    // curl -v shows it.
    if tool("curl") {
        let dao = proxy_with("", &[h1.addr]);
        let url = format!("http://{}/", dao.local_addr());
        let out = curl(&["-v", "--http2-prior-knowledge", &url]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("< HTTP/2 103"), "{err}");
        assert!(err.contains("< link: </style.css>; rel=preload"), "{err}");
        assert_eq!(stdout(&out), "hinted");
        dao.shutdown();
    }
}

#[test]
fn early_hints_from_h2c_upstreams_reach_http1_clients() {
    let h2 = H2cBackend::start(|_| Answer {
        interim: vec![(103, vec![("link", "</style.css>; rel=preload")])],
        ..Answer::status(200, b"hinted over h2")
    });
    let dao = h2c_proxy_with("", &[h2.addr]);
    let mut c = Client::connect(dao.local_addr());
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    // The interim head first, as an HTTP/1.1 client reads it.
    let mut head = String::new();
    loop {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut c.reader, &mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    assert!(head.starts_with("HTTP/1.1 103 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("link: </style.css>; rel=preload\r\n"),
        "{head}"
    );
    let got = c.read(false);
    assert_eq!((got.status, got.text().as_str()), (200, "hinted over h2"));
    // An HTTP/1.0 client gets the final response alone.
    let mut c = Client::connect(dao.local_addr());
    c.send(b"GET /b HTTP/1.0\r\nHost: x\r\n\r\n");
    let got = c.read(false);
    assert_eq!((got.status, got.text().as_str()), (200, "hinted over h2"));
    dao.shutdown();
}

/// Sends `POST /` with `expect: 100-continue` and waits (at most 2 s)
/// for the 100 before sending the body; returns whether it came, and the
/// final response.
fn expecting_continue(dao: &Server) -> (bool, Got) {
    run(async {
        let c = h2c(dao.local_addr(), None).await;
        let mut c = c.ready().await.unwrap();
        let req = Request::post(URI)
            .header("expect", "100-continue")
            .header("content-length", "5")
            .body(())
            .unwrap();
        let (mut resp, mut body) = c.send_request(req, false).unwrap();
        let first = poll_fn(|cx| resp.poll_informational(cx));
        let continued = match monoio::time::timeout(Duration::from_secs(2), first).await {
            Ok(Some(Ok(head))) => head.status() == 100,
            _ => false,
        };
        let _ = body.send_data(Bytes::from_static(b"hello"), true);
        (continued, read(resp.await.unwrap()).await)
    })
}

#[test]
fn expect_100_continue_is_answered_by_dao() {
    // The upstream sees no `Expect` (DAO answers it, once the upstream is
    // connected, as for HTTP/1.1 clients).
    let h1 = echo_backend();
    let dao = proxy_with("", &[h1.addr]);
    let (continued, got) = expecting_continue(&dao);
    assert!(continued, "no 100 Continue");
    assert_eq!((got.status, got.text().as_str()), (200, "POST 5 hello"));
    assert_eq!(h1.last_request().header("expect"), None);
    dao.shutdown();

    let h2 = H2cBackend::start(|(_, _, headers, body)| {
        assert!(headers.get("expect").is_none());
        Answer::status(200, body)
    });
    let dao = h2c_proxy_with("", &[h2.addr]);
    let (continued, got) = expecting_continue(&dao);
    assert!(continued, "no 100 Continue");
    assert_eq!((got.status, got.text().as_str()), (200, "hello"));
    dao.shutdown();

    // No upstream to connect to: no 100, the failure is the answer.
    let dao = proxy_with("", &[dead_addr()]);
    let (continued, got) = expecting_continue(&dao);
    assert!(!continued);
    assert_eq!(got.status, 502);
    dao.shutdown();
}
