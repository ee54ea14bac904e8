//! Authentication: API keys and JWTs checked against a route's settings,
//! giving an [`Identity`] or a 401 [`Rejection`]. Sans-IO: header values and
//! the time go in, a decision comes out.
//!
//! ```text
//!   request headers ──► Credential { authorization, api_key }
//!                              │ Authenticator::authenticate(&cred, now)
//!                              ▼
//!          Ok(Identity)  ─► later filters (rate-limit key), forwarded header
//!          Err(Rejection) ─► 401 + WWW-Authenticate: Authenticator::challenge
//! ```
//!
//! Built once per route from settings (an `Authenticator` is `Send + Sync`
//! and lives in the shared config snapshot); `authenticate` takes `&self`.
//!
//! For the wiring side:
//! - Pass the `Authorization` value and the API key header's value (default
//!   [`api_keys::DEFAULT_HEADER`]) as they arrived; refuse duplicated
//!   headers before calling.
//! - When forwarding the identity as a header, remove any copy of that
//!   header the client sent, authenticated or not. [`Identity::as_str`] is
//!   always a valid header value.
//! - The time is Unix seconds of the wall clock (`SystemTime`), read by the
//!   driver: this module never reads a clock.

pub mod api_keys;
pub(crate) mod credential;
mod error;
mod identity;
mod jwks;
mod jwt;
mod jwt_keys;
mod rejection;

#[cfg(test)]
mod tests;

pub use api_keys::{ApiKeys, ApiKeysBuilder};
pub use credential::Credential;
pub use error::SetupError;
pub use identity::{Identity, Method, MAX_IDENTITY_BYTES};
pub use jwks::Jwks;
pub use jwt::{JwtVerifier, DEFAULT_IDENTITY_CLAIM, DEFAULT_LEEWAY_SECS, DEFAULT_MAX_TOKEN_BYTES};
pub use jwt_keys::{Algorithm, JwtKey, MIN_HS256_SECRET_BYTES};
pub use rejection::{valid_realm, Rejection};

use credential::{bearer, Bearer};

/// The result of authenticating one request.
pub type Outcome = Result<Identity, Rejection>;

/// The realm named in challenges unless another is set.
pub const DEFAULT_REALM: &str = "dao";

/// A route's authentication: API keys, JWTs, or either.
///
/// How a credential is chosen, in order:
/// 1. With API keys configured and the API key header present, that header
///    decides: its key's identity, or [`Rejection::UnknownKey`] (a bearer
///    token beside it is not tried).
/// 2. Otherwise an `Authorization: Bearer` token: first looked up as an API
///    key when [`accept_api_key_as_bearer`](Self::accept_api_key_as_bearer)
///    is on, then verified as a JWT when JWTs are configured.
/// 3. Otherwise [`Rejection::Missing`] (an `Authorization` header with
///    another scheme, e.g. `Basic`, counts as absent).
#[derive(Debug)]
pub struct Authenticator {
    api_keys: Option<ApiKeys>,
    api_key_as_bearer: bool,
    jwt: Option<JwtVerifier>,
    realm: Box<str>,
}

impl Authenticator {
    /// Accepts API keys (in the API key header only, until
    /// [`accept_api_key_as_bearer`](Self::accept_api_key_as_bearer)).
    pub fn api_keys(keys: ApiKeys) -> Self {
        Self::make(Some(keys), None)
    }

    /// Accepts JWTs as bearer tokens.
    pub fn jwt(verifier: JwtVerifier) -> Self {
        Self::make(None, Some(verifier))
    }

    /// Accepts either an API key or a JWT.
    pub fn either(keys: ApiKeys, verifier: JwtVerifier) -> Self {
        Self::make(Some(keys), Some(verifier))
    }

    /// Also looks bearer tokens up as API keys (before trying them as JWTs).
    pub fn accept_api_key_as_bearer(mut self, accept: bool) -> Self {
        self.api_key_as_bearer = accept;
        self
    }

    /// The realm named in challenges (default `dao`); see [`valid_realm`].
    pub fn with_realm(mut self, realm: &str) -> Result<Self, SetupError> {
        if !valid_realm(realm) {
            return Err(SetupError::invalid(
                "auth realm",
                "must be 1 to 64 printable ASCII characters without `\"` or `\\`",
            ));
        }
        self.realm = realm.into();
        Ok(self)
    }

    /// Authenticates one request at `now_unix_secs` (Unix time, seconds).
    pub fn authenticate(&self, credential: &Credential<'_>, now_unix_secs: u64) -> Outcome {
        self.authenticate_until(credential, now_unix_secs)
            .map(|(identity, _)| identity)
    }

    /// As [`authenticate`](Self::authenticate); a JWT's identity comes with
    /// the second its token stops passing (`None` for API keys), so that
    /// the caller may remember it until then.
    pub fn authenticate_until(
        &self,
        credential: &Credential<'_>,
        now_unix_secs: u64,
    ) -> Result<(Identity, Option<u64>), Rejection> {
        if let (Some(keys), Some(key)) = (&self.api_keys, credential.api_key) {
            if key.is_empty() {
                return Err(Rejection::Malformed("empty API key"));
            }
            return keys
                .lookup(key)
                .map(|i| (i, None))
                .ok_or(Rejection::UnknownKey);
        }
        let token = match bearer(credential.authorization) {
            Bearer::Token(token) => token,
            Bearer::Malformed(why) => return Err(Rejection::Malformed(why)),
            Bearer::Absent => return Err(Rejection::Missing),
        };
        let bearer_keys = self.api_keys.as_ref().filter(|_| self.api_key_as_bearer);
        if let Some(identity) = bearer_keys.and_then(|keys| keys.lookup(token)) {
            return Ok((identity, None));
        }
        match (&self.jwt, bearer_keys) {
            (Some(jwt), _) => jwt
                .verify_until(token, now_unix_secs)
                .map(|(i, until)| (i, Some(until))),
            (None, Some(_)) => Err(Rejection::UnknownKey),
            // A bearer token where only the API key header is accepted.
            (None, None) => Err(Rejection::Missing),
        }
    }

    /// The `WWW-Authenticate` value for a rejection, with this realm.
    pub fn challenge(&self, rejection: &Rejection) -> String {
        rejection.www_authenticate(&self.realm)
    }

    /// The realm named in challenges.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn make(api_keys: Option<ApiKeys>, jwt: Option<JwtVerifier>) -> Self {
        Authenticator {
            api_keys,
            api_key_as_bearer: false,
            jwt,
            realm: DEFAULT_REALM.into(),
        }
    }
}
