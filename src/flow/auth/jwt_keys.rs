//! JWT verification keys: an HS256 secret, or an RS256 / ES256 public key
//! from PEM or from JWK components, each bound to one algorithm.
//!
//! A key is tied to its algorithm when it is made, and a token is only ever
//! checked with a key of the token's own `alg`: an RSA or EC key's bytes are
//! never used as an HMAC secret (the classic algorithm confusion).
//!
//! Keys are checked when made (type, curve, size); an EC point that is the
//! right size but not on P-256 is only found out when verifying, where every
//! signature then fails.

use std::fmt;
use std::path::Path;

use ring::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256,
};
use spki::der::asn1::UintRef;
use spki::der::{Decode, Reader, SliceReader};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

use super::error::SetupError;

/// A JWS algorithm the verifier supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256, a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, an RSA public key of 2048 to 8192 bits.
    Rs256,
    /// ECDSA on P-256 with SHA-256, a P-256 public key.
    Es256,
}

impl Algorithm {
    /// The `alg` header value (`"HS256"`, `"RS256"`, `"ES256"`).
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }

    /// The algorithm an `alg` value names (exact, case-sensitive, as RFC
    /// 7515 says); `None` for `none` and everything unsupported.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(Algorithm::Hs256),
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash
/// size, 256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

enum Material {
    Hmac(ring::hmac::Key),
    Rsa(RsaPublicKeyComponents<Box<[u8]>>),
    /// The uncompressed point, `0x04 || x || y`.
    Ec(Box<[u8]>),
}

/// One key a [`JwtVerifier`](super::JwtVerifier) may check signatures with,
/// with its algorithm and optional key id (`kid`).
pub struct JwtKey {
    kid: Option<Box<str>>,
    material: Material,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("JwtKey")
            .field("alg", &self.algorithm())
            .field("kid", &self.kid)
            .finish()
    }
}

