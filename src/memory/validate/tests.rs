//! Validation tests: good configs load, bad ones name the field.

use super::*;
use crate::align::retry::RetryOn;
use crate::memory::LogDestination;

const GOOD: &str = r#"
[server]
bind = "127.0.0.1:0"
workers = 2
header_read_timeout = "5s"

[proxy]
connect_timeout = "250ms"
pool_max_idle = 8

[[routes.rule]]
name = "api"
policy = "weighted"
intent = "realtime"
  [routes.rule.match]
  host = "*.Example.com"
  path_prefix = "/v1/"
  methods = ["get", "POST"]
  headers = { "X-Tenant" = "a" }
  [[routes.rule.upstreams]]
  name = "a"
  url = "http://127.0.0.1:8081"
  weight = 3
  intent = ["realtime"]
  [[routes.rule.upstreams]]
  name = "b"
  url = "http://127.0.0.1:8082/"
  [routes.rule.filters]
  request_headers_add = { "X-DAO-Gateway" = "true" }

[[routes.rule]]
name = "rest"
  [[routes.rule.upstreams]]
  name = "a"
  url = "http://127.0.0.1:8081"
"#;

fn errors(text: &str) -> Vec<String> {
    parse(text)
        .expect_err("should fail")
        .errors
        .into_iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect()
}

#[test]
fn good_config_loads() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.server.workers, 2);
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(5));
    assert_eq!(c.server.max_header_bytes, 64 * 1024);
    assert_eq!(c.proxy.connect_timeout, Duration::from_millis(250));
    assert_eq!(c.routes.len(), 2);
    let api = &c.routes[0];
    assert_eq!(api.policy, Policy::Weighted);
    assert_eq!(api.host, HostMatch::Suffix(".example.com".into()));
    assert_eq!(api.methods, ["GET", "POST"]);
    assert_eq!(api.headers, [("x-tenant".to_string(), "a".to_string())]);
    assert_eq!(api.upstreams[0].weight, 3);
    assert_eq!(api.upstreams[1].authority, "127.0.0.1:8082");
    assert_eq!(api.request_headers, b"X-DAO-Gateway: true\r\n");
    // Same address, same pool.
    assert_eq!(c.pools.len(), 2);
    assert_eq!(c.routes[1].upstreams[0].pool, api.upstreams[0].pool);
}

#[test]
fn not_supported_yet_names_the_field() {
    let text = GOOD.replace("policy = \"weighted\"", "policy = \"resonant\"")
        + "\n[policies.resonant]\nw_load = 0.6\n";
    let text = text.replace(
        "request_headers_add = { \"X-DAO-Gateway\" = \"true\" }",
        "request_headers_add = { \"X-DAO-Gateway\" = \"true\" }\n  rate_limit_rps = 1000",
    );
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e
                .starts_with("routes.rule[0].policy: policy \"resonant\" is not supported yet")),
        "{errs:?}"
    );
    assert!(
        errs.contains(&"routes.rule[0].filters.rate_limit_rps: not supported yet".to_string()),
        "{errs:?}"
    );
    assert!(
        errs.contains(&"policies.resonant: not supported yet".to_string()),
        "{errs:?}"
    );
}

#[test]
fn telemetry_defaults_and_values() {
    let c = parse(GOOD).unwrap();
    let t = &c.telemetry;
    assert!(t.enabled && t.request_id);
    assert_eq!(t.merge_interval, Duration::from_millis(200));
    assert_eq!(t.window, Duration::from_secs(10));
    assert_eq!(t.prometheus_bind, None);
    assert_eq!(t.access_log, None);
    let text = GOOD.to_string()
        + "\n[telemetry]\nmerge_interval_ms = 100\nwindow = \"5s\"\nprometheus_bind = \"127.0.0.1:0\"\n\
           access_log = true\naccess_log_path = \"/tmp/x.log\"\nrequest_id = false\n";
    let t = parse(&text).unwrap().telemetry;
    assert_eq!(t.merge_interval, Duration::from_millis(100));
    assert_eq!(t.window, Duration::from_secs(5));
    assert_eq!(t.prometheus_bind, Some("127.0.0.1:0".parse().unwrap()));
    assert_eq!(
        t.access_log,
        Some(LogDestination::File("/tmp/x.log".into()))
    );
    assert!(!t.request_id);
    let on = GOOD.to_string() + "\n[telemetry]\naccess_log = true\n";
    assert_eq!(
        parse(&on).unwrap().telemetry.access_log,
        Some(LogDestination::Stdout)
    );
}

