//! One request's way through its route's upstreams, shared by HTTP/1.1
//! exchanges and HTTP/2 streams so that both follow the same rules: the
//! first pick (the upstream a sticky cookie names when usable, else the
//! balancer's), then, after each failed attempt or response head, whether
//! the route's retry policy sends the request again and where to.
//!
//! What is retried: a failure or status the policy's `on` names (a
//! refusal by the circuit breaker while an upstream is left untried),
//! while attempts and the per-core retry budget are left, and the request
//! can go again: nothing of a response (an interim 1xx included) went to
//! the client, and it is held whole and idempotent, or it never reached
//! the upstream. The next attempt goes to an upstream not tried yet when
//! there is one. Each retried attempt is recorded on its own upstream.

use super::tally::Tally;
use crate::align::balancer::Ask;
use crate::align::breaker::{Held, Limit};
use crate::align::retry::{budget_allows, Cause, Tried};
use crate::error::ProxyError;
use crate::flow::Headers;
use crate::memory::Route;
use crate::proto::h1::RequestHead;
use crate::runtime::generation::Gen;
use crate::runtime::worker::Worker;

/// Where a request stands after an attempt, as retrying cares.
#[derive(Debug, Clone, Copy)]
pub(super) struct Standing {
    /// It may be sent again after it reached an upstream: idempotent, its
    /// body held whole.
    pub(super) replayable: bool,
    /// It cannot be sent again at all: a response byte (an interim 1xx)
    /// went to the client, or its body streamed away.
    pub(super) spent: bool,
}

/// The upstreams one request tried, and its retry in flight.
pub(super) struct Retries<'a> {
    worker: &'a Worker,
    gen: &'a Gen,
    route: usize,
    ask: Ask,
    /// On sticky routes, the upstream the client's cookie names, if usable.
    sticky: Option<Option<usize>>,
    tried: Tried,
    /// This request's retry in flight, counted in the core's budget.
    retrying: Option<Held<'a>>,
}

impl<'a> Retries<'a> {
    /// The first pick for the request whose head is `head` (its bytes in
    /// `buf`) on route `route`, counted by Sense from here on.
    pub(super) fn start(
        (worker, gen): (&'a Worker, &'a Gen),
        route: usize,
        (head, buf): (&RequestHead, &[u8]),
        client_ip: &str,
        tally: &mut Tally,
    ) -> (Retries<'a>, usize) {
        let r = &gen.config.routes[route];
        let ask = super::ask::ask(&gen.config, r, head, buf, client_ip, worker.coarse_us());
        let sticky = r.balancing.sticky.as_ref().map(|st| {
            Headers::of_request(head, buf)
                .cookie(st.cookie.as_bytes())
                .and_then(|v| gen.balancers[route].sticky_find(v))
        });
        let picked = match sticky {
            Some(Some(i)) if gen.balancers[route].usable(i, &ask) => worker.pin(gen, route, i),
            _ => worker.pick(gen, route, &ask),
        };
        tally.picked(route, picked);
        let mut retries = Retries {
            worker,
            gen,
            route,
            ask,
            sticky,
            tried: Tried::default(),
            retrying: None,
        };
        retries.tried.push(picked);
        (retries, picked)
    }

    /// The route.
    pub(super) fn route(&self) -> &'a Route {
        &self.gen.config.routes[self.route]
    }

    /// Admits an attempt on upstream `picked` within the circuit breaker's
    /// request limit (its connection limits are checked when a connection
    /// is opened): the guard counts the request in flight to the
    /// upstream until dropped.
    pub(super) fn admit(&self, picked: usize) -> Result<Held<'a>, Limit> {
        let requests = &self.gen.loads[self.route().upstreams[picked].pool].requests;
        if let Some(b) = &self.gen.breakers[self.route] {
            b.admit(requests.get())?;
        }
        Ok(Held::new(requests))
    }

    /// The sticky assignment the response to an answer from `picked`
    /// sets, `(route, upstream)`, when it is new or changed.
    pub(super) fn sticky_cookie(&self, picked: usize) -> Option<(usize, usize)> {
        self.sticky
            .filter(|&had| had != Some(picked))
            .map(|_| (self.route, picked))
    }

    /// An attempt failed with `error` (`cause`: what retrying makes of it,
    /// `None` when the upstream is not at fault; `reached`: request bytes
    /// may have reached it). Returns the upstream to try next, the failed
    /// attempt recorded on its own, or `None`: `error` is the answer.
    pub(super) fn after_failure(
        &mut self,
        (error, cause, reached): (&ProxyError, Option<Cause>, bool),
        req: Standing,
        tally: &mut Tally,
    ) -> Option<usize> {
        if let ProxyError::CircuitOpen(limit) = error {
            tally.breaker_open(*limit);
        }
        let route = self.route();
        let retried_on = match (&route.retry, error) {
            (None, _) => false,
            // Refused before sending: another upstream may have room.
            (Some(_), ProxyError::CircuitOpen(_)) => self.tried.len() < route.upstreams.len(),
            (Some(p), _) => cause.is_some_and(|c| p.on.cause(c)),
        };
        if !(retried_on && self.allowed(req, reached, tally)) {
            return None;
        }
        tracing::debug!(worker = self.worker.id, error = %error, "retrying on another upstream");
        tally.abandon(Some(error), 0);
        Some(self.repick(tally))
    }

    /// A response head of `status` came: the upstream to try next when
    /// the route retries that status (the response is then not read), or
    /// `None`: it goes to the client.
    pub(super) fn after_status(
        &mut self,
        status: u16,
        req: Standing,
        tally: &mut Tally,
    ) -> Option<usize> {
        let on_status = self
            .route()
            .retry
            .as_ref()
            .is_some_and(|p| p.on.status(status));
        if !(on_status && self.allowed(req, true, tally)) {
            return None;
        }
        tally.abandon(None, status);
        Some(self.repick(tally))
    }

    /// Whether a request the route retries in this case may go out again:
    /// attempts left, the request still whole, room in the core's retry
    /// budget (which it then takes).
    fn allowed(&mut self, req: Standing, reached: bool, tally: &mut Tally) -> bool {
        let Some(policy) = &self.route().retry else {
            return false;
        };
        if self.tried.len() > policy.attempts as usize || req.spent || (reached && !req.replayable)
        {
            return false;
        }
        // This request's previous retry, if any, is over.
        self.retrying = None;
        let w = self.worker;
        if !budget_allows(policy, w.in_flight.get(), w.retries_active.get() as usize) {
            tally.retry(false);
            return false;
        }
        self.retrying = Some(Held::new(&w.retries_active));
        tally.retry(true);
        true
    }

    /// The upstream for a retry: the balancer's pick with the tried ones
    /// left out, counted by Sense from here on.
    fn repick(&mut self, tally: &mut Tally) -> usize {
        let ask = Ask {
            avoid: self.tried.mask(),
            ..self.ask
        };
        let picked = self.worker.pick(self.gen, self.route, &ask);
        tally.picked(self.route, picked);
        self.tried.push(picked);
        picked
    }
}
