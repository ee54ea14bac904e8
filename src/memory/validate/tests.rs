//! Validation tests: good configs load, bad ones name the field.

use super::*;
use crate::align::retry::RetryOn;
use crate::memory::{LogDestination, UpstreamProtocol};

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
    assert_eq!(c.server.h2_max_concurrent_streams, 128);
    assert_eq!(c.proxy.connect_timeout, Duration::from_millis(250));
    assert_eq!(c.routes.len(), 2);
    let api = &c.routes[0];
    assert_eq!(api.policy, Policy::Weighted);
    assert_eq!(api.host, HostMatch::Suffix(".example.com".into()));
    assert_eq!(api.methods, ["GET", "POST"]);
    assert_eq!(api.headers, [("x-tenant".to_string(), "a".to_string())]);
    assert_eq!(api.upstreams[0].weight, 3);
    assert_eq!(api.upstreams[1].authority, "127.0.0.1:8082");
    assert_eq!(
        api.filters,
        [crate::flow::FilterSpec::Headers(
            crate::flow::spec::HeaderRules {
                request: crate::flow::spec::HeaderEdits {
                    add: vec![(
                        "X-DAO-Gateway".into(),
                        crate::flow::spec::Template::parse("true", false).unwrap()
                    )],
                    ..Default::default()
                },
                ..Default::default()
            }
        )]
    );
    // Same address, same pool.
    assert_eq!(c.pools.len(), 2);
    assert_eq!(c.routes[1].upstreams[0].pool, api.upstreams[0].pool);
}

#[test]
fn https_upstreams_take_tls_settings_and_pool_apart() {
    // verify = false needs no trust anchors: nothing else to set up.
    let text = GOOD.replacen(
        "url = \"http://127.0.0.1:8082/\"",
        "url = \"https://127.0.0.1:8082/\"\n  protocol = \"h2\"\n  tls = { verify = false, server_name = \"api.internal\" }",
        1,
    );
    let c = parse(&text).unwrap();
    let up = &c.routes[0].upstreams[1];
    assert_eq!(up.protocol, UpstreamProtocol::H2);
    let tls = up.tls.as_ref().expect("https means TLS");
    assert!(!tls.verify);
    assert_eq!(tls.client.alpn_protocols, vec![b"h2".to_vec()]);
    assert!(
        tls.settings.contains("name=api.internal"),
        "{}",
        tls.settings
    );
    assert_eq!(up.authority, "127.0.0.1:8082");
    // The same address in cleartext would be another pool.
    assert!(c.pools[up.pool].tls.is_some());
    let plain = crate::memory::PoolKey {
        addr: up.addr,
        tls: None,
    };
    assert!(c.pools[up.pool] != plain);
    assert!(c.routes[0].upstreams[0].tls.is_none());
    // https:// without a port is 443.
    let text = GOOD.replacen(
        "url = \"http://127.0.0.1:8082/\"",
        "url = \"https://127.0.0.1\"\n  tls = { verify = false }",
        1,
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.routes[0].upstreams[1].addr.port(), 443);
    assert_eq!(
        c.routes[0].upstreams[1]
            .tls
            .as_ref()
            .unwrap()
            .client
            .alpn_protocols,
        vec![b"http/1.1".to_vec()]
    );
}

