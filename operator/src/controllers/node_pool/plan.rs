//! Which Workers to create and which to delete, from the pool's spec and its Workers as they
//! are: scale up and down, rolling replacement within maxSurge/maxUnavailable, auto-repair.
//! Pure: the controller observes, this decides, the controller acts.
use k8s_openapi::jiff::Timestamp;

use crate::api::{ManagementSpec, NodePoolSpec, WorkerPhase};

use super::super::hosted_nodes::NodeState;

/// A Worker as the plan sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerView {
    pub name: String,
    pub phase: Option<WorkerPhase>,
    pub template_hash: String,
    pub created: Option<Timestamp>,
    /// Already being deleted.
    pub deleting: bool,
    /// Its Node, if registered.
    pub node: Option<NodeState>,
    /// Whether this pass read the hosted cluster's Nodes: when it could not, `node: None` says
    /// nothing about the worker.
    pub nodes_read: bool,
    /// When its server was created; `None` while it has none.
    pub server_created: Option<Timestamp>,
    /// `failureReason` and `failureMessage` of its status.
    pub failure: Option<(String, String)>,
}

impl WorkerView {
    pub fn failed(&self) -> bool {
        self.phase == Some(WorkerPhase::Failed)
    }
    pub fn ready(&self) -> bool {
        self.node.as_ref().is_some_and(|n| n.ready)
    }
    /// NotReady for longer than `timeout_s` (a Node that never registered is the start-up
    /// timeout's: [`WorkerView::node_startup_timed_out`]).
    fn not_ready_for(&self, timeout_s: i64, now: Timestamp) -> bool {
        self.node
            .as_ref()
            .and_then(|n| n.not_ready_since.as_ref())
            .is_some_and(|since| now.duration_since(since.0).as_secs() >= timeout_s)
    }
    /// Has a server whose Node has not registered `timeout_s` after the server's creation (shut
    /// off, or `kubeadm join` failed). Only from a read of the Nodes, so an unreachable hosted
    /// API replaces nothing; a worker whose own controller saw its Node is not counted either.
    pub fn node_startup_timed_out(&self, timeout_s: i64, now: Timestamp) -> bool {
        self.nodes_read
            && self.node.is_none()
            && !matches!(
                self.phase,
                Some(WorkerPhase::Running | WorkerPhase::Failed | WorkerPhase::Deleting)
            )
            && self
                .server_created
                .is_some_and(|created| now.duration_since(created).as_secs() >= timeout_s)
    }
    /// Scale-down order: failed, then not joined, then oldest.
    fn removal_key(&self) -> (u8, Option<Timestamp>, String) {
        let rank = if self.failed() {
            0
        } else if self.node.is_none() {
            1
        } else {
            2
        };
        (rank, self.created, self.name.clone())
    }
}

/// Why a Worker is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    ScaleDown,
    Outdated,
    Repair(Fault),
}

/// What auto-repair replaces a worker for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Its server is in ERROR or gone.
    Failed,
    /// Its Node stayed NotReady for the pool's `notReadyTimeoutSeconds`.
    NotReady { timeout_s: i32 },
    /// Its Node did not register within the pool's `nodeStartupTimeoutSeconds` of the server's
    /// creation.
    NodeStartup { timeout_s: i32 },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Failed => f.write_str("its server is in ERROR or gone"),
            Fault::NotReady { timeout_s } => write!(f, "its Node was NotReady for {timeout_s}s"),
            Fault::NodeStartup { timeout_s } => f.write_str(&no_node_within(*timeout_s)),
        }
    }
}

/// The words for a worker whose Node did not register in time, shared by its event, its
/// status and the pool's conditions.
pub fn no_node_within(timeout_s: i32) -> String {
    format!("no Node registered within {timeout_s}s of server creation")
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub create: usize,
    pub delete: Vec<(String, Removal)>,
}

