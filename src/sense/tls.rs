//! TLS handshake figures per listener: what each handshake negotiated (or
//! why it failed) and how long it took, counted per core like everything
//! else in Sense and merged by addition.
//!
//! Label values come from small fixed sets (two versions, three ALPN
//! values, eight failure reasons), so that no client can grow the series.

use std::net::SocketAddr;

use super::record::BUCKETS_US;

/// `version` label values of `dao_tls_handshakes_total`.
pub const VERSIONS: [&str; 2] = ["TLSv1.2", "TLSv1.3"];

/// `alpn` label values: what ALPN chose (`none`: the client offered none).
pub const ALPNS: [&str; 3] = ["h2", "http/1.1", "none"];

/// Why a handshake did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// `handshake_timeout` passed first.
    Timeout = 0,
    /// The client closed the connection.
    Eof = 1,
    /// The socket failed (reset and the like).
    Io = 2,
    /// Not TLS, or TLS that breaks the protocol: garbage, a malformed
    /// ClientHello, an unexpected or undecryptable message.
    Protocol = 3,
    /// No protocol version, cipher suite, signature scheme or ALPN
    /// protocol in common.
    Incompatible = 4,
    /// `sni_strict`: the server name has no certificate.
    UnknownSni = 5,
    /// mTLS: the client sent no certificate, or one `client_ca` does not
    /// vouch for.
    ClientCert = 6,
    /// The client ended the handshake with an alert (it refused DAO's
    /// certificate, mostly).
    Alert = 7,
}

impl HandshakeFailure {
    /// Label values, indexed by the discriminant.
    pub const NAMES: [&'static str; 8] = [
        "timeout",
        "eof",
        "io",
        "protocol",
        "incompatible",
        "unknown_sni",
        "client_cert",
        "alert",
    ];

    /// The reason a rustls error stands for, on the server side.
    pub fn of_rustls(e: &rustls::Error) -> HandshakeFailure {
        use rustls::Error as E;
        match e {
            E::NoCertificatesPresented | E::InvalidCertificate(_) => HandshakeFailure::ClientCert,
            E::PeerIncompatible(_) | E::NoApplicationProtocol => HandshakeFailure::Incompatible,
            E::AlertReceived(_) => HandshakeFailure::Alert,
            _ => HandshakeFailure::Protocol,
        }
    }
}

/// What one completed handshake negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// `VERSIONS` index.
    pub version: usize,
    /// `ALPNS` index.
    pub alpn: usize,
    /// The session was resumed (a ticket or a session id).
    pub resumed: bool,
    /// The client presented a certificate `client_ca` vouches for.
    pub client_cert: bool,
    /// From accepting the connection to the end of the handshake.
    pub duration_us: u64,
}

impl Handshake {
    /// The `VERSIONS` index of a rustls protocol version (TLS 1.3 for
    /// anything newer than 1.2: rustls speaks no other).
    pub fn version_index(v: Option<rustls::ProtocolVersion>) -> usize {
        usize::from(v != Some(rustls::ProtocolVersion::TLSv1_2))
    }

    /// The `ALPNS` index of the protocol ALPN chose.
    pub fn alpn_index(p: Option<&[u8]>) -> usize {
        match p {
            Some(b"h2") => 0,
            Some(_) => 1,
            None => 2,
        }
    }
}

/// One listener's TLS counters; they only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsCounters {
    /// Completed handshakes, `[VERSIONS index][ALPNS index]`.
    pub handshakes: [[u64; ALPNS.len()]; VERSIONS.len()],
    /// Completed handshakes that resumed a session.
    pub resumed: u64,
    /// Completed handshakes with a verified client certificate.
    pub client_certs: u64,
    /// Failed handshakes by `HandshakeFailure` discriminant.
    pub failures: [u64; HandshakeFailure::NAMES.len()],
    /// Durations of completed handshakes per `BUCKETS_US` bucket (not
    /// cumulative), +Inf last.
    pub buckets: [u64; BUCKETS_US.len() + 1],
    /// Sum of those durations, in microseconds.
    pub sum_us: u64,
}

impl TlsCounters {
    /// Counts a completed handshake.
    pub fn completed(&mut self, h: &Handshake) {
        self.handshakes[h.version][h.alpn] += 1;
        self.resumed += u64::from(h.resumed);
        self.client_certs += u64::from(h.client_cert);
        let b = BUCKETS_US.partition_point(|&le| le < h.duration_us);
        self.buckets[b] += 1;
        self.sum_us += h.duration_us;
    }

    /// Counts a failed handshake.
    pub fn failed(&mut self, why: HandshakeFailure) {
        self.failures[why as usize] += 1;
    }

    /// Completed handshakes, all versions and ALPN values together.
    pub fn completed_total(&self) -> u64 {
        self.handshakes.iter().flatten().sum()
    }

