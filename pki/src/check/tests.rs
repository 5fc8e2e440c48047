use std::net::{IpAddr, Ipv4Addr};

use time::macros::datetime;
use x509_parser::extensions::ParsedExtension;

use super::*;
use crate::profiles::{self, ApiServerSans};
use crate::{generate_ca, issue_leaf};

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
const YEAR: Duration = Duration::days(365);

fn sans() -> ApiServerSans {
    ApiServerSans {
        service_ip: IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1)),
        dns_domain: "cluster.local".into(),
        service_names: vec!["demo-apiserver".into(), "demo-apiserver.team-a.svc".into()],
        endpoint_hosts: vec!["192.0.2.2".into()],
        extra_sans: vec!["api.example.com".into()],
    }
}

fn with_cert<T>(pem: &str, f: impl FnOnce(&X509Certificate) -> T) -> T {
    let pem = parse_pem(pem).expect("pem");
    let cert = parse_cert(&pem).expect("certificate");
    f(&cert)
}

#[test]
fn ca_is_a_self_signed_ca_that_can_sign() {
    let ca = generate_ca("kubernetes", NOW, Duration::days(3650)).expect("ca");
    with_cert(&ca.cert_pem, |cert| {
        assert!(cert.is_ca());
        assert_eq!(cert.subject().to_string(), "CN=kubernetes");
        assert!(cert.verify_signature(None).is_ok(), "self-signed");
        let bc = cert.basic_constraints().expect("ext").expect("basic constraints");
        assert!(bc.critical && bc.value.ca);
        let ku = cert.key_usage().expect("ext").expect("key usage").value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
        assert_eq!(
            cert.validity().not_after.to_datetime(),
            NOW + Duration::days(3650)
        );
        assert!(
            cert.validity().not_before.to_datetime() < NOW,
            "backdated for clock skew"
        );
    });
    assert_eq!(check_ca(&ca, NOW), Verdict::Valid);
    assert_eq!(check_ca(&ca, NOW + Duration::days(3651)), Verdict::Expired);
}

#[test]
fn apiserver_certificate_chains_to_ca_with_every_name() {
    let ca = generate_ca("kubernetes", NOW, YEAR * 10).expect("ca");
    let spec = profiles::apiserver(&sans());
    let leaf = issue_leaf(&ca, &spec, NOW, YEAR).expect("leaf");
    with_cert(&ca.cert_pem, |ca_cert| {
        with_cert(&leaf.cert_pem, |cert| {
            assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());
            assert_eq!(cert.issuer(), ca_cert.subject());
            assert!(!cert.is_ca());
            let eku = cert.extended_key_usage().expect("ext").expect("eku").value;
            assert!(eku.server_auth && !eku.client_auth);
            let (dns, ips) = super::sans(cert);
            for name in [
                "kubernetes",
                "kubernetes.default.svc.cluster.local",
                "demo-apiserver.team-a.svc",
                "api.example.com",
                "localhost",
            ] {
                assert!(dns.contains(name), "missing DNS SAN {name}: {dns:?}");
            }
            for ip in ["10.96.0.1", "192.0.2.2", "127.0.0.1"] {
                assert!(
                    ips.contains(&ip.parse::<IpAddr>().expect("ip")),
                    "missing IP SAN {ip}"
                );
            }
            let has_aki = cert
                .extensions()
                .iter()
                .any(|e| matches!(e.parsed_extension(), ParsedExtension::AuthorityKeyIdentifier(_)));
            assert!(has_aki, "authority key identifier lets verifiers pick the CA");
        })
    });
    assert_eq!(
        check(&leaf, &ca.cert_pem, &spec, NOW, Duration::days(30)),
        Verdict::Valid
    );
}

#[test]
fn client_profiles_carry_kubernetes_identities() {
    let ca = generate_ca("kubernetes", NOW, YEAR).expect("ca");
    for (spec, subject) in [
        (profiles::admin(), "O=system:masters, CN=kubernetes-admin"),
        (
            profiles::controller_manager(),
            "CN=system:kube-controller-manager",
        ),
        (profiles::scheduler(), "CN=system:kube-scheduler"),
        (
            profiles::apiserver_kubelet_client(),
            "O=kubeadm:cluster-admins, CN=kube-apiserver-kubelet-client",
        ),
    ] {
        let leaf = issue_leaf(&ca, &spec, NOW, YEAR).expect("leaf");
        with_cert(&leaf.cert_pem, |cert| {
            assert_eq!(cert.subject().to_string(), subject);
            let eku = cert.extended_key_usage().expect("ext").expect("eku").value;
            assert!(eku.client_auth && !eku.server_auth, "{subject}");
        });
    }
}

