use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Worker nodes of a HostedCluster: OpenStack servers that join it with `kubeadm join`.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "nestplane.io",
    version = "v1alpha1",
    kind = "NodePool",
    namespaced,
    status = "NodePoolStatus",
    shortname = "np",
    category = "nestplane",
    derive = "PartialEq",
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}"#,
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.clusterName"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new(NODE_POOL_NAME_SHAPE).message(NODE_POOL_NAME_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(FIXED_ADDRESS_ONE_WORKER).message(FIXED_ADDRESS_ONE_WORKER_MESSAGE))]
pub struct NodePoolSpec {
    /// The HostedCluster, in this namespace, whose workers these are. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterName is immutable"))]
    #[schemars(length(min = 1, max = 40))]
    pub cluster_name: String,

    /// Number of workers. `kubectl scale np/<name> --replicas=N` sets it.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 500))]
    pub replicas: i32,

    /// Kubernetes version of the kubelets, e.g. `v1.35.4`; the control plane's when unset.
    /// Never newer than the control plane's: the controller refuses such a pool with a condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::hosted_cluster::SUPPORTED_VERSION).message("unsupported version: nestplane supports v1.35.x"))]
    #[schemars(length(max = 16))]
    pub version: Option<String>,

    /// Where and how the servers are created.
    pub openstack: OpenStackMachineSpec,

    /// Labels every Node of the pool gets at registration.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "node_labels_schema")]
    pub node_labels: BTreeMap<String, String>,

    /// Taints every Node of the pool gets at registration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub node_taints: Vec<NodeTaint>,

    /// Extra kubelet flags (`name: value`, without `--`), passed by `kubeadm join`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "kubelet_extra_args_schema")]
    pub kubelet_extra_args: BTreeMap<String, String>,

    /// Registry mirrors the workers' containerd pulls through, for clouds that have one (or a
    /// pull-through cache). A node's images come from `registry.k8s.io` (kube-proxy, CoreDNS,
    /// pause), `ghcr.io` (flannel) and `docker.io`. Changing them replaces the workers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["registry"]))]
    pub registry_mirrors: Vec<RegistryMirror>,

    /// Replacement and repair of workers.
    #[serde(default)]
    pub management: ManagementSpec,

    /// While true the controller creates, replaces and deletes no server (status is still kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

fn default_replicas() -> i32 {
    1
}

/// A fixed `ipAddress` belongs to one port, hence to one worker at a time: at most one replica,
/// and rollouts delete the old worker before making the new one.
const FIXED_ADDRESS_ONE_WORKER: &str = "!has(self.openstack.ports) || \
     self.openstack.ports.all(p, !has(p.fixedIps) || p.fixedIps.all(f, !has(f.ipAddress))) || \
     (self.replicas <= 1 && has(self.management) && self.management.maxSurge == 0)";
const FIXED_ADDRESS_ONE_WORKER_MESSAGE: &str = "openstack.ports[].fixedIps[].ipAddress gives every worker the same address: \
     it needs replicas <= 1 and management.maxSurge 0 (leave ipAddress out to let Neutron pick from the subnet)";

/// NodePool names: DNS labels that leave room for `<pool>-<5 chars>` server and Node names.
pub const MAX_NODE_POOL_NAME_LENGTH: usize = 50;
const NODE_POOL_NAME_SHAPE: &str =
    "size(self.metadata.name) <= 50 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
const NODE_POOL_NAME_MESSAGE: &str = "metadata.name must be at most 50 characters of lowercase letters, digits and '-', \
     starting with a letter and ending with a letter or digit: workers and their Nodes are named after it";

/// The OpenStack side of a worker, as Cluster API's OpenStackMachineTemplate would hold it.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.networks) && size(self.networks) > 0) || (has(self.ports) && size(self.ports) > 0)").message("openstack needs networks or ports: a server without a network cannot join"))]
#[x_kube(validation = Rule::new("!has(self.networks) || !has(self.ports) || size(self.networks) == 0 || size(self.ports) == 0").message("openstack.networks and openstack.ports are exclusive: name networks, or ports with fixed subnets"))]
pub struct OpenStackMachineSpec {
    /// A Secret in this namespace holding a `clouds.yaml`.
    pub cloud_secret_ref: CloudSecretRef,

