use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A workload cluster whose control plane (etcd, kube-apiserver, kube-controller-manager and
/// kube-scheduler) runs as pods in this namespace.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "nestplane.io",
    version = "v1alpha1",
    kind = "HostedCluster",
    namespaced,
    status = "HostedClusterStatus",
    shortname = "hc",
    category = "nestplane",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Available\")].status"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HostedClusterSpec {
    /// Kubernetes version of the control plane, e.g. `v1.35.4`. Supported: v1.35.x.
    /// Upgrades move forward only.
    #[x_kube(validation = Rule::new(SUPPORTED_VERSION).message("unsupported version: nestplane supports v1.35.x"))]
    #[x_kube(validation = Rule::new(VERSION_NO_DOWNGRADE).message("version cannot be downgraded"))]
    #[schemars(length(max = 16))]
    pub version: String,

    /// The control plane's etcd.
    #[serde(default)]
    pub etcd: EtcdSpec,

    /// kube-apiserver: replicas, how it is exposed, extra names and flags.
    #[serde(default)]
    pub api_server: ApiServerSpec,

    /// kube-controller-manager.
    #[serde(default)]
    pub controller_manager: ComponentSpec,

    /// kube-scheduler.
    #[serde(default)]
    pub scheduler: ComponentSpec,

    /// The hosted cluster's networks. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("network is immutable"))]
    pub network: NetworkSpec,

    /// Validity of the generated certificates.
    #[serde(default)]
    pub certificates: CertificatesSpec,

    /// Where the control-plane pods run.
    #[serde(default)]
    pub scheduling: SchedulingSpec,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    /// Replicas of one component on different nodes: `Preferred` (default) spreads them when
    /// the nodes allow it; `Required` leaves a replica Pending rather than share a node.
    #[serde(default)]
    pub pod_anti_affinity: PodAntiAffinity,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PodAntiAffinity {
    #[default]
    Preferred,
    Required,
}

/// Kubernetes minors nestplane can run (each needs an etcd image in `builders::Images`).
pub const SUPPORTED_MINORS: &[&str] = &["1.35"];

/// CEL: `version` is `v<supported minor>.<patch>`. Extend with `SUPPORTED_MINORS`.
pub(crate) const SUPPORTED_VERSION: &str = r"self.matches('^v1\\.35\\.[0-9]+$')";

/// Transition rule: compare minor, then patch (the major is fixed by the version pattern).
const VERSION_NO_DOWNGRADE: &str = "int(self.split('.')[1]) > int(oldSelf.split('.')[1]) || \
     (int(self.split('.')[1]) == int(oldSelf.split('.')[1]) && \
      int(self.split('.')[2]) >= int(oldSelf.split('.')[2]))";

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSpec {
    /// Members: 1, or 3 for a quorum that survives losing one. Fixed at creation.
    #[serde(default = "default_etcd_replicas")]
    #[x_kube(validation = Rule::new("self == 1 || self == 3").message("etcd.replicas must be 1 or 3"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("etcd.replicas cannot change after creation"))]
    pub replicas: i32,

    /// Each member's data volume.
    #[serde(default)]
    pub storage: StorageSpec,

    /// Compute resources of each member; defaults request 25m CPU and 96Mi memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

impl Default for EtcdSpec {
    fn default() -> Self {
        EtcdSpec {
            replicas: default_etcd_replicas(),
            storage: StorageSpec::default(),
            resources: None,
        }
    }
}

fn default_etcd_replicas() -> i32 {
    1
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each member's PersistentVolumeClaim, at least 256Mi. It can grow where the
    /// StorageClass allows volume expansion, and never shrink. etcd's space quota follows it.
    #[serde(default = "default_storage_size")]
    #[schemars(schema_with = "quantity_string")]
    #[x_kube(validation = Rule::new(STORAGE_SIZE_VALID).message("etcd.storage.size must be a quantity of at least 256Mi, such as 1Gi"))]
    #[x_kube(validation = Rule::new(STORAGE_SIZE_NO_SHRINK).message("etcd.storage.size cannot shrink"))]
    pub size: k8s_openapi::apimachinery::pkg::api::resource::Quantity,

    /// StorageClass of the claims; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,

    /// What happens to the claims when the HostedCluster is deleted: `Delete` (default) removes
    /// them with it, `Retain` keeps them (and the data) for a HostedCluster of the same name.
    /// Deleting the StatefulSet alone never removes them.
    #[serde(default)]
    pub deletion_policy: EtcdDeletionPolicy,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
            deletion_policy: EtcdDeletionPolicy::default(),
        }
    }
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EtcdDeletionPolicy {
    #[default]
    Delete,
    Retain,
}

const STORAGE_SIZE_VALID: &str =
    "isQuantity(self) && quantity(self).compareTo(quantity('256Mi')) >= 0";
const STORAGE_SIZE_NO_SHRINK: &str =
    "!isQuantity(oldSelf) || !isQuantity(self) || quantity(self).compareTo(quantity(oldSelf)) >= 0";

/// A Quantity as a plain string (k8s-openapi's schema allows integers and null, which a size
/// must not be: a null size would not deserialise).
fn quantity_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "maxLength": 32 })
}

