//! A NodePool's status from what a pass saw: counts and the conditions `Ready`,
//! `AllMachinesReady`, `UpdatingConfig` and `AutorepairEnabled`, each with a reason a user can
//! act on and a message naming the worker, the OpenStack object or the error. Pure.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use super::plan::{WorkerView, no_node_within};
use crate::api::conditions::*;
use crate::api::{NodePool, NodePoolStatus, WorkerPhase};
use crate::controllers::status::condition as make_condition;

/// What blocks the whole pool (no cluster, no cloud, ...): reason and message.
pub type Gate = (&'static str, String);

/// What a pass saw.
/// What the join preparation of a pass reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub token_expires: time::OffsetDateTime,
    pub addons: crate::controllers::hosted_objects::AddonsStatus,
}

pub struct Observed<'a> {
    pub workers: &'a [WorkerView],
    pub template_hash: &'a str,
    pub gate: Option<Gate>,
    /// None when the pass did not get as far (see `gate`).
    pub prepared: Option<Prepared>,
    /// The workers' Kubernetes version.
    pub version: Option<String>,
    /// Why the hosted cluster's Nodes could not be read, if they could not.
    pub nodes_error: Option<String>,
    pub selector: String,
}

/// The worker-level failures, each as (worker, reason, message), sorted by worker name.
fn failures(workers: &[WorkerView]) -> Vec<(&str, &str, &str)> {
    let mut out: Vec<_> = workers
        .iter()
        .filter(|w| !w.deleting)
        .filter_map(|w| {
            let (reason, message) = w.failure.as_ref()?;
            Some((w.name.as_str(), reason.as_str(), message.as_str()))
        })
        .collect();
    out.sort();
    out
}