#[test]
fn upstream_tls_errors_name_the_field() {
    let with = |url: &str, rest: &str| {
        GOOD.replacen(
            "url = \"http://127.0.0.1:8082/\"",
            &format!("url = \"{url}\"\n  {rest}"),
            1,
        )
    };
    let field = "routes.rule[0].upstreams[1]";
    let cases = [
        (
            with("http://127.0.0.1:8082", "tls = { verify = false }"),
            format!("{field}.tls: applies to https:// upstreams only"),
        ),
        (
            with("https://127.0.0.1:8082", "protocol = \"h2c\""),
            format!("{field}.protocol: \"h2c\" is HTTP/2 in cleartext"),
        ),
        (
            with("http://127.0.0.1:8082", "protocol = \"h2\""),
            format!("{field}.protocol: \"h2\" is HTTP/2 over TLS"),
        ),
        (
            with(
                "https://127.0.0.1:8082",
                "tls = { verify = false, ca = \"ca.pem\" }",
            ),
            format!("{field}.tls.ca: has no use with verify = false"),
        ),
        (
            with(
                "https://127.0.0.1:8082",
                "tls = { verify = false, cert = \"c.pem\" }",
            ),
            format!("{field}.tls.key: cert needs its key"),
        ),
        (
            with(
                "https://127.0.0.1:8082",
                "tls = { ca = \"/nonexistent/ca.pem\" }",
            ),
            format!("{field}.tls.ca: cannot read /nonexistent/ca.pem"),
        ),
        (
            with(
                "https://127.0.0.1:8082",
                "tls = { verify = false, server_name = \"bad name!\" }",
            ),
            format!("{field}.tls.server_name: \"bad name!\" is not a DNS name"),
        ),
        (
            with(
                "https://127.0.0.1:8082",
                "tls = { verify = false, min_version = \"1.1\" }",
            ),
            format!("{field}.tls.min_version: \"1.1\""),
        ),
        (
            with(
                "https://127.0.0.1:8082",
                "tls = { verify = false, sni = \"x\" }",
            ),
            "unknown field `sni`".to_string(),
        ),
        (
            with("ftp://127.0.0.1:8082", ""),
            format!("{field}.url: \"ftp://127.0.0.1:8082\" must start with http:// or https://"),
        ),
    ];
    for (text, want) in cases {
        let errs = errors(&text);
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&want) || e.contains(&want)),
            "want {want:?} in {errs:?}"
        );
    }
}

#[test]
fn admin_is_absent_by_default() {
    assert!(parse(GOOD).unwrap().admin.is_none());
}

