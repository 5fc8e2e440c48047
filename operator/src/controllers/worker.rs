//! Worker reconciliation: one OpenStack server per Worker, its phase in the Worker's status,
//! and on deletion cordon, drain and delete the Node, delete the server, wait until Nova says it
//! is gone, then release the finalizer.
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use nestplane_openstack::{Compute, ServerStatus};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::events::{EventExt, event, publish};
use super::hosted_nodes::{self, Drain};
use super::owned::FIELD_MANAGER;
use super::{Context, cloud, finalizers, join};
use crate::api::conditions as reasons;
use crate::api::{HostedCluster, NodePool, Worker, WorkerPhase, WorkerStatus};
use crate::error::{Error, KubeContext, Result};
use server::{Observation, Owners};

pub mod server;
pub mod serving_csr;

pub(crate) const CONTROLLER: &str = "worker";
const KIND: &str = "Worker";
/// How often a building server is looked at (Nova has no watch).
const REQUEUE_BUILDING: Duration = Duration::from_secs(5);
/// The longest wait between two looks for a joining worker's Node.
const REQUEUE_JOINING: Duration = Duration::from_secs(30);
/// How often a joined worker's Node is looked at.
const REQUEUE_RUNNING: Duration = Duration::from_secs(60);
/// While a server is being deleted, Nova is asked again after this long.
const REQUEUE_DELETING: Duration = Duration::from_secs(3);

#[instrument(skip_all, fields(namespace = %worker.namespace().unwrap_or_default(), name = %worker.name_any()))]
pub async fn reconcile(worker: Arc<Worker>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer(CONTROLLER);
    ctx.metrics.reconcile_run(CONTROLLER);
    let namespace = worker
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Worker> = Api::namespaced(ctx.client.clone(), &namespace);
    if worker.metadata.deletion_timestamp.is_some() {
        return cleanup(&worker, &ctx, &api).await;
    }
    finalizers::ensure(&api, worker.as_ref(), KIND).await?;
    apply(&worker, &ctx).await
}

pub fn error_policy(worker: Arc<Worker>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(name = %worker.name_any(), error = %error, "reconcile failed");
    ctx.metrics.reconcile_failure(CONTROLLER, error);
    Action::requeue(error.retry_after().max(ctx.backoff.next_for(worker.as_ref())))
}

/// What a pass reads besides the Worker: its pool and cluster (`None` when gone).
struct Parents {
    pool: NodePool,
    hc: Option<HostedCluster>,
}

async fn parents(worker: &Worker, ctx: &Context) -> Result<Option<Parents>> {
    let namespace = worker.namespace().unwrap_or_default();
    let pools: Api<NodePool> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(pool) =
        pools
            .get_opt(&worker.spec.node_pool)
            .await
            .context("get", "NodePool", &worker.spec.node_pool)?
    else {
        return Ok(None);
    };
    let hc = Api::<HostedCluster>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&worker.spec.cluster_name)
        .await
        .context("get", "HostedCluster", &worker.spec.cluster_name)?;
    Ok(Some(Parents { pool, hc }))
}

async fn apply(worker: &Worker, ctx: &Context) -> Result<Action> {
    let mut status = worker.status.clone().unwrap_or_default();
    // Failed is final: auto-repair (or the user) replaces the Worker.
    if status.phase == Some(WorkerPhase::Failed) {
        return Ok(Action::await_change());
    }
    let Some(Parents { pool, hc }) = parents(worker, ctx).await? else {
        // The garbage collector deletes a Worker whose pool is gone.
        return Ok(Action::await_change());
    };
    let outcome = match ctx.clouds.compute(&ctx.client, &pool).await {
        Ok(compute) => step(worker, ctx, compute.as_ref(), &pool, hc.as_ref(), &mut status).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(requeue) => {
            write_status(worker, ctx, &status).await?;
            Ok(requeue)
        }
        Err(error) => {
            let reason = cloud::reason(&error);
            warn!(%error, reason, "no server yet");
            status.failure_reason = Some(reason.to_string());
            status.failure_message = Some(error.to_string());
            status.phase.get_or_insert(WorkerPhase::Pending);
            if worker.status.as_ref() != Some(&status) {
                let note = format!("worker {}: {error}", worker.name_any());
                publish(
                    ctx,
                    worker,
                    event(EventType::Warning, reason, "CreateServer").note(note),
                )
                .await;
            }
            write_status(worker, ctx, &status).await?;
            Ok(Action::requeue(
                error.retry_after().max(ctx.backoff.next_for(worker)),
            ))
        }
    }
}

