//! etcd: a StatefulSet (each member keeps its PersistentVolumeClaim across restarts),
//! a headless Service for peers and a client Service for kube-apiserver.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;

use super::secrets::{SecretRole, ca_cert, pair};
use super::*;
use crate::api::conditions::ETCD_AVAILABLE;

pub const CLIENT_PORT: i32 = 2379;
pub const PEER_PORT: i32 = 2380;
/// Served on loopback only: etcd's metrics say much about the cluster and carry no TLS here.
pub const METRICS_PORT: i32 = 2381;
const PKI_DIR: &str = "/etc/kubernetes/pki/etcd";
/// Name of the claim template: members' claims are `data-<cluster>-etcd-<ordinal>`.
pub const DATA_VOLUME: &str = "data";
/// Share of the volume etcd's backend may fill before it raises NOSPACE. The rest is for the
/// write-ahead log (64 MiB segments, up to five kept) and snapshots (`.snap` files of the raft
/// state, also up to five), which live on the same volume and are not counted in the quota.
const QUOTA_PERCENT_OF_VOLUME: u64 = 80;

/// What the existing etcd is, read by the controller.
#[derive(Debug, Clone, Default)]
pub struct EtcdInputs {
    /// The claim template of the existing StatefulSet: the API server refuses any change to
    /// it, so it stays as first created and claims grow by expansion instead.
    pub claim_template: Option<PersistentVolumeClaim>,
    /// Capacity of the smallest member claim, once bound.
    pub capacity: Option<Quantity>,
    /// `--initial-cluster-token`: the existing StatefulSet's, or a new one for a new
    /// StatefulSet. etcd derives its member and cluster IDs from the token and the peer URLs
    /// only, so an etcd bootstrapped again on empty claims with the same token would have the
    /// same cluster ID as the one whose data was lost; a token per StatefulSet makes the
    /// new, empty etcd tell itself apart. It is read only when a member's data dir is empty.
    pub cluster_token: Option<String>,
}

/// The claim that each member's data lives on.
pub fn claim_name(cluster: &str, ordinal: i32) -> String {
    format!(
        "{DATA_VOLUME}-{}-{ordinal}",
        Component::Etcd.workload_name(cluster)
    )
}

/// Headless Service: stable DNS names for members (`<pod>.<cluster>-etcd.<ns>.svc`).
pub fn peer_service_name(cluster: &str) -> String {
    format!("{cluster}-etcd")
}

pub fn client_service_name(cluster: &str) -> String {
    format!("{cluster}-etcd-client")
}

/// DNS names the member certificates must carry.
pub fn member_dns_names(hc: &HostedCluster) -> Result<Vec<String>, BuildError> {
    let (cluster, ns) = (name(hc)?, namespace(hc)?);
    let peers = peer_service_name(&cluster);
    let client = client_service_name(&cluster);
    Ok(vec![
        format!("*.{peers}.{ns}.svc"),
        format!("*.{peers}.{ns}.svc.cluster.local"),
        format!("{client}.{ns}.svc"),
        format!("{client}.{ns}.svc.cluster.local"),
        client,
    ])
}

/// A member's stable URL: `<pod>.<cluster>-etcd.<ns>.svc`.
fn member_url(cluster: &str, ns: &str, pod: &str, port: i32) -> String {
    format!("https://{pod}.{}.{ns}.svc:{port}", peer_service_name(cluster))
}

/// Where member `ordinal` serves clients, by its stable name (resolvable before it is ready).
pub fn member_client_url(hc: &HostedCluster, ordinal: i32) -> Result<String, BuildError> {
    let cluster = name(hc)?;
    let pod = format!("{}-{ordinal}", Component::Etcd.workload_name(&cluster));
    Ok(member_url(&cluster, &namespace(hc)?, &pod, CLIENT_PORT))
}

pub fn client_url(hc: &HostedCluster) -> Result<String, BuildError> {
    Ok(format!(
        "https://{}.{}.svc:{CLIENT_PORT}",
        client_service_name(&name(hc)?),
        namespace(hc)?
    ))
}

/// etcd starts first, and its condition also reports lost data and a full disk.
pub const COMPONENT: ComponentDef = ComponentDef {
    name: "etcd",
    kind: WorkloadKind::StatefulSet,
    depends_on: &[],
    required_certs: &[SecretRole::EtcdCa, SecretRole::EtcdServer, SecretRole::EtcdPeer],
    config_maps: component::no_config_maps,
    condition_type: ETCD_AVAILABLE,
    availability: Availability::ClusterData,
    image,
    // One member of three may go; with fewer, any loss breaks the quorum.
    wants_disruption_budget: |hc| hc.spec.etcd.replicas >= 3,
    build: |hc, inputs| Ok(Workload::StatefulSet(statefulset(hc, inputs)?)),
};

