use std::net::IpAddr;

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
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

/// The identity of a leaf certificate: subject and subject alternative names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub usage: Usage,
}

impl LeafSpec {
    pub fn client(common_name: &str, organizations: &[&str]) -> Self {
        LeafSpec {
            common_name: common_name.to_string(),
            organizations: organizations.iter().map(|o| o.to_string()).collect(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            usage: Usage::Client,
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

pub(crate) fn backdated(now: OffsetDateTime) -> OffsetDateTime {
    now - BACKDATE
}

/// A positive 128-bit serial number derived from the new key and the time: unique per issuance.
pub(crate) fn serial_for(key: &KeyPair, now: OffsetDateTime) -> SerialNumber {
    let mut hasher = Sha256::new();
    hasher.update(key.public_key_raw());
    hasher.update(now.unix_timestamp_nanos().to_be_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[0] &= 0x7f; // DER integers are signed: keep it positive.
    SerialNumber::from_slice(&bytes)
}

/// Issues a leaf certificate for `spec`, signed by `ca`, with a new key.
pub fn issue_leaf(
    ca: &CertKeyPair,
    spec: &LeafSpec,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<CertKeyPair> {
    let sign_error = |source| Error::Sign {
        common_name: spec.common_name.clone(),
        source,
    };
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|source| Error::ParseKey {
        what: "the CA".to_string(),
        source,
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(sign_error)?;
    let key = KeyPair::generate().map_err(Error::GenerateKey)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for organization in &spec.organizations {
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization.as_str());
    }
    params
        .distinguished_name
        .push(DnType::CommonName, spec.common_name.as_str());
    params.subject_alt_names = subject_alt_names(spec)?;
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
    params.not_before = backdated(now);
    params.not_after = now + validity;
    params.serial_number = Some(serial_for(&key, now));
    let cert = params.signed_by(&key, &issuer).map_err(sign_error)?;
    Ok(CertKeyPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
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
