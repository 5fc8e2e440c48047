//! What a stock `kubeadm join` reads from the hosted cluster, named as kubeadm v1.35 names it
//! (`cmd/kubeadm/app/constants`, `phases/bootstraptoken`, `phases/uploadconfig`,
//! `phases/kubelet`): there is no `kubeadm init` to create it. See the design note
//! `kubeadm-join.md`.
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::{Value, json};

use super::{HostedInput, HostedObject, hosted_meta, hosted_object};
use crate::builders::{BuildError, Endpoint};

pub const KUBE_SYSTEM: &str = "kube-system";
pub const KUBE_PUBLIC: &str = "kube-public";
/// The group kubeadm's bootstrap tokens authenticate in (`auth-extra-groups`).
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
pub const NODES_GROUP: &str = "system:nodes";

pub const CLUSTER_INFO: &str = "cluster-info";
/// The key of `cluster-info` that holds the kubeconfig; the bootstrap signer adds
/// `jws-kubeconfig-<token id>` keys beside it, which nestplane leaves to it.
pub const CLUSTER_INFO_KUBECONFIG_KEY: &str = "kubeconfig";
pub const KUBEADM_CONFIG: &str = "kubeadm-config";
pub const CLUSTER_CONFIGURATION_KEY: &str = "ClusterConfiguration";
pub const KUBELET_CONFIG: &str = "kubelet-config";
pub const KUBELET_CONFIG_KEY: &str = "kubelet";

const CLUSTER_INFO_ROLE: &str = "kubeadm:bootstrap-signer-clusterinfo";
const GET_NODES: &str = "kubeadm:get-nodes";
const KUBELET_BOOTSTRAP: &str = "kubeadm:kubelet-bootstrap";
const AUTOAPPROVE_BOOTSTRAP: &str = "kubeadm:node-autoapprove-bootstrap";
const AUTOAPPROVE_ROTATION: &str = "kubeadm:node-autoapprove-certificate-rotation";
const KUBEADM_CONFIG_ROLE: &str = "kubeadm:nodes-kubeadm-config";
const KUBELET_CONFIG_ROLE: &str = "kubeadm:kubelet-config";
/// Not a kubeadm name: kubeadm's apiserver-kubelet-client is in `kubeadm:cluster-admins`; ours
/// is bound to no more than the kubelet API needs.
const KUBELET_API_ADMIN_BINDING: &str = "nestplane:apiserver-kubelet-api-admin";

/// Where kubeadm puts the cluster CA on a node; the kubelet checks client certificates with it.
const CERTIFICATES_DIR: &str = "/etc/kubernetes/pki";

pub fn objects(input: &HostedInput) -> Result<Vec<HostedObject>, BuildError> {
    let mut objects = vec![cluster_info(input)?];
    objects.extend(config_map_reader(
        KUBE_PUBLIC,
        CLUSTER_INFO_ROLE,
        CLUSTER_INFO,
        &[json!({ "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "system:anonymous" })],
    )?);
    objects.push(hosted_object::<ClusterRole>(
        "ClusterRole kubeadm:get-nodes",
        json!({
            "metadata": hosted_meta(GET_NODES, None),
            "rules": [{ "apiGroups": [""], "resources": ["nodes"], "verbs": ["get"] }],
        }),
    )?);
    for (name, role, group) in [
        (GET_NODES, GET_NODES, BOOTSTRAPPERS_GROUP),
        (KUBELET_BOOTSTRAP, "system:node-bootstrapper", BOOTSTRAPPERS_GROUP),
        (
            AUTOAPPROVE_BOOTSTRAP,
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            BOOTSTRAPPERS_GROUP,
        ),
        (
            AUTOAPPROVE_ROTATION,
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            NODES_GROUP,
        ),
    ] {
        objects.push(cluster_role_binding(name, role, &[group_subject(group)])?);
    }
    objects.push(cluster_role_binding(
        KUBELET_API_ADMIN_BINDING,
        "system:kubelet-api-admin",
        &[json!({ "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": input.apiserver_kubelet_client_user })],
    )?);
    let readers = [group_subject(BOOTSTRAPPERS_GROUP), group_subject(NODES_GROUP)];
    objects.push(config_map(
        KUBE_SYSTEM,
        KUBEADM_CONFIG,
        &[(
            CLUSTER_CONFIGURATION_KEY,
            yaml("ClusterConfiguration", &cluster_configuration(input))?,
        )],
    )?);
    objects.extend(config_map_reader(
        KUBE_SYSTEM,
        KUBEADM_CONFIG_ROLE,
        KUBEADM_CONFIG,
        &readers,
    )?);
    objects.push(config_map(
        KUBE_SYSTEM,
        KUBELET_CONFIG,
        &[(
            KUBELET_CONFIG_KEY,
            yaml("KubeletConfiguration", &kubelet_configuration(input))?,
        )],
    )?);
    objects.extend(config_map_reader(
        KUBE_SYSTEM,
        KUBELET_CONFIG_ROLE,
        KUBELET_CONFIG,
        &readers,
    )?);
    Ok(objects)
}

/// `kube-public/cluster-info`: the cluster only (server and CA), which discovery checks against
/// the CA hash and the bootstrap signer's signature.
fn cluster_info(input: &HostedInput) -> Result<HostedObject, BuildError> {
    let kubeconfig = nestplane_pki::cluster_info_kubeconfig(&input.endpoint.url(), &input.ca_pem);
    config_map(
        KUBE_PUBLIC,
        CLUSTER_INFO,
        &[(CLUSTER_INFO_KUBECONFIG_KEY, kubeconfig)],
    )
}

/// kubeadm's ClusterConfiguration as `kubeadm init` uploads it: what `kubeadm join` reads for
/// the networking, the image repository and where certificates live on the node.
fn cluster_configuration(input: &HostedInput) -> Value {
    json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "clusterName": input.cluster_name,
        "kubernetesVersion": input.version,
        "controlPlaneEndpoint": host_port(&input.endpoint),
        "certificatesDir": CERTIFICATES_DIR,
        "imageRepository": input.image_registry,
        // The cluster's keys are ECDSA P-256 (see the pki crate).
        "encryptionAlgorithm": "ECDSA-P256",
        "networking": {
            "serviceSubnet": input.service_cidr,
            "podSubnet": input.pod_cidr,
            "dnsDomain": input.dns_domain,
        },
    })
}

/// The kubelet configuration every node starts with: kubeadm's defaults (webhook authn/authz,
/// the cluster CA for client certificates, systemd cgroups, rotated client certificates), plus
/// serving certificates signed through the hosted cluster's CSR API.
fn kubelet_configuration(input: &HostedInput) -> Value {
    json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": { "enabled": false },
            "webhook": { "enabled": true },
            "x509": { "clientCAFile": format!("{CERTIFICATES_DIR}/ca.crt") },
        },
        "authorization": { "mode": "Webhook" },
        "cgroupDriver": "systemd",
        "clusterDNS": [input.dns_service_ip],
        "clusterDomain": input.dns_domain,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "rotateCertificates": true,
        "serverTLSBootstrap": true,
        "staticPodPath": "/etc/kubernetes/manifests",
    })
}

