//! Authentication end to end: API keys (list and file) and JWT (HS256)
//! on a real backend — 401 with `WWW-Authenticate` for missing, wrong,
//! expired or foreign tokens, the identity forwarded upstream (a client's
//! own copy of that header dropped), and a rate limit keyed on it.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};

const KEY: &str = "k-3f9a1c7e5b2d8046a1b3";
const SECRET: &str = "an HS256 secret of at least 32 bytes, for tests";

fn get(dao: &Server, headers: &str) -> Resp {
    let mut c = Client::connect(dao.local_addr());
    c.send(format!("GET / HTTP/1.1\r\nHost: h\r\n{headers}\r\n").as_bytes());
    c.read(false)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: serde_json::Value) -> String {
    encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[test]
fn api_keys_gate_the_route_and_name_the_client() {
    let backend = Backend::text("ok");
    let dir = std::env::temp_dir().join(format!("dao-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys");
    std::fs::write(&file, "# team keys\nk-7777777777777777aaaa billing\n").unwrap();
    let dao = with_filters(
        &backend,
        1,
        "",
        &format!(
            "api_keys = [\"{KEY}\"]\napi_keys_file = \"{}\"\nidentity_header = \"X-DAO-Identity\"",
            file.display()
        ),
    );
    let missing = get(&dao, "");
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"dao\"")
    );
    let wrong = get(&dao, "X-Api-Key: k-0000000000000000zzzz\r\n");
    assert_eq!(wrong.status, 401);
    assert!(wrong
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));
    assert_eq!(backend.request_count(), 0);
    // A right key: through, with the identity (and not the client's claim).
    let ok = get(
        &dao,
        &format!("X-Api-Key: {KEY}\r\nX-DAO-Identity: admin\r\n"),
    );
    assert_eq!(ok.status, 200);
    let seen = backend.last_request();
    let id = seen.headers_named("x-dao-identity");
    assert_eq!(id.len(), 1, "{id:?}");
    assert!(id[0].starts_with("key-") && id[0] != "admin", "{id:?}");
    // A named key from the file.
    assert_eq!(
        get(&dao, "X-Api-Key: k-7777777777777777aaaa\r\n").status,
        200
    );
    assert_eq!(
        backend.last_request().header("x-dao-identity"),
        Some("billing")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn jwts_are_verified_with_their_claims() {
    let backend = Backend::text("ok");
    let dao = with_filters(&backend, 1, "",
        &format!(
            "jwt = {{ secret = \"{SECRET}\", audience = \"api\", issuer = \"https://id.example\" }}\nidentity_header = \"X-User\""
        ),
    );
    let good = token(
        serde_json::json!({"sub": "alice", "aud": "api", "iss": "https://id.example", "exp": now() + 300}),
    );
    let r = get(&dao, &format!("Authorization: Bearer {good}\r\n"));
    assert_eq!(r.status, 200);
    assert_eq!(backend.last_request().header("x-user"), Some("alice"));
    for (claims, why) in [
        (
            serde_json::json!({"sub": "a", "aud": "api", "iss": "https://id.example", "exp": now() - 3600}),
            "expired",
        ),
        (
            serde_json::json!({"sub": "a", "aud": "web", "iss": "https://id.example", "exp": now() + 300}),
            "audience",
        ),
        (
            serde_json::json!({"sub": "a", "aud": "api", "iss": "https://evil.example", "exp": now() + 300}),
            "issuer",
        ),
    ] {
        let r = get(
            &dao,
            &format!("Authorization: Bearer {}\r\n", token(claims)),
        );
        assert_eq!(r.status, 401, "{why}");
        let challenge = r.header("www-authenticate").unwrap();
        assert!(challenge.contains("invalid_token"), "{why}: {challenge}");
    }
    // Signed with another secret.
    let forged = encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "a", "aud": "api", "iss": "https://id.example", "exp": now() + 300}),
        &EncodingKey::from_secret(b"another secret of at least 32 bytes long"),
    )
    .unwrap();
    assert_eq!(
        get(&dao, &format!("Authorization: Bearer {forged}\r\n")).status,
        401
    );
    assert_eq!(
        get(&dao, "Authorization: Bearer not.a.token\r\n").status,
        401
    );
    assert_eq!(backend.request_count(), 1);
}

#[test]
fn a_rate_limit_keyed_on_identity() {
    let backend = Backend::text("ok");
    let dao = with_filters(&backend, 1, "",
        &format!(
            "jwt = {{ secret = \"{SECRET}\" }}\nrate_limit_rps = 1\nrate_limit_burst = 2\nrate_limit_key = \"identity\""
        ),
    );
    let as_user = |sub: &str| {
        let t = token(serde_json::json!({"sub": sub, "exp": now() + 300}));
        get(&dao, &format!("Authorization: Bearer {t}\r\n")).status
    };
    let alice: Vec<u16> = (0..3).map(|_| as_user("alice")).collect();
    let bob: Vec<u16> = (0..3).map(|_| as_user("bob")).collect();
    assert_eq!(alice, [200, 200, 429]);
    assert_eq!(bob, [200, 200, 429], "bob has his own budget");
}

#[test]
fn a_remembered_token_still_expires() {
    let backend = Backend::text("ok");
    let dao = with_filters(
        &backend,
        1,
        "",
        &format!("jwt = {{ secret = \"{SECRET}\", leeway = \"0s\" }}"),
    );
    let exp = now() + 2;
    let t = token(serde_json::json!({"sub": "carol", "exp": exp}));
    let auth = format!("Authorization: Bearer {t}\r\n");
    // Verified once, then served from the core's cache.
    for _ in 0..3 {
        assert_eq!(get(&dao, &auth).status, 200);
    }
    while now() <= exp {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = get(&dao, &auth);
    assert_eq!(r.status, 401, "past exp, the cache must not answer for it");
    assert!(r.header("www-authenticate").unwrap().contains("expired"));
}
