//! `request_headers_add|set|remove` and `response_headers_add|set|remove`,
//! with `${client_ip}`, `${request_id}`, `${route}` and (responses only)
//! `${upstream}` in values.

use super::spec::{HeaderEdits, HeaderRules, Part, Template};
use super::{Edits, Filter, Flow, RequestCx, ResponseCx};

pub(super) struct HeaderFilter(pub(super) HeaderRules);

/// The values variables stand for.
struct Vars<'a> {
    client_ip: &'a str,
    request_id: &'a [u8],
    route: &'a str,
    upstream: &'a str,
}

fn write(t: &Template, v: &Vars<'_>, out: &mut Vec<u8>) {
    for p in &t.0 {
        out.extend_from_slice(match p {
            Part::Text(s) => s.as_bytes(),
            Part::ClientIp => v.client_ip.as_bytes(),
            Part::RequestId => v.request_id,
            Part::Route => v.route.as_bytes(),
            Part::Upstream => v.upstream.as_bytes(),
        });
    }
}

fn apply(rules: &HeaderEdits, v: &Vars<'_>, edits: &mut Edits) {
    for name in &rules.remove {
        edits.remove(name.as_bytes());
    }
    for (name, t) in &rules.set {
        edits.remove(name.as_bytes());
        edits.add_with(name.as_bytes(), |out| write(t, v, out));
    }
    for (name, t) in &rules.add {
        edits.add_with(name.as_bytes(), |out| write(t, v, out));
    }
}

impl Filter for HeaderFilter {
    fn request(&self, cx: &mut RequestCx<'_>) -> Flow {
        if !self.0.request.is_empty() {
            let v = Vars {
                client_ip: cx.client_ip_text,
                request_id: cx.request_id,
                route: cx.route,
                upstream: "",
            };
            apply(&self.0.request, &v, cx.edits);
        }
        Flow::Continue
    }

    fn response(&self, cx: &mut ResponseCx<'_>) {
        if !self.0.response.is_empty() {
            let v = Vars {
                client_ip: cx.client_ip_text,
                request_id: cx.request_id,
                route: cx.route,
                upstream: cx.upstream,
            };
            apply(&self.0.response, &v, cx.edits);
        }
    }
}
