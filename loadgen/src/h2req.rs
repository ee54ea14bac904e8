//! H2req: the HTTP/2 request templates a run rotates through.
//!
//! HTTP/2 requests are header maps, not bytes; they are built once per
//! path × authority combination and cloned per request.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use http::{HeaderMap, Method, Request, Uri};

/// Hop-by-hop headers HTTP/2 forbids (RFC 9113 §8.2.2).
const FORBIDDEN: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

#[derive(Debug, Clone)]
struct Template {
    uri: Uri,
    headers: HeaderMap,
}

/// The HTTP/2 requests of a run.
#[derive(Debug, Clone)]
pub struct H2Requests {
    method: Method,
    cycle: Vec<Template>,
    body: Bytes,
}

impl H2Requests {
    /// Builds the rotation: request `n` uses path `n % paths` and authority
    /// `n % authorities`, like the HTTP/1.1 rotation.
    pub fn build(
        scheme: &str,
        method: &str,
        paths: &[String],
        authorities: &[String],
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<H2Requests, String> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("method {method:?} is not valid"))?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            if lower == "host" {
                return Err("with --http2, set the authority with --host, not -H Host:".into());
            }
            if FORBIDDEN.contains(&lower.as_str()) {
                return Err(format!("header {name} is not allowed in HTTP/2"));
            }
            let n = HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| format!("header name {name:?} is not valid"))?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| format!("header {name}: value is not valid"))?;
            map.append(n, v);
        }
        if !body.is_empty() {
            map.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let mut cycle = Vec::new();
        let len = paths.len() * authorities.len() / gcd(paths.len(), authorities.len());
        for n in 0..len {
            let uri = format!(
                "{scheme}://{}{}",
                authorities[n % authorities.len()],
                paths[n % paths.len()]
            );
            let uri: Uri = uri.parse().map_err(|e| format!("{uri}: {e}"))?;
            cycle.push(Template {
                uri,
                headers: map.clone(),
            });
        }
        if cycle.is_empty() {
            return Err("no URL given".into());
        }
        Ok(H2Requests {
            method,
            cycle,
            body: Bytes::copy_from_slice(body),
        })
    }

    /// Request number `n` of the rotation.
    pub fn request(&self, n: u64) -> Request<()> {
        let t = &self.cycle[(n % self.cycle.len() as u64) as usize];
        let mut r = Request::new(());
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = t.uri.clone();
        *r.headers_mut() = t.headers.clone();
        r
    }

    /// The request body (cheap to clone).
    pub fn body(&self) -> Bytes {
        self.body.clone()
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_and_headers() {
        let paths = vec!["/a".to_string(), "/b?x=1".to_string()];
        let auths = vec!["h1:8080".to_string()];
        let headers = vec![("X-Test".to_string(), "1".to_string())];
        let r = H2Requests::build("http", "POST", &paths, &auths, &headers, b"abc").unwrap();
        let a = r.request(0);
        assert_eq!(a.method(), Method::POST);
        assert_eq!(a.uri().to_string(), "http://h1:8080/a");
        assert_eq!(a.headers()["x-test"], "1");
        assert_eq!(a.headers()["content-length"], "3");
        assert_eq!(
            r.request(1).uri().path_and_query().unwrap().as_str(),
            "/b?x=1"
        );
        assert_eq!(r.request(2).uri().path(), "/a");
        assert_eq!(&r.body()[..], b"abc");
    }

    #[test]
    fn hop_by_hop_headers_are_refused() {
        let paths = vec!["/".to_string()];
        let auths = vec!["h".to_string()];
        for h in ["Connection", "Host", "Transfer-Encoding", "Upgrade"] {
            let headers = vec![(h.to_string(), "x".to_string())];
            assert!(H2Requests::build("http", "GET", &paths, &auths, &headers, b"").is_err());
        }
    }
}
