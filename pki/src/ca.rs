use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use crate::leaf::{backdated, serial_for};
use crate::{CertKeyPair, Error, Result, ServiceAccountKeys};

/// A self-signed CA certificate, valid from a little before `now` for `validity`.
pub fn generate_ca(common_name: &str, now: OffsetDateTime, validity: Duration) -> Result<CertKeyPair> {
    let key = KeyPair::generate().map_err(Error::GenerateKey)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.not_before = backdated(now);
    params.not_after = now + validity;
    params.serial_number = Some(serial_for(&key, now));
    let cert = params.self_signed(&key).map_err(|source| Error::Sign {
        common_name: common_name.to_string(),
        source,
    })?;
    Ok(CertKeyPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A fresh key pair for signing service-account tokens (ES256).
pub fn generate_service_account_keys() -> Result<ServiceAccountKeys> {
    let key = KeyPair::generate().map_err(Error::GenerateKey)?;
    Ok(ServiceAccountKeys {
        private_key_pem: key.serialize_pem(),
        public_key_pem: key.public_key_pem(),
    })
}