/// One look at the server: create it if there is none, else record its state.
async fn step(
    worker: &Worker,
    ctx: &Context,
    compute: &dyn Compute,
    pool: &NodePool,
    hc: Option<&HostedCluster>,
    status: &mut WorkerStatus,
) -> Result<Action> {
    let uid = worker.uid().ok_or(Error::MissingField("metadata.uid"))?;
    match server::observe(compute, &uid, status.server_id.as_deref()).await? {
        Observation::Missing => {
            let hc = hc.ok_or_else(|| Error::JoinPreparation {
                cluster: worker.spec.cluster_name.clone(),
                message: "the HostedCluster does not exist".into(),
            })?;
            let owners = owners(worker, pool, hc)?;
            let ids = server::resolve(compute, pool).await?;
            let join = join::for_worker(ctx, hc, pool).await?;
            let user_data = join::user_data(&join, pool, &worker.name_any())?;
            let mut spec = server::spec(pool, &owners, ids, user_data);
            spec.server_group_id = server::server_group(compute, pool, &owners.pool_uid).await?;
            // Last before the server, so a missing flavor or image leaves no port behind; ports
            // of a create that failed are found again on the next pass, or deleted with the Worker.
            spec.port_ids = server::ensure_ports(compute, pool, &owners).await?;
            let created = compute.create_server(&spec).await?;
            info!(server = %created.id, "created server");
            let note = format!("created server {} ({})", created.name, created.id);
            publish(
                ctx,
                worker,
                event(EventType::Normal, "ServerCreated", "CreateServer").note(note),
            )
            .await;
            record(status, &created, ctx.clock.timestamp());
            set_phase(status, WorkerPhase::Provisioning, None);
            Ok(Action::requeue(REQUEUE_BUILDING))
        }
        Observation::Gone(id) => {
            status.node_ready = None;
            status.kubelet_version = None;
            let (phase, failure) = server::gone(&id);
            let note = failure.as_ref().map(|f| f.1.clone()).unwrap_or_default();
            publish(
                ctx,
                worker,
                event(EventType::Warning, "ServerGone", "ObserveServer").note(note),
            )
            .await;
            set_phase(status, phase, failure);
            status.server_status = Some("DELETED".into());
            Ok(Action::await_change())
        }
        Observation::Found(found, duplicates) => {
            for duplicate in duplicates {
                warn!(server = %duplicate.id, "deleting a second server of the same worker");
                compute.delete_server(&duplicate.id).await?;
            }
            // A shut-off server keeps the Node it registered; a building or failed one has none
            // worth a look.
            let look = match (&found.status, hc) {
                (ServerStatus::Build | ServerStatus::Error, _) | (_, None) => None,
                (_, Some(hc)) => Some(observe_node(ctx, worker, hc, &found).await),
            };
            let (no_node, unknown) = (matches!(look, Some(Ok(None))), matches!(look, Some(Err(_))));
            let node = look.and_then(|l| l.ok()).flatten();
            let (phase, mut failure) = server::phase(&found, node.as_ref().map(|n| &n.state));
            if phase == WorkerPhase::Failed {
                let note = failure.as_ref().map(|f| f.1.clone()).unwrap_or_default();
                publish(
                    ctx,
                    worker,
                    event(EventType::Warning, "ServerFailed", "ObserveServer").note(note),
                )
                .await;
            }
            let previous = status.failure_reason.clone().zip(status.failure_message.clone());
            record(status, &found, ctx.clock.timestamp());
            if failure.is_none() && no_node {
                failure = node_startup_failure(worker, ctx, pool, &found, status).await;
            } else if failure.is_none() && unknown {
                // An unreachable hosted API says nothing about the Node: keep what was seen.
                failure = previous
                    .filter(|(reason, _)| reason == reasons::REASON_NODE_STARTUP_TIMEOUT)
                    .map(|(_, message)| (reasons::REASON_NODE_STARTUP_TIMEOUT, message));
            }
            set_phase(status, phase, failure);
            status.not_ready_since = node.as_ref().and_then(|n| n.state.not_ready_since.clone());
            status.node_ready = node.as_ref().map(|n| n.state.ready);
            status.kubelet_version = node.and_then(|n| n.kubelet_version);
            Ok(match phase {
                WorkerPhase::Running => {
                    ctx.backoff.forget_for(worker);
                    Action::requeue(REQUEUE_RUNNING)
                }
                WorkerPhase::Provisioning => Action::requeue(REQUEUE_BUILDING),
                WorkerPhase::Failed => Action::await_change(),
                // Joining: the Node registers when the machine has booted; no watch tells us, so
                // look again with growing delays, but often enough to see a join soon.
                _ => Action::requeue(ctx.backoff.next_for(worker).min(REQUEUE_JOINING)),
            })
        }
    }
}

