//! JWT signatures, algorithms, token shape and size.

use serde_json::json;

use super::super::{Algorithm, JwtKey, JwtVerifier, Method, Rejection};
use super::*;

#[test]
fn each_algorithm_accepts_its_own_tokens() {
    let id = hs_verifier()
        .verify(sign(&hs(), None, &claims("alice")).as_bytes(), NOW)
        .unwrap();
    assert_eq!(id.as_str(), "alice");
    assert_eq!(id.method(), Method::Jwt);
    let rs = sign(&Signer::Rs(RSA1_PRIVATE), None, &claims("bob"));
    assert_eq!(who(&rs_verifier(), &rs).unwrap(), "bob");
    let es = sign(&Signer::Es(EC1_PRIVATE), None, &claims("carol"));
    assert_eq!(who(&es_verifier(), &es).unwrap(), "carol");
}

#[test]
fn pkcs1_rsa_pem_verifies_like_spki() {
    let key = JwtKey::from_pem(RSA1_PUBLIC_PKCS1).unwrap();
    assert_eq!(key.algorithm(), Algorithm::Rs256);
    let verifier = JwtVerifier::new(vec![key]).unwrap();
    let token = sign(&Signer::Rs(RSA1_PRIVATE), None, &claims("bob"));
    assert_eq!(who(&verifier, &token).unwrap(), "bob");
}

#[test]
fn another_key_is_a_bad_signature() {
    let other = Signer::Hs(b"another-test-secret-of-at-least-32-bytes".to_vec());
    let token = sign(&other, None, &claims("alice"));
    assert_eq!(who(&hs_verifier(), &token), Err(Rejection::BadSignature));
    let rs = sign(&Signer::Rs(RSA2_PRIVATE), None, &claims("bob"));
    assert_eq!(who(&rs_verifier(), &rs), Err(Rejection::BadSignature));
    let es = sign(&Signer::Es(EC2_PRIVATE), None, &claims("carol"));
    assert_eq!(who(&es_verifier(), &es), Err(Rejection::BadSignature));
}

#[test]
fn tampered_claims_are_a_bad_signature() {
    for (signer, verifier) in [
        (hs(), hs_verifier()),
        (Signer::Rs(RSA1_PRIVATE), rs_verifier()),
        (Signer::Es(EC1_PRIVATE), es_verifier()),
    ] {
        let token = sign(&signer, None, &claims("alice"));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(json!({ "sub": "admin", "exp": NOW + 3600 })
            .to_string()
            .as_bytes());
        let token = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(who(&verifier, &token), Err(Rejection::BadSignature));
        // A signature cut short, or none at all.
        let cut = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..8]);
        assert_eq!(who(&verifier, &cut), Err(Rejection::BadSignature));
        let bare = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(who(&verifier, &bare), Err(Rejection::BadSignature));
    }
}

#[test]
fn alg_none_and_unknown_algorithms_are_refused() {
    let claims = b64(claims("admin").to_string().as_bytes());
    for alg in [
        "none", "None", "NONE", "hs256", "HS512", "RS512", "PS256", "EdDSA", "",
    ] {
        let header = b64(json!({ "alg": alg }).to_string().as_bytes());
        let token = format!("{header}.{claims}.");
        assert_eq!(
            who(&hs_verifier(), &token),
            Err(Rejection::Algorithm),
            "{alg}"
        );
        // Even with a real HS256 signature over it.
        let signed = sign_raw(&hs(), &json!({ "alg": alg }).to_string(), &claims_text());
        assert_eq!(
            who(&hs_verifier(), &signed),
            Err(Rejection::Algorithm),
            "{alg}"
        );
    }
}

fn claims_text() -> String {
    claims("admin").to_string()
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic confusion: the attacker HMACs with the public key's bytes.
    let forged = sign(&Signer::Hs(RSA1_PUBLIC.to_vec()), None, &claims("admin"));
    assert_eq!(who(&rs_verifier(), &forged), Err(Rejection::Algorithm));
    let forged_ec = sign(&Signer::Hs(EC1_PUBLIC.to_vec()), None, &claims("admin"));
    assert_eq!(who(&es_verifier(), &forged_ec), Err(Rejection::Algorithm));

    // With HS256 also configured (another secret), the RSA key is still
    // never used as an HMAC secret: naming its kid is refused...
    let mixed = JwtVerifier::new(vec![
        JwtKey::hs256(HS_SECRET).unwrap().with_kid("hs"),
        JwtKey::from_pem(RSA1_PUBLIC).unwrap().with_kid("rsa"),
    ])
    .unwrap();
    let naming_rsa = sign(
        &Signer::Hs(RSA1_PUBLIC.to_vec()),
        Some("rsa"),
        &claims("admin"),
    );
    assert_eq!(who(&mixed, &naming_rsa), Err(Rejection::Algorithm));
    // ...and without a kid only the HS key is tried.
    assert_eq!(who(&mixed, &forged), Err(Rejection::BadSignature));
    // The mixed verifier still takes both kinds of genuine tokens.
    let rs = sign(&Signer::Rs(RSA1_PRIVATE), Some("rsa"), &claims("bob"));
    assert_eq!(who(&mixed, &rs).unwrap(), "bob");
    assert_eq!(
        who(&mixed, &sign(&hs(), None, &claims("al"))).unwrap(),
        "al"
    );
}

