//! API-layer tests without sockets: routing, bodies, guards, errors.

use serde_json::{json, Value};

use super::api::{call, route, Endpoint};
use super::*;

/// Echoes what each call received.
struct Echo;

impl Backend for Echo {
    fn status(&self) -> Value {
        json!("status")
    }
    fn routes(&self) -> Value {
        json!("routes")
    }
    fn upstreams(&self) -> Value {
        json!("upstreams")
    }
    fn reload(&self, r: ReloadRequest) -> Result<Value, ApiError> {
        match r.config.as_deref() {
            Some("bad") => Err(ApiError::invalid_config(ConfigError {
                errors: vec![FieldError {
                    path: "server.bind".into(),
                    message: "nope".into(),
                }],
            })),
            Some("teapot") => Err(ApiError::new(200, "not an error status")),
            _ => Ok(serde_json::to_value(r).unwrap()),
        }
    }
    fn snapshots(&self) -> Value {
        json!("snapshots")
    }
    fn snapshot(&self, epoch: u64) -> Result<Value, ApiError> {
        Err(ApiError::not_found(format!("no snapshot {epoch}")))
    }
    fn rollback(&self, epoch: u64, guard: Option<GuardRequest>) -> Result<Value, ApiError> {
        Ok(json!({"epoch": epoch, "guard": guard}))
    }
    fn profiles(&self) -> Value {
        json!("profiles")
    }
    fn drain(&self) -> Value {
        json!({"draining": true})
    }
}

#[test]
fn paths_and_methods() {
    let ok = |m: &str, p: &str| route(m.as_bytes(), p.as_bytes()).unwrap();
    assert_eq!(ok("GET", "/api/v1/status"), Endpoint::Status);
    assert_eq!(ok("HEAD", "/api/v1/routes"), Endpoint::Routes);
    assert_eq!(ok("POST", "/api/v1/config/reload"), Endpoint::Reload);
    assert_eq!(ok("GET", "/api/v1/snapshots/7"), Endpoint::Snapshot(7));
    assert_eq!(
        ok("POST", "/api/v1/snapshots/18446744073709551615/rollback"),
        Endpoint::Rollback(u64::MAX)
    );
    assert_eq!(ok("POST", "/api/v1/drain"), Endpoint::Drain);

    let err = |m: &str, p: &str| route(m.as_bytes(), p.as_bytes()).unwrap_err();
    for p in [
        "/",
        "/api/v1",
        "/api/v1/",
        "/api/v1/status/",
        "/api/v2/status",
        "/api/v1/snapshots//rollback",
        "/api/v1/snapshots/1/rollback/x",
    ] {
        assert_eq!(err("GET", p).status, 404, "{p}");
    }
    let r = err("GET", "/api/v1/drain");
    assert_eq!((r.status, r.allow), (405, Some("POST")));
    let r = err("DELETE", "/api/v1/snapshots/1");
    assert_eq!((r.status, r.allow), (405, Some("GET, HEAD")));
    // The method is judged before the epoch.
    assert_eq!(err("PUT", "/api/v1/snapshots/x").status, 405);
    for bad in ["x", "-1", "+1", "1.0", "18446744073709551616"] {
        let r = err("GET", &format!("/api/v1/snapshots/{bad}"));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.body["error"].as_str().unwrap().starts_with("bad epoch"));
    }
}

#[test]
fn bodies_are_decoded_and_checked() {
    let r = call(&Echo, Endpoint::Reload, b"");
    assert_eq!((r.status, r.body), (200, json!({})));
    let r = call(&Echo, Endpoint::Reload, b" \r\n");
    assert_eq!(r.status, 200);
    let r = call(
        &Echo,
        Endpoint::Reload,
        br#"{"config":"x","guard":{"window_ms":1000,"max_p99_ms":5}}"#,
    );
    assert_eq!(
        r.body,
        json!({"config": "x", "guard": {"window_ms": 1000, "max_p99_ms": 5}})
    );

    let r = call(&Echo, Endpoint::Reload, b"{\"config\":");
    assert_eq!(r.status, 400);
    assert!(r.body["error"]
        .as_str()
        .unwrap()
        .starts_with("malformed JSON body"));
    let r = call(&Echo, Endpoint::Reload, br#"{"conf":"x"}"#);
    assert_eq!(r.status, 400);
    assert!(r.body["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid request body: unknown field `conf`"));

    let r = call(&Echo, Endpoint::Reload, br#"{"config":"bad"}"#);
    assert_eq!(r.status, 422);
    assert_eq!(
        r.body,
        json!({"error": "invalid configuration (1 error)",
               "errors": [{"path": "server.bind", "message": "nope"}]})
    );
    // A backend's non-error status becomes 500.
    assert_eq!(
        call(&Echo, Endpoint::Reload, br#"{"config":"teapot"}"#).status,
        500
    );

    let r = call(
        &Echo,
        Endpoint::Rollback(3),
        br#"{"guard":{"window_ms":0,"max_5xx_rate":2}}"#,
    );
    assert_eq!(r.status, 422);
    let paths: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["guard.window_ms", "guard.max_5xx_rate"]);
    let r = call(&Echo, Endpoint::Rollback(3), b"");
    assert_eq!(r.body, json!({"epoch": 3, "guard": null}));
    let r = call(&Echo, Endpoint::Snapshot(9), b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"], "no snapshot 9");
}

#[test]
fn guard_rules() {
    let g = |w, r, p| GuardRequest {
        window_ms: w,
        max_5xx_rate: r,
        max_p99_ms: p,
        min_requests: None,
    };
    assert!(g(1, Some(0.0), None).validate().is_ok());
    assert!(g(MAX_GUARD_WINDOW_MS, Some(1.0), Some(1))
        .validate()
        .is_ok());
    assert!(g(MAX_GUARD_WINDOW_MS + 1, Some(0.5), None)
        .validate()
        .is_err());
    assert!(g(1000, Some(f64::NAN), None).validate().is_err());
    assert!(g(1000, None, Some(0)).validate().is_err());
    let e = g(1000, None, None).validate().unwrap_err();
    assert_eq!(e[0].path, "guard.max_5xx_rate");
    // Unknown guard fields are refused.
    assert!(serde_json::from_str::<GuardRequest>(r#"{"window_ms":1,"max":1}"#).is_err());
}
