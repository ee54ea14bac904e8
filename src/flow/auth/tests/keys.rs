//! Key loading: PEM public keys and JWKS documents.

use std::path::PathBuf;

use serde_json::json;

use super::super::{Algorithm, Jwks, JwtKey, JwtVerifier, Rejection, SetupError};
use super::*;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/flow/auth/testdata")
        .join(name)
}

fn pem_error(pem: &[u8]) -> String {
    JwtKey::from_pem(pem).unwrap_err().to_string()
}

#[test]
fn pem_keys_get_their_algorithm() {
    assert_eq!(
        JwtKey::from_pem(RSA1_PUBLIC).unwrap().algorithm(),
        Algorithm::Rs256
    );
    assert_eq!(
        JwtKey::from_pem(RSA1_PUBLIC_PKCS1).unwrap().algorithm(),
        Algorithm::Rs256
    );
    assert_eq!(
        JwtKey::from_pem(EC1_PUBLIC).unwrap().algorithm(),
        Algorithm::Es256
    );
    let key = JwtKey::from_pem_file(&testdata("ec1_public.pem")).unwrap();
    assert_eq!(key.algorithm(), Algorithm::Es256);
    assert_eq!(key.kid(), None);
}

#[test]
fn unusable_pem_keys_are_refused_with_the_reason() {
    assert!(pem_error(EC_P384_PUBLIC).contains("P-256"));
    assert!(pem_error(RSA1024_PUBLIC).contains("2048"));
    assert!(pem_error(RSA1_PRIVATE).contains("public key"));
    assert!(pem_error(EC1_PRIVATE).contains("public key"));
    assert!(pem_error(b"").contains("not PEM"));
    assert!(pem_error(b"ssh-rsa AAAAB3NzaC1yc2E").contains("not PEM"));
    let cert_like = b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    assert!(pem_error(cert_like).contains("expected PUBLIC KEY"));
    let junk = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    assert!(pem_error(junk).contains("SubjectPublicKeyInfo"));
    let junk = b"-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n";
    assert!(pem_error(junk).contains("not an RSA public key"));
}

#[test]
fn pem_file_errors_name_the_file() {
    let missing = testdata("no-such-key.pem");
    let err = JwtKey::from_pem_file(&missing).unwrap_err();
    assert!(matches!(err, SetupError::Io { .. }));
    assert!(err.to_string().contains("no-such-key.pem"), "{err}");
    let err = JwtKey::from_pem_file(&testdata("rsa1024_public.pem")).unwrap_err();
    assert!(err.to_string().contains("rsa1024_public.pem"), "{err}");
}

#[test]
fn component_keys_are_checked() {
    assert!(JwtKey::es256_components(&[1; 32], &[2; 31]).is_err());
    assert!(JwtKey::es256_components(&[1; 33], &[2; 32]).is_err());
    let n = [0xc5; 256];
    assert!(JwtKey::rs256_components(&n, &[1, 0, 1]).is_ok());
    // Leading zeros do not count towards the size.
    let mut short = vec![0u8; 2];
    short.extend_from_slice(&[0xc5; 255]);
    assert!(JwtKey::rs256_components(&short, &[1, 0, 1]).is_err());
    assert!(JwtKey::rs256_components(&[0x7f; 256], &[1, 0, 1]).is_err()); // 2047 bits
    assert!(JwtKey::rs256_components(&[0xc5; 1025], &[1, 0, 1]).is_err());
    for e in [
        &[][..],
        &[1],
        &[2],
        &[1, 0, 0],
        &[2, 0, 0, 0, 1],
        &[1, 0, 0, 0, 0, 1],
    ] {
        assert!(JwtKey::rs256_components(&n, e).is_err(), "{e:?}");
    }
    assert!(JwtKey::rs256_components(&n, &[0, 0, 3]).is_ok());
}

#[test]
fn jwks_with_several_kids() {
    let jwks = Jwks::from_json(JWKS).unwrap();
    assert!(jwks.skipped.is_empty(), "{:?}", jwks.skipped);
    let kids: Vec<_> = jwks
        .keys
        .iter()
        .map(|k| (k.kid().unwrap(), k.algorithm()))
        .collect();
    assert_eq!(
        kids,
        [
            ("rsa-1", Algorithm::Rs256),
            ("ec-1", Algorithm::Es256),
            ("rsa-2", Algorithm::Rs256)
        ]
    );
    let v = JwtVerifier::new(jwks.keys).unwrap();
    let rs1 = sign(&Signer::Rs(RSA1_PRIVATE), Some("rsa-1"), &claims("one"));
    let ec1 = sign(&Signer::Es(EC1_PRIVATE), Some("ec-1"), &claims("ec"));
    let rs2 = sign(&Signer::Rs(RSA2_PRIVATE), Some("rsa-2"), &claims("two"));
    assert_eq!(who(&v, &rs1).unwrap(), "one");
    assert_eq!(who(&v, &ec1).unwrap(), "ec");
    assert_eq!(who(&v, &rs2).unwrap(), "two");
    // The kid decides which key checks the signature.
    let swapped = sign(&Signer::Rs(RSA1_PRIVATE), Some("rsa-2"), &claims("one"));
    assert_eq!(who(&v, &swapped), Err(Rejection::BadSignature));
    let unknown = sign(&Signer::Rs(RSA1_PRIVATE), Some("rsa-9"), &claims("one"));
    assert_eq!(who(&v, &unknown), Err(Rejection::UnknownKid));
    // An ES256 token naming an RSA kid, an RS256 one naming the EC kid.
    let crossed = sign(&Signer::Es(EC1_PRIVATE), Some("rsa-1"), &claims("x"));
    assert_eq!(who(&v, &crossed), Err(Rejection::Algorithm));
    let crossed = sign(&Signer::Rs(RSA1_PRIVATE), Some("ec-1"), &claims("x"));
    assert_eq!(who(&v, &crossed), Err(Rejection::Algorithm));
    // HS256 against JWKS public keys (no HMAC key at all).
    let confused = sign(
        &Signer::Hs(RSA1_PUBLIC.to_vec()),
        Some("rsa-1"),
        &claims("x"),
    );
    assert_eq!(who(&v, &confused), Err(Rejection::Algorithm));
    // Without a kid every RSA key is tried.
    let plain = sign(&Signer::Rs(RSA2_PRIVATE), None, &claims("two"));
    assert_eq!(who(&v, &plain).unwrap(), "two");
}

