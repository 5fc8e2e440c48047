//! Pure functions from a HostedCluster spec (and inputs read earlier) to Kubernetes objects.
//! Nothing here does I/O: the same inputs always give the same objects.
use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::api::{HostedCluster, PodAntiAffinity};
pub use component::{Availability, Component, ComponentDef, Images, Workload, WorkloadKind};
pub use meta::{labels, name, namespace, object_meta, owned_selector, owner_reference, selector};

pub mod apiserver_config;
pub mod component;
mod control_plane;
pub mod disruption;
pub mod encryption;
pub mod etcd;
pub mod hosted;
pub mod kube_apiserver;
pub mod kube_controller_manager;
pub mod kube_scheduler;
pub mod kubeconfig;
pub mod launch;
pub mod meta;
pub mod pki_plan;
pub mod quantity;
pub mod secrets;
pub mod tunnel;
pub mod user_data;

pub const MANAGED_BY: &str = "nestplane";
/// The label that names the HostedCluster an object belongs to.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// The label every object nestplane writes carries (value [`MANAGED_BY`]); its watches select by it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Pod-template annotation: a hash of everything the component mounts, so that a changed
/// certificate rolls exactly the components that use it.
pub const INPUTS_HASH_ANNOTATION: &str = "nestplane.io/inputs-hash";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("no inputs hash for {0}: the controller computes one for every component")]
    MissingInputsHash(&'static str),
    #[error("building {what}: {message}")]
    Invalid { what: &'static str, message: String },
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("encoding {what} as YAML: {source}")]
    EncodeYaml {
        what: &'static str,
        source: serde_yaml::Error,
    },
    #[error("encoding {what} as TOML: {source}")]
    EncodeToml {
        what: &'static str,
        source: toml::ser::Error,
    },
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
    /// etcd's claim template, claim capacity and cluster token as they are.
    pub etcd: etcd::EtcdInputs,
    /// The nestplane image: the tunnel server beside kube-apiserver runs it, and the pods of
    /// kube-apiserver, the controller manager and the scheduler install `nestplane-launch` from it.
    pub tunnel_image: String,
}

impl Inputs {
    pub fn hash(&self, component: Component) -> Result<String, BuildError> {
        self.inputs_hash
            .get(&component)
            .cloned()
            .ok_or(BuildError::MissingInputsHash(component.as_str()))
    }
}

/// Port of the API server's Service inside the management cluster.
pub const APISERVER_SERVICE_PORT: i32 = 6443;

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
/// `what` names the resources in the error should the user's fail to encode: dropping them
/// silently would run the component without the limits the user set.
pub(crate) fn resources(
    what: &'static str,
    given: &Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    cpu: &str,
    memory: &str,
) -> Result<serde_json::Value, BuildError> {
    match given {
        Some(r) => serde_json::to_value(r).map_err(|source| BuildError::Encode { what, source }),
        None => Ok(serde_json::json!({ "requests": { "cpu": cpu, "memory": memory } })),
    }
}

