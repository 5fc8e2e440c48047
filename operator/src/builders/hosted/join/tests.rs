use std::collections::BTreeSet;

use base64::Engine as _;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use serde_json::Value;

use super::*;
use crate::builders::hosted::testing::{CA_PEM, documents, hosted_input};
use crate::builders::testing::assert_golden;

fn config_map(objects: &[HostedObject], namespace: &str, name: &str) -> ConfigMap {
    objects
        .iter()
        .find(|o| {
            o.resource.kind == "ConfigMap"
                && o.object.metadata.namespace.as_deref() == Some(namespace)
                && o.object.metadata.name.as_deref() == Some(name)
        })
        .unwrap_or_else(|| panic!("ConfigMap {namespace}/{name}"))
        .object
        .clone()
        .try_parse()
        .expect("ConfigMap")
}

fn data_yaml(config_map: &ConfigMap, key: &str) -> Value {
    let text = &config_map.data.as_ref().expect("data")[key];
    serde_yaml::from_str(text).expect("yaml")
}

#[test]
fn objects_match_golden() {
    let objects = objects(&hosted_input()).expect("build");
    assert_golden("hosted-join", &documents(&objects));
}

#[test]
fn kubeadm_finds_every_object_by_its_own_name() {
    let objects = objects(&hosted_input()).expect("build");
    let names: BTreeSet<(String, String)> = objects
        .iter()
        .map(|o| {
            let ns = o.object.metadata.namespace.clone().unwrap_or_default();
            (
                o.resource.kind.clone(),
                format!("{ns}/{}", o.object.metadata.name.clone().unwrap_or_default()),
            )
        })
        .collect();
    for (kind, name) in [
        ("ConfigMap", "kube-public/cluster-info"),
        ("Role", "kube-public/kubeadm:bootstrap-signer-clusterinfo"),
        ("RoleBinding", "kube-public/kubeadm:bootstrap-signer-clusterinfo"),
        ("ClusterRole", "/kubeadm:get-nodes"),
        ("ClusterRoleBinding", "/kubeadm:get-nodes"),
        ("ClusterRoleBinding", "/kubeadm:kubelet-bootstrap"),
        ("ClusterRoleBinding", "/kubeadm:node-autoapprove-bootstrap"),
        (
            "ClusterRoleBinding",
            "/kubeadm:node-autoapprove-certificate-rotation",
        ),
        ("ConfigMap", "kube-system/kubeadm-config"),
        ("Role", "kube-system/kubeadm:nodes-kubeadm-config"),
        ("RoleBinding", "kube-system/kubeadm:nodes-kubeadm-config"),
        ("ConfigMap", "kube-system/kubelet-config"),
        ("Role", "kube-system/kubeadm:kubelet-config"),
        ("RoleBinding", "kube-system/kubeadm:kubelet-config"),
    ] {
        assert!(
            names.contains(&(kind.to_string(), name.to_string())),
            "{kind} {name} missing"
        );
    }
    for object in &objects {
        let labels = object.object.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(HOSTED_MANAGED_BY).map(String::as_str),
            Some("nestplane"),
            "{:?}",
            object.object.metadata.name
        );
    }
}

const HOSTED_MANAGED_BY: &str = crate::builders::hosted::HOSTED_MANAGED_BY_LABEL;

#[test]
fn cluster_info_names_the_endpoint_and_the_ca() {
    let objects = objects(&hosted_input()).expect("build");
    let cluster_info = config_map(&objects, "kube-public", "cluster-info");
    let data = cluster_info.data.expect("data");
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["kubeconfig"],
        "no jws key of ours"
    );
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&data["kubeconfig"]).expect("kubeconfig");
    let cluster = kubeconfig.clusters[0].cluster.clone().expect("cluster");
    assert_eq!(cluster.server.as_deref(), Some("https://192.0.2.2:31443"));
    let ca = base64::engine::general_purpose::STANDARD
        .decode(cluster.certificate_authority_data.expect("CA data"))
        .expect("base64");
    assert_eq!(String::from_utf8(ca).expect("utf-8"), CA_PEM);
    assert!(
        kubeconfig.auth_infos.is_empty(),
        "cluster-info carries no credentials"
    );
}

