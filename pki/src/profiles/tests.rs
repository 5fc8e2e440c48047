use std::collections::BTreeSet;
use std::net::IpAddr;

use super::*;
use crate::test_support::{NOW, YEAR, dns_and_ip_sans, ips, pem, strings};
use crate::{CertKeyPair, generate_ca, issue_leaf};

/// What a certificate issued for `spec` says about itself, read back from its DER.
struct Issued {
    subject: String,
    server_auth: bool,
    client_auth: bool,
    dns: BTreeSet<String>,
    ips: BTreeSet<IpAddr>,
}

fn issue(ca: &CertKeyPair, spec: &LeafSpec) -> Issued {
    let leaf = issue_leaf(ca, spec, NOW, YEAR).expect("leaf");
    let pem = pem(&leaf.cert_pem);
    let cert = pem.parse_x509().expect("cert");
    let eku = cert.extended_key_usage().expect("ext").expect("EKU").value;
    let (dns, ips) = match cert.subject_alternative_name().expect("ext") {
        Some(_) => dns_and_ip_sans(&cert),
        None => Default::default(),
    };
    Issued {
        subject: cert.subject().to_string(),
        server_auth: eku.server_auth,
        client_auth: eku.client_auth,
        dns,
        ips,
    }
}

fn sans() -> ApiServerSans {
    ApiServerSans {
        service_ip: "10.96.0.1".parse().expect("ip"),
        dns_domain: "cluster.local".into(),
        service_names: vec![
            "demo-apiserver".into(),
            "demo-apiserver.team-a".into(),
            "demo-apiserver.team-a.svc".into(),
            "demo-apiserver.team-a.svc.cluster.local".into(),
        ],
        endpoint_hosts: vec!["192.0.2.2".into(), "api.demo.example".into()],
        extra_sans: vec![
            "api.example.com".into(),
            "198.51.100.9".into(),
            "192.0.2.2".into(),
        ],
    }
}

#[test]
fn apiserver_serves_every_name_clients_use() {
    let ca = generate_ca(CA_COMMON_NAME, NOW, YEAR).expect("ca");
    let issued = issue(&ca, &apiserver(&sans()));
    assert_eq!(issued.subject, "CN=kube-apiserver");
    assert!(issued.server_auth && !issued.client_auth);
    assert_eq!(
        issued.dns,
        strings(&[
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
            "demo-apiserver",
            "demo-apiserver.team-a",
            "demo-apiserver.team-a.svc",
            "demo-apiserver.team-a.svc.cluster.local",
            "api.demo.example",
            "api.example.com",
        ])
    );
    assert_eq!(
        issued.ips,
        ips(&["10.96.0.1", "127.0.0.1", "192.0.2.2", "198.51.100.9"])
    );
}

#[test]
fn apiserver_takes_an_ipv6_service_ip_and_another_domain() {
    let ca = generate_ca(CA_COMMON_NAME, NOW, YEAR).expect("ca");
    let sans = ApiServerSans {
        service_ip: "fd00:10:96::1".parse().expect("ip"),
        dns_domain: "tenant.internal".into(),
        service_names: Vec::new(),
        endpoint_hosts: vec!["2001:db8::2".into()],
        extra_sans: Vec::new(),
    };
    let issued = issue(&ca, &apiserver(&sans));
    assert!(issued.dns.contains("kubernetes.default.svc.tenant.internal"));
    assert!(!issued.dns.contains("kubernetes.default.svc.cluster.local"));
    assert_eq!(issued.ips, ips(&["fd00:10:96::1", "127.0.0.1", "2001:db8::2"]));
}

#[test]
fn etcd_member_certificates_serve_and_authenticate_on_every_member_name() {
    let ca = generate_ca(ETCD_CA_COMMON_NAME, NOW, YEAR).expect("ca");
    let members = vec![
        "demo-etcd-0.demo-etcd.team-a.svc".to_string(),
        "demo-etcd-1.demo-etcd.team-a.svc".to_string(),
        "demo-etcd.team-a.svc".to_string(),
    ];
    for (spec, cn) in [
        (etcd_server(&members), "kube-etcd"),
        (etcd_peer(&members), "kube-etcd-peer"),
    ] {
        let issued = issue(&ca, &spec);
        assert_eq!(issued.subject, format!("CN={cn}"));
        assert!(issued.server_auth && issued.client_auth, "{cn}");
        let mut dns = strings(&["localhost"]);
        dns.extend(members.iter().cloned());
        assert_eq!(issued.dns, dns, "{cn}");
        assert_eq!(issued.ips, ips(&["127.0.0.1", "::1"]), "{cn}");
    }
}

/// Subjects are kubeadm v1.35's constants, except the admin (see [`admin`]).
#[test]
fn client_profiles_carry_kubernetes_identities() {
    let ca = generate_ca(CA_COMMON_NAME, NOW, YEAR).expect("ca");
    for (spec, subject) in [
        (admin(), "O=system:masters, CN=kubernetes-admin"),
        (controller_manager(), "CN=system:kube-controller-manager"),
        (scheduler(), "CN=system:kube-scheduler"),
        (
            apiserver_kubelet_client(),
            "O=kubeadm:cluster-admins, CN=kube-apiserver-kubelet-client",
        ),
        (apiserver_etcd_client(), "CN=kube-apiserver-etcd-client"),
        (front_proxy_client(), "CN=front-proxy-client"),
    ] {
        let issued = issue(&ca, &spec);
        assert_eq!(issued.subject, subject);
        assert!(issued.client_auth && !issued.server_auth, "{subject}");
        assert!(
            issued.dns.is_empty() && issued.ips.is_empty(),
            "{subject} has no SANs"
        );
    }
}