#[test]
fn admin_loads_with_token_and_default_bind() {
    let c = parse(&format!("{GOOD}\n[admin]\ntoken = \"0123456789abcdef\"\n")).unwrap();
    let admin = c.admin.expect("admin");
    assert_eq!(admin.bind, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(&*admin.token, "0123456789abcdef");
    // The token never shows in debug output.
    assert!(!format!("{admin:?}").contains("0123456789abcdef"));
}

#[test]
fn admin_reads_the_token_file() {
    let dir = std::env::temp_dir().join(format!("dao-admin-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "s3cr3t-t0ken-from-file\r\n").unwrap();
    let text = format!(
        "{GOOD}\n[admin]\nbind = \"[::1]:0\"\ntoken_file = {:?}\n",
        file.to_str().unwrap()
    );
    let admin = parse(&text).unwrap().admin.unwrap();
    assert_eq!(admin.bind, "[::1]:0".parse().unwrap());
    assert_eq!(&*admin.token, "s3cr3t-t0ken-from-file");

    // A file holding only a newline is empty.
    std::fs::write(&file, "\n").unwrap();
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("admin.token_file: ") && errs[0].ends_with("is empty"));

    // A short token read from a file is named by the file's key.
    std::fs::write(&file, "short\n").unwrap();
    assert_eq!(
        errors(&text),
        ["admin.token_file: the token is too short: at least 16 characters are required"]
    );

    std::fs::remove_dir_all(&dir).unwrap();
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("admin.token_file: cannot read "),
        "{errs:?}"
    );
}

#[test]
fn admin_errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "",
            "admin.token: is required: set token, or token_file to read it from a file",
        ),
        (
            "token = \"0123456789abcdef\"\ntoken_file = \"/nonexistent\"",
            "admin.token: set either token or token_file, not both",
        ),
        ("token = \"\"", "admin.token: is empty"),
        (
            "token = \"0123456789abcde\"",
            "admin.token: the token is too short: at least 16 characters are required",
        ),
        (
            "token = \"0123456789 abcdef\"",
            "admin.token: the token must be visible ASCII characters only (no spaces or control characters)",
        ),
        (
            "token = \"0123456789abcdef\"\nbind = \"localhost\"",
            "admin.bind: \"localhost\" is not an address such as \"127.0.0.1:9901\"",
        ),
        (
            "token = \"0123456789abcdef\"\nport = 1",
            "admin.port: unknown key (expected one of bind, token, token_file)",
        ),
    ];
    for (body, want) in cases {
        let errs = errors(&format!("{GOOD}\n[admin]\n{body}\n"));
        assert_eq!(errs, [*want], "for {body:?}");
    }
    // A wrong type is reported under the section.
    let errs = errors(&format!("{GOOD}\n[admin]\ntoken = 5\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("admin: "), "{errs:?}");
}

#[test]
fn balancing_settings_load() {
    let text = GOOD
        .replace("policy = \"weighted\"", "policy = \"resonant\"")
        .replace("weight = 3\n", "")
        + r#"
[policies.resonant]
w_load = 0.5
candidates = 3
related = { realtime = { "low-latency" = 0.2 } }
[policies.peak_ewma]
decay = "5s"
"#;
    let c = parse(&text).unwrap();
    let r = &c.routes[0];
    assert_eq!(r.policy, Policy::Resonant);
    assert_eq!(r.balancing.resonant.w_load, 0.5);
    assert_eq!(r.balancing.resonant.w_intent, 0.3);
    assert_eq!(r.balancing.resonant.candidates, 3);
    assert_eq!(r.balancing.outlier.consecutive_failures, 5);
    assert_eq!(r.balancing.panic_threshold, 50);
    assert_eq!(c.policies.peak_ewma.decay, Duration::from_secs(5));
    assert_eq!(
        c.policies.related,
        [("realtime".to_string(), "low-latency".to_string(), 0.2)]
    );
    assert!(c.intents.contains(&"low-latency".to_string()));
    assert!(c.intent_index(b"realtime").is_some());
}

#[test]
fn balancing_errors_name_the_field() {
    let route = |extra: &str, policy: &str| {
        format!(
            "[[routes.rule]]\nname = \"r\"\npolicy = \"{policy}\"\n{extra}\n[[routes.rule.upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n"
        )
    };
    let cases = [
        (
            route("", "fastest"),
            "routes.rule[0].policy: unknown policy \"fastest\"",
        ),
        (
            route("", "consistent_hash"),
            "routes.rule[0].hash_on: consistent_hash needs",
        ),
        (
            route("hash_on = \"query:x\"", "consistent_hash"),
            "routes.rule[0].hash_on: \"query:x\"",
        ),
        (
            route("hash_on = \"client_ip\"", "round_robin"),
            "routes.rule[0].hash_on: applies only",
        ),
        (
            route(
                "hash_on = \"client_ip\"\nbounded_load = 0.5",
                "consistent_hash",
            ),
            "routes.rule[0].bounded_load: 0.5",
        ),
        (
            route("resonant = { w_load = -1.0 }", "resonant"),
            "routes.rule[0].resonant.w_load: -1",
        ),
        (
            route("resonant = { candidates = 0 }", "resonant"),
            "routes.rule[0].resonant.candidates: 0 is out of range",
        ),
        (
            route("resonant = { related = { a = { b = 0.1 } } }", "resonant"),
            "routes.rule[0].resonant.related: intent relatedness is global",
        ),
        (
            route("resonant = { w_load = 1.0 }", "least_request"),
            "routes.rule[0].resonant: applies only",
        ),
        (
            route("panic_threshold = 101", "random"),
            "routes.rule[0].panic_threshold: 101 is out of range",
        ),
        (
            route("slow_start = \"soon\"", "random"),
            "routes.rule[0].slow_start: invalid duration",
        ),
        (
            route(
                "[routes.rule.outlier_detection]\nbase_ejection_time = \"10m\"",
                "random",
            ),
            "routes.rule[0].outlier_detection.max_ejection_time: must not be shorter",
        ),
        (
            route(
                "[routes.rule.outlier_detection]\nconsecutive_failures = 0",
                "random",
            ),
            "routes.rule[0].outlier_detection.consecutive_failures: 0 is out of range",
        ),
        (
            route("", "resonant") + "[telemetry]\nenabled = false\n",
            "routes.rule[0].policy: resonant reads Sense's table",
        ),
        (
            route("", "round_robin") + "[policies.resonant]\nrelated = { a = { b = 1.5 } }\n",
            "policies.resonant.related.a.b: 1.5 is not a gap",
        ),
        (
            route("", "round_robin") + "[policies.peak_ewma]\ndecay = \"0s\"\n",
            "policies.peak_ewma.decay: must be greater than zero",
        ),
    ];
    for (text, want) in cases {
        let errs = errors(&text);
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "want {want:?} in {errs:?}"
        );
    }
    // Weights belong to weight-aware policies.
    let errs = errors(&route("", "least_request").replace(
        "url = \"http://127.0.0.1:1\"",
        "url = \"http://127.0.0.1:1\"\nweight = 2",
    ));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("routes.rule[0].upstreams[0].weight: weights apply only")),
        "{errs:?}"
    );
    // An unknown key inside a balancing table is refused by name.
    let errs = errors(&route(
        "[routes.rule.outlier_detection]\ninterval = \"1s\"",
        "random",
    ));
    assert!(
        errs.iter().any(|e| e.contains("unknown field `interval`")),
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
        .replace("workers = 2", "workers = 0\nh2_max_concurrent_streams = 0")
        .replace("http://127.0.0.1:8082/", "ftp://x")
        .replace("weight = 3", "weight = 0")
        .replace("\"/v1/\"", "\"v1\"");
    let errs = errors(&text);
    for path in [
        "server.header_read_timeout: invalid duration",
        "server.workers: 0 is out of range",
        "server.h2_max_concurrent_streams: 0 is out of range",
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
fn h2_websocket_is_a_switch_on_by_default() {
    assert!(parse(GOOD).unwrap().server.h2_websocket);
    let off = GOOD.replace("workers = 2", "workers = 2\nh2_websocket = false");
    assert!(!parse(&off).unwrap().server.h2_websocket);
    let bad = GOOD.replace("workers = 2", "workers = 2\nh2_websocket = \"no\"");
    let errs = errors(&bad);
    assert!(
        errs.iter()
            .any(|e| e.contains("h2_websocket") && e.contains("invalid type")),
        "{errs:?}"
    );
}

#[test]
fn tunnel_idle_timeout_is_a_duration() {
    assert_eq!(
        parse(GOOD).unwrap().proxy.tunnel_idle_timeout,
        Duration::from_secs(3600)
    );
    let set = GOOD.replace(
        "pool_max_idle = 8",
        "pool_max_idle = 8\ntunnel_idle_timeout = \"90s\"",
    );
    assert_eq!(
        parse(&set).unwrap().proxy.tunnel_idle_timeout,
        Duration::from_secs(90)
    );
    for bad in ["\"0s\"", "\"forever\""] {
        let text = GOOD.replace(
            "pool_max_idle = 8",
            &format!("pool_max_idle = 8\ntunnel_idle_timeout = {bad}"),
        );
        let errs = errors(&text);
        assert!(
            errs.iter()
                .any(|e| e.starts_with("proxy.tunnel_idle_timeout: ")),
            "{errs:?}"
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
        errs.iter()
            .any(|e| e.starts_with("server.tls_cert: removed")),
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
    // Each file is loaded from a copy beside the certificates that
    // `scripts/dev-certs.sh configs/certs` would make (here by rcgen).
    let work = super::listeners::tests::temp_dir("configs");
    std::fs::create_dir(work.join("certs")).unwrap();
    super::listeners::tests::write_dev_certs(&work.join("certs"));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let copy = work.join(path.file_name().unwrap());
            std::fs::copy(&path, &copy).unwrap();
            load_file(&copy).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "expected the example configs in {}", dir.display());
}

/// `GOOD` with a `health_check` table on its first route.
fn with_check(check: &str) -> String {
    GOOD.replace(
        "  [routes.rule.filters]",
        &format!("  [routes.rule.health_check]\n{check}\n  [routes.rule.filters]"),
    )
}

#[test]
fn health_check_defaults_and_values() {
    let c = parse(&with_check("path = \"/healthz\"")).unwrap();
    let hc = c.routes[0].health_check.as_ref().unwrap();
    assert_eq!(hc.path, "/healthz");
    assert_eq!(hc.interval, Duration::from_secs(5));
    assert_eq!(hc.timeout, Duration::from_secs(1));
    assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (2, 3));
    assert_eq!(hc.expected_status, (200, 299));
    assert_eq!(hc.host, None);
    assert!(c.routes[1].health_check.is_none());
    let c = parse(&with_check(
        "path = \"/h?x=1\"\ninterval = \"2s\"\ntimeout = \"500ms\"\nhealthy_threshold = 1\n\
         unhealthy_threshold = 100\nexpected_status = \"200-399\"\nhost = \"svc.internal:8080\"",
    ))
    .unwrap();
    let hc = c.routes[0].health_check.as_ref().unwrap();
    assert_eq!(hc.interval, Duration::from_secs(2));
    assert_eq!(hc.timeout, Duration::from_millis(500));
    assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (1, 100));
    assert_eq!(hc.expected_status, (200, 399));
    assert_eq!(hc.host.as_deref(), Some("svc.internal:8080"));
}

#[test]
fn health_check_errors_name_their_fields() {
    let p = "routes.rule[0].health_check";
    for (check, want) in [
        ("interval = \"2s\"", format!("{p}.path: is required")),
        (
            "path = \"healthz\"",
            format!("{p}.path: must start with '/'"),
        ),
        (
            "path = \"/a b\"",
            format!("{p}.path: must not contain spaces"),
        ),
        (
            "path = \"/h\"\ninterval = \"50ms\"\ntimeout = \"10ms\"",
            format!("{p}.interval: must be between 100ms and 1h"),
        ),
        (
            "path = \"/h\"\ninterval = \"2h\"",
            format!("{p}.interval: must be between"),
        ),
        (
            "path = \"/h\"\ninterval = \"soon\"",
            format!("{p}.interval: invalid duration"),
        ),
        (
            "path = \"/h\"\ninterval = \"500ms\"",
            format!("{p}.timeout: must be less than the interval (500ms)"),
        ),
        (
            "path = \"/h\"\ntimeout = \"2s\"\ninterval = \"2s\"",
            format!("{p}.timeout: must be less than the interval (2s)"),
        ),
        (
            "path = \"/h\"\ntimeout = \"0s\"",
            format!("{p}.timeout: must be greater than zero"),
        ),
        (
            "path = \"/h\"\nhealthy_threshold = 0",
            format!("{p}.healthy_threshold: 0 is out of range 1..=100"),
        ),
        (
            "path = \"/h\"\nunhealthy_threshold = 101",
            format!("{p}.unhealthy_threshold: 101 is out of range 1..=100"),
        ),
        (
            "path = \"/h\"\nexpected_status = \"ok\"",
            format!("{p}.expected_status: \"ok\" is not a status class or range"),
        ),
        (
            "path = \"/h\"\nhost = \"a b\"",
            format!("{p}.host: \"a b\" is not a host"),
        ),
        (
            "path = \"/h\"\nport = 8080",
            format!("{p}.port: unknown key"),
        ),
        ("path = 5", format!("{p}: invalid type: integer `5`")),
    ] {
        let errs = errors(&with_check(check));
        assert!(
            errs.iter().any(|e| e.starts_with(&want)),
            "want {want} in {errs:?}"
        );
    }
    let off = with_check("path = \"/h\"") + "\n[telemetry]\nenabled = false\n";
    assert!(
        errors(&off)
            .iter()
            .any(|e| e.starts_with(&format!("{p}: needs telemetry.enabled = true"))),
        "{:?}",
        errors(&off)
    );
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

#[test]
fn filter_errors_name_the_field() {
    let route = |filters: &str| {
        format!(
            "[[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n[routes.rule.filters]\n{filters}\n"
        )
    };
    let cases = [
        (
            "ip_allow = [\"10.0.0.1/8\"]",
            "routes.rule[0].filters.ip_allow[0]: \"10.0.0.1/8\" has host bits",
        ),
        (
            "ip_deny = [\"nope\"]",
            "routes.rule[0].filters.ip_deny[0]: \"nope\" is not an address",
        ),
        (
            "ip_deny = \"10.0.0.0/8\"",
            "routes.rule[0].filters.ip_deny: must be a list",
        ),
        (
            "allowed_methods = []",
            "routes.rule[0].filters.allowed_methods: must name at least one",
        ),
        (
            "allowed_methods = [\"G T\"]",
            "routes.rule[0].filters.allowed_methods[0]: \"G T\" is not a method",
        ),
        (
            "max_body_bytes = -1",
            "routes.rule[0].filters.max_body_bytes: must be a byte count",
        ),
        (
            "request_timeout = 5",
            "routes.rule[0].filters.request_timeout: must be a duration",
        ),
        (
            "request_headers_add = { \"X-U\" = \"${upstream}\" }",
            "routes.rule[0].filters.request_headers_add.X-U: ${upstream} is known only",
        ),
        (
            "response_headers_set = { \"X-V\" = \"${version}\" }",
            "routes.rule[0].filters.response_headers_set.X-V: unknown variable ${version}",
        ),
        (
            "request_headers_remove = [\"bad name\"]",
            "routes.rule[0].filters.request_headers_remove[0]: \"bad name\" is not a header name",
        ),
        (
            "cors = { allow_methods = [\"GET\"] }",
            "routes.rule[0].filters.cors.allow_origins: at least one origin",
        ),
        (
            "cors = { allow_origins = [\"app.example.com\"] }",
            "routes.rule[0].filters.cors.allow_origins[0]: \"app.example.com\" is not an origin",
        ),
        (
            "cors = { allow_origins = [\"*\"], allow_credentials = true }",
            "routes.rule[0].filters.cors.allow_credentials: browsers refuse",
        ),
        (
            "cors = { allow_origins = [\"*\"], origin = 1 }",
            "routes.rule[0].filters.cors.origin: unknown key",
        ),
        (
            "jwt = { hs256_secret = \"x\" }",
            "routes.rule[0].filters.jwt.hs256_secret: unknown key",
        ),
        (
            "jwt = { secret = \"short\" }",
            "routes.rule[0].filters.jwt.secret:",
        ),
        (
            "jwt = { public_key_file = \"/nonexistent/key.pem\" }",
            "routes.rule[0].filters.jwt.public_key_file: /nonexistent/key.pem",
        ),
        (
            "jwt = { audience = \"a\" }",
            "routes.rule[0].filters.jwt: needs a key",
        ),
        (
            "api_keys = [\"short\"]",
            "routes.rule[0].filters.api_keys[0]:",
        ),
        (
            "api_keys_file = \"/nonexistent/keys\"",
            "routes.rule[0].filters.api_keys_file: /nonexistent/keys",
        ),
        (
            "identity_header = \"X-User\"",
            "routes.rule[0].filters.identity_header: needs api_keys",
        ),
        (
            "rate_limit_rps = 5\nrate_limit_key = \"identity\"",
            "routes.rule[0].filters.rate_limit_key: \"identity\" needs authentication",
        ),
        (
            "rate_limit_rps = 0",
            "routes.rule[0].filters.rate_limit_rps: must be a rate above 0",
        ),
        (
            "rate_limit_burst = 10",
            "routes.rule[0].filters.rate_limit_rps: the rate is required",
        ),
        (
            "rate_limit_rps = 10\nrate_limit_key = \"cookie:x\"",
            "routes.rule[0].filters.rate_limit_key: must be",
        ),
        (
            "rate_limit_rps = 10\nrate_limit_max_keys = 0",
            "routes.rule[0].filters.rate_limit_max_keys: must be",
        ),
        ("gzip = true", "routes.rule[0].filters.gzip: unknown filter"),
    ];
    for (filters, want) in cases {
        let errs = errors(&route(filters));
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "want {want:?} in {errs:?}"
        );
    }
    // A good set compiles, in running order.
    let c = parse(&route(
        "request_headers_add = { \"X-A\" = \"1\" }\nmax_body_bytes = 1024\nallowed_methods = [\"GET\"]\nip_deny = [\"192.0.2.0/24\"]\ncors = { allow_origins = [\"*\"] }\nrequest_timeout = \"3s\"\nrate_limit_rps = 50",
    ))
    .unwrap();
    let kinds: Vec<&str> = c.routes[0]
        .filters
        .iter()
        .map(|f| match f {
            crate::flow::FilterSpec::Ips(_) => "ips",
            crate::flow::FilterSpec::Cors(_) => "cors",
            crate::flow::FilterSpec::Methods(_) => "methods",
            crate::flow::FilterSpec::MaxBody(_) => "max_body",
            crate::flow::FilterSpec::Headers(_) => "headers",
            crate::flow::FilterSpec::RateLimit(_) => "rate",
            crate::flow::FilterSpec::Auth(_) => "auth",
        })
        .collect();
    assert_eq!(
        kinds,
        ["ips", "cors", "methods", "rate", "max_body", "headers"]
    );
    assert_eq!(c.routes[0].request_timeout, Some(Duration::from_secs(3)));
}

#[test]
fn memory_defaults_and_values() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.memory.state_dir, None);
    assert_eq!(c.memory.snapshots_keep, 20);
    assert_eq!(c.memory.profile_interval, Duration::from_secs(60));

    let dir = std::env::temp_dir().join(format!("dao-memory-cfg-{}", std::process::id()));
    let text = format!(
        "{GOOD}\n[memory]\nstate_dir = {:?}\nsnapshots_keep = 5\nprofile_interval = \"5m\"\n",
        dir.display().to_string()
    );
    // A directory that does not exist yet is accepted: it is created at start.
    let c = parse(&text).unwrap();
    assert_eq!(c.memory.state_dir.as_deref(), Some(dir.as_path()));
    assert_eq!(c.memory.snapshots_keep, 5);
    assert_eq!(c.memory.profile_interval, Duration::from_secs(300));
}

