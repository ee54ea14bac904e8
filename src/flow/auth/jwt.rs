//! JWT: verification of compact JWS tokens (HS256, RS256, ES256) and their
//! time, audience and issuer claims. Sans-IO: the time is an argument.
//!
//! Order of checks, cheapest and least trusting first: size, shape (three
//! base64url parts), header (`alg` accepted, no `crit`), key choice by
//! `kid` and `alg`, signature; only then are the claims parsed: `exp`,
//! `nbf`, `iss`, `aud`, then the identity claim.
//!
//! Key choice: a token naming a `kid` is checked with the keys of that kid
//! and the keys without one ([`Rejection::UnknownKid`] when there are
//! none); a token naming no kid, with every key. Of those, only keys of the
//! token's `alg` are tried ([`Rejection::Algorithm`] when none is), each
//! until one verifies, so the work is bounded by the configured keys.
//!
//! Time rules (RFC 7519 §4.1.4–5), with `leeway` for clock skew: a token is
//! accepted while `now < exp + leeway` and once `now + leeway >= nbf`.
//! NumericDates may be fractional; they are rounded up to whole seconds,
//! which keeps both rules exact for a whole-second `now`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::SetupError;
use super::identity::{Identity, Method};
use super::jwt_keys::{Algorithm, JwtKey};
use super::rejection::Rejection;

/// The default cap on a token's size, in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The default clock-skew leeway for `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// The default claim the identity is read from.
pub const DEFAULT_IDENTITY_CLAIM: &str = "sub";

/// Checks JWTs against a set of keys and claim rules. Made with
/// [`JwtVerifier::new`] and adjusted with the `with_*` methods; used with
/// [`JwtVerifier::verify`].
#[derive(Debug)]
pub struct JwtVerifier {
    keys: Vec<JwtKey>,
    algorithms: Vec<Algorithm>,
    leeway_secs: u64,
    audiences: Vec<Box<str>>,
    issuers: Vec<Box<str>>,
    identity_claim: Box<str>,
    max_token_bytes: usize,
    require_exp: bool,
}

/// The JOSE header fields we read; others are ignored, except `crit`.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Extensions the token says must be understood: we understand none.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

impl JwtVerifier {
    /// A verifier for `keys` (at least one). The accepted algorithms are
    /// those of the keys; by default `exp` is required, the leeway is 30 s,
    /// the identity is `sub`, tokens are at most 8 KiB, and no audience or
    /// issuer is configured (so a token carrying `aud` is refused, as RFC
    /// 7519 §4.1.3 requires).
    pub fn new(keys: Vec<JwtKey>) -> Result<Self, SetupError> {
        if keys.is_empty() {
            return Err(SetupError::invalid("JWT", "no key given"));
        }
        let mut algorithms = Vec::new();
        for key in &keys {
            if !algorithms.contains(&key.algorithm()) {
                algorithms.push(key.algorithm());
            }
        }
        Ok(JwtVerifier {
            keys,
            algorithms,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            audiences: Vec::new(),
            issuers: Vec::new(),
            identity_claim: DEFAULT_IDENTITY_CLAIM.into(),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            require_exp: true,
        })
    }

    /// Accepts only these algorithms. Every key must use one of them (a key
    /// that could never be used is a setup error).
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Result<Self, SetupError> {
        if algorithms.is_empty() {
            return Err(SetupError::invalid("JWT algorithms", "empty list"));
        }
        if let Some(key) = self
            .keys
            .iter()
            .find(|k| !algorithms.contains(&k.algorithm()))
        {
            return Err(SetupError::invalid(
                "JWT algorithms",
                format!(
                    "a key is {} (kid {:?}) but the list leaves it out",
                    key.algorithm(),
                    key.kid().unwrap_or("none")
                ),
            ));
        }
        self.algorithms = algorithms.to_vec();
        Ok(self)
    }

    /// The leeway for `exp` and `nbf`, in seconds.
    pub fn with_leeway_secs(mut self, secs: u64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// Requires `aud` to name at least one of these (a string or an array).
    pub fn with_audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences = audiences
            .into_iter()
            .map(|a| a.into().into_boxed_str())
            .collect();
        self
    }

