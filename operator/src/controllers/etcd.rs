//! etcd's data, looked after on every pass: the cluster ID it answers with against the one
//! recorded (a different one means the data is gone and a new, empty etcd took its place),
//! its alarms, the size of its claims, defragmentation, and claims retained by an earlier
//! HostedCluster of the same name.
use std::collections::BTreeMap;

use futures::future::join_all;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use tracing::{debug, info, warn};

use super::Context;
use super::etcd_client::{EtcdClient, MemberStatus};
use super::etcd_storage::{self, Claims};
use super::events::{EventExt, event, publish};
use super::pki_store::SecretData;
use super::status::{Check, Observed, WorkloadState};
use crate::api::conditions::*;
use crate::api::{EtcdStatus, HostedCluster};
use crate::builders::etcd::{self as etcd_builder, EtcdInputs};
use crate::builders::{self, Component};
use crate::error::Result;

/// Defragment a member when more than this share of its database file is free pages...
const DEFRAG_FREE_PERCENT: u64 = 50;
/// ...and they are more than this many bytes: smaller files are not worth blocking a member.
const DEFRAG_MIN_FREE_BYTES: u64 = 64 << 20;

/// What one pass learnt about etcd and decided about it.
pub struct EtcdGuard {
    claims: Claims,
    client: Option<EtcdClient>,
    /// Per member, in ordinal order: its status, if it answered.
    members: Vec<Option<MemberStatus>>,
    alarms: Vec<String>,
    /// What the status records (cluster ID first seen), updated by this pass.
    recorded: EtcdStatus,
    problem: Option<(&'static str, String)>,
    /// Components not to apply this pass, and what they wait for.
    held: BTreeMap<Component, &'static str>,
    storage: Option<Check>,
}

impl EtcdGuard {
    /// Reads the claims and asks etcd; decides what may be rolled out.
    pub async fn observe(hc: &HostedCluster, ctx: &Context, data: &SecretData) -> Result<EtcdGuard> {
        let client = EtcdClient::new(data, &builders::name(hc)?)
            .inspect_err(|error| warn!(%error, "no etcd client"))
            .ok();
        let mut guard = EtcdGuard {
            claims: etcd_storage::observe_claims(&ctx.client, &ctx.cache, hc).await?,
            client,
            members: Vec::new(),
            alarms: Vec::new(),
            recorded: hc
                .status
                .as_ref()
                .and_then(|s| s.etcd.clone())
                .unwrap_or_default(),
            problem: None,
            held: BTreeMap::new(),
            storage: None,
        };
        guard.check_retained_claims(hc, ctx).await?;
        if guard.held.is_empty() {
            guard.ask(hc).await;
            guard.judge(hc, ctx).await;
        }
        Ok(guard)
    }

    /// The builder's view of the existing etcd; a new StatefulSet gets a new cluster token.
    pub fn inputs(&self, hc: &HostedCluster, ctx: &Context) -> EtcdInputs {
        let token = format!("{}-{}", hc.name_any(), ctx.clock.now().unix_timestamp());
        self.claims.etcd_inputs(token)
    }

    /// Components held back this pass, and what they wait for.
    pub fn held(&self) -> &BTreeMap<Component, &'static str> {
        &self.held
    }

    /// After the workloads were applied: a check of an etcd that only now became ready, the
    /// size of the claims, and defragmentation of at most one member.
    pub async fn settle(
        &mut self,
        hc: &HostedCluster,
        ctx: &Context,
        etcd: Option<&WorkloadState>,
    ) -> Result<()> {
        if self.held.contains_key(&Component::Etcd) {
            return Ok(());
        }
        let ready = etcd.is_some_and(WorkloadState::is_ready);
        // Not one pass reports a freshly started etcd as available before its ID is checked.
        if ready && self.problem.is_none() && self.members.iter().all(Option::is_none) {
            self.ask(hc).await;
            self.judge(hc, ctx).await;
        }
        self.storage = etcd_storage::ensure_size(&ctx.client, hc, &self.claims).await?;
        if ready && self.problem.is_none() {
            self.defragment(hc, ctx).await;
        }
        Ok(())
    }

