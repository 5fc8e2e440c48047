//! Condition types and reasons of a HostedCluster's status.

pub const ETCD_AVAILABLE: &str = "EtcdAvailable";
pub const API_SERVER_AVAILABLE: &str = "APIServerAvailable";
pub const CONTROLLER_MANAGER_AVAILABLE: &str = "ControllerManagerAvailable";
pub const SCHEDULER_AVAILABLE: &str = "SchedulerAvailable";
pub const AVAILABLE: &str = "Available";

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

pub const PHASE_PROVISIONING: &str = "Provisioning";
pub const PHASE_AVAILABLE: &str = "Available";
pub const PHASE_DEGRADED: &str = "Degraded";
pub const PHASE_DELETING: &str = "Deleting";