/// etcd release shipped with each supported Kubernetes minor (as kubeadm pins it in
/// `cmd/kubeadm/app/constants`). Keep in step with `api::SUPPORTED_MINORS`.
const ETCD_FOR_MINOR: &[(&str, &str)] = &[("1.35", "3.6.16-0")];

/// The etcd release kubeadm pins for the version's minor.
fn image(version: &str, registry: &str) -> Result<String, BuildError> {
    let minor = version
        .trim_start_matches('v')
        .rsplit_once('.')
        .map(|(minor, _)| minor)
        .unwrap_or_default();
    let etcd = ETCD_FOR_MINOR
        .iter()
        .find(|(m, _)| *m == minor)
        .map(|(_, etcd)| *etcd)
        .ok_or_else(|| BuildError::Invalid {
            what: "images",
            message: format!("unsupported Kubernetes version {version}"),
        })?;
    Ok(format!("{registry}/etcd:{etcd}"))
}

/// etcd's space quota: a share of the space the volume really has. That is the capacity of the
/// claims, but never more than the spec asks for (a provisioner may round a claim up, and
/// following that would restart etcd right after creation), and the template's size until
/// the claims are bound.
pub fn quota_backend_bytes(hc: &HostedCluster, storage: &EtcdInputs) -> Result<u64, BuildError> {
    let bytes = |q: &Quantity| {
        quantity::to_bytes(q).map_err(|e| BuildError::Invalid {
            what: "etcd storage size",
            message: e.to_string(),
        })
    };
    let requested = bytes(&hc.spec.etcd.storage.size)?;
    let there = match (&storage.capacity, template_size(storage)) {
        (Some(capacity), _) => bytes(capacity)?,
        (None, Some(size)) => bytes(&size)?,
        (None, None) => requested,
    };
    Ok(requested.min(there) / 100 * QUOTA_PERCENT_OF_VOLUME)
}

fn template_size(storage: &EtcdInputs) -> Option<Quantity> {
    requested_size(storage.claim_template.as_ref()?)
}

/// The size a claim (or claim template) asks for.
pub fn requested_size(claim: &PersistentVolumeClaim) -> Option<Quantity> {
    claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .cloned()
}

pub fn args(
    hc: &HostedCluster,
    quota_bytes: u64,
    cluster_token: &str,
) -> Result<BTreeMap<&'static str, String>, BuildError> {
    let (cluster, ns) = (name(hc)?, namespace(hc)?);
    let member_url = |pod: &str, port| member_url(&cluster, &ns, pod, port);
    let statefulset = Component::Etcd.workload_name(&cluster);
    let initial_cluster = (0..hc.spec.etcd.replicas)
        .map(|i| {
            let pod = format!("{statefulset}-{i}");
            format!("{pod}={}", member_url(&pod, PEER_PORT))
        })
        .collect::<Vec<_>>()
        .join(",");
    Ok(BTreeMap::from([
        ("name", "$(POD_NAME)".to_string()),
        ("data-dir", "/var/lib/etcd/data".to_string()),
        ("listen-client-urls", format!("https://0.0.0.0:{CLIENT_PORT}")),
        ("advertise-client-urls", member_url("$(POD_NAME)", CLIENT_PORT)),
        ("listen-peer-urls", format!("https://0.0.0.0:{PEER_PORT}")),
        (
            "initial-advertise-peer-urls",
            member_url("$(POD_NAME)", PEER_PORT),
        ),
        ("listen-metrics-urls", format!("http://127.0.0.1:{METRICS_PORT}")),
        ("initial-cluster", initial_cluster),
        ("initial-cluster-state", "new".to_string()),
        ("initial-cluster-token", cluster_token.to_string()),
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
        // kube-apiserver compacts every 5 minutes (--etcd-compaction-interval), keeping about
        // that much history. etcd's own compaction is the backstop for when no API server runs
        // (held back, crash-looping): an hour of history, where 8h could fill a small volume.
        // Compaction frees pages for reuse; the operator defragments to give them back.
        ("auto-compaction-mode", "periodic".to_string()),
        ("auto-compaction-retention", "1h".to_string()),
        ("quota-backend-bytes", quota_bytes.to_string()),
    ]))
}