    /// Into the status: the problem (on `EtcdAvailable`), `EtcdStorageReady`, and `status.etcd`.
    pub fn report(self, observed: &mut Observed) {
        observed.etcd_problem = self.problem;
        observed.checks.extend(self.storage);
        let mut etcd = self.recorded;
        etcd.storage_capacity = self
            .claims
            .smallest_capacity()
            .map(|q| q.0)
            .or(etcd.storage_capacity);
        observed.etcd = (etcd != EtcdStatus::default()).then_some(etcd);
    }

    /// Claims kept by an earlier HostedCluster of this name are used only when asked for.
    async fn check_retained_claims(&mut self, hc: &HostedCluster, ctx: &Context) -> Result<()> {
        let retained = self.claims.retained_from_elsewhere(hc);
        if retained.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = retained.iter().map(|c| c.name_any()).collect();
        let adopt = hc
            .annotations()
            .get(ADOPT_ETCD_CLAIMS_ANNOTATION)
            .map(String::as_str)
            == Some("true");
        if !adopt {
            self.held
                .insert(Component::Etcd, "the retained claims to be adopted or deleted");
            let message = format!(
                "claims {names} hold the etcd data of an earlier HostedCluster named {name}, kept by \
                 its etcd.storage.deletionPolicy Retain. To start on that data: `kubectl -n {ns} \
                 annotate hostedcluster {name} {ADOPT_ETCD_CLAIMS_ANNOTATION}=true`; to start empty: \
                 `kubectl -n {ns} delete pvc {spaced}`",
                names = names.join(", "),
                name = builders::name(hc)?,
                ns = builders::namespace(hc)?,
                spaced = names.join(" "),
            );
            self.problem = Some((REASON_ETCD_CLAIMS_RETAINED, message));
            return Ok(());
        }
        if self.recorded.cluster_id.is_none() {
            self.recorded.cluster_id = retained.iter().find_map(|c| etcd_storage::retained_cluster_id(c));
        }
        etcd_storage::adopt(&ctx.client, hc, &retained).await?;
        info!(claims = ?names, "adopted retained etcd claims");
        let note = format!("adopted retained claims {}", names.join(", "));
        publish(
            ctx,
            hc,
            event(EventType::Normal, "AdoptedEtcdClaims", "Adopt").note(note),
        )
        .await;
        Ok(())
    }

    /// Status of every member, and the cluster's alarms.
    async fn ask(&mut self, hc: &HostedCluster) {
        let Some(client) = &self.client else { return };
        let Ok(endpoints) = (0..hc.spec.etcd.replicas)
            .map(|i| etcd_builder::member_client_url(hc, i))
            .collect::<Result<Vec<String>, _>>()
        else {
            return;
        };
        let answers = join_all(endpoints.iter().map(|e| client.status(e))).await;
        self.members = answers
            .into_iter()
            .map(|answer| {
                answer
                    .inspect_err(|error| debug!(%error, "etcd member did not answer"))
                    .ok()
            })
            .collect();
        let answering = endpoints.iter().zip(&self.members).find(|(_, m)| m.is_some());
        if let Some((endpoint, _)) = answering {
            match client.alarms(endpoint).await {
                Ok(alarms) => self.alarms = alarms,
                Err(error) => debug!(%error, "no alarms read"),
            }
        }
    }

