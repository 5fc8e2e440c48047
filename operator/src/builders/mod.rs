//! Pure functions from a HostedCluster spec (and inputs read earlier) to Kubernetes objects.
//! Nothing here does I/O: the same inputs always give the same objects.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use sha2::{Digest, Sha256};

use crate::api::HostedCluster;

pub mod etcd;
pub mod kube_apiserver;
pub mod kube_controller_manager;
pub mod kube_scheduler;
pub mod secrets;

pub const MANAGED_BY: &str = "nestplane";
/// Pod-template annotation: a hash of everything the component mounts, so that a changed
/// certificate rolls exactly the components that use it.
pub const INPUTS_HASH_ANNOTATION: &str = "nestplane.io/inputs-hash";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("building {what}: {message}")]
    Invalid { what: &'static str, message: String },
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
}

/// The control-plane components, in the order they start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
}

impl Component {
    pub const ALL: [Component; 4] = [
        Component::Etcd,
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
        }
    }

    /// Name of the component's workload (StatefulSet or Deployment).
    pub fn workload_name(self, cluster: &str) -> String {
        format!("{cluster}-{}", self.as_str())
    }
}

/// Container images of one control plane. They follow `spec.version` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    pub etcd: String,
    pub kube_apiserver: String,
    pub kube_controller_manager: String,
    pub kube_scheduler: String,
}

/// etcd release shipped with each supported Kubernetes minor (as kubeadm pins it).
const ETCD_FOR_MINOR: &[(&str, &str)] = &[("1.35", "3.6.16-0")];

impl Images {
    pub fn for_version(version: &str, registry: &str) -> Result<Images, BuildError> {
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
        Ok(Images {
            etcd: format!("{registry}/etcd:{etcd}"),
            kube_apiserver: format!("{registry}/kube-apiserver:{version}"),
            kube_controller_manager: format!("{registry}/kube-controller-manager:{version}"),
            kube_scheduler: format!("{registry}/kube-scheduler:{version}"),
        })
    }
}

/// Where the hosted API server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: i32,
}

impl Endpoint {
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

/// Everything the builders need that is not in the spec; read by the controller beforehand.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub images: Images,
    /// The external endpoint, written into the admin kubeconfig.
    pub endpoint: Endpoint,
    /// Port kube-apiserver listens on inside its pod (equal to the node port for NodePort,
    /// so that the hosted `kubernetes` Service advertises an address workers can reach).
    pub apiserver_port: i32,
    /// Address kube-apiserver advertises to the hosted cluster.
    pub advertise_address: Option<String>,
    /// Per component: hash of the Secrets it mounts.
    pub inputs_hash: BTreeMap<Component, String>,
}

impl Inputs {
    pub fn hash(&self, component: Component) -> String {
        self.inputs_hash.get(&component).cloned().unwrap_or_default()
    }
}

/// Port of the API server's Service inside the management cluster.
pub const APISERVER_SERVICE_PORT: i32 = 6443;

pub fn name(hc: &HostedCluster) -> String {
    hc.metadata.name.clone().unwrap_or_default()
}

pub fn namespace(hc: &HostedCluster) -> String {
    hc.metadata.namespace.clone().unwrap_or_default()
}

/// Labels every object of a control plane carries.
pub fn labels(hc: &HostedCluster, component: Option<Component>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/instance".to_string(), name(hc)),
        ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
        ("app.kubernetes.io/part-of".to_string(), "nestplane".to_string()),
    ]);
    if let Some(component) = component {
        labels.insert(
            "app.kubernetes.io/name".to_string(),
            component.as_str().to_string(),
        );
        labels.insert(
            "app.kubernetes.io/component".to_string(),
            component.as_str().to_string(),
        );
    }
    labels
}

/// Selector labels: instance and component only, so they never change.
pub fn selector(hc: &HostedCluster, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/instance".to_string(), name(hc)),
        (
            "app.kubernetes.io/component".to_string(),
            component.as_str().to_string(),
        ),
    ])
}

pub fn owner_reference(hc: &HostedCluster) -> OwnerReference {
    OwnerReference {
        api_version: "nestplane.io/v1alpha1".to_string(),
        kind: "HostedCluster".to_string(),
        name: name(hc),
        uid: hc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// `--name=value` flags from defaults overridden by the user's extra args, sorted by name.
pub fn render_args(defaults: BTreeMap<&str, String>, extra: &BTreeMap<String, String>) -> Vec<String> {
    let mut merged: BTreeMap<String, String> =
        defaults.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (k, v) in extra {
        merged.insert(k.trim_start_matches('-').to_string(), v.clone());
    }
    merged.into_iter().map(|(k, v)| format!("--{k}={v}")).collect()
}

/// Hex SHA-256 over sorted key/value pairs.
pub fn hash_data<'a>(entries: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sorted: Vec<_> = entries.into_iter().collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for (k, v) in sorted {
        hasher.update((k.len() as u64).to_be_bytes());
        hasher.update(k.as_bytes());
        hasher.update((v.len() as u64).to_be_bytes());
        hasher.update(v);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Deserialises a `json!` literal into a typed object.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    what: &'static str,
    value: serde_json::Value,
) -> Result<T, BuildError> {
    serde_json::from_value(value).map_err(|source| BuildError::Encode { what, source })
}

/// Default resources unless the user gave some.
pub(crate) fn resources(
    given: &Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    cpu: &str,
    memory: &str,
) -> serde_json::Value {
    match given {
        Some(r) => serde_json::to_value(r).unwrap_or_default(),
        None => serde_json::json!({ "requests": { "cpu": cpu, "memory": memory } }),
    }
}

/// Pod security shared by every component: non-root, no privilege escalation, no capabilities.
pub(crate) fn pod_security() -> serde_json::Value {
    serde_json::json!({
        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
        "seccompProfile": { "type": "RuntimeDefault" }
    })
}

pub(crate) fn container_security() -> serde_json::Value {
    serde_json::json!({
        "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
        "capabilities": { "drop": ["ALL"] }
    })
}

/// Spread replicas across nodes when there are several.
pub(crate) fn spread(hc: &HostedCluster, component: Component) -> serde_json::Value {
    serde_json::json!({
        "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": { "matchLabels": selector(hc, component) }
            }
        }]}
    })
}

#[cfg(test)]
pub(crate) mod testing;
