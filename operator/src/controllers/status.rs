//! Status computed from what was observed: a pure function, so every message is unit-tested.
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::*;
use crate::api::{EtcdStatus, HostedCluster, HostedClusterStatus, KeyFingerprint, SecretKeyRef};
use crate::builders::kubeconfig::KUBECONFIG_KEY;
use crate::builders::{Availability, Component, Workload};

/// Readiness of one component's workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadState {
    /// Not created yet: waiting for the named dependency.
    Waiting(&'static str),
    /// `ready` of `desired` pods serve; `updated` of them run the current template.
    Pods { ready: i32, updated: i32, desired: i32 },
}

/// Whether the workloads that serve the hosted API ([`Availability::HostedApi`]) are all ready,
/// so that probing `/readyz` can tell anything.
pub fn hosted_api_pods_ready<'a>(
    workloads: impl IntoIterator<Item = (&'a Component, &'a WorkloadState)>,
) -> bool {
    let mut serving = workloads
        .into_iter()
        .filter(|(component, _)| component.def().availability == Availability::HostedApi)
        .peekable();
    serving.peek().is_some() && serving.all(|(_, state)| state.is_ready())
}

impl WorkloadState {
    /// Enough pods serve, whichever template they run: a rollout that keeps old pods until
    /// new ones are ready does not make a component unavailable.
    pub fn is_ready(&self) -> bool {
        matches!(self, WorkloadState::Pods { ready, desired, .. } if ready >= desired && *desired > 0)
    }

    /// Every desired pod runs the current template and is ready.
    pub fn is_rolled_out(&self) -> bool {
        matches!(self, WorkloadState::Pods { updated, desired, .. } if updated >= desired)
    }

    pub fn of_statefulset(sts: &StatefulSet) -> WorkloadState {
        let desired = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = sts.status.clone().unwrap_or_default();
        let ready = status.ready_replicas.unwrap_or(0);
        let current = status.observed_generation >= sts.metadata.generation;
        let updated = match (current, status.update_revision == status.current_revision) {
            (false, _) => 0,
            (true, true) => ready,
            (true, false) => status.updated_replicas.unwrap_or(0).min(ready),
        };
        WorkloadState::Pods {
            ready,
            updated,
            desired,
        }
    }

    /// While old pods remain they may be the available ones, so they do not count as updated.
    pub fn of_deployment(d: &Deployment) -> WorkloadState {
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        let available = status.available_replicas.unwrap_or(0);
        let current = status.observed_generation >= d.metadata.generation;
        let new_pods = status.updated_replicas.unwrap_or(0);
        let old_pods = (status.replicas.unwrap_or(0) - new_pods).max(0);
        let updated = if current {
            (available - old_pods).clamp(0, new_pods)
        } else {
            0
        };
        WorkloadState::Pods {
            ready: available,
            updated,
            desired,
        }
    }

    pub fn of_workload(workload: &Workload) -> WorkloadState {
        match workload {
            Workload::StatefulSet(sts) => WorkloadState::of_statefulset(sts),
            Workload::Deployment(d) => WorkloadState::of_deployment(d),
        }
    }
}

/// A condition beyond the components' own: key material, CA expiry, etcd storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
    /// A failed check makes the cluster not Available (and names it in `Available`'s message).
    pub blocks_available: bool,
}

