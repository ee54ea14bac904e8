//! Where each (route, upstream) is recorded: stable slot numbers that
//! survive config reloads.
//!
//! Every distinct (route name, upstream name, address) ever configured gets
//! a slot number for the life of the process, so that a request that
//! started under one config and ends under the next still records into
//! the right place, and an upstream kept across a reload keeps its history
//! (latency window, health verdict). Slot 0 holds requests answered by DAO
//! itself (no route, bad request), labelled `-`. A reload only appends
//! slots; the ones the current config no longer names are not `live`, and
//! the exposition leaves them out.

use std::net::SocketAddr;
use std::sync::Arc;

use super::table::Health;
use crate::memory::Config;

/// The slot of requests that reached no upstream.
pub const LOCAL: usize = 0;

/// Every slot ever handed out (owned by the thread that applies configs).
#[derive(Debug, Clone)]
pub struct Registry {
    keys: Vec<(Arc<str>, Arc<str>, Option<SocketAddr>)>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            keys: vec![("-".into(), "-".into(), None)],
        }
    }
}

impl Registry {
    /// The slots of `config`'s routes: the ones already known keep their
    /// number, new ones are appended.
    pub fn layout(&mut self, config: &Config) -> Slots {
        let mut base = Vec::with_capacity(config.routes.len());
        let mut ids = Vec::new();
        let mut checked_ids = Vec::new();
        for r in &config.routes {
            base.push(ids.len());
            for u in &r.upstreams {
                let found = self.keys.iter().position(|(route, name, addr)| {
                    **route == *r.name && **name == *u.name && *addr == Some(u.addr)
                });
                let id = found.unwrap_or_else(|| {
                    self.keys
                        .push((r.name.as_str().into(), u.name.as_str().into(), Some(u.addr)));
                    self.keys.len() - 1
                });
                ids.push(id);
                if r.health_check.is_some() {
                    checked_ids.push(id);
                }
            }
        }
        let n = self.keys.len();
        let mut live = vec![false; n];
        let mut checked = vec![false; n];
        live[LOCAL] = true;
        for &id in &ids {
            live[id] = true;
        }
        for id in checked_ids {
            checked[id] = true;
        }
        Slots(Arc::new(Inner {
            base,
            ids,
            names: self
                .keys
                .iter()
                .map(|(r, u, _)| (r.clone(), u.clone()))
                .collect(),
            live,
            checked,
        }))
    }
}

#[derive(Debug)]
struct Inner {
    /// Per route, where its upstreams start in `ids`.
    base: Vec<usize>,
    /// Per (route, upstream) in config order, its slot number.
    ids: Vec<usize>,
    /// Per slot number, the (route, upstream) names.
    names: Vec<(Arc<str>, Arc<str>)>,
    /// Per slot number, whether the config names it.
    live: Vec<bool>,
    /// Per slot number, whether its route has active health checks.
    checked: Vec<bool>,
}

/// One config's view of the slots: cheap to clone, read-only.
#[derive(Debug, Clone)]
pub struct Slots(Arc<Inner>);

impl Slots {
    /// The slots of a config alone, as at start.
    pub fn new(config: &Config) -> Slots {
        Registry::default().layout(config)
    }

    /// The slot of a route's upstream.
    #[inline]
    pub fn of(&self, route: usize, upstream: usize) -> usize {
        self.0.ids[self.0.base[route] + upstream]
    }

    /// The slot of requests that reached no upstream.
    #[inline]
    pub fn local(&self) -> usize {
        LOCAL
    }

    /// Number of slots handed out so far, the local one included.
    pub fn len(&self) -> usize {
        self.0.names.len()
    }

    /// Whether there are no slots (never: the local one is always there).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// (route, upstream) names of a slot.
    pub fn names(&self, slot: usize) -> &(Arc<str>, Arc<str>) {
        &self.0.names[slot]
    }

    /// Whether the config names the slot (the local slot always is).
    pub fn live(&self, slot: usize) -> bool {
        self.0.live[slot]
    }

    /// Whether the slot's route has active health checks.
    pub fn checked(&self, slot: usize) -> bool {
        self.0.checked[slot]
    }

    /// What active checks say of a slot before the first probe: `Up` when
    /// its route has checks (so that traffic flows from the start),
    /// `Unchecked` otherwise.
    pub fn initial_health(&self, slot: usize) -> Health {
        if self.0.checked[slot] {
            Health::Up
        } else {
            Health::Unchecked
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(upstreams: &[(&str, u16)], checked: bool) -> Config {
        let mut text = String::from("[[routes.rule]]\nname = \"r\"\n");
        if checked {
            text.push_str("[routes.rule.health_check]\npath = \"/h\"\n");
        }
        for (name, port) in upstreams {
            text.push_str(&format!(
                "[[routes.rule.upstreams]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:{port}\"\n"
            ));
        }
        crate::memory::parse(&text).unwrap()
    }

    #[test]
    fn kept_upstreams_keep_their_slot_and_new_ones_append() {
        let mut reg = Registry::default();
        let a = reg.layout(&config(&[("a", 1), ("b", 2)], false));
        assert_eq!((a.of(0, 0), a.of(0, 1), a.len()), (1, 2, 3));
        assert_eq!(a.local(), 0);
        assert_eq!(&*a.names(0).0, "-");
        // b removed, c added, a moved to second place.
        let b = reg.layout(&config(&[("c", 3), ("a", 1)], true));
        assert_eq!((b.of(0, 0), b.of(0, 1), b.len()), (3, 1, 4));
        assert!(b.live(1) && !b.live(2) && b.live(3) && b.live(0));
        assert_eq!(b.initial_health(3), Health::Up);
        // Same name, new address: a new slot.
        let c = reg.layout(&config(&[("a", 9)], false));
        assert_eq!(c.of(0, 0), 4);
        assert_eq!(c.initial_health(4), Health::Unchecked);
        assert!(!c.live(1));
    }
}
