//! The Authenticator: choosing the credential, the 401 challenge.

use super::super::{
    valid_realm, ApiKeys, Authenticator, Credential, JwtVerifier, Method, Rejection,
};
use super::*;

const KEY: &str = "api-key-0000000000000001";

fn keys() -> ApiKeys {
    let mut b = ApiKeys::builder();
    b.key(KEY, Some("svc")).unwrap();
    b.build().unwrap()
}

fn jwt() -> JwtVerifier {
    hs_verifier()
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

fn run(
    auth: &Authenticator,
    authorization: Option<&[u8]>,
    api_key: Option<&[u8]>,
) -> Result<(String, Method), Rejection> {
    let cred = Credential {
        authorization,
        api_key,
    };
    auth.authenticate(&cred, NOW)
        .map(|id| (id.as_str().to_owned(), id.method()))
}

#[test]
fn jwt_route() {
    let auth = Authenticator::jwt(jwt());
    let token = sign(&hs(), None, &claims("alice"));
    let ok = Ok(("alice".to_owned(), Method::Jwt));
    assert_eq!(run(&auth, Some(&bearer(&token)), None), ok);
    assert_eq!(
        auth.authenticate(&Credential::authorization(&bearer(&token)), NOW)
            .unwrap()
            .as_str(),
        "alice"
    );
    // Scheme case-insensitive, extra spaces, surrounding whitespace.
    for value in [
        format!("bearer {token}"),
        format!("BEARER   {token}"),
        format!("  Bearer {token} \t"),
    ] {
        assert_eq!(run(&auth, Some(value.as_bytes()), None), ok, "{value}");
    }
    assert_eq!(run(&auth, None, None), Err(Rejection::Missing));
    assert_eq!(
        run(&auth, Some(b"Basic dXNlcjpwYXNz"), None),
        Err(Rejection::Missing)
    );
    assert_eq!(run(&auth, Some(b""), None), Err(Rejection::Missing));
    assert_eq!(
        run(&auth, Some(b"Bearertoken"), None),
        Err(Rejection::Missing)
    );
    assert_eq!(
        run(&auth, Some(b"Bearer"), None),
        Err(Rejection::Malformed("empty bearer token"))
    );
    assert_eq!(
        run(&auth, Some(b"Bearer    "), None),
        Err(Rejection::Malformed("empty bearer token"))
    );
    assert_eq!(
        run(&auth, Some(b"Bearer a b"), None),
        Err(Rejection::Malformed(
            "bearer token has spaces or non-ASCII bytes"
        ))
    );
    assert_eq!(
        run(&auth, Some("Bearer tök".as_bytes()), None),
        Err(Rejection::Malformed(
            "bearer token has spaces or non-ASCII bytes"
        ))
    );
    // An API key header on a JWT-only route is not a credential.
    assert_eq!(
        run(&auth, None, Some(KEY.as_bytes())),
        Err(Rejection::Missing)
    );
    // Rejections from the verifier come through.
    let expired = sign(
        &hs(),
        None,
        &serde_json::json!({ "sub": "a", "exp": NOW - 60 }),
    );
    assert_eq!(
        run(&auth, Some(&bearer(&expired)), None),
        Err(Rejection::Expired)
    );
}

#[test]
fn api_key_route() {
    let auth = Authenticator::api_keys(keys());
    let ok = Ok(("svc".to_owned(), Method::ApiKey));
    assert_eq!(run(&auth, None, Some(KEY.as_bytes())), ok);
    assert_eq!(
        auth.authenticate(&Credential::api_key(KEY.as_bytes()), NOW)
            .unwrap()
            .as_str(),
        "svc"
    );
    assert_eq!(
        run(&auth, None, Some(b"api-key-0000000000000002")),
        Err(Rejection::UnknownKey)
    );
    assert_eq!(
        run(&auth, None, Some(b"")),
        Err(Rejection::Malformed("empty API key"))
    );
    assert_eq!(run(&auth, None, None), Err(Rejection::Missing));
    // Not accepted as a bearer token until turned on.
    assert_eq!(
        run(&auth, Some(&bearer(KEY)), None),
        Err(Rejection::Missing)
    );
    let auth = auth.accept_api_key_as_bearer(true);
    assert_eq!(run(&auth, Some(&bearer(KEY)), None), ok);
    assert_eq!(
        run(&auth, Some(&bearer("api-key-0000000000000002")), None),
        Err(Rejection::UnknownKey)
    );
}

#[test]
fn either_route() {
    let auth = Authenticator::either(keys(), jwt()).accept_api_key_as_bearer(true);
    let token = sign(&hs(), None, &claims("alice"));
    let jwt_ok = Ok(("alice".to_owned(), Method::Jwt));
    let key_ok = Ok(("svc".to_owned(), Method::ApiKey));
    assert_eq!(run(&auth, Some(&bearer(&token)), None), jwt_ok);
    assert_eq!(run(&auth, Some(&bearer(KEY)), None), key_ok);
    assert_eq!(run(&auth, None, Some(KEY.as_bytes())), key_ok);
    // The API key header, when present, decides.
    assert_eq!(
        run(&auth, Some(&bearer(&token)), Some(KEY.as_bytes())),
        key_ok
    );
    assert_eq!(
        run(
            &auth,
            Some(&bearer(&token)),
            Some(b"wrong-key-0000000000000")
        ),
        Err(Rejection::UnknownKey)
    );
    // A bearer that is neither: the JWT verifier's verdict.
    assert_eq!(
        run(&auth, Some(&bearer("not-a-key-nor-a-jwt")), None),
        Err(Rejection::Malformed("not three dot-separated parts"))
    );
    // Without bearer API keys, a key in Authorization goes to the verifier.
    let strict = Authenticator::either(keys(), jwt());
    assert_eq!(
        run(&strict, Some(&bearer(KEY)), None),
        Err(Rejection::Malformed("not three dot-separated parts"))
    );
    assert_eq!(run(&strict, None, None), Err(Rejection::Missing));
}

#[test]
fn challenges_follow_rfc_6750() {
    let auth = Authenticator::jwt(jwt());
    assert_eq!(auth.realm(), "dao");
    assert_eq!(auth.challenge(&Rejection::Missing), r#"Bearer realm="dao""#);
    assert_eq!(
        auth.challenge(&Rejection::Expired),
        r#"Bearer realm="dao", error="invalid_token", error_description="token expired""#
    );
    assert_eq!(
        auth.challenge(&Rejection::Malformed("empty bearer token")),
        r#"Bearer realm="dao", error="invalid_token", error_description="malformed credential: empty bearer token""#
    );
    let auth = auth.with_realm("api.example.com").unwrap();
    assert_eq!(
        auth.challenge(&Rejection::Missing),
        r#"Bearer realm="api.example.com""#
    );
    for bad in ["", "a\"b", "a\\b", "a\nb", "é", &"r".repeat(65)] {
        assert!(!valid_realm(bad), "{bad:?}");
        assert!(
            Authenticator::jwt(jwt()).with_realm(bad).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn every_rejection_is_a_401_with_a_clean_description() {
    let all = [
        Rejection::Missing,
        Rejection::Malformed("empty bearer token"),
        Rejection::Malformed("bearer token has spaces or non-ASCII bytes"),
        Rejection::Malformed("identity claim is not a usable string or integer"),
        Rejection::TooLarge,
        Rejection::Algorithm,
        Rejection::BadSignature,
        Rejection::UnknownKey,
        Rejection::UnknownKid,
        Rejection::Expired,
        Rejection::NotYetValid,
        Rejection::WrongAudience,
        Rejection::WrongIssuer,
        Rejection::MissingClaim("exp"),
        Rejection::MissingClaim("identity"),
    ];
    let mut labels = std::collections::HashSet::new();
    for r in all {
        assert_eq!(r.status(), 401);
        labels.insert(r.label());
        let value = r.www_authenticate("dao");
        assert!(value.starts_with(r#"Bearer realm="dao""#), "{value}");
        assert_eq!(value.contains("error="), r != Rejection::Missing, "{value}");
        if let Some(d) = value.split("error_description=\"").nth(1) {
            let d = d.strip_suffix('"').unwrap();
            // RFC 6750 §3: %x20-21 / %x23-5B / %x5D-7E.
            assert!(
                d.bytes()
                    .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
                "{d:?}"
            );
            assert_eq!(d, r.to_string());
        }
    }
    assert_eq!(labels.len(), 12);
}

#[test]
fn authenticators_can_be_shared_across_cores() {
    fn shared<T: Send + Sync>() {}
    shared::<Authenticator>();
}