#[test]
fn kubelet_config_points_at_the_clusters_dns_and_ca() {
    let mut input = hosted_input();
    input.service_cidr = "10.100.0.0/16".into();
    input.dns_service_ip = dns_service_ip(&input.service_cidr).expect("dns ip");
    input.dns_domain = "example.internal".into();
    let objects = objects(&input).expect("build");
    let kubelet = data_yaml(&config_map(&objects, "kube-system", "kubelet-config"), "kubelet");
    assert_eq!(kubelet["kind"], "KubeletConfiguration");
    assert_eq!(kubelet["clusterDNS"], serde_json::json!(["10.100.0.10"]));
    assert_eq!(kubelet["clusterDomain"], "example.internal");
    assert_eq!(kubelet["cgroupDriver"], "systemd");
    assert_eq!(
        kubelet["authentication"]["x509"]["clientCAFile"],
        "/etc/kubernetes/pki/ca.crt"
    );
    assert_eq!(kubelet["authentication"]["webhook"]["enabled"], true);
    assert_eq!(kubelet["authentication"]["anonymous"]["enabled"], false);
    assert_eq!(kubelet["authorization"]["mode"], "Webhook");
    assert_eq!(kubelet["rotateCertificates"], true);
    assert_eq!(kubelet["serverTLSBootstrap"], true);
}

#[test]
fn kubeadm_config_is_a_v1beta4_cluster_configuration_of_the_cluster() {
    let mut input = hosted_input();
    input.endpoint.host = "2001:db8::2".into();
    let objects = objects(&input).expect("build");
    let config = data_yaml(
        &config_map(&objects, "kube-system", "kubeadm-config"),
        "ClusterConfiguration",
    );
    assert_eq!(config["apiVersion"], "kubeadm.k8s.io/v1beta4");
    assert_eq!(config["kind"], "ClusterConfiguration");
    assert_eq!(config["kubernetesVersion"], "v1.35.4");
    assert_eq!(config["controlPlaneEndpoint"], "[2001:db8::2]:31443");
    assert_eq!(config["networking"]["serviceSubnet"], "10.96.0.0/12");
    assert_eq!(config["networking"]["podSubnet"], "10.244.0.0/16");
    assert_eq!(config["networking"]["dnsDomain"], "cluster.local");
}

#[test]
fn bootstrap_tokens_may_post_csrs_and_get_nodes_and_nodes_renew() {
    let objects = objects(&hosted_input()).expect("build");
    let binding = |name: &str| -> ClusterRoleBinding {
        objects
            .iter()
            .find(|o| {
                o.resource.kind == "ClusterRoleBinding" && o.object.metadata.name.as_deref() == Some(name)
            })
            .unwrap_or_else(|| panic!("{name}"))
            .object
            .clone()
            .try_parse()
            .expect("binding")
    };
    let subjects = |b: ClusterRoleBinding| -> Vec<(String, String)> {
        b.subjects
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.kind, s.name))
            .collect()
    };
    let group = |g: &str| vec![("Group".to_string(), g.to_string())];
    assert_eq!(
        binding("kubeadm:kubelet-bootstrap").role_ref.name,
        "system:node-bootstrapper"
    );
    assert_eq!(
        subjects(binding("kubeadm:kubelet-bootstrap")),
        group(BOOTSTRAPPERS_GROUP)
    );
    assert_eq!(subjects(binding("kubeadm:get-nodes")), group(BOOTSTRAPPERS_GROUP));
    assert_eq!(
        subjects(binding("kubeadm:node-autoapprove-bootstrap")),
        group(BOOTSTRAPPERS_GROUP)
    );
    assert_eq!(
        subjects(binding("kubeadm:node-autoapprove-certificate-rotation")),
        group(NODES_GROUP)
    );
    let kubelet_api = binding(KUBELET_API_ADMIN_BINDING);
    assert_eq!(kubelet_api.role_ref.name, "system:kubelet-api-admin");
    assert_eq!(
        subjects(kubelet_api),
        vec![("User".to_string(), "kube-apiserver-kubelet-client".to_string())]
    );
    let anonymous: RoleBinding = objects
        .iter()
        .find(|o| {
            o.resource.kind == "RoleBinding" && o.object.metadata.namespace.as_deref() == Some("kube-public")
        })
        .expect("cluster-info binding")
        .object
        .clone()
        .try_parse()
        .expect("binding");
    assert_eq!(anonymous.subjects.expect("subjects")[0].name, "system:anonymous");
}

#[test]
fn the_dns_address_is_the_tenth_of_the_service_range() {
    assert_eq!(dns_service_ip("10.96.0.0/12").expect("ip"), "10.96.0.10");
    assert_eq!(dns_service_ip("172.20.8.0/24").expect("ip"), "172.20.8.10");
    assert!(
        dns_service_ip("10.96.0.0/29").is_err(),
        "8 addresses have no 10th"
    );
    assert!(dns_service_ip("fd00::/108").is_err());
    assert!(dns_service_ip("10.96.0.0").is_err());
}