    /// Failed handshakes, all reasons together.
    pub fn failed_total(&self) -> u64 {
        self.failures.iter().sum()
    }

    /// Adds another set of counters to this one.
    pub fn add(&mut self, other: &TlsCounters) {
        for (a, b) in self.handshakes.iter_mut().zip(&other.handshakes) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.resumed += other.resumed;
        self.client_certs += other.client_certs;
        for (a, b) in self.failures.iter_mut().zip(other.failures) {
            *a += b;
        }
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }
}

/// TLS counters by listener address, listeners in first-seen order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsTable(pub Vec<(SocketAddr, TlsCounters)>);

impl TlsTable {
    /// The counters of the listener bound to `listener`, made on first use.
    pub fn of(&mut self, listener: SocketAddr) -> &mut TlsCounters {
        let i = match self.0.iter().position(|(a, _)| *a == listener) {
            Some(i) => i,
            None => {
                self.0.push((listener, TlsCounters::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    /// Adds every listener's counters of `other`.
    pub fn add(&mut self, other: &TlsTable) {
        for (addr, c) in &other.0 {
            self.of(*addr).add(c);
        }
    }

    /// All listeners together.
    pub fn total(&self) -> TlsCounters {
        let mut sum = TlsCounters::default();
        for (_, c) in &self.0 {
            sum.add(c);
        }
        sum
    }

    /// Whether no TLS listener has counted anything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(version: usize, alpn: usize, us: u64) -> Handshake {
        Handshake {
            version,
            alpn,
            resumed: us == 1,
            client_cert: version == 1,
            duration_us: us,
        }
    }

    #[test]
    fn counters_add_per_listener() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "[::1]:2".parse().unwrap();
        let mut one = TlsTable::default();
        one.of(a).completed(&hs(0, 1, 1));
        one.of(a).completed(&hs(1, 0, 3_000));
        one.of(b).failed(HandshakeFailure::Timeout);
        let mut two = TlsTable::default();
        two.of(b).failed(HandshakeFailure::Timeout);
        two.of(b).completed(&hs(1, 2, 20_000_000));
        let mut sum = TlsTable::default();
        sum.add(&one);
        sum.add(&two);
        let ca = &sum.0[0].1;
        assert_eq!(sum.0[0].0, a);
        assert_eq!(ca.handshakes, [[0, 1, 0], [1, 0, 0]]);
        assert_eq!((ca.resumed, ca.client_certs), (1, 1));
        assert_eq!(ca.buckets[0], 1, "1 µs ≤ 0.5 ms");
        assert_eq!(ca.buckets[3], 1, "3 ms ≤ 5 ms");
        assert_eq!(ca.sum_us, 3_001);
        let cb = &sum.0[1].1;
        assert_eq!(cb.failures[HandshakeFailure::Timeout as usize], 2);
        assert_eq!(cb.buckets[BUCKETS_US.len()], 1, "+Inf");
        let total = sum.total();
        assert_eq!((total.completed_total(), total.failed_total()), (3, 2));
    }

    #[test]
    fn rustls_errors_map_to_few_reasons() {
        use rustls::{AlertDescription, CertificateError, Error, PeerIncompatible};
        let of = HandshakeFailure::of_rustls;
        assert_eq!(
            of(&Error::NoCertificatesPresented),
            HandshakeFailure::ClientCert
        );
        assert_eq!(
            of(&Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            HandshakeFailure::ClientCert
        );
        assert_eq!(
            of(&Error::NoApplicationProtocol),
            HandshakeFailure::Incompatible
        );
        assert_eq!(
            of(&Error::PeerIncompatible(
                PeerIncompatible::NoCipherSuitesInCommon
            )),
            HandshakeFailure::Incompatible
        );
        assert_eq!(
            of(&Error::AlertReceived(AlertDescription::UnknownCA)),
            HandshakeFailure::Alert
        );
        assert_eq!(of(&Error::DecryptError), HandshakeFailure::Protocol);
        assert_eq!(
            HandshakeFailure::NAMES[HandshakeFailure::Alert as usize],
            "alert"
        );
    }

    #[test]
    fn versions_and_alpn_have_fixed_labels() {
        use rustls::ProtocolVersion as V;
        assert_eq!(
            VERSIONS[Handshake::version_index(Some(V::TLSv1_2))],
            "TLSv1.2"
        );
        assert_eq!(
            VERSIONS[Handshake::version_index(Some(V::TLSv1_3))],
            "TLSv1.3"
        );
        assert_eq!(ALPNS[Handshake::alpn_index(Some(b"h2"))], "h2");
        assert_eq!(ALPNS[Handshake::alpn_index(Some(b"http/1.1"))], "http/1.1");
        assert_eq!(ALPNS[Handshake::alpn_index(None)], "none");
    }
}
