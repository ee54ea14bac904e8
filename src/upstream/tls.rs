//! TLS to `https://` upstreams: the client handshake over a fresh
//! connection, each worker's own copy of an upstream's client settings
//! (so that its session-resumption cache is not shared, and locked,
//! across cores), and the verifier behind `verify = false`.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;

use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::gate::tls::{self, HandshakeError, TlsStream};
use crate::memory::UpstreamTls;

/// TLS sessions a worker remembers per upstream, for resumption.
const SESSIONS: usize = 64;

/// One worker's client settings, per upstream TLS config in use.
#[derive(Default)]
pub(crate) struct Clients {
    /// The config's settings (compared by pointer) and the worker's copy.
    copies: RefCell<Vec<(Arc<UpstreamTls>, Arc<ClientConfig>)>>,
}

impl Clients {
    /// The worker's copy of `tls`'s client settings: the same trust
    /// anchors, certificate and ALPN, with a session cache of its own.
    fn config(&self, tls: &Arc<UpstreamTls>) -> Arc<ClientConfig> {
        let mut copies = self.copies.borrow_mut();
        if let Some((_, c)) = copies.iter().find(|(t, _)| Arc::ptr_eq(t, tls)) {
            return c.clone();
        }
        // Settings of configs no longer applied (only this list holds
        // them) go; a reload builds new ones.
        copies.retain(|(t, _)| Arc::strong_count(t) > 1);
        let mut copy = (*tls.client).clone();
        copy.resumption = Resumption::in_memory_sessions(SESSIONS);
        let copy = Arc::new(copy);
        copies.push((tls.clone(), copy.clone()));
        copy
    }

    /// Runs the client handshake on `tcp`, a fresh connection to an
    /// upstream with the settings `tls` (the caller bounds the time).
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        tls: &Arc<UpstreamTls>,
    ) -> io::Result<TlsStream> {
        let config = self.config(tls);
        tls::connect(tcp, config, tls.server_name.clone())
            .await
            .map_err(|e| match e {
                HandshakeError::Io(e) => e,
                HandshakeError::Eof => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "TLS: the upstream closed during the handshake",
                ),
                e => io::Error::other(format!("TLS handshake with the upstream: {e}")),
            })
    }
}

/// Accepts any certificate the upstream shows (`verify = false`), but
/// still checks that the upstream holds its key: the handshake's
/// signatures are verified as usual.
#[derive(Debug)]
pub struct Unverified {
    provider: Arc<CryptoProvider>,
}

impl Unverified {
    /// The verifier, checking signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Unverified {
        Unverified { provider }
    }
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
