//! What the balancer needs from a request: its intent (the route's, or a
//! configured one named by `x-dao-intent`), the `consistent_hash` key (a
//! header, a cookie or the client's IP), and sticky routes' cookie.

use crate::align::balancer::{key_hash, Ask, Balancer};
use crate::flow::{Edits, Headers};
use crate::memory::{Config, HashOn, Policy, Route};
use crate::proto::h1::RequestHead;

/// The header that overrides a route's intent.
pub(crate) const INTENT_HEADER: &[u8] = b"x-dao-intent";

/// The ask for `route` (index `index`) from this request. An
/// `x-dao-intent` naming an intent the config does not know is ignored:
/// the route's own intent applies.
pub(crate) fn ask(
    config: &Config,
    route: &Route,
    head: &RequestHead,
    buf: &[u8],
    client_ip: &str,
    now_us: u64,
) -> Ask {
    let headers = Headers::of_request(head, buf);
    // Only the resonant policy reads intents.
    let intent = if route.policy != Policy::Resonant || config.intents.is_empty() {
        None
    } else {
        headers
            .get(INTENT_HEADER)
            .and_then(|v| config.intent_index(v.trim_ascii()))
            .or_else(|| {
                route
                    .intent
                    .as_deref()
                    .and_then(|i| config.intent_index(i.as_bytes()))
            })
    };
    let key = match &route.balancing.hash_on {
        None => None,
        Some(HashOn::ClientIp) => Some(key_hash(client_ip.as_bytes())),
        Some(HashOn::Header(name)) => headers.get(name.as_bytes()).map(key_hash),
        Some(HashOn::Cookie(name)) => headers.cookie(name.as_bytes()).map(key_hash),
    };
    Ask {
        intent,
        key,
        avoid: 0,
        now_us,
    }
}

/// Adds the `Set-Cookie` header that pins the client to upstream `i` of
/// `route` (whose balancer holds the opaque tokens) to the response edits.
pub(crate) fn set_cookie(edits: &mut Edits, route: &Route, balancer: &Balancer, i: usize) {
    let Some(st) = &route.balancing.sticky else {
        return;
    };
    edits.add_with(b"Set-Cookie", |out| {
        out.extend_from_slice(st.cookie.as_bytes());
        out.push(b'=');
        out.extend_from_slice(balancer.sticky_token(i));
        out.extend_from_slice(b"; Path=");
        out.extend_from_slice(st.path.as_bytes());
        if let Some(age) = st.max_age {
            out.extend_from_slice(b"; Max-Age=");
            out.extend_from_slice(itoa::Buffer::new().format(age.as_secs()).as_bytes());
        }
        out.extend_from_slice(b"; HttpOnly");
    });
}
