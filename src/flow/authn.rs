//! The authentication filter: an API key (its header, or `Authorization:
//! Bearer` when allowed) or a JWT (`Authorization: Bearer`), checked by
//! `auth::Authenticator`; 401 with `WWW-Authenticate` otherwise. The
//! identity goes to `State::identity` (a rate-limit key) and, when
//! configured, upstream in a header.
//!
//! A verified JWT is remembered on this core until it stops passing
//! (`exp` + leeway): a client sending the same token again costs a hash
//! and a comparison instead of base64, JSON and a signature check. The
//! cache is direct-mapped (`CACHE_SLOTS` entries, a newer token takes its
//! slot), holds only tokens that passed, and compares the whole token in
//! constant time before trusting an entry.

use std::cell::RefCell;

use subtle::ConstantTimeEq;

use super::auth::credential::{bearer, Bearer};
use super::auth::{Credential, Identity};
use super::spec::AuthSpec;
use super::{Filter, Flow, Reply, RequestCx};
use crate::align::balancer::key_hash as hash;

/// Verified tokens remembered per route per core.
const CACHE_SLOTS: usize = 512;

struct Entry {
    token: Vec<u8>,
    identity: Identity,
    /// First second at which the token no longer passes.
    until: u64,
}

pub(super) struct AuthFilter {
    spec: AuthSpec,
    cache: RefCell<Vec<Option<Entry>>>,
}

impl AuthFilter {
    pub(super) fn new(spec: AuthSpec) -> AuthFilter {
        AuthFilter {
            spec,
            cache: RefCell::new((0..CACHE_SLOTS).map(|_| None).collect()),
        }
    }

    /// The bearer token of a request that will be checked as a JWT (not
    /// when an API key header decides), read as the authenticator reads it.
    fn bearer<'a>(&self, credential: &Credential<'a>) -> Option<&'a [u8]> {
        if credential.api_key.is_some() {
            return None;
        }
        match bearer(credential.authorization) {
            Bearer::Token(t) => Some(t),
            _ => None,
        }
    }

    fn cached(&self, token: &[u8], now: u64) -> Option<Identity> {
        let cache = self.cache.borrow();
        let e = cache[slot(token)].as_ref()?;
        let same = e.token.len() == token.len() && bool::from(e.token.ct_eq(token));
        (same && now < e.until).then(|| e.identity.clone())
    }

    fn remember(&self, token: &[u8], identity: &Identity, until: u64) {
        let mut cache = self.cache.borrow_mut();
        let e = &mut cache[slot(token)];
        match e {
            Some(e) => {
                e.token.clear();
                e.token.extend_from_slice(token);
                e.identity = identity.clone();
                e.until = until;
            }
            None => {
                *e = Some(Entry {
                    token: token.to_vec(),
                    identity: identity.clone(),
                    until,
                })
            }
        }
    }
}

fn slot(token: &[u8]) -> usize {
    (hash(token) % CACHE_SLOTS as u64) as usize
}

impl Filter for AuthFilter {
    fn request(&self, cx: &mut RequestCx<'_>) -> Flow {
        let spec = &self.spec;
        let credential = Credential {
            authorization: cx.headers.get(b"authorization"),
            api_key: cx.headers.get(spec.api_key_header.as_bytes()),
        };
        let now = cx.now_unix_secs;
        let bearer = self.bearer(&credential);
        let outcome = match bearer.and_then(|t| self.cached(t, now)) {
            Some(identity) => Ok(identity),
            None => spec
                .auth
                .authenticate_until(&credential, now)
                .map(|(identity, until)| {
                    if let (Some(token), Some(until)) = (bearer, until) {
                        self.remember(token, &identity, until);
                    }
                    identity
                }),
        };
        match outcome {
            Ok(identity) => {
                cx.state.identity.clear();
                cx.state
                    .identity
                    .extend_from_slice(identity.as_str().as_bytes());
                if let Some(h) = &spec.identity_header {
                    cx.edits.remove(h.as_bytes());
                    cx.edits.add(h.as_bytes(), identity.as_str().as_bytes());
                }
                Flow::Continue
            }
            Err(rejection) => {
                let challenge = spec.auth.challenge(&rejection);
                Flow::Reply(
                    Reply::text(rejection.status(), "Unauthorized\n")
                        .header("WWW-Authenticate", challenge.as_bytes()),
                )
            }
        }
    }
}
