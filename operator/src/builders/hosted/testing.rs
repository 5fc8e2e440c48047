//! A sample HostedInput for the hosted builders' tests and golden files.
use super::HostedInput;
use crate::api::Cni;
use crate::builders::Endpoint;

/// A self-signed ECDSA P-256 CA made by openssl (the pki crate's `ca-ec.crt` fixture).
pub const CA_PEM: &str = include_str!("../testdata/hosted-ca.crt");

pub fn hosted_input() -> HostedInput {
    HostedInput {
        cluster_name: "demo".into(),
        version: "v1.35.4".into(),
        endpoint: Endpoint {
            host: "192.0.2.2".into(),
            port: 31443,
        },
        ca_pem: CA_PEM.into(),
        service_cidr: "10.96.0.0/12".into(),
        pod_cidr: "10.244.0.0/16".into(),
        dns_domain: "cluster.local".into(),
        dns_service_ip: "10.96.0.10".into(),
        cni: Cni::Flannel,
        image_registry: "registry.k8s.io".into(),
        apiserver_kubelet_client_user: "kube-apiserver-kubelet-client".into(),
        tunnel: None,
    }
}

/// The objects as YAML documents, for golden files.
pub fn documents(objects: &[super::HostedObject]) -> Vec<&kube::api::DynamicObject> {
    objects.iter().map(|o| &o.object).collect()
}
