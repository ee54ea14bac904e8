//! `[routes.rule.filters]`: each key validated into a `FilterSpec`, in the
//! order the filters run: `ip_allow`/`ip_deny`, `cors`, `allowed_methods`,
//! authentication, the rate limit, `max_body_bytes`, then the header rules. `request_timeout` is a route
//! setting (the response head's deadline) kept beside them.

use std::time::Duration;

use super::Validator;
use std::path::Path;
use std::sync::Arc;

use crate::flow::auth::{Algorithm, ApiKeys, Authenticator, Jwks, JwtKey, JwtVerifier};
use crate::flow::spec::{
    AuthSpec, Cidr, CorsSpec, FilterSpec, HeaderRules, IpRules, RateKey, RateSpec, Template,
};

/// The authentication keys as written.
#[derive(Default)]
struct AuthKeys {
    keys: Option<Vec<String>>,
    keys_file: Option<String>,
    key_header: Option<String>,
    key_as_bearer: bool,
    identity_header: Option<String>,
    /// The `jwt` table and its path.
    jwt: Option<(String, toml::Value)>,
}

/// What the filters table holds.
pub(super) struct Filters {
    pub(super) specs: Vec<FilterSpec>,
    pub(super) request_timeout: Option<Duration>,
}

impl Validator {
    pub(super) fn filters(&mut self, path: &str, raw: Option<toml::Table>) -> Filters {
        let mut ips = IpRules::default();
        let mut cors = None;
        let mut methods = None;
        let mut max_body = None;
        let mut headers = HeaderRules::default();
        let mut request_timeout = None;
        let (mut rps, mut burst, mut rate_key, mut max_keys) = (None, None, None, None);
        let mut auth = AuthKeys::default();
        for (key, value) in raw.unwrap_or_default() {
            let fpath = format!("{path}.{key}");
            match key.as_str() {
                "request_headers_add" => {
                    headers.request.add = self.header_values(&fpath, &value, false)
                }
                "request_headers_set" => {
                    headers.request.set = self.header_values(&fpath, &value, false)
                }
                "request_headers_remove" => {
                    headers.request.remove = self.header_names(&fpath, &value)
                }
                "response_headers_add" => {
                    headers.response.add = self.header_values(&fpath, &value, true)
                }
                "response_headers_set" => {
                    headers.response.set = self.header_values(&fpath, &value, true)
                }
                "response_headers_remove" => {
                    headers.response.remove = self.header_names(&fpath, &value)
                }
                "ip_allow" => ips.allow = self.cidrs(&fpath, &value),
                "ip_deny" => ips.deny = self.cidrs(&fpath, &value),
                "allowed_methods" => {
                    let list = self.strings(&fpath, &value);
                    if list.is_empty() {
                        self.err(&fpath, "must name at least one method");
                    }
                    for (i, m) in list.iter().enumerate() {
                        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
                        {
                            self.err(format!("{fpath}[{i}]"), format!("{m:?} is not a method"));
                        }
                    }
                    methods = Some(list.into_iter().map(|m| m.to_ascii_uppercase()).collect());
                }
                "max_body_bytes" => match value.as_integer() {
                    Some(n) if n >= 0 => max_body = Some(n as u64),
                    _ => self.err(&fpath, "must be a byte count (0 or more)"),
                },
                "request_timeout" => match value.as_str() {
                    Some(t) => {
                        request_timeout = Some(self.duration(
                            &fpath,
                            Some(t.to_string()),
                            Duration::from_secs(60),
                        ))
                    }
                    None => self.err(&fpath, "must be a duration such as \"5s\""),
                },
                "cors" => cors = self.cors(&fpath, &value),
                "rate_limit_rps" => match value.as_float().or(value.as_integer().map(|i| i as f64))
                {
                    Some(r) if r > 0.0 && r <= 1e9 => rps = Some(r),
                    _ => self.err(&fpath, "must be a rate above 0 (requests per second)"),
                },
                "rate_limit_burst" => match value.as_integer() {
                    Some(b) if (1..=1_000_000_000).contains(&b) => burst = Some(b as f64),
                    _ => self.err(&fpath, "must be a request count of 1 or more"),
                },
                "api_keys" => auth.keys = Some(self.strings(&fpath, &value)),
                "api_keys_file" => match value.as_str() {
                    Some(p) => auth.keys_file = Some(p.to_string()),
                    None => self.err(&fpath, "must be a file path"),
                },
                "api_key_header" => match value.as_str() {
                    Some(h) if !h.is_empty() && h.bytes().all(super::is_token) => {
                        auth.key_header = Some(h.to_ascii_lowercase())
                    }
                    _ => self.err(&fpath, "must be a header name"),
                },
                "api_key_as_bearer" => match value.as_bool() {
                    Some(b) => auth.key_as_bearer = b,
                    None => self.err(&fpath, "must be true or false"),
                },
                "identity_header" => match value.as_str() {
                    Some(h) if !h.is_empty() && h.bytes().all(super::is_token) => {
                        auth.identity_header = Some(h.to_string())
                    }
                    _ => self.err(&fpath, "must be a header name"),
                },
                "jwt" => auth.jwt = Some((fpath.clone(), value.clone())),
                "rate_limit_key" => match value.as_str() {
                    Some("identity") => rate_key = Some(RateKey::Identity),
                    Some("client_ip") => rate_key = Some(RateKey::ClientIp),
                    Some(h)
                        if h.strip_prefix("header:")
                            .is_some_and(|n| !n.is_empty() && n.bytes().all(super::is_token)) =>
                    {
                        rate_key = Some(RateKey::Header(h["header:".len()..].to_ascii_lowercase()))
                    }
                    _ => self.err(
                        &fpath,
                        "must be \"client_ip\", \"header:NAME\" or \"identity\"",
                    ),
                },
                "rate_limit_max_keys" => match value.as_integer() {
                    Some(n) if (1..=10_000_000).contains(&n) => max_keys = Some(n as usize),
                    _ => self.err(&fpath, "must be 1..=10000000"),
                },
                _ => self.err(fpath, "unknown filter"),
            }
        }
        let mut specs = Vec::new();
        if !ips.allow.is_empty() || !ips.deny.is_empty() {
            specs.push(FilterSpec::Ips(ips));
        }
        if let Some(c) = cors {
            specs.push(FilterSpec::Cors(c));
        }
        if let Some(m) = methods {
            specs.push(FilterSpec::Methods(m));
        }
        let auth_spec = self.auth(path, auth);
        if rate_key == Some(RateKey::Identity) && auth_spec.is_none() {
            self.err(
                format!("{path}.rate_limit_key"),
                "\"identity\" needs authentication on the route (api_keys, api_keys_file or jwt)",
            );
        }
        if let Some(a) = auth_spec {
            specs.push(FilterSpec::Auth(a));
        }
        match rps {
            Some(rps) => specs.push(FilterSpec::RateLimit(RateSpec {
                rps,
                burst: burst.unwrap_or(rps.ceil()),
                max_keys: max_keys.unwrap_or(crate::flow::ratelimit::MAX_KEYS),
                key: rate_key,
                index: 0,
            })),
            None if burst.is_some() || rate_key.is_some() || max_keys.is_some() => self.err(
                format!("{path}.rate_limit_rps"),
                "the rate is required with rate_limit_burst, rate_limit_key or rate_limit_max_keys",
            ),
            None => {}
        }
        if let Some(n) = max_body {
            specs.push(FilterSpec::MaxBody(n));
        }
        if !headers.request.is_empty() || !headers.response.is_empty() {
            specs.push(FilterSpec::Headers(headers));
        }
        Filters {
            specs,
            request_timeout,
        }
    }