#[test]
fn memory_errors_name_the_field() {
    let file = std::env::temp_dir().join(format!("dao-memory-file-{}", std::process::id()));
    std::fs::write(&file, "not a directory").unwrap();
    let cases = [
        (
            "state_dir = \"\"".to_string(),
            "memory.state_dir: must not be empty",
        ),
        (
            format!("state_dir = {:?}", file.display().to_string()),
            "memory.state_dir: ",
        ),
        (
            "snapshots_keep = 0".into(),
            "memory.snapshots_keep: 0 is out of range 1..=10000",
        ),
        (
            "snapshots_keep = 10001".into(),
            "memory.snapshots_keep: 10001 is out of range",
        ),
        (
            "profile_interval = \"500ms\"".into(),
            "memory.profile_interval: must be between 1s and 1d",
        ),
        (
            "profile_interval = \"2days\"".into(),
            "memory.profile_interval: must be between 1s and 1d",
        ),
        (
            "profile_interval = \"0s\"".into(),
            "memory.profile_interval: must be greater than zero",
        ),
        (
            "profile_interval = \"soon\"".into(),
            "memory.profile_interval: invalid duration",
        ),
    ];
    for (line, want) in cases {
        let errs = errors(&format!("{GOOD}\n[memory]\n{line}\n"));
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "{line}: want {want:?} in {errs:?}"
        );
    }
    let errs = errors(&format!(
        "{GOOD}\n[memory]\nstate_dir = {:?}\n",
        file.display().to_string()
    ));
    assert!(
        errs[0].ends_with("exists and is not a directory"),
        "{errs:?}"
    );
    std::fs::remove_file(&file).unwrap();
    // Unknown keys and wrong types are the parser's: it names the key.
    let errs = errors(&format!("{GOOD}\n[memory]\nsnapshot_keep = 3\n"));
    assert!(errs[0].contains("snapshot_keep"), "{errs:?}");
    let errs = errors(&format!("{GOOD}\n[memory]\nsnapshots_keep = \"3\"\n"));
    assert!(errs[0].contains("snapshots_keep"), "{errs:?}");
}