    /// The cloud, by its name in the `clouds.yaml`.
    #[serde(default = "default_cloud")]
    #[schemars(length(min = 1, max = 253))]
    pub cloud: String,

    /// Nova flavor, by name or ID.
    #[schemars(length(min = 1, max = 255))]
    pub flavor: String,

    /// Glance image, by name or ID.
    #[schemars(length(min = 1, max = 255))]
    pub image: String,

    /// Neutron networks (name or ID), one port on each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub networks: Vec<String>,

    /// Ports with fixed subnets, instead of `networks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub ports: Vec<PortSpec>,

    /// Security groups (name or ID) of every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub security_groups: Vec<String>,

    /// Nova keypair injected into the servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub key_name: Option<String>,

    /// Availability zone of the servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub availability_zone: Option<String>,

    /// Spread the servers over hypervisors with a server group of this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_group_policy: Option<ServerGroupPolicy>,

    /// Boot from a Cinder volume of this size instead of the flavor's disk: Nova makes it from the
    /// image while it builds the server and deletes it with the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_volume: Option<RootVolume>,

    /// Nova metadata on every server (nestplane adds its own `nestplane.io/*` keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "server_metadata_schema")]
    pub metadata: BTreeMap<String, String>,

    /// Nova tags on every server (nestplane adds its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 40))]
    pub tags: Vec<String>,
}

fn default_cloud() -> String {
    "openstack".to_string()
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CloudSecretRef {
    /// Secret name, in the NodePool's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the `clouds.yaml` in the Secret.
    #[serde(default = "default_clouds_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_clouds_key() -> String {
    "clouds.yaml".to_string()
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// Network, by name or ID.
    #[schemars(length(min = 1, max = 255))]
    pub network: String,
    /// Fixed IPs of the port, each from a subnet (name or ID) and optionally a given address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub fixed_ips: Vec<FixedIp>,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FixedIp {
    #[schemars(length(min = 1, max = 255))]
    pub subnet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isIP(self)").message("ipAddress must be an IP address"))]
    #[schemars(length(max = 64))]
    pub ip_address: Option<String>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ServerGroupPolicy {
    AntiAffinity,
    SoftAntiAffinity,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RootVolume {
    /// Size in GiB.
    #[schemars(range(min = 1, max = 16384))]
    pub size_gi_b: i32,
    /// Cinder volume type; the cloud's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub volume_type: Option<String>,
}

/// Where containerd pulls one upstream registry's images from: the mirrors in order, then the
/// registry itself (written to `/etc/containerd/certs.d/<registry>/hosts.toml` on each worker).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegistryMirror {
    /// The upstream registry as image references name it: `registry.k8s.io`, `ghcr.io`,
    /// `docker.io`, `registry.example.com:5000`.
    #[x_kube(validation = Rule::new(REGISTRY_HOST_SHAPE).message("registry must be a registry host such as registry.k8s.io or registry.example.com:5000, without a scheme or path"))]
    #[schemars(length(min = 1, max = 253))]
    pub registry: String,

    /// Mirror endpoints, `https://host[:port][/path]`, tried in this order. containerd appends
    /// the registry API's `/v2` to the path.
    #[schemars(schema_with = "mirror_endpoints_schema")]
    pub endpoints: Vec<String>,

    /// PEM certificates of the CAs that sign the endpoints' serving certificates, for private
    /// mirrors; without it containerd trusts the worker image's system CAs. Written to
    /// `/etc/containerd/certs.d/<registry>/ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.contains('-----BEGIN CERTIFICATE-----')").message("caBundle must hold PEM certificates (-----BEGIN CERTIFICATE-----)"))]
    #[schemars(length(min = 1, max = 16384))]
    pub ca_bundle: Option<String>,
}

const REGISTRY_HOST_SHAPE: &str =
    "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[0-9]{1,5})?$')";

fn mirror_endpoints_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": 8,
        "items": {
            "type": "string",
            "maxLength": 2048,
            "x-kubernetes-validations": [{
                "rule": "isURL(self) && self.matches('^https://[^/?#@\\\\s]+(/[^?#\\\\s]*)?$')",
                "message": "a mirror endpoint must be an https URL such as https://mirror.example.com or https://mirror.example.com/k8s, without credentials, query or fragment",
            }],
        },
    })
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeTaint {
    #[schemars(length(min = 1, max = 316))]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub value: Option<String>,
    pub effect: TaintEffect,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TaintEffect {
    #[default]
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxSurge > 0 || self.maxUnavailable > 0").message("maxSurge and maxUnavailable cannot both be 0: a rollout could then never replace a worker"))]
pub struct ManagementSpec {
    /// Replace a worker whose server is in ERROR or gone, whose Node stays NotReady past
    /// `notReadyTimeoutSeconds`, or whose Node does not register within
    /// `nodeStartupTimeoutSeconds`.
    #[serde(default = "default_true")]
    pub auto_repair: bool,

    /// How long a Node may be NotReady before auto-repair replaces it.
    #[serde(default = "default_not_ready_timeout")]
    #[schemars(range(min = 30, max = 86400))]
    pub not_ready_timeout_seconds: i32,

    /// How long a worker's Node may take to register, counted from the creation of its server
    /// (not of the Worker: a Worker may wait long for its server in a cloud outage). A server
    /// that is shut off, or whose `kubeadm join` fails, gets no Node: past this timeout the
    /// worker reports `NodeStartupTimeout` and auto-repair replaces it. Leave room for the
    /// image's boot and the pulls of a node's first images (Cluster API's `nodeStartupTimeout`
    /// defaults to 10 minutes).
    #[serde(default = "default_node_startup_timeout")]
    #[schemars(range(min = 30, max = 86400))]
    pub node_startup_timeout_seconds: i32,

    /// Workers created above `replicas` during a rollout.
    #[serde(default = "default_max_surge")]
    #[schemars(range(min = 0, max = 100))]
    pub max_surge: i32,

    /// Workers that may be missing or being replaced at once (rollout and auto-repair).
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub max_unavailable: i32,

    /// How long a drain may wait for PodDisruptionBudgets before the Node is deleted anyway.
    #[serde(default = "default_drain_timeout")]
    #[schemars(range(min = 0, max = 86400))]
    pub drain_timeout_seconds: i32,
}

impl Default for ManagementSpec {
    fn default() -> Self {
        ManagementSpec {
            auto_repair: true,
            not_ready_timeout_seconds: default_not_ready_timeout(),
            node_startup_timeout_seconds: default_node_startup_timeout(),
            max_surge: default_max_surge(),
            max_unavailable: 0,
            drain_timeout_seconds: default_drain_timeout(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_not_ready_timeout() -> i32 {
    300
}
fn default_node_startup_timeout() -> i32 {
    1200
}
fn default_max_surge() -> i32 {
    1
}
fn default_drain_timeout() -> i32 {
    300
}

/// Label keys and values as Kubernetes allows them.
fn node_labels_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": { "type": "string", "maxLength": 63 },
        "x-kubernetes-validations": [{
            "rule": "self.all(k, k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",
            "message": "nodeLabels keys must be label keys such as example.com/role",
        }],
    })
}

fn kubelet_extra_args_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": { "type": "string", "maxLength": 4096 },
        "x-kubernetes-validations": [
            {
                "rule": "self.all(k, k.matches('^-{0,2}[a-z0-9][-a-z0-9.]*$'))",
                "message": "kubeletExtraArgs keys must be flag names such as v or max-pods",
            },
            {
                "rule": "!self.exists(k, k.matches('^-*(node-labels|register-with-taints|provider-id|hostname-override|bootstrap-kubeconfig|kubeconfig)$'))",
                "message": "kubeletExtraArgs cannot set node-labels, register-with-taints, provider-id, hostname-override or the kubeconfigs: use nodeLabels and nodeTaints, nestplane sets the rest",
            },
        ],
    })
}

fn server_metadata_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": { "type": "string", "maxLength": 255 },
        "x-kubernetes-validations": [{
            "rule": "!self.exists(k, k.startsWith('nestplane.io/'))",
            "message": "openstack.metadata keys under nestplane.io/ are nestplane's own",
        }],
    })
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolStatus {
    /// Workers that exist (any phase); the scale subresource reads it.
    #[serde(default)]
    pub replicas: i32,
    /// Workers whose Node is Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Workers made from the pool's current spec.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Workers Ready and up to date.
    #[serde(default)]
    pub available_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Kubernetes version the workers run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Label selector of the pool's Workers, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// When the pool's current bootstrap token expires (it is rotated before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_token_expires: Option<Time>,
    /// `Ready`, `AllMachinesReady`, `UpdatingConfig`, `AutorepairEnabled`, `AddonsReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One worker of a NodePool: its OpenStack server and the Node it registers as. Delete it to
/// replace that worker. (Named so that it does not collide with Cluster API's `machines`.)
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "nestplane.io",
    version = "v1alpha1",
    kind = "Worker",
    namespaced,
    status = "WorkerStatus",
    shortname = "wk",
    category = "nestplane",
    derive = "PartialEq",
    printcolumn = r#"{"name":"NodePool","type":"string","jsonPath":".spec.nodePool"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".status.nodeName"}"#,
    printcolumn = r#"{"name":"Ready","type":"boolean","jsonPath":".status.nodeReady"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.kubeletVersion"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.failureReason"}"#,
    printcolumn = r#"{"name":"Server","type":"string","jsonPath":".status.serverId","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a Worker's spec is immutable: delete the Worker to replace it"))]
pub struct WorkerSpec {
    /// The NodePool this worker belongs to.
    #[schemars(length(min = 1, max = 63))]
    pub node_pool: String,
    /// The HostedCluster it joins.
    #[schemars(length(min = 1, max = 63))]
    pub cluster_name: String,
    /// Digest of the pool's join-relevant spec (image, flavor, version, labels, ...) this worker
    /// was made from: a worker with another digest is replaced in a rollout.
    #[schemars(length(max = 64))]
    pub template_hash: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WorkerPhase>,
    /// Nova server ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    /// Nova's status of the server (BUILD, ACTIVE, ERROR, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_status: Option<String>,
    /// The Node's name in the hosted cluster (the server's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The server's fixed IPs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// A machine-readable reason when the worker failed, e.g. `ServerError`, `QuotaExceeded`,
    /// `NodeStartupTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    /// When its server was created (Nova's `created`; when Nova does not say, when the Worker
    /// first recorded the server): the clock of `nodeStartupTimeoutSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_created: Option<Time>,
    /// When the Node was last seen NotReady after having been Ready (auto-repair's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ready_since: Option<Time>,
    /// Whether the Node's `Ready` condition is True, as last seen; unset while no Node is seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_ready: Option<bool>,
    /// The kubelet version the Node reports, e.g. `v1.35.4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_version: Option<String>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerPhase {
    /// Waiting for its server to be created.
    Pending,
    /// The server is building.
    Provisioning,
    /// The server is ACTIVE; its Node has not registered yet.
    Joining,
    /// Its Node is registered (Ready or not: see the Node).
    Running,
    /// Being drained and deleted.
    Deleting,
    /// The server failed (ERROR) or vanished; auto-repair replaces the worker.
    Failed,
}
