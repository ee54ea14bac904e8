//! Target: parsing the URLs to load and resolving their origin.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

/// Why HTTP/3 URLs are refused.
const NO_HTTP3: &str = "HTTP/3 is not supported yet by dao-loadgen (it waits on DAO's QUIC gate)";

/// The scheme of a target URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP/1.1 over TCP.
    Http,
    /// HTTP/1.1 over TLS.
    Https,
}

/// One URL to request, split into the parts the generator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// http or https.
    pub scheme: Scheme,
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    /// TCP port (default 80/443 from the scheme).
    pub port: u16,
    /// The authority as written in the URL (the default Host header).
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

impl Target {
    /// Parses an absolute `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url}: not an absolute URL (expected http://host/path)"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "h3" | "quic" | "http3" => return Err(format!("{url}: {NO_HTTP3}")),
            other => return Err(format!("{url}: unsupported scheme {other:?} (http, https)")),
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = path.split('#').next().unwrap_or("");
        let path = match path.chars().next() {
            None => "/".to_string(),
            Some('?') => format!("/{path}"),
            Some(_) => path.to_string(),
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("{url}: the path has spaces or control characters"));
        }
        if authority.contains('@') {
            return Err(format!(
                "{url}: user info in URLs is not supported; use -H Authorization"
            ));
        }
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url}: unterminated IPv6 literal"))?;
            let port = match after {
                "" => default_port,
                p => parse_port(url, p.strip_prefix(':').unwrap_or("x"))?,
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), parse_port(url, p)?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Target {
            scheme,
            host,
            port,
            authority: authority.to_string(),
            path,
        })
    }

    /// Whether two targets share scheme, host and port (one connection can
    /// carry requests for both).
    pub fn same_origin(&self, other: &Target) -> bool {
        self.scheme == other.scheme
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
    }

    /// Resolves the host to one socket address (the first the resolver gives).
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))
    }
}

fn parse_port(url: &str, p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("{url}: invalid port {p:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let t = Target::parse("http://127.0.0.1:8080/a/b?x=1#frag").unwrap();
        assert_eq!(t.scheme, Scheme::Http);
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8080));
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path, "/a/b?x=1");
        let t = Target::parse("https://example.com").unwrap();
        assert_eq!((t.port, t.path.as_str()), (443, "/"));
        let t = Target::parse("http://[::1]:9000?q").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 9000, "/?q")
        );
        assert_eq!(t.to_string(), "http://[::1]:9000/?q");
        let t = Target::parse("HTTP://[::1]/").unwrap();
        assert_eq!(t.port, 80);
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "127.0.0.1:80/",
            "ftp://x/",
            "h3://x/",
            "http:///a",
            "http://x:0/",
            "http://x:99999/",
            "http://u:p@x/",
            "http://[::1/",
            "http://x/a b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origin_comparison() {
        let a = Target::parse("http://h:1/a").unwrap();
        assert!(a.same_origin(&Target::parse("http://H:1/b").unwrap()));
        assert!(!a.same_origin(&Target::parse("http://h:2/a").unwrap()));
        assert!(!a.same_origin(&Target::parse("https://h:1/a").unwrap()));
    }
}
