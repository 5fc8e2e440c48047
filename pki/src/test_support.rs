//! Helpers for unit tests: they read certificates back with x509-parser, never from the inputs.
use std::collections::BTreeSet;
use std::net::IpAddr;

use rcgen::{KeyPair, SigningKey};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use x509_parser::asn1_rs::BitString;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256;
use x509_parser::pem::Pem;
use x509_parser::verify::verify_signature;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

pub const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
pub const YEAR: Duration = Duration::days(365);

pub fn pem(text: &str) -> Pem {
    let (rest, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes()).expect("PEM");
    assert!(rest.iter().all(u8::is_ascii_whitespace), "one PEM block");
    pem
}

/// Does the private key sign what the public key verifies? (ES256, the only kind we make.)
pub fn key_signs_for(key_pem: &str, spki: &SubjectPublicKeyInfo) -> bool {
    let key = KeyPair::from_pem(key_pem).expect("private key");
    let message = b"nestplane key pairing check";
    let signature = key.sign(message).expect("sign");
    let algorithm = AlgorithmIdentifier::new(OID_SIG_ECDSA_WITH_SHA256, None);
    verify_signature(spki, &algorithm, &BitString::new(0, &signature), message).is_ok()
}

/// DER INTEGERs are signed; RFC 5280 wants serials positive and at most 20 octets.
pub fn serial_is_positive(cert: &X509Certificate) -> bool {
    let raw = cert.raw_serial();
    !raw.is_empty() && raw.len() <= 20 && raw[0] & 0x80 == 0 && raw.iter().any(|b| *b != 0)
}

pub fn dns_and_ip_sans(cert: &X509Certificate) -> (BTreeSet<String>, BTreeSet<IpAddr>) {
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    let san = cert.subject_alternative_name().expect("SAN extension");
    for name in san.map(|s| s.value.general_names.clone()).unwrap_or_default() {
        match name {
            GeneralName::DNSName(d) => {
                dns.insert(d.to_string());
            }
            GeneralName::IPAddress(raw) => {
                let ip = match raw.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(raw).expect("v4")),
                    16 => IpAddr::from(<[u8; 16]>::try_from(raw).expect("v6")),
                    n => panic!("IP SAN of {n} bytes"),
                };
                ips.insert(ip);
            }
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    (dns, ips)
}

pub fn subject_key_id(cert: &X509Certificate) -> Option<Vec<u8>> {
    cert.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
        _ => None,
    })
}

pub fn authority_key_id(cert: &X509Certificate) -> Option<Vec<u8>> {
    cert.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|k| k.0.to_vec()),
        _ => None,
    })
}

pub fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub fn ips(items: &[&str]) -> BTreeSet<IpAddr> {
    items.iter().map(|s| s.parse().expect("IP")).collect()
}
