//! Tests of authentication: fixtures shared by the files below.
//!
//! Tokens are signed with the `jsonwebtoken` crate (a dev-dependency), an
//! implementation independent of the verifier under test; the keys are
//! test-only PEM files made with OpenSSL (see `../testdata/README.md`).

mod api_keys;
mod authenticator;
mod garbage;
mod jwt;
mod jwt_claims;
mod keys;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken as lib;
use serde_json::{json, Value};

use super::{JwtKey, JwtVerifier};

/// "Now" in every test: 2023-11-14T22:13:20Z.
pub(super) const NOW: u64 = 1_700_000_000;
/// An HS256 secret (44 bytes).
pub(super) const HS_SECRET: &[u8] = b"test-only-hs256-secret-0123456789abcdefghijk";

pub(super) const RSA1_PRIVATE: &[u8] = include_bytes!("../testdata/rsa1_private.pem");
pub(super) const RSA1_PUBLIC: &[u8] = include_bytes!("../testdata/rsa1_public.pem");
pub(super) const RSA1_PUBLIC_PKCS1: &[u8] = include_bytes!("../testdata/rsa1_public_pkcs1.pem");
pub(super) const RSA2_PRIVATE: &[u8] = include_bytes!("../testdata/rsa2_private.pem");
pub(super) const RSA2_PUBLIC: &[u8] = include_bytes!("../testdata/rsa2_public.pem");
pub(super) const EC1_PRIVATE: &[u8] = include_bytes!("../testdata/ec1_private.pem");
pub(super) const EC1_PUBLIC: &[u8] = include_bytes!("../testdata/ec1_public.pem");
pub(super) const EC2_PRIVATE: &[u8] = include_bytes!("../testdata/ec2_private.pem");
pub(super) const EC_P384_PUBLIC: &[u8] = include_bytes!("../testdata/ec_p384_public.pem");
pub(super) const RSA1024_PUBLIC: &[u8] = include_bytes!("../testdata/rsa1024_public.pem");
pub(super) const JWKS: &[u8] = include_bytes!("../testdata/jwks.json");

/// A signing key of the test library.
pub(super) enum Signer {
    Hs(Vec<u8>),
    Rs(&'static [u8]),
    Es(&'static [u8]),
}

impl Signer {
    fn parts(&self) -> (lib::Algorithm, lib::EncodingKey) {
        match self {
            Signer::Hs(secret) => (lib::Algorithm::HS256, lib::EncodingKey::from_secret(secret)),
            Signer::Rs(pem) => (
                lib::Algorithm::RS256,
                lib::EncodingKey::from_rsa_pem(pem).expect("test RSA key"),
            ),
            Signer::Es(pem) => (
                lib::Algorithm::ES256,
                lib::EncodingKey::from_ec_pem(pem).expect("test EC key"),
            ),
        }
    }
}

pub(super) fn hs() -> Signer {
    Signer::Hs(HS_SECRET.to_vec())
}

/// A token for `claims`, with `kid` in the header when given.
pub(super) fn sign(signer: &Signer, kid: Option<&str>, claims: &Value) -> String {
    let (alg, key) = signer.parts();
    let mut header = lib::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    lib::encode(&header, claims, &key).expect("signing")
}

/// A token with a header and claims given as raw JSON text, signed under
/// the signer's algorithm whatever the header says.
pub(super) fn sign_raw(signer: &Signer, header: &str, claims: &str) -> String {
    let (alg, key) = signer.parts();
    let message = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let signature = lib::crypto::sign(message.as_bytes(), &key, alg).expect("signing");
    format!("{message}.{signature}")
}

pub(super) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `sub` and an `exp` an hour after [`NOW`].
pub(super) fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": NOW + 3600 })
}

pub(super) fn hs_verifier() -> JwtVerifier {
    JwtVerifier::new(vec![JwtKey::hs256(HS_SECRET).unwrap()]).unwrap()
}

pub(super) fn rs_verifier() -> JwtVerifier {
    JwtVerifier::new(vec![JwtKey::from_pem(RSA1_PUBLIC).unwrap()]).unwrap()
}

pub(super) fn es_verifier() -> JwtVerifier {
    JwtVerifier::new(vec![JwtKey::from_pem(EC1_PUBLIC).unwrap()]).unwrap()
}

/// The identity a verifier gives `token` at [`NOW`], as text.
pub(super) fn who(verifier: &JwtVerifier, token: &str) -> Result<String, super::Rejection> {
    verifier
        .verify(token.as_bytes(), NOW)
        .map(|id| id.as_str().to_owned())
}