pub fn services(hc: &HostedCluster) -> Result<Vec<Service>, BuildError> {
    let cluster = name(hc)?;
    let ports = json!([
        { "name": "client", "port": CLIENT_PORT, "targetPort": "client" },
        { "name": "peer", "port": PEER_PORT, "targetPort": "peer" },
    ]);
    let peers = meta::object(
        "etcd peer service",
        object_meta(hc, peer_service_name(&cluster), Some(Component::Etcd))?,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "spec": {
                "clusterIP": "None",
                // Members must find each other before any is ready.
                "publishNotReadyAddresses": true,
                "selector": selector(hc, Component::Etcd)?,
                "ports": ports,
            }
        }),
    )?;
    let client = meta::object(
        "etcd client service",
        object_meta(hc, client_service_name(&cluster), Some(Component::Etcd))?,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "spec": {
                "type": "ClusterIP",
                "selector": selector(hc, Component::Etcd)?,
                "ports": [{ "name": "client", "port": CLIENT_PORT, "targetPort": "client" }],
            }
        }),
    )?;
    Ok(vec![peers, client])
}

pub fn statefulset(hc: &HostedCluster, inputs: &Inputs) -> Result<StatefulSet, BuildError> {
    let cluster = name(hc)?;
    let component = Component::Etcd;
    let quota = quota_backend_bytes(hc, &inputs.etcd)?;
    let token = inputs
        .etcd
        .cluster_token
        .clone()
        .unwrap_or_else(|| cluster.clone());
    let claim_template = match &inputs.etcd.claim_template {
        Some(existing) => serde_json::to_value(existing).map_err(|source| BuildError::Encode {
            what: "etcd claim template",
            source,
        })?,
        None => claim_template(hc)?,
    };
    meta::object(
        "etcd statefulset",
        object_meta(hc, component.workload_name(&cluster), Some(component))?,
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "spec": {
                "serviceName": peer_service_name(&cluster),
                "replicas": hc.spec.etcd.replicas,
                // All members start together: a quorum needs them before any is ready.
                "podManagementPolicy": "Parallel",
                "selector": { "matchLabels": selector(hc, component)? },
                // Deleting the StatefulSet (by mistake, or a pruning tool) must not take the data
                // with it: only deleting the HostedCluster removes the claims (see `cleanup`).
                "persistentVolumeClaimRetentionPolicy": { "whenDeleted": "Retain", "whenScaled": "Retain" },
                "template": pod_template(hc, component, inputs, json!({
                    "containers": [{
                        "name": "etcd",
                        "image": inputs.images.get(component)?,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["etcd"],
                        "args": render_args(args(hc, quota, &token)?, &BTreeMap::new()),
                        "env": [{ "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }],
                        "ports": [
                            { "name": "client", "containerPort": CLIENT_PORT },
                            { "name": "peer", "containerPort": PEER_PORT },
                        ],
                        // Every second while it starts (five minutes at most): the kubelet
                        // runs the readiness probe as soon as this one passes.
                        "startupProbe": exec_probe("status", 1, 300),
                        "readinessProbe": exec_probe("health", 5, 3),
                        // Only whether etcd listens: a member with a NOSPACE alarm is not
                        // healthy, and restarting it would not free any space.
                        "livenessProbe": {
                            "tcpSocket": { "port": CLIENT_PORT },
                            "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 8,
                        },
                        "resources": resources("etcd resources", &hc.spec.etcd.resources, "25m", "96Mi")?,
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
                }))?,
                "volumeClaimTemplates": [claim_template],
            }
        }),
    )
}

/// The claim template of a new StatefulSet, from the spec.
fn claim_template(hc: &HostedCluster) -> Result<serde_json::Value, BuildError> {
    let storage = &hc.spec.etcd.storage;
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": { "requests": { "storage": storage.size } },
    });
    if let Some(class) = &storage.storage_class_name {
        spec["storageClassName"] = json!(class);
    }
    Ok(json!({
        "metadata": { "name": DATA_VOLUME, "labels": labels(hc, Some(Component::Etcd))? },
        "spec": spec,
    }))
}

