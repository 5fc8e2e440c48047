//! Verdicts on stored certificates, from parsing them: is a leaf still what the spec asks for?
use std::collections::BTreeSet;
use std::net::IpAddr;

use rcgen::{KeyPair, PublicKeyData};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::{CertKeyPair, Error, LeafSpec, Result, ServiceAccountKeys, Usage};

/// What [`check`] or [`check_ca`] found. Anything but `Valid` means the piece should be
/// replaced (for a CA, that is a decision for a human or a rotation procedure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Valid now, but within `renew_before` of notAfter.
    ExpiresSoon,
    /// Past notAfter, or before notBefore (issued by a clock far ahead of ours).
    Expired,
    /// Not signed by this CA, or not the right kind of certificate for its slot
    /// (a CA where a leaf belongs, or a CA that cannot sign).
    ChainBroken,
    /// The private key does not belong to the certificate.
    KeyMismatch,
    /// CN or O differ from the spec: a different Kubernetes user or group.
    SubjectChanged,
    /// The extended key usage (server/client) differs from the spec.
    UsageChanged,
    /// DNS or IP subject alternative names differ from the spec.
    SansChanged,
    /// The certificate, the CA certificate or the key could not be read.
    Unparseable(String),
}

impl Verdict {
    /// The variant name, without detail: a bounded value for metric labels and event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Valid => "Valid",
            Verdict::ExpiresSoon => "ExpiresSoon",
            Verdict::Expired => "Expired",
            Verdict::ChainBroken => "ChainBroken",
            Verdict::KeyMismatch => "KeyMismatch",
            Verdict::SubjectChanged => "SubjectChanged",
            Verdict::UsageChanged => "UsageChanged",
            Verdict::SansChanged => "SansChanged",
            Verdict::Unparseable(_) => "Unparseable",
        }
    }
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

/// kubeadm's `--discovery-token-ca-cert-hash`: `sha256:<hex>` of the CA's DER SubjectPublicKeyInfo.
pub fn ca_cert_hash(ca_cert_pem: &str) -> Result<String> {
    let pem = parse_pem(ca_cert_pem)?;
    let cert = parse_cert(&pem)?;
    let digest = Sha256::digest(cert.public_key().raw);
    Ok(format!("sha256:{}", hex(&digest)))
}

/// The certificate's fingerprint: hex SHA-256 of its DER, as `openssl x509 -fingerprint -sha256`
/// prints it (lower case, without colons). Identifies one certificate, not just its key.
pub fn fingerprint(cert_pem: &str) -> Result<String> {
    let pem = parse_pem(cert_pem)?;
    parse_cert(&pem)?;
    Ok(hex(&Sha256::digest(&pem.contents)))
}

/// A public key's fingerprint: hex SHA-256 of the DER SubjectPublicKeyInfo in a `PUBLIC KEY` PEM.
pub fn public_key_fingerprint(public_key_pem: &str) -> Result<String> {
    let pem = parse_pem(public_key_pem)?;
    if pem.label != "PUBLIC KEY" {
        return Err(Error::ParsePem(format!(
            "expected a PUBLIC KEY block, found {:?}",
            pem.label
        )));
    }
    Ok(hex(&Sha256::digest(&pem.contents)))
}

/// Service-account keys are usable when the private key parses and belongs to the public key.
pub fn check_service_account_keys(keys: &ServiceAccountKeys) -> Verdict {
    let public = match parse_pem(&keys.public_key_pem) {
        Ok(pem) if pem.label == "PUBLIC KEY" => pem,
        Ok(pem) => return Verdict::Unparseable(format!("public key: a {:?} block", pem.label)),
        Err(e) => return Verdict::Unparseable(format!("public key: {e}")),
    };
    match KeyPair::from_pem(&keys.private_key_pem) {
        Err(e) => Verdict::Unparseable(format!("private key: {e}")),
        Ok(key) if key.subject_public_key_info() != public.contents => Verdict::KeyMismatch,
        Ok(_) => Verdict::Valid,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the certificate, or says why it cannot be judged.
macro_rules! parsed_or_verdict {
    ($pem:ident, $text:expr, $what:literal) => {
        let $pem = match parse_pem($text) {
            Ok(pem) => pem,
            Err(e) => return Verdict::Unparseable(format!("{}: {e}", $what)),
        };
        let $pem = match parse_cert(&$pem) {
            Ok(cert) => cert,
            Err(e) => return Verdict::Unparseable(format!("{}: {e}", $what)),
        };
    };
}

/// `Some(verdict)` unless the private key parses and belongs to the certificate.
fn key_verdict(cert: &X509Certificate, key_pem: &str) -> Option<Verdict> {
    match KeyPair::from_pem(key_pem) {
        Err(e) => Some(Verdict::Unparseable(format!("private key: {e}"))),
        Ok(key) if key.subject_public_key_info() != cert.public_key().raw => Some(Verdict::KeyMismatch),
        Ok(_) => None,
    }
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

/// A CA is usable while it parses, is a self-signed CA that may sign certificates, its key
/// matches, and it has not expired.
pub fn check_ca(ca: &CertKeyPair, now: OffsetDateTime) -> Verdict {
    parsed_or_verdict!(cert, &ca.cert_pem, "CA certificate");
    // keyUsage is optional (RFC 5280 4.2.1.3), but when present it must allow keyCertSign.
    let can_sign = match cert.key_usage() {
        Ok(Some(ku)) => ku.value.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    if !cert.is_ca() || !can_sign || cert.verify_signature(None).is_err() {
        return Verdict::ChainBroken;
    }
    if let Some(verdict) = key_verdict(&cert, &ca.key_pem) {
        return verdict;
    }
    time_verdict(&cert, now, Duration::ZERO)
}

/// Checks a leaf against its CA and the spec it should have been issued for.
/// The first problem found wins, in the order of [`Verdict`]'s variants after `Expired`;
/// expiry is judged last, so a renewal never hides a wrong identity.
pub fn check(
    pair: &CertKeyPair,
    ca_cert_pem: &str,
    expected: &LeafSpec,
    now: OffsetDateTime,
    renew_before: Duration,
) -> Verdict {
    parsed_or_verdict!(cert, &pair.cert_pem, "certificate");
    parsed_or_verdict!(ca, ca_cert_pem, "CA certificate");
    if cert.is_ca() || cert.issuer() != ca.subject() || cert.verify_signature(Some(ca.public_key())).is_err()
    {
        return Verdict::ChainBroken;
    }
    if let Some(verdict) = key_verdict(&cert, &pair.key_pem) {
        return verdict;
    }
    let expected_subject = (
        Some(expected.common_name.clone()),
        expected.organizations.iter().cloned().collect(),
    );
    if subject(&cert) != expected_subject {
        return Verdict::SubjectChanged;
    }
    if usage(&cert) != Some(expected.usage) {
        return Verdict::UsageChanged;
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

fn usage(cert: &X509Certificate) -> Option<Usage> {
    let eku = cert.extended_key_usage().ok()??.value;
    match (eku.server_auth, eku.client_auth) {
        (true, false) => Some(Usage::Server),
        (false, true) => Some(Usage::Client),
        (true, true) => Some(Usage::ServerAndClient),
        (false, false) => None,
    }
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
