//! Rejection: why a request failed authentication, and its 401 challenge.

/// Why a request failed authentication. Every reason answers `401
/// Unauthorized` with a `WWW-Authenticate` challenge
/// ([`Rejection::www_authenticate`]).
///
/// The descriptions are fixed text: nothing the client sent is echoed back
/// into the challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No credential this route accepts was presented.
    #[error("no credential")]
    Missing,
    /// The credential could not be parsed (the detail says which part).
    #[error("malformed credential: {0}")]
    Malformed(&'static str),
    /// The token is larger than the verifier's limit.
    #[error("token too large")]
    TooLarge,
    /// The token's `alg` is not accepted (`none`, an unsupported or
    /// unconfigured algorithm, or one that does not match the key).
    #[error("algorithm not accepted")]
    Algorithm,
    /// The signature does not verify with any candidate key.
    #[error("invalid signature")]
    BadSignature,
    /// The API key is not one of the configured keys.
    #[error("unknown API key")]
    UnknownKey,
    /// The token names a key id (`kid`) that no configured key has.
    #[error("unknown key id")]
    UnknownKid,
    /// The token's `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// The token's `nbf` is still ahead (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The token's `aud` names none of the accepted audiences, or is
    /// missing when audiences are configured, or is present when none are.
    #[error("audience not accepted")]
    WrongAudience,
    /// The token's `iss` is not an accepted issuer, or is missing.
    #[error("issuer not accepted")]
    WrongIssuer,
    /// A required claim is missing: `"exp"`, or `"identity"` for the
    /// identity claim (`sub` unless configured otherwise).
    #[error("missing claim: {0}")]
    MissingClaim(&'static str),
}

impl Rejection {
    /// The HTTP status to answer with: 401 for every reason.
    pub const fn status(&self) -> u16 {
        401
    }

    /// A short stable label for logs and metrics.
    pub const fn label(&self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Malformed(_) => "malformed",
            Rejection::TooLarge => "too_large",
            Rejection::Algorithm => "algorithm",
            Rejection::BadSignature => "bad_signature",
            Rejection::UnknownKey => "unknown_key",
            Rejection::UnknownKid => "unknown_kid",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::WrongIssuer => "wrong_issuer",
            Rejection::MissingClaim(_) => "missing_claim",
        }
    }

    /// The `WWW-Authenticate` header value (RFC 6750 §3): `Bearer
    /// realm="REALM"` when no credential was presented, otherwise with
    /// `error="invalid_token"` and an `error_description`.
    ///
    /// `realm` must be valid inside a quoted string without escapes (see
    /// [`valid_realm`]); [`Authenticator`](super::Authenticator) checks it
    /// when built.
    pub fn www_authenticate(&self, realm: &str) -> String {
        let mut out = String::with_capacity(96);
        out.push_str("Bearer realm=\"");
        out.push_str(realm);
        out.push('"');
        if *self != Rejection::Missing {
            out.push_str(", error=\"invalid_token\", error_description=\"");
            // Display is fixed text plus a fixed detail: within RFC 6750's
            // error_description characters (%x20-21 / %x23-5B / %x5D-7E).
            out.push_str(&self.to_string());
            out.push('"');
        }
        out
    }
}

/// Whether `realm` can stand in `realm="..."` as it is: 1 to 64 printable
/// ASCII characters, no `"` or `\`.
pub fn valid_realm(realm: &str) -> bool {
    !realm.is_empty()
        && realm.len() <= 64
        && realm
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}