#[test]
fn telemetry_errors_name_their_fields() {
    let text = GOOD.to_string()
        + "\n[telemetry]\nenabled = false\nmerge_interval_ms = 5\nwindow = \"1s\"\n\
           prometheus_bind = \"127.0.0.1:0\"\nqueue_ref = 0\n";
    let errs = errors(&text);
    for path in [
        "telemetry.merge_interval_ms: 5 is out of range",
        "telemetry.prometheus_bind: needs telemetry.enabled = true",
        "telemetry.queue_ref: 0 is out of range",
    ] {
        assert!(errs.iter().any(|e| e.starts_with(path)), "{path}: {errs:?}");
    }
    let short = GOOD.to_string() + "\n[telemetry]\nwindow = \"1s\"\n";
    assert!(
        errors(&short)
            .iter()
            .any(|e| e.starts_with("telemetry.window: must be at least 10 merge intervals")),
        "{:?}",
        errors(&short)
    );
    let unknown = GOOD.to_string() + "\n[telemetry]\nprometheus = 1\n";
    assert!(errors(&unknown)[0].contains("unknown field `prometheus`"));
}

#[test]
fn bad_values_name_their_fields() {
    let text = GOOD
        .replace("\"5s\"", "\"soon\"")
        .replace("workers = 2", "workers = 0")
        .replace("http://127.0.0.1:8082/", "ftp://x")
        .replace("weight = 3", "weight = 0")
        .replace("\"/v1/\"", "\"v1\"");
    let errs = errors(&text);
    for path in [
        "server.header_read_timeout: invalid duration",
        "server.workers: 0 is out of range",
        "routes.rule[0].upstreams[1].url: \"ftp://x\" must start with http://",
        "routes.rule[0].upstreams[0].weight: 0 is out of range",
        "routes.rule[0].match.path_prefix: must start with '/'",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(path)),
            "missing {path} in {errs:?}"
        );
    }
}

#[test]
fn unknown_keys_and_syntax_are_rejected() {
    let errs = errors(&GOOD.replace("workers = 2", "wrokers = 2"));
    assert!(errs[0].contains("wrokers"), "{errs:?}");
    let errs = errors(&GOOD.replace("request_headers_add", "request_header_add"));
    assert!(errs
        .iter()
        .any(|e| e.starts_with("routes.rule[0].filters.request_header_add: unknown filter")));
    let errs = errors("[server\n");
    assert!(errs[0].contains("line 1"), "{errs:?}");
}

#[test]
fn structural_rules() {
    let errs = errors("[server]\nbind = \"127.0.0.1:0\"\n");
    assert!(errs
        .iter()
        .any(|e| e.starts_with("routes.rule: at least one")));
    let dup = "[[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n";
    let errs = errors(&format!("{dup}{dup}"));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("routes.rule[1].name: duplicate")),
        "{errs:?}"
    );
    let errs = errors(&dup.replace(
        "url = \"http://127.0.0.1:1\"",
        "url = \"http://127.0.0.1:1\"\nweight = 2",
    ));
    assert!(
        errs.iter().any(|e| e.contains("weights apply only")),
        "{errs:?}"
    );
    let errs = errors(&format!("{dup}[server]\ntls_cert = \"c.pem\"\n"));
    assert!(
        errs.contains(&"server.tls_cert: not supported yet".to_string()),
        "{errs:?}"
    );
    let errs = errors(&dup.replace(
        "name = \"r\"",
        "name = \"r\"\n[routes.rule.match]\nhost = \"a.com:80\"",
    ));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("routes.rule[0].match.host")),
        "{errs:?}"
    );
}

#[test]
fn every_file_in_configs_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "expected the example configs in {}", dir.display());
}

const RETRY_ROUTE: &str = "[[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n";

