//! Listener and TLS validation tests, on certificates made here (rcgen).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

use crate::memory::{load_file, parse, ClientAuth, TlsVersion};

/// A fresh, empty directory under the system's temporary directory,
/// removed when dropped.
pub(in crate::memory) struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(in crate::memory) fn temp_dir(tag: &str) -> TempDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "dao-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// Writes what `scripts/dev-certs.sh` writes (ca, server and client
/// `.pem`/`.key`), plus `other` (other.test, *.other.test) and `bare` (an
/// IP address only, no DNS name), all signed by the CA.
pub(in crate::memory) fn write_dev_certs(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("ca.key"), ca_key.serialize_pem()).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    let leaf = |name: &str, sans: &[&str], eku: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    };
    use ExtendedKeyUsagePurpose::{ClientAuth as Client, ServerAuth as Server};
    leaf("server", &["localhost", "127.0.0.1", "*.dao.test"], Server);
    leaf("other", &["other.test", "*.other.test"], Server);
    leaf("bare", &["127.0.0.2"], Server);
    leaf("client", &["client.dao.test"], Client);
}

fn with_tls(dir: &Path, tls: &str) -> String {
    format!(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n{tls}\n\
         [[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:9\"\n"
    )
    .replace("DIR", dir.to_str().unwrap())
}

fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect(),
    }
}

const ROUTE: &str = "[[routes.rule]]\nname = \"r\"\n[[routes.rule.upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:9\"\n";

#[test]
fn server_bind_alone_is_the_one_plain_listener() {
    let c = parse(ROUTE).unwrap();
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].bind, "127.0.0.1:8080".parse().unwrap());
    assert!(c.listeners[0].tls.is_none());
    assert_eq!(c.server.bind, c.listeners[0].bind);
}

#[test]
fn listeners_replace_the_default_bind_and_join_an_explicit_one() {
    let only = format!("[[listeners]]\nbind = \"127.0.0.1:7001\"\n{ROUTE}");
    let c = parse(&only).unwrap();
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.server.bind, "127.0.0.1:7001".parse().unwrap());

    let both = format!(
        "[server]\nbind = \"127.0.0.1:7000\"\n[[listeners]]\nbind = \"127.0.0.1:7001\"\n\
         [[listeners]]\nbind = \"[::1]:7002\"\n{ROUTE}"
    );
    let c = parse(&both).unwrap();
    let binds: Vec<String> = c.listeners.iter().map(|l| l.bind.to_string()).collect();
    assert_eq!(binds, ["127.0.0.1:7000", "127.0.0.1:7001", "[::1]:7002"]);
    assert_eq!(c.server.bind, "127.0.0.1:7000".parse().unwrap());
}

#[test]
fn duplicate_and_bad_binds_are_refused() {
    let dup = format!(
        "[server]\nbind = \"127.0.0.1:7000\"\n[[listeners]]\nbind = \"127.0.0.1:7000\"\n{ROUTE}"
    );
    let errs = errors(&dup);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("listeners[0].bind: 127.0.0.1:7000 is already served")),
        "{errs:?}"
    );
    let wild = format!(
        "[[listeners]]\nbind = \"0.0.0.0:7000\"\n[[listeners]]\nbind = \"127.0.0.1:7000\"\n{ROUTE}"
    );
    assert!(errors(&wild)
        .iter()
        .any(|e| e.starts_with("listeners[1].bind")));
    // Port 0 twice: two free ports.
    let zeros = format!(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\n{ROUTE}"
    );
    assert_eq!(parse(&zeros).unwrap().listeners.len(), 2);
    let bad = format!("[[listeners]]\nbind = \"localhost\"\n{ROUTE}");
    assert!(errors(&bad)
        .iter()
        .any(|e| e.starts_with("listeners[0].bind: \"localhost\" is not an address")));
    let empty = format!("listeners = []\n{ROUTE}");
    assert!(errors(&empty)
        .iter()
        .any(|e| e.starts_with("listeners: empty")));
    let unknown = format!("[[listeners]]\nbind = \"127.0.0.1:0\"\nport = 1\n{ROUTE}");
    assert!(!errors(&unknown).is_empty());
}