/// The hosted `kube-dns` Service's address: the 10th of the Service range, as kubeadm picks it.
pub fn dns_service_ip(service_cidr: &str) -> Result<String, BuildError> {
    let invalid = |message: &str| BuildError::Invalid {
        what: "DNS Service address",
        message: format!("{message}: serviceCIDR {service_cidr:?}"),
    };
    let (base, prefix) = service_cidr
        .split_once('/')
        .ok_or_else(|| invalid("not a CIDR"))?;
    let base: std::net::Ipv4Addr = base.parse().map_err(|_| invalid("not an IPv4 CIDR"))?;
    let prefix: u32 = prefix.parse().map_err(|_| invalid("no prefix length"))?;
    let size = 1u64 << (32 - prefix.min(32));
    if size <= 10 {
        return Err(invalid("fewer than 11 addresses"));
    }
    Ok(std::net::Ipv4Addr::from(u32::from(base).wrapping_add(10)).to_string())
}

/// `host:port`, an IPv6 host in brackets.
fn host_port(endpoint: &Endpoint) -> String {
    if endpoint.host.contains(':') {
        format!("[{}]:{}", endpoint.host, endpoint.port)
    } else {
        format!("{}:{}", endpoint.host, endpoint.port)
    }
}

pub(crate) fn yaml(what: &'static str, value: &Value) -> Result<String, BuildError> {
    serde_yaml::to_string(value).map_err(|e| BuildError::Invalid {
        what,
        message: e.to_string(),
    })
}

pub(crate) fn config_map(
    namespace: &str,
    name: &str,
    data: &[(&str, String)],
) -> Result<HostedObject, BuildError> {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(key, value)| (key.to_string(), value.clone().into()))
        .collect();
    hosted_object::<ConfigMap>(
        "ConfigMap",
        json!({ "metadata": hosted_meta(name, Some(namespace)), "data": data }),
    )
}

pub(crate) fn group_subject(group: &str) -> Value {
    json!({ "kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group })
}

pub(crate) fn cluster_role_binding(
    name: &str,
    cluster_role: &str,
    subjects: &[Value],
) -> Result<HostedObject, BuildError> {
    hosted_object::<ClusterRoleBinding>(
        "ClusterRoleBinding",
        json!({
            "metadata": hosted_meta(name, None),
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role },
            "subjects": subjects,
        }),
    )
}

/// A Role allowing `get` on one ConfigMap, and its RoleBinding (same name) to `subjects`.
pub(crate) fn config_map_reader(
    namespace: &str,
    name: &str,
    config_map: &str,
    subjects: &[Value],
) -> Result<[HostedObject; 2], BuildError> {
    let role = hosted_object::<Role>(
        "Role",
        json!({
            "metadata": hosted_meta(name, Some(namespace)),
            "rules": [{
                "apiGroups": [""], "resources": ["configmaps"],
                "resourceNames": [config_map], "verbs": ["get"],
            }],
        }),
    )?;
    let binding = hosted_object::<RoleBinding>(
        "RoleBinding",
        json!({
            "metadata": hosted_meta(name, Some(namespace)),
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
            "subjects": subjects,
        }),
    )?;
    Ok([role, binding])
}

#[cfg(test)]
mod tests;
