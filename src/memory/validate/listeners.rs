//! Listeners: `server.bind` and `[[listeners]]` into the addresses served,
//! and `[listeners.tls]` into a ready rustls configuration. Certificate
//! and key files are read and checked here (a reload reads them again).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use super::Validator;
use crate::gate::sni::Certificates;
use crate::memory::config::{ClientAuth, Listener, Tls, TlsVersion};
use crate::memory::raw::{RawCertificate, RawListener, RawTls};
use crate::proto::h1::HeaderKind;

/// Header names `client_cert_header` cannot take besides those the HTTP/1.1
/// parser treats itself: hop-by-hop ones (RFC 9110 §7.6.1) and the ones
/// DAO writes on forwarded requests.
const RESERVED_HEADERS: &[&str] = &[
    "trailer",
    "proxy-authenticate",
    "proxy-authorization",
    "via",
    "x-request-id",
];

/// ALPN protocols DAO speaks.
const ALPN_KNOWN: &[&str] = &["h2", "http/1.1"];

impl Validator {
    /// Every listener: `server.bind` first when given (or when there is
    /// no `[[listeners]]`), then `[[listeners]]`.
    pub(super) fn listeners(
        &mut self,
        server_bind: Option<SocketAddr>,
        bind_given: bool,
        raw: Option<Vec<RawListener>>,
    ) -> Vec<Listener> {
        let mut all = Vec::new();
        if let Some(bind) = server_bind.filter(|_| bind_given || raw.is_none()) {
            all.push(Listener { bind, tls: None });
        }
        let Some(raw) = raw else { return all };
        if raw.is_empty() {
            self.err(
                "listeners",
                "empty: add a [[listeners]] with a bind, or remove the key",
            );
        }
        for (i, l) in raw.into_iter().enumerate() {
            let path = format!("listeners[{i}]");
            let bind = match l.bind.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.err(
                        format!("{path}.bind"),
                        format!("{:?} is not an address such as \"0.0.0.0:8443\"", l.bind),
                    );
                    continue;
                }
            };
            if let Some(other) = all.iter().find(|o| overlaps(o.bind, bind)) {
                self.err(
                    format!("{path}.bind"),
                    format!("{bind} is already served by the listener on {}", other.bind),
                );
            }
            let tls = l.tls.and_then(|t| self.tls(&format!("{path}.tls"), t));
            all.push(Listener { bind, tls });
        }
        all
    }

    fn tls(&mut self, path: &str, raw: RawTls) -> Option<Arc<Tls>> {
        let before = self.errors.len();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let sni_strict = raw.sni_strict.unwrap_or(false);
        let handshake_timeout = self.duration(
            &format!("{path}.handshake_timeout"),
            raw.handshake_timeout,
            Duration::from_secs(10),
        );
        let min_version =
            self.min_version(&format!("{path}.min_version"), raw.min_version.as_deref());
        // HTTP/2 first for clients that offer it (browsers, curl).
        let alpn = raw
            .alpn
            .unwrap_or_else(|| vec!["h2".to_string(), "http/1.1".to_string()]);
        if alpn.is_empty() {
            self.err(format!("{path}.alpn"), "name at least one protocol");
        }
        for (j, p) in alpn.iter().enumerate() {
            let ppath = format!("{path}.alpn[{j}]");
            if !ALPN_KNOWN.contains(&p.as_str()) {
                self.err(
                    ppath,
                    format!("{p:?}: unknown protocol; use \"h2\" or \"http/1.1\""),
                );
            } else if alpn[..j].contains(p) {
                self.err(ppath, format!("{p:?} is listed twice"));
            }
        }
        let client_auth = match (raw.client_auth.as_deref(), &raw.client_ca) {
            (None, None) => ClientAuth::None,
            (None | Some("required"), Some(_)) => ClientAuth::Required,
            (Some("optional"), Some(_)) => ClientAuth::Optional,
            (Some("required" | "optional"), None) => {
                self.err(
                    format!("{path}.client_auth"),
                    "needs client_ca, the CA that signs client certificates",
                );
                ClientAuth::None
            }
            (Some(other), _) => {
                self.err(
                    format!("{path}.client_auth"),
                    format!("{other:?}: use \"required\" or \"optional\""),
                );
                ClientAuth::None
            }
        };
        let client_cert_header = raw.client_cert_header.as_deref().and_then(|name| {
            self.client_cert_header(&format!("{path}.client_cert_header"), name, client_auth)
        });
        if raw.certificates.is_empty() {
            self.err(
                format!("{path}.certificates"),
                "at least one { cert, key } is required",
            );
        }
        let mut certs = Vec::new();
        for (j, c) in raw.certificates.into_iter().enumerate() {
            let cpath = format!("{path}.certificates[{j}]");
            if let Some((key, names)) = self.certified_key(&cpath, c, &provider) {
                if names.is_empty() && j > 0 {
                    self.err(
                        format!("{cpath}.cert"),
                        "names no DNS host in its subjectAltName: only the first \
                         certificate (the default) can do without",
                    );
                }
                certs.push((key, names));
            }
        }
        let verifier = match &raw.client_ca {
            None => None,
            Some(file) => {
                self.client_verifier(&format!("{path}.client_ca"), file, client_auth, &provider)
            }
        };
        if self.errors.len() > before {
            return None;
        }
        let builder = match ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(min_version.and_later())
        {
            Ok(b) => b,
            Err(e) => {
                self.err(path, format!("TLS settings refused: {e}"));
                return None;
            }
        };
        let certificates = Arc::new(Certificates::new(certs, sni_strict));
        let builder = match verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let mut server = builder.with_cert_resolver(certificates.clone());
        server.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        // Stateless resumption tickets: no session cache shared (and
        // locked) across the cores.
        match rustls::crypto::ring::Ticketer::new() {
            Ok(t) => server.ticketer = t,
            Err(e) => tracing::warn!(error = %e, "no TLS session tickets"),
        }
        Some(Arc::new(Tls {
            server: Arc::new(server),
            certificates,
            sni_strict,
            handshake_timeout,
            client_auth,
            client_cert_header,
            alpn,
            min_version,
        }))
    }

    /// `client_cert_header`: a header name DAO may set (not hop-by-hop,
    /// not one it manages itself), on a listener that verifies client
    /// certificates.
    fn client_cert_header(&mut self, path: &str, name: &str, auth: ClientAuth) -> Option<String> {
        let lower = name.to_ascii_lowercase();
        let problem = if name.starts_with(':') {
            Some(format!("{name:?}: pseudo-headers cannot be set"))
        } else if name.is_empty() || !name.bytes().all(super::is_token) {
            Some(format!("{name:?} is not a header name"))
        } else if HeaderKind::of(name.as_bytes()) != HeaderKind::Other
            || RESERVED_HEADERS.contains(&lower.as_str())
        {
            Some(format!(
                "{name:?} is a hop-by-hop header or one DAO sets itself; use e.g. \"x-client-cert\""
            ))
        } else if auth == ClientAuth::None {
            Some("needs client_ca: without client certificates there is nothing to forward".into())
        } else {
            None
        };
        match problem {
            Some(message) => {
                self.err(path, message);
                None
            }
            None => Some(lower),
        }
    }

    /// A file named in the config: relative paths start from the config
    /// file's directory (the working directory for config text).
    pub(super) fn file(&mut self, path: &str, name: &str) -> Option<(PathBuf, Vec<u8>)> {
        let full = match &self.base {
            Some(base) => base.join(name),
            None => PathBuf::from(name),
        };
        match std::fs::read(&full) {
            Ok(bytes) => Some((full, bytes)),
            Err(e) => {
                self.err(path, format!("cannot read {}: {e}", full.display()));
                None
            }
        }
    }

    /// `min_version`: `"1.2"` (the default) or `"1.3"`.
    pub(super) fn min_version(&mut self, path: &str, raw: Option<&str>) -> TlsVersion {
        match raw {
            None | Some("1.2") => TlsVersion::Tls12,
            Some("1.3") => TlsVersion::Tls13,
            Some(v) => {
                self.err(path, format!("{v:?}: use \"1.2\" or \"1.3\""));
                TlsVersion::Tls12
            }
        }
    }

    /// The CA certificates of a PEM file as trust anchors.
    pub(super) fn ca_roots(&mut self, path: &str, file: &str) -> Option<Arc<RootCertStore>> {
        let certs = self.pem_certs(path, file)?;
        let mut roots = RootCertStore::empty();
        for c in certs {
            if let Err(e) = roots.add(c) {
                self.err(path, format!("{file}: not a usable CA certificate ({e})"));
                return None;
            }
        }
        Some(Arc::new(roots))
    }

    /// Reads the certificates of a PEM file (at least one).
    pub(super) fn pem_certs(
        &mut self,
        path: &str,
        name: &str,
    ) -> Option<Vec<CertificateDer<'static>>> {
        let (full, bytes) = self.file(path, name)?;
        match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
            Ok(certs) if certs.is_empty() => {
                self.err(
                    path,
                    format!("{} holds no CERTIFICATE block", full.display()),
                );
                None
            }
            Ok(certs) => Some(certs),
            Err(e) => {
                self.err(path, format!("{}: bad PEM ({e})", full.display()));
                None
            }
        }
    }

    /// A certificate chain with its key, checked to belong together, and
    /// the DNS names (SAN) the certificate serves.
    fn certified_key(
        &mut self,
        path: &str,
        raw: RawCertificate,
        provider: &CryptoProvider,
    ) -> Option<(Arc<CertifiedKey>, Vec<String>)> {
        let (cert_path, key_path) = (format!("{path}.cert"), format!("{path}.key"));
        let chain = self.pem_certs(&cert_path, &raw.cert);
        let names = match chain
            .as_ref()
            .map(|c| webpki::EndEntityCert::try_from(&c[0]))
        {
            None => None,
            Some(Ok(ee)) => Some(ee.valid_dns_names().map(str::to_string).collect()),
            Some(Err(e)) => {
                self.err(
                    &cert_path,
                    format!("{}: not a usable X.509 certificate ({e})", raw.cert),
                );
                None
            }
        };
        let key = self.file(&key_path, &raw.key).and_then(|(full, bytes)| {
            let der = match PrivateKeyDer::from_pem_slice(&bytes) {
                Ok(k) => k,
                Err(e) => {
                    self.err(
                        &key_path,
                        format!("{}: no usable PRIVATE KEY block ({e})", full.display()),
                    );
                    return None;
                }
            };
            match provider.key_provider.load_private_key(der) {
                Ok(k) => Some(k),
                Err(e) => {
                    self.err(
                        &key_path,
                        format!("{}: unsupported private key ({e})", full.display()),
                    );
                    None
                }
            }
        });
        let (chain, names, key) = (chain?, names?, key?);
        let certified = CertifiedKey::new(chain, key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => {
                self.err(
                    &key_path,
                    format!("{} does not match the certificate in {}", raw.key, raw.cert),
                );
                return None;
            }
        }
        Some((Arc::new(certified), names))
    }

    /// The verifier of client certificates signed by the CAs in `file`.
    fn client_verifier(
        &mut self,
        path: &str,
        file: &str,
        auth: ClientAuth,
        provider: &Arc<CryptoProvider>,
    ) -> Option<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
        let roots = self.ca_roots(path, file)?;
        let mut builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
        if auth == ClientAuth::Optional {
            builder = builder.allow_unauthenticated();
        }
        match builder.build() {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(path, format!("{file}: {e}"));
                None
            }
        }
    }
}

/// Whether two binds would take the same port: the same address, or a
/// wildcard and any address of its family on one port. Port 0 picks a
/// free port each time: never a clash.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() || a.is_ipv4() != b.is_ipv4() {
        return false;
    }
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

#[cfg(test)]
pub(super) mod tests;