fn default_storage_size() -> k8s_openapi::apimachinery::pkg::api::resource::Quantity {
    k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".to_string())
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiServerSpec {
    /// Number of kube-apiserver pods.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,

    /// How the API server is exposed to users and worker nodes.
    #[serde(default)]
    pub service: ApiServerServiceSpec,

    /// Extra names or IP addresses for the serving certificate.
    #[serde(default, rename = "extraSANs", skip_serializing_if = "Vec::is_empty")]
    pub extra_sans: Vec<String>,

    /// Extra kube-apiserver flags (`name: value`, without `--`); they override nestplane's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<String, String>,

    /// Compute resources; defaults request 50m CPU and 256Mi memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

impl Default for ApiServerSpec {
    fn default() -> Self {
        ApiServerSpec {
            replicas: 1,
            service: ApiServerServiceSpec::default(),
            extra_sans: Vec::new(),
            extra_args: BTreeMap::new(),
            resources: None,
        }
    }
}

fn default_one() -> i32 {
    1
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.port) || self.type != 'NodePort' || (self.port >= 30000 && self.port <= 32767)").message("a NodePort port must be within 30000-32767"))]
pub struct ApiServerServiceSpec {
    /// Service type of the API server: NodePort (default; the endpoint is a node address and
    /// the node port), LoadBalancer (the load balancer's address, port 6443) or ClusterIP
    /// (reachable only from inside the management cluster).
    #[serde(default, rename = "type")]
    pub type_: ApiServerServiceType,

    /// Fixed port: the node port for NodePort, else the Service port. Allocated when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,

    /// NodePort only: the address workers and users reach the node port at (a node's address,
    /// or a virtual IP in front of the nodes). When unset, nestplane picks the InternalIP of a
    /// Ready node and keeps it while that node exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub address: Option<String>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ApiServerServiceType {
    ClusterIP,
    #[default]
    NodePort,
    LoadBalancer,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Number of pods (leader election picks the active one).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 3))]
    pub replicas: i32,

    /// Extra flags (`name: value`, without `--`); they override nestplane's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<String, String>,

    /// Compute resources; defaults request 25m CPU and 64Mi memory (controller manager)
    /// or 10m CPU and 32Mi memory (scheduler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

impl Default for ComponentSpec {
    fn default() -> Self {
        ComponentSpec {
            replicas: 1,
            extra_args: BTreeMap::new(),
            resources: None,
        }
    }
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Service IP range of the hosted cluster; its first address is the `kubernetes` Service.
    #[serde(default = "default_service_cidr")]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("serviceCIDR must be a CIDR such as 10.96.0.0/12"))]
    #[schemars(length(max = 64))]
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: String,

    /// Pod IP range of the hosted cluster; nodes get /24 slices of it.
    #[serde(default = "default_pod_cidr")]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("podCIDR must be a CIDR such as 10.244.0.0/16"))]
    #[schemars(length(max = 64))]
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,

    /// DNS domain of the hosted cluster.
    #[serde(default = "default_dns_domain")]
    #[schemars(length(max = 253))]
    pub dns_domain: String,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            service_cidr: default_service_cidr(),
            pod_cidr: default_pod_cidr(),
            dns_domain: default_dns_domain(),
        }
    }
}

fn default_service_cidr() -> String {
    "10.96.0.0/12".to_string()
}
fn default_pod_cidr() -> String {
    "10.244.0.0/16".to_string()
}
fn default_dns_domain() -> String {
    "cluster.local".to_string()
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.renewBeforeDays < self.validityDays").message("renewBeforeDays must be less than validityDays"))]
pub struct CertificatesSpec {
    /// Validity of the CAs, in days. A CA is never regenerated while it is valid.
    #[serde(default = "default_ca_validity_days")]
    #[schemars(range(min = 1, max = 36500))]
    pub ca_validity_days: i32,

    /// Validity of leaf certificates and kubeconfigs, in days.
    #[serde(default = "default_validity_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub validity_days: i32,

    /// Leaf certificates are reissued (and the pods using them roll) this many days before expiry.
    #[serde(default = "default_renew_before_days")]
    #[schemars(range(min = 0, max = 3650))]
    pub renew_before_days: i32,
}

impl Default for CertificatesSpec {
    fn default() -> Self {
        CertificatesSpec {
            ca_validity_days: default_ca_validity_days(),
            validity_days: default_validity_days(),
            renew_before_days: default_renew_before_days(),
        }
    }
}

fn default_ca_validity_days() -> i32 {
    3650
}
fn default_validity_days() -> i32 {
    365
}
fn default_renew_before_days() -> i32 {
    30
}

/// Observed state of a HostedCluster.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostedClusterStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Provisioning, Available, Degraded or Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,

    /// URL of the hosted API server, as in the admin kubeconfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Kubernetes version the control plane runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,

    /// Secret in this namespace holding the admin kubeconfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_ref: Option<SecretKeyRef>,

    /// Fingerprints of the key material that must never be regenerated silently (CAs, the
    /// service-account key, the encryption key), recorded when first created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_fingerprints: Vec<KeyFingerprint>,

    /// What nestplane knows of the cluster's etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdStatus>,

    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The fingerprint of one Secret's key material.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyFingerprint {
    /// The Secret that holds it.
    pub secret_name: String,
    /// Hex SHA-256 of the certificate (DER) or of the key material.
    pub sha256: String,
    /// A certificate's expiry (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdStatus {
    /// etcd's cluster ID (hex) as first seen: a different ID means the data was lost and a new,
    /// empty etcd took its place.
    #[serde(default, rename = "clusterID", skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Capacity of the smallest member claim, as the storage system reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_capacity: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}
