//! Decisions on CSRs generated as a kubelet generates them, and on ones that ask for more.
use k8s_openapi::ByteString;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use serde_json::json;

use super::*;

const NODE: &str = "pool-abcde";
const SERVER_ID: &str = "0f3c7e8a-5b7d-4a8e-9d61-2b1f4c6a9e10";

fn identity() -> ServingIdentity {
    ServingIdentity {
        node_name: NODE.into(),
        provider_id: format!("openstack:///{SERVER_ID}"),
        addresses: vec![
            "172.31.250.17".parse().expect("ip"),
            "fd00::17".parse().expect("ip"),
        ],
    }
}

fn provider_id() -> Option<String> {
    Some(format!("openstack:///{SERVER_ID}"))
}

/// The PEM request of a key for `subject` and `sans`, as the kubelet's certificate manager makes it.
fn request(subject: &[(DnType, &str)], sans: &[&str]) -> String {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for (kind, value) in subject {
        params.distinguished_name.push(kind.clone(), *value);
    }
    params.subject_alt_names = sans
        .iter()
        .map(|san| match san.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if san.contains('@') => SanType::Rfc822Name((*san).try_into().expect("mail")),
            Err(_) => SanType::DnsName((*san).try_into().expect("dns")),
        })
        .collect();
    params.serialize_request(&key).expect("csr").pem().expect("pem")
}

fn kubelet_subject(node: &str) -> Vec<(DnType, String)> {
    vec![
        (DnType::OrganizationName, NODES_GROUP.to_string()),
        (DnType::CommonName, format!("system:node:{node}")),
    ]
}

fn csr_object(pem: String, username: &str, groups: &[&str], usages: &[&str]) -> CertificateSigningRequest {
    serde_json::from_value(json!({
        "metadata": { "name": "csr-7xk2p" },
        "spec": {
            "request": ByteString(pem.into_bytes()),
            "signerName": KUBELET_SERVING_SIGNER,
            "username": username,
            "groups": groups,
            "usages": usages,
        },
    }))
    .expect("csr")
}

/// What the kubelet of `NODE` posts: its name and the server's IPv4 address, ECDSA usages.
fn kubelet_csr() -> CertificateSigningRequest {
    with_sans(&[NODE, "172.31.250.17"])
}

fn with_sans(sans: &[&str]) -> CertificateSigningRequest {
    let subject = kubelet_subject(NODE);
    let subject: Vec<(DnType, &str)> = subject.iter().map(|(k, v)| (k.clone(), v.as_str())).collect();
    csr_object(
        request(&subject, sans),
        &format!("system:node:{NODE}"),
        &["system:nodes", "system:authenticated"],
        &["digital signature", "server auth"],
    )
}

fn pending_reason(csr: &CertificateSigningRequest, provider: Option<&str>) -> String {
    match decide(csr, &identity(), provider) {
        Verdict::LeavePending(reason) => reason,
        other => panic!("expected the CSR left pending, got {other:?}"),
    }
}

#[test]
fn approves_what_the_kubelet_of_the_worker_asks_for() {
    assert_eq!(
        decide(&kubelet_csr(), &identity(), provider_id().as_deref()),
        Verdict::Approve
    );
    let dual_stack = with_sans(&[NODE, "172.31.250.17", "fd00::17"]);
    assert_eq!(
        decide(&dual_stack, &identity(), provider_id().as_deref()),
        Verdict::Approve
    );
    let mut rsa = kubelet_csr();
    rsa.spec.usages = Some(vec![
        "key encipherment".into(),
        "digital signature".into(),
        "server auth".into(),
    ]);
    assert_eq!(
        decide(&rsa, &identity(), provider_id().as_deref()),
        Verdict::Approve
    );
}

#[test]
fn ignores_what_is_not_a_pending_serving_csr_of_this_node() {
    let provider = provider_id();
    let mut other_signer = kubelet_csr();
    other_signer.spec.signer_name = "kubernetes.io/kube-apiserver-client-kubelet".into();
    assert_eq!(
        decide(&other_signer, &identity(), provider.as_deref()),
        Verdict::Ignore
    );

    let mut other_node = kubelet_csr();
    other_node.spec.username = Some("system:node:pool-zzzzz".into());
    assert_eq!(
        decide(&other_node, &identity(), provider.as_deref()),
        Verdict::Ignore
    );

    for decided in ["Approved", "Denied", "Failed"] {
        let mut csr = kubelet_csr();
        csr.status = Some(
            serde_json::from_value(json!({
                "conditions": [{ "type": decided, "status": "True" }]
            }))
            .expect("status"),
        );
        assert_eq!(
            decide(&csr, &identity(), provider.as_deref()),
            Verdict::Ignore,
            "{decided}"
        );
    }
}

#[test]
fn leaves_pending_a_csr_from_a_node_that_is_not_the_workers_server() {
    assert!(pending_reason(&kubelet_csr(), None).contains("not registered"));
    let reason = pending_reason(&kubelet_csr(), Some("openstack:///another-server"));
    assert!(reason.contains("provider ID"), "{reason}");

    let mut not_a_node = kubelet_csr();
    not_a_node.spec.groups = Some(vec!["system:authenticated".into()]);
    let reason = pending_reason(&not_a_node, provider_id().as_deref());
    assert!(reason.contains("system:nodes"), "{reason}");
}

#[test]
fn leaves_pending_names_the_worker_cannot_vouch_for() {
    let provider = provider_id();
    let cases = [
        (with_sans(&[NODE, "172.31.250.99"]), "172.31.250.99"),
        (
            with_sans(&[NODE, "kubernetes.default", "172.31.250.17"]),
            "kubernetes.default",
        ),
        (with_sans(&["pool-zzzzz", "172.31.250.17"]), "pool-zzzzz"),
        (with_sans(&[NODE, "root@pool-abcde"]), "e-mail"),
        (with_sans(&[]), "neither"),
    ];
    for (csr, named) in cases {
        let reason = pending_reason(&csr, provider.as_deref());
        assert!(reason.contains(named), "{named}: {reason}");
    }
}

#[test]
fn leaves_pending_a_subject_or_usages_a_kubelet_does_not_use() {
    let provider = provider_id();
    let username = format!("system:node:{NODE}");
    let usages = ["digital signature", "server auth"];
    let groups = ["system:nodes"];
    let another_cn = request(
        &[
            (DnType::CommonName, "system:node:pool-zzzzz"),
            (DnType::OrganizationName, NODES_GROUP),
        ],
        &[NODE],
    );
    let masters = request(
        &[
            (DnType::CommonName, username.as_str()),
            (DnType::OrganizationName, "system:masters"),
        ],
        &[NODE],
    );
    for pem in [another_cn, masters] {
        let reason = pending_reason(&csr_object(pem, &username, &groups, &usages), provider.as_deref());
        assert!(reason.contains("subject"), "{reason}");
    }

    let mut client_auth = kubelet_csr();
    client_auth.spec.usages = Some(vec![
        "digital signature".into(),
        "server auth".into(),
        "client auth".into(),
    ]);
    let reason = pending_reason(&client_auth, provider.as_deref());
    assert!(reason.contains("client auth"), "{reason}");

    let mut garbage = kubelet_csr();
    garbage.spec.request = ByteString(
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".to_vec(),
    );
    assert!(matches!(
        decide(&garbage, &identity(), provider.as_deref()),
        Verdict::LeavePending(_)
    ));
}