/// A component's pod template around `spec` (its containers and volumes): its labels, the hash
/// of everything it mounts (a changed input rolls exactly the components that mount it), and
/// the settings every control-plane pod shares.
pub(crate) fn pod_template(
    hc: &HostedCluster,
    component: Component,
    inputs: &Inputs,
    mut spec: serde_json::Value,
) -> Result<serde_json::Value, BuildError> {
    let fields = spec.as_object_mut().ok_or_else(|| BuildError::Invalid {
        what: "pod spec",
        message: format!("{} pod spec is not an object", component.as_str()),
    })?;
    fields.insert("automountServiceAccountToken".into(), false.into());
    fields.insert("enableServiceLinks".into(), false.into());
    fields.insert("securityContext".into(), pod_security());
    fields.insert("affinity".into(), spread(hc, component)?);
    Ok(serde_json::json!({
        "metadata": {
            "labels": labels(hc, Some(component))?,
            "annotations": { INPUTS_HASH_ANNOTATION: inputs.hash(component)? },
        },
        "spec": spec,
    }))
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

/// Spread replicas across nodes when there are several: preferred, or (when the spec says so)
/// required, leaving a replica Pending rather than on a node that already runs one.
pub(crate) fn spread(hc: &HostedCluster, component: Component) -> Result<serde_json::Value, BuildError> {
    let term = serde_json::json!({
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": { "matchLabels": selector(hc, component)? }
    });
    Ok(match hc.spec.scheduling.pod_anti_affinity {
        PodAntiAffinity::Preferred => serde_json::json!({
            "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": term,
            }]}
        }),
        PodAntiAffinity::Required => serde_json::json!({
            "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [term] }
        }),
    })
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::secrets::SecretRole;
    use super::*;

    /// The inputs hash covers `required_certs()`: it must be exactly what the pod mounts.
    #[test]
    fn pods_mount_exactly_their_required_certs() {
        let (hc, inputs) = (testing::hosted_cluster(), testing::inputs());
        for component in Component::ALL {
            let json = match component.workload(&hc, &inputs).expect("build") {
                Workload::StatefulSet(s) => serde_json::to_value(s),
                Workload::Deployment(d) => serde_json::to_value(d),
            }
            .expect("json");
            let mut mounted = std::collections::BTreeSet::new();
            let volumes = json["spec"]["template"]["spec"]["volumes"]
                .as_array()
                .expect("volumes");
            for volume in volumes {
                for source in volume["projected"]["sources"].as_array().into_iter().flatten() {
                    if let Some(secret) = source["secret"]["name"].as_str() {
                        mounted.insert(secret.to_string());
                    }
                }
            }
            let required: std::collections::BTreeSet<_> = component
                .required_certs()
                .iter()
                .map(|r| r.secret_name("demo"))
                .collect();
            assert_eq!(mounted, required, "{component:?}");
        }
    }

    /// Suffixes of every object name a control plane uses (`<cluster>-<suffix>`).
    fn derived_suffixes() -> Vec<String> {
        let (hc, inputs) = (testing::hosted_cluster(), testing::inputs());
        let mut names: Vec<String> = SecretRole::ALL.iter().map(|r| r.secret_name("demo")).collect();
        names.extend(Component::ALL.iter().map(|c| c.workload_name("demo")));
        names.extend(Component::ALL.iter().map(|c| disruption::budget_name("demo", *c)));
        let services = etcd::services(&hc).expect("etcd services").into_iter().chain([
            kube_apiserver::service(&hc, None).expect("apiserver service"),
            kube_apiserver::pods_service(&hc).expect("apiserver pods service"),
        ]);
        names.extend(services.filter_map(|s| s.metadata.name));
        for component in Component::ALL {
            let config_maps = component.config_maps(&hc).expect("config maps");
            names.extend(config_maps.into_iter().filter_map(|c| c.metadata.name));
            let workload = component.workload(&hc, &inputs).expect("build");
            let name = match workload {
                Workload::StatefulSet(s) => s.metadata.name,
                Workload::Deployment(d) => d.metadata.name,
            };
            names.extend(name);
        }
        names
            .iter()
            .map(|n| {
                n.strip_prefix("demo-")
                    .expect("derived from the cluster name")
                    .to_string()
            })
            .collect()
    }

    /// Cluster `x-<p>` names `x-<p>-<b>` what cluster `x` names `x-<a>` whenever suffix `a` is
    /// `<p>-<b>`: every such `p` must be a name ending the API refuses.
    #[test]
    fn derived_names_of_two_clusters_cannot_collide() {
        let suffixes = derived_suffixes();
        let reserved = crate::api::RESERVED_NAME_ENDINGS;
        for a in &suffixes {
            for b in &suffixes {
                let Some(prefix) = a.strip_suffix(&format!("-{b}")) else {
                    continue;
                };
                assert!(
                    reserved
                        .iter()
                        .any(|e| prefix == *e || prefix.ends_with(&format!("-{e}"))),
                    "clusters x and x-{prefix} would both use the name x-{a}: add {prefix:?} to RESERVED_NAME_ENDINGS"
                );
            }
        }
    }

    /// With the longest name allowed, Service names stay DNS labels (63 characters) and the
    /// StatefulSet's revision label (`<name>-<10 characters>`) stays a valid label value.
    #[test]
    fn derived_names_of_the_longest_cluster_name_fit() {
        let mut hc = testing::hosted_cluster();
        hc.metadata.name = Some("a".repeat(crate::api::MAX_NAME_LENGTH));
        let services = etcd::services(&hc).expect("etcd services").into_iter().chain([
            kube_apiserver::service(&hc, None).expect("apiserver service"),
            kube_apiserver::pods_service(&hc).expect("apiserver pods service"),
        ]);
        for service in services {
            let name = service.metadata.name.expect("name");
            assert!(name.len() <= 63, "Service {name} is not a DNS label");
        }
        let statefulset = Component::Etcd.workload_name(&name(&hc).expect("name"));
        assert!(
            statefulset.len() + 11 <= 63,
            "revision label of {statefulset} is too long"
        );
    }

    #[test]
    fn required_anti_affinity_keeps_replicas_apart() {
        let mut hc = testing::hosted_cluster();
        hc.spec.scheduling.pod_anti_affinity = PodAntiAffinity::Required;
        for component in Component::ALL {
            let json = match component.workload(&hc, &testing::inputs()).expect("build") {
                Workload::StatefulSet(s) => serde_json::to_value(s),
                Workload::Deployment(d) => serde_json::to_value(d),
            }
            .expect("json");
            let anti = &json["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
            let terms = anti["requiredDuringSchedulingIgnoredDuringExecution"]
                .as_array()
                .expect("required terms");
            assert_eq!(terms[0]["topologyKey"], "kubernetes.io/hostname", "{component:?}");
            assert_eq!(
                terms[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"],
                component.as_str()
            );
            assert!(
                anti.get("preferredDuringSchedulingIgnoredDuringExecution")
                    .is_none()
            );
        }
    }

    #[test]
    fn hash_depends_on_keys_and_values_not_order() {
        let a = hash_data([("a", b"1".as_slice()), ("b", b"2".as_slice())]);
        let b = hash_data([("b", b"2".as_slice()), ("a", b"1".as_slice())]);
        assert_eq!(a, b);
        assert_ne!(a, hash_data([("a", b"2".as_slice()), ("b", b"1".as_slice())]));
        assert_ne!(
            hash_data([("ab", b"".as_slice())]),
            hash_data([("a", b"b".as_slice())])
        );
    }

    #[test]
    fn extra_args_override_and_dashes_are_optional() {
        let defaults = BTreeMap::from([("v", "2".to_string()), ("profiling", "false".to_string())]);
        let extra = BTreeMap::from([("--v".to_string(), "4".to_string())]);
        assert_eq!(render_args(defaults, &extra), ["--profiling=false", "--v=4"]);
    }
}