/// What to do with `workers` for `spec`, whose current template is `template_hash`.
pub fn plan(spec: &NodePoolSpec, template_hash: &str, workers: &[WorkerView], now: Timestamp) -> Plan {
    let mut out = Plan::default();
    if spec.paused {
        return out;
    }
    let management = &spec.management;
    let desired = usize::try_from(spec.replicas).unwrap_or_default();
    let max_unavailable = usize::try_from(management.max_unavailable).unwrap_or_default();
    let max_surge = usize::try_from(management.max_surge).unwrap_or_default();
    let deleting = workers.iter().filter(|w| w.deleting).count();
    let mut active: Vec<&WorkerView> = workers.iter().filter(|w| !w.deleting).collect();
    active.sort_by_key(|w| w.removal_key());

    if management.auto_repair {
        let budget = max_unavailable.max(1).saturating_sub(deleting);
        let broken: Vec<(String, Fault)> = active
            .iter()
            .filter_map(|w| Some((w.name.clone(), fault(w, management, now)?)))
            .take(budget)
            .collect();
        active.retain(|w| !broken.iter().any(|(name, _)| *name == w.name));
        out.delete.extend(
            broken
                .into_iter()
                .map(|(name, fault)| (name, Removal::Repair(fault))),
        );
    }

    let (current, outdated): (Vec<&WorkerView>, Vec<&WorkerView>) =
        active.iter().partition(|w| w.template_hash == template_hash);
    if outdated.is_empty() {
        if active.len() > desired {
            let extra = active.len() - desired;
            out.delete.extend(
                active
                    .iter()
                    .take(extra)
                    .map(|w| (w.name.clone(), Removal::ScaleDown)),
            );
        } else {
            out.create = desired - active.len();
        }
        return out;
    }

    // Rolling replacement: at most desired + maxSurge Workers, at least desired - maxUnavailable
    // of them available; an outdated Worker that is not available costs no availability.
    let max_total = desired + max_surge;
    out.create = max_total
        .saturating_sub(active.len())
        .min(desired.saturating_sub(current.len()));
    let min_available = desired.saturating_sub(max_unavailable);
    let mut available = active.iter().filter(|w| w.ready()).count();
    let mut remaining = active.len();
    for worker in outdated {
        let keeps_availability = !worker.ready() || available > min_available;
        let keeps_count = remaining > max_total || remaining > min_available;
        if !(keeps_availability && keeps_count) {
            continue;
        }
        if worker.ready() {
            available -= 1;
        }
        remaining -= 1;
        out.delete.push((worker.name.clone(), Removal::Outdated));
    }
    out
}

