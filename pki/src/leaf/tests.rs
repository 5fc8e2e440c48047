use super::*;
use crate::generate_ca;
use crate::test_support::{
    NOW, YEAR, authority_key_id, dns_and_ip_sans, ips, key_signs_for, pem, serial_is_positive, strings,
    subject_key_id,
};

fn spec(usage: Usage) -> LeafSpec {
    LeafSpec {
        organizations: vec!["example:group".into()],
        ..LeafSpec::new("example-user", usage)
    }
    .with_name("svc.example.test")
    .with_name("192.0.2.7")
    .with_name("2001:db8::7")
}

#[test]
fn leaf_chains_to_its_ca_and_carries_kubeadm_extensions() {
    let ca = generate_ca("kubernetes", NOW, YEAR * 10).expect("ca");
    let leaf = issue_leaf(&ca, &spec(Usage::Server), NOW, YEAR).expect("leaf");
    let (ca_pem, leaf_pem) = (pem(&ca.cert_pem), pem(&leaf.cert_pem));
    let ca_cert = ca_pem.parse_x509().expect("ca cert");
    let cert = leaf_pem.parse_x509().expect("leaf cert");

    assert!(
        cert.verify_signature(Some(ca_cert.public_key())).is_ok(),
        "signed by the CA"
    );
    assert_eq!(cert.issuer(), ca_cert.subject());
    assert_eq!(
        authority_key_id(&cert),
        subject_key_id(&ca_cert),
        "AKI names the CA's key"
    );
    let ski = subject_key_id(&cert).expect("leaf SKI");
    assert_ne!(Some(ski), subject_key_id(&ca_cert));

    let bc = cert.basic_constraints().expect("ext").expect("basicConstraints");
    assert!(bc.critical && !bc.value.ca, "CA:FALSE, critical");
    assert!(!cert.is_ca());
    let ku = cert.key_usage().expect("ext").expect("keyUsage");
    assert!(ku.critical);
    assert!(ku.value.digital_signature() && ku.value.key_encipherment());
    assert!(
        !ku.value.key_cert_sign() && !ku.value.crl_sign(),
        "a leaf cannot sign certificates"
    );

    assert_eq!(cert.subject().to_string(), "O=example:group, CN=example-user");
    let (dns, ip) = dns_and_ip_sans(&cert);
    assert_eq!(dns, strings(&["svc.example.test"]));
    assert_eq!(ip, ips(&["192.0.2.7", "2001:db8::7"]));

    let validity = cert.validity();
    assert_eq!(validity.not_before.to_datetime(), NOW - Duration::minutes(5));
    assert_eq!(validity.not_after.to_datetime(), NOW + YEAR);
    assert!(serial_is_positive(&cert));
    assert!(key_signs_for(&leaf.key_pem, cert.public_key()));
    assert!(
        !key_signs_for(&ca.key_pem, cert.public_key()),
        "a new key, not the CA's"
    );
}

#[test]
fn usage_sets_the_extended_key_usage() {
    let ca = generate_ca("kubernetes", NOW, YEAR).expect("ca");
    for (usage, server, client) in [
        (Usage::Server, true, false),
        (Usage::Client, false, true),
        (Usage::ServerAndClient, true, true),
    ] {
        let leaf = issue_leaf(&ca, &spec(usage), NOW, YEAR).expect("leaf");
        let pem = pem(&leaf.cert_pem);
        let cert = pem.parse_x509().expect("cert");
        let eku = cert.extended_key_usage().expect("ext").expect("EKU").value;
        assert_eq!((eku.server_auth, eku.client_auth), (server, client), "{usage:?}");
        assert!(!eku.any && eku.other.is_empty(), "{usage:?}");
    }
}

#[test]
fn a_client_without_names_has_no_san_extension() {
    let ca = generate_ca("kubernetes", NOW, YEAR).expect("ca");
    let leaf = issue_leaf(&ca, &LeafSpec::client("system:kube-scheduler", &[]), NOW, YEAR).expect("leaf");
    let pem = pem(&leaf.cert_pem);
    let cert = pem.parse_x509().expect("cert");
    assert!(cert.subject_alternative_name().expect("ext").is_none());
    assert_eq!(cert.subject().to_string(), "CN=system:kube-scheduler");
}