/// `etcdctl endpoint <check>` against this member over TLS on loopback, with the server
/// certificate (it has client usage). `status` answers as soon as the member serves, alarms or
/// not, so a member restarted with a NOSPACE alarm is not killed before it starts; `health`
/// also needs a quorum and no alarm, which is what serving kube-apiserver takes.
fn exec_probe(check: &str, period: i32, failures: i32) -> serde_json::Value {
    json!({
        "exec": { "command": [
            "/usr/local/bin/etcdctl",
            format!("--endpoints=https://127.0.0.1:{CLIENT_PORT}"),
            format!("--cacert={PKI_DIR}/ca.crt"),
            format!("--cert={PKI_DIR}/server.crt"),
            format!("--key={PKI_DIR}/server.key"),
            "--command-timeout=4s",
            "endpoint", check,
        ]},
        "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures,
    })
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
        let initial = args(&hc, 1, "demo").expect("args")["initial-cluster"].clone();
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

    fn quota_flag(sts: &StatefulSet) -> u64 {
        let args = sts
            .spec
            .as_ref()
            .expect("spec")
            .template
            .spec
            .as_ref()
            .expect("pod")
            .containers[0]
            .args
            .clone()
            .expect("args");
        let flag = args
            .iter()
            .find_map(|a| a.strip_prefix("--quota-backend-bytes="))
            .expect("quota flag");
        flag.parse().expect("bytes")
    }

    #[test]
    fn the_space_quota_leaves_room_on_the_volume() {
        let mut hc = hosted_cluster();
        let sts = statefulset(&hc, &inputs()).expect("build");
        let quota = quota_flag(&sts);
        assert!(quota < 1 << 30, "{quota} on a 1Gi claim");
        assert!(
            quota >= (1 << 30) / 10 * 7,
            "{quota}: most of the volume is usable"
        );
        hc.spec.etcd.storage.size = Quantity("8Gi".into());
        let bigger = quota_flag(&statefulset(&hc, &inputs()).expect("build"));
        assert_eq!(bigger, (8 << 30) / 100 * 80);
    }

    #[test]
    fn the_quota_follows_the_capacity_there_not_the_size_asked_for() {
        let mut hc = hosted_cluster();
        hc.spec.etcd.storage.size = Quantity("2Gi".into());
        let mut inputs = inputs();
        // Expansion refused or still running: the claims still have 1Gi.
        inputs.etcd.capacity = Some(Quantity("1Gi".into()));
        assert!(quota_flag(&statefulset(&hc, &inputs).expect("build")) < 1 << 30);
        // A provisioner that rounds up does not raise it past what was asked for.
        inputs.etcd.capacity = Some(Quantity("10Gi".into()));
        assert!(quota_flag(&statefulset(&hc, &inputs).expect("build")) < 2 << 30);
    }

    #[test]
    fn a_changed_size_keeps_the_claim_template_of_the_existing_statefulset() {
        let mut hc = hosted_cluster();
        let created = statefulset(&hc, &inputs()).expect("build");
        let template = created
            .spec
            .clone()
            .expect("spec")
            .volume_claim_templates
            .expect("claims")[0]
            .clone();
        hc.spec.etcd.storage.size = Quantity("5Gi".into());
        let mut inputs = inputs();
        inputs.etcd.claim_template = Some(template.clone());
        let rebuilt = statefulset(&hc, &inputs).expect("build");
        assert_eq!(
            rebuilt
                .spec
                .expect("spec")
                .volume_claim_templates
                .expect("claims"),
            vec![template]
        );
    }

    #[test]
    fn deleting_the_statefulset_keeps_the_claims() {
        let sts = statefulset(&hosted_cluster(), &inputs()).expect("build");
        let policy = sts
            .spec
            .expect("spec")
            .persistent_volume_claim_retention_policy
            .expect("policy");
        assert_eq!(policy.when_deleted.as_deref(), Some("Retain"));
        assert_eq!(policy.when_scaled.as_deref(), Some("Retain"));
    }

    #[test]
    fn metrics_stay_on_loopback_and_no_probe_uses_them() {
        let hc = hosted_cluster();
        assert_eq!(
            args(&hc, 1, "demo").expect("args")["listen-metrics-urls"],
            "http://127.0.0.1:2381"
        );
        let sts = statefulset(&hc, &inputs()).expect("build");
        let json = serde_json::to_value(&sts).expect("json");
        let container = &json["spec"]["template"]["spec"]["containers"][0];
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert!(!container[probe].to_string().contains("2381"), "{probe}");
        }
        for probe in ["startupProbe", "readinessProbe"] {
            let command = container[probe]["exec"]["command"].as_array().expect(probe);
            assert_eq!(command[0], "/usr/local/bin/etcdctl");
            assert!(
                command.contains(&json!("--endpoints=https://127.0.0.1:2379")),
                "{probe}"
            );
        }
        assert_eq!(container["livenessProbe"]["tcpSocket"]["port"], 2379);
        assert_eq!(
            container["ports"].as_array().expect("ports").len(),
            2,
            "no metrics port is published"
        );
    }
}
