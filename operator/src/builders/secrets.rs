//! The Secrets that hold a control plane's PKI, the Secret of each item the PKI plan lists
//! (`pki_plan.rs`), and how pods mount them. Kubeconfig Secrets are in `kubeconfig.rs`.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nestplane_pki::{CaRole, KubeconfigRole, LeafRole};
use serde_json::{Value, json};

use super::{BuildError, meta, name, object_meta};
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
    /// The tunnel server's kubeconfig (its TokenReviews of agents).
    TunnelServerKubeconfig,
    /// The key that encrypts Secrets at rest in etcd, inside the API server's
    /// `EncryptionConfiguration`.
    Encryption,
}

impl SecretRole {
    /// Every role, in declaration order.
    pub const ALL: [SecretRole; 15] = [
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
        SecretRole::TunnelServerKubeconfig,
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
            SecretRole::TunnelServerKubeconfig => "tunnel-server-kubeconfig",
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

/// The Secret that holds each CA.
impl From<CaRole> for SecretRole {
    fn from(role: CaRole) -> Self {
        match role {
            CaRole::Cluster => SecretRole::Ca,
            CaRole::Etcd => SecretRole::EtcdCa,
            CaRole::FrontProxy => SecretRole::FrontProxyCa,
        }
    }
}

/// The Secret that holds each leaf certificate.
impl From<LeafRole> for SecretRole {
    fn from(role: LeafRole) -> Self {
        match role {
            LeafRole::ApiServer => SecretRole::ApiServer,
            LeafRole::ApiServerKubeletClient => SecretRole::ApiServerKubeletClient,
            LeafRole::ApiServerEtcdClient => SecretRole::ApiServerEtcdClient,
            LeafRole::FrontProxyClient => SecretRole::FrontProxyClient,
            LeafRole::EtcdServer => SecretRole::EtcdServer,
            LeafRole::EtcdPeer => SecretRole::EtcdPeer,
        }
    }
}

/// The Secret that holds each kubeconfig.
impl From<KubeconfigRole> for SecretRole {
    fn from(role: KubeconfigRole) -> Self {
        match role {
            KubeconfigRole::Admin => SecretRole::AdminKubeconfig,
            KubeconfigRole::ControllerManager => SecretRole::ControllerManagerKubeconfig,
            KubeconfigRole::Scheduler => SecretRole::SchedulerKubeconfig,
            KubeconfigRole::TunnelServer => SecretRole::TunnelServerKubeconfig,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::builders::pki_plan;
    use crate::builders::testing::{hosted_cluster, inputs};

    /// Every planned CA, leaf and kubeconfig has a Secret of its own, and every certificate
    /// Secret holds something the plan lists (only the service-account and encryption keys
    /// are not certificates).
    #[test]
    fn every_planned_item_has_its_own_secret_and_every_secret_is_planned() {
        let plan =
            pki_plan::plan(&hosted_cluster(), &inputs().endpoint, inputs().apiserver_port).expect("plan");
        let planned: Vec<SecretRole> = CaRole::ALL
            .into_iter()
            .map(SecretRole::from)
            .chain(plan.leaves.iter().map(|l| SecretRole::from(l.role)))
            .chain(plan.kubeconfigs.iter().map(|k| SecretRole::from(k.role)))
            .collect();
        let distinct: BTreeSet<SecretRole> = planned.iter().copied().collect();
        assert_eq!(distinct.len(), planned.len(), "{planned:?}");
        let unplanned: Vec<SecretRole> = SecretRole::ALL
            .into_iter()
            .filter(|role| !distinct.contains(role))
            .collect();
        assert_eq!(unplanned, [SecretRole::ServiceAccount, SecretRole::Encryption]);
    }
}
