//! The admin API over real sockets (auth, every endpoint, bad requests,
//! serialised reloads, stopping) and the `daoctl` binary against it.

// Tests time real sockets; the clock rule is for the data path.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use dao::admin::{self, ApiError, Backend, Client, ClientError, GuardRequest, ReloadRequest};
use dao::memory::FieldError;

const TOKEN: &str = "test-token-0123456789";

/// One kept configuration.
#[derive(Clone)]
struct Snap {
    epoch: u64,
    text: String,
    source: &'static str,
}

/// A backend with the shape of the real one: a list of snapshots, the
/// current epoch, a drain flag; a config containing "bad" is invalid.
#[derive(Default)]
struct TestBackend {
    // Off the data path, in a test: a lock is the plain tool here.
    #[allow(clippy::disallowed_types)]
    snaps: std::sync::Mutex<Vec<Snap>>,
    draining: AtomicBool,
    /// Reloads running right now, and the most seen at once.
    in_reload: AtomicUsize,
    most_in_reload: AtomicUsize,
    /// How long a reload takes.
    reload_ms: u64,
}

impl TestBackend {
    fn new(reload_ms: u64) -> TestBackend {
        let b = TestBackend {
            reload_ms,
            ..TestBackend::default()
        };
        b.snaps.lock().unwrap().push(Snap {
            epoch: 1,
            text: "[server]\nworkers = 1\n".into(),
            source: "start",
        });
        b
    }

    fn apply(&self, text: String, source: &'static str, guard: Option<GuardRequest>) -> Value {
        let mut snaps = self.snaps.lock().unwrap();
        let current = snaps.last().unwrap().clone();
        if current.text == text {
            return json!({"epoch": current.epoch, "sha256": "aa", "source": source,
                          "changed": false, "guard": null});
        }
        let epoch = current.epoch + 1;
        snaps.push(Snap {
            epoch,
            text,
            source,
        });
        json!({"epoch": epoch, "sha256": format!("{epoch:064x}"), "source": source,
               "changed": true, "guard": guard})
    }
}

impl Backend for TestBackend {
    fn status(&self) -> Value {
        let epoch = self.snaps.lock().unwrap().last().unwrap().epoch;
        json!({"version": "0.1.0", "uptime_s": 12, "config_epoch": epoch, "table_epoch": 120,
               "workers": 2, "draining": self.draining.load(Ordering::SeqCst),
               "listen": ["127.0.0.1:8080"], "last_reload": null, "guard": null})
    }

    fn routes(&self) -> Value {
        json!({"routes": [{"name": "api", "host": "*", "path_prefix": "/",
                           "policy": "resonant", "upstreams": ["a", "b"]}]})
    }

    fn upstreams(&self) -> Value {
        json!({"upstreams": [{"route": "api", "upstream": "a", "addr": "127.0.0.1:9001",
            "weight": 1, "health": "up", "in_flight": 0, "rps": 10.5, "p50_ms": 1.2,
            "p95_ms": 3.4, "p99_ms": 9.9, "error_rate": 0.0, "load_resonance": 0.1}]})
    }

