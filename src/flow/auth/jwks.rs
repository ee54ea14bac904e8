//! JWKS: a JSON Web Key Set (RFC 7517) read into [`JwtKey`]s.
//!
//! Used: `kty: "RSA"` keys (`n`, `e` → RS256) and `kty: "EC"` keys with
//! `crv: "P-256"` (`x`, `y` → ES256), each with its `kid` if it has one.
//! Skipped, and listed in [`Jwks::skipped`] so the caller can log them:
//! keys with `use: "enc"`, an `alg` other than RS256/ES256 (or one that does
//! not fit the key type), another `kty` (`oct`, `OKP`, ...) or another
//! curve. A key of a used type with a bad or missing field is an error, and
//! so is a set with no usable key. Identity providers publish sets like
//! this, with more key types than we verify, so skipping beats refusing the
//! whole set.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::error::SetupError;
use super::jwt_keys::JwtKey;

/// The usable keys of a JWKS, and a note for each key skipped.
#[derive(Debug)]
pub struct Jwks {
    /// The keys, in the set's order.
    pub keys: Vec<JwtKey>,
    /// One line per skipped key: its index, `kid` and why.
    pub skipped: Vec<String>,
}

impl Jwks {
    /// Reads a JWKS document (`{"keys": [...]}`).
    pub fn from_json(json: &[u8]) -> Result<Self, SetupError> {
        let doc: Value = serde_json::from_slice(json)
            .map_err(|e| SetupError::invalid("JWKS", format!("not JSON: {e}")))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| SetupError::invalid("JWKS", "no `keys` array"))?;
        let mut out = Jwks {
            keys: Vec::new(),
            skipped: Vec::new(),
        };
        for (i, jwk) in keys.iter().enumerate() {
            let jwk = jwk.as_object().ok_or_else(|| {
                SetupError::invalid(format!("JWKS key #{i}"), "not a JSON object")
            })?;
            let kid = match jwk.get("kid") {
                None => None,
                Some(Value::String(kid)) => Some(kid.as_str()),
                Some(_) => {
                    return Err(SetupError::invalid(
                        format!("JWKS key #{i}"),
                        "`kid` is not a string",
                    ))
                }
            };
            let name = match kid {
                Some(kid) => format!("JWKS key #{i} (kid {kid:?})"),
                None => format!("JWKS key #{i}"),
            };
            match read_jwk(jwk).map_err(|reason| SetupError::invalid(&name, reason))? {
                Read::Key(key) => out.keys.push(match kid {
                    Some(kid) => key.with_kid(kid),
                    None => key,
                }),
                Read::Skip(why) => out.skipped.push(format!("{name}: {why}")),
            }
        }
        if out.keys.is_empty() {
            let why = if out.skipped.is_empty() {
                "no keys".to_owned()
            } else {
                format!("no usable key ({})", out.skipped.join("; "))
            };
            return Err(SetupError::invalid("JWKS", why));
        }
        Ok(out)
    }

    /// Reads a JWKS file.
    pub fn from_file(path: &Path) -> Result<Self, SetupError> {
        let json = std::fs::read(path).map_err(SetupError::read(path))?;
        Self::from_json(&json).map_err(|e| match e {
            SetupError::Invalid { what, reason } => {
                SetupError::invalid(format!("{}: {what}", path.display()), reason)
            }
            other => other,
        })
    }
}

enum Read {
    Key(JwtKey),
    Skip(String),
}

fn read_jwk(jwk: &Map<String, Value>) -> Result<Read, String> {
    let text = |field: &str| -> Result<Option<&str>, String> {
        match jwk.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("`{field}` is not a string")),
        }
    };
    let kty = text("kty")?.ok_or("no `kty`")?;
    if text("use")? == Some("enc") {
        return Ok(Read::Skip("an encryption key (`use: enc`)".into()));
    }
    let alg = text("alg")?;
    let bytes = |field: &str| -> Result<Vec<u8>, String> {
        let value = text(field)?.ok_or_else(|| format!("no `{field}`"))?;
        // Unpadded base64url (RFC 7515 §2); tolerate padding some tools add.
        URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .map_err(|_| format!("`{field}` is not base64url"))
    };
    match kty {
        "RSA" => {
            if let Some(alg) = alg.filter(|a| *a != "RS256") {
                return Ok(Read::Skip(format!("RSA key for {alg}, not RS256")));
            }
            let (n, e) = (bytes("n")?, bytes("e")?);
            JwtKey::rs256_components(&n, &e)
                .map(Read::Key)
                .map_err(|e| e.to_string())
        }
        "EC" => {
            let crv = text("crv")?.ok_or("no `crv`")?;
            if crv != "P-256" {
                return Ok(Read::Skip(format!("EC key on {crv}, not P-256")));
            }
            if let Some(alg) = alg.filter(|a| *a != "ES256") {
                return Ok(Read::Skip(format!("EC key for {alg}, not ES256")));
            }
            let (x, y) = (bytes("x")?, bytes("y")?);
            JwtKey::es256_components(&x, &y)
                .map(Read::Key)
                .map_err(|e| e.to_string())
        }
        other => Ok(Read::Skip(format!("key type {other:?} not supported"))),
    }
}
