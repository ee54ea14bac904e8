//! Test certificates: a CA and a server certificate it signs (localhost,
//! 127.0.0.1), written as PEM files to a temporary directory removed when
//! dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// `ca.pem`, `server.pem` and `server.key` in a fresh directory.
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
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "test ca");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut leaf = CertificateParams::new(names).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, "server");
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_string()
    }

    /// A TLS client connection to `addr` as `localhost`, trusting this CA.
    pub fn connect(&self, addr: SocketAddr) -> TlsClient {
        tls_client(&self.path("ca.pem"), addr, "localhost")
    }
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