#[test]
fn etcd_certificates_serve_and_authenticate() {
    let ca = generate_ca("etcd-ca", NOW, YEAR).expect("ca");
    let names = vec!["demo-etcd-0.demo-etcd".to_string()];
    for spec in [profiles::etcd_server(&names), profiles::etcd_peer(&names)] {
        let leaf = issue_leaf(&ca, &spec, NOW, YEAR).expect("leaf");
        with_cert(&leaf.cert_pem, |cert| {
            let eku = cert.extended_key_usage().expect("ext").expect("eku").value;
            assert!(eku.client_auth && eku.server_auth);
            let (dns, ips) = super::sans(cert);
            assert!(dns.contains("demo-etcd-0.demo-etcd") && dns.contains("localhost"));
            assert!(ips.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        });
    }
}

#[test]
fn check_reports_each_reason_to_reissue() {
    let ca = generate_ca("kubernetes", NOW, YEAR * 10).expect("ca");
    let other_ca = generate_ca("kubernetes", NOW, YEAR * 10).expect("ca");
    let spec = profiles::apiserver(&sans());
    let leaf = issue_leaf(&ca, &spec, NOW, YEAR).expect("leaf");
    let renew = Duration::days(30);

    assert_eq!(
        check(&leaf, &ca.cert_pem, &spec, NOW + YEAR - Duration::days(10), renew),
        Verdict::ExpiresSoon
    );
    assert_eq!(
        check(&leaf, &ca.cert_pem, &spec, NOW + YEAR + Duration::days(1), renew),
        Verdict::Expired
    );
    assert_eq!(
        check(&leaf, &other_ca.cert_pem, &spec, NOW, renew),
        Verdict::ChainBroken
    );

    let other_leaf = issue_leaf(&ca, &spec, NOW, YEAR).expect("leaf");
    let swapped = CertKeyPair {
        cert_pem: leaf.cert_pem.clone(),
        key_pem: other_leaf.key_pem,
    };
    assert_eq!(
        check(&swapped, &ca.cert_pem, &spec, NOW, renew),
        Verdict::KeyMismatch
    );

    let mut more_sans = sans();
    more_sans.extra_sans.push("new.example.com".into());
    assert_eq!(
        check(&leaf, &ca.cert_pem, &profiles::apiserver(&more_sans), NOW, renew),
        Verdict::SansChanged
    );

    let admin = issue_leaf(&ca, &profiles::admin(), NOW, YEAR).expect("leaf");
    assert_eq!(
        check(&admin, &ca.cert_pem, &profiles::scheduler(), NOW, renew),
        Verdict::SubjectChanged
    );

    let garbage = CertKeyPair {
        cert_pem: "not a certificate".into(),
        key_pem: String::new(),
    };
    assert!(matches!(
        check(&garbage, &ca.cert_pem, &spec, NOW, renew),
        Verdict::Unparseable(_)
    ));
    assert!(matches!(check_ca(&garbage, NOW), Verdict::Unparseable(_)));
}

#[test]
fn not_after_reads_the_certificate() {
    let ca = generate_ca("kubernetes", NOW, YEAR).expect("ca");
    assert_eq!(not_after(&ca.cert_pem).expect("parse"), NOW + YEAR);
}

#[test]
fn service_account_keys_are_a_pair() {
    let keys = crate::generate_service_account_keys().expect("keys");
    let private = KeyPair::from_pem(&keys.private_key_pem).expect("private key parses");
    assert_eq!(private.public_key_pem(), keys.public_key_pem);
    assert!(keys.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
}

/// The discovery hash must equal what `openssl` computes over the same certificate,
/// the recipe kubeadm's documentation gives.
#[test]
fn ca_cert_hash_matches_openssl() {
    let ca = generate_ca("kubernetes", NOW, YEAR).expect("ca");
    let ours = ca_cert_hash(&ca.cert_pem).expect("hash");
    assert!(ours.starts_with("sha256:") && ours.len() == 7 + 64);
    let Ok(openssl) = std::process::Command::new("sh")
        .arg("-c")
        .arg("openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        return;
    };
    use std::io::Write;
    let mut child = openssl;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(ca.cert_pem.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("openssl");
    let theirs = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if theirs.len() == 64 {
        assert_eq!(ours, format!("sha256:{theirs}"));
    }
}