    async fn judge(&mut self, hc: &HostedCluster, ctx: &Context) {
        let found: Vec<u64> = self
            .members
            .iter()
            .flatten()
            .map(|m| m.header.cluster_id)
            .collect();
        let accepted = hc
            .annotations()
            .get(ACCEPT_ETCD_CLUSTER_ANNOTATION)
            .map(String::as_str);
        match judge_cluster_id(self.recorded.cluster_id.as_deref(), &found, accepted) {
            None => {
                // Nothing answered: a loss seen before stays reported until it is resolved.
                if let Some(lost) = previous_data_loss(hc) {
                    self.hold_dependents();
                    self.problem = Some((REASON_ETCD_DATA_LOST, lost));
                }
            }
            Some(ClusterIdVerdict::Same) => {}
            Some(ClusterIdVerdict::First(id)) => {
                info!(cluster_id = %id, "recorded etcd cluster ID");
                self.recorded.cluster_id = Some(id);
            }
            Some(ClusterIdVerdict::Accepted { recorded, found }) => {
                info!(%recorded, %found, "accepted a new etcd cluster");
                // The new etcd gets its own marker.
                self.recorded.marked = None;
                let note =
                    format!("accepted etcd cluster {found} in place of {recorded}, whose data was lost");
                let event = event(EventType::Warning, "EtcdClusterAccepted", "AcceptEtcdCluster").note(note);
                publish(ctx, hc, event).await;
                self.recorded.cluster_id = Some(found);
            }
            Some(ClusterIdVerdict::Lost { recorded, found }) => {
                warn!(%recorded, %found, "etcd data lost");
                self.hold_dependents();
                self.problem = Some((REASON_ETCD_DATA_LOST, data_lost_message(hc, &recorded, &found)));
            }
        }
        if self.problem.is_none() {
            self.check_marker(hc, ctx, accepted).await;
        }
        if self.problem.is_none() && self.alarms.iter().any(|a| a == "NOSPACE") {
            self.problem = Some((REASON_ETCD_NO_SPACE, no_space_message(hc)));
        }
    }

    /// Reads (or writes) the marker key in the first member that answered, once the cluster
    /// ID is recorded and matches.
    async fn check_marker(&mut self, hc: &HostedCluster, ctx: &Context, accepted: Option<&str>) {
        let (Some(client), Some(id)) = (&self.client, self.recorded.cluster_id.clone()) else {
            return;
        };
        let Some(ordinal) = self.members.iter().position(Option::is_some) else {
            return;
        };
        let Ok(endpoint) = etcd_builder::member_client_url(hc, ordinal as i32) else {
            return;
        };
        let marker = match client.read_marker(&endpoint).await {
            Ok(marker) => marker,
            Err(error) => {
                debug!(%error, "etcd marker not read");
                return;
            }
        };
        let marked = self.recorded.marked == Some(true);
        let accepted = accepted.is_some_and(|a| a.trim() == id);
        match judge_marker(marked, marker.as_deref(), &id, accepted) {
            // Recorded again on every pass that sees it: a failed pass writes the status it
            // started from, which may not say so yet.
            MarkerVerdict::Present => self.recorded.marked = Some(true),
            MarkerVerdict::Write { accepted } => match client.write_marker(&endpoint, &id).await {
                Ok(()) => {
                    info!(cluster_id = %id, "wrote the etcd marker");
                    self.recorded.marked = Some(true);
                    if accepted {
                        let note = format!(
                            "accepted etcd cluster {id}, which had been started again without its data"
                        );
                        let event =
                            event(EventType::Warning, "EtcdClusterAccepted", "AcceptEtcdCluster").note(note);
                        publish(ctx, hc, event).await;
                    }
                }
                Err(error) => warn!(%error, "could not write the etcd marker"),
            },
            MarkerVerdict::Lost => {
                warn!(cluster_id = %id, "etcd marker gone: data lost");
                self.hold_dependents();
                self.problem = Some((REASON_ETCD_DATA_LOST, marker_lost_message(hc, &id)));
            }
        }
    }

    fn hold_dependents(&mut self) {
        for component in Component::Etcd.dependents() {
            self.held.insert(
                component,
                "etcd's lost data to be restored or the new etcd accepted",
            );
        }
    }