#[test]
fn retry_and_breaker_defaults_and_values() {
    let c = parse(RETRY_ROUTE).unwrap();
    assert_eq!(c.routes[0].retry, None);
    assert_eq!(c.routes[0].circuit_breaker, None);
    let text = format!("{RETRY_ROUTE}[routes.rule.retry]\n[routes.rule.circuit_breaker]\n");
    let c = parse(&text).unwrap();
    let r = c.routes[0].retry.as_ref().unwrap();
    assert_eq!(
        (
            r.attempts,
            r.per_try_timeout,
            r.budget_percent,
            r.budget_min
        ),
        (1, None, 20, 3)
    );
    assert_eq!(r.on, RetryOn::DEFAULT);
    let b = c.routes[0].circuit_breaker.unwrap();
    assert_eq!(
        (b.max_connections, b.max_pending, b.max_requests),
        (1024, 1024, 1024)
    );
    let text = format!(
        "{RETRY_ROUTE}[routes.rule.retry]\nattempts = 5\nper_try_timeout = \"250ms\"\n\
         on = [\"timeout\", \"5xx\", \"retriable-4xx\"]\nbudget_percent = 0\nbudget_min = 1\n\
         [routes.rule.circuit_breaker]\nmax_connections = 10\nmax_pending = 2\nmax_requests = 7\n"
    );
    let c = parse(&text).unwrap();
    let r = c.routes[0].retry.as_ref().unwrap();
    assert_eq!(r.attempts, 5);
    assert_eq!(r.per_try_timeout, Some(Duration::from_millis(250)));
    assert_eq!(
        r.on,
        RetryOn::TIMEOUT
            .with(RetryOn::STATUS_5XX)
            .with(RetryOn::RETRIABLE_4XX)
    );
    assert_eq!((r.budget_percent, r.budget_min), (0, 1));
    let b = c.routes[0].circuit_breaker.unwrap();
    assert_eq!(
        (b.max_connections, b.max_pending, b.max_requests),
        (10, 2, 7)
    );
}

#[test]
fn retry_and_breaker_errors_name_their_fields() {
    let text = format!(
        "{RETRY_ROUTE}[routes.rule.retry]\nattempts = 6\nper_try_timeout = \"0s\"\n\
         on = [\"reset\", \"5xx-ish\"]\nbudget_percent = 101\nbudget_min = -1\n\
         [routes.rule.circuit_breaker]\nmax_connections = 0\nmax_pending = 1000001\n"
    );
    let errs = errors(&text);
    for path in [
        "routes.rule[0].retry.attempts: 6 is out of range 0..=5",
        "routes.rule[0].retry.per_try_timeout: must be greater than zero",
        "routes.rule[0].retry.on[1]: unknown condition \"5xx-ish\"",
        "routes.rule[0].retry.budget_percent: 101 is out of range",
        "routes.rule[0].retry.budget_min: -1 is out of range",
        "routes.rule[0].circuit_breaker.max_connections: 0 is out of range",
        "routes.rule[0].circuit_breaker.max_pending: 1000001 is out of range",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(path)),
            "missing {path} in {errs:?}"
        );
    }
    let none = format!("{RETRY_ROUTE}[routes.rule.retry]\non = []\n");
    assert!(errors(&none)[0].starts_with("routes.rule[0].retry.on: must name at least one"));
    let never = format!("{RETRY_ROUTE}[routes.rule.retry]\nbudget_percent = 0\nbudget_min = 0\n");
    assert!(
        errors(&never)[0].starts_with("routes.rule[0].retry.budget_min: with budget_percent = 0"),
        "{:?}",
        errors(&never)
    );
    let bad_time = format!("{RETRY_ROUTE}[routes.rule.retry]\nper_try_timeout = \"soon\"\n");
    assert!(errors(&bad_time)[0].starts_with("routes.rule[0].retry.per_try_timeout: invalid"));
    for (table, key) in [("retry", "attempt"), ("circuit_breaker", "max_request")] {
        let unknown = format!("{RETRY_ROUTE}[routes.rule.{table}]\n{key} = 1\n");
        let errs = errors(&unknown);
        assert!(
            errs[0].contains(&format!("unknown field `{key}`")),
            "{errs:?}"
        );
    }
}
