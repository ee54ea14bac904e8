//! `ip_allow` / `ip_deny` (403) and `allowed_methods` (405 with `Allow`).

use super::spec::IpRules;
use super::{Filter, Flow, Reply, RequestCx};

pub(super) struct IpFilter(pub(super) IpRules);

impl Filter for IpFilter {
    fn request(&self, cx: &mut RequestCx<'_>) -> Flow {
        let ip = cx.client_ip;
        let denied = self.0.deny.iter().any(|c| c.contains(ip))
            || (!self.0.allow.is_empty() && !self.0.allow.iter().any(|c| c.contains(ip)));
        if denied {
            return Flow::Reply(Reply::text(403, "Forbidden\n"));
        }
        Flow::Continue
    }
}

pub(super) struct MethodFilter {
    methods: Vec<String>,
    /// The `Allow` header's value.
    allow: Vec<u8>,
}

impl MethodFilter {
    pub(super) fn new(methods: Vec<String>) -> MethodFilter {
        let allow = methods.join(", ").into_bytes();
        MethodFilter { methods, allow }
    }
}

impl Filter for MethodFilter {
    fn request(&self, cx: &mut RequestCx<'_>) -> Flow {
        if self.methods.iter().any(|m| m.as_bytes() == cx.method) {
            return Flow::Continue;
        }
        Flow::Reply(Reply::text(405, "Method Not Allowed\n").header("Allow", &self.allow))
    }
}