#[test]
fn a_token_of_another_algorithm_than_the_keys_is_refused() {
    let es = sign(&Signer::Es(EC1_PRIVATE), None, &claims("carol"));
    assert_eq!(who(&rs_verifier(), &es), Err(Rejection::Algorithm));
    let rs = sign(&Signer::Rs(RSA1_PRIVATE), None, &claims("bob"));
    assert_eq!(who(&es_verifier(), &rs), Err(Rejection::Algorithm));
    assert_eq!(who(&hs_verifier(), &rs), Err(Rejection::Algorithm));
}

#[test]
fn the_algorithm_list_restricts_and_must_cover_the_keys() {
    let keys = || {
        vec![
            JwtKey::hs256(HS_SECRET).unwrap(),
            JwtKey::from_pem(RSA1_PUBLIC).unwrap(),
        ]
    };
    let v = JwtVerifier::new(keys()).unwrap();
    assert_eq!(v.algorithms(), &[Algorithm::Hs256, Algorithm::Rs256]);
    let err = JwtVerifier::new(keys())
        .unwrap()
        .with_algorithms(&[Algorithm::Rs256])
        .unwrap_err();
    assert!(err.to_string().contains("HS256"), "{err}");
    assert!(JwtVerifier::new(keys())
        .unwrap()
        .with_algorithms(&[])
        .is_err());
    assert!(JwtVerifier::new(Vec::new()).is_err());
    let v = JwtVerifier::new(keys())
        .unwrap()
        .with_algorithms(&[Algorithm::Rs256, Algorithm::Hs256, Algorithm::Es256])
        .unwrap();
    assert_eq!(who(&v, &sign(&hs(), None, &claims("al"))).unwrap(), "al");
}

#[test]
fn kid_selects_the_key() {
    let v = JwtVerifier::new(vec![
        JwtKey::from_pem(RSA1_PUBLIC).unwrap().with_kid("one"),
        JwtKey::from_pem(RSA2_PUBLIC).unwrap().with_kid("two"),
    ])
    .unwrap();
    let t1 = sign(&Signer::Rs(RSA1_PRIVATE), Some("one"), &claims("a"));
    let t2 = sign(&Signer::Rs(RSA2_PRIVATE), Some("two"), &claims("b"));
    assert_eq!(who(&v, &t1).unwrap(), "a");
    assert_eq!(who(&v, &t2).unwrap(), "b");
    // Signed by key one but naming key two: only key two is tried.
    let wrong = sign(&Signer::Rs(RSA1_PRIVATE), Some("two"), &claims("a"));
    assert_eq!(who(&v, &wrong), Err(Rejection::BadSignature));
    let unknown = sign(&Signer::Rs(RSA1_PRIVATE), Some("three"), &claims("a"));
    assert_eq!(who(&v, &unknown), Err(Rejection::UnknownKid));
    // No kid: every key of the algorithm is tried.
    let plain = sign(&Signer::Rs(RSA2_PRIVATE), None, &claims("c"));
    assert_eq!(who(&v, &plain).unwrap(), "c");
}

#[test]
fn keys_without_kid_serve_tokens_naming_any_kid() {
    // Rotation: two secrets without kids, either signature verifies.
    let old = b"old-test-secret-of-at-least-32-bytes!!".to_vec();
    let v = JwtVerifier::new(vec![
        JwtKey::hs256(HS_SECRET).unwrap(),
        JwtKey::hs256(&old).unwrap(),
    ])
    .unwrap();
    assert_eq!(
        who(&v, &sign(&Signer::Hs(old), Some("x"), &claims("o"))).unwrap(),
        "o"
    );
    assert_eq!(who(&v, &sign(&hs(), None, &claims("n"))).unwrap(), "n");
}