#[test]
fn serials_differ_between_issuances_at_the_same_instant() {
    let ca = generate_ca("kubernetes", NOW, YEAR).expect("ca");
    let serials: std::collections::BTreeSet<Vec<u8>> = (0..8)
        .map(|_| {
            let leaf = issue_leaf(&ca, &spec(Usage::Client), NOW, YEAR).expect("leaf");
            let pem = pem(&leaf.cert_pem);
            let cert = pem.parse_x509().expect("cert");
            cert.raw_serial().to_vec()
        })
        .collect();
    assert_eq!(serials.len(), 8);
}

#[test]
fn with_name_sorts_addresses_from_names_and_drops_duplicates() {
    let spec = LeafSpec::new("x", Usage::Server)
        .with_name("a.example")
        .with_name("10.0.0.1")
        .with_name("a.example")
        .with_name("10.0.0.1")
        .with_name("::1");
    assert_eq!(spec.dns_names, vec!["a.example".to_string()]);
    assert_eq!(
        spec.ip_addresses,
        ips(&["10.0.0.1", "::1"]).into_iter().collect::<Vec<_>>()
    );
}

#[test]
fn issuing_fails_with_context() {
    let ca = generate_ca("kubernetes", NOW, YEAR).expect("ca");

    let err = issue_leaf(&ca, &spec(Usage::Server), NOW, Duration::ZERO).expect_err("zero validity");
    assert!(matches!(err, Error::InvalidValidity { ref common_name, .. } if common_name == "example-user"));

    let broken_key = CertKeyPair {
        cert_pem: ca.cert_pem.clone(),
        key_pem: "garbage".into(),
    };
    let err = issue_leaf(&broken_key, &spec(Usage::Server), NOW, YEAR).expect_err("bad CA key");
    assert!(matches!(err, Error::ParseKey { .. }), "{err}");

    let broken_cert = CertKeyPair {
        cert_pem: "garbage".into(),
        key_pem: ca.key_pem.clone(),
    };
    let err = issue_leaf(&broken_cert, &spec(Usage::Server), NOW, YEAR).expect_err("bad CA cert");
    assert!(matches!(err, Error::ParseIssuer { .. }), "{err}");

    let mut two_groups = spec(Usage::Client);
    two_groups.organizations.push("second:group".into());
    let err = issue_leaf(&ca, &two_groups, NOW, YEAR).expect_err("two organizations");
    assert!(matches!(err, Error::UnsupportedSubject { .. }), "{err}");

    let bad_dns = LeafSpec::new("x", Usage::Server).with_name("bücher.example");
    let err = issue_leaf(&ca, &bad_dns, NOW, YEAR).expect_err("non-ASCII DNS name");
    assert!(
        matches!(err, Error::InvalidSan(ref n) if n == "bücher.example"),
        "{err}"
    );
}

#[test]
fn leaf_never_outlives_its_ca() {
    let ca = generate_ca("kubernetes", NOW, Duration::days(100)).expect("ca");
    let ca_not_after = crate::not_after(&ca.cert_pem).expect("CA expiry");

    // Asked for a year, the leaf stops with its CA.
    let leaf = issue_leaf(&ca, &spec(Usage::Server), NOW + Duration::days(10), YEAR).expect("leaf");
    let leaf_pem = pem(&leaf.cert_pem);
    let cert = leaf_pem.parse_x509().expect("leaf cert");
    assert_eq!(cert.validity().not_after.to_datetime(), ca_not_after);

    // Within the CA's life, the validity asked for is kept.
    let short = issue_leaf(&ca, &spec(Usage::Server), NOW, Duration::days(30)).expect("leaf");
    assert_eq!(
        crate::not_after(&short.cert_pem).expect("expiry"),
        NOW + Duration::days(30)
    );

    // A CA that has expired issues nothing.
    let err = issue_leaf(&ca, &spec(Usage::Server), ca_not_after, YEAR).expect_err("expired CA");
    assert!(
        matches!(err, Error::IssuerExpired { ref leaf, not_after } if leaf == "example-user" && not_after == ca_not_after),
        "{err}"
    );
    assert!(err.to_string().contains("accept a new CA"), "{err}");
}