#[test]
fn server_tls_keys_point_to_listeners() {
    let errs = errors(&format!(
        "[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n{ROUTE}"
    ));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("server.tls_cert: removed"), "{errs:?}");
    assert!(errs[0].contains("[[listeners]]"), "{errs:?}");
    assert!(errs[1].starts_with("server.tls_key: removed"), "{errs:?}");
}

#[test]
fn a_full_tls_listener_loads() {
    let dir = temp_dir("tls-ok");
    write_dev_certs(&dir);
    let text = with_tls(
        &dir,
        "certificates = [{ cert = \"DIR/server.pem\", key = \"DIR/server.key\" },\n\
                         { cert = \"DIR/other.pem\", key = \"DIR/other.key\" }]\n\
         sni_strict = true\nmin_version = \"1.3\"\nclient_ca = \"DIR/ca.pem\"\n\
         handshake_timeout = \"2s\"\n",
    );
    let c = parse(&text).unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert!(tls.sni_strict);
    assert_eq!(tls.min_version, TlsVersion::Tls13);
    assert_eq!(tls.client_auth, ClientAuth::Required);
    assert_eq!(tls.handshake_timeout, Duration::from_secs(2));
    assert_eq!(tls.alpn, ["h2", "http/1.1"]);
    assert_eq!(
        tls.server.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert!(tls.certificates.find("x.other.test").is_some());
    assert!(tls.certificates.find("a.dao.test").is_some());
    assert!(tls.certificates.refuses(Some("nope.test")));
}

#[test]
fn defaults_and_optional_client_auth() {
    let dir = temp_dir("tls-defaults");
    write_dev_certs(&dir);
    let c = parse(&with_tls(
        &dir,
        "certificates = [{ cert = \"DIR/bare.pem\", key = \"DIR/bare.key\" }]\n",
    ))
    .unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert!(!tls.sni_strict);
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    assert_eq!(tls.client_auth, ClientAuth::None);
    assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
    // A certificate without DNS names is fine as the only (default) one.
    assert!(tls.certificates.pick(Some("any.test")).is_some());
    let c = parse(&with_tls(
        &dir,
        "certificates = [{ cert = \"DIR/server.pem\", key = \"DIR/server.key\" }]\n\
         client_ca = \"DIR/ca.pem\"\nclient_auth = \"optional\"\n",
    ))
    .unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.client_auth, ClientAuth::Optional);
    // HTTP/2 offered first.
    let c = parse(&with_tls(
        &dir,
        "certificates = [{ cert = \"DIR/server.pem\", key = \"DIR/server.key\" }]\n\
         alpn = [\"h2\", \"http/1.1\"]\n",
    ))
    .unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.alpn, ["h2", "http/1.1"]);
    assert_eq!(
        tls.server.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[test]
fn bad_certificates_name_their_field() {
    let dir = temp_dir("tls-bad");
    write_dev_certs(&dir);
    std::fs::write(
        dir.join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!\n",
    )
    .unwrap();
    std::fs::write(dir.join("empty.pem"), "nothing here\n").unwrap();
    let check = |tls: &str, path: &str, says: &str| {
        let errs = errors(&with_tls(&dir, tls));
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(says)),
            "wanted {path}: …{says}… in {errs:?}"
        );
    };
    let p = "listeners[0].tls";
    check(
        "certificates = [{ cert = \"DIR/missing.pem\", key = \"DIR/server.key\" }]",
        &format!("{p}.certificates[0].cert"),
        "cannot read",
    );
    check(
        "certificates = [{ cert = \"DIR/garbage.pem\", key = \"DIR/server.key\" }]",
        &format!("{p}.certificates[0].cert"),
        "bad PEM",
    );
    check(
        "certificates = [{ cert = \"DIR/empty.pem\", key = \"DIR/server.key\" }]",
        &format!("{p}.certificates[0].cert"),
        "no CERTIFICATE",
    );
    check(
        "certificates = [{ cert = \"DIR/server.pem\", key = \"DIR/server.pem\" }]",
        &format!("{p}.certificates[0].key"),
        "no usable PRIVATE KEY",
    );
    check(
        "certificates = [{ cert = \"DIR/server.pem\", key = \"DIR/server.key\" },\n\
                         { cert = \"DIR/other.pem\", key = \"DIR/server.key\" }]",
        &format!("{p}.certificates[1].key"),
        "does not match the certificate",
    );
    check(
        "certificates = [{ cert = \"DIR/server.pem\", key = \"DIR/server.key\" },\n\
                         { cert = \"DIR/bare.pem\", key = \"DIR/bare.key\" }]",
        &format!("{p}.certificates[1].cert"),
        "no DNS host",
    );
    check(
        "certificates = []",
        &format!("{p}.certificates"),
        "at least one",
    );
    let good = "certificates = [{ cert = \"DIR/server.pem\", key = \"DIR/server.key\" }]\n";
    check(
        &format!("{good}alpn = [\"h2\", \"http/1.1\", \"h2\"]"),
        &format!("{p}.alpn[2]"),
        "listed twice",
    );
    check(
        &format!("{good}alpn = [\"spdy/3\"]"),
        &format!("{p}.alpn[0]"),
        "unknown protocol",
    );
    check(
        &format!("{good}min_version = \"1.1\""),
        &format!("{p}.min_version"),
        "use \"1.2\" or \"1.3\"",
    );
    check(
        &format!("{good}client_auth = \"required\""),
        &format!("{p}.client_auth"),
        "needs client_ca",
    );
    check(
        &format!("{good}client_ca = \"DIR/ca.pem\"\nclient_auth = \"maybe\""),
        &format!("{p}.client_auth"),
        "\"required\" or \"optional\"",
    );
    check(
        &format!("{good}client_ca = \"DIR/missing.pem\""),
        &format!("{p}.client_ca"),
        "cannot read",
    );
    check(
        &format!("{good}handshake_timeout = \"soon\""),
        &format!("{p}.handshake_timeout"),
        "invalid duration",
    );
}

