use time::macros::datetime;

use super::*;
use crate::profiles::{self, ApiServerSans};
use crate::test_support::{NOW, YEAR};
use crate::{generate_ca, issue_leaf};

const RENEW: Duration = Duration::days(30);

fn sans() -> ApiServerSans {
    ApiServerSans {
        service_ip: "10.96.0.1".parse().expect("ip"),
        dns_domain: "cluster.local".into(),
        service_names: vec!["demo-apiserver".into(), "demo-apiserver.team-a.svc".into()],
        endpoint_hosts: vec!["192.0.2.2".into()],
        extra_sans: vec!["api.example.com".into()],
    }
}

struct Fixture {
    ca: CertKeyPair,
    spec: LeafSpec,
    leaf: CertKeyPair,
}

fn fixture() -> Fixture {
    let ca = generate_ca("kubernetes", NOW, YEAR * 10).expect("ca");
    let spec = profiles::apiserver(&sans());
    let leaf = issue_leaf(&ca, &spec, NOW, YEAR).expect("leaf");
    Fixture { ca, spec, leaf }
}

#[test]
fn a_fresh_leaf_is_valid_until_the_renewal_window() {
    let f = fixture();
    let at = |now| check(&f.leaf, &f.ca.cert_pem, &f.spec, now, RENEW);
    assert_eq!(at(NOW), Verdict::Valid);
    assert_eq!(
        at(NOW - Duration::minutes(4)),
        Verdict::Valid,
        "backdated for clock skew"
    );
    assert_eq!(at(NOW + YEAR - RENEW - Duration::seconds(1)), Verdict::Valid);
    assert_eq!(at(NOW + YEAR - RENEW), Verdict::ExpiresSoon);
    assert_eq!(at(NOW + YEAR - Duration::seconds(1)), Verdict::ExpiresSoon);
    assert_eq!(at(NOW + YEAR), Verdict::Expired);
    assert_eq!(at(NOW + YEAR * 2), Verdict::Expired);
    assert_eq!(at(NOW - Duration::hours(1)), Verdict::Expired, "not yet valid");
}

#[test]
fn names_in_another_order_are_the_same_names() {
    let f = fixture();
    let mut spec = f.spec.clone();
    spec.dns_names.reverse();
    spec.ip_addresses.reverse();
    assert_eq!(check(&f.leaf, &f.ca.cert_pem, &spec, NOW, RENEW), Verdict::Valid);
}

#[test]
fn a_leaf_from_another_ca_is_a_broken_chain() {
    let f = fixture();
    // Same subject name, different key: only the signature tells them apart.
    let impostor = generate_ca("kubernetes", NOW, YEAR * 10).expect("ca");
    assert_eq!(
        check(&f.leaf, &impostor.cert_pem, &f.spec, NOW, RENEW),
        Verdict::ChainBroken
    );
    let etcd_ca = generate_ca("etcd-ca", NOW, YEAR).expect("ca");
    assert_eq!(
        check(&f.leaf, &etcd_ca.cert_pem, &f.spec, NOW, RENEW),
        Verdict::ChainBroken
    );
}

#[test]
fn a_ca_in_a_leaf_slot_is_a_broken_chain() {
    let f = fixture();
    assert_eq!(
        check(&f.ca, &f.ca.cert_pem, &f.spec, NOW, RENEW),
        Verdict::ChainBroken
    );
}

#[test]
fn someone_elses_key_is_a_mismatch_and_garbage_is_unparseable() {
    let f = fixture();
    let other = issue_leaf(&f.ca, &f.spec, NOW, YEAR).expect("leaf");
    let swapped = CertKeyPair {
        cert_pem: f.leaf.cert_pem.clone(),
        key_pem: other.key_pem,
    };
    assert_eq!(
        check(&swapped, &f.ca.cert_pem, &f.spec, NOW, RENEW),
        Verdict::KeyMismatch
    );

    let no_key = CertKeyPair {
        cert_pem: f.leaf.cert_pem.clone(),
        key_pem: String::new(),
    };
    let verdict = check(&no_key, &f.ca.cert_pem, &f.spec, NOW, RENEW);
    assert!(
        matches!(verdict, Verdict::Unparseable(ref m) if m.starts_with("private key")),
        "{verdict:?}"
    );
}