    fn reload(&self, request: ReloadRequest) -> Result<Value, ApiError> {
        let now = self.in_reload.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_reload.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(self.reload_ms));
        self.in_reload.fetch_sub(1, Ordering::SeqCst);
        let text = match request.config {
            // Re-reading "the file": it holds what runs.
            None => self.snaps.lock().unwrap().last().unwrap().text.clone(),
            Some(t) => t,
        };
        if text.contains("panic") {
            panic!("the test backend was asked to panic");
        }
        if text.contains("bad") {
            return Err(ApiError {
                status: 422,
                message: "invalid configuration (2 errors)".into(),
                errors: vec![
                    FieldError {
                        path: "routes.rule[0].name".into(),
                        message: "must not be empty".into(),
                    },
                    FieldError {
                        path: "server.workers".into(),
                        message: "0 is out of range 1..=1024".into(),
                    },
                ],
            });
        }
        Ok(self.apply(text, "api", request.guard))
    }

    fn snapshots(&self) -> Value {
        let snaps = self.snaps.lock().unwrap();
        let list: Vec<Value> = snaps
            .iter()
            .map(|s| {
                json!({"epoch": s.epoch, "sha256": format!("{:064x}", s.epoch),
                            "time_unix": 1_700_000_000 + s.epoch, "source": s.source,
                            "note": null})
            })
            .collect();
        json!({"current": snaps.last().unwrap().epoch, "snapshots": list})
    }

    fn snapshot(&self, epoch: u64) -> Result<Value, ApiError> {
        let snaps = self.snaps.lock().unwrap();
        let current = snaps.last().unwrap();
        let s = snaps
            .iter()
            .find(|s| s.epoch == epoch)
            .ok_or_else(|| ApiError::not_found(format!("no snapshot {epoch}")))?;
        let diff = if s.text == current.text {
            String::new()
        } else {
            format!(
                "--- epoch {}\n+++ epoch {}\n-{}+{}",
                s.epoch, current.epoch, s.text, current.text
            )
        };
        Ok(
            json!({"epoch": s.epoch, "sha256": format!("{:064x}", s.epoch),
                  "time_unix": 1_700_000_000 + s.epoch, "source": s.source, "note": null,
                  "text": s.text, "diff": diff}),
        )
    }

    fn rollback(&self, epoch: u64, guard: Option<GuardRequest>) -> Result<Value, ApiError> {
        let text = self
            .snaps
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.epoch == epoch)
            .map(|s| s.text.clone())
            .ok_or_else(|| ApiError::not_found(format!("no snapshot {epoch}")))?;
        Ok(self.apply(text, "rollback", guard))
    }

    fn profiles(&self) -> Value {
        json!({"profiles": [{"upstream": "a", "addr": "127.0.0.1:9001", "intent": "",
            "good": {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0, "error_rate": 0.0,
                     "rps": 50.0, "intervals": 40},
            "bad": null, "updated_unix": 1_700_000_000}]})
    }

    fn drain(&self) -> Value {
        self.draining.store(true, Ordering::SeqCst);
        json!({"draining": true})
    }
}

/// A running admin server.
struct Admin {
    addr: SocketAddr,
    backend: Arc<TestBackend>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(reload_ms: u64) -> Admin {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = Arc::new(TestBackend::new(reload_ms));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = admin::start(listener, TOKEN.into(), backend.clone(), stop.clone()).unwrap();
    Admin {
        addr,
        backend,
        stop,
        thread: Some(thread),
    }
}

/// A response read to the end (the server closes after each).
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends raw bytes, reads until the server closes.
fn raw(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&out)))
        + 4;
    let head = String::from_utf8(out[..end].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    Resp {
        status,
        head,
        body: out[end..].to_vec(),
    }
}

/// A request with the right token and an optional body.
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Resp {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n");
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or_default());
    raw(addr, req.as_bytes())
}

#[test]
fn auth_wants_the_bearer_token() {
    let admin = start(0);
    let get = |auth: &str| {
        raw(
            admin.addr,
            format!("GET /api/v1/status HTTP/1.1\r\nHost: a\r\n{auth}\r\n").as_bytes(),
        )
    };
    for (auth, presented) in [
        ("", false),
        ("Authorization: Bearer wrong-token-0123456789\r\n", true),
        ("Authorization: Bearer test-token-012345678\r\n", true),
        ("Authorization: Bearer test-token-01234567890\r\n", true),
        ("Authorization: Basic dGVzdA==\r\n", true),
        ("Authorization: Bearer\r\n", true),
        // Two credentials, one right: refused.
        (
            "Authorization: Bearer x\r\nAuthorization: Bearer test-token-0123456789\r\n",
            true,
        ),
    ] {
        let r = get(auth);
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"dao-admin\"")
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert_eq!(error.starts_with("missing"), !presented, "{error}");
        assert_eq!(r.json()["errors"], json!([]));
    }
    // Unknown paths are not revealed without the token either.
    let r = raw(admin.addr, b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r.status, 401);

    let r = get("Authorization: bearer   test-token-0123456789\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["config_epoch"], 1);
}