#[test]
fn upstream_protocol_defaults_to_h1_and_takes_h2c() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.routes[0].upstreams[0].protocol, UpstreamProtocol::H1);
    assert_eq!(c.proxy.h2_max_connections_per_upstream, 2);
    let text = GOOD.replacen(
        "url = \"http://127.0.0.1:8082/\"",
        "url = \"http://127.0.0.1:8082/\"\n  protocol = \"h2c\"",
        1,
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.routes[0].upstreams[1].protocol, UpstreamProtocol::H2c);
    let text = text.replace("protocol = \"h2c\"", "protocol = \"h1\"");
    assert_eq!(
        parse(&text).unwrap().routes[0].upstreams[1].protocol,
        UpstreamProtocol::H1
    );
}

#[test]
fn upstream_protocol_errors_name_the_field() {
    let with = |p: &str| {
        GOOD.replacen(
            "url = \"http://127.0.0.1:8082/\"",
            &format!("url = \"http://127.0.0.1:8082/\"\n  protocol = {p}"),
            1,
        )
    };
    let errs = errors(&with("\"http/3\""));
    assert!(
        errs.iter().any(|e| e
            == "routes.rule[0].upstreams[1].protocol: \"http/3\" is not one of \"h1\", \"h2\", \"h2c\""),
        "{errs:?}"
    );
    // HTTP/2 upstreams are health-checked over HTTP/2 (HTTP/1.1 ones of
    // the same route over HTTP/1.1).
    let text = with("\"h2c\"").replacen(
        "  [routes.rule.filters]",
        "  [routes.rule.health_check]\n  path = \"/\"\n  [routes.rule.filters]",
        1,
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.routes[0].health_check.as_ref().unwrap().path, "/");
}

