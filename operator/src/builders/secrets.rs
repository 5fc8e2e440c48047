//! The Secrets that hold a control plane's PKI and kubeconfigs, and how pods mount them.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use super::{BuildError, Component, labels, name, namespace, owner_reference, typed};
use crate::api::HostedCluster;

pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CERT: &str = "ca.crt";
pub const SA_PRIVATE_KEY: &str = "sa.key";
pub const SA_PUBLIC_KEY: &str = "sa.pub";
pub const KUBECONFIG_KEY: &str = "value";
/// Annotation on a kubeconfig Secret: hash of the CA it embeds, so a new CA rebuilds it.
pub const CA_HASH_ANNOTATION: &str = "nestplane.io/ca-hash";
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
}

impl SecretRole {
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
        }
    }

    pub fn secret_name(self, cluster: &str) -> String {
        format!("{cluster}-{}", self.suffix())
    }
}

/// The Secrets each component mounts: their contents make up its inputs hash.
pub fn mounted_by(component: Component) -> &'static [SecretRole] {
    use SecretRole::*;
    match component {
        Component::Etcd => &[EtcdCa, EtcdServer, EtcdPeer],
        Component::KubeApiserver => &[
            Ca,
            EtcdCa,
            FrontProxyCa,
            ServiceAccount,
            ApiServer,
            ApiServerKubeletClient,
            ApiServerEtcdClient,
            FrontProxyClient,
        ],
        Component::KubeControllerManager => &[Ca, FrontProxyCa, ServiceAccount, ControllerManagerKubeconfig],
        Component::KubeScheduler => &[SchedulerKubeconfig],
    }
}

fn secret(
    hc: &HostedCluster,
    role: SecretRole,
    type_: &str,
    data: BTreeMap<String, ByteString>,
    annotations: BTreeMap<String, String>,
) -> Result<Secret, BuildError> {
    typed(
        "secret",
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": role.secret_name(&name(hc)), "namespace": namespace(hc),
                "labels": labels(hc, None), "annotations": annotations,
                "ownerReferences": [owner_reference(hc)]
            },
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

/// A kubeconfig Secret, annotated with the hash of the CA it embeds.
pub fn kubeconfig_secret(
    hc: &HostedCluster,
    role: SecretRole,
    kubeconfig: &str,
    ca_hash: &str,
) -> Result<Secret, BuildError> {
    let data = BTreeMap::from([(
        KUBECONFIG_KEY.to_string(),
        ByteString(kubeconfig.as_bytes().to_vec()),
    )]);
    let annotations = BTreeMap::from([(CA_HASH_ANNOTATION.to_string(), ca_hash.to_string())]);
    secret(hc, role, "Opaque", data, annotations)
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