    fn strings(&mut self, path: &str, value: &toml::Value) -> Vec<String> {
        let Some(list) = value.as_array() else {
            self.err(path, "must be a list of strings");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, v) in list.iter().enumerate() {
            match v.as_str() {
                Some(s) => out.push(s.to_string()),
                None => self.err(format!("{path}[{i}]"), "must be a string"),
            }
        }
        out
    }

    fn header_values(
        &mut self,
        path: &str,
        value: &toml::Value,
        upstream: bool,
    ) -> Vec<(String, Template)> {
        let Some(table) = value.as_table() else {
            self.err(path, "must be a table of header = \"value\"");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, v) in table {
            let hpath = format!("{path}.{name}");
            let Some(v) = v.as_str() else {
                self.err(hpath, "value must be a string");
                continue;
            };
            self.header(&hpath, name, v);
            match Template::parse(v, upstream) {
                Ok(t) => out.push((name.clone(), t)),
                Err(e) => self.err(hpath, e),
            }
        }
        out
    }

    fn header_names(&mut self, path: &str, value: &toml::Value) -> Vec<String> {
        let names = self.strings(path, value);
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() || !n.bytes().all(super::is_token) {
                self.err(
                    format!("{path}[{i}]"),
                    format!("{n:?} is not a header name"),
                );
            }
        }
        names.into_iter().map(|n| n.to_ascii_lowercase()).collect()
    }

    fn cidrs(&mut self, path: &str, value: &toml::Value) -> Vec<Cidr> {
        let mut out = Vec::new();
        for (i, s) in self.strings(path, value).iter().enumerate() {
            match Cidr::parse(s) {
                Ok(c) => out.push(c),
                Err(e) => self.err(format!("{path}[{i}]"), e),
            }
        }
        out
    }

    fn cors(&mut self, path: &str, value: &toml::Value) -> Option<CorsSpec> {
        let Some(table) = value.as_table() else {
            self.err(
                path,
                "must be a table: cors = { allow_origins = [...], ... }",
            );
            return None;
        };
        let mut spec = CorsSpec {
            origins: Vec::new(),
            methods: vec!["GET".into(), "HEAD".into(), "POST".into()],
            headers: Vec::new(),
            expose: Vec::new(),
            max_age: None,
            credentials: false,
        };
        for (key, v) in table {
            let kpath = format!("{path}.{key}");
            match key.as_str() {
                "allow_origins" => spec.origins = self.strings(&kpath, v),
                "allow_methods" => {
                    spec.methods = self.strings(&kpath, v).into_iter().map(|m| m.to_ascii_uppercase()).collect()
                }
                "allow_headers" => spec.headers = self.header_names(&kpath, v),
                "expose_headers" => spec.expose = self.header_names(&kpath, v),
                "max_age" => match v.as_str() {
                    Some(t) => {
                        spec.max_age = Some(self.duration(&kpath, Some(t.to_string()), Duration::ZERO).as_secs())
                    }
                    None => self.err(&kpath, "must be a duration such as \"10m\""),
                },
                "allow_credentials" => match v.as_bool() {
                    Some(b) => spec.credentials = b,
                    None => self.err(&kpath, "must be true or false"),
                },
                _ => self.err(kpath, "unknown key (allow_origins, allow_methods, allow_headers, expose_headers, max_age, allow_credentials)"),
            }
        }
        if spec.origins.is_empty() {
            self.err(
                format!("{path}.allow_origins"),
                "at least one origin (or \"*\") is required",
            );
        }
        for (i, o) in spec.origins.iter().enumerate() {
            let ok = o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://")) && !o.ends_with('/'));
            if !ok {
                self.err(
                    format!("{path}.allow_origins[{i}]"),
                    format!("{o:?} is not an origin such as \"https://app.example.com\""),
                );
            }
        }
        if spec.credentials && spec.origins.iter().any(|o| o == "*") {
            self.err(
                format!("{path}.allow_credentials"),
                "browsers refuse credentials with origin \"*\": list the origins",
            );
        }
        Some(spec)
    }
}

