//! etcd: a StatefulSet (each member keeps its PersistentVolumeClaim across restarts),
//! a headless Service for peers and a client Service for kube-apiserver.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use super::secrets::{SecretRole, ca_cert, pair};
use super::*;

pub const CLIENT_PORT: i32 = 2379;
pub const PEER_PORT: i32 = 2380;
pub const METRICS_PORT: i32 = 2381;
const PKI_DIR: &str = "/etc/kubernetes/pki/etcd";

/// Headless Service: stable DNS names for members (`<pod>.<cluster>-etcd.<ns>.svc`).
pub fn peer_service_name(cluster: &str) -> String {
    format!("{cluster}-etcd")
}

pub fn client_service_name(cluster: &str) -> String {
    format!("{cluster}-etcd-client")
}

/// DNS names the member certificates must carry.
pub fn member_dns_names(hc: &HostedCluster) -> Vec<String> {
    let (cluster, ns) = (name(hc), namespace(hc));
    let peers = peer_service_name(&cluster);
    let client = client_service_name(&cluster);
    vec![
        format!("*.{peers}.{ns}.svc"),
        format!("*.{peers}.{ns}.svc.cluster.local"),
        format!("{client}.{ns}.svc"),
        format!("{client}.{ns}.svc.cluster.local"),
        client,
    ]
}

fn member_url(hc: &HostedCluster, pod: &str, port: i32) -> String {
    format!(
        "https://{pod}.{}.{}.svc:{port}",
        peer_service_name(&name(hc)),
        namespace(hc)
    )
}

pub fn client_url(hc: &HostedCluster) -> String {
    format!(
        "https://{}.{}.svc:{CLIENT_PORT}",
        client_service_name(&name(hc)),
        namespace(hc)
    )
}

/// etcd starts first.
pub fn depends_on() -> &'static [Component] {
    &[]
}

pub fn required_certs() -> &'static [SecretRole] {
    &[SecretRole::EtcdCa, SecretRole::EtcdServer, SecretRole::EtcdPeer]
}

pub fn args(hc: &HostedCluster) -> BTreeMap<&'static str, String> {
    let cluster = name(hc);
    let statefulset = Component::Etcd.workload_name(&cluster);
    let initial_cluster = (0..hc.spec.etcd.replicas)
        .map(|i| {
            let pod = format!("{statefulset}-{i}");
            format!("{pod}={}", member_url(hc, &pod, PEER_PORT))
        })
        .collect::<Vec<_>>()
        .join(",");
    BTreeMap::from([
        ("name", "$(POD_NAME)".to_string()),
        ("data-dir", "/var/lib/etcd/data".to_string()),
        ("listen-client-urls", format!("https://0.0.0.0:{CLIENT_PORT}")),
        (
            "advertise-client-urls",
            member_url(hc, "$(POD_NAME)", CLIENT_PORT),
        ),
        ("listen-peer-urls", format!("https://0.0.0.0:{PEER_PORT}")),
        (
            "initial-advertise-peer-urls",
            member_url(hc, "$(POD_NAME)", PEER_PORT),
        ),
        ("listen-metrics-urls", format!("http://0.0.0.0:{METRICS_PORT}")),
        ("initial-cluster", initial_cluster),
        ("initial-cluster-state", "new".to_string()),
        ("initial-cluster-token", cluster),
        ("client-cert-auth", "true".to_string()),
        ("trusted-ca-file", format!("{PKI_DIR}/ca.crt")),
        ("cert-file", format!("{PKI_DIR}/server.crt")),
        ("key-file", format!("{PKI_DIR}/server.key")),
        ("peer-client-cert-auth", "true".to_string()),
        ("peer-trusted-ca-file", format!("{PKI_DIR}/ca.crt")),
        ("peer-cert-file", format!("{PKI_DIR}/peer.crt")),
        ("peer-key-file", format!("{PKI_DIR}/peer.key")),
        ("snapshot-count", "10000".to_string()),
        // As kubeadm does for etcd 3.6+.
        ("feature-gates", "InitialCorruptCheck=true".to_string()),
        ("watch-progress-notify-interval", "5s".to_string()),
        ("auto-compaction-mode", "periodic".to_string()),
        ("auto-compaction-retention", "8h".to_string()),
        ("quota-backend-bytes", "2147483648".to_string()),
    ])
}

pub fn services(hc: &HostedCluster) -> Result<Vec<Service>, BuildError> {
    let cluster = name(hc);
    let ports = json!([
        { "name": "client", "port": CLIENT_PORT, "targetPort": "client" },
        { "name": "peer", "port": PEER_PORT, "targetPort": "peer" },
    ]);
    let peers = typed(
        "etcd peer service",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta(hc, &peer_service_name(&cluster)),
            "spec": {
                "clusterIP": "None",
                // Members must find each other before any is ready.
                "publishNotReadyAddresses": true,
                "selector": selector(hc, Component::Etcd),
                "ports": ports,
            }
        }),
    )?;
    let client = typed(
        "etcd client service",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta(hc, &client_service_name(&cluster)),
            "spec": {
                "type": "ClusterIP",
                "selector": selector(hc, Component::Etcd),
                "ports": [{ "name": "client", "port": CLIENT_PORT, "targetPort": "client" }],
            }
        }),
    )?;
    Ok(vec![peers, client])
}

