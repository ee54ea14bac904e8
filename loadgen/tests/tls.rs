//! TLS end to end: dao-loadgen over rustls against a loopback TLS backend.

mod common;

use std::time::Duration;

use common::{data, loadgen, loadgen_rejects, u, Backend, Reply};

#[test]
fn https_with_the_test_ca_and_with_insecure() {
    let b = Backend::start_tls(|_| Reply::OK);
    let url = format!("https://localhost:{}/", b.addr.port());
    let ca = data("localhost.crt");
    let (r, _) = loadgen(&["-c", "2", "-R", "20", "-d", "1s", "--cacert", &ca, &url]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b.requests(), 20);
    assert!(u(&r, &["requests"]) >= 19);
    assert_eq!(u(&r, &["errors", "connect"]), 0);
    assert_eq!(r["config"]["tls"], true);

    // Pipelined over TLS, certificate not checked.
    let url_ip = format!("https://127.0.0.1:{}/", b.addr.port());
    let (r, _) = loadgen(&["-c", "1", "--pipeline", "4", "-d", "300ms", "-k", &url_ip]);
    assert!(u(&r, &["requests"]) > 10);
    assert_eq!(
        u(&r, &["errors", "protocol"]) + u(&r, &["errors", "read"]),
        0
    );
}

#[test]
fn untrusted_certificates_fail_to_connect() {
    let b = Backend::start_tls(|_| Reply::OK);
    let url = format!("https://localhost:{}/", b.addr.port());
    let (r, _) = loadgen(&["-c", "1", "-R", "50", "-d", "300ms", &url]);
    assert_eq!(u(&r, &["requests"]), 0);
    assert!(u(&r, &["errors", "connect"]) >= 10);
    assert_eq!(b.requests(), 0);
    let err = loadgen_rejects(&["-k", &format!("http://127.0.0.1:{}/", b.addr.port())]);
    assert!(err.contains("https"), "{err}");
}