#[test]
fn relative_paths_start_from_the_config_file() {
    let dir = temp_dir("tls-relative");
    std::fs::create_dir(dir.join("certs")).unwrap();
    write_dev_certs(&dir.join("certs"));
    let text = with_tls(
        Path::new("certs"),
        "certificates = [{ cert = \"DIR/server.pem\", key = \"DIR/server.key\" }]\n",
    );
    let file = dir.join("dao.toml");
    std::fs::write(&file, &text).unwrap();
    let c = load_file(&file).unwrap();
    assert!(c.listeners[0].tls.is_some());
    // From text, the same names start from the working directory.
    assert!(parse(&text).is_err());
}

#[test]
fn client_cert_header_is_checked_and_stripped_everywhere() {
    let dir = temp_dir("tls-cert-header");
    write_dev_certs(&dir);
    let certs = "certificates = [{ cert = \"DIR/server.pem\", key = \"DIR/server.key\" }]\n";
    let with = |extra: &str| with_tls(&dir, &format!("{certs}{extra}"));
    let ok = with("client_ca = \"DIR/ca.pem\"\nclient_auth = \"optional\"\nclient_cert_header = \"X-Client-Cert\"\n");
    // A plain listener beside it strips the header too.
    let c = parse(&format!("[server]\nbind = \"127.0.0.1:0\"\n{ok}")).unwrap();
    let tls = c.listeners[1].tls.as_ref().unwrap();
    assert_eq!(tls.client_cert_header.as_deref(), Some("x-client-cert"));
    assert_eq!(c.client_cert_headers, ["x-client-cert"]);
    assert!(parse(&with("")).unwrap().client_cert_headers.is_empty());

    let path = "listeners[0].tls.client_cert_header";
    let e = errors(&with("client_cert_header = \"x-client-cert\"\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!("{path}: needs client_ca")),
        "{e:?}"
    );
    for (name, says) in [
        ("", "is not a header name"),
        ("x client", "is not a header name"),
        ("x-cert:", "is not a header name"),
        (":authority", "pseudo-headers"),
        ("Connection", "hop-by-hop"),
        ("keep-alive", "hop-by-hop"),
        ("TE", "hop-by-hop"),
        ("transfer-encoding", "hop-by-hop"),
        ("trailer", "hop-by-hop"),
        ("host", "hop-by-hop"),
        ("x-forwarded-for", "hop-by-hop"),
        ("Via", "hop-by-hop"),
    ] {
        let e = errors(&with(&format!(
            "client_ca = \"DIR/ca.pem\"\nclient_cert_header = \"{name}\"\n"
        )));
        assert_eq!(e.len(), 1, "{name:?}: {e:?}");
        assert!(
            e[0].starts_with(path) && e[0].contains(says),
            "{name:?}: {e:?}"
        );
    }
}