impl JwtKey {
    /// An HS256 shared secret (at least [`MIN_HS256_SECRET_BYTES`]).
    pub fn hs256(secret: &[u8]) -> Result<Self, SetupError> {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(SetupError::invalid(
                "HS256 secret",
                "shorter than 32 bytes (RFC 7518 §3.2)",
            ));
        }
        Ok(Self::new(Material::Hmac(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            secret,
        ))))
    }

    /// A public key in PEM: `PUBLIC KEY` (SubjectPublicKeyInfo, as `openssl
    /// pkey -pubout` writes) holding an RSA key (→ RS256) or a P-256 key (→
    /// ES256), or `RSA PUBLIC KEY` (PKCS#1, → RS256).
    pub fn from_pem(pem: &[u8]) -> Result<Self, SetupError> {
        let bad = |reason: String| SetupError::invalid("PEM public key", reason);
        let (label, der) =
            spki::der::pem::decode_vec(pem).map_err(|e| bad(format!("not PEM: {e}")))?;
        match label {
            "PUBLIC KEY" => {
                let info = SubjectPublicKeyInfoRef::from_der(&der)
                    .map_err(|e| bad(format!("not a SubjectPublicKeyInfo: {e}")))?;
                let (alg, params) = info
                    .algorithm
                    .oids()
                    .map_err(|e| bad(format!("bad algorithm parameters: {e}")))?;
                let bits = info
                    .subject_public_key
                    .as_bytes()
                    .ok_or_else(|| bad("key bit string is not whole bytes".into()))?;
                if alg == RSA_ENCRYPTION {
                    Self::rsa_pkcs1_der(bits)
                } else if alg == EC_PUBLIC_KEY {
                    if params != Some(PRIME256V1) {
                        return Err(bad("EC key not on P-256 (only ES256 is supported)".into()));
                    }
                    Self::es256_point(bits)
                } else {
                    Err(bad(format!("unsupported key type {alg}")))
                }
            }
            "RSA PUBLIC KEY" => Self::rsa_pkcs1_der(&der),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => Err(
                bad(format!("{label}: give the public key, not the private one")),
            ),
            other => Err(bad(format!(
                "{other}: expected PUBLIC KEY or RSA PUBLIC KEY"
            ))),
        }
    }

    /// A public key from a PEM file (see [`from_pem`](Self::from_pem)).
    pub fn from_pem_file(path: &Path) -> Result<Self, SetupError> {
        let pem = std::fs::read(path).map_err(SetupError::read(path))?;
        Self::from_pem(&pem).map_err(|e| match e {
            SetupError::Invalid { reason, .. } => {
                SetupError::invalid(path.display().to_string(), reason)
            }
            other => other,
        })
    }

    /// An RS256 key from its modulus and public exponent, big-endian (as in
    /// a JWK's `n` and `e` once base64url-decoded).
    pub fn rs256_components(n: &[u8], e: &[u8]) -> Result<Self, SetupError> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        let bad = |reason: &str| SetupError::invalid("RSA key", reason);
        let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
        if bits < 2048 {
            return Err(bad("modulus shorter than 2048 bits"));
        }
        if bits > 8192 {
            return Err(bad("modulus longer than 8192 bits"));
        }
        let e_value = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        if e.len() > 5 || e_value < 3 || e_value % 2 == 0 || e_value >= 1 << 33 {
            return Err(bad("public exponent must be odd, at least 3, below 2^33"));
        }
        Ok(Self::new(Material::Rsa(RsaPublicKeyComponents {
            n: n.into(),
            e: e.into(),
        })))
    }

    /// An ES256 key from its P-256 coordinates, 32 bytes each (as in a
    /// JWK's `x` and `y` once base64url-decoded).
    pub fn es256_components(x: &[u8], y: &[u8]) -> Result<Self, SetupError> {
        if x.len() != 32 || y.len() != 32 {
            return Err(SetupError::invalid(
                "EC key",
                "P-256 coordinates must be 32 bytes each",
            ));
        }
        let mut point = Vec::with_capacity(65);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Ok(Self::new(Material::Ec(point.into())))
    }

    /// The key with a key id: tokens whose header names another `kid` are
    /// not checked with it.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into().into_boxed_str());
        self
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        match self.material {
            Material::Hmac(_) => Algorithm::Hs256,
            Material::Rsa(_) => Algorithm::Rs256,
            Material::Ec(_) => Algorithm::Es256,
        }
    }

    /// Whether `signature` signs `message` under this key's algorithm. The
    /// caller has checked that the token's `alg` is this key's.
    pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            // ring::hmac::verify compares in constant time.
            Material::Hmac(key) => ring::hmac::verify(key, message, signature).is_ok(),
            Material::Rsa(key) => key
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            Material::Ec(point) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok(),
        }
    }

    fn new(material: Material) -> Self {
        JwtKey {
            kid: None,
            material,
        }
    }

    /// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent
    /// INTEGER }`.
    fn rsa_pkcs1_der(der: &[u8]) -> Result<Self, SetupError> {
        let parse = || -> spki::der::Result<(Vec<u8>, Vec<u8>)> {
            let mut reader = SliceReader::new(der)?;
            let (n, e) = reader.sequence(|r| {
                let n = UintRef::decode(r)?;
                let e = UintRef::decode(r)?;
                Ok((n.as_bytes().to_vec(), e.as_bytes().to_vec()))
            })?;
            reader.finish((n, e))
        };
        let (n, e) = parse().map_err(|e| {
            SetupError::invalid("PEM public key", format!("not an RSA public key: {e}"))
        })?;
        Self::rs256_components(&n, &e)
    }

    fn es256_point(point: &[u8]) -> Result<Self, SetupError> {
        match point {
            [0x04, xy @ ..] if xy.len() == 64 => Self::es256_components(&xy[..32], &xy[32..]),
            _ => Err(SetupError::invalid(
                "PEM public key",
                "P-256 key is not an uncompressed point",
            )),
        }
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}
