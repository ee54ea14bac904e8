//! What the balancer needs from a request: its intent (the route's, or a
//! configured one named by `x-dao-intent`) and the `consistent_hash` key
//! (a header, a cookie or the client's IP).

use crate::align::balancer::{key_hash, Ask};
use crate::memory::{Config, HashOn, Policy, Route};
use crate::proto::h1::RequestHead;

/// The header that overrides a route's intent.
pub(crate) const INTENT_HEADER: &[u8] = b"x-dao-intent";

/// The first value of header `name` (lower case).
fn header<'a>(head: &RequestHead, buf: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    head.headers
        .iter()
        .find(|h| h.name.get(buf).eq_ignore_ascii_case(name))
        .map(|h| h.value.get(buf))
}

/// The value of cookie `name`, from any `Cookie` header.
fn cookie<'a>(head: &RequestHead, buf: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    head.headers
        .iter()
        .filter(|h| h.name.get(buf).eq_ignore_ascii_case(b"cookie"))
        .flat_map(|h| h.value.get(buf).split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == name).then(|| &pair[eq + 1..])
        })
}

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
    // Only the resonant policy reads intents.
    let intent = if route.policy != Policy::Resonant || config.intents.is_empty() {
        None
    } else {
        header(head, buf, INTENT_HEADER)
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
        Some(HashOn::Header(name)) => header(head, buf, name.as_bytes()).map(key_hash),
        Some(HashOn::Cookie(name)) => cookie(head, buf, name.as_bytes()).map(key_hash),
    };
    Ask {
        intent,
        key,
        avoid: 0,
        now_us,
    }
}
