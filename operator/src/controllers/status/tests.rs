//! Status computation: every condition a person reads, from observed workloads.
use super::*;

/// Every component ready but those in `except`, whatever components there are.
fn observed(
    except: impl IntoIterator<Item = (Component, WorkloadState)>,
    readyz: Result<(), String>,
) -> Observed {
    let mut workloads: Vec<_> = Component::ALL.into_iter().map(|c| (c, ready())).collect();
    for (component, state) in except {
        for (c, s) in workloads.iter_mut() {
            if *c == component {
                *s = state.clone();
            }
        }
    }
    Observed {
        namespace: "team-a".into(),
        cluster: "demo".into(),
        generation: Some(2),
        version: "v1.35.4".into(),
        endpoint: Some("https://192.0.2.2:31443".into()),
        tunnel_endpoint: None,
        kubeconfig_secret: Some("demo-kubeconfig".into()),
        workloads,
        readyz,
        pending_endpoint: None,
        error: None,
        error_reason: None,
        etcd_problem: None,
        checks: Vec::new(),
        key_fingerprints: Vec::new(),
        etcd: None,
    }
}

fn ready() -> WorkloadState {
    WorkloadState::Pods {
        ready: 1,
        updated: 1,
        desired: 1,
    }
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
    let status = compute_status(None, &observed([], Ok(())), Timestamp::UNIX_EPOCH);
    assert_eq!(get(&status, AVAILABLE).status, "True");
    assert_eq!(status.phase.as_deref(), Some(PHASE_AVAILABLE));
    assert_eq!(status.version.as_deref(), Some("v1.35.4"));
    assert_eq!(status.kubeconfig_secret_ref.expect("ref").key, "value");
}

#[test]
fn readyz_failure_makes_the_api_server_unavailable_with_the_reason() {
    let status = compute_status(
        None,
        &observed([], Err("connection refused".into())),
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
        (
            Component::Etcd,
            WorkloadState::Pods {
                ready: 0,
                updated: 0,
                desired: 1,
            },
        ),
        (Component::KubeApiserver, WorkloadState::Waiting("etcd")),
        (
            Component::KubeControllerManager,
            WorkloadState::Waiting("kube-apiserver"),
        ),
        (Component::KubeScheduler, WorkloadState::Waiting("kube-apiserver")),
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
    let first = compute_status(None, &observed([], Ok(())), t0);
    let same = compute_status(Some(&first), &observed([], Ok(())), t1);
    assert_eq!(first, same, "an unchanged observation gives an identical status");
    let degraded = compute_status(
        Some(&first),
        &observed(
            [(
                Component::Etcd,
                WorkloadState::Pods {
                    ready: 0,
                    updated: 0,
                    desired: 1,
                },
            )],
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
    let mut o = observed([], Ok(()));
    o.error = Some("apply Secret demo-ca: forbidden".into());
    let status = compute_status(None, &o, Timestamp::UNIX_EPOCH);
    let available = get(&status, AVAILABLE);
    assert_eq!(
        (available.status.as_str(), available.reason.as_str()),
        ("False", REASON_RECONCILE_ERROR)
    );
}

#[test]
fn a_load_balancer_without_address_says_what_the_api_server_waits_for() {
    let waiting = WorkloadState::Waiting("the endpoint");
    let mut o = observed(
        Component::ALL.map(|c| (c, waiting.clone())),
        Err("not probed".into()),
    );
    o.pending_endpoint = Some("Service demo-apiserver has no load-balancer address yet".into());
    let status = compute_status(None, &o, Timestamp::UNIX_EPOCH);
    let api = get(&status, API_SERVER_AVAILABLE);
    assert_eq!(api.reason, REASON_WAITING_FOR_ENDPOINT);
    assert!(api.message.contains("no load-balancer address"));
}

fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": "d", "generation": generation },
        "spec": { "replicas": 1, "selector": {}, "template": {} },
        "status": status,
    }))
    .expect("deployment")
}

#[test]
fn a_template_not_yet_observed_counts_no_pod_updated() {
    let d = deployment(
        3,
        serde_json::json!({ "observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1 }),
    );
    let state = WorkloadState::of_deployment(&d);
    assert!(state.is_ready(), "the old pod still serves");
    assert!(!state.is_rolled_out());
}

#[test]
fn an_available_old_pod_serves_but_is_not_the_new_template() {
    let d = deployment(
        2,
        serde_json::json!({ "observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1 }),
    );
    assert_eq!(
        WorkloadState::of_deployment(&d),
        WorkloadState::Pods {
            ready: 1,
            updated: 0,
            desired: 1
        }
    );
    let done = deployment(
        2,
        serde_json::json!({ "observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1 }),
    );
    assert!(WorkloadState::of_deployment(&done).is_rolled_out());
}

#[test]
fn a_statefulset_between_revisions_serves_while_it_rolls() {
    let sts: StatefulSet = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "s", "generation": 1 },
        "spec": { "replicas": 1, "selector": {}, "serviceName": "s", "template": {} },
        "status": { "observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 0,
                    "currentRevision": "a", "updateRevision": "b" }
    }))
    .expect("statefulset");
    let state = WorkloadState::of_statefulset(&sts);
    assert!(state.is_ready() && !state.is_rolled_out(), "{state:?}");
}

#[test]
fn a_rollout_keeps_the_component_available_and_says_so() {
    let rolling = WorkloadState::Pods {
        ready: 1,
        updated: 0,
        desired: 1,
    };
    let status = compute_status(
        None,
        &observed([(Component::KubeApiserver, rolling)], Ok(())),
        Timestamp::UNIX_EPOCH,
    );
    let api = get(&status, API_SERVER_AVAILABLE);
    assert_eq!(api.status, "True");
    assert_eq!(
        api.message,
        "1 pods ready; /readyz ok; rolling out a new template, 0/1 updated"
    );
    assert_eq!(get(&status, AVAILABLE).status, "True");
}

#[test]
fn a_progressing_message_says_where_to_look() {
    let starting = WorkloadState::Pods {
        ready: 0,
        updated: 0,
        desired: 1,
    };
    let status = compute_status(
        None,
        &observed([(Component::Etcd, starting)], Ok(())),
        Timestamp::UNIX_EPOCH,
    );
    assert_eq!(
        get(&status, ETCD_AVAILABLE).message,
        "0/1 etcd pods ready; see `kubectl -n team-a get pods -l \
         app.kubernetes.io/instance=demo,app.kubernetes.io/component=etcd`"
    );
}

#[test]
fn readyz_is_probed_only_once_the_api_server_pods_are_ready() {
    let not_ready = WorkloadState::Pods {
        ready: 0,
        updated: 1,
        desired: 1,
    };
    let mut workloads: std::collections::BTreeMap<Component, WorkloadState> =
        Component::ALL.iter().map(|c| (*c, ready())).collect();
    assert!(hosted_api_pods_ready(&workloads));
    // The scheduler is no reason to hold the probe back; the API server is.
    workloads.insert(Component::KubeScheduler, not_ready.clone());
    assert!(hosted_api_pods_ready(&workloads));
    workloads.insert(Component::KubeApiserver, not_ready);
    assert!(!hosted_api_pods_ready(&workloads));
    workloads.remove(&Component::KubeApiserver);
    assert!(!hosted_api_pods_ready(&workloads), "no API server at all");
}