#[test]
fn oversized_tokens_are_refused_before_parsing() {
    let big = claims("alice");
    let mut big = big.as_object().unwrap().clone();
    big.insert("pad".into(), json!("x".repeat(9000)));
    let token = sign(&hs(), None, &serde_json::Value::Object(big));
    assert!(token.len() > 8 * 1024);
    assert_eq!(who(&hs_verifier(), &token), Err(Rejection::TooLarge));
    // Any bytes at all past the limit: not even looked at.
    assert_eq!(
        hs_verifier().verify(&vec![0xff; 8 * 1024 + 1], NOW),
        Err(Rejection::TooLarge)
    );
    let roomy = hs_verifier().with_max_token_bytes(64 * 1024);
    assert_eq!(who(&roomy, &token).unwrap(), "alice");
    let small = sign(&hs(), None, &claims("alice"));
    let tight = hs_verifier().with_max_token_bytes(small.len() - 1);
    assert_eq!(who(&tight, &small), Err(Rejection::TooLarge));
    let exact = hs_verifier().with_max_token_bytes(small.len());
    assert_eq!(who(&exact, &small).unwrap(), "alice");
}

#[test]
fn malformed_tokens_say_which_part() {
    let good = sign(&hs(), None, &claims("alice"));
    let p: Vec<&str> = good.split('.').collect();
    let malformed = |token: &str| match who(&hs_verifier(), token) {
        Err(Rejection::Malformed(why)) => why,
        other => panic!("{token:?}: {other:?}"),
    };
    assert_eq!(malformed(""), "empty token");
    assert_eq!(malformed("abc"), "not three dot-separated parts");
    assert_eq!(
        malformed(&format!("{}.{}", p[0], p[1])),
        "not three dot-separated parts"
    );
    assert_eq!(
        malformed(&format!("{good}.x")),
        "not three dot-separated parts"
    );
    assert_eq!(
        malformed(&format!("{}=.{}.{}", p[0], p[1], p[2])),
        "header is not base64url"
    );
    assert_eq!(
        malformed(&format!("!!.{}.{}", p[1], p[2])),
        "header is not base64url"
    );
    let not_json = b64(b"alg: HS256");
    assert_eq!(
        malformed(&format!("{not_json}.{}.{}", p[1], p[2])),
        "header is not JSON with a string alg"
    );
    let no_alg = b64(br#"{"typ":"JWT"}"#);
    assert_eq!(
        malformed(&format!("{no_alg}.{}.{}", p[1], p[2])),
        "header is not JSON with a string alg"
    );
    let alg_number = b64(br#"{"alg":256}"#);
    assert_eq!(
        malformed(&format!("{alg_number}.{}.{}", p[1], p[2])),
        "header is not JSON with a string alg"
    );
    let dup_alg = b64(br#"{"alg":"HS256","alg":"none"}"#);
    assert_eq!(
        malformed(&format!("{dup_alg}.{}.{}", p[1], p[2])),
        "header is not JSON with a string alg"
    );
    assert_eq!(
        malformed(&format!("{}.{}.{}+", p[0], p[1], p[2])),
        "signature is not base64url"
    );
    let crit = sign_raw(
        &hs(),
        r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
        &claims_text(),
    );
    assert_eq!(malformed(&crit), "crit header extensions not supported");
    // A valid signature over a payload that is not a claims object.
    for payload in ["[1,2]", "\"sub\"", "null", "{", ""] {
        let t = sign_raw(&hs(), r#"{"alg":"HS256"}"#, payload);
        assert_eq!(malformed(&t), "claims are not a JSON object", "{payload}");
    }
}

#[test]
fn header_extras_are_ignored() {
    let t = sign_raw(
        &hs(),
        r#"{"alg":"HS256","typ":"at+jwt","cty":"x","x5u":"https://example.invalid"}"#,
        &claims("alice").to_string(),
    );
    assert_eq!(who(&hs_verifier(), &t).unwrap(), "alice");
}

#[test]
fn hs256_secrets_must_be_long_enough() {
    assert!(JwtKey::hs256(&[7; 31]).is_err());
    assert!(JwtKey::hs256(&[7; 32]).is_ok());
    let debug = format!("{:?}", JwtKey::hs256(HS_SECRET).unwrap().with_kid("k"));
    assert!(!debug.contains("test-only"), "{debug}");
    assert!(
        debug.contains("Hs256") && debug.contains("\"k\""),
        "{debug}"
    );
}
