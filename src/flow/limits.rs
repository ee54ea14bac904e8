//! `max_body_bytes`: a declared `Content-Length` above the limit is
//! answered 413 before any upstream is involved; a streamed (chunked) body
//! is counted as it is forwarded, and cut with 413 when it goes over
//! (`State::body_limit`, checked by the exchange).

use super::{Filter, Flow, Reply, RequestCx};

pub(super) struct MaxBody(pub(super) u64);

impl Filter for MaxBody {
    fn request(&self, cx: &mut RequestCx<'_>) -> Flow {
        match cx.content_length {
            Some(n) if n > self.0 => Flow::Reply(Reply::text(413, "Content Too Large\n")),
            _ => {
                if cx.has_body {
                    cx.state.body_limit = Some(self.0);
                }
                Flow::Continue
            }
        }
    }
}
