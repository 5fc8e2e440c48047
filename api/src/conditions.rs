//! Condition types and reasons of a HostedCluster's status.

pub const ETCD_AVAILABLE: &str = "EtcdAvailable";
pub const API_SERVER_AVAILABLE: &str = "APIServerAvailable";
pub const CONTROLLER_MANAGER_AVAILABLE: &str = "ControllerManagerAvailable";
pub const SCHEDULER_AVAILABLE: &str = "SchedulerAvailable";
pub const AVAILABLE: &str = "Available";
/// CAs, the service-account key and the encryption key are the ones first created.
pub const KEY_MATERIAL_INTACT: &str = "KeyMaterialIntact";
/// No CA expires before a leaf it would issue.
pub const CERTIFICATE_AUTHORITIES_VALID: &str = "CertificateAuthoritiesValid";
/// The etcd claims have the size the spec asks for.
pub const ETCD_STORAGE_READY: &str = "EtcdStorageReady";

/// The component's pods are all ready at the desired version.
pub const REASON_READY: &str = "Ready";
/// Pods exist but not all are ready yet.
pub const REASON_PROGRESSING: &str = "Progressing";
/// The workload has not been created yet, typically waiting on a dependency.
pub const REASON_WAITING: &str = "WaitingForDependency";
/// The API server answers /readyz with ok.
pub const REASON_READYZ_OK: &str = "ReadyzOK";
/// The API server did not answer /readyz with ok.
pub const REASON_READYZ_FAILED: &str = "ReadyzFailed";
/// A LoadBalancer Service has no address yet.
pub const REASON_WAITING_FOR_ENDPOINT: &str = "WaitingForEndpoint";
/// Every control-plane component is available.
pub const REASON_ALL_AVAILABLE: &str = "AllComponentsAvailable";
/// At least one component is not available: the message names them.
pub const REASON_COMPONENTS_UNAVAILABLE: &str = "ComponentsUnavailable";
/// The reconcile failed: the message says which step and why.
pub const REASON_RECONCILE_ERROR: &str = "ReconcileError";
/// An object with a derived name exists but belongs to something else; it is never adopted.
pub const REASON_OBJECT_NOT_OWNED: &str = "ObjectNotOwned";
/// etcd answers with a different cluster ID than the one recorded: its data is gone.
pub const REASON_ETCD_DATA_LOST: &str = "EtcdDataLost";
/// etcd raised its NOSPACE alarm: it accepts no writes until space is freed.
pub const REASON_ETCD_NO_SPACE: &str = "EtcdNoSpace";
/// The etcd claims were kept from an earlier HostedCluster of this name (`deletionPolicy:
/// Retain`); they are used only once this HostedCluster asks for them.
pub const REASON_ETCD_CLAIMS_RETAINED: &str = "EtcdClaimsRetained";
/// Key material is as recorded.
pub const REASON_INTACT: &str = "Intact";
/// A key-material Secret is gone; nestplane does not mint a replacement on its own.
pub const REASON_KEY_MATERIAL_MISSING: &str = "KeyMaterialMissing";
/// A key-material Secret holds something else than what was recorded.
pub const REASON_KEY_MATERIAL_CHANGED: &str = "KeyMaterialChanged";
/// Every CA outlives the leaves it issues.
pub const REASON_VALID: &str = "Valid";
/// A CA expires before a new leaf's full validity: leaves are cut short to its expiry.
pub const REASON_CA_EXPIRING: &str = "CertificateAuthorityExpiring";
/// The claims are the requested size.
pub const REASON_STORAGE_AS_REQUESTED: &str = "AsRequested";
/// A larger size was requested and the claims are being expanded.
pub const REASON_STORAGE_RESIZING: &str = "Resizing";
/// A larger size was requested but the StorageClass does not allow expansion.
pub const REASON_STORAGE_RESIZE_UNSUPPORTED: &str = "ExpansionNotAllowed";

/// HostedCluster annotation: Secret names (comma-separated) whose key material may be created
/// anew although a fingerprint was recorded. Removed once honoured.
pub const ACCEPT_NEW_KEY_MATERIAL_ANNOTATION: &str = "nestplane.io/accept-new-key-material";
/// HostedCluster annotation: the etcd cluster ID (hex) to accept after `EtcdDataLost`.
pub const ACCEPT_ETCD_CLUSTER_ANNOTATION: &str = "nestplane.io/accept-etcd-cluster-id";
/// HostedCluster annotation (`"true"`): start etcd on the claims an earlier HostedCluster of
/// this name retained, with their data.
pub const ADOPT_ETCD_CLAIMS_ANNOTATION: &str = "nestplane.io/adopt-etcd-claims";
/// Claim annotation: UID of the HostedCluster that retained the claim when it was deleted.
pub const RETAINED_FROM_ANNOTATION: &str = "nestplane.io/retained-from";
/// Claim annotation: the etcd cluster ID (hex) the retained claim holds.
pub const CLAIM_ETCD_CLUSTER_ANNOTATION: &str = "nestplane.io/etcd-cluster-id";

