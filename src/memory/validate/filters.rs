//! `[routes.rule.filters]`: each key validated into a `FilterSpec`, in the
//! order the filters run: `ip_allow`/`ip_deny`, `cors`, `allowed_methods`,
//! the rate limit, `max_body_bytes`, then the header rules. `request_timeout` is a route
//! setting (the response head's deadline) kept beside them.

use std::time::Duration;

use super::Validator;
use crate::flow::spec::{
    Cidr, CorsSpec, FilterSpec, HeaderRules, IpRules, RateKey, RateSpec, Template,
};

/// Filter keys that later work adds; named so the error says so.
const FUTURE_FILTERS: &[&str] = &["api_keys", "api_keys_file", "jwt"];

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
                "rate_limit_key" => match value.as_str() {
                    Some("client_ip") => rate_key = Some(RateKey::ClientIp),
                    Some(h)
                        if h.strip_prefix("header:")
                            .is_some_and(|n| !n.is_empty() && n.bytes().all(super::is_token)) =>
                    {
                        rate_key = Some(RateKey::Header(h["header:".len()..].to_ascii_lowercase()))
                    }
                    _ => self.err(&fpath, "must be \"client_ip\" or \"header:NAME\""),
                },
                "rate_limit_max_keys" => match value.as_integer() {
                    Some(n) if (1..=10_000_000).contains(&n) => max_keys = Some(n as usize),
                    _ => self.err(&fpath, "must be 1..=10000000"),
                },
                k if FUTURE_FILTERS.contains(&k) => self.not_yet(&fpath),
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
