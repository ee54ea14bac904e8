//! The authentication filter: an API key (its header, or `Authorization:
//! Bearer` when allowed) or a JWT (`Authorization: Bearer`), checked by
//! `auth::Authenticator`; 401 with `WWW-Authenticate` otherwise. The
//! identity goes to `State::identity` (a rate-limit key) and, when
//! configured, upstream in a header.

use super::auth::Credential;
use super::spec::AuthSpec;
use super::{Filter, Flow, Reply, RequestCx};

pub(super) struct AuthFilter(pub(super) AuthSpec);

impl Filter for AuthFilter {
    fn request(&self, cx: &mut RequestCx<'_>) -> Flow {
        let spec = &self.0;
        let credential = Credential {
            authorization: cx.headers.get(b"authorization"),
            api_key: cx.headers.get(spec.api_key_header.as_bytes()),
        };
        match spec.auth.authenticate(&credential, cx.now_unix_secs) {
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
