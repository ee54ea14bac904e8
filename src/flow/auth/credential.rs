//! Credential: the raw header values a request presents, and the
//! `Authorization: Bearer` parsing.

/// What the request presented, as raw header values (the wiring side reads
/// the headers; nothing is copied). When a header appears more than once
/// the wiring should refuse the request rather than pick one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Credential<'a> {
    /// The `Authorization` header's value.
    pub authorization: Option<&'a [u8]>,
    /// The API key header's value (by default
    /// [`x-api-key`](super::api_keys::DEFAULT_HEADER)).
    pub api_key: Option<&'a [u8]>,
}

impl<'a> Credential<'a> {
    /// A credential with only an `Authorization` value.
    pub fn authorization(value: &'a [u8]) -> Self {
        Credential {
            authorization: Some(value),
            api_key: None,
        }
    }

    /// A credential with only an API key header value.
    pub fn api_key(value: &'a [u8]) -> Self {
        Credential {
            authorization: None,
            api_key: Some(value),
        }
    }
}

/// What the `Authorization` header holds for us.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bearer<'a> {
    /// No header, or another scheme (e.g. `Basic`).
    Absent,
    /// A bearer token: visible ASCII, non-empty.
    Token(&'a [u8]),
    /// `Bearer` with no token or with a token we cannot take.
    Malformed(&'static str),
}

/// Reads `Bearer TOKEN` (scheme case-insensitive, RFC 9110 §11.1; one or
/// more spaces; surrounding whitespace ignored). The token is taken as
/// visible ASCII rather than strictly token68, so that API keys with other
/// punctuation can travel as bearer tokens too; a JWT's own parsing is
/// stricter.
pub(crate) fn bearer(authorization: Option<&[u8]>) -> Bearer<'_> {
    let Some(value) = authorization else {
        return Bearer::Absent;
    };
    let value = value.trim_ascii();
    let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
        Some(at) => (&value[..at], &value[at..]),
        None => (value, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Bearer::Absent;
    }
    let token = rest.trim_ascii_start();
    if token.is_empty() {
        return Bearer::Malformed("empty bearer token");
    }
    if !token.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Bearer::Malformed("bearer token has spaces or non-ASCII bytes");
    }
    Bearer::Token(token)
}