#[test]
fn grpc_health_checks_need_http2_upstreams() {
    let p = "routes.rule[0].health_check";
    let h2c = |check: &str| {
        with_check(check).replacen(
            "url = \"http://127.0.0.1:8082/\"",
            "url = \"http://127.0.0.1:8082/\"\n  protocol = \"h2c\"",
            1,
        )
    };
    // Upstream "a" of the route speaks HTTP/1.1.
    let errs = errors(&h2c("grpc_service = \"\""));
    assert!(
        errs.iter().any(
            |e| e.starts_with(&format!("{p}.grpc_service: gRPC checks need HTTP/2"))
                && e.contains("\"a\"")
        ),
        "{errs:?}"
    );
    let both = |check: &str| {
        h2c(check).replacen(
            "url = \"http://127.0.0.1:8081\"",
            "url = \"http://127.0.0.1:8081\"\n  protocol = \"h2c\"",
            1,
        )
    };
    let c = parse(&both("grpc_service = \"pkg.Svc\"\nhost = \"svc.internal\"")).unwrap();
    let hc = c.routes[0].health_check.as_ref().unwrap();
    assert_eq!(hc.grpc_service.as_deref(), Some("pkg.Svc"));
    assert_eq!(hc.path, crate::memory::GRPC_HEALTH_PATH);
    assert_eq!(hc.host.as_deref(), Some("svc.internal"));
    // Without grpc_service: a plain GET, path required as ever.
    let c = parse(&both("path = \"/healthz\"")).unwrap();
    assert_eq!(
        c.routes[0].health_check.as_ref().unwrap().grpc_service,
        None
    );
    for (check, want) in [
        (
            "grpc_service = \"s\"\npath = \"/h\"",
            format!("{p}.path: does not go with grpc_service"),
        ),
        (
            "grpc_service = \"s\"\nexpected_status = \"2xx\"",
            format!("{p}.expected_status: does not go with grpc_service"),
        ),
        (
            "grpc_service = \"a\\nb\"",
            format!("{p}.grpc_service: must be a service name"),
        ),
        (
            "grpc_service = 3",
            format!("{p}: invalid type: integer `3`"),
        ),
        // :authority and :path must parse for HTTP/2 probes.
        (
            "path = \"/h\"\nhost = \"a?b\"",
            format!("{p}.host: \"a?b\" is not a host[:port] for HTTP/2"),
        ),
    ] {
        let errs = errors(&both(check));
        assert!(
            errs.iter().any(|e| e.starts_with(&want)),
            "want {want} in {errs:?}"
        );
    }
    let long = format!("grpc_service = \"{}\"", "s".repeat(201));
    let errs = errors(&both(&long));
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("{p}.grpc_service: must be"))),
        "{errs:?}"
    );
}

#[test]
fn h2_max_connections_per_upstream_is_a_bounded_count() {
    let set = |v: &str| {
        GOOD.replace(
            "pool_max_idle = 8",
            &format!("pool_max_idle = 8\nh2_max_connections_per_upstream = {v}"),
        )
    };
    assert_eq!(
        parse(&set("5"))
            .unwrap()
            .proxy
            .h2_max_connections_per_upstream,
        5
    );
    for bad in ["0", "65", "-1"] {
        let errs = errors(&set(bad));
        assert!(
            errs.iter()
                .any(|e| e.starts_with("proxy.h2_max_connections_per_upstream: ")),
            "{bad}: {errs:?}"
        );
    }
}
