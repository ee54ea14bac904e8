//! Garbage in: random bytes never panic, and are never accepted.

use proptest::prelude::*;

use super::super::{ApiKeys, Authenticator, Credential, Jwks, JwtKey, JwtVerifier};
use super::*;

fn either() -> Authenticator {
    let mut b = ApiKeys::builder();
    b.key("api-key-0000000000000001", None).unwrap();
    let jwt = JwtVerifier::new(vec![
        JwtKey::hs256(HS_SECRET).unwrap(),
        JwtKey::from_pem(RSA1_PUBLIC).unwrap().with_kid("rsa"),
        JwtKey::from_pem(EC1_PUBLIC).unwrap(),
    ])
    .unwrap();
    Authenticator::either(b.build().unwrap(), jwt).accept_api_key_as_bearer(true)
}

/// Base64url text with the odd stray byte.
fn b64ish() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_=+/-]{0,120}"
}

proptest! {
    #[test]
    fn random_bytes_are_refused_without_panic(
        authorization in proptest::collection::vec(any::<u8>(), 0..600),
        api_key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
        now in any::<u64>(),
    ) {
        let auth = either();
        let cred = Credential { authorization: Some(&authorization), api_key: api_key.as_deref() };
        prop_assert!(auth.authenticate(&cred, now).is_err());
        prop_assert!(hs_verifier().verify(&authorization, now).is_err());
    }

    #[test]
    fn random_three_part_tokens_are_refused_without_panic(
        a in b64ish(), b in b64ish(), c in b64ish(), now in any::<u64>(),
    ) {
        let token = format!("{a}.{b}.{c}");
        let auth = either();
        let value = format!("Bearer {token}");
        prop_assert!(auth.authenticate(&Credential::authorization(value.as_bytes()), now).is_err());
    }

    #[test]
    fn random_headers_and_claims_with_real_signatures_never_panic(
        alg in prop_oneof![
            Just("HS256".to_owned()),
            Just("RS256".to_owned()),
            Just("ES256".to_owned()),
            Just("none".to_owned()),
            "[A-Z0-9]{0,6}",
        ],
        kid in proptest::option::of(prop_oneof![Just("rsa".to_owned()), "[a-z]{0,4}"]),
        claims in "[ -~]{0,200}",
        now in any::<u64>(),
    ) {
        let mut header = serde_json::json!({ "alg": alg });
        if let Some(kid) = kid {
            header["kid"] = serde_json::Value::String(kid);
        }
        let token = sign_raw(&hs(), &header.to_string(), &claims);
        // Only an HS256 header over a claims object with a usable sub and
        // no expiry problem could pass; everything else is refused.
        let result = either().authenticate(&Credential::authorization(format!("Bearer {token}").as_bytes()), now);
        if result.is_ok() {
            prop_assert_eq!(alg.as_str(), "HS256");
        }
    }

    #[test]
    fn random_key_material_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        text in "[ -~\n]{0,400}",
    ) {
        let _ = JwtKey::from_pem(&bytes);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{text}\n-----END PUBLIC KEY-----\n");
        let _ = JwtKey::from_pem(pem.as_bytes());
        let _ = Jwks::from_json(&bytes);
        let _ = Jwks::from_json(text.as_bytes());
        let _ = ApiKeys::builder().text(&text, "prop");
    }
}
