//! The route table: the most specific host first (exact, then the longest
//! `*.suffix`, then any host), then the longest path prefix, then file
//! order. Methods, headers and cookies narrow a rule further.
//!
//! Rules are kept in that order in one vector and the first that matches
//! wins; configs hold tens of rules, where a linear scan over
//! pre-lowercased bytes beats hashing the request's host.

use crate::memory::{HostMatch, Route};

/// A header name (lower case) and the value it must have.
type HeaderMatch = (Box<[u8]>, Box<[u8]>);

#[derive(Debug)]
struct Entry {
    route: usize,
    host: HostMatch,
    prefix: Box<[u8]>,
    methods: Box<[Box<[u8]>]>,
    headers: Box<[HeaderMatch]>,
    cookies: Box<[HeaderMatch]>,
}

/// What a rule may ask of a request beyond host, path and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A header (name in lower case) with exactly this value.
    Header,
    /// A cookie with exactly this value.
    Cookie,
}

/// A compiled route table.
#[derive(Debug, Default)]
pub struct Router {
    entries: Vec<Entry>,
}

/// What a request offers the router.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `Host` or the absolute-form authority, port included or not.
    pub host: &'a [u8],
    /// The path, without the query.
    pub path: &'a [u8],
    /// The method.
    pub method: &'a [u8],
}

impl Router {
    /// Compiles the routes of a validated config.
    pub fn new(routes: &[Route]) -> Router {
        let mut entries: Vec<Entry> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| Entry {
                route: i,
                host: r.host.clone(),
                prefix: r.path_prefix.as_bytes().into(),
                methods: r.methods.iter().map(|m| m.as_bytes().into()).collect(),
                cookies: r
                    .cookies
                    .iter()
                    .map(|(n, v)| (n.as_bytes().into(), v.as_bytes().into()))
                    .collect(),
                headers: r
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_bytes().into(), v.as_bytes().into()))
                    .collect(),
            })
            .collect();
        // Stable sort: equal keys keep file order.
        entries.sort_by_key(|e| {
            let (rank, len) = match &e.host {
                HostMatch::Exact(h) => (0, h.len()),
                HostMatch::Suffix(s) => (1, s.len()),
                HostMatch::Any => (2, 0),
            };
            (rank, usize::MAX - len, usize::MAX - e.prefix.len())
        });
        Router { entries }
    }

    /// The index of the route for a request, if any. `header(name, value)`
    /// says whether the request carries that header with that value
    /// (`name` is lower case).
    /// The first rule that matches `t`; `has(field, name, value)` says
    /// whether the request carries that header or cookie.
    pub fn find(&self, t: Target<'_>, has: impl Fn(Field, &[u8], &[u8]) -> bool) -> Option<usize> {
        let host = host_only(t.host);
        self.entries
            .iter()
            .find(|e| {
                host_matches(&e.host, host)
                    && t.path.starts_with(&e.prefix)
                    && (e.methods.is_empty() || e.methods.iter().any(|m| **m == *t.method))
                    && e.headers.iter().all(|(n, v)| has(Field::Header, n, v))
                    && e.cookies.iter().all(|(n, v)| has(Field::Cookie, n, v))
            })
            .map(|e| e.route)
    }
}

/// Strips the port and a trailing dot from a host.
fn host_only(host: &[u8]) -> &[u8] {
    let mut h = host;
    if let Some(colon) = h.iter().rposition(|&b| b == b':') {
        // `[v6]:port` or `name:port`; a bare IPv6 literal has no brackets.
        if !h[colon + 1..].contains(&b']') && h[colon + 1..].iter().all(u8::is_ascii_digit) {
            h = &h[..colon];
        }
    }
    h.strip_suffix(b".").unwrap_or(h)
}

fn host_matches(m: &HostMatch, host: &[u8]) -> bool {
    match m {
        HostMatch::Any => true,
        HostMatch::Exact(e) => host.eq_ignore_ascii_case(e.as_bytes()),
        // `.example.com` matches `a.example.com`, not `example.com`.
        HostMatch::Suffix(s) => {
            host.len() > s.len() && host[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::parse;

    fn router(rules: &str) -> Router {
        parse(rules).unwrap().router
    }

    fn rule(name: &str, body: &str) -> String {
        format!(
            "[[routes.rule]]\nname = \"{name}\"\n{body}\n[[routes.rule.upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:1\"\n"
        )
    }

    fn find(r: &Router, host: &str, path: &str, method: &str) -> Option<usize> {
        r.find(
            Target {
                host: host.as_bytes(),
                path: path.as_bytes(),
                method: method.as_bytes(),
            },
            |f, n, v| {
                f == Field::Header && n == b"x-tenant" && v == b"blue"
                    || f == Field::Cookie && n == b"variant" && v == b"b"
            },
        )
    }

    #[test]
    fn specificity_order() {
        let r = router(
            &[
                rule("any", ""),
                rule("any-api", "[routes.rule.match]\npath_prefix = \"/api/\""),
                rule("wild", "[routes.rule.match]\nhost = \"*.example.com\""),
                rule(
                    "wild-deep",
                    "[routes.rule.match]\nhost = \"*.eu.example.com\"",
                ),
                rule("exact", "[routes.rule.match]\nhost = \"api.example.com\""),
                rule(
                    "exact-v1",
                    "[routes.rule.match]\nhost = \"api.example.com\"\npath_prefix = \"/v1/\"",
                ),
            ]
            .concat(),
        );
        assert_eq!(find(&r, "api.example.com", "/v1/x", "GET"), Some(5));
        assert_eq!(find(&r, "API.Example.com:8080", "/v2", "GET"), Some(4));
        assert_eq!(find(&r, "a.eu.example.com", "/", "GET"), Some(3));
        assert_eq!(find(&r, "www.example.com.", "/", "GET"), Some(2));
        // The suffix matches subdomains only.
        assert_eq!(find(&r, "example.com", "/api/x", "GET"), Some(1));
        assert_eq!(find(&r, "other", "/", "GET"), Some(0));
    }

    #[test]
    fn methods_and_headers_narrow() {
        let r = router(&[
            rule("tenant", "[routes.rule.match]\nheaders = { \"X-Tenant\" = \"blue\" }\npath_prefix = \"/t\""),
            rule("tenant-red", "[routes.rule.match]\nheaders = { \"X-Tenant\" = \"red\" }\npath_prefix = \"/t\""),
            rule("post", "[routes.rule.match]\nmethods = [\"POST\"]\npath_prefix = \"/\""),
            rule("b-side", "[routes.rule.match]\ncookies = { variant = \"b\" }\npath_prefix = \"/ab\""),
            rule("a-side", "[routes.rule.match]\ncookies = { variant = \"a\" }\npath_prefix = \"/ab\""),
        ]
        .concat());
        assert_eq!(find(&r, "h", "/t", "GET"), Some(0));
        // A/B by cookie: the request carries variant=b.
        assert_eq!(find(&r, "h", "/ab", "GET"), Some(3));
        assert_eq!(find(&r, "h", "/x", "POST"), Some(2));
        assert_eq!(find(&r, "h", "/x", "GET"), None);
    }

    #[test]
    fn host_port_stripping() {
        assert_eq!(host_only(b"a.com:80"), b"a.com");
        assert_eq!(host_only(b"[::1]:80"), b"[::1]");
        assert_eq!(host_only(b"[::1]"), b"[::1]");
        assert_eq!(host_only(b"a.com."), b"a.com");
    }
}