pub const PHASE_PROVISIONING: &str = "Provisioning";
pub const PHASE_AVAILABLE: &str = "Available";
pub const PHASE_DEGRADED: &str = "Degraded";
pub const PHASE_DELETING: &str = "Deleting";

// NodePool conditions: what a user waits for (workers created, nodes joined, ready).
/// Every desired worker exists, is up to date and its Node is Ready.
pub const NODE_POOL_READY: &str = "Ready";
/// Every worker's Node is registered and Ready.
pub const ALL_MACHINES_READY: &str = "AllMachinesReady";
/// Workers made from an older spec are being replaced.
pub const UPDATING_CONFIG: &str = "UpdatingConfig";
/// Failed and NotReady workers are replaced.
pub const AUTOREPAIR_ENABLED: &str = "AutorepairEnabled";
/// kube-proxy, CoreDNS and the CNI run in the hosted cluster.
pub const ADDONS_READY: &str = "AddonsReady";
/// An add-on's pods are not all ready (named in the message).
pub const REASON_ADDONS_NOT_READY: &str = "AddonsNotReady";

/// The pool is as desired.
pub const REASON_AS_EXPECTED: &str = "AsExpected";
/// Workers are being created, are building, or wait for their Node.
pub const REASON_WAITING_FOR_WORKERS: &str = "WaitingForWorkers";
/// Workers above `replicas` are being drained and deleted.
pub const REASON_SCALING_DOWN: &str = "ScalingDown";
/// Workers of an older spec are replaced within maxSurge/maxUnavailable.
pub const REASON_ROLLING_UPDATE: &str = "RollingUpdate";
/// `spec.paused`: nothing is created or deleted.
pub const REASON_PAUSED: &str = "Paused";
/// The HostedCluster does not exist or is not Available: no worker could join it.
pub const REASON_CLUSTER_NOT_AVAILABLE: &str = "ClusterNotAvailable";
/// `spec.version` is newer than the control plane's.
pub const REASON_VERSION_NEWER_THAN_CONTROL_PLANE: &str = "VersionNewerThanControlPlane";
/// The cloud Secret is missing, lacks its key, or its clouds.yaml lacks the cloud.
pub const REASON_CLOUD_SECRET_INVALID: &str = "CloudSecretInvalid";
/// Keystone refused the credentials (401).
pub const REASON_AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
/// Nova refused a server for the project's quota (403 "Quota exceeded", 413).
pub const REASON_QUOTA_EXCEEDED: &str = "QuotaExceeded";
pub const REASON_FLAVOR_NOT_FOUND: &str = "FlavorNotFound";
pub const REASON_IMAGE_NOT_FOUND: &str = "ImageNotFound";
pub const REASON_NETWORK_NOT_FOUND: &str = "NetworkNotFound";
/// `rootVolume.volumeType` names no Cinder volume type (Nova refuses the server).
pub const REASON_VOLUME_TYPE_NOT_FOUND: &str = "VolumeTypeNotFound";
/// No answer, a timeout, or a 5xx from the cloud.
pub const REASON_CLOUD_UNREACHABLE: &str = "CloudUnreachable";
/// Any other refusal of the cloud; the message has its answer.
pub const REASON_CLOUD_REQUEST_FAILED: &str = "CloudRequestFailed";
/// The hosted cluster could not be made ready for joins.
pub const REASON_JOIN_PREPARATION_FAILED: &str = "JoinPreparationFailed";
/// Nova put the server in ERROR.
pub const REASON_SERVER_ERROR: &str = "ServerError";
/// The server was deleted behind nestplane's back.
pub const REASON_SERVER_GONE: &str = "ServerGone";
/// The server exists but its Node did not register within `nodeStartupTimeoutSeconds` of its
/// creation (shut off, or `kubeadm join` failed).
pub const REASON_NODE_STARTUP_TIMEOUT: &str = "NodeStartupTimeout";
/// At least one worker failed; auto-repair is off or waits for its turn.
pub const REASON_WORKERS_FAILED: &str = "WorkersFailed";
/// Some workers' Nodes are not registered or not Ready.
pub const REASON_NODES_NOT_READY: &str = "NodesNotReady";
pub const REASON_ENABLED: &str = "Enabled";
pub const REASON_DISABLED: &str = "Disabled";
