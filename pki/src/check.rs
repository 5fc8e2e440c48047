//! Verdicts on stored certificates, from parsing them: is a leaf still what the spec asks for?
use std::collections::BTreeSet;
use std::net::IpAddr;

use rcgen::{KeyPair, PublicKeyData};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::{CertKeyPair, Error, LeafSpec, Result};

/// What [`check`] found. Anything but `Valid` means the certificate should be reissued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    ExpiresSoon,
    Expired,
    ChainBroken,
    KeyMismatch,
    SubjectChanged,
    SansChanged,
    Unparseable(String),
}

fn parse_pem(pem: &str) -> Result<Pem> {
    let (_, parsed) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| Error::ParsePem(e.to_string()))?;
    Ok(parsed)
}

fn parse_cert(pem: &Pem) -> Result<X509Certificate<'_>> {
    pem.parse_x509().map_err(|e| Error::ParsePem(e.to_string()))
}

/// When the certificate stops being valid.
pub fn not_after(cert_pem: &str) -> Result<OffsetDateTime> {
    let pem = parse_pem(cert_pem)?;
    Ok(parse_cert(&pem)?.validity().not_after.to_datetime())
}

/// kubeadm's `--discovery-token-ca-cert-hash`: SHA-256 of the CA's DER SubjectPublicKeyInfo.
pub fn ca_cert_hash(ca_cert_pem: &str) -> Result<String> {
    let pem = parse_pem(ca_cert_pem)?;
    let cert = parse_cert(&pem)?;
    let digest = Sha256::digest(cert.public_key().raw);
    Ok(format!("sha256:{}", hex(&digest)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Does the private key belong to the certificate?
fn key_matches(cert: &X509Certificate, key_pem: &str) -> bool {
    KeyPair::from_pem(key_pem).is_ok_and(|key| key.subject_public_key_info() == cert.public_key().raw)
}

fn time_verdict(cert: &X509Certificate, now: OffsetDateTime, renew_before: Duration) -> Verdict {
    let validity = cert.validity();
    let not_after = validity.not_after.to_datetime();
    if now >= not_after || now < validity.not_before.to_datetime() {
        Verdict::Expired
    } else if now + renew_before >= not_after {
        Verdict::ExpiresSoon
    } else {
        Verdict::Valid
    }
}

/// A CA is usable while it parses, its key matches, it is a CA and it has not expired.
pub fn check_ca(ca: &CertKeyPair, now: OffsetDateTime) -> Verdict {
    let pem = match parse_pem(&ca.cert_pem) {
        Ok(pem) => pem,
        Err(e) => return Verdict::Unparseable(e.to_string()),
    };
    let cert = match parse_cert(&pem) {
        Ok(cert) => cert,
        Err(e) => return Verdict::Unparseable(e.to_string()),
    };
    if !cert.is_ca() || cert.verify_signature(None).is_err() {
        return Verdict::ChainBroken;
    }
    if !key_matches(&cert, &ca.key_pem) {
        return Verdict::KeyMismatch;
    }
    time_verdict(&cert, now, Duration::ZERO)
}

/// Checks a leaf against its CA and the spec it should have been issued for.
pub fn check(
    pair: &CertKeyPair,
    ca_cert_pem: &str,
    expected: &LeafSpec,
    now: OffsetDateTime,
    renew_before: Duration,
) -> Verdict {
    let (pem, ca_pem) = match (parse_pem(&pair.cert_pem), parse_pem(ca_cert_pem)) {
        (Ok(pem), Ok(ca_pem)) => (pem, ca_pem),
        (Err(e), _) | (_, Err(e)) => return Verdict::Unparseable(e.to_string()),
    };
    let (cert, ca) = match (parse_cert(&pem), parse_cert(&ca_pem)) {
        (Ok(cert), Ok(ca)) => (cert, ca),
        (Err(e), _) | (_, Err(e)) => return Verdict::Unparseable(e.to_string()),
    };
    if cert.issuer() != ca.subject() || cert.verify_signature(Some(ca.public_key())).is_err() {
        return Verdict::ChainBroken;
    }
    if !key_matches(&cert, &pair.key_pem) {
        return Verdict::KeyMismatch;
    }
    if subject(&cert)
        != (
            Some(expected.common_name.clone()),
            expected.organizations.iter().cloned().collect(),
        )
    {
        return Verdict::SubjectChanged;
    }
    if sans(&cert) != expected_sans(expected) {
        return Verdict::SansChanged;
    }
    time_verdict(&cert, now, renew_before)
}

type Subject = (Option<String>, BTreeSet<String>);

fn subject(cert: &X509Certificate) -> Subject {
    let name = cert.subject();
    let common_name = name
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let organizations = name
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    (common_name, organizations)
}

type Sans = (BTreeSet<String>, BTreeSet<IpAddr>);

fn sans(cert: &X509Certificate) -> Sans {
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    dns.insert(d.to_string());
                }
                GeneralName::IPAddress(raw) => {
                    if let Some(ip) = ip_from_bytes(raw) {
                        ips.insert(ip);
                    }
                }
                _ => {}
            }
        }
    }
    (dns, ips)
}

fn expected_sans(spec: &LeafSpec) -> Sans {
    (
        spec.dns_names.iter().cloned().collect(),
        spec.ip_addresses.iter().copied().collect(),
    )
}

fn ip_from_bytes(raw: &[u8]) -> Option<IpAddr> {
    match raw.len() {
        4 => <[u8; 4]>::try_from(raw).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(raw).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