    /// Requires `iss` to be one of these.
    pub fn with_issuers<I, S>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.issuers = issuers
            .into_iter()
            .map(|a| a.into().into_boxed_str())
            .collect();
        self
    }

    /// Reads the identity from this claim instead of `sub`. Its value must
    /// be a string or an integer.
    pub fn with_identity_claim(mut self, claim: &str) -> Self {
        self.identity_claim = claim.into();
        self
    }

    /// Refuses tokens longer than `bytes` before any parsing.
    pub fn with_max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// Whether a token without `exp` is refused (default: yes).
    pub fn with_require_exp(mut self, require: bool) -> Self {
        self.require_exp = require;
        self
    }

    /// The accepted algorithms.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Checks a compact JWS token at `now_unix_secs` and returns the
    /// identity it carries, or why it is refused.
    pub fn verify(&self, token: &[u8], now_unix_secs: u64) -> Result<Identity, Rejection> {
        self.verify_until(token, now_unix_secs)
            .map(|(identity, _)| identity)
    }

    /// As [`verify`](Self::verify), with the first second at which the
    /// token no longer passes (`exp` + leeway; `u64::MAX` without `exp`),
    /// so that a caller may remember the result until then.
    pub fn verify_until(
        &self,
        token: &[u8],
        now_unix_secs: u64,
    ) -> Result<(Identity, u64), Rejection> {
        if token.len() > self.max_token_bytes {
            return Err(Rejection::TooLarge);
        }
        if token.is_empty() {
            return Err(Rejection::Malformed("empty token"));
        }
        let mut parts = token.split(|b| *b == b'.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed("not three dot-separated parts"));
        };

        let header = decode_b64(header_b64, "header is not base64url")?;
        let header: Header = serde_json::from_slice(&header)
            .map_err(|_| Rejection::Malformed("header is not JSON with a string alg"))?;
        if header.crit.is_some() {
            return Err(Rejection::Malformed("crit header extensions not supported"));
        }
        let alg = Algorithm::from_name(&header.alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or(Rejection::Algorithm)?;

        // A token naming a kid is checked with the keys of that kid and
        // those without one; a token naming none, with every key.
        let kid = header.kid.as_deref();
        let mut by_kid = self
            .keys
            .iter()
            .filter(|k| kid.is_none() || k.kid().is_none() || k.kid() == kid)
            .peekable();
        if by_kid.peek().is_none() {
            return Err(Rejection::UnknownKid);
        }
        let mut candidates = by_kid.filter(|k| k.algorithm() == alg).peekable();
        if candidates.peek().is_none() {
            // E.g. an HS256 token naming an RSA key's kid.
            return Err(Rejection::Algorithm);
        }

        let signature = decode_b64(signature_b64, "signature is not base64url")?;
        let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
        if !candidates.any(|k| k.verify(signed, &signature)) {
            return Err(Rejection::BadSignature);
        }

        let payload = decode_b64(payload_b64, "payload is not base64url")?;
        let claims: Map<String, Value> = serde_json::from_slice(&payload)
            .map_err(|_| Rejection::Malformed("claims are not a JSON object"))?;
        self.check_claims(&claims, now_unix_secs)
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<(Identity, u64), Rejection> {
        let until = match claims.get("exp") {
            None if self.require_exp => return Err(Rejection::MissingClaim("exp")),
            None => u64::MAX,
            Some(exp) => {
                let exp = numeric_date(exp).ok_or(Rejection::Malformed("exp is not a date"))?;
                let until = exp.saturating_add(self.leeway_secs);
                if now >= until {
                    return Err(Rejection::Expired);
                }
                until
            }
        };
        if let Some(nbf) = claims.get("nbf") {
            let nbf = numeric_date(nbf).ok_or(Rejection::Malformed("nbf is not a date"))?;
            if now.saturating_add(self.leeway_secs) < nbf {
                return Err(Rejection::NotYetValid);
            }
        }
        if !self.issuers.is_empty() {
            let iss = claims.get("iss").and_then(Value::as_str);
            if !iss.is_some_and(|iss| self.issuers.iter().any(|i| **i == *iss)) {
                return Err(Rejection::WrongIssuer);
            }
        }
        self.check_audience(claims.get("aud"))?;
        let identity = match claims.get(&*self.identity_claim) {
            Some(Value::String(s)) => Identity::new(s, Method::Jwt),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                Identity::new(&n.to_string(), Method::Jwt)
            }
            None => return Err(Rejection::MissingClaim("identity")),
            Some(_) => None,
        };
        identity.map(|i| (i, until)).ok_or(Rejection::Malformed(
            "identity claim is not a usable string or integer",
        ))
    }

    fn check_audience(&self, aud: Option<&Value>) -> Result<(), Rejection> {
        let accepted = |a: &str| self.audiences.iter().any(|x| **x == *a);
        let ok = match aud {
            // No aud: fine unless audiences are required.
            None => self.audiences.is_empty(),
            Some(Value::String(a)) => accepted(a),
            Some(Value::Array(list)) => {
                if list.iter().any(|a| !a.is_string()) {
                    return Err(Rejection::Malformed("aud is not a string or strings"));
                }
                list.iter().filter_map(Value::as_str).any(accepted)
            }
            Some(_) => return Err(Rejection::Malformed("aud is not a string or strings")),
        };
        if ok {
            Ok(())
        } else {
            Err(Rejection::WrongAudience)
        }
    }
}

fn decode_b64(part: &[u8], what: &'static str) -> Result<Vec<u8>, Rejection> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed(what))
}

/// A NumericDate as whole seconds, rounded up; `None` when it is not a
/// non-negative finite number.
fn numeric_date(value: &Value) -> Option<u64> {
    let n = value.as_number()?;
    if let Some(secs) = n.as_u64() {
        return Some(secs);
    }
    let secs = n.as_f64()?;
    // `as` saturates for huge values.
    (secs.is_finite() && secs >= 0.0).then(|| secs.ceil() as u64)
}
