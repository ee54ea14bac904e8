//! The admin API's endpoints: request line → endpoint (404/405/400), then
//! body → backend call → status and JSON. No sockets here.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, Backend, GuardRequest, ReloadRequest};

/// One endpoint of the API, its path parameters parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Status,
    Routes,
    Upstreams,
    Reload,
    Snapshots,
    Snapshot(u64),
    Rollback(u64),
    Profiles,
    Drain,
}

/// What to answer: a status, a JSON body, and `Allow` for a 405.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Value,
    pub(super) allow: Option<&'static str>,
}

impl Reply {
    pub(super) fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body,
            allow: None,
        }
    }

    pub(super) fn error(e: ApiError) -> Reply {
        // A backend may only refuse with an error status.
        let status = if (400..=599).contains(&e.status) {
            e.status
        } else {
            500
        };
        Reply {
            status,
            body: e.to_json(),
            allow: None,
        }
    }

    pub(super) fn fail(status: u16, message: impl Into<String>) -> Reply {
        Reply::error(ApiError::new(status, message))
    }
}

const PREFIX: &str = "/api/v1/";

/// Finds the endpoint for a request line: 404 for an unknown path, 405
/// (with `Allow`) for a wrong method, 400 for an epoch that is not a number.
pub(super) fn route(method: &[u8], path: &[u8]) -> Result<Endpoint, Reply> {
    let not_found = || {
        Reply::fail(
            404,
            format!(
                "no such endpoint: {}; the API lives under {PREFIX} \
                 (status, routes, upstreams, config/reload, snapshots, profiles, drain)",
                String::from_utf8_lossy(path)
            ),
        )
    };
    let Some(rest) = std::str::from_utf8(path)
        .ok()
        .and_then(|p| p.strip_prefix(PREFIX))
    else {
        return Err(not_found());
    };
    let segments: Vec<&str> = rest.split('/').collect();
    // The shape of the path first, then the method, then the epoch.
    let (endpoint, epoch) = match segments.as_slice() {
        ["status"] => (Endpoint::Status, None),
        ["routes"] => (Endpoint::Routes, None),
        ["upstreams"] => (Endpoint::Upstreams, None),
        ["config", "reload"] => (Endpoint::Reload, None),
        ["snapshots"] => (Endpoint::Snapshots, None),
        ["snapshots", e] if !e.is_empty() => (Endpoint::Snapshot(0), Some(*e)),
        ["snapshots", e, "rollback"] if !e.is_empty() => (Endpoint::Rollback(0), Some(*e)),
        ["profiles"] => (Endpoint::Profiles, None),
        ["drain"] => (Endpoint::Drain, None),
        _ => return Err(not_found()),
    };
    let post = matches!(
        endpoint,
        Endpoint::Reload | Endpoint::Rollback(_) | Endpoint::Drain
    );
    let allowed = if post {
        method == b"POST"
    } else {
        method == b"GET" || method == b"HEAD"
    };
    if !allowed {
        let allow = if post { "POST" } else { "GET, HEAD" };
        return Err(Reply {
            status: 405,
            body: ApiError::new(
                405,
                format!(
                    "method {} not allowed on {}; use {allow}",
                    String::from_utf8_lossy(method),
                    String::from_utf8_lossy(path)
                ),
            )
            .to_json(),
            allow: Some(allow),
        });
    }
    Ok(match (endpoint, epoch) {
        (Endpoint::Snapshot(_), Some(e)) => Endpoint::Snapshot(parse_epoch(e)?),
        (Endpoint::Rollback(_), Some(e)) => Endpoint::Rollback(parse_epoch(e)?),
        (endpoint, _) => endpoint,
    })
}

/// A snapshot epoch: decimal digits only, within u64.
fn parse_epoch(text: &str) -> Result<u64, Reply> {
    let valid = !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u64>() {
        Ok(n) if valid => Ok(n),
        _ => Err(Reply::fail(
            400,
            format!("bad epoch {text:?}: expected a snapshot number such as 3"),
        )),
    }
}

/// The body of a rollback.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    guard: Option<GuardRequest>,
}

/// Decodes an optional JSON body; empty (or blank) is `T::default()`.
fn decode<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Reply::fail(400, format!("malformed JSON body: {e}")))?;
    // serde would read a struct from an array too: only objects are asked for.
    if !value.is_object() {
        return Err(Reply::fail(
            400,
            "invalid request body: expected a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| Reply::fail(400, format!("invalid request body: {e}")))
}

/// Checks a guard's values: 422 with `guard.*` field errors.
fn check_guard(guard: Option<&GuardRequest>) -> Result<(), Reply> {
    match guard.map(GuardRequest::validate) {
        Some(Err(errors)) => Err(Reply::error(ApiError {
            status: 422,
            message: "invalid guard".to_string(),
            errors,
        })),
        _ => Ok(()),
    }
}

/// Answers a routed request with its body.
pub(super) fn call(backend: &dyn Backend, endpoint: Endpoint, body: &[u8]) -> Reply {
    let result = match endpoint {
        Endpoint::Status => Ok(backend.status()),
        Endpoint::Routes => Ok(backend.routes()),
        Endpoint::Upstreams => Ok(backend.upstreams()),
        Endpoint::Snapshots => Ok(backend.snapshots()),
        Endpoint::Profiles => Ok(backend.profiles()),
        Endpoint::Drain => Ok(backend.drain()),
        Endpoint::Snapshot(epoch) => backend.snapshot(epoch),
        Endpoint::Reload => {
            let request: ReloadRequest = match decode(body) {
                Ok(r) => r,
                Err(reply) => return reply,
            };
            if let Err(reply) = check_guard(request.guard.as_ref()) {
                return reply;
            }
            backend.reload(request)
        }
        Endpoint::Rollback(epoch) => {
            let request: RollbackBody = match decode(body) {
                Ok(r) => r,
                Err(reply) => return reply,
            };
            if let Err(reply) = check_guard(request.guard.as_ref()) {
                return reply;
            }
            backend.rollback(epoch, request.guard)
        }
    };
    match result {
        Ok(body) => Reply::ok(body),
        Err(e) => Reply::error(e),
    }
}

/// The body of a 401.
pub(super) fn unauthorized(presented: bool) -> Reply {
    Reply {
        status: 401,
        body: json!({
            "error": if presented {
                "invalid bearer token"
            } else {
                "missing bearer token: send Authorization: Bearer <token>"
            },
            "errors": [],
        }),
        allow: None,
    }
}