#[test]
fn another_user_or_group_is_a_changed_subject() {
    let ca = generate_ca("kubernetes", NOW, YEAR).expect("ca");
    let admin = issue_leaf(&ca, &profiles::admin(), NOW, YEAR).expect("leaf");
    let renamed = LeafSpec::client("kubernetes-admin", &["kubeadm:cluster-admins"]);
    let regrouped = LeafSpec::client("someone-else", &["system:masters"]);
    for spec in [renamed, regrouped, profiles::scheduler()] {
        assert_eq!(
            check(&admin, &ca.cert_pem, &spec, NOW, RENEW),
            Verdict::SubjectChanged
        );
    }
    assert_eq!(
        check(&admin, &ca.cert_pem, &profiles::admin(), NOW, RENEW),
        Verdict::Valid
    );
}

#[test]
fn another_usage_is_a_changed_usage() {
    let f = fixture();
    let mut both = f.spec.clone();
    both.usage = Usage::ServerAndClient;
    assert_eq!(
        check(&f.leaf, &f.ca.cert_pem, &both, NOW, RENEW),
        Verdict::UsageChanged
    );
    let mut client = f.spec.clone();
    client.usage = Usage::Client;
    assert_eq!(
        check(&f.leaf, &f.ca.cert_pem, &client, NOW, RENEW),
        Verdict::UsageChanged
    );
}

#[test]
fn an_added_or_removed_name_is_a_san_change() {
    let f = fixture();
    let mut more_dns = sans();
    more_dns.extra_sans.push("new.example.com".into());
    let mut more_ips = sans();
    more_ips.endpoint_hosts.push("192.0.2.3".into());
    let mut fewer = sans();
    fewer.service_names.pop();
    for changed in [more_dns, more_ips, fewer] {
        let spec = profiles::apiserver(&changed);
        assert_eq!(
            check(&f.leaf, &f.ca.cert_pem, &spec, NOW, RENEW),
            Verdict::SansChanged
        );
    }
}

#[test]
fn garbage_certificates_are_unparseable() {
    let f = fixture();
    let garbage = CertKeyPair {
        cert_pem: "not a certificate".into(),
        key_pem: String::new(),
    };
    let verdict = check(&garbage, &f.ca.cert_pem, &f.spec, NOW, RENEW);
    assert!(
        matches!(verdict, Verdict::Unparseable(ref m) if m.starts_with("certificate")),
        "{verdict:?}"
    );
    let verdict = check(&f.leaf, "", &f.spec, NOW, RENEW);
    assert!(
        matches!(verdict, Verdict::Unparseable(ref m) if m.starts_with("CA certificate")),
        "{verdict:?}"
    );
    let verdict = check_ca(&garbage, NOW);
    assert!(matches!(verdict, Verdict::Unparseable(_)), "{verdict:?}");
    assert_eq!(verdict.reason(), "Unparseable");
}

#[test]
fn check_ca_judges_kind_key_and_time() {
    let f = fixture();
    assert_eq!(check_ca(&f.ca, NOW), Verdict::Valid);
    assert_eq!(
        check_ca(&f.ca, NOW + YEAR * 10 - Duration::seconds(1)),
        Verdict::Valid
    );
    assert_eq!(check_ca(&f.ca, NOW + YEAR * 10), Verdict::Expired);
    assert_eq!(check_ca(&f.leaf, NOW), Verdict::ChainBroken, "a leaf is no CA");

    let other = generate_ca("kubernetes", NOW, YEAR).expect("ca");
    let swapped = CertKeyPair {
        cert_pem: f.ca.cert_pem.clone(),
        key_pem: other.key_pem,
    };
    assert_eq!(check_ca(&swapped, NOW), Verdict::KeyMismatch);
}

/// A CA made by other tools: keyUsage may be absent, but must not forbid signing.
#[test]
fn check_ca_reads_key_usage_as_rfc_5280_does() {
    let self_signed = |usages: Vec<rcgen::KeyUsagePurpose>| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = usages;
        params.not_before = NOW - Duration::days(1);
        params.not_after = NOW + YEAR;
        let cert = params.self_signed(&key).expect("cert");
        CertKeyPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    };
    assert_eq!(check_ca(&self_signed(Vec::new()), NOW), Verdict::Valid);
    let cannot_sign = self_signed(vec![rcgen::KeyUsagePurpose::DigitalSignature]);
    assert_eq!(check_ca(&cannot_sign, NOW), Verdict::ChainBroken);
}