pub fn compute_status(pool: &NodePool, observed: &Observed<'_>, now: Timestamp) -> NodePoolStatus {
    let old = pool
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = pool.metadata.generation;
    let desired = pool.spec.replicas;
    let active: Vec<&WorkerView> = observed.workers.iter().filter(|w| !w.deleting).collect();
    let count = |f: &dyn Fn(&WorkerView) -> bool| active.iter().filter(|w| f(w)).count() as i32;
    let ready = count(&|w| w.ready());
    let updated = count(&|w| w.template_hash == observed.template_hash);
    let available = count(&|w| w.ready() && w.template_hash == observed.template_hash);
    let replicas = observed.workers.len() as i32;
    let failures = failures(observed.workers);
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        make_condition(old, type_, ok, reason, message, generation, now)
    };

    let (ready_ok, ready_reason, ready_message) = if let Some((reason, message)) = &observed.gate {
        (false, *reason, message.clone())
    } else if let Some((worker, reason, message)) = failures.first() {
        let more = match failures.len() {
            1 => String::new(),
            n => format!(" (and {} more workers)", n - 1),
        };
        (false, *reason, format!("worker {worker}: {message}{more}"))
    } else if available == desired && replicas == desired {
        (
            true,
            REASON_AS_EXPECTED,
            format!("{available} of {desired} workers ready"),
        )
    } else if pool.spec.paused {
        (
            false,
            REASON_PAUSED,
            format!("paused with {replicas} workers of {desired} desired"),
        )
    } else if replicas > desired {
        let message = format!("{replicas} workers, {desired} desired: draining and deleting the others");
        (false, REASON_SCALING_DOWN, message)
    } else {
        let message = format!("{available} of {desired} workers ready: {}", summary(&active));
        (false, REASON_WAITING_FOR_WORKERS, message)
    };

    let failed: Vec<&str> = active
        .iter()
        .filter(|w| w.failed())
        .map(|w| w.name.as_str())
        .collect();
    let not_ready: Vec<String> = active
        .iter()
        .filter(|w| !w.ready())
        .map(|w| format!("{} ({})", w.name, phase_name(w.phase)))
        .collect();
    let startup_timeout = pool.spec.management.node_startup_timeout_seconds;
    let unjoined: Vec<&str> = active
        .iter()
        .filter(|w| w.node_startup_timed_out(i64::from(startup_timeout), now))
        .map(|w| w.name.as_str())
        .collect();
    let machines = if !failed.is_empty() || !unjoined.is_empty() {
        let mut problems = Vec::new();
        if !failed.is_empty() {
            problems.push(format!("failed: {}", failed.join(", ")));
        }
        if !unjoined.is_empty() {
            let late = truncated(&unjoined.iter().map(|n| n.to_string()).collect::<Vec<_>>());
            problems.push(format!("{}: {late}", no_node_within(startup_timeout)));
        }
        let reason = if failed.is_empty() {
            REASON_NODE_STARTUP_TIMEOUT
        } else {
            REASON_WORKERS_FAILED
        };
        condition(ALL_MACHINES_READY, false, reason, problems.join("; "))
    } else if not_ready.is_empty() {
        condition(
            ALL_MACHINES_READY,
            true,
            REASON_AS_EXPECTED,
            format!("{} workers ready", active.len()),
        )
    } else {
        let mut message = format!("not ready: {}", truncated(&not_ready));
        if let Some(error) = &observed.nodes_error {
            message.push_str(&format!(
                "; the hosted cluster's Nodes could not be read: {error}"
            ));
        }
        condition(ALL_MACHINES_READY, false, REASON_NODES_NOT_READY, message)
    };
    let outdated = active.len() as i32 - updated;
    let updating = if outdated > 0 {
        let message = format!(
            "{outdated} of {} workers run an older spec and are replaced",
            active.len()
        );
        condition(UPDATING_CONFIG, true, REASON_ROLLING_UPDATE, message)
    } else {
        condition(
            UPDATING_CONFIG,
            false,
            REASON_AS_EXPECTED,
            "every worker runs the current spec".into(),
        )
    };
    let management = &pool.spec.management;
    let autorepair = if management.auto_repair {
        let message = format!(
            "failed workers, Nodes NotReady for {}s and Nodes not registered within {}s of server \
             creation are replaced, {} at a time",
            management.not_ready_timeout_seconds,
            management.node_startup_timeout_seconds,
            management.max_unavailable.max(1)
        );
        condition(AUTOREPAIR_ENABLED, true, REASON_ENABLED, message)
    } else {
        condition(
            AUTOREPAIR_ENABLED,
            false,
            REASON_DISABLED,
            "spec.management.autoRepair is false".into(),
        )
    };

    NodePoolStatus {
        replicas,
        ready_replicas: ready,
        updated_replicas: updated,
        available_replicas: available,
        observed_generation: generation,
        version: observed.version.clone(),
        selector: Some(observed.selector.clone()),
        bootstrap_token_expires: match &observed.prepared {
            Some(prepared) => time_of(prepared.token_expires),
            None => pool
                .status
                .as_ref()
                .and_then(|s| s.bootstrap_token_expires.clone()),
        },
        conditions: vec![
            condition(NODE_POOL_READY, ready_ok, ready_reason, ready_message),
            machines,
            updating,
            autorepair,
            addons_condition(observed, &condition),
        ],
    }
}

/// `AddonsReady`: whether kube-proxy, CoreDNS and the CNI run; before the first worker joins
/// they have nowhere to run, which is waiting, not a failure.
fn addons_condition(
    observed: &Observed<'_>,
    condition: &impl Fn(&str, bool, &str, String) -> Condition,
) -> Condition {
    match &observed.prepared {
        Some(Prepared { addons, .. }) if addons.is_ready() => condition(
            ADDONS_READY,
            true,
            REASON_AS_EXPECTED,
            "kube-proxy, CoreDNS and the CNI are ready".into(),
        ),
        Some(Prepared { addons, .. }) if addons.waits_for_workers() => condition(
            ADDONS_READY,
            false,
            REASON_WAITING_FOR_WORKERS,
            format!("no Node to run on yet: {}", addons.message()),
        ),
        Some(Prepared { addons, .. }) => {
            condition(ADDONS_READY, false, REASON_ADDONS_NOT_READY, addons.message())
        }
        None => condition(
            ADDONS_READY,
            false,
            REASON_WAITING_FOR_WORKERS,
            "the hosted cluster is not ready for workers yet (see Ready)".into(),
        ),
    }
}

/// `at` as a Kubernetes timestamp (`None` only for a time the API could not carry).
fn time_of(at: time::OffsetDateTime) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    k8s_openapi::jiff::Timestamp::from_second(at.unix_timestamp())
        .ok()
        .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time)
}

