//! Which Workers to create and which to delete, from the pool's spec and its Workers as they
//! are: scale up and down, rolling replacement within maxSurge/maxUnavailable, auto-repair.
//! Pure: the controller observes, this decides, the controller acts.
use k8s_openapi::jiff::Timestamp;

use crate::api::{NodePoolSpec, WorkerPhase};

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
    /// NotReady for longer than `timeout_s` (a Node that never registered is not counted here:
    /// a server that does not boot is the fake host's normal case, and ERROR catches real ones).
    fn not_ready_for(&self, timeout_s: i64, now: Timestamp) -> bool {
        self.node
            .as_ref()
            .and_then(|n| n.not_ready_since.as_ref())
            .is_some_and(|since| now.duration_since(since.0).as_secs() >= timeout_s)
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
    Repair,
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
        let timeout = i64::from(management.not_ready_timeout_seconds);
        let broken: Vec<String> = active
            .iter()
            .filter(|w| w.failed() || w.not_ready_for(timeout, now))
            .take(budget)
            .map(|w| w.name.clone())
            .collect();
        active.retain(|w| !broken.contains(&w.name));
        out.delete
            .extend(broken.into_iter().map(|n| (n, Removal::Repair)));
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
            failure: None,
        }
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
        assert_eq!(first.delete, [("failed".to_string(), Removal::Repair)]);
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
}
