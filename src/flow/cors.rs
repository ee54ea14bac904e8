//! CORS for browser clients: a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) from an allowed origin is answered 204
//! by DAO with the allowed methods and headers; one from another origin,
//! or asking for a method not allowed, gets 403. Actual requests from an
//! allowed origin go upstream and their responses carry
//! `Access-Control-Allow-Origin` (and `Vary: Origin`); others pass
//! untouched (the browser then withholds the response).

use super::spec::CorsSpec;
use super::{Filter, Flow, Reply, RequestCx, ResponseCx};

pub(super) struct Cors {
    spec: CorsSpec,
    any: bool,
    methods: Vec<u8>,
    headers: Vec<u8>,
    expose: Vec<u8>,
}

impl Cors {
    pub(super) fn new(spec: CorsSpec) -> Cors {
        Cors {
            any: spec.origins.iter().any(|o| o == "*"),
            methods: spec.methods.join(", ").into_bytes(),
            headers: spec.headers.join(", ").into_bytes(),
            expose: spec.expose.join(", ").into_bytes(),
            spec,
        }
    }

    fn allows(&self, origin: &[u8]) -> bool {
        self.any
            || self
                .spec
                .origins
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
    }

    /// The `Access-Control-Allow-Origin` value for `origin`.
    fn allow_origin<'a>(&self, origin: &'a [u8]) -> &'a [u8] {
        if self.any && !self.spec.credentials {
            b"*"
        } else {
            origin
        }
    }
}

impl Filter for Cors {
    fn request(&self, cx: &mut RequestCx<'_>) -> Flow {
        let Some(origin) = cx.headers.get(b"origin") else {
            return Flow::Continue;
        };
        let preflight = cx.method == b"OPTIONS";
        let asked = cx.headers.get(b"access-control-request-method");
        if preflight && asked.is_some() {
            let asked = asked.unwrap_or_default();
            let method_ok = self.spec.methods.iter().any(|m| m.as_bytes() == asked);
            if !self.allows(origin) || !method_ok {
                return Flow::Reply(Reply::text(403, "CORS request refused\n"));
            }
            let mut r = Reply {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            }
            .header("Access-Control-Allow-Origin", self.allow_origin(origin))
            .header("Access-Control-Allow-Methods", &self.methods)
            .header("Vary", b"Origin");
            let req_headers = cx.headers.get(b"access-control-request-headers");
            if !self.headers.is_empty() {
                r = r.header("Access-Control-Allow-Headers", &self.headers);
            } else if let Some(h) = req_headers {
                r = r.header("Access-Control-Allow-Headers", h);
            }
            if let Some(age) = self.spec.max_age {
                r = r.header(
                    "Access-Control-Max-Age",
                    itoa::Buffer::new().format(age).as_bytes(),
                );
            }
            if self.spec.credentials {
                r = r.header("Access-Control-Allow-Credentials", b"true");
            }
            return Flow::Reply(r);
        }
        if self.allows(origin) {
            cx.state.cors = true;
            cx.state.cors_origin.clear();
            cx.state.cors_origin.extend_from_slice(origin);
        }
        Flow::Continue
    }

    fn response(&self, cx: &mut ResponseCx<'_>) {
        if !cx.state.cors {
            return;
        }
        let origin = self.allow_origin(&cx.state.cors_origin);
        cx.edits.remove(b"access-control-allow-origin");
        cx.edits.add(b"Access-Control-Allow-Origin", origin);
        cx.edits.add(b"Vary", b"Origin");
        if self.spec.credentials {
            cx.edits.add(b"Access-Control-Allow-Credentials", b"true");
        }
        if !self.expose.is_empty() {
            cx.edits.add(b"Access-Control-Expose-Headers", &self.expose);
        }
    }
}
