//! A route's compiled filter chain, one per route per worker.

use std::cell::RefCell;
use std::rc::Rc;

use super::access::{IpFilter, MethodFilter};
use super::authn::AuthFilter;
use super::cors::Cors;
use super::headers::HeaderFilter;
use super::limits::MaxBody;
use super::rate::RateFilter;
use super::ratelimit::Limiter;
use super::spec::FilterSpec;
use super::{Filter, Flow, RequestCx, ResponseCx};

/// The filters of one route, in the order they run on requests.
#[derive(Default)]
pub struct Chain {
    filters: Vec<Box<dyn Filter>>,
    /// Some filter reads the wall clock (token expiry).
    wall_clock: bool,
    /// Some filter reads the monotonic clock (rate limits).
    clock: bool,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chain({} filters)", self.filters.len())
    }
}

impl Chain {
    /// Builds the built-in filters from their specs (already in running
    /// order: see `memory::validate::filters`).
    /// `limiters` are the worker's rate limiters, by `RateSpec::index`.
    pub fn build(specs: &[FilterSpec], limiters: &[Rc<RefCell<Limiter>>]) -> Chain {
        let mut chain = Chain {
            wall_clock: specs.iter().any(|s| matches!(s, FilterSpec::Auth(_))),
            clock: specs.iter().any(|s| matches!(s, FilterSpec::RateLimit(_))),
            ..Chain::default()
        };
        for spec in specs {
            chain.push(match spec.clone() {
                FilterSpec::Auth(a) => Box::new(AuthFilter::new(a)),
                FilterSpec::RateLimit(r) => Box::new(RateFilter {
                    limiter: limiters[r.index].clone(),
                    key: r.key,
                }),
                FilterSpec::Ips(r) => Box::new(IpFilter(r)),
                FilterSpec::Cors(c) => Box::new(Cors::new(c)),
                FilterSpec::Methods(m) => Box::new(MethodFilter::new(m)),
                FilterSpec::MaxBody(n) => Box::new(MaxBody(n)),
                FilterSpec::Headers(h) => Box::new(HeaderFilter(h)),
            });
        }
        chain
    }

    /// Appends a filter (custom ones included).
    pub fn push(&mut self, filter: Box<dyn Filter>) {
        self.filters.push(filter);
    }

    /// Whether a filter needs `RequestCx::now_unix_secs`.
    pub fn wall_clock(&self) -> bool {
        self.wall_clock
    }

    /// Whether a filter needs `RequestCx::now_us`.
    pub fn clock(&self) -> bool {
        self.clock
    }

    /// Whether the route has no filters.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The request phase: in order, until one replies.
    pub fn request(&self, cx: &mut RequestCx<'_>) -> Flow {
        for f in &self.filters {
            if let Flow::Reply(r) = f.request(cx) {
                return Flow::Reply(r);
            }
        }
        Flow::Continue
    }

    /// The response phase: in reverse order.
    pub fn response(&self, cx: &mut ResponseCx<'_>) {
        for f in self.filters.iter().rev() {
            f.response(cx);
        }
    }
}