    /// Defragments the first member that needs it, and only while every member answers, so
    /// that a member blocked by defragmenting never costs the quorum.
    async fn defragment(&mut self, hc: &HostedCluster, ctx: &Context) {
        let (Some(client), Some(ordinal)) = (&self.client, member_to_defragment(&self.members)) else {
            return;
        };
        let Ok(endpoint) = etcd_builder::member_client_url(hc, ordinal as i32) else {
            return;
        };
        let pod = format!("{}-{ordinal}", Component::Etcd.workload_name(&hc.name_any()));
        let (size, in_use) = self.members[ordinal]
            .as_ref()
            .map_or((0, 0), |m| (m.db_size, m.db_size_in_use));
        let (type_, note) = match client.defragment(&endpoint).await {
            Ok(()) => (
                EventType::Normal,
                format!(
                    "defragmented etcd member {pod}: {} MiB of its {} MiB database were free",
                    (size - in_use) >> 20,
                    size >> 20
                ),
            ),
            Err(error) => (
                EventType::Warning,
                format!("could not defragment etcd member {pod}: {error}"),
            ),
        };
        info!(member = %pod, "{note}");
        publish(ctx, hc, event(type_, "EtcdDefragmented", "Defragment").note(note)).await;
    }
}

/// Once a pass honoured `accept-etcd-cluster-id` (the accepted ID is recorded and marked, and
/// etcd is fine) and its status is written, the annotation goes: left in place, it would accept
/// a second loss of the same ID without anyone asking. A merge patch: it is the user's.
pub async fn clear_accept_request(client: &kube::Client, hc: &HostedCluster, observed: &Observed) {
    let Some(accepted) = hc.annotations().get(ACCEPT_ETCD_CLUSTER_ANNOTATION) else {
        return;
    };
    let etcd = observed.etcd.clone().unwrap_or_default();
    let honoured = observed.etcd_problem.is_none()
        && etcd.marked == Some(true)
        && etcd.cluster_id.as_deref().map(str::trim) == Some(accepted.trim());
    if !honoured {
        return;
    }
    super::observe::remove_request_annotation(client, hc, ACCEPT_ETCD_CLUSTER_ANNOTATION).await;
}

/// What the cluster ID etcd answers with says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterIdVerdict {
    /// Nothing recorded yet: record this one.
    First(String),
    Same,
    /// A different ID, which the user accepted.
    Accepted {
        recorded: String,
        found: String,
    },
    /// A different ID: the recorded cluster's data is gone.
    Lost {
        recorded: String,
        found: String,
    },
}

/// `found` holds the IDs the members answered with; `None` when none answered. IDs are hex, as
/// `etcdctl` prints them.
pub fn judge_cluster_id(
    recorded: Option<&str>,
    found: &[u64],
    accepted: Option<&str>,
) -> Option<ClusterIdVerdict> {
    let first = *found.first()?;
    let Some(recorded) = recorded else {
        return Some(ClusterIdVerdict::First(format!("{first:x}")));
    };
    let Some(other) = found.iter().find(|id| !same_id(recorded, **id)) else {
        return Some(ClusterIdVerdict::Same);
    };
    let (recorded, found) = (recorded.to_string(), format!("{other:x}"));
    Some(match accepted {
        Some(accepted) if same_id(accepted, *other) => ClusterIdVerdict::Accepted { recorded, found },
        _ => ClusterIdVerdict::Lost { recorded, found },
    })
}

/// What the marker key in etcd says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerVerdict {
    Present,
    /// Write it: not written yet (a new etcd, or one made before markers), or its loss was
    /// accepted.
    Write {
        accepted: bool,
    },
    /// It was written and is gone: the member was started again on an empty claim.
    Lost,
}

/// `marked`: the status says the marker was written; `marker`: its value in etcd, if any.
pub fn judge_marker(marked: bool, marker: Option<&str>, cluster_id: &str, accepted: bool) -> MarkerVerdict {
    match (marker, marked) {
        (Some(value), _) if value == cluster_id => MarkerVerdict::Present,
        // A marker of another ID: restored from a snapshot of this cluster under a new ID that
        // was accepted; mark it as this one.
        (Some(_), _) => MarkerVerdict::Write { accepted: false },
        (None, false) => MarkerVerdict::Write { accepted: false },
        (None, true) if accepted => MarkerVerdict::Write { accepted: true },
        (None, true) => MarkerVerdict::Lost,
    }
}

