//! The Secrets that hold a control plane's PKI, which leaves it needs, and how pods mount them.
//! Kubeconfig Secrets are in `kubeconfig.rs`.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nestplane_pki::{self as pki, LeafSpec};
use serde_json::{Value, json};

use super::{BuildError, Endpoint, etcd, kube_apiserver, meta, name, object_meta};
use crate::api::HostedCluster;

pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CERT: &str = "ca.crt";
pub const SA_PRIVATE_KEY: &str = "sa.key";
pub const SA_PUBLIC_KEY: &str = "sa.pub";
/// Annotation a user sets on a certificate Secret to have it reissued.
pub const ROTATE_ANNOTATION: &str = "nestplane.io/rotate";

/// Every Secret of a control plane, by role. Names are `<cluster>-<suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretRole {
    Ca,
    EtcdCa,
    FrontProxyCa,
    ServiceAccount,
    ApiServer,
    ApiServerKubeletClient,
    ApiServerEtcdClient,
    FrontProxyClient,
    EtcdServer,
    EtcdPeer,
    AdminKubeconfig,
    ControllerManagerKubeconfig,
    SchedulerKubeconfig,
    /// The key that encrypts Secrets at rest in etcd, inside the API server's
    /// `EncryptionConfiguration`.
    Encryption,
}

impl SecretRole {
    /// Every role, in declaration order.
    pub const ALL: [SecretRole; 14] = [
        SecretRole::Ca,
        SecretRole::EtcdCa,
        SecretRole::FrontProxyCa,
        SecretRole::ServiceAccount,
        SecretRole::ApiServer,
        SecretRole::ApiServerKubeletClient,
        SecretRole::ApiServerEtcdClient,
        SecretRole::FrontProxyClient,
        SecretRole::EtcdServer,
        SecretRole::EtcdPeer,
        SecretRole::AdminKubeconfig,
        SecretRole::ControllerManagerKubeconfig,
        SecretRole::SchedulerKubeconfig,
        SecretRole::Encryption,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            SecretRole::Ca => "ca",
            SecretRole::EtcdCa => "etcd-ca",
            SecretRole::FrontProxyCa => "front-proxy-ca",
            SecretRole::ServiceAccount => "sa",
            SecretRole::ApiServer => "apiserver",
            SecretRole::ApiServerKubeletClient => "apiserver-kubelet-client",
            SecretRole::ApiServerEtcdClient => "apiserver-etcd-client",
            SecretRole::FrontProxyClient => "front-proxy-client",
            SecretRole::EtcdServer => "etcd-server",
            SecretRole::EtcdPeer => "etcd-peer",
            SecretRole::AdminKubeconfig => "kubeconfig",
            SecretRole::ControllerManagerKubeconfig => "controller-manager-kubeconfig",
            SecretRole::SchedulerKubeconfig => "scheduler-kubeconfig",
            SecretRole::Encryption => "encryption",
        }
    }

    pub fn secret_name(self, cluster: &str) -> String {
        format!("{cluster}-{}", self.suffix())
    }
}

pub(crate) fn secret(
    hc: &HostedCluster,
    role: SecretRole,
    type_: &str,
    data: BTreeMap<String, ByteString>,
    annotations: BTreeMap<String, String>,
) -> Result<Secret, BuildError> {
    let metadata = object_meta(hc, role.secret_name(&name(hc)?), None)?;
    meta::object(
        "secret",
        ObjectMeta {
            annotations: Some(annotations),
            ..metadata
        },
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "type": type_,
            "data": data,
        }),
    )
}

/// A certificate and key, with the CA that issued it, as a `kubernetes.io/tls` Secret.
pub fn tls_secret(
    hc: &HostedCluster,
    role: SecretRole,
    pair: &nestplane_pki::CertKeyPair,
    ca_cert_pem: &str,
) -> Result<Secret, BuildError> {
    let data = BTreeMap::from([
        (
            TLS_CERT.to_string(),
            ByteString(pair.cert_pem.clone().into_bytes()),
        ),
        (TLS_KEY.to_string(), ByteString(pair.key_pem.clone().into_bytes())),
        (CA_CERT.to_string(), ByteString(ca_cert_pem.as_bytes().to_vec())),
    ]);
    secret(hc, role, "kubernetes.io/tls", data, BTreeMap::new())
}

pub fn service_account_secret(
    hc: &HostedCluster,
    keys: &nestplane_pki::ServiceAccountKeys,
) -> Result<Secret, BuildError> {
    let data = BTreeMap::from([
        (
            SA_PRIVATE_KEY.to_string(),
            ByteString(keys.private_key_pem.clone().into_bytes()),
        ),
        (
            SA_PUBLIC_KEY.to_string(),
            ByteString(keys.public_key_pem.clone().into_bytes()),
        ),
    ]);
    secret(hc, SecretRole::ServiceAccount, "Opaque", data, BTreeMap::new())
}

