//! Requests: the pre-rendered HTTP/1.1 requests a run rotates through.
//!
//! Every combination of URL path and Host value is rendered once at start-up
//! and leaked to `&'static [u8]`, so sending a request is handing a slice to
//! the ring: no formatting, allocation or copy per request.

/// The rendered requests and the order in which they are sent.
#[derive(Debug, Clone)]
pub struct RequestSet {
    /// One entry per request in a rotation cycle.
    cycle: Vec<&'static [u8]>,
    /// The method is HEAD: responses carry no body.
    head: bool,
}

/// What goes into every request.
#[derive(Debug, Clone)]
pub struct RequestSpec<'a> {
    /// Request method, e.g. GET.
    pub method: &'a str,
    /// Paths (with query) rotated round robin.
    pub paths: &'a [String],
    /// Host header values rotated round robin; empty when `-H Host:` is given.
    pub hosts: &'a [String],
    /// Extra header lines, each `Name: value`.
    pub headers: &'a [(String, String)],
    /// Request body (empty for none).
    pub body: &'a [u8],
    /// Add `Connection: close` (one request per connection).
    pub close: bool,
}

impl RequestSet {
    /// Renders every path × host combination. Request `n` of a connection
    /// uses path `n % paths` and host `n % hosts`.
    pub fn build(spec: &RequestSpec<'_>) -> Result<RequestSet, String> {
        validate_token(spec.method).map_err(|e| format!("method {:?}: {e}", spec.method))?;
        for (name, value) in spec.headers {
            validate_token(name).map_err(|e| format!("header name {name:?}: {e}"))?;
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(format!("header {name}: value has CR, LF or NUL"));
            }
            if name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding")
            {
                return Err(format!(
                    "header {name} is set by dao-loadgen from --body/--body-file; do not pass it"
                ));
            }
        }
        if spec.paths.is_empty() {
            return Err("no URL given".into());
        }
        let hosts: Vec<Option<&str>> = if spec.hosts.is_empty() {
            vec![None]
        } else {
            spec.hosts.iter().map(|h| Some(h.as_str())).collect()
        };
        for h in hosts.iter().flatten() {
            if h.is_empty() || h.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(format!("--host {h:?}: not a valid Host value"));
            }
        }
        let len = lcm(spec.paths.len(), hosts.len());
        if len > 1_000_000 {
            return Err("the URL × --host rotation is over a million requests long".into());
        }
        let mut cycle = Vec::with_capacity(len);
        for n in 0..len {
            let path = &spec.paths[n % spec.paths.len()];
            let host = hosts[n % hosts.len()];
            cycle.push(leak(render(spec, path, host)));
        }
        Ok(RequestSet {
            cycle,
            head: spec.method.eq_ignore_ascii_case("HEAD"),
        })
    }

    /// The bytes of request number `n` in the rotation.
    #[inline]
    pub fn get(&self, n: u64) -> &'static [u8] {
        self.cycle[(n % self.cycle.len() as u64) as usize]
    }

    /// Whether responses to these requests have no body (HEAD).
    pub fn no_body(&self) -> bool {
        self.head
    }

    /// Number of distinct requests in one rotation.
    pub fn len(&self) -> usize {
        self.cycle.len()
    }

    /// Never true: a set holds at least one request.
    pub fn is_empty(&self) -> bool {
        self.cycle.is_empty()
    }
}

fn render(spec: &RequestSpec<'_>, path: &str, host: Option<&str>) -> Vec<u8> {
    let mut r = Vec::with_capacity(128 + spec.body.len());
    r.extend_from_slice(spec.method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(path.as_bytes());
    r.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = host {
        r.extend_from_slice(b"Host: ");
        r.extend_from_slice(host.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    for (name, value) in spec.headers {
        r.extend_from_slice(name.as_bytes());
        r.extend_from_slice(b": ");
        r.extend_from_slice(value.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    let wants_length = !spec.body.is_empty()
        || ["POST", "PUT", "PATCH"]
            .iter()
            .any(|m| spec.method.eq_ignore_ascii_case(m));
    if wants_length {
        r.extend_from_slice(format!("Content-Length: {}\r\n", spec.body.len()).as_bytes());
    }
    if spec.close {
        r.extend_from_slice(b"Connection: close\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(spec.body);
    r
}

/// Request templates live as long as the process; leaking them once lets the
/// ring borrow them without reference counts.
fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

fn validate_token(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("not an HTTP token")
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(paths: &'a [String], hosts: &'a [String]) -> RequestSpec<'a> {
        RequestSpec {
            method: "GET",
            paths,
            hosts,
            headers: &[],
            body: b"",
            close: false,
        }
    }

    #[test]
    fn renders_a_plain_get() {
        let paths = vec!["/x?y=1".to_string()];
        let hosts = vec!["h:8080".to_string()];
        let set = RequestSet::build(&spec(&paths, &hosts)).unwrap();
        assert_eq!(set.get(0), b"GET /x?y=1 HTTP/1.1\r\nHost: h:8080\r\n\r\n");
        assert!(!set.no_body());
    }

    #[test]
    fn rotates_paths_and_hosts_independently() {
        let paths = vec!["/a".to_string(), "/b".to_string()];
        let hosts = vec!["x".to_string(), "y".to_string(), "z".to_string()];
        let set = RequestSet::build(&spec(&paths, &hosts)).unwrap();
        assert_eq!(set.len(), 6);
        let seen: Vec<String> = (0..7)
            .map(|n| {
                let r = String::from_utf8(set.get(n).to_vec()).unwrap();
                let path = r.split(' ').nth(1).unwrap().to_string();
                let host = r
                    .split("Host: ")
                    .nth(1)
                    .unwrap()
                    .split('\r')
                    .next()
                    .unwrap()
                    .to_string();
                format!("{path}@{host}")
            })
            .collect();
        assert_eq!(
            seen,
            ["/a@x", "/b@y", "/a@z", "/b@x", "/a@y", "/b@z", "/a@x"]
        );
    }

    #[test]
    fn body_headers_and_close() {
        let paths = vec!["/".to_string()];
        let hosts = vec!["h".to_string()];
        let headers = vec![("X-Test".to_string(), "1".to_string())];
        let s = RequestSpec {
            method: "POST",
            headers: &headers,
            body: b"abc",
            close: true,
            ..spec(&paths, &hosts)
        };
        let set = RequestSet::build(&s).unwrap();
        assert_eq!(
            set.get(0),
            b"POST / HTTP/1.1\r\nHost: h\r\nX-Test: 1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        );
        let s = RequestSpec {
            method: "HEAD",
            ..spec(&paths, &hosts)
        };
        assert!(RequestSet::build(&s).unwrap().no_body());
    }

    #[test]
    fn rejects_bad_input() {
        let paths = vec!["/".to_string()];
        let hosts = vec!["h".to_string()];
        let bad_method = RequestSpec {
            method: "GE T",
            ..spec(&paths, &hosts)
        };
        assert!(RequestSet::build(&bad_method).is_err());
        let headers = vec![("X".to_string(), "a\r\nb".to_string())];
        let injected = RequestSpec {
            headers: &headers,
            ..spec(&paths, &hosts)
        };
        assert!(RequestSet::build(&injected).is_err());
        let headers = vec![("Content-Length".to_string(), "3".to_string())];
        let length = RequestSpec {
            headers: &headers,
            ..spec(&paths, &hosts)
        };
        assert!(RequestSet::build(&length).is_err());
    }
}
