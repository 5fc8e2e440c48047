use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::{Message, Rule};
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
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new(NAME_SHAPE).message(NAME_SHAPE_MESSAGE),
    validation = name_endings_rule()
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

/// Longest HostedCluster name: the longest derived name, `<name>-kube-controller-manager`, must
/// leave room for a Deployment's pod-template hash, and `<name>-etcd` for a StatefulSet's
/// revision label (`<name>-etcd-<10 chars>`), both within 63 characters.
pub const MAX_NAME_LENGTH: usize = 40;

/// CEL on the whole object: the name is a DNS label (Service names are derived from it) that
/// leaves room for the derived names.
const NAME_SHAPE: &str =
    "size(self.metadata.name) <= 40 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
const NAME_SHAPE_MESSAGE: &str = "metadata.name must be at most 40 characters of lowercase letters, digits and '-', \
     starting with a letter and ending with a letter or digit: nestplane names Services, \
     workloads and Secrets after it";

/// Endings a HostedCluster name must not have. nestplane names objects `<cluster>-<suffix>`;
/// where one suffix ends with another (`etcd-ca` and `ca`), cluster `x-etcd` would get the name
/// `x-etcd-ca` that cluster `x` uses for its etcd CA. Forbidding the difference (`etcd`) as a
/// name ending makes derived names unique per namespace; `builders::tests` derives this list
/// from every object name and fails when it is incomplete.
pub const RESERVED_NAME_ENDINGS: &[&str] = &[
    "apiserver",
    "controller-manager",
    "etcd",
    "front-proxy",
    "kube",
    "scheduler",
    "tunnel-server",
];

fn name_endings_rule() -> Rule {
    let endings = RESERVED_NAME_ENDINGS.join("|");
    let listed = RESERVED_NAME_ENDINGS
        .iter()
        .map(|e| format!("-{e}"))
        .collect::<Vec<_>>()
        .join(", ");
    Rule::new(format!("!self.metadata.name.matches('-({endings})$')")).message(Message::Message(format!(
        "metadata.name must not end in {listed}: the names nestplane derives from it would \
         collide with those of another HostedCluster in the namespace"
    )))
}

/// kube-apiserver flags that carry nestplane's security and wiring: `extraArgs` may not set them.
pub const PROTECTED_API_SERVER_FLAGS: &[&str] = &[
    "advertise-address",
    "anonymous-auth",
    "audit-policy-file",
    "authentication-config",
    "authorization-config",
    "authorization-mode",
    "client-ca-file",
    "egress-selector-config-file",
    "enable-bootstrap-token-auth",
    "encryption-provider-config",
    "etcd-cafile",
    "etcd-certfile",
    "etcd-keyfile",
    "etcd-servers",
    "kubelet-certificate-authority",
    "kubelet-client-certificate",
    "kubelet-client-key",
    "proxy-client-cert-file",
    "proxy-client-key-file",
    "requestheader-allowed-names",
    "requestheader-client-ca-file",
    "secure-port",
    "service-account-issuer",
    "service-account-key-file",
    "service-account-signing-key-file",
    "service-cluster-ip-range",
    "tls-cert-file",
    "tls-private-key-file",
    "token-auth-file",
];

/// kube-controller-manager and kube-scheduler flags `extraArgs` may not set.
pub const PROTECTED_CONTROLLER_FLAGS: &[&str] = &[
    "authentication-kubeconfig",
    "authorization-kubeconfig",
    "client-ca-file",
    "cluster-cidr",
    "cluster-signing-cert-file",
    "cluster-signing-key-file",
    "kubeconfig",
    "requestheader-client-ca-file",
    "root-ca-file",
    "secure-port",
    "service-account-private-key-file",
    "service-cluster-ip-range",
];

fn api_server_extra_args(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    extra_args_schema("apiServer.extraArgs", PROTECTED_API_SERVER_FLAGS)
}

fn controller_extra_args(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    extra_args_schema("extraArgs", PROTECTED_CONTROLLER_FLAGS)
}

/// A map of flags with one CEL rule per protected flag, so the refusal names the flag. Keys may
/// carry leading dashes (`--v`), as the builders strip them.
fn extra_args_schema(field: &str, protected: &[&str]) -> schemars::Schema {
    let shape = serde_json::json!({
        "rule": "self.all(k, k.matches('^-{0,2}[a-z0-9][-a-z0-9.]*$'))",
        "message": format!("{field} keys must be flag names such as v or feature-gates"),
    });
    let rules: Vec<serde_json::Value> = std::iter::once(shape)
        .chain(protected.iter().map(|flag| {
            serde_json::json!({
                "rule": format!("!self.exists(k, k.matches('^-*{flag}$'))"),
                "message": format!(
                    "{field} cannot set --{flag}: nestplane sets it for the cluster's security or wiring"
                ),
            })
        }))
        .collect();
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": { "type": "string", "maxLength": 4096 },
        "x-kubernetes-validations": rules,
    })
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

const STORAGE_SIZE_VALID: &str = "isQuantity(self) && quantity(self).compareTo(quantity('256Mi')) >= 0";
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

    /// Extra kube-apiserver flags (`name: value`, without `--`); they override nestplane's,
    /// except those in [`PROTECTED_API_SERVER_FLAGS`], which are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "api_server_extra_args")]
    pub extra_args: BTreeMap<String, String>,

    /// Compute resources; defaults request 50m CPU and 256Mi memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,

    /// How the API server reaches nodes, pods and Services of the hosted cluster (kubelets for
    /// logs, exec and port-forward; webhooks; aggregated APIs).
    #[serde(default)]
    pub tunnel: TunnelSpec,
}

