//! Status computed from what was observed: a pure function, so every message is unit-tested.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::*;
use crate::api::{HostedClusterStatus, SecretKeyRef};
use crate::builders::Component;

/// Readiness of one component's workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadState {
    /// Not created yet: waiting for the named dependency.
    Waiting(&'static str),
    /// `ready` of `desired` pods ready and updated.
    Pods { ready: i32, desired: i32 },
}

#[derive(Debug, Clone)]
pub struct Observed {
    pub generation: Option<i64>,
    pub version: String,
    pub endpoint: Option<String>,
    pub kubeconfig_secret: Option<String>,
    /// In component order: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.
    pub workloads: Vec<(Component, WorkloadState)>,
    /// Outcome of GET /readyz on the hosted API server.
    pub readyz: Result<(), String>,
    /// The reconcile error, if this pass failed.
    pub error: Option<String>,
}

fn condition_type(component: Component) -> &'static str {
    match component {
        Component::Etcd => ETCD_AVAILABLE,
        Component::KubeApiserver => API_SERVER_AVAILABLE,
        Component::KubeControllerManager => CONTROLLER_MANAGER_AVAILABLE,
        Component::KubeScheduler => SCHEDULER_AVAILABLE,
    }
}

fn component_condition(
    component: Component,
    state: &WorkloadState,
    readyz: &Result<(), String>,
) -> (bool, &'static str, String) {
    let what = component.as_str();
    match state {
        WorkloadState::Waiting(dependency) => {
            (false, REASON_WAITING, format!("{what} waits for {dependency}"))
        }
        WorkloadState::Pods { ready, desired } if ready < desired || *desired == 0 => (
            false,
            REASON_PROGRESSING,
            format!(
                "{ready}/{desired} {what} pods ready; see `kubectl get pods -l app.kubernetes.io/component={what}`"
            ),
        ),
        WorkloadState::Pods { ready, .. } => match (component, readyz) {
            (Component::KubeApiserver, Err(e)) => (false, REASON_READYZ_FAILED, format!("/readyz: {e}")),
            (Component::KubeApiserver, Ok(())) => {
                (true, REASON_READYZ_OK, format!("{ready} pods ready; /readyz ok"))
            }
            _ => (true, REASON_READY, format!("{ready} pods ready")),
        },
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
        let (ok, reason, message) = component_condition(*component, state, &observed.readyz);
        if !ok {
            unavailable.push(component.as_str());
        }
        conditions.push(condition(
            old,
            condition_type(*component),
            ok,
            reason,
            message,
            observed.generation,
            now,
        ));
    }
    unavailable.sort_unstable();
    let available = unavailable.is_empty() && observed.error.is_none();
    let (reason, message) = match (&observed.error, available) {
        (Some(error), _) => (REASON_RECONCILE_ERROR, error.clone()),
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
        version: available
            .then(|| observed.version.clone())
            .or_else(|| previous.and_then(|p| p.version.clone())),
        kubeconfig_secret_ref: observed.kubeconfig_secret.clone().map(|name| SecretKeyRef {
            name,
            key: crate::builders::secrets::KUBECONFIG_KEY.to_string(),
        }),
        conditions,
    }
}

fn condition(
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
mod tests {
    use super::*;

    fn observed(states: [WorkloadState; 4], readyz: Result<(), String>) -> Observed {
        Observed {
            generation: Some(2),
            version: "v1.35.4".into(),
            endpoint: Some("https://192.0.2.2:31443".into()),
            kubeconfig_secret: Some("demo-kubeconfig".into()),
            workloads: Component::ALL.into_iter().zip(states).collect(),
            readyz,
            error: None,
        }
    }

    fn ready() -> WorkloadState {
        WorkloadState::Pods { ready: 1, desired: 1 }
    }

    fn get<'a>(status: &'a HostedClusterStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition")
    }

    #[test]
    fn all_ready_and_readyz_ok_is_available() {
        let status = compute_status(
            None,
            &observed([ready(), ready(), ready(), ready()], Ok(())),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(get(&status, AVAILABLE).status, "True");
        assert_eq!(status.phase.as_deref(), Some(PHASE_AVAILABLE));
        assert_eq!(status.version.as_deref(), Some("v1.35.4"));
        assert_eq!(status.kubeconfig_secret_ref.expect("ref").key, "value");
    }

    #[test]
    fn readyz_failure_makes_the_api_server_unavailable_with_the_reason() {
        let status = compute_status(
            None,
            &observed(
                [ready(), ready(), ready(), ready()],
                Err("connection refused".into()),
            ),
            Timestamp::UNIX_EPOCH,
        );
        let api = get(&status, API_SERVER_AVAILABLE);
        assert_eq!(
            (api.status.as_str(), api.reason.as_str()),
            ("False", REASON_READYZ_FAILED)
        );
        assert!(api.message.contains("connection refused"));
        assert_eq!(get(&status, AVAILABLE).message, "not available: kube-apiserver");
        assert_eq!(status.phase.as_deref(), Some(PHASE_PROVISIONING));
        assert_eq!(status.version, None);
    }

    #[test]
    fn messages_name_unavailable_components_sorted() {
        let states = [
            WorkloadState::Pods { ready: 0, desired: 1 },
            WorkloadState::Waiting("etcd"),
            WorkloadState::Waiting("kube-apiserver"),
            WorkloadState::Waiting("kube-apiserver"),
        ];
        let status = compute_status(
            None,
            &observed(states, Err("no endpoint".into())),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(
            get(&status, AVAILABLE).message,
            "not available: etcd, kube-apiserver, kube-controller-manager, kube-scheduler"
        );
        assert_eq!(get(&status, API_SERVER_AVAILABLE).reason, REASON_WAITING);
        assert!(
            get(&status, ETCD_AVAILABLE)
                .message
                .starts_with("0/1 etcd pods ready")
        );
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0 = Timestamp::UNIX_EPOCH;
        let t1 = Timestamp::from_second(100).expect("time");
        let first = compute_status(None, &observed([ready(), ready(), ready(), ready()], Ok(())), t0);
        let same = compute_status(
            Some(&first),
            &observed([ready(), ready(), ready(), ready()], Ok(())),
            t1,
        );
        assert_eq!(first, same, "an unchanged observation gives an identical status");
        let degraded = compute_status(
            Some(&first),
            &observed(
                [
                    WorkloadState::Pods { ready: 0, desired: 1 },
                    ready(),
                    ready(),
                    ready(),
                ],
                Ok(()),
            ),
            t1,
        );
        assert_eq!(get(&degraded, AVAILABLE).last_transition_time, Time(t1));
        assert_eq!(get(&degraded, SCHEDULER_AVAILABLE).last_transition_time, Time(t0));
        assert_eq!(degraded.phase.as_deref(), Some(PHASE_DEGRADED));
        assert_eq!(
            degraded.version.as_deref(),
            Some("v1.35.4"),
            "version stays what last ran"
        );
    }

    #[test]
    fn reconcile_error_is_reported_on_available() {
        let mut o = observed([ready(), ready(), ready(), ready()], Ok(()));
        o.error = Some("apply Secret demo-ca: forbidden".into());
        let status = compute_status(None, &o, Timestamp::UNIX_EPOCH);
        let available = get(&status, AVAILABLE);
        assert_eq!(
            (available.status.as_str(), available.reason.as_str()),
            ("False", REASON_RECONCILE_ERROR)
        );
    }
}
