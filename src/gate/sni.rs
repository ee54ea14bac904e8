//! SNI: the certificates of one TLS listener and which one answers the
//! name a client asks for (exact names first, then `*.suffix` wildcards
//! one label deep); the first certificate is the default.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A listener's certificates, indexed by the DNS names in their SANs.
#[derive(Debug)]
pub struct Certificates {
    keys: Vec<Arc<CertifiedKey>>,
    /// Lower-case name → index in `keys`.
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `example.com` → index in `keys`.
    wildcard: HashMap<String, usize>,
    /// No default: a name that matches nothing gets no certificate.
    strict: bool,
}

impl Certificates {
    /// Builds the index from certificates and the names each serves, in
    /// file order: the first is the default, and a name served by two
    /// certificates goes to the earlier one.
    pub fn new(certs: Vec<(Arc<CertifiedKey>, Vec<String>)>, strict: bool) -> Certificates {
        let mut keys = Vec::with_capacity(certs.len());
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for (i, (key, names)) in certs.into_iter().enumerate() {
            keys.push(key);
            for name in names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_string()).or_insert(i),
                    None => exact.entry(name).or_insert(i),
                };
            }
        }
        Certificates {
            keys,
            exact,
            wildcard,
            strict,
        }
    }

    /// How many certificates there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is none (never, once validated).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every name served, sorted (wildcards as `*.suffix`).
    pub fn names(&self) -> Vec<String> {
        let mut all: Vec<String> = self.exact.keys().cloned().collect();
        all.extend(self.wildcard.keys().map(|s| format!("*.{s}")));
        all.sort();
        all
    }

    /// The certificate for `name` by its SAN names (no default).
    pub fn find(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(&i) = self.exact.get(name) {
            return Some(&self.keys[i]);
        }
        // `*.example.com` covers `a.example.com`, not `example.com` nor
        // `a.b.example.com`.
        let (first, parent) = name.split_once('.')?;
        if first.is_empty() {
            return None;
        }
        self.wildcard.get(parent).map(|&i| &self.keys[i])
    }

    /// The certificate a client gets: by its SNI, else the default (the
    /// first), unless strict and it named an unknown host.
    pub fn pick(&self, sni: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        match sni {
            None => self.keys.first(),
            Some(name) => match self.find(name) {
                Some(k) => Some(k),
                None if self.strict => None,
                None => self.keys.first(),
            },
        }
    }

    /// Whether a client naming `sni` is refused (strict and unknown).
    pub fn refuses(&self, sni: Option<&str>) -> bool {
        self.strict && sni.is_some_and(|n| self.find(n).is_none())
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Arc<CertifiedKey> {
        // Only identity matters here: a distinct fake chain per certificate.
        #[derive(Debug)]
        struct NoKey;
        impl rustls::sign::SigningKey for NoKey {
            fn choose_scheme(
                &self,
                _: &[rustls::SignatureScheme],
            ) -> Option<Box<dyn rustls::sign::Signer>> {
                None
            }
            fn algorithm(&self) -> rustls::SignatureAlgorithm {
                rustls::SignatureAlgorithm::ED25519
            }
        }
        Arc::new(CertifiedKey::new(
            vec![rustls::pki_types::CertificateDer::from(vec![n])],
            Arc::new(NoKey),
        ))
    }

    fn which(c: &Certificates, sni: Option<&str>) -> Option<u8> {
        c.pick(sni).map(|k| k.cert[0].as_ref()[0])
    }

    fn store(strict: bool) -> Certificates {
        Certificates::new(
            vec![
                (key(0), vec!["localhost".into()]),
                (key(1), vec!["*.dao.test".into(), "api.example.com".into()]),
                (
                    key(2),
                    vec!["www.dao.test".into(), "Api.Example.com".into()],
                ),
            ],
            strict,
        )
    }

    #[test]
    fn exact_before_wildcard_and_first_wins() {
        let c = store(false);
        assert_eq!(which(&c, Some("localhost")), Some(0));
        assert_eq!(which(&c, Some("a.dao.test")), Some(1));
        // Exact beats the wildcard even from a later certificate.
        assert_eq!(which(&c, Some("www.dao.test")), Some(2));
        // Two certificates name it: the earlier one.
        assert_eq!(which(&c, Some("api.example.com")), Some(1));
        assert_eq!(which(&c, Some("API.EXAMPLE.COM")), Some(1));
        assert_eq!(which(&c, Some("a.dao.test.")), Some(1));
    }

    #[test]
    fn wildcards_cover_one_label() {
        let c = store(false);
        assert!(c.find("dao.test").is_none());
        assert!(c.find("a.b.dao.test").is_none());
        assert!(c.find(".dao.test").is_none());
        // Not strict: unknown names get the default.
        assert_eq!(which(&c, Some("a.b.dao.test")), Some(0));
        assert_eq!(which(&c, None), Some(0));
    }

    #[test]
    fn strict_refuses_unknown_names_only() {
        let c = store(true);
        assert_eq!(which(&c, Some("nope.example")), None);
        assert!(c.refuses(Some("nope.example")));
        assert!(!c.refuses(Some("x.dao.test")));
        // No SNI at all: the default.
        assert!(!c.refuses(None));
        assert_eq!(which(&c, None), Some(0));
    }
}