/// `NodeStartupTimeout` once the pool's start-up timeout has passed since the server's creation
/// and a look found no Node; a Warning event the first time.
async fn node_startup_failure(
    worker: &Worker,
    ctx: &Context,
    pool: &NodePool,
    server: &nestplane_openstack::Server,
    status: &WorkerStatus,
) -> Option<server::Failure> {
    let created = status.server_created.as_ref()?.0;
    let timeout = pool.spec.management.node_startup_timeout_seconds;
    let (reason, message) = server::node_startup(server, created, timeout, ctx.clock.timestamp())?;
    let already = worker.status.as_ref().and_then(|s| s.failure_reason.as_deref()) == Some(reason);
    if !already {
        warn!(%message, "no Node registered in time");
        let note = format!("worker {}: {message}", worker.name_any());
        publish(
            ctx,
            worker,
            event(EventType::Warning, reason, "ObserveNode").note(note),
        )
        .await;
    }
    Some((reason, message))
}

/// What a pass sees of the worker's Node.
struct ObservedNode {
    state: hosted_nodes::NodeState,
    kubelet_version: Option<String>,
}

/// The Node (`None`: not registered), or why the hosted API could not tell; an unreachable API
/// leaves the phase as the server says. A registered Node's kubelet serving CSRs are approved on
/// the way.
async fn observe_node(
    ctx: &Context,
    worker: &Worker,
    hc: &HostedCluster,
    server: &nestplane_openstack::Server,
) -> std::result::Result<Option<ObservedNode>, String> {
    let hosted = hosted_nodes::client(ctx, hc).await?;
    let Some(node) = hosted_nodes::get(&hosted, &worker.name_any()).await? else {
        return Ok(None);
    };
    let provider_id = node.spec.as_ref().and_then(|s| s.provider_id.as_deref());
    serving_csr::approve_for_worker(ctx, worker, &hosted, server, provider_id).await;
    Ok(Some(ObservedNode {
        state: hosted_nodes::NodeState::of(&node),
        kubelet_version: node
            .status
            .and_then(|s| s.node_info)
            .map(|info| info.kubelet_version),
    }))
}

fn owners(worker: &Worker, pool: &NodePool, hc: &HostedCluster) -> Result<Owners> {
    Ok(Owners {
        namespace: worker.namespace().unwrap_or_default(),
        cluster: hc.name_any(),
        cluster_uid: hc
            .uid()
            .ok_or(Error::MissingField("HostedCluster metadata.uid"))?,
        pool: pool.name_any(),
        pool_uid: pool.uid().ok_or(Error::MissingField("NodePool metadata.uid"))?,
        worker: worker.name_any(),
        worker_uid: worker.uid().ok_or(Error::MissingField("metadata.uid"))?,
    })
}

/// Records `server` in `status`: its ID, state, addresses and creation time.
fn record(status: &mut WorkerStatus, server: &nestplane_openstack::Server, now: Timestamp) {
    // A time recorded for another server (there is one per Worker, but be sure) is not this one's.
    let recorded = status
        .server_created
        .as_ref()
        .filter(|_| status.server_id.as_deref() == Some(server.id.as_str()));
    status.server_created = Some(server::created_at(server, recorded, now));
    status.server_id = Some(server.id.clone());
    status.server_status = Some(server.status.to_string());
    status.addresses = server.fixed_ips();
    status.node_name = Some(server.name.clone());
}

fn set_phase(status: &mut WorkerStatus, phase: WorkerPhase, failure: Option<server::Failure>) {
    status.phase = Some(phase);
    let (reason, message) = failure.unzip();
    status.failure_reason = reason.map(str::to_string);
    status.failure_message = message;
}