/// A projected-volume source mapping a Secret's keys to file names.
pub(crate) fn project(cluster: &str, role: SecretRole, items: &[(&str, &str)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(key, path)| json!({ "key": key, "path": path }))
        .collect();
    json!({ "secret": { "name": role.secret_name(cluster), "items": items } })
}

/// kubeadm's file names for a certificate pair under /etc/kubernetes/pki.
pub(crate) fn pair(cluster: &str, role: SecretRole, base: &str) -> Value {
    let cert = format!("{base}.crt");
    let key = format!("{base}.key");
    project(cluster, role, &[(TLS_CERT, &cert), (TLS_KEY, &key)])
}

/// A CA's certificate only (no key) under kubeadm's file name.
pub(crate) fn ca_cert(cluster: &str, role: SecretRole, base: &str) -> Value {
    let cert = format!("{base}.crt");
    project(cluster, role, &[(TLS_CERT, &cert)])
}

/// A leaf certificate of the control plane: its Secret, the CA that issues it, its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafPlan {
    pub role: SecretRole,
    pub issuer: SecretRole,
    pub spec: LeafSpec,
}

/// The CAs of a control plane with their common names (kubeadm's).
pub const CAS: [(SecretRole, &str); 3] = [
    (SecretRole::Ca, "kubernetes"),
    (SecretRole::EtcdCa, "etcd-ca"),
    (SecretRole::FrontProxyCa, "front-proxy-ca"),
];

/// The leaves of a control plane. The serving certificate names the observed endpoint, so it
/// is planned only once the endpoint is known.
pub fn leaf_plan(hc: &HostedCluster, endpoint: &Endpoint) -> Result<Vec<LeafPlan>, BuildError> {
    let sans = pki::ApiServerSans {
        service_ip: kube_apiserver::kubernetes_service_ip(hc)?,
        dns_domain: hc.spec.network.dns_domain.clone(),
        service_names: kube_apiserver::service_dns_names(hc)?,
        endpoint_hosts: vec![endpoint.host.clone()],
        extra_sans: hc.spec.api_server.extra_sans.clone(),
    };
    let members = etcd::member_dns_names(hc)?;
    let leaf = |role, issuer, spec| LeafPlan { role, issuer, spec };
    use SecretRole::*;
    Ok(vec![
        leaf(ApiServer, Ca, pki::profiles::apiserver(&sans)),
        leaf(
            ApiServerKubeletClient,
            Ca,
            pki::profiles::apiserver_kubelet_client(),
        ),
        leaf(
            ApiServerEtcdClient,
            EtcdCa,
            pki::profiles::apiserver_etcd_client(),
        ),
        leaf(
            FrontProxyClient,
            FrontProxyCa,
            pki::profiles::front_proxy_client(),
        ),
        leaf(EtcdServer, EtcdCa, pki::profiles::etcd_server(&members)),
        leaf(EtcdPeer, EtcdCa, pki::profiles::etcd_peer(&members)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::testing::{hosted_cluster, inputs};

    #[test]
    fn serving_certificate_names_the_endpoint_service_and_extra_sans() {
        let mut hc = hosted_cluster();
        hc.spec.api_server.extra_sans = vec!["api.example.org".into()];
        let plan = leaf_plan(&hc, &inputs().endpoint).expect("plan");
        let serving = &plan
            .iter()
            .find(|l| l.role == SecretRole::ApiServer)
            .expect("apiserver")
            .spec;
        let ips: Vec<String> = serving.ip_addresses.iter().map(|ip| ip.to_string()).collect();
        assert!(ips.contains(&"192.0.2.2".to_string()), "{ips:?}");
        assert!(ips.contains(&"10.96.0.1".to_string()), "{ips:?}");
        for name in [
            "demo-apiserver.team-a.svc",
            "api.example.org",
            "kubernetes.default.svc.cluster.local",
        ] {
            assert!(serving.dns_names.iter().any(|d| d == name), "{name} missing");
        }
    }

    #[test]
    fn etcd_leaves_come_from_the_etcd_ca() {
        let plan = leaf_plan(&hosted_cluster(), &inputs().endpoint).expect("plan");
        for leaf in plan {
            let etcd_leaf = matches!(
                leaf.role,
                SecretRole::EtcdServer | SecretRole::EtcdPeer | SecretRole::ApiServerEtcdClient
            );
            assert_eq!(etcd_leaf, leaf.issuer == SecretRole::EtcdCa, "{:?}", leaf.role);
        }
    }
}