/// What auto-repair would replace `worker` for, if anything.
fn fault(worker: &WorkerView, management: &ManagementSpec, now: Timestamp) -> Option<Fault> {
    let not_ready = management.not_ready_timeout_seconds;
    let startup = management.node_startup_timeout_seconds;
    if worker.failed() {
        Some(Fault::Failed)
    } else if worker.not_ready_for(i64::from(not_ready), now) {
        Some(Fault::NotReady { timeout_s: not_ready })
    } else if worker.node_startup_timed_out(i64::from(startup), now) {
        Some(Fault::NodeStartup { timeout_s: startup })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::controllers::node_pool::testing::pool;

    const NOW: &str = "2026-01-01T01:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().expect("timestamp")
    }

    fn worker(name: &str, phase: WorkerPhase, hash: &str, ready: Option<bool>) -> WorkerView {
        WorkerView {
            name: name.into(),
            phase: Some(phase),
            template_hash: hash.into(),
            created: Some(
                format!("2026-01-01T00:00:0{}Z", name.len() % 10)
                    .parse()
                    .expect("ts"),
            ),
            deleting: false,
            node: ready.map(|ready| NodeState {
                ready,
                not_ready_since: None,
            }),
            nodes_read: true,
            // A minute before NOW: well within the default start-up timeout.
            server_created: Some("2026-01-01T00:59:00Z".parse().expect("ts")),
            failure: None,
        }
    }

    /// A worker whose server was created `age_s` before NOW and whose Node never registered.
    fn unjoined(name: &str, age_s: i64) -> WorkerView {
        let mut worker = worker(name, WorkerPhase::Joining, "h", None);
        worker.server_created = Some(now() - k8s_openapi::jiff::SignedDuration::from_secs(age_s));
        worker
    }

    fn spec(replicas: i32) -> NodePoolSpec {
        let mut spec = pool().spec;
        spec.replicas = replicas;
        spec
    }

    fn deleted(plan: &Plan) -> Vec<&str> {
        plan.delete.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn scaling_up_creates_the_missing_workers_and_down_deletes_failed_then_unjoined_then_oldest() {
        assert_eq!(plan(&spec(5), "h", &[], now()).create, 5);
        let mut old = worker("old", WorkerPhase::Running, "h", Some(true));
        old.created = Some("2025-12-31T00:00:00Z".parse().expect("ts"));
        let workers = [
            worker("young", WorkerPhase::Running, "h", Some(true)),
            old,
            worker("joining", WorkerPhase::Joining, "h", None),
            worker("failed", WorkerPhase::Failed, "h", None),
        ];
        let mut no_repair = spec(1);
        no_repair.management.auto_repair = false;
        let down = plan(&no_repair, "h", &workers, now());
        assert_eq!(down.create, 0);
        assert_eq!(deleted(&down), ["failed", "joining", "old"]);
        assert!(down.delete.iter().all(|(_, why)| *why == Removal::ScaleDown));
    }

    #[test]
    fn workers_being_deleted_are_not_counted_and_a_paused_pool_does_nothing() {
        let mut going = worker("going", WorkerPhase::Deleting, "h", None);
        going.deleting = true;
        let workers = [going, worker("a", WorkerPhase::Running, "h", Some(true))];
        assert_eq!(plan(&spec(2), "h", &workers, now()).create, 1);
        let mut paused = spec(5);
        paused.paused = true;
        assert_eq!(plan(&paused, "h", &workers, now()), Plan::default());
    }

    #[test]
    fn auto_repair_replaces_failed_and_long_not_ready_workers_one_at_a_time() {
        let mut stale = worker("stale", WorkerPhase::Running, "h", Some(false));
        stale.node = Some(NodeState {
            ready: false,
            not_ready_since: Some(Time("2026-01-01T00:00:00Z".parse().expect("ts"))),
        });
        let workers = [
            worker("ok", WorkerPhase::Running, "h", Some(true)),
            worker("failed", WorkerPhase::Failed, "h", None),
            stale,
        ];
        let first = plan(&spec(3), "h", &workers, now());
        assert_eq!(
            first.delete,
            [("failed".to_string(), Removal::Repair(Fault::Failed))]
        );
        assert_eq!(first.create, 1, "the repaired worker's replacement");
        let mut wider = spec(3);
        wider.management.max_unavailable = 2;
        assert_eq!(deleted(&plan(&wider, "h", &workers, now())), ["failed", "stale"]);
        let mut off = spec(3);
        off.management.auto_repair = false;
        assert!(plan(&off, "h", &workers, now()).delete.is_empty());
    }

    #[test]
    fn a_rollout_surges_one_then_replaces_without_losing_availability() {
        let workers = [
            worker("a", WorkerPhase::Running, "old", Some(true)),
            worker("b", WorkerPhase::Running, "old", Some(true)),
        ];
        let first = plan(&spec(2), "new", &workers, now());
        assert_eq!(
            (first.create, first.delete.len()),
            (1, 0),
            "surge first: {first:?}"
        );
        let surged = [
            workers[0].clone(),
            workers[1].clone(),
            worker("c", WorkerPhase::Joining, "new", None),
        ];
        let waiting = plan(&spec(2), "new", &surged, now());
        assert_eq!(
            waiting,
            Plan::default(),
            "nothing goes before the new worker is ready"
        );
        let ready = [
            workers[0].clone(),
            workers[1].clone(),
            worker("c", WorkerPhase::Running, "new", Some(true)),
        ];
        let replace = plan(&spec(2), "new", &ready, now());
        assert_eq!(replace.delete.len(), 1, "{replace:?}");
        assert_eq!(replace.delete[0].1, Removal::Outdated);
        assert_eq!(replace.create, 0);
    }

    #[test]
    fn a_worker_without_a_node_is_replaced_once_its_server_is_older_than_the_startup_timeout() {
        let early = [unjoined("early", 1199)];
        assert_eq!(plan(&spec(1), "h", &early, now()), Plan::default());
        let late = [unjoined("late", 1200)];
        let repair = plan(&spec(1), "h", &late, now());
        assert_eq!(
            repair.delete,
            [(
                "late".to_string(),
                Removal::Repair(Fault::NodeStartup { timeout_s: 1200 })
            )]
        );
        assert_eq!(repair.create, 1, "the replacement");
        let Removal::Repair(fault) = repair.delete[0].1 else {
            panic!("not a repair");
        };
        assert_eq!(
            fault.to_string(),
            "no Node registered within 1200s of server creation"
        );
        let mut shorter = spec(1);
        shorter.management.node_startup_timeout_seconds = 30;
        assert_eq!(deleted(&plan(&shorter, "h", &[unjoined("w", 30)], now())), ["w"]);
    }

    #[test]
    fn startup_repairs_stay_within_max_unavailable_and_count_workers_being_deleted() {
        let workers = [unjoined("a", 5000), unjoined("b", 5000), unjoined("c", 5000)];
        assert_eq!(deleted(&plan(&spec(3), "h", &workers, now())).len(), 1);
        let mut wider = spec(3);
        wider.management.max_unavailable = 2;
        assert_eq!(deleted(&plan(&wider, "h", &workers, now())).len(), 2);
        let mut going = worker("going", WorkerPhase::Deleting, "h", None);
        going.deleting = true;
        let busy = [going, unjoined("a", 5000)];
        assert!(
            plan(&spec(1), "h", &busy, now()).delete.is_empty(),
            "the budget is spent on the worker being deleted"
        );
    }

    #[test]
    fn a_registered_node_is_judged_by_the_not_ready_timeout_not_the_startup_one() {
        let mut joined = unjoined("joined", 5000);
        joined.phase = Some(WorkerPhase::Running);
        joined.node = Some(NodeState {
            ready: false,
            not_ready_since: Some(Time("2026-01-01T00:58:00Z".parse().expect("ts"))),
        });
        assert!(
            plan(&spec(1), "h", std::slice::from_ref(&joined), now())
                .delete
                .is_empty(),
            "NotReady for 120s of 300s"
        );
        joined.node = Some(NodeState {
            ready: false,
            not_ready_since: Some(Time("2026-01-01T00:55:00Z".parse().expect("ts"))),
        });
        assert_eq!(
            plan(&spec(1), "h", &[joined], now()).delete,
            [(
                "joined".to_string(),
                Removal::Repair(Fault::NotReady { timeout_s: 300 })
            )]
        );
    }

    #[test]
    fn without_auto_repair_or_a_read_of_the_nodes_no_unjoined_worker_is_replaced() {
        let late = [unjoined("late", 5000)];
        let mut off = spec(1);
        off.management.auto_repair = false;
        assert_eq!(plan(&off, "h", &late, now()), Plan::default());
        let mut unread = unjoined("late", 5000);
        unread.nodes_read = false;
        assert_eq!(
            plan(&spec(1), "h", &[unread], now()),
            Plan::default(),
            "an unreachable hosted API is not a worker that did not join"
        );
        let mut no_server = unjoined("pending", 5000);
        no_server.server_created = None;
        no_server.phase = Some(WorkerPhase::Pending);
        assert_eq!(plan(&spec(1), "h", &[no_server], now()), Plan::default());
    }
}
