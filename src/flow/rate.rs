//! The rate-limit filter: each core checks its own share of the global
//! budget (`ratelimit::Limiter`, shared with the worker, which reports
//! demand and applies new shares every merge interval). Over the limit:
//! 429 with `Retry-After` and `X-RateLimit-Limit`/`-Remaining`/`-Reset`.

use std::cell::RefCell;
use std::rc::Rc;

use super::ratelimit::Limiter;
use super::spec::RateKey;
use super::{Filter, Flow, Reply, RequestCx};

pub(super) struct RateFilter {
    pub(super) limiter: Rc<RefCell<Limiter>>,
    pub(super) key: Option<RateKey>,
}

impl Filter for RateFilter {
    fn request(&self, cx: &mut RequestCx<'_>) -> Flow {
        let key: &[u8] = match &self.key {
            None => b"",
            Some(RateKey::ClientIp) => cx.client_ip_text.as_bytes(),
            Some(RateKey::Header(name)) => cx.headers.get(name.as_bytes()).unwrap_or_default(),
            Some(RateKey::Identity) => &cx.state.identity,
        };
        let verdict = self.limiter.borrow_mut().check(key, cx.now_us);
        if verdict.allowed {
            return Flow::Continue;
        }
        let mut reply = Reply::text(429, "Too Many Requests\n");
        verdict
            .headers
            .each(|name, value| reply = std::mem::take(&mut reply).header(name, value.as_bytes()));
        Flow::Reply(reply)
    }
}
