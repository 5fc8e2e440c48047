use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use crate::leaf::{new_key, validity_window};
use crate::{CertKeyPair, Error, Result, ServiceAccountKeys};

/// A self-signed CA certificate with a new key, valid from a little before `now` for `validity`.
///
/// basicConstraints `CA:TRUE` (critical, no path length: nestplane issues no intermediates),
/// keyUsage keyCertSign, cRLSign and digitalSignature, and a subject key identifier that
/// leaves name in their authority key identifier.
pub fn generate_ca(common_name: &str, now: OffsetDateTime, validity: Duration) -> Result<CertKeyPair> {
    let key = new_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    validity_window(&mut params, &key, common_name, now, validity)?;
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
    let key = new_key()?;
    Ok(ServiceAccountKeys {
        private_key_pem: key.serialize_pem(),
        public_key_pem: key.public_key_pem(),
    })
}

#[cfg(test)]
mod tests {
    use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
    use x509_parser::prelude::FromDer;
    use x509_parser::x509::SubjectPublicKeyInfo;

    use super::*;
    use crate::test_support::{NOW, YEAR, key_signs_for, pem, serial_is_positive, subject_key_id};

    #[test]
    fn ca_is_a_self_signed_p256_ca_that_can_sign() {
        let ca = generate_ca("kubernetes", NOW, YEAR * 10).expect("ca");
        let pem = pem(&ca.cert_pem);
        let cert = pem.parse_x509().expect("certificate");

        assert_eq!(cert.subject().to_string(), "CN=kubernetes");
        assert_eq!(cert.issuer(), cert.subject(), "self-issued");
        assert!(cert.verify_signature(None).is_ok(), "self-signed");

        let bc = cert.basic_constraints().expect("ext").expect("basicConstraints");
        assert!(bc.critical, "basicConstraints must be critical");
        assert!(bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, None);
        let ku = cert.key_usage().expect("ext").expect("keyUsage").value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
        assert!(
            cert.extended_key_usage().expect("ext").is_none(),
            "a CA has no EKU"
        );
        let ski = subject_key_id(&cert);
        assert!(ski.is_some_and(|id| !id.is_empty()), "subject key identifier");

        let spki = cert.public_key();
        assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        assert_eq!(curve, Some(OID_EC_P256));
        assert!(
            key_signs_for(&ca.key_pem, spki),
            "the key belongs to the certificate"
        );
        assert!(ca.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");

        let validity = cert.validity();
        assert_eq!(validity.not_before.to_datetime(), NOW - Duration::minutes(5));
        assert_eq!(validity.not_after.to_datetime(), NOW + YEAR * 10);
        assert!(serial_is_positive(&cert));
    }

    #[test]
    fn each_ca_gets_its_own_key_and_serial() {
        let a = generate_ca("kubernetes", NOW, YEAR).expect("ca");
        let b = generate_ca("kubernetes", NOW, YEAR).expect("ca");
        let (pa, pb) = (pem(&a.cert_pem), pem(&b.cert_pem));
        let (ca, cb) = (pa.parse_x509().expect("a"), pb.parse_x509().expect("b"));
        assert_ne!(ca.raw_serial(), cb.raw_serial());
        assert_ne!(ca.public_key().raw, cb.public_key().raw);
        assert!(!key_signs_for(&a.key_pem, cb.public_key()));
    }

    #[test]
    fn ca_needs_a_positive_validity() {
        for validity in [Duration::ZERO, Duration::days(-1)] {
            let err = generate_ca("kubernetes", NOW, validity).expect_err("no validity");
            assert!(matches!(err, Error::InvalidValidity { .. }), "{err}");
        }
    }

    #[test]
    fn service_account_keys_are_a_p256_pair() {
        let keys = generate_service_account_keys().expect("keys");
        assert!(keys.private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let public = pem(&keys.public_key_pem);
        assert_eq!(public.label, "PUBLIC KEY");
        let (rest, spki) = SubjectPublicKeyInfo::from_der(&public.contents).expect("SPKI");
        assert!(rest.is_empty());
        assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
        assert!(key_signs_for(&keys.private_key_pem, &spki));

        let other = generate_service_account_keys().expect("keys");
        assert!(!key_signs_for(&other.private_key_pem, &spki));
        assert!(!format!("{keys:?}").contains("PRIVATE"), "Debug hides the key");
    }
}
