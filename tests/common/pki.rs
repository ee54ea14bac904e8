//! Test certificates, written as PEM files to a temporary directory
//! removed when dropped: a CA signing `server` (localhost, 127.0.0.1,
//! *.dao.test), `other` (other.test, *.other.test) and `client`; a second
//! CA signing `rogue`, a client certificate DAO must not accept.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// `ca.pem`, `rogue-ca.pem` and `NAME.pem` / `NAME.key` for `server`,
/// `other`, `client` and `rogue`, in a fresh directory.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dao-pki-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            let cert = p.self_signed(&key).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            Issuer::new(p, key)
        };
        let leaf = |issuer: &Issuer<'_, KeyPair>, name: &str, sans: &[&str], client: bool| {
            let key = KeyPair::generate().unwrap();
            let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            p.extended_key_usages = vec![if client {
                ExtendedKeyUsagePurpose::ClientAuth
            } else {
                ExtendedKeyUsagePurpose::ServerAuth
            }];
            let cert = p.signed_by(&key, issuer).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        let main = ca("ca");
        leaf(
            &main,
            "server",
            &["localhost", "127.0.0.1", "*.dao.test"],
            false,
        );
        leaf(&main, "other", &["other.test", "*.other.test"], false);
        leaf(&main, "client", &["client.dao.test"], true);
        let rogue = ca("rogue-ca");
        leaf(&rogue, "rogue", &["client.dao.test"], true);
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_string()
    }

    /// A TLS client connection to `addr` as `localhost`, trusting this CA.
    pub fn connect(&self, addr: SocketAddr) -> TlsClient {
        tls_client(&self.path("ca.pem"), addr, "localhost")
    }

    /// A rustls client configuration trusting this CA, offering the ALPN
    /// protocols `alpn`, presenting the certificate `client` (`client` or
    /// `rogue`) when given. Connections made with one configuration share
    /// its session cache: the second one resumes.
    pub fn client_config(&self, client: Option<&str>, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.path("ca.pem")).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client {
            None => builder.with_no_client_auth(),
            Some(name) => {
                let cert =
                    CertificateDer::from_pem_file(self.path(&format!("{name}.pem"))).unwrap();
                let key = PrivateKeyDer::from_pem_file(self.path(&format!("{name}.key"))).unwrap();
                builder.with_client_auth_cert(vec![cert], key).unwrap()
            }
        };
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }

    /// The DER of the certificate in `NAME.pem`.
    pub fn der(&self, name: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(self.path(&format!("{name}.pem")))
            .unwrap()
            .to_vec()
    }
}

/// A blocking TLS client connection to `addr` for the server `name`
/// with `config`; reads time out after 10 s.
pub fn connect_with(config: &Arc<rustls::ClientConfig>, addr: SocketAddr, name: &str) -> TlsClient {
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// A blocking rustls client connection to `addr`, for the server `name`,
/// trusting the CA in the PEM file `ca`; reads time out after 10 s.
pub fn tls_client(ca: &str, addr: SocketAddr, name: &str) -> TlsClient {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// A TLS client connection over a std socket.
pub type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
