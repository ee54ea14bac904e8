//! The validated form of `[routes.rule.filters]`: what each built-in
//! filter was configured with. Specs are plain data shared by all cores;
//! each worker builds its own filters from them (`Chain::build`).

use std::net::IpAddr;

/// One configured filter.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterSpec {
    /// `ip_allow` / `ip_deny`.
    Ips(IpRules),
    /// `cors`.
    Cors(CorsSpec),
    /// `allowed_methods` (upper case).
    Methods(Vec<String>),
    /// `max_body_bytes`.
    MaxBody(u64),
    /// `request_headers_*` and `response_headers_*`.
    Headers(HeaderRules),
    /// `rate_limit_*`.
    RateLimit(RateSpec),
    /// `api_keys`, `api_keys_file`, `jwt`.
    Auth(AuthSpec),
}

/// A route's authentication: the loaded keys and where to look.
#[derive(Clone)]
pub struct AuthSpec {
    /// Keys and verifiers, loaded and checked with the config.
    pub auth: std::sync::Arc<super::auth::Authenticator>,
    /// The API key's header (lower case).
    pub api_key_header: String,
    /// Forward the identity upstream in this header (any copy the client
    /// sent is dropped).
    pub identity_header: Option<String>,
}

impl std::fmt::Debug for AuthSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSpec")
            .field("api_key_header", &self.api_key_header)
            .field("identity_header", &self.identity_header)
            .finish_non_exhaustive()
    }
}

impl PartialEq for AuthSpec {
    fn eq(&self, other: &AuthSpec) -> bool {
        std::sync::Arc::ptr_eq(&self.auth, &other.auth)
            && self.api_key_header == other.api_key_header
            && self.identity_header == other.identity_header
    }
}

/// What a keyed rate limit is keyed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// The client's IP address.
    ClientIp,
    /// A request header's value (lower case name); requests without it
    /// share one bucket.
    Header(String),
    /// The identity an authentication filter established (requests
    /// without one share one bucket).
    Identity,
}

/// `rate_limit_rps`, `rate_limit_burst`, `rate_limit_key`,
/// `rate_limit_max_keys`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSpec {
    /// Requests per second, for the whole process (per key when keyed).
    pub rps: f64,
    /// Bucket depth, for the whole process.
    pub burst: f64,
    /// Per-key limit, when set.
    pub key: Option<RateKey>,
    /// Keys remembered per core (LRU) for a keyed limit.
    pub max_keys: usize,
    /// This limit's position among all the config's limits (the control
    /// thread's coordinator lists them in this order).
    pub index: usize,
}

/// A CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `v6::/n` or a bare address (all bits).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address or CIDR range"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?}: the prefix length must be 0..={max}")),
            },
        };
        let c = Cidr { net, prefix };
        if c.masked(net) != Some(bits(net)) {
            return Err(format!("{text:?} has host bits set beyond /{prefix}"));
        }
        Ok(c)
    }

    fn masked(&self, ip: IpAddr) -> Option<u128> {
        let (width, v) = match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V4(a)) => (32, u128::from(u32::from(a))),
            (IpAddr::V6(_), IpAddr::V6(a)) => (128, u128::from(a)),
            _ => return None,
        };
        let shift = width - u32::from(self.prefix);
        Some(if shift >= 128 {
            0
        } else {
            (v >> shift) << shift
        })
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.masked(ip) == Some(bits(self.net))
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// `ip_allow` and `ip_deny`: deny wins; with an allow list, only its
/// ranges get in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpRules {
    /// Empty: everyone not denied.
    pub allow: Vec<Cidr>,
    /// Always refused.
    pub deny: Vec<Cidr>,
}

/// `cors = { … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsSpec {
    /// Allowed origins; `["*"]`: any.
    pub origins: Vec<String>,
    /// Methods a preflight may ask for (upper case).
    pub methods: Vec<String>,
    /// Request headers a preflight may ask for (lower case); empty: any
    /// the browser asks for is echoed back.
    pub headers: Vec<String>,
    /// Response headers the page may read.
    pub expose: Vec<String>,
    /// How long a browser may cache a preflight, in seconds.
    pub max_age: Option<u64>,
    /// `Access-Control-Allow-Credentials: true` (not with `*`).
    pub credentials: bool,
}

/// One piece of a header value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// `${client_ip}`.
    ClientIp,
    /// `${request_id}`.
    RequestId,
    /// `${route}`.
    Route,
    /// `${upstream}` (response headers only).
    Upstream,
}

/// A header value with `${…}` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Part>);

impl Template {
    /// Parses a value; `upstream` says whether `${upstream}` is known
    /// where it is used.
    pub fn parse(text: &str, upstream: bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("{text:?}: unclosed ${{"))?;
            let name = &rest[start + 2..start + end];
            parts.push(match name {
                "client_ip" => Part::ClientIp,
                "request_id" => Part::RequestId,
                "route" => Part::Route,
                "upstream" if upstream => Part::Upstream,
                "upstream" => {
                    return Err(
                        "${upstream} is known only in response headers (the upstream is picked after the request filters)"
                            .to_string(),
                    )
                }
                other => {
                    return Err(format!(
                        "unknown variable ${{{other}}} (client_ip, request_id, route, upstream)"
                    ))
                }
            });
            rest = &rest[start + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }
}

/// Header rules of one direction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderEdits {
    /// Added (after the message's own headers).
    pub add: Vec<(String, Template)>,
    /// Set: any header of that name is dropped, then this one added.
    pub set: Vec<(String, Template)>,
    /// Dropped (lower case).
    pub remove: Vec<String>,
}

impl HeaderEdits {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.remove.is_empty()
    }
}

/// `request_headers_*` and `response_headers_*`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderRules {
    /// Applied to the head sent upstream.
    pub request: HeaderEdits,
    /// Applied to the head sent to the client.
    pub response: HeaderEdits,
}

impl RateSpec {
    /// A fresh limiter for one of `cores` cores (an even share until the
    /// control thread says otherwise).
    pub fn limiter(&self, cores: usize, now_us: u64) -> super::ratelimit::Limiter {
        use super::ratelimit::Limiter;
        match self.key {
            None => Limiter::new(self.rps, self.burst, cores, now_us),
            Some(_) => Limiter::keyed(self.rps, self.burst, cores, self.max_keys),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(Cidr::parse("10.1.0.1/16").is_err(), "host bits");
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    #[test]
    fn templates() {
        let t = Template::parse("ip=${client_ip};r=${route}", false).unwrap();
        assert_eq!(
            t.0,
            [
                Part::Text("ip=".into()),
                Part::ClientIp,
                Part::Text(";r=".into()),
                Part::Route
            ]
        );
        assert!(Template::parse("${upstream}", false).is_err());
        assert!(Template::parse("${upstream}", true).is_ok());
        assert!(Template::parse("${nope}", true).is_err());
        assert!(Template::parse("${client_ip", true).is_err());
        assert_eq!(
            Template::parse("plain", false).unwrap().0,
            [Part::Text("plain".into())]
        );
    }
}
