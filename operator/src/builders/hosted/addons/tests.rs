use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;
use crate::builders::hosted::testing::{documents, hosted_input};
use crate::builders::testing::assert_golden;

fn find<K: DeserializeOwned + kube::Resource>(objects: &[HostedObject], kind: &str, name: &str) -> K {
    objects
        .iter()
        .find(|o| o.resource.kind == kind && o.object.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{kind} {name}"))
        .object
        .clone()
        .try_parse()
        .expect(kind)
}

fn data(config_map: &ConfigMap, key: &str) -> String {
    config_map.data.as_ref().expect("data")[key].clone()
}

#[test]
fn objects_match_golden() {
    let objects = objects(&hosted_input()).expect("build");
    assert_golden("hosted-addons", &documents(&objects));
}

#[test]
fn kube_proxy_reaches_the_external_endpoint_with_its_service_account() {
    let objects = objects(&hosted_input()).expect("build");
    let config_map: ConfigMap = find(&objects, "ConfigMap", "kube-proxy");
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&data(&config_map, "kubeconfig.conf")).expect("kubeconfig");
    let cluster = kubeconfig.clusters[0].cluster.clone().expect("cluster");
    assert_eq!(cluster.server.as_deref(), Some("https://192.0.2.2:31443"));
    assert_eq!(
        cluster.certificate_authority.as_deref(),
        Some("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
    );
    let user = kubeconfig.auth_infos[0].auth_info.clone().expect("user");
    assert_eq!(
        user.token_file.as_deref(),
        Some("/var/run/secrets/kubernetes.io/serviceaccount/token")
    );
    let config: Value = serde_yaml::from_str(&data(&config_map, "config.conf")).expect("yaml");
    assert_eq!(config["kind"], "KubeProxyConfiguration");
    assert_eq!(config["clusterCIDR"], "10.244.0.0/16");
    assert_eq!(config["mode"], "iptables");
    assert_eq!(
        config["clientConnection"]["kubeconfig"],
        "/var/lib/kube-proxy/kubeconfig.conf"
    );
}

#[test]
fn kube_proxy_runs_the_control_planes_version_on_every_node() {
    let mut input = hosted_input();
    input.image_registry = "registry.example:5000".into();
    let objects = objects(&input).expect("build");
    let daemon_set: DaemonSet = find(&objects, "DaemonSet", "kube-proxy");
    let pod = daemon_set.spec.expect("spec").template.spec.expect("pod");
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("registry.example:5000/kube-proxy:v1.35.4")
    );
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some("kube-proxy"));
    let tolerations = pod.tolerations.expect("tolerations");
    assert_eq!(
        tolerations[0].operator.as_deref(),
        Some("Exists"),
        "every node, tainted or not"
    );
}

#[test]
fn coredns_serves_the_cluster_domain_at_the_dns_address() {
    let mut input = hosted_input();
    input.dns_domain = "example.internal".into();
    input.dns_service_ip = "10.96.0.10".into();
    let objects = objects(&input).expect("build");
    let corefile = data(&find(&objects, "ConfigMap", "coredns"), "Corefile");
    assert!(
        corefile.contains("kubernetes example.internal in-addr.arpa ip6.arpa {"),
        "{corefile}"
    );
    assert!(
        corefile.contains("disable success example.internal"),
        "{corefile}"
    );
    let deployment: Deployment = find(&objects, "Deployment", "coredns");
    let spec = deployment.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.expect("pod");
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("registry.k8s.io/coredns/coredns:v1.14.7")
    );
    let service: Service = find(&objects, "Service", "kube-dns");
    let service_spec = service.spec.expect("spec");
    assert_eq!(service_spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    let ports: Vec<(i32, String)> = service_spec
        .ports
        .expect("ports")
        .into_iter()
        .map(|p| (p.port, p.protocol.unwrap_or_default()))
        .collect();
    assert_eq!(
        ports,
        [
            (53, "UDP".to_string()),
            (53, "TCP".to_string()),
            (9153, "TCP".to_string())
        ]
    );
    let selector = service_spec.selector.expect("selector");
    let template_labels = pod_labels(&deployment_template_labels(&objects));
    assert!(selector.iter().all(|(k, v)| template_labels.get(k) == Some(v)));
}

fn deployment_template_labels(objects: &[HostedObject]) -> Deployment {
    find(objects, "Deployment", "coredns")
}

fn pod_labels(deployment: &Deployment) -> std::collections::BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

#[test]
fn every_object_carries_the_managed_by_label() {
    for object in objects(&hosted_input()).expect("build") {
        let labels = object.object.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels
                .get(crate::builders::hosted::HOSTED_MANAGED_BY_LABEL)
                .map(String::as_str),
            Some("nestplane"),
            "{:?}",
            object.object.metadata.name
        );
    }
}

/// The hosted cluster runs the CoreDNS the management cluster runs (and has its image).
#[test]
fn coredns_version_is_the_management_clusters() {
    let path = format!("{}/../hack/versions.env", env!("CARGO_MANIFEST_DIR"));
    let versions = std::fs::read_to_string(&path).expect(&path);
    let pinned = versions
        .lines()
        .find_map(|line| line.strip_prefix("COREDNS_VERSION="))
        .expect("COREDNS_VERSION in hack/versions.env");
    assert_eq!(COREDNS_VERSION, pinned.trim());
}
