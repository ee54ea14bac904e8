//! Client certificate details for upstreams: the header line a TLS
//! listener's `client_cert_header` names, made once per connection (at the
//! handshake) from the certificate the client presented and `client_ca`
//! verified. Sans-IO: DER in, header bytes out.
//!
//! The value is one element in the manner of Envoy's
//! `x-forwarded-client-cert`, `;`-separated `Key=value` pairs:
//!
//! ```text
//! Hash=<sha256 of the certificate's DER, 64 lower-case hex digits>;
//! Subject="<subject distinguished name, RFC 4514>";
//! URI=<each URI subjectAltName>;DNS=<each DNS subjectAltName>
//! ```
//!
//! (one line, no spaces). `Subject` is always quoted; `URI` and `DNS`
//! values are quoted when they hold `,` `;` `=` or `"`. Inside quotes, `"`
//! and `\` are escaped with `\` (so the RFC 4514 escapes of a subject
//! double their backslash). Nothing outside visible ASCII reaches the
//! header: the subject escapes other bytes as `\hh` (RFC 4514), `URI` and
//! `DNS` as `%hh`. A certificate x509-parser cannot read (rustls accepted
//! it) gets `Hash` alone.

use std::fmt::Write;

use x509_parser::asn1_rs::ToDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

/// Short names of attribute types (RFC 4514 §3); others are written as
/// dotted OIDs.
const SHORT_NAMES: [(&str, &str); 9] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// The line `name: value\r\n` for the end-entity certificate `der`.
pub(crate) fn header_line(name: &str, der: &[u8]) -> Box<[u8]> {
    let mut line = String::with_capacity(name.len() + 160);
    line.push_str(name);
    line.push_str(": ");
    write_value(&mut line, der);
    line.push_str("\r\n");
    line.into_bytes().into_boxed_slice()
}

/// The header value for the certificate `der` (see the module's text).
pub fn value(der: &[u8]) -> String {
    let mut out = String::new();
    write_value(&mut out, der);
    out
}

fn write_value(out: &mut String, der: &[u8]) {
    out.push_str("Hash=");
    for b in ring::digest::digest(&ring::digest::SHA256, der).as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return;
    };
    out.push_str(";Subject=");
    let mut dn = String::new();
    rfc4514(&mut dn, cert.subject());
    quote(out, &dn);
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return;
    };
    for (key, want_uri) in [("URI", true), ("DNS", false)] {
        for n in &san.value.general_names {
            let v = match (n, want_uri) {
                (GeneralName::URI(u), true) => u,
                (GeneralName::DNSName(d), false) => d,
                _ => continue,
            };
            out.push(';');
            out.push_str(key);
            out.push('=');
            let mut text = String::with_capacity(v.len());
            for b in v.bytes() {
                if b.is_ascii_graphic() {
                    text.push(char::from(b));
                } else {
                    let _ = write!(text, "%{b:02X}");
                }
            }
            if text.contains([',', ';', '=', '"']) {
                quote(out, &text);
            } else {
                out.push_str(&text);
            }
        }
    }
}

/// `"text"`, with `"` and `\` escaped.
fn quote(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// The RFC 4514 string of a name: its RDNs last to first, separated by
/// `,`; the attributes of one RDN by `+`.
fn rfc4514(out: &mut String, name: &X509Name<'_>) {
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type().to_id_string();
            match SHORT_NAMES.iter().find(|(o, _)| *o == oid) {
                Some((_, short)) => out.push_str(short),
                None => out.push_str(&oid),
            }
            out.push('=');
            match attr.as_str() {
                Ok(s) => escape_value(out, s),
                // Another string type or no string: its DER in hex.
                Err(_) => {
                    out.push('#');
                    for b in attr.attr_value().to_der_vec().unwrap_or_default() {
                        let _ = write!(out, "{b:02x}");
                    }
                }
            }
        }
    }
}

/// An attribute value escaped as RFC 4514 §2.4 says, and every byte
/// outside visible ASCII as `\hh`.
fn escape_value(out: &mut String, s: &str) {
    let last = s.len().saturating_sub(1);
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b'#' if i == 0 => out.push_str("\\#"),
            b' ' if i == 0 || i == last => out.push_str("\\ "),
            b' ' => out.push(' '),
            b if b.is_ascii_graphic() => out.push(char::from(b)),
            b => {
                let _ = write!(out, "\\{b:02x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn cert(dn: &[(DnType, &str)], sans: Vec<SanType>) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            p.distinguished_name.push(t.clone(), *v);
        }
        p.subject_alt_names = sans;
        p.self_signed(&key).unwrap().der().to_vec()
    }

    fn sha256_hex(der: &[u8]) -> String {
        ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn hash_subject_and_names() {
        let der = cert(
            &[
                (DnType::CountryName, "NL"),
                (DnType::OrganizationName, "Acme"),
                (DnType::CommonName, "svc"),
            ],
            vec![
                SanType::DnsName("a.example".try_into().unwrap()),
                SanType::URI("spiffe://acme/ns/web".try_into().unwrap()),
                SanType::DnsName("b.example".try_into().unwrap()),
            ],
        );
        let v = value(&der);
        assert_eq!(
            v,
            format!(
                "Hash={};Subject=\"CN=svc,O=Acme,C=NL\";URI=spiffe://acme/ns/web;DNS=a.example;DNS=b.example",
                sha256_hex(&der)
            )
        );
        let line = header_line("x-client-cert", &der);
        assert_eq!(&line[..], format!("x-client-cert: {v}\r\n").as_bytes());
    }

    #[test]
    fn special_characters_are_escaped_and_nothing_breaks_the_line() {
        let der = cert(
            &[
                (DnType::OrganizationName, "Acme, \"Inc\"; <x>"),
                (DnType::CommonName, " évil\r\nX-Injected: 1 "),
            ],
            vec![SanType::URI("urn:a;b=c".try_into().unwrap())],
        );
        let v = value(&der);
        let subject = r#"Subject="CN=\\ \\c3\\a9vil\\0d\\0aX-Injected: 1\\ ,O=Acme\\, \\\"Inc\\\"\\; \\<x\\>""#;
        assert!(v.contains(subject), "{v}");
        assert!(v.ends_with(";URI=\"urn:a;b=c\""), "{v}");
        assert!(v.bytes().all(|b| (0x20..0x7f).contains(&b)), "{v}");
        // A valid HTTP/2 header value as well.
        assert!(http::HeaderValue::from_str(&v).is_ok());
    }

    #[test]
    fn an_empty_subject_and_no_sans() {
        let der = cert(&[], Vec::new());
        assert_eq!(
            value(&der),
            format!("Hash={};Subject=\"\"", sha256_hex(&der))
        );
    }

    #[test]
    fn unparsable_der_gets_the_hash_alone() {
        let v = value(b"not a certificate");
        assert_eq!(v, format!("Hash={}", sha256_hex(b"not a certificate")));
    }

    #[test]
    fn unknown_attribute_types_are_dotted() {
        let der = cert(&[(DnType::CustomDnType(vec![1, 2, 3, 4]), "v")], Vec::new());
        assert!(
            value(&der).ends_with(";Subject=\"1.2.3.4=v\""),
            "{}",
            value(&der)
        );
    }
}
