//! Identity: who a request authenticated as, for later filters and headers.

use std::fmt;
use std::sync::Arc;

/// The longest identity accepted, in bytes.
pub const MAX_IDENTITY_BYTES: usize = 256;

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A key from an [`ApiKeys`](super::ApiKeys) set.
    ApiKey,
    /// A signed JWT checked by a [`JwtVerifier`](super::JwtVerifier).
    Jwt,
}

/// Who a request authenticated as: an API key's name (or a stable
/// non-secret id of the key), or a JWT's identity claim (`sub` by default).
///
/// Cheap to clone (an `Arc<str>`), so later filters can keep it, e.g. as a
/// rate-limit key. The value is always 1 to [`MAX_IDENTITY_BYTES`] bytes of
/// UTF-8 with no control characters and no leading or trailing space, so it
/// can be written as an HTTP header value as it is.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    name: Arc<str>,
    method: Method,
}

impl Identity {
    /// An identity, when `name` is fit for a header value (see the type's
    /// docs); `None` otherwise.
    pub fn new(name: &str, method: Method) -> Option<Self> {
        is_valid(name).then(|| Identity {
            name: Arc::from(name),
            method,
        })
    }

    /// The identity as text, also the header value to forward.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// How the request authenticated.
    pub fn method(&self) -> Method {
        self.method
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({:?}, {:?})", &*self.name, self.method)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Whether `name` can be an identity: non-empty, bounded, no control
/// characters (so no CR/LF header injection), no surrounding spaces.
pub(super) fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IDENTITY_BYTES
        && !name.chars().any(char::is_control)
        && !name.starts_with([' ', '\t'])
        && !name.ends_with([' ', '\t'])
}