fn same_id(hex: &str, id: u64) -> bool {
    let hex = hex.trim();
    u64::from_str_radix(hex.strip_prefix("0x").unwrap_or(hex), 16) == Ok(id)
}

/// The member to defragment this pass, if any: only when every member answered and none
/// reports errors, the first whose free pages are both a large share and a large size.
pub fn member_to_defragment(members: &[Option<MemberStatus>]) -> Option<usize> {
    let all: Vec<&MemberStatus> = members.iter().flatten().collect();
    if all.is_empty() || all.len() < members.len() || all.iter().any(|m| !m.errors.is_empty()) {
        return None;
    }
    all.iter().position(|m| {
        let free = m.db_size.saturating_sub(m.db_size_in_use);
        free > DEFRAG_MIN_FREE_BYTES && free * 100 > m.db_size * DEFRAG_FREE_PERCENT
    })
}

fn data_lost_message(hc: &HostedCluster, recorded: &str, found: &str) -> String {
    let (name, ns) = (hc.name_any(), hc.namespace().unwrap_or_default());
    let claims: Vec<String> = (0..hc.spec.etcd.replicas)
        .map(|i| etcd_builder::claim_name(&name, i))
        .collect();
    format!(
        "etcd answers with cluster ID {found}, but this HostedCluster recorded {recorded}: the data \
         on claims {} is gone and a new, empty etcd took its place. Nothing new is rolled out onto \
         it. Restore a snapshot of {recorded} into the claims (see README, Operating safely), or \
         accept the empty etcd: `kubectl -n {ns} annotate hostedcluster {name} \
         {ACCEPT_ETCD_CLUSTER_ANNOTATION}={found}`",
        claims.join(", ")
    )
}

fn marker_lost_message(hc: &HostedCluster, id: &str) -> String {
    let (name, ns) = (hc.name_any(), hc.namespace().unwrap_or_default());
    format!(
        "etcd answers with the recorded cluster ID {id}, but the marker nestplane wrote into it \
         ({}) is gone: a member was started again on an empty claim, and the data is lost. Nothing \
         new is rolled out onto it. Restore a snapshot into the claims (see README, Operating \
         safely), or accept the empty etcd: `kubectl -n {ns} annotate hostedcluster {name} \
         {ACCEPT_ETCD_CLUSTER_ANNOTATION}={id}`",
        super::etcd_client::MARKER_KEY
    )
}

fn no_space_message(hc: &HostedCluster) -> String {
    let (name, ns) = (hc.name_any(), hc.namespace().unwrap_or_default());
    format!(
        "etcd raised its NOSPACE alarm: its database reached the space quota and it refuses writes. \
         Grow etcd.storage.size (where the StorageClass allows expansion; the quota follows), or free \
         space (compact and defragment), then clear the alarm: `kubectl -n {ns} exec {name}-etcd-0 -- \
         etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt \
         --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key \
         alarm disarm`"
    )
}

