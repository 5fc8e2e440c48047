use std::net::IpAddr;

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::{CertKeyPair, Error, Result};

/// What a leaf certificate is used for: its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// The identity of a leaf certificate: subject, subject alternative names and usage.
/// Kubernetes reads the user from the CN and the groups from the O values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    pub common_name: String,
    /// At most one: rcgen writes one value per attribute type (see [`issue_leaf`]).
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub usage: Usage,
}

impl LeafSpec {
    /// A spec with no names yet.
    pub fn new(common_name: &str, usage: Usage) -> Self {
        LeafSpec {
            common_name: common_name.to_string(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            usage,
        }
    }

    /// A client certificate for user `common_name` in groups `organizations`.
    pub fn client(common_name: &str, organizations: &[&str]) -> Self {
        LeafSpec {
            organizations: organizations.iter().map(|o| o.to_string()).collect(),
            ..LeafSpec::new(common_name, Usage::Client)
        }
    }

    /// Adds a name, as an IP SAN when it parses as an address; skips duplicates.
    pub fn with_name(mut self, name: &str) -> Self {
        match name.parse::<IpAddr>() {
            Ok(ip) if !self.ip_addresses.contains(&ip) => self.ip_addresses.push(ip),
            Ok(_) => {}
            Err(_) if !self.dns_names.iter().any(|d| d == name) => self.dns_names.push(name.to_string()),
            Err(_) => {}
        }
        self
    }
}

/// Clock skew between the operator and the components it configures is tolerated this much.
const BACKDATE: Duration = Duration::minutes(5);

/// Every key is ECDSA P-256 (ES256 for service-account tokens).
pub(crate) fn new_key() -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::GenerateKey)
}

/// Sets notBefore a little before `now`, notAfter at `now + validity`, and the serial number.
pub(crate) fn validity_window(
    params: &mut CertificateParams,
    key: &KeyPair,
    common_name: &str,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<()> {
    // A certificate born expired would be reissued on every reconcile.
    if !validity.is_positive() {
        return Err(Error::InvalidValidity {
            common_name: common_name.to_string(),
            validity,
        });
    }
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    params.serial_number = Some(serial_for(key, now));
    Ok(())
}

/// A positive 128-bit serial number: a hash of the new, randomly generated key and the time,
/// so it is unpredictable and unique per issuance without a second source of randomness.
fn serial_for(key: &KeyPair, now: OffsetDateTime) -> SerialNumber {
    let mut hasher = Sha256::new();
    hasher.update(key.public_key_raw());
    hasher.update(now.unix_timestamp_nanos().to_be_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[0] &= 0x7f; // DER integers are signed: keep it positive.
    bytes[0] |= 0x01; // ... and never shorter than 16 bytes or zero.
    SerialNumber::from_slice(&bytes)
}

/// Issues a leaf certificate for `spec`, signed by `ca`, with a new key.
///
/// The leaf never outlives its CA: `not_after` is `now + validity` or the CA's own
/// `not_after`, whichever comes first (a chain past its root's expiry does not verify, and
/// a leaf that claims otherwise would hide that until the day it breaks).
///
/// As kubeadm does: basicConstraints `CA:FALSE` (critical), keyUsage digitalSignature and
/// keyEncipherment, the extended key usage of `spec.usage`, and subject and authority key
/// identifiers (the latter is the CA's subject key identifier).
pub fn issue_leaf(
    ca: &CertKeyPair,
    spec: &LeafSpec,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<CertKeyPair> {
    let common_name = || spec.common_name.clone();
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|source| Error::ParseKey {
        what: format!("the CA issuing {:?}", spec.common_name),
        source,
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(|source| Error::ParseIssuer {
        leaf: common_name(),
        source,
    })?;
    let ca_not_after = crate::not_after(&ca.cert_pem)?;
    if ca_not_after <= now {
        return Err(Error::IssuerExpired {
            leaf: common_name(),
            not_after: ca_not_after,
        });
    }
    let validity = validity.min(ca_not_after - now);
    let key = new_key()?;

    let mut params = CertificateParams::default();
    params.distinguished_name = subject(spec)?;
    params.subject_alt_names = subject_alt_names(spec)?;
    // ExplicitNoCa also writes the subject key identifier.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match spec.usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.use_authority_key_identifier_extension = true;
    validity_window(&mut params, &key, &spec.common_name, now, validity)?;
    let cert = params.signed_by(&key, &issuer).map_err(|source| Error::Sign {
        common_name: common_name(),
        source,
    })?;
    Ok(CertKeyPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// `O=<organization>, CN=<common name>`, in the order Go's crypto/x509 writes them.
fn subject(spec: &LeafSpec) -> Result<rcgen::DistinguishedName> {
    let mut name = rcgen::DistinguishedName::new();
    match spec.organizations.as_slice() {
        [] => {}
        [organization] => name.push(DnType::OrganizationName, organization.as_str()),
        // rcgen keeps one value per attribute type; a silently dropped group would make
        // `check` report SubjectChanged on every pass.
        _ => {
            return Err(Error::UnsupportedSubject {
                common_name: spec.common_name.clone(),
                reason: "more than one organization",
            });
        }
    }
    name.push(DnType::CommonName, spec.common_name.as_str());
    Ok(name)
}

fn subject_alt_names(spec: &LeafSpec) -> Result<Vec<SanType>> {
    let mut sans = Vec::with_capacity(spec.dns_names.len() + spec.ip_addresses.len());
    for name in &spec.dns_names {
        let dns = name
            .clone()
            .try_into()
            .map_err(|_| Error::InvalidSan(name.clone()))?;
        sans.push(SanType::DnsName(dns));
    }
    sans.extend(spec.ip_addresses.iter().copied().map(SanType::IpAddress));
    Ok(sans)
}

#[cfg(test)]
mod tests;