fn testdata(name: &str) -> String {
    let path = format!("{}/src/check/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).expect(&path)
}

/// The discovery hash equals what openssl computed over CAs that openssl made (see testdata/README.md).
#[test]
fn ca_cert_hash_matches_openssl_fixtures() {
    for name in ["ca-ec.crt", "ca-rsa.crt"] {
        let expected = testdata(&format!("{name}.sha256"));
        assert_eq!(
            ca_cert_hash(&testdata(name)).expect("hash"),
            expected.trim(),
            "{name}"
        );
    }
}

#[test]
fn ca_cert_hash_is_of_the_public_key_only() {
    let f = fixture();
    let hash = ca_cert_hash(&f.ca.cert_pem).expect("hash");
    let hex = hash.strip_prefix("sha256:").expect("prefix");
    assert!(
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    // A leaf carries another key, hence another hash; a re-read of the same CA, the same one.
    assert_ne!(ca_cert_hash(&f.leaf.cert_pem).expect("hash"), hash);
    assert_eq!(ca_cert_hash(&f.ca.cert_pem.clone()).expect("hash"), hash);
    assert!(matches!(ca_cert_hash("nope"), Err(Error::ParsePem(_))));
}

#[test]
fn not_after_reads_the_certificate() {
    for name in ["ca-ec.crt", "ca-rsa.crt"] {
        let unix: i64 = testdata(&format!("{name}.not-after-unix"))
            .trim()
            .parse()
            .expect("seconds");
        let expected = OffsetDateTime::from_unix_timestamp(unix).expect("time");
        assert_eq!(not_after(&testdata(name)).expect("parse"), expected, "{name}");
    }
    let f = fixture();
    assert_eq!(
        not_after(&f.leaf.cert_pem).expect("parse"),
        datetime!(2027-01-01 00:00 UTC)
    );
    assert!(not_after("").is_err());
}

#[test]
fn every_verdict_has_a_bounded_reason() {
    assert_eq!(Verdict::Unparseable("any detail".into()).reason(), "Unparseable");
    assert_eq!(Verdict::SansChanged.reason(), "SansChanged");
    assert_eq!(Verdict::Valid.reason(), format!("{:?}", Verdict::Valid));
}

/// The fingerprint equals `openssl x509 -outform der | sha256sum` over CAs that openssl made.
#[test]
fn fingerprint_matches_openssl_fixtures() {
    for name in ["ca-ec.crt", "ca-rsa.crt"] {
        let expected = testdata(&format!("{name}.fingerprint"));
        assert_eq!(
            fingerprint(&testdata(name)).expect("fingerprint"),
            expected.trim(),
            "{name}"
        );
    }
    assert!(matches!(fingerprint("nope"), Err(Error::ParsePem(_))));
}

#[test]
fn fingerprint_tells_two_certificates_of_one_key_apart() {
    // Same key, another certificate (a re-signed CA): the discovery hash stays, the fingerprint not.
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = |cn: &str| {
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).expect("cert").pem()
    };
    let (a, b) = (cert("kubernetes"), cert("kubernetes-renewed"));
    assert_eq!(ca_cert_hash(&a).expect("hash"), ca_cert_hash(&b).expect("hash"));
    assert_ne!(fingerprint(&a).expect("a"), fingerprint(&b).expect("b"));
    assert_eq!(
        fingerprint(&a).expect("a"),
        fingerprint(&a.clone()).expect("a again")
    );
}

#[test]
fn public_key_fingerprint_is_of_the_der_key() {
    let keys = crate::generate_service_account_keys().expect("keys");
    let print = public_key_fingerprint(&keys.public_key_pem).expect("fingerprint");
    let (_, pem) = x509_parser::pem::parse_x509_pem(keys.public_key_pem.as_bytes()).expect("pem");
    assert_eq!(print, hex(&Sha256::digest(&pem.contents)));
    assert_eq!(print.len(), 64);
    let other = crate::generate_service_account_keys().expect("keys");
    assert_ne!(
        public_key_fingerprint(&other.public_key_pem).expect("other"),
        print
    );
    // A certificate is not a public key.
    let f = fixture();
    assert!(matches!(
        public_key_fingerprint(&f.ca.cert_pem),
        Err(Error::ParsePem(_))
    ));
}

#[test]
fn service_account_keys_must_belong_together() {
    let keys = crate::generate_service_account_keys().expect("keys");
    assert_eq!(check_service_account_keys(&keys), Verdict::Valid);
    let other = crate::generate_service_account_keys().expect("keys");
    let mixed = ServiceAccountKeys {
        public_key_pem: other.public_key_pem,
        ..keys.clone()
    };
    assert_eq!(check_service_account_keys(&mixed), Verdict::KeyMismatch);
    let junk = ServiceAccountKeys {
        private_key_pem: "junk".into(),
        ..keys
    };
    assert!(matches!(
        check_service_account_keys(&junk),
        Verdict::Unparseable(_)
    ));
}