#[test]
fn jwks_from_file() {
    let jwks = Jwks::from_file(&testdata("jwks.json")).unwrap();
    assert_eq!(jwks.keys.len(), 3);
    let err = Jwks::from_file(&testdata("missing.json")).unwrap_err();
    assert!(err.to_string().contains("missing.json"), "{err}");
    let err = Jwks::from_file(&testdata("rsa1_public.pem")).unwrap_err();
    assert!(err.to_string().contains("rsa1_public.pem: JWKS"), "{err}");
}

fn jwks_of(keys: serde_json::Value) -> Result<Jwks, SetupError> {
    Jwks::from_json(json!({ "keys": keys }).to_string().as_bytes())
}

fn jwk(kid: &str) -> serde_json::Value {
    let all: serde_json::Value = serde_json::from_slice(JWKS).unwrap();
    all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap()
        .clone()
}

#[test]
fn jwks_skips_keys_it_cannot_use_and_says_why() {
    let mut enc = jwk("rsa-2");
    enc["use"] = json!("enc");
    let mut rs512 = jwk("rsa-2");
    rs512["alg"] = json!("RS512");
    let mut es_alg = jwk("ec-1");
    es_alg["alg"] = json!("ES384");
    let jwks = jwks_of(json!([
        enc,
        rs512,
        es_alg,
        { "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed" },
        { "kty": "EC", "crv": "P-384", "x": "AA", "y": "AA" },
        { "kty": "oct", "k": "c2VjcmV0" },
        jwk("ec-1"),
    ]))
    .unwrap();
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.skipped.len(), 6, "{:?}", jwks.skipped);
    let notes = jwks.skipped.join("\n");
    for part in [
        "use: enc",
        "RS512",
        "ES384",
        "\"OKP\"",
        "P-384",
        "\"oct\"",
        "kid \"ed\"",
    ] {
        assert!(notes.contains(part), "{part}: {notes}");
    }
    // Nothing usable: an error listing what was skipped.
    let err = jwks_of(json!([{ "kty": "oct", "k": "c2VjcmV0" }])).unwrap_err();
    assert!(err.to_string().contains("no usable key"), "{err}");
    assert!(jwks_of(json!([]))
        .unwrap_err()
        .to_string()
        .contains("no keys"));
}

#[test]
fn jwks_errors_name_the_key() {
    let err_of = |keys: serde_json::Value| jwks_of(keys).unwrap_err().to_string();
    let mut no_n = jwk("rsa-1");
    no_n.as_object_mut().unwrap().remove("n");
    let e = err_of(json!([jwk("ec-1"), no_n]));
    assert!(
        e.contains("#1") && e.contains("rsa-1") && e.contains("no `n`"),
        "{e}"
    );
    let mut bad_x = jwk("ec-1");
    bad_x["x"] = json!("not base64!");
    assert!(err_of(json!([bad_x])).contains("`x` is not base64url"));
    let mut short_y = jwk("ec-1");
    short_y["y"] = json!("AAAA");
    assert!(err_of(json!([short_y])).contains("32 bytes"));
    let mut small = jwk("rsa-1");
    small["n"] = json!(b64(&[0xc5; 128]));
    assert!(err_of(json!([small])).contains("2048"));
    let mut kid_number = jwk("rsa-1");
    kid_number["kid"] = json!(7);
    assert!(err_of(json!([kid_number])).contains("`kid` is not a string"));
    assert!(err_of(json!([{ "n": "AQAB" }])).contains("no `kty`"));
    assert!(err_of(json!([{ "kty": "EC", "x": "AA", "y": "AA" }])).contains("no `crv`"));
    assert!(err_of(json!(["rsa"])).contains("not a JSON object"));
    assert!(Jwks::from_json(b"{\"keys\": {}}")
        .unwrap_err()
        .to_string()
        .contains("no `keys`"));
    assert!(Jwks::from_json(b"not json")
        .unwrap_err()
        .to_string()
        .contains("not JSON"));
}

#[test]
fn jwks_tolerates_padding() {
    let mut padded = jwk("rsa-1");
    padded["e"] = json!("AQAB==");
    let v = JwtVerifier::new(jwks_of(json!([padded])).unwrap().keys).unwrap();
    let t = sign(&Signer::Rs(RSA1_PRIVATE), Some("rsa-1"), &claims("p"));
    assert_eq!(who(&v, &t).unwrap(), "p");
}