/// Writes `status` unless the Worker already has it.
async fn write_status(worker: &Worker, ctx: &Context, status: &WorkerStatus) -> Result<()> {
    if worker.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<Worker> = Api::namespaced(ctx.client.clone(), &worker.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": <Worker as kube::Resource>::api_version(&()),
        "kind": <Worker as kube::Resource>::kind(&()),
        "status": status,
    });
    api.patch_status(
        &worker.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .context("patch status of", KIND, &worker.name_any())?;
    Ok(())
}

/// Drain (within the pool's drain timeout), delete the Node, delete every server of the Worker,
/// and once Nova lists none, delete the Worker's ports and release the finalizer.
async fn cleanup(worker: &Worker, ctx: &Context, api: &Api<Worker>) -> Result<Action> {
    if !worker.finalizers().iter().any(|f| f == finalizers::FINALIZER) {
        return Ok(Action::await_change());
    }
    let mut status = worker.status.clone().unwrap_or_default();
    if status.phase != Some(WorkerPhase::Deleting) {
        status.phase = Some(WorkerPhase::Deleting);
        write_status(worker, ctx, &status).await?;
    }
    let parents = parents(worker, ctx).await?;
    if let Some(wait) = release_node(worker, ctx, parents.as_ref()).await {
        return Ok(Action::requeue(wait));
    }
    let Some(Parents { pool, .. }) = parents else {
        // Without its pool there are no credentials to delete the server with; a pool waits for
        // its Workers, so only a forced deletion gets here.
        warn!("the NodePool is gone; the server (if any) cannot be deleted");
        finalizers::remove(api, worker, KIND).await?;
        return Ok(Action::await_change());
    };
    let compute = ctx.clouds.compute(&ctx.client, &pool).await?;
    let uid = worker.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let remaining = server::all_of(compute.as_ref(), &uid, status.server_id.as_deref()).await?;
    if !remaining.is_empty() {
        for id in &remaining {
            compute.delete_server(id).await?;
        }
        info!(servers = ?remaining, "deleting servers");
        return Ok(Action::requeue(REQUEUE_DELETING));
    }
    // Nova leaves the ports it did not make: delete them once no server holds them.
    for port in server::ports_of(compute.as_ref(), &uid).await? {
        compute.delete_port(&port.id).await?;
        info!(port = %port.id, name = %port.name, "deleted port");
    }
    if let Some(id) = &status.server_id {
        let note = format!("server {} ({id}) is deleted", worker.name_any());
        publish(
            ctx,
            worker,
            event(EventType::Normal, "ServerDeleted", "DeleteServer").note(note),
        )
        .await;
    }
    finalizers::remove(api, worker, KIND).await?;
    ctx.backoff.forget_for(worker);
    Ok(Action::await_change())
}

/// Cordons, drains and deletes the Node. `Some(wait)` while pods remain or the hosted API does
/// not answer, until the pool's drain timeout since deletion has passed; then `None`.
async fn release_node(worker: &Worker, ctx: &Context, parents: Option<&Parents>) -> Option<Duration> {
    let hc = parents.and_then(|p| p.hc.as_ref())?;
    // A HostedCluster being deleted takes its Nodes and pods with it: nothing to drain for.
    if hc.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let timeout = parents
        .map(|p| p.pool.spec.management.drain_timeout_seconds)
        .unwrap_or_default();
    let deleted_at = worker.metadata.deletion_timestamp.as_ref()?.0;
    let elapsed = ctx.clock.timestamp().duration_since(deleted_at).as_secs();
    let timed_out = elapsed >= i64::from(timeout);
    let name = worker.name_any();
    let outcome = match hosted_nodes::client(ctx, hc).await {
        Ok(hosted) => match hosted_nodes::drain(&hosted, &name).await {
            Ok(Drain::NoNode) => Ok(()),
            Ok(Drain::Done) => hosted_nodes::delete(&hosted, &name).await,
            Ok(Drain::Waiting(pods)) if timed_out => {
                warn!(?pods, "drain timed out; deleting the Node anyway");
                hosted_nodes::delete(&hosted, &name).await
            }
            Ok(Drain::Waiting(pods)) => Err(format!("waiting for pods to leave: {}", pods.join(", "))),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => None,
        Err(why) if timed_out => {
            warn!(%why, "drain timeout passed; deleting the server anyway");
            None
        }
        Err(why) => {
            info!(%why, "draining");
            Some(Duration::from_secs(5))
        }
    }
}