impl Default for ApiServerSpec {
    fn default() -> Self {
        ApiServerSpec {
            replicas: 1,
            service: ApiServerServiceSpec::default(),
            extra_sans: Vec::new(),
            extra_args: BTreeMap::new(),
            resources: None,
            tunnel: TunnelSpec::default(),
        }
    }
}

/// The reverse tunnel from the API server to the workers: a tunnel server beside each
/// kube-apiserver (its egress selector dials through it) and an agent on every worker that
/// dials out to it, so workers behind NAT or a firewall need no inbound route.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TunnelSpec {
    /// false: the API server dials nodes, pods and Services directly, which works only when the
    /// management cluster can route to the worker network.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for TunnelSpec {
    fn default() -> Self {
        TunnelSpec { enabled: true }
    }
}

fn default_true() -> bool {
    true
}

fn default_one() -> i32 {
    1
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.port) || self.type != 'NodePort' || (self.port >= 30000 && self.port <= 32767)").message("a NodePort port must be within 30000-32767"))]
#[x_kube(validation = Rule::new("!has(self.address) || self.type == 'NodePort'").message("apiServer.service.address applies to NodePort only: a LoadBalancer's address comes from the load balancer, a ClusterIP's from the Service"))]
#[x_kube(validation = Rule::new(format!("!has(self.address) || isIP(self.address) || self.address.{}", &DNS_NAME["self.".len()..])).message("apiServer.service.address must be an IP address or a DNS name"))]
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

    /// Extra flags (`name: value`, without `--`); they override nestplane's, except those in
    /// [`PROTECTED_CONTROLLER_FLAGS`], which are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "controller_extra_args")]
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
#[x_kube(validation = Rule::new(CIDRS_DISJOINT).message("serviceCIDR and podCIDR must not overlap"))]
pub struct NetworkSpec {
    /// IPv4 Service range of the hosted cluster, /12 to /24; its first address is the
    /// `kubernetes` Service.
    #[serde(default = "default_service_cidr")]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).ip().family() == 4").message("serviceCIDR must be an IPv4 CIDR such as 10.96.0.0/12 (IPv6 is not supported yet)"))]
    #[x_kube(validation = Rule::new(CIDR_MASKED).message("serviceCIDR must not have host bits set: 10.96.0.0/12, not 10.96.0.1/12"))]
    #[x_kube(validation = Rule::new("!isCIDR(self) || (cidr(self).prefixLength() >= 12 && cidr(self).prefixLength() <= 24)").message("serviceCIDR must be a /12 to /24 range"))]
    #[schemars(length(max = 64))]
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: String,

    /// IPv4 pod range of the hosted cluster, /8 to /22: each node gets a /24 slice of it.
    #[serde(default = "default_pod_cidr")]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).ip().family() == 4").message("podCIDR must be an IPv4 CIDR such as 10.244.0.0/16 (IPv6 is not supported yet)"))]
    #[x_kube(validation = Rule::new(CIDR_MASKED).message("podCIDR must not have host bits set: 10.244.0.0/16, not 10.244.1.0/16"))]
    #[x_kube(validation = Rule::new("!isCIDR(self) || (cidr(self).prefixLength() >= 8 && cidr(self).prefixLength() <= 22)").message("podCIDR must be a /8 to /22 range: each node gets a /24 of it, so a smaller range leaves room for too few nodes"))]
    #[schemars(length(max = 64))]
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,

    /// DNS domain of the hosted cluster, e.g. `cluster.local`.
    #[serde(default = "default_dns_domain")]
    #[x_kube(validation = Rule::new(DNS_NAME).message("dnsDomain must be a lowercase DNS name such as cluster.local"))]
    #[schemars(length(max = 253))]
    pub dns_domain: String,

    /// The pod network nestplane installs in the hosted cluster once it has workers: `flannel`
    /// (VXLAN over the workers' network, default), or `none` to bring your own CNI.
    #[serde(default)]
    pub cni: Cni,
}

/// CEL: a CIDR without host bits (`10.96.0.1/12` would put the `kubernetes` Service elsewhere
/// than users expect).
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Cni {
    #[default]
    Flannel,
    None,
}

const CIDR_MASKED: &str = "!isCIDR(self) || cidr(self) == cidr(self).masked()";

/// CEL: neither range contains the other's network address (both are masked CIDRs).
const CIDRS_DISJOINT: &str = "!isCIDR(self.serviceCIDR) || !isCIDR(self.podCIDR) || \
     !(cidr(self.serviceCIDR).containsIP(cidr(self.podCIDR).masked().ip()) || \
       cidr(self.podCIDR).containsIP(cidr(self.serviceCIDR).masked().ip()))";

/// CEL: a lowercase DNS name of dot-separated labels.
const DNS_NAME: &str =
    "self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$')";

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            service_cidr: default_service_cidr(),
            pod_cidr: default_pod_cidr(),
            dns_domain: default_dns_domain(),
            cni: Cni::default(),
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
#[x_kube(validation = Rule::new("self.caValidityDays > self.validityDays").message("caValidityDays must be longer than validityDays: a certificate never outlives the CA that issued it"))]
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

    /// URL the workers' tunnel agents dial (the API server's host, the tunnel's own port);
    /// unset while the tunnel is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_endpoint: Option<String>,

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
    /// nestplane wrote its marker key into this etcd: a member that answers with the recorded
    /// cluster ID but without the marker was started again on an empty claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marked: Option<bool>,
    /// Capacity of the smallest member claim, as the storage system reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_capacity: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}
