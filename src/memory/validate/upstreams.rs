//! Upstreams: `url` into an address (and whether it is `https://`),
//! `protocol`, and `[routes.rule.upstreams.tls]` into a ready rustls
//! client configuration (trust anchors, client certificate, ALPN).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::Validator;
use crate::memory::balancing::Policy;
use crate::memory::config::{PoolKey, Upstream, UpstreamProtocol, UpstreamTls};
use crate::memory::raw::{RawUpstream, RawUpstreamTls};

/// An upstream URL, parsed and resolved.
#[derive(Debug)]
struct Url {
    addr: SocketAddr,
    /// `host:port`.
    authority: String,
    /// The host alone (brackets of an IPv6 literal removed).
    host: String,
    https: bool,
}

impl Validator {
    pub(super) fn upstream(
        &mut self,
        path: &str,
        raw: RawUpstream,
        policy: Policy,
        pools: &mut Vec<PoolKey>,
    ) -> Option<Upstream> {
        if raw.name.trim().is_empty() {
            self.err(format!("{path}.name"), "must not be empty");
        }
        let weight = self.count(&format!("{path}.weight"), raw.weight, (1, 1000), 1) as u32;
        if !policy.uses_weights() && weight != 1 {
            self.err(
                format!("{path}.weight"),
                format!("weights apply only with policy = \"weighted\", \"random\" or \"consistent_hash\" (this route is {policy})"),
            );
        }
        let intents = raw.intent.unwrap_or_default();
        for (k, i) in intents.iter().enumerate() {
            if i.trim().is_empty() {
                self.err(format!("{path}.intent[{k}]"), "must not be empty");
            }
        }
        let url = match parse_url(&raw.url) {
            Ok(v) => v,
            Err(message) => {
                self.err(format!("{path}.url"), message);
                return None;
            }
        };
        let ppath = format!("{path}.protocol");
        let protocol = match (raw.protocol.as_deref(), url.https) {
            (None | Some("h1"), _) => UpstreamProtocol::H1,
            (Some("h2c"), false) => UpstreamProtocol::H2c,
            (Some("h2"), true) => UpstreamProtocol::H2,
            (Some("h2c"), true) => {
                self.err(
                    ppath,
                    "\"h2c\" is HTTP/2 in cleartext: an https:// upstream speaks \"h2\" or \"h1\"",
                );
                return None;
            }
            (Some("h2"), false) => {
                self.err(
                    ppath,
                    "\"h2\" is HTTP/2 over TLS: use an https:// url (or \"h2c\" for HTTP/2 in cleartext)",
                );
                return None;
            }
            (Some(other), _) => {
                self.err(
                    ppath,
                    format!("{other:?} is not one of \"h1\", \"h2\", \"h2c\""),
                );
                return None;
            }
        };
        let tls = match (url.https, raw.tls) {
            (false, Some(_)) => {
                self.err(format!("{path}.tls"), "applies to https:// upstreams only");
                return None;
            }
            (false, None) => None,
            (true, raw) => Some(self.upstream_tls(
                &format!("{path}.tls"),
                raw.unwrap_or_default(),
                &url.host,
                protocol,
            )?),
        };
        let key = PoolKey {
            addr: url.addr,
            tls: tls.clone(),
        };
        let pool = match pools.iter().position(|k| *k == key) {
            Some(p) => p,
            None => {
                pools.push(key);
                pools.len() - 1
            }
        };
        Some(Upstream {
            name: raw.name,
            addr: url.addr,
            authority: url.authority,
            weight,
            intents,
            pool,
            protocol,
            tls,
        })
    }