fn meta(hc: &HostedCluster, object_name: &str) -> serde_json::Value {
    json!({
        "name": object_name, "namespace": namespace(hc),
        "labels": labels(hc, Some(Component::Etcd)),
        "ownerReferences": [owner_reference(hc)],
    })
}

pub fn statefulset(hc: &HostedCluster, inputs: &Inputs) -> Result<StatefulSet, BuildError> {
    let cluster = name(hc);
    let storage = &hc.spec.etcd.storage;
    let mut claim_spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": { "requests": { "storage": storage.size } },
    });
    if let Some(class) = &storage.storage_class_name {
        claim_spec["storageClassName"] = json!(class);
    }
    let probe = |path: &str, failures: i32| {
        json!({
            "httpGet": { "path": path, "port": METRICS_PORT, "scheme": "HTTP" },
            "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": failures,
        })
    };
    typed(
        "etcd statefulset",
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": meta(hc, &Component::Etcd.workload_name(&cluster)),
            "spec": {
                "serviceName": peer_service_name(&cluster),
                "replicas": hc.spec.etcd.replicas,
                // All members start together: a quorum needs them before any is ready.
                "podManagementPolicy": "Parallel",
                "selector": { "matchLabels": selector(hc, Component::Etcd) },
                "persistentVolumeClaimRetentionPolicy": { "whenDeleted": "Delete", "whenScaled": "Retain" },
                "template": {
                    "metadata": {
                        "labels": labels(hc, Some(Component::Etcd)),
                        "annotations": { INPUTS_HASH_ANNOTATION: inputs.hash(Component::Etcd) },
                    },
                    "spec": {
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "securityContext": pod_security(),
                        "affinity": spread(hc, Component::Etcd),
                        "containers": [{
                            "name": "etcd",
                            "image": inputs.images.etcd,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["etcd"],
                            "args": render_args(args(hc), &BTreeMap::new()),
                            "env": [{ "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }],
                            "ports": [
                                { "name": "client", "containerPort": CLIENT_PORT },
                                { "name": "peer", "containerPort": PEER_PORT },
                                { "name": "metrics", "containerPort": METRICS_PORT },
                            ],
                            "startupProbe": probe("/readyz", 60),
                            "readinessProbe": probe("/readyz", 3),
                            "livenessProbe": probe("/livez", 8),
                            "resources": resources(&hc.spec.etcd.resources, "25m", "96Mi"),
                            "securityContext": container_security(),
                            "volumeMounts": [
                                { "name": "data", "mountPath": "/var/lib/etcd" },
                                { "name": "pki", "mountPath": PKI_DIR, "readOnly": true },
                            ],
                        }],
                        "volumes": [{
                            "name": "pki",
                            "projected": {
                                "defaultMode": 0o440,
                                "sources": [
                                    ca_cert(&cluster, SecretRole::EtcdCa, "ca"),
                                    pair(&cluster, SecretRole::EtcdServer, "server"),
                                    pair(&cluster, SecretRole::EtcdPeer, "peer"),
                                ]
                            }
                        }],
                    }
                },
                "volumeClaimTemplates": [{
                    "metadata": { "name": "data", "labels": labels(hc, Some(Component::Etcd)) },
                    "spec": claim_spec,
                }],
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::testing::{assert_golden, hosted_cluster, inputs};

    #[test]
    fn statefulset_matches_golden() {
        let hc = hosted_cluster();
        assert_golden("etcd", &statefulset(&hc, &inputs()).expect("build"));
    }

    #[test]
    fn three_members_know_each_other() {
        let mut hc = hosted_cluster();
        hc.spec.etcd.replicas = 3;
        let initial = args(&hc)["initial-cluster"].clone();
        for i in 0..3 {
            assert!(
                initial.contains(&format!(
                    "demo-etcd-{i}=https://demo-etcd-{i}.demo-etcd.team-a.svc:2380"
                )),
                "{initial}"
            );
        }
        let sts = statefulset(&hc, &inputs()).expect("build");
        let spec = sts.spec.expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    }

    #[test]
    fn data_lives_on_a_claim_of_the_requested_size_and_class() {
        let mut hc = hosted_cluster();
        hc.spec.etcd.storage.storage_class_name = Some("fast".into());
        let sts = statefulset(&hc, &inputs()).expect("build");
        let claim = &sts.spec.expect("spec").volume_claim_templates.expect("claims")[0];
        let spec = claim.spec.as_ref().expect("claim spec");
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .map(|r| r["storage"].0.as_str()),
            Some("1Gi")
        );
    }
}