#[test]
fn every_endpoint_answers() {
    let admin = start(0);
    let a = admin.addr;
    let r = call(a, "GET", "/api/v1/status", None);
    assert_eq!(
        (r.status, r.header("cache-control")),
        (200, Some("no-store"))
    );
    assert_eq!(r.json()["workers"], 2);
    assert_eq!(
        call(a, "GET", "/api/v1/routes", None).json()["routes"][0]["name"],
        "api"
    );
    assert_eq!(
        call(a, "GET", "/api/v1/upstreams?x=1", None).json()["upstreams"][0]["rps"],
        10.5
    );
    assert_eq!(
        call(a, "GET", "/api/v1/profiles", None).json()["profiles"][0]["good"]["intervals"],
        40
    );

    // Reload: new text, the same text again, an empty body (re-read).
    let r = call(
        a,
        "POST",
        "/api/v1/config/reload",
        Some(
            r#"{"config": "[server]\nworkers = 2\n", "guard": {"window_ms": 30000, "max_5xx_rate": 0.05}}"#,
        ),
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        (v["epoch"].clone(), v["changed"].clone()),
        (json!(2), json!(true))
    );
    assert_eq!(
        v["guard"],
        json!({"window_ms": 30000, "max_5xx_rate": 0.05})
    );
    let r = call(
        a,
        "POST",
        "/api/v1/config/reload",
        Some(r#"{"config": "[server]\nworkers = 2\n"}"#),
    );
    assert_eq!(r.json()["changed"], false);
    let r = call(a, "POST", "/api/v1/config/reload", None);
    assert_eq!((r.status, r.json()["epoch"].clone()), (200, json!(2)));

    let v = call(a, "GET", "/api/v1/snapshots", None).json();
    assert_eq!(v["current"], 2);
    assert_eq!(v["snapshots"].as_array().unwrap().len(), 2);
    let v = call(a, "GET", "/api/v1/snapshots/1", None).json();
    assert_eq!(v["text"], "[server]\nworkers = 1\n");
    assert!(v["diff"].as_str().unwrap().contains("+[server]"));
    let r = call(a, "GET", "/api/v1/snapshots/9", None);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (404, json!("no snapshot 9"))
    );

    let r = call(
        a,
        "POST",
        "/api/v1/snapshots/1/rollback",
        Some(r#"{"guard": {"window_ms": 1000, "max_p99_ms": 250, "min_requests": 10}}"#),
    );
    let v = r.json();
    assert_eq!(
        (v["epoch"].clone(), v["source"].clone()),
        (json!(3), json!("rollback"))
    );
    assert_eq!(v["guard"]["min_requests"], 10);
    let r = call(a, "POST", "/api/v1/snapshots/2/rollback", None);
    assert_eq!(r.json()["epoch"], 4);

    assert!(!admin.backend.draining.load(Ordering::SeqCst));
    let r = call(a, "POST", "/api/v1/drain", None);
    assert_eq!(r.json(), json!({"draining": true}));
    assert!(admin.backend.draining.load(Ordering::SeqCst));
    assert_eq!(
        call(a, "GET", "/api/v1/status", None).json()["draining"],
        true
    );

    // HEAD: the headers of a GET, no body.
    let r = call(a, "HEAD", "/api/v1/routes", None);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
}

#[test]
fn bad_requests_get_clear_errors() {
    let admin = start(0);
    let a = admin.addr;
    let error = |r: &Resp| r.json()["error"].as_str().unwrap().to_string();

    let r = call(a, "GET", "/api/v1/nothing", None);
    assert_eq!(r.status, 404);
    assert!(error(&r).starts_with("no such endpoint: /api/v1/nothing"));

    let r = call(a, "GET", "/api/v1/config/reload", None);
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = call(a, "POST", "/api/v1/status", Some("{}"));
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));

    let r = call(a, "GET", "/api/v1/snapshots/abc", None);
    assert_eq!(r.status, 400);
    assert!(error(&r).starts_with("bad epoch \"abc\""), "{}", error(&r));
    let r = call(
        a,
        "POST",
        "/api/v1/config/reload",
        Some("{\"config\": \"x\""),
    );
    assert_eq!(r.status, 400);
    assert!(error(&r).starts_with("malformed JSON body"));
    let r = call(a, "POST", "/api/v1/config/reload", Some("[]"));
    assert_eq!(r.status, 400);
    assert!(error(&r).starts_with("invalid request body"));

    // Invalid config: 422 and the field errors.
    let r = call(
        a,
        "POST",
        "/api/v1/config/reload",
        Some(r#"{"config": "bad"}"#),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json(),
        json!({"error": "invalid configuration (2 errors)", "errors": [
            {"path": "routes.rule[0].name", "message": "must not be empty"},
            {"path": "server.workers", "message": "0 is out of range 1..=1024"}]})
    );
    // An invalid guard: 422 naming its field.
    let r = call(
        a,
        "POST",
        "/api/v1/config/reload",
        Some(r#"{"guard": {"window_ms": 1000, "max_5xx_rate": 1.5}}"#),
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["errors"][0]["path"], "guard.max_5xx_rate");

    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    // Chunked bodies and bodies without a length: 411.
    let r = raw(
        a,
        format!("POST /api/v1/config/reload HTTP/1.1\r\nHost: a\r\n{auth}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 411);
    let r = raw(
        a,
        format!("POST /api/v1/config/reload HTTP/1.1\r\nHost: a\r\n{auth}\r\n{{\"config\":\"x\"}}")
            .as_bytes(),
    );
    assert_eq!(r.status, 411);
    // Over 1 MiB: 413, whether the body is sent or only announced.
    let big = format!(
        "POST /api/v1/config/reload HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: {}\r\n\r\n",
        admin::MAX_BODY + 1
    );
    assert_eq!(raw(a, big.as_bytes()).status, 413);
    let mut with_body = big.into_bytes();
    with_body.extend(std::iter::repeat_n(b' ', admin::MAX_BODY + 1));
    assert_eq!(raw(a, &with_body).status, 413);
    // Exactly 1 MiB is read (and is valid JSON).
    let mut body = vec![b' '; admin::MAX_BODY - 2];
    body.extend_from_slice(b"{}");
    let mut req = format!(
        "POST /api/v1/config/reload HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    assert_eq!(raw(a, &req).status, 200);

    // Malformed HTTP: 400.
    assert_eq!(raw(a, b"GET /api/v1/status HTTP/1.1\r\n\r\n").status, 400);
    assert_eq!(raw(a, b"NOT HTTP\r\n\r\n").status, 400);

    // A client that gives up half-way does not stop the server.
    drop(TcpStream::connect(a).unwrap().write_all(b"GET /api/v1/sta"));
    assert_eq!(call(a, "GET", "/api/v1/status", None).status, 200);

    // A backend that panics: 500, and the server goes on.
    let r = call(
        a,
        "POST",
        "/api/v1/config/reload",
        Some(r#"{"config": "panic"}"#),
    );
    assert_eq!(r.status, 500);
    assert_eq!(call(a, "GET", "/api/v1/status", None).status, 200);
}

#[test]
fn expect_continue_is_answered() {
    let admin = start(0);
    let body = r#"{"config": "[server]\nworkers = 3\n"}"#;
    let mut s = TcpStream::connect(admin.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /api/v1/config/reload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    assert!(rest.contains("\"epoch\":2"), "{rest}");
}

#[test]
fn reloads_are_served_one_at_a_time() {
    let admin = start(100);
    let addr = admin.addr;
    let clients: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let client = Client::new(&format!("http://{addr}"), Some(TOKEN.into())).unwrap();
                let body = json!({"config": format!("[server]\nworkers = {}\n", i + 2)});
                client.post("/api/v1/config/reload", Some(&body)).unwrap()
            })
        })
        .collect();
    let mut epochs: Vec<u64> = clients
        .into_iter()
        .map(|c| c.join().unwrap()["epoch"].as_u64().unwrap())
        .collect();
    epochs.sort();
    assert_eq!(epochs, [2, 3, 4, 5]);
    assert_eq!(admin.backend.most_in_reload.load(Ordering::SeqCst), 1);
}

#[test]
fn the_server_stops_when_asked() {
    let mut admin = start(0);
    assert_eq!(call(admin.addr, "GET", "/api/v1/status", None).status, 200);
    let thread = admin.thread.take().unwrap();
    assert_eq!(thread.thread().name(), Some("dao-admin"));
    let asked = Instant::now();
    admin.stop.store(true, Ordering::SeqCst);
    thread.join().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    // The listener closed with the thread.
    assert!(TcpStream::connect(admin.addr).is_err());
}

#[test]
fn the_client_reports_refusals_and_unreachable_servers() {
    let admin = start(0);
    let url = format!("http://{}", admin.addr);
    let client = Client::new(&url, Some(TOKEN.into())).unwrap();
    assert_eq!(client.get("/api/v1/status").unwrap()["workers"], 2);
    match client.get("/api/v1/snapshots/7") {
        Err(ClientError::Api(e)) => {
            assert_eq!((e.status, e.message.as_str()), (404, "no snapshot 7"));
        }
        other => panic!("{other:?}"),
    }
    let e = Client::new(&url, None).unwrap().get("/api/v1/status");
    assert!(
        matches!(e, Err(ClientError::Api(ref a)) if a.status == 401),
        "{e:?}"
    );
    assert_eq!(e.unwrap_err().exit_code(), 1);

    let closed = free_port();
    let e = Client::new(&format!("http://{closed}"), None)
        .unwrap()
        .get("/api/v1/status")
        .unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
    assert_eq!(e.exit_code(), 3);
}

/// An address nothing listens on.
fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Runs `daoctl` against `addr` with the token in the environment.
fn daoctl(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_daoctl"))
        .args(args)
        .env("DAO_ADMIN", format!("http://{addr}"))
        .env("DAO_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn daoctl_prints_tables_and_json() {
    let admin = start(0);
    let a = admin.addr;

    let o = daoctl(a, &["status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("version:      0.1.0\nuptime:       12s\nconfig epoch: 1\n"),
        "{out}"
    );

    let o = daoctl(a, &["routes"]);
    assert_eq!(
        stdout(&o),
        "NAME  HOST  PATH  POLICY    UPSTREAMS\napi   *     /     resonant  a,b\n"
    );

    let o = daoctl(a, &["upstreams"]);
    let out = stdout(&o);
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("ROUTE  UPSTREAM  ADDR"),
        "{out}"
    );
    assert!(out.contains("127.0.0.1:9001"), "{out}");

    let o = daoctl(a, &["--json", "profiles"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["profiles"][0]["upstream"], "a");
    assert!(stdout(&o).contains("\n  \"profiles\""), "pretty-printed");

    // Reload a file with a guard, then diff and roll back.
    let dir = std::env::temp_dir().join(format!("dao-admin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("new.toml");
    std::fs::write(&file, "[server]\nworkers = 4\n").unwrap();
    let o = daoctl(
        a,
        &[
            "reload",
            "--file",
            file.to_str().unwrap(),
            "--guard-window",
            "30s",
            "--max-5xx-rate",
            "5%",
            "--max-p99",
            "250ms",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "applied epoch 2 (source api, sha256 {})\n\
             guard: for 30s, rolls back on 5xx rate over 5.00% or p99 over 250ms\n",
            &format!("{:064x}", 2)[..12]
        )
    );
    let snaps = stdout(&daoctl(a, &["snapshots"]));
    assert!(
        snaps.lines().nth(2).unwrap().starts_with("*      2"),
        "{snaps}"
    );
    let o = daoctl(a, &["diff", "1"]);
    assert_eq!(
        stdout(&o),
        "--- epoch 1\n+++ epoch 2\n-[server]\nworkers = 1\n+[server]\nworkers = 4\n"
    );
    let o = daoctl(a, &["diff", "2"]);
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains("snapshot 2 is the same"),
        "{}",
        stderr(&o)
    );
    let o = daoctl(a, &["rollback", "1"]);
    assert!(
        stdout(&o).starts_with("applied epoch 3 (source rollback"),
        "{}",
        stdout(&o)
    );
    let o = daoctl(a, &["reload"]);
    assert_eq!(
        stdout(&o),
        "no change: the configuration is the one of epoch 3\n"
    );
    let o = daoctl(a, &["drain"]);
    assert!(stdout(&o).starts_with("draining: "), "{}", stdout(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn daoctl_errors_exit_non_zero() {
    let admin = start(0);
    let a = admin.addr;
    let dir = std::env::temp_dir().join(format!("dao-admin-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "bad").unwrap();

    // An invalid config: exit 1, each field error on its own line.
    let o = daoctl(a, &["reload", "--file", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "daoctl: invalid configuration (2 errors) (HTTP 422)\n  \
         routes.rule[0].name: must not be empty\n  \
         server.workers: 0 is out of range 1..=1024\n"
    );
    assert_eq!(stdout(&o), "");
    let o = daoctl(a, &["rollback", "42"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "daoctl: no snapshot 42 (HTTP 404)\n");

    // A wrong token: exit 1.
    let o = daoctl(a, &["--token", "not-the-token-at-all", "status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("daoctl: invalid bearer token (HTTP 401)"));

    // Usage: exit 2 (a missing file, a bad flag, a threshold without window).
    let missing = dir.join("missing.toml");
    let o = daoctl(a, &["reload", "--file", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(daoctl(a, &["diff", "x"]).status.code(), Some(2));
    assert_eq!(
        daoctl(a, &["reload", "--max-p99", "1s"]).status.code(),
        Some(2)
    );
    assert_eq!(
        daoctl(a, &["reload", "--guard-window", "1s"]).status.code(),
        Some(2)
    );
    assert_eq!(
        daoctl(a, &["--admin", "https://127.0.0.1:1", "status"])
            .status
            .code(),
        Some(2)
    );

    // Nothing listening: exit 3.
    let closed = free_port();
    let o = daoctl(a, &["--admin", &format!("http://{closed}"), "status"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).starts_with(&format!(
            "daoctl: cannot connect to the admin API at {closed}"
        )),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