#[derive(Debug, Clone)]
pub struct Observed {
    pub namespace: String,
    pub cluster: String,
    pub generation: Option<i64>,
    pub version: String,
    pub endpoint: Option<String>,
    /// Where tunnel agents dial; kept from the last status by passes that did not read it.
    pub tunnel_endpoint: Option<String>,
    pub kubeconfig_secret: Option<String>,
    /// In start order (`Component::ALL`): conditions are reported in this order.
    pub workloads: Vec<(Component, WorkloadState)>,
    /// Outcome of GET /readyz on the hosted API server.
    pub readyz: Result<(), String>,
    /// Why the endpoint is not known yet (a LoadBalancer without an address).
    pub pending_endpoint: Option<String>,
    /// The reconcile error, if this pass failed.
    pub error: Option<String>,
    /// Reason for `error` on `Available` (`ReconcileError` unless the error says more).
    pub error_reason: Option<&'static str>,
    /// Why etcd is not available although its pods are ready (data lost, out of space).
    pub etcd_problem: Option<(&'static str, String)>,
    /// Further conditions, in the order they are reported.
    pub checks: Vec<Check>,
    /// Key-material fingerprints to record.
    pub key_fingerprints: Vec<KeyFingerprint>,
    /// What is known of etcd.
    pub etcd: Option<EtcdStatus>,
}

impl Observed {
    /// Before any workload is looked at: everything waits for the endpoint.
    pub fn nothing_yet(hc: &HostedCluster, endpoint: Option<String>) -> Observed {
        Observed {
            namespace: kube::ResourceExt::namespace(hc).unwrap_or_default(),
            cluster: kube::ResourceExt::name_any(hc),
            generation: hc.metadata.generation,
            version: hc.spec.version.clone(),
            endpoint,
            // A pass that fails or waits keeps it: the agents keep dialing where they do.
            tunnel_endpoint: hc
                .spec
                .api_server
                .tunnel
                .enabled
                .then(|| hc.status.as_ref().and_then(|s| s.tunnel_endpoint.clone()))
                .flatten(),
            kubeconfig_secret: None,
            workloads: Component::ALL
                .iter()
                .map(|c| (*c, WorkloadState::Waiting("the endpoint")))
                .collect(),
            readyz: Err("not probed".into()),
            pending_endpoint: None,
            error: None,
            error_reason: None,
            etcd_problem: None,
            checks: Vec::new(),
            key_fingerprints: hc
                .status
                .as_ref()
                .map(|s| s.key_fingerprints.clone())
                .unwrap_or_default(),
            etcd: hc.status.as_ref().and_then(|s| s.etcd.clone()),
        }
    }
}

fn component_condition(
    component: Component,
    state: &WorkloadState,
    observed: &Observed,
) -> (bool, &'static str, String) {
    let what = component.as_str();
    let availability = component.def().availability;
    if let (Availability::HostedApi, Some(why)) = (availability, &observed.pending_endpoint) {
        return (false, REASON_WAITING_FOR_ENDPOINT, why.clone());
    }
    if let (Availability::ClusterData, Some((reason, why))) = (availability, &observed.etcd_problem) {
        return (false, reason, why.clone());
    }
    let pods = format!(
        "kubectl -n {} get pods -l app.kubernetes.io/instance={},app.kubernetes.io/component={what}",
        observed.namespace, observed.cluster
    );
    match state {
        WorkloadState::Waiting(dependency) => {
            (false, REASON_WAITING, format!("{what} waits for {dependency}"))
        }
        WorkloadState::Pods { ready, desired, .. } if !state.is_ready() => (
            false,
            REASON_PROGRESSING,
            format!("{ready}/{desired} {what} pods ready; see `{pods}`"),
        ),
        WorkloadState::Pods {
            ready,
            updated,
            desired,
        } => {
            let rollout = if state.is_rolled_out() {
                String::new()
            } else {
                format!("; rolling out a new template, {updated}/{desired} updated")
            };
            match (availability, &observed.readyz) {
                (Availability::HostedApi, Err(e)) => (false, REASON_READYZ_FAILED, format!("/readyz: {e}")),
                (Availability::HostedApi, Ok(())) => (
                    true,
                    REASON_READYZ_OK,
                    format!("{ready} pods ready; /readyz ok{rollout}"),
                ),
                _ => (true, REASON_READY, format!("{ready} pods ready{rollout}")),
            }
        }
    }
}

/// The new status. Conditions whose status did not flip keep their `lastTransitionTime`.
pub fn compute_status(
    previous: Option<&HostedClusterStatus>,
    observed: &Observed,
    now: Timestamp,
) -> HostedClusterStatus {
    let old = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let mut conditions = Vec::new();
    let mut unavailable = Vec::new();
    for (component, state) in &observed.workloads {
        let (ok, reason, message) = component_condition(*component, state, observed);
        if !ok {
            unavailable.push(component.as_str());
        }
        conditions.push(condition(
            old,
            component.def().condition_type,
            ok,
            reason,
            message,
            observed.generation,
            now,
        ));
    }
    for check in &observed.checks {
        if !check.ok && check.blocks_available {
            unavailable.push(check.type_);
        }
        conditions.push(condition(
            old,
            check.type_,
            check.ok,
            check.reason,
            check.message.clone(),
            observed.generation,
            now,
        ));
    }
    unavailable.sort_unstable();
    let available = unavailable.is_empty() && observed.error.is_none();
    let (reason, message) = match (&observed.error, available) {
        (Some(error), _) => (
            observed.error_reason.unwrap_or(REASON_RECONCILE_ERROR),
            error.clone(),
        ),
        (None, true) => (REASON_ALL_AVAILABLE, "the hosted API server is ready".to_string()),
        (None, false) => (
            REASON_COMPONENTS_UNAVAILABLE,
            format!("not available: {}", unavailable.join(", ")),
        ),
    };
    conditions.push(condition(
        old,
        AVAILABLE,
        available,
        reason,
        message,
        observed.generation,
        now,
    ));

    let was_available = old.iter().any(|c| c.type_ == AVAILABLE && c.status == "True");
    let phase = match (
        available,
        was_available || previous.and_then(|p| p.phase.as_deref()) == Some(PHASE_DEGRADED),
    ) {
        (true, _) => PHASE_AVAILABLE,
        (false, true) => PHASE_DEGRADED,
        (false, false) => PHASE_PROVISIONING,
    };
    HostedClusterStatus {
        observed_generation: observed.generation,
        phase: Some(phase.to_string()),
        endpoint: observed.endpoint.clone(),
        tunnel_endpoint: observed.tunnel_endpoint.clone(),
        version: available
            .then(|| observed.version.clone())
            .or_else(|| previous.and_then(|p| p.version.clone())),
        kubeconfig_secret_ref: observed.kubeconfig_secret.clone().map(|name| SecretKeyRef {
            name,
            key: KUBECONFIG_KEY.to_string(),
        }),
        key_fingerprints: observed.key_fingerprints.clone(),
        etcd: observed.etcd.clone(),
        conditions,
    }
}

/// A condition that keeps its `lastTransitionTime` from `old` while its status stays the same.
pub(crate) fn condition(
    old: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests;