/// How many workers are in each phase, e.g. `2 Provisioning, 1 Joining`.
fn summary(workers: &[&WorkerView]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for worker in workers {
        *counts.entry(phase_name(worker.phase)).or_insert(0) += 1;
    }
    if counts.is_empty() {
        return "no worker yet".into();
    }
    counts
        .iter()
        .map(|(phase, n)| format!("{n} {phase}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn phase_name(phase: Option<WorkerPhase>) -> &'static str {
    match phase {
        None | Some(WorkerPhase::Pending) => "Pending",
        Some(WorkerPhase::Provisioning) => "Provisioning",
        Some(WorkerPhase::Joining) => "Joining",
        Some(WorkerPhase::Running) => "Running",
        Some(WorkerPhase::Deleting) => "Deleting",
        Some(WorkerPhase::Failed) => "Failed",
    }
}

/// The first five items and how many more.
fn truncated(items: &[String]) -> String {
    let mut text = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 5 {
        text.push_str(&format!(" and {} more", items.len() - 5));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::hosted_nodes::NodeState;
    use crate::controllers::node_pool::testing::pool;

    fn view(name: &str, phase: WorkerPhase, ready: bool, failure: Option<(&str, &str)>) -> WorkerView {
        WorkerView {
            name: name.into(),
            phase: Some(phase),
            template_hash: "h".into(),
            created: None,
            deleting: false,
            node: ready.then_some(NodeState {
                ready: true,
                not_ready_since: None,
            }),
            nodes_read: true,
            server_created: None,
            failure: failure.map(|(r, m)| (r.to_string(), m.to_string())),
        }
    }

    fn observed<'a>(workers: &'a [WorkerView], gate: Option<Gate>) -> Observed<'a> {
        Observed {
            prepared: None,
            workers,
            template_hash: "h",
            gate,
            version: Some("v1.35.4".into()),
            nodes_error: None,
            selector: "nestplane.io/node-pool=workers".into(),
        }
    }

    fn find<'a>(status: &'a NodePoolStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition")
    }

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().expect("ts")
    }

    #[test]
    fn a_pool_with_all_workers_ready_is_ready_with_counts() {
        let mut pool = pool();
        pool.spec.replicas = 2;
        let workers = [
            view("w-a", WorkerPhase::Running, true, None),
            view("w-b", WorkerPhase::Running, true, None),
        ];
        let status = compute_status(&pool, &observed(&workers, None), now());
        assert_eq!(
            (status.replicas, status.ready_replicas, status.available_replicas),
            (2, 2, 2)
        );
        assert_eq!(find(&status, "Ready").status, "True");
        assert_eq!(find(&status, "AllMachinesReady").status, "True");
        assert_eq!(find(&status, "UpdatingConfig").status, "False");
        assert_eq!(find(&status, "AutorepairEnabled").reason, "Enabled");
    }

    #[test]
    fn add_ons_wait_for_workers_then_report_what_is_not_ready_and_the_token_expiry_is_shown() {
        use crate::controllers::hosted_objects::{AddonWorkload, AddonsStatus};
        let pool = pool();
        let workload = |kind: &str, name: &str, desired, ready| AddonWorkload {
            kind: kind.into(),
            name: name.into(),
            desired,
            ready,
        };
        let expires = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let with = |workloads| Observed {
            prepared: Some(Prepared {
                token_expires: expires,
                addons: AddonsStatus { workloads },
            }),
            ..observed(&[], None)
        };

        let status = compute_status(&pool, &observed(&[], None), now());
        assert_eq!(find(&status, "AddonsReady").reason, "WaitingForWorkers");

        let no_nodes = with(vec![
            workload("DaemonSet", "kube-system/kube-proxy", 0, 0),
            workload("Deployment", "kube-system/coredns", 2, 0),
        ]);
        let status = compute_status(&pool, &no_nodes, now());
        let addons = find(&status, "AddonsReady");
        assert_eq!(
            (addons.status.as_str(), addons.reason.as_str()),
            ("False", "WaitingForWorkers")
        );
        assert_eq!(
            status.bootstrap_token_expires.map(|t| t.0.as_second()),
            Some(1_800_000_000)
        );

        let partly = with(vec![
            workload("DaemonSet", "kube-system/kube-proxy", 2, 1),
            workload("Deployment", "kube-system/coredns", 2, 2),
        ]);
        let addons = find(&compute_status(&pool, &partly, now()), "AddonsReady").clone();
        assert_eq!(addons.reason, "AddonsNotReady");
        assert!(
            addons.message.contains("kube-system/kube-proxy 1/2"),
            "{}",
            addons.message
        );

        let all = with(vec![
            workload("DaemonSet", "kube-system/kube-proxy", 2, 2),
            workload("Deployment", "kube-system/coredns", 2, 1),
        ]);
        assert_eq!(
            find(&compute_status(&pool, &all, now()), "AddonsReady").status,
            "True"
        );
    }

    #[test]
    fn a_quota_failure_of_a_worker_is_the_pools_reason_naming_the_worker() {
        let mut pool = pool();
        pool.spec.replicas = 3;
        let workers = [
            view("w-a", WorkerPhase::Joining, false, None),
            view(
                "w-c",
                WorkerPhase::Pending,
                false,
                Some(("QuotaExceeded", "Quota exceeded for instances")),
            ),
        ];
        let status = compute_status(&pool, &observed(&workers, None), now());
        let ready = find(&status, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "QuotaExceeded")
        );
        assert!(
            ready.message.contains("w-c") && ready.message.contains("Quota exceeded"),
            "{}",
            ready.message
        );
        let machines = find(&status, "AllMachinesReady");
        assert!(machines.message.contains("w-a (Joining)"), "{}", machines.message);
    }

    #[test]
    fn a_pool_level_gate_comes_first_and_transition_times_hold_while_unchanged() {
        let mut pool = pool();
        let gate = (
            "ClusterNotAvailable",
            "HostedCluster demo is not Available".to_string(),
        );
        let status = compute_status(&pool, &observed(&[], Some(gate.clone())), now());
        let ready = find(&status, "Ready");
        assert_eq!(ready.reason, "ClusterNotAvailable");
        pool.status = Some(status.clone());
        let later: Timestamp = "2026-01-01T00:10:00Z".parse().expect("ts");
        let again = compute_status(&pool, &observed(&[], Some(gate)), later);
        assert_eq!(
            find(&again, "Ready").last_transition_time,
            ready.last_transition_time
        );
    }

    #[test]
    fn a_worker_past_the_startup_timeout_is_named_while_auto_repair_is_off() {
        let mut pool = pool();
        pool.spec.replicas = 2;
        pool.spec.management.auto_repair = false;
        pool.spec.management.node_startup_timeout_seconds = 30;
        let created = |s: &str| Some(s.parse::<Timestamp>().expect("ts"));
        let mut late = view("w-late", WorkerPhase::Joining, false, None);
        late.server_created = created("2025-12-31T23:59:30Z");
        let mut early = view("w-early", WorkerPhase::Joining, false, None);
        early.server_created = created("2025-12-31T23:59:31Z");
        let workers = [late, early];
        let status = compute_status(&pool, &observed(&workers, None), now());
        let machines = find(&status, "AllMachinesReady");
        assert_eq!(
            (machines.status.as_str(), machines.reason.as_str()),
            ("False", "NodeStartupTimeout")
        );
        assert_eq!(
            machines.message,
            "no Node registered within 30s of server creation: w-late"
        );
        let autorepair = find(&status, "AutorepairEnabled");
        assert_eq!(
            (autorepair.status.as_str(), autorepair.reason.as_str()),
            ("False", "Disabled")
        );

        let mut unread = workers.clone();
        unread.iter_mut().for_each(|w| w.nodes_read = false);
        let status = compute_status(&pool, &observed(&unread, None), now());
        assert_eq!(find(&status, "AllMachinesReady").reason, "NodesNotReady");
    }

    #[test]
    fn the_autorepair_condition_names_both_timeouts() {
        let mut pool = pool();
        pool.spec.management.not_ready_timeout_seconds = 120;
        pool.spec.management.node_startup_timeout_seconds = 900;
        let status = compute_status(&pool, &observed(&[], None), now());
        let message = &find(&status, "AutorepairEnabled").message;
        assert!(
            message.contains("NotReady for 120s") && message.contains("within 900s of server creation"),
            "{message}"
        );
    }
}
