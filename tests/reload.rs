//! Hot reload end to end: configs applied under constant load lose no
//! request and reset no connection; bad configs are refused and the
//! running one keeps serving; in-flight requests finish on the config they
//! started with; snapshots, rollback, the watched file, guarded reloads and
//! service profiles.
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{respond, After, Backend, Client, Server};
use dao::runtime::Options;

/// A config with `workers` workers and one route "all" over `backends`
/// (name, address, weight), plus `extra` top-level TOML.
fn text(workers: usize, extra: &str, backends: &[(&str, SocketAddr, u32)]) -> String {
    let mut t = format!(
        "[server]\nbind = \"127.0.0.1:0\"\nworkers = {workers}\n{extra}\n\
         [[routes.rule]]\nname = \"all\"\npolicy = \"weighted\"\n"
    );
    for (name, addr, weight) in backends {
        t += &format!(
            "[[routes.rule.upstreams]]\nname = \"{name}\"\nurl = \"http://{addr}\"\nweight = {weight}\n"
        );
    }
    t
}

fn start(text: &str, state_dir: Option<&PathBuf>, path: Option<PathBuf>) -> Server {
    let text = match state_dir {
        Some(d) => format!("[memory]\nstate_dir = \"{}\"\n{text}", d.display()),
        None => text.to_string(),
    };
    let config = dao::memory::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Server::start_opts(
        config,
        Options {
            config_path: path,
            ..Options::default()
        },
    )
    .unwrap()
}

/// A fresh directory under the system's temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dao-reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Bodies of `n` requests on fresh connections.
fn bodies(addr: SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| Client::connect(addr).get("/").text())
        .collect()
}

/// Waits until every one of 10 fresh requests answers `body`.
fn until_all(addr: SocketAddr, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = bodies(addr, 10);
        if got.iter().all(|b| b == body) {
            return;
        }
        assert!(Instant::now() < deadline, "still {got:?}, wanted {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Load on DAO from client threads until `stop`: half on kept-alive
/// connections, half on a new connection per request. Returns (ok,
/// failed) counters.
fn load(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> (
    Vec<std::thread::JoinHandle<()>>,
    Arc<AtomicU64>,
    Arc<AtomicU64>,
) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for t in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        threads.push(std::thread::spawn(move || {
            let keep = t % 2 == 0;
            let mut c = Client::connect(addr);
            while !stop.load(Ordering::Relaxed) {
                if !keep {
                    c = Client::connect(addr);
                }
                c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
                match c.try_read(false) {
                    Some(r) if r.status == 200 && (r.body == b"a" || r.body == b"b") => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        c = Client::connect(addr);
                    }
                }
            }
        }));
    }
    (threads, ok, failed)
}