/// The data-loss message of the previous pass, if etcd was reported lost.
fn previous_data_loss(hc: &HostedCluster) -> Option<String> {
    hc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == ETCD_AVAILABLE && c.reason == REASON_ETCD_DATA_LOST)
        .map(|c| c.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::etcd_client::ResponseHeader;

    #[test]
    fn the_first_answer_is_recorded_in_hex() {
        assert_eq!(
            judge_cluster_id(None, &[0xcdf818194e3a8c32], None),
            Some(ClusterIdVerdict::First("cdf818194e3a8c32".into()))
        );
        assert_eq!(judge_cluster_id(Some("cdf818194e3a8c32"), &[], None), None);
    }

    #[test]
    fn the_same_id_is_fine_a_different_one_is_data_lost() {
        let recorded = Some("cdf818194e3a8c32");
        assert_eq!(
            judge_cluster_id(recorded, &[0xcdf818194e3a8c32, 0xcdf818194e3a8c32], None),
            Some(ClusterIdVerdict::Same)
        );
        assert_eq!(
            judge_cluster_id(recorded, &[0xcdf818194e3a8c32, 0x1a2b], None),
            Some(ClusterIdVerdict::Lost {
                recorded: "cdf818194e3a8c32".into(),
                found: "1a2b".into()
            })
        );
    }

    #[test]
    fn only_the_id_found_can_be_accepted() {
        let recorded = Some("cdf818194e3a8c32");
        assert!(matches!(
            judge_cluster_id(recorded, &[0x1a2b], Some("99")),
            Some(ClusterIdVerdict::Lost { .. })
        ));
        assert_eq!(
            judge_cluster_id(recorded, &[0x1a2b], Some("0x1A2B")),
            Some(ClusterIdVerdict::Accepted {
                recorded: "cdf818194e3a8c32".into(),
                found: "1a2b".into()
            })
        );
    }

    fn member(size: u64, in_use: u64) -> Option<MemberStatus> {
        Some(MemberStatus {
            header: ResponseHeader {
                cluster_id: 1,
                member_id: 2,
            },
            db_size: size,
            db_size_in_use: in_use,
            errors: Vec::new(),
        })
    }

    #[test]
    fn defragments_a_member_with_much_free_space_one_at_a_time() {
        const MI: u64 = 1 << 20;
        assert_eq!(member_to_defragment(&[member(400 * MI, 100 * MI)]), Some(0));
        // Mostly free but small: not worth it. Large but mostly used: neither.
        assert_eq!(member_to_defragment(&[member(60 * MI, 10 * MI)]), None);
        assert_eq!(member_to_defragment(&[member(800 * MI, 500 * MI)]), None);
        let three = [
            member(300 * MI, 290 * MI),
            member(400 * MI, 100 * MI),
            member(400 * MI, 100 * MI),
        ];
        assert_eq!(
            member_to_defragment(&three),
            Some(1),
            "only the first that needs it"
        );
    }

    #[test]
    fn no_defragmenting_while_a_member_is_down_or_in_error() {
        const MI: u64 = 1 << 20;
        assert_eq!(
            member_to_defragment(&[member(400 * MI, 100 * MI), None, member(1, 1)]),
            None
        );
        let mut broken = member(400 * MI, 100 * MI);
        if let Some(m) = broken.as_mut() {
            m.errors.push("corrupt".into());
        }
        assert_eq!(member_to_defragment(&[broken]), None);
        assert_eq!(member_to_defragment(&[]), None);
    }

    #[test]
    fn a_marker_is_written_once_and_its_loss_is_data_loss() {
        let id = "f2a01e00b0cec0dc";
        assert_eq!(
            judge_marker(false, None, id, false),
            MarkerVerdict::Write { accepted: false }
        );
        assert_eq!(judge_marker(true, Some(id), id, false), MarkerVerdict::Present);
        assert_eq!(judge_marker(false, Some(id), id, false), MarkerVerdict::Present);
        assert_eq!(judge_marker(true, None, id, false), MarkerVerdict::Lost);
        assert_eq!(
            judge_marker(true, None, id, true),
            MarkerVerdict::Write { accepted: true }
        );
        assert_eq!(
            judge_marker(true, Some("0123"), id, false),
            MarkerVerdict::Write { accepted: false }
        );
    }

    #[test]
    fn the_data_loss_message_names_both_ids_and_the_way_out() {
        let hc = crate::builders::testing::hosted_cluster();
        let message = data_lost_message(&hc, "cdf818194e3a8c32", "1a2b");
        for part in [
            "cdf818194e3a8c32",
            "1a2b",
            "data-demo-etcd-0",
            "kubectl -n team-a annotate hostedcluster demo nestplane.io/accept-etcd-cluster-id=1a2b",
        ] {
            assert!(message.contains(part), "{part} in {message}");
        }
    }
}
