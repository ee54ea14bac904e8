//! Rendering tests: the contract's JSON shapes as text.

use serde_json::json;

use super::*;

#[test]
fn status_lines() {
    let v = json!({
        "version": "0.1.0", "uptime_s": 3725, "config_epoch": 3, "table_epoch": 120,
        "workers": 2, "draining": false, "listen": ["127.0.0.1:8080", "[::1]:8080"],
        "last_reload": {"epoch": 3, "source": "api", "time_unix": 0,
                        "result": "applied", "message": "2 routes"},
        "guard": {"epoch": 3, "state": "watching", "message": ""}
    });
    assert_eq!(
        status(&v),
        "version:      0.1.0\n\
         uptime:       1h 2m 5s\n\
         config epoch: 3\n\
         table epoch:  120\n\
         workers:      2\n\
         draining:     no\n\
         listen:       127.0.0.1:8080, [::1]:8080\n\
         last reload:  epoch 3 applied (api, 1970-01-01T00:00:00Z): 2 routes\n\
         guard:        epoch 3 watching\n"
    );
    let none = status(&json!({"last_reload": null, "guard": null}));
    assert!(none.contains("last reload:  none\n"), "{none}");
    assert!(none.contains("version:      -\n"), "{none}");
    assert!(!none.contains("tls"), "{none}");
    let tls = status(&json!({"tls": {"handshakes": 5, "resumed": 1,
        "client_certificates": 2, "failures": 3}}));
    assert!(
        tls.ends_with(
            "tls:          5 handshakes (1 resumed, 2 with a client certificate), 3 failed\n"
        ),
        "{tls}"
    );
}

#[test]
fn tables_align() {
    let v = json!({"upstreams": [
        {"route": "api", "upstream": "a", "addr": "127.0.0.1:9001", "weight": 1,
         "health": "up", "in_flight": 0, "rps": 10.5, "p50_ms": 1.2, "p95_ms": 15.25,
         "p99_ms": 250.0, "error_rate": 0.0125, "load_resonance": 0.1},
        {"route": "api", "upstream": "bb", "addr": "127.0.0.1:9002", "weight": 10,
         "health": "unchecked", "in_flight": 12, "rps": 0.0, "p50_ms": null,
         "p95_ms": null, "p99_ms": null, "error_rate": 0.0, "load_resonance": 0.0}
    ]});
    let out = upstreams(&v);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "ROUTE  UPSTREAM  ADDR            WEIGHT  HEALTH     IN-FLIGHT   RPS     P50     P95    P99  ERRORS  LOAD",
            "api    a         127.0.0.1:9001       1  up                 0  10.5  1.20ms  15.2ms  250ms   1.25%  0.10",
            "api    bb        127.0.0.1:9002      10  unchecked         12   0.0       -       -      -   0.00%  0.00",
        ]
    );
    let r = routes(
        &json!({"routes": [{"name": "api", "host": "*", "path_prefix": "/",
        "policy": "resonant", "upstreams": ["a", "b"]}]}),
    );
    assert_eq!(
        r,
        "NAME  HOST  PATH  POLICY    UPSTREAMS\napi   *     /     resonant  a,b\n"
    );
    // No rows: the header alone.
    assert_eq!(
        routes(&json!({"routes": []})),
        "NAME  HOST  PATH  POLICY  UPSTREAMS\n"
    );
}

#[test]
fn changes_and_guards() {
    let applied = change(
        &json!({"epoch": 4, "sha256": "abcdef0123456789", "source": "api",
        "changed": true, "guard": {"window_ms": 30000, "max_5xx_rate": 0.05,
        "max_p99_ms": 250, "min_requests": 100}}),
    );
    assert_eq!(
        applied,
        "applied epoch 4 (source api, sha256 abcdef012345)\n\
         guard: for 30s, rolls back on 5xx rate over 5.00% or p99 over 250ms (once 100 requests are seen)\n"
    );
    let same = change(
        &json!({"epoch": 4, "sha256": "ab", "source": "api", "changed": false,
        "guard": null}),
    );
    assert_eq!(same, "no change: the configuration is the one of epoch 4\n");
}

#[test]
fn snapshots_mark_the_current_one() {
    let out = snapshots(&json!({"current": 2, "snapshots": [
        {"epoch": 1, "sha256": "aa", "time_unix": 60, "source": "start", "note": null},
        {"epoch": 2, "sha256": "bb", "time_unix": 120, "source": "api", "note": "more workers"}
    ]}));
    assert_eq!(
        out,
        "   EPOCH  TIME                  SOURCE  SHA256  NOTE\n\
         \x20      1  1970-01-01T00:01:00Z  start   aa      -\n\
         *      2  1970-01-01T00:02:00Z  api     bb      more workers\n"
    );
    assert_eq!(diff(&json!({"diff": "-a\n+b"})), "-a\n+b\n");
    assert_eq!(diff(&json!({"diff": ""})), "");
}

#[test]
fn profiles_have_a_row_per_state() {
    let f = json!({"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0, "error_rate": 0.0,
        "rps": 5.0, "intervals": 7});
    let out = profiles(&json!({"profiles": [
        {"upstream": "a", "addr": "127.0.0.1:1", "intent": "", "good": f, "bad": null,
         "updated_unix": 0},
        {"upstream": "b", "addr": "127.0.0.1:2", "intent": "batch", "good": f, "bad": f,
         "updated_unix": 0}
    ]}));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[1].starts_with("a         127.0.0.1:1  -       good"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("b         127.0.0.1:2  batch   bad"),
        "{out}"
    );
    assert_eq!(
        drain(&json!({"draining": true})),
        "draining: new connections are refused; in-flight requests are finishing\n"
    );
}