    fn upstream_tls(
        &mut self,
        path: &str,
        raw: RawUpstreamTls,
        host: &str,
        protocol: UpstreamProtocol,
    ) -> Option<Arc<UpstreamTls>> {
        let before = self.errors.len();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verify = raw.verify.unwrap_or(true);
        let name_text = raw.server_name.clone().unwrap_or_else(|| host.to_string());
        let server_name = match ServerName::try_from(name_text.clone()) {
            Ok(n) => Some(n),
            Err(_) => {
                self.err(
                    format!("{path}.server_name"),
                    format!("{name_text:?} is not a DNS name or an IP address"),
                );
                None
            }
        };
        let min_version =
            self.min_version(&format!("{path}.min_version"), raw.min_version.as_deref());
        let roots = match (&raw.ca, verify) {
            (Some(_), false) => {
                self.err(
                    format!("{path}.ca"),
                    "has no use with verify = false (nothing is checked against it)",
                );
                None
            }
            (Some(file), true) => self.ca_roots(&format!("{path}.ca"), file),
            (None, true) => self.system_roots(&format!("{path}.ca")),
            (None, false) => None,
        };
        let identity = match (&raw.cert, &raw.key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let chain = self.pem_certs(&format!("{path}.cert"), cert);
                let key = self
                    .file(&format!("{path}.key"), key)
                    .and_then(
                        |(full, bytes)| match PrivateKeyDer::from_pem_slice(&bytes) {
                            Ok(k) => Some(k),
                            Err(e) => {
                                self.err(
                                    format!("{path}.key"),
                                    format!(
                                        "{}: no usable PRIVATE KEY block ({e})",
                                        full.display()
                                    ),
                                );
                                None
                            }
                        },
                    );
                chain.zip(key)
            }
            (Some(_), None) => {
                self.err(format!("{path}.key"), "cert needs its key");
                None
            }
            (None, Some(_)) => {
                self.err(format!("{path}.cert"), "key needs its cert");
                None
            }
        };
        if self.errors.len() > before {
            return None;
        }
        let server_name = server_name?;
        let builder = match ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(min_version.and_later())
        {
            Ok(b) => b,
            Err(e) => {
                self.err(path, format!("TLS settings refused: {e}"));
                return None;
            }
        };
        let builder = match roots {
            Some(roots) => {
                match WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build() {
                    Ok(v) => builder.with_webpki_verifier(v),
                    Err(e) => {
                        self.err(format!("{path}.ca"), e.to_string());
                        return None;
                    }
                }
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(crate::upstream::tls::Unverified::new(
                    provider.clone(),
                ))),
        };
        let mut client = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => match builder.with_client_auth_cert(chain, key) {
                Ok(c) => c,
                Err(e) => {
                    self.err(
                        format!("{path}.key"),
                        format!(
                            "does not go with {} ({e})",
                            raw.cert.as_deref().unwrap_or("")
                        ),
                    );
                    return None;
                }
            },
        };
        let alpn: &[u8] = match protocol {
            UpstreamProtocol::H2 => b"h2",
            _ => b"http/1.1",
        };
        client.alpn_protocols = vec![alpn.to_vec()];
        let settings = format!(
            "name={name_text};verify={verify};ca={};cert={};key={};min={min_version:?};alpn={}",
            raw.ca.as_deref().unwrap_or("(system)"),
            raw.cert.as_deref().unwrap_or(""),
            raw.key.as_deref().unwrap_or(""),
            String::from_utf8_lossy(alpn),
        );
        if !verify {
            tracing::warn!(
                field = path,
                server_name = %name_text,
                "upstream certificates are not verified (verify = false)"
            );
        }
        Some(Arc::new(UpstreamTls {
            client: Arc::new(client),
            server_name,
            verify,
            settings,
        }))
    }

    /// The system's trust anchors, read once per validation.
    fn system_roots(&mut self, path: &str) -> Option<Arc<RootCertStore>> {
        if let Some(roots) = &self.system_roots {
            return Some(roots.clone());
        }
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            self.err(
                path,
                format!("the system has no CA certificates{why}: name the CA file that signs the upstream's certificate"),
            );
            return None;
        }
        let roots = Arc::new(roots);
        self.system_roots = Some(roots.clone());
        Some(roots)
    }
}

/// `http://host[:port][/]` or `https://…` → resolved address, `host:port`
/// and the host.
fn parse_url(url: &str) -> Result<Url, String> {
    let (rest, https, port) = if let Some(rest) = url.strip_prefix("http://") {
        (rest, false, 80)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (rest, true, 443)
    } else {
        return Err(format!("{url:?} must start with http:// or https://"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{url:?}: paths, queries and credentials in upstream URLs are not supported"
        ));
    }
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:{port}")
    } else {
        authority.to_string()
    };
    let host = match with_port.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']').to_string(),
        None => authority.to_string(),
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority:?} resolves to no address"))?;
    Ok(Url {
        addr,
        authority: with_port,
        host,
        https,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls_give_address_authority_host_and_scheme() {
        let u = parse_url("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (
                u.addr.to_string(),
                u.authority.as_str(),
                u.host.as_str(),
                u.https
            ),
            (
                "127.0.0.1:8080".to_string(),
                "127.0.0.1:8080",
                "127.0.0.1",
                false
            )
        );
        let u = parse_url("https://localhost").unwrap();
        assert_eq!(
            (
                u.addr.port(),
                u.authority.as_str(),
                u.host.as_str(),
                u.https
            ),
            (443, "localhost:443", "localhost", true)
        );
        let u = parse_url("https://[::1]:8443").unwrap();
        assert_eq!((u.host.as_str(), u.https), ("::1", true));
        assert!(parse_url("ftp://x")
            .unwrap_err()
            .contains("http:// or https://"));
        assert!(parse_url("https://x/path").is_err());
    }
}