#[test]
fn reloads_under_load_lose_nothing() {
    let a = Backend::text("a");
    let b = Backend::text("b");
    let server = start(&text(2, "", &[("a", a.addr, 1)]), None, None);
    let addr = server.local_addr();
    let reloads = server.reloads();
    let stop = Arc::new(AtomicBool::new(false));
    let (threads, ok, failed) = load(addr, stop.clone());
    let configs = [
        text(2, "", &[("b", b.addr, 1)]),
        text(2, "", &[("a", a.addr, 3), ("b", b.addr, 1)]),
        text(2, "[proxy]\npool_max_idle = 4\n", &[("a", a.addr, 1), ("b", b.addr, 5)]),
        text(2, "", &[("b2", b.addr, 1)]) + "\n[[routes.rule]]\nname = \"other\"\n[routes.rule.match]\nhost = \"other.test\"\n[[routes.rule.upstreams]]\nname = \"a\"\nurl = \"http://" + &a.addr.to_string() + "\"\n",
        text(2, "", &[("a", a.addr, 1)]),
    ];
    let mut epochs = Vec::new();
    for i in 0..30 {
        let v = reloads
            .reload(Some(configs[i % configs.len()].clone()))
            .unwrap_or_else(|e| panic!("reload {i}: {} {:?}", e.message, e.errors));
        epochs.push(v["epoch"].as_u64().unwrap());
        std::thread::sleep(Duration::from_millis(60));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed of {}", ok + failed);
    assert!(ok > 200, "only {ok} requests");
    assert!(epochs.windows(2).all(|w| w[1] > w[0]), "{epochs:?}");
    // The last config has only "a".
    until_all(addr, "a");
    let v = reloads.reload(Some(configs[0].clone())).unwrap();
    assert_eq!(v["changed"], true);
    until_all(addr, "b");
    server.shutdown();
}

#[test]
fn bad_configs_are_refused_and_the_running_one_serves() {
    let a = Backend::text("a");
    let server = start(&text(1, "", &[("a", a.addr, 1)]), None, None);
    let addr = server.local_addr();
    let reloads = server.reloads();
    let before = reloads.reload(None);
    let e = before.unwrap_err();
    assert_eq!(e.status, 400, "no file to read: {}", e.message);

    let e = reloads
        .reload(Some(
            text(1, "", &[("a", a.addr, 0)]).replace("weight = 0", "weight = -3"),
        ))
        .unwrap_err();
    assert_eq!(e.status, 422);
    assert!(
        e.errors
            .iter()
            .any(|f| f.path == "routes.rule[0].upstreams[0].weight"),
        "{:?}",
        e.errors
    );
    let e = reloads
        .reload(Some("[server\nbind = 1".into()))
        .unwrap_err();
    assert_eq!(e.status, 422, "{}", e.message);
    // Fields that need a restart are named.
    let e = reloads
        .reload(Some(text(
            2,
            "[telemetry]\nmerge_interval_ms = 50\n",
            &[("a", a.addr, 1)],
        )))
        .unwrap_err();
    let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["server.workers", "telemetry"], "{}", e.message);
    assert_eq!(bodies(addr, 5), vec!["a"; 5]);
    // The same text again changes nothing.
    let same = reloads
        .reload(Some(text(1, "", &[("a", a.addr, 1)])))
        .unwrap();
    assert_eq!(same["changed"], false);
    server.shutdown();
}

#[test]
fn in_flight_requests_finish_on_their_config() {
    let slow = Backend::start(|_, s| {
        std::thread::sleep(Duration::from_millis(800));
        respond(s, 200, &[], b"slow");
        After::KeepAlive
    });
    let fast = Backend::text("b");
    let server = start(&text(1, "", &[("slow", slow.addr, 1)]), None, None);
    let addr = server.local_addr();
    let mut kept = Client::connect(addr);
    kept.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));
    // The slow upstream is removed while the request is in flight.
    server
        .reloads()
        .reload(Some(text(1, "", &[("b", fast.addr, 1)])))
        .unwrap();
    let r = kept.read(false);
    assert_eq!((r.status, r.text().as_str()), (200, "slow"));
    // The same kept-alive connection moves to the new config.
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(kept.get("/").text(), "b");
    server.shutdown();
}