impl Validator {
    /// Loads the route's API keys and JWT verifier (files read now, so a
    /// missing or bad file is a config error naming its field).
    fn auth(&mut self, path: &str, a: AuthKeys) -> Option<AuthSpec> {
        let any_keys = a.keys.is_some() || a.keys_file.is_some();
        if !any_keys && a.jwt.is_none() {
            for (set, key) in [
                (a.key_header.is_some(), "api_key_header"),
                (a.key_as_bearer, "api_key_as_bearer"),
                (a.identity_header.is_some(), "identity_header"),
            ] {
                if set {
                    self.err(
                        format!("{path}.{key}"),
                        "needs api_keys, api_keys_file or jwt on the route",
                    );
                }
            }
            return None;
        }
        let keys = if any_keys {
            let mut b = ApiKeys::builder();
            let mut ok = true;
            for (i, k) in a.keys.iter().flatten().enumerate() {
                if let Err(e) = b.key(k, None) {
                    self.err(format!("{path}.api_keys[{i}]"), e.to_string());
                    ok = false;
                }
            }
            if let Some(f) = &a.keys_file {
                if let Err(e) = b.file(Path::new(f)) {
                    self.err(format!("{path}.api_keys_file"), e.to_string());
                    ok = false;
                }
            }
            match b.build() {
                Ok(k) if ok => Some(k),
                Ok(_) => None,
                Err(e) => {
                    self.err(format!("{path}.api_keys"), e.to_string());
                    None
                }
            }
        } else {
            None
        };
        let jwt = match &a.jwt {
            Some((jpath, value)) => Some(self.jwt(jpath, value)?),
            None => None,
        };
        let auth = match (keys, jwt) {
            (Some(k), Some(j)) => Authenticator::either(k, j),
            (Some(k), None) => Authenticator::api_keys(k),
            (None, Some(j)) => Authenticator::jwt(j),
            (None, None) => return None,
        }
        .accept_api_key_as_bearer(a.key_as_bearer);
        Some(AuthSpec {
            auth: Arc::new(auth),
            api_key_header: a.key_header.unwrap_or_else(|| "x-api-key".to_string()),
            identity_header: a.identity_header,
        })
    }

