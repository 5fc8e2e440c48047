//! What a PKCS#10 certificate signing request asks for, read from its PEM: the subject and the
//! subject alternative names an approver compares with what it knows of the requester.
use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::{Error, Result};

/// The names a CSR asks to be certified with. Its signature has been checked: the requester
/// holds the private key of the public key it carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsrRequest {
    /// Subject CNs (a kubelet's has one, `system:node:<name>`).
    pub common_names: Vec<String>,
    /// Subject Os (a kubelet's has one, `system:nodes`).
    pub organizations: Vec<String>,
    /// Subject attributes other than CN and O.
    pub other_subject_attributes: usize,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Subject alternative names other than DNS names and IP addresses (e-mail, URI, ...).
    pub other_sans: usize,
}

/// Reads the CSR in `pem` (one `CERTIFICATE REQUEST` block) and checks its self-signature.
pub fn parse_csr(pem: &[u8]) -> Result<CsrRequest> {
    let invalid = |why: String| Error::ParseCsr(why);
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| invalid(e.to_string()))?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(invalid(format!(
            "a {} block, not a CERTIFICATE REQUEST",
            block.label
        )));
    }
    parse_der(&block.contents)
}

fn parse_der(der: &[u8]) -> Result<CsrRequest> {
    let invalid = |why: String| Error::ParseCsr(why);
    let (_, csr) = X509CertificationRequest::from_der(der).map_err(|e| invalid(e.to_string()))?;
    csr.verify_signature()
        .map_err(|e| invalid(format!("signature: {e}")))?;
    let subject = &csr.certification_request_info.subject;
    let text = |attributes: Vec<&x509_parser::x509::AttributeTypeAndValue<'_>>| -> Result<Vec<String>> {
        attributes
            .into_iter()
            .map(|a| a.as_str().map(str::to_string).map_err(|e| invalid(e.to_string())))
            .collect()
    };
    let common_names = text(subject.iter_common_name().collect())?;
    let organizations = text(subject.iter_organization().collect())?;
    let mut request = CsrRequest {
        other_subject_attributes: subject.iter_attributes().count()
            - common_names.len()
            - organizations.len(),
        common_names,
        organizations,
        ..CsrRequest::default()
    };
    let sans = csr
        .requested_extensions()
        .into_iter()
        .flatten()
        .filter_map(|e| match e {
            ParsedExtension::SubjectAlternativeName(san) => Some(&san.general_names),
            _ => None,
        });
    for name in sans.flatten() {
        match name {
            GeneralName::DNSName(dns) => request.dns_names.push((*dns).to_string()),
            GeneralName::IPAddress(bytes) => match ip_address(bytes) {
                Some(ip) => request.ip_addresses.push(ip),
                None => request.other_sans += 1,
            },
            _ => request.other_sans += 1,
        }
    }
    Ok(request)
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sans: Vec<rcgen::SanType>, subject: &[(rcgen::DnType, &str)]) -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = sans;
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.serialize_request(&key).expect("csr").pem().expect("pem")
    }

    #[test]
    fn reads_a_kubelet_serving_request() {
        let pem = request(
            vec![
                rcgen::SanType::DnsName("pool-abcde".try_into().expect("dns")),
                rcgen::SanType::IpAddress("172.31.250.17".parse().expect("ip")),
                rcgen::SanType::IpAddress("fd00::17".parse().expect("ip")),
            ],
            &[
                (rcgen::DnType::OrganizationName, "system:nodes"),
                (rcgen::DnType::CommonName, "system:node:pool-abcde"),
            ],
        );
        let parsed = parse_csr(pem.as_bytes()).expect("parse");
        assert_eq!(parsed.common_names, ["system:node:pool-abcde"]);
        assert_eq!(parsed.organizations, ["system:nodes"]);
        assert_eq!(parsed.dns_names, ["pool-abcde"]);
        let ips: Vec<IpAddr> = vec![
            "172.31.250.17".parse().expect("ip"),
            "fd00::17".parse().expect("ip"),
        ];
        assert_eq!(parsed.ip_addresses, ips);
        assert_eq!((parsed.other_sans, parsed.other_subject_attributes), (0, 0));
    }

    #[test]
    fn counts_what_a_kubelet_never_asks_for() {
        let pem = request(
            vec![
                rcgen::SanType::Rfc822Name("admin@example.com".try_into().expect("mail")),
                rcgen::SanType::URI("spiffe://example/x".try_into().expect("uri")),
            ],
            &[
                (rcgen::DnType::CommonName, "system:node:pool-abcde"),
                (rcgen::DnType::OrganizationalUnitName, "ops"),
            ],
        );
        let parsed = parse_csr(pem.as_bytes()).expect("parse");
        assert_eq!(parsed.other_sans, 2);
        assert_eq!(parsed.other_subject_attributes, 1);
        assert!(parsed.organizations.is_empty());
    }

    #[test]
    fn refuses_a_request_whose_signature_does_not_match() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:pool-abcde");
        let der = params.serialize_request(&key).expect("csr").der().to_vec();
        assert!(parse_der(&der).is_ok());
        // The same request for another node, with the signature of the first.
        let at = der
            .windows(5)
            .position(|w| w == b"abcde")
            .expect("the name is in the DER");
        let mut forged = der.clone();
        forged[at] = b'x';
        let error = parse_der(&forged).expect_err("a forged subject");
        assert!(error.to_string().contains("signature"), "{error}");
    }

    #[test]
    fn refuses_what_is_not_a_request() {
        let ca =
            crate::generate_ca("ca", time::OffsetDateTime::now_utc(), time::Duration::days(1)).expect("ca");
        assert!(matches!(
            parse_csr(ca.cert_pem.as_bytes()),
            Err(Error::ParseCsr(_))
        ));
        assert!(parse_csr(b"not pem").is_err());
    }
}