#[test]
fn the_listener_moves_with_server_bind() {
    let a = Backend::text("a");
    let server = start(&text(2, "", &[("a", a.addr, 1)]), None, None);
    let old = server.local_addr();
    // A port free now (bound then released by this test).
    let new = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut kept = Client::connect(old);
    assert_eq!(kept.get("/").text(), "a");
    let moved = text(2, "", &[("a", a.addr, 1)]).replace("127.0.0.1:0", &new.to_string());
    server.reloads().reload(Some(moved)).unwrap();
    until_all(new, "a");
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(old).is_ok() {
        assert!(Instant::now() < deadline, "the old address still accepts");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Connections accepted before the move keep being served.
    assert_eq!(kept.get("/").text(), "a");
    // Binding an address in use is refused and changes nothing.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let clash = text(2, "", &[("a", a.addr, 1)])
        .replace("127.0.0.1:0", &taken.local_addr().unwrap().to_string());
    let e = server.reloads().reload(Some(clash)).unwrap_err();
    assert_eq!(e.errors[0].path, "server.bind", "{}", e.message);
    until_all(new, "a");
    server.shutdown();
}

#[test]
fn snapshots_roll_back_and_survive_restarts() {
    let a = Backend::text("a");
    let b = Backend::text("b");
    let dir = temp_dir("snapshots");
    let server = start(&text(1, "", &[("a", a.addr, 1)]), Some(&dir), None);
    let addr = server.local_addr();
    let reloads = server.reloads();
    let memory = format!("[memory]\nstate_dir = \"{}\"\n", dir.display());
    let with_b = memory.clone() + &text(1, "", &[("b", b.addr, 1)]);
    let v = reloads.reload(Some(with_b)).unwrap();
    let second = v["epoch"].as_u64().unwrap();
    until_all(addr, "b");
    use dao::admin::Backend as _;
    let list = reloads.snapshots();
    let snaps = list["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 2, "{list}");
    let first = snaps[0]["epoch"].as_u64().unwrap();
    assert_eq!(snaps[0]["source"], "start");
    assert_eq!(snaps[1]["source"], "api");
    assert_eq!(list["current"].as_u64(), Some(second));
    let one = reloads.snapshot(first).unwrap();
    let diff = one["diff"].as_str().unwrap();
    assert!(
        diff.contains(&format!("-url = \"http://{}\"", a.addr)),
        "{diff}"
    );
    assert!(
        diff.contains(&format!("+url = \"http://{}\"", b.addr)),
        "{diff}"
    );
    let back = reloads.rollback(first, None).unwrap();
    assert_eq!(back["source"], "rollback");
    let third = back["epoch"].as_u64().unwrap();
    assert!(third > second);
    until_all(addr, "a");
    assert_eq!(reloads.rollback(9999, None).unwrap_err().status, 404);
    server.shutdown();

    // A damaged file is skipped with a warning; epochs go on.
    std::fs::write(dir.join("snapshots").join("garbage.json"), b"{not json").unwrap();
    let server = start(&text(1, "", &[("a", a.addr, 1)]), Some(&dir), None);
    let list = server.reloads().snapshots();
    let epochs: Vec<u64> = list["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs.len(), 4, "{list}");
    assert!(*epochs.last().unwrap() > third, "{epochs:?}");
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_config_file_is_watched() {
    let a = Backend::text("a");
    let b = Backend::text("b");
    let dir = temp_dir("watch");
    let path = dir.join("dao.toml");
    std::fs::write(&path, text(1, "", &[("a", a.addr, 1)])).unwrap();
    let config = dao::memory::load_file(&path).unwrap();
    let server = Server::start_opts(
        config,
        Options {
            config_path: Some(path.clone()),
            ..Options::default()
        },
    )
    .unwrap();
    let addr = server.local_addr();
    assert_eq!(bodies(addr, 3), vec!["a"; 3]);
    // Same length, new content: the watch also looks at the time.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, text(1, "", &[("b", b.addr, 1)])).unwrap();
    until_all(addr, "b");
    // A broken edit is refused; the running config stays.
    std::fs::write(&path, "[[routes.rule]]\nname = 3\n").unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(bodies(addr, 3), vec!["b"; 3]);
    use dao::admin::Backend as _;
    let status = server.reloads().status();
    assert_eq!(status["last_reload"]["result"], "rejected", "{status}");
    assert_eq!(status["last_reload"]["source"], "file", "{status}");
    // Re-reading through the API takes the file as it is now.
    std::fs::write(&path, text(1, "", &[("a", a.addr, 1)])).unwrap();
    let v = server.reloads().reload(None).unwrap();
    assert!(v["epoch"].as_u64().is_some());
    until_all(addr, "a");
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_guarded_reload_rolls_back_by_itself() {
    let good = Backend::text("a");
    let bad = Backend::start(|_, s| {
        respond(s, 503, &[], b"down");
        After::KeepAlive
    });
    let extra = "[telemetry]\nmerge_interval_ms = 100\n";
    let server = start(&text(1, extra, &[("a", good.addr, 1)]), None, None);
    let addr = server.local_addr();
    let reloads = server.reloads();
    use dao::admin::{Backend as _, GuardRequest, ReloadRequest};
    let guarded = ReloadRequest {
        config: Some(text(1, extra, &[("bad", bad.addr, 1)])),
        guard: Some(GuardRequest {
            window_ms: 20_000,
            max_5xx_rate: Some(0.2),
            max_p99_ms: None,
            min_requests: Some(10),
        }),
    };
    let v = dao::admin::Backend::reload(&reloads, guarded).unwrap();
    let bad_epoch = v["epoch"].as_u64().unwrap();
    assert_eq!(v["guard"]["max_5xx_rate"], 0.2);
    // Traffic shows the new config failing; DAO goes back to the last one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = bodies(addr, 5);
        if got.iter().all(|b| b == "a")
            && reloads.status()["config_epoch"].as_u64() > Some(bad_epoch)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rollback: {}",
            reloads.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = reloads.status();
    assert_eq!(status["guard"]["state"], "failed", "{status}");
    assert_eq!(status["guard"]["epoch"].as_u64(), Some(bad_epoch));
    let snaps = reloads.snapshots();
    let last = snaps["snapshots"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["source"], "guard", "{snaps}");
    assert!(last["note"].as_str().unwrap().contains("5xx"), "{last}");
    server.shutdown();
}

#[test]
fn profiles_are_learned_saved_and_loaded() {
    let a = Backend::text("a");
    let dir = temp_dir("profiles");
    let extra = "[telemetry]\nmerge_interval_ms = 100\n";
    let config = text(1, extra, &[("a", a.addr, 1)]);
    let server = start(&config, Some(&dir), None);
    let addr = server.local_addr();
    let mut c = Client::connect(addr);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert_eq!(c.get("/").status, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    use dao::admin::Backend as _;
    let p = server.reloads().profiles();
    let one = &p["profiles"][0];
    assert_eq!(one["upstream"], "a", "{p}");
    assert_eq!(one["addr"], a.addr.to_string());
    assert!(one["good"]["rps"].as_f64().unwrap() > 0.0, "{p}");
    server.shutdown();
    assert!(dir.join("profiles.json").exists());
    // The next start knows it before any request.
    let server = start(&config, Some(&dir), None);
    let p = server.reloads().profiles();
    assert_eq!(p["profiles"][0]["upstream"], "a", "{p}");
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn daoctl_drives_the_running_server_through_the_admin_api() {
    let a = Backend::text("a");
    let b = Backend::text("b");
    let token = "reload-test-token-0123";
    let admin = format!("[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{token}\"\n");
    let server = start(&text(1, &admin, &[("a", a.addr, 1)]), None, None);
    let addr = server.local_addr();
    let url = format!("http://{}", server.admin_addr().expect("admin listener"));
    let daoctl = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_daoctl"))
            .args(["--admin", &url, "--token", token])
            .args(args)
            .output()
            .unwrap()
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = daoctl(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let status = json(&["status"]);
    let first = status["config_epoch"].as_u64().unwrap();
    assert_eq!(status["workers"], 1);
    assert_eq!(status["listen"][0], addr.to_string());

    let dir = temp_dir("daoctl");
    let file = dir.join("b.toml");
    std::fs::write(&file, text(1, &admin, &[("b", b.addr, 1)])).unwrap();
    let out = daoctl(&["reload", "--file", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until_all(addr, "b");
    let ups = daoctl(&["upstreams"]);
    let table = String::from_utf8_lossy(&ups.stdout);
    assert!(table.contains(&b.addr.to_string()), "{table}");
    let routes = json(&["routes"]);
    assert_eq!(routes["routes"][0]["upstreams"][0], "b");
    let snaps = json(&["snapshots"]);
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 2, "{snaps}");
    let diff = daoctl(&["diff", &first.to_string()]);
    let diff = String::from_utf8_lossy(&diff.stdout);
    assert!(
        diff.contains(&format!("+url = \"http://{}\"", b.addr)),
        "{diff}"
    );

    let out = daoctl(&["rollback", &first.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until_all(addr, "a");

    // A bad config: exit 1, the field named, the running config kept.
    std::fs::write(
        &file,
        text(1, &admin, &[("b", b.addr, 1)]).replace("weight = 1", "weight = 0"),
    )
    .unwrap();
    let out = daoctl(&["reload", "--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("routes.rule[0].upstreams[0].weight"), "{err}");
    assert_eq!(bodies(addr, 3), vec!["a"; 3]);
    // The admin section itself cannot change while running.
    let other = admin.replace(token, "another-token-0123456789");
    std::fs::write(&file, text(1, &other, &[("a", a.addr, 1)])).unwrap();
    let out = daoctl(&["reload", "--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin:"));
    // A wrong token is refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_daoctl"))
        .args([
            "--admin",
            &url,
            "--token",
            "wrong-token-but-long-enough",
            "status",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // Drain: DAO stops accepting, finishes, and stops.
    let drained = json(&["drain"]);
    assert_eq!(drained["draining"], true);
    server.wait();
    assert!(TcpStream::connect(addr).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