    fn jwt(&mut self, path: &str, value: &toml::Value) -> Option<JwtVerifier> {
        let Some(t) = value.as_table() else {
            self.err(
                path,
                "must be a table: jwt = { public_key_file = \"...\", ... }",
            );
            return None;
        };
        let before = self.errors.len();
        let mut keys = Vec::new();
        let mut algorithms = Vec::new();
        let mut audiences = Vec::new();
        let mut issuers = Vec::new();
        let mut leeway = None;
        let mut claim = None;
        let mut require_exp = true;
        for (key, v) in t {
            let kpath = format!("{path}.{key}");
            let text = v.as_str();
            match key.as_str() {
                "secret" => match text.map(|s| JwtKey::hs256(s.as_bytes())) {
                    Some(Ok(k)) => keys.push(k),
                    Some(Err(e)) => self.err(kpath, e.to_string()),
                    None => self.err(kpath, "must be a string (at least 32 bytes)"),
                },
                "public_key_file" => match text.map(|p| JwtKey::from_pem_file(Path::new(p))) {
                    Some(Ok(k)) => keys.push(k),
                    Some(Err(e)) => self.err(kpath, e.to_string()),
                    None => self.err(kpath, "must be a file path"),
                },
                "jwks_file" => match text.map(|p| Jwks::from_file(Path::new(p))) {
                    Some(Ok(j)) => {
                        for s in &j.skipped {
                            tracing::warn!(field = %kpath, key = %s, "JWKS key skipped");
                        }
                        if j.keys.is_empty() {
                            self.err(&kpath, "no usable key (RS256 or ES256 P-256)");
                        }
                        keys.extend(j.keys);
                    }
                    Some(Err(e)) => self.err(kpath, e.to_string()),
                    None => self.err(kpath, "must be a file path"),
                },
                "algorithms" => {
                    for (i, name) in self.strings(&kpath, v).iter().enumerate() {
                        match Algorithm::from_name(name) {
                            Some(a) => algorithms.push(a),
                            None => self.err(format!("{kpath}[{i}]"), format!("{name:?}: HS256, RS256 or ES256")),
                        }
                    }
                }
                "audience" | "issuer" => {
                    let list = match v {
                        toml::Value::String(s) => vec![s.clone()],
                        _ => self.strings(&kpath, v),
                    };
                    if key == "audience" {
                        audiences = list;
                    } else {
                        issuers = list;
                    }
                }
                "leeway" => match text.map(humantime::parse_duration) {
                    // Zero is a fine leeway (strict clocks).
                    Some(Ok(l)) => leeway = Some(l),
                    _ => self.err(kpath, "must be a duration such as \"30s\" (or \"0s\")"),
                },
                "identity_claim" => match text {
                    Some(c) if !c.is_empty() => claim = Some(c.to_string()),
                    _ => self.err(kpath, "must be a claim name"),
                },
                "require_exp" => match v.as_bool() {
                    Some(b) => require_exp = b,
                    None => self.err(kpath, "must be true or false"),
                },
                _ => self.err(kpath, "unknown key (secret, public_key_file, jwks_file, algorithms, audience, issuer, leeway, identity_claim, require_exp)"),
            }
        }
        if keys.is_empty() && self.errors.len() == before {
            self.err(path, "needs a key: secret, public_key_file or jwks_file");
        }
        if self.errors.len() > before {
            return None;
        }
        let mut verifier = match JwtVerifier::new(keys) {
            Ok(v) => v,
            Err(e) => {
                self.err(path, e.to_string());
                return None;
            }
        };
        if !algorithms.is_empty() {
            verifier = match verifier.with_algorithms(&algorithms) {
                Ok(v) => v,
                Err(e) => {
                    self.err(format!("{path}.algorithms"), e.to_string());
                    return None;
                }
            };
        }
        if let Some(l) = leeway {
            verifier = verifier.with_leeway_secs(l.as_secs());
        }
        if let Some(c) = claim {
            verifier = verifier.with_identity_claim(&c);
        }
        Some(
            verifier
                .with_audiences(audiences)
                .with_issuers(issuers)
                .with_require_exp(require_exp),
        )
    }
}
