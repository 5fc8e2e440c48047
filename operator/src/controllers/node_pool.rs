//! NodePool reconciliation: orchestration only. Gates (cluster Available, version, cloud,
//! join preparation), then `plan` decides which Workers to create and delete, then the status.
//! The Worker controller (`worker.rs`) owns each server.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::events::{EventExt, event, publish};
use super::owned::FIELD_MANAGER;
use super::{Context, api, cloud, finalizers, hosted_nodes, join, worker};
use crate::api::conditions as reasons;
use crate::api::{HostedCluster, NodePool, Worker, WorkerSpec};
use crate::builders::hash_data;
use crate::error::{Error, KubeContext, Result};
use plan::{Removal, WorkerView};
use status::{Gate, Observed};

pub mod plan;
pub mod status;

pub(crate) const CONTROLLER: &str = "nodepool";
const KIND: &str = "NodePool";
/// Label on every Worker: the NodePool it belongs to.
pub const NODE_POOL_LABEL: &str = "nestplane.io/node-pool";
/// Steady state: look again every minute (Node readiness, auto-repair's clock).
const REQUEUE_STEADY: Duration = Duration::from_secs(60);
const REQUEUE_DELETING: Duration = Duration::from_secs(3);

/// Runs the NodePool and Worker controllers until the process is asked to stop.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let namespace = ctx.config.namespace.clone();
    let namespace = namespace.as_deref();
    ctx.metrics.register_controller(CONTROLLER);
    ctx.metrics.register_controller(worker::CONTROLLER);
    let pools = Controller::new(
        api::<NodePool>(&client, namespace),
        watcher::Config::default().any_semantic(),
    );
    let (by_secret, by_cluster) = (pools.store(), pools.store());
    let pools = pools
        .owns(api::<Worker>(&client, namespace), watcher::Config::default())
        // A changed cloud Secret wakes the pools that use it (metadata only: no Secret data is kept).
        .watches_stream(
            watcher(
                api::<PartialObjectMeta<Secret>>(&client, namespace),
                watcher::Config::default(),
            )
            .touched_objects(),
            move |secret| {
                let (name, namespace) = (secret.name_any(), secret.namespace());
                by_secret
                    .state()
                    .into_iter()
                    .filter(|p| p.namespace() == namespace && p.spec.openstack.cloud_secret_ref.name == name)
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // A HostedCluster becoming Available (or going away) wakes its pools.
        .watches(
            api::<HostedCluster>(&client, namespace),
            watcher::Config::default(),
            move |hc| {
                let (name, namespace) = (hc.name_any(), hc.namespace());
                by_cluster
                    .state()
                    .into_iter()
                    .filter(|p| p.namespace() == namespace && p.spec.cluster_name == name)
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move { log_result(result) });
    let workers = Controller::new(
        api::<Worker>(&client, namespace),
        watcher::Config::default().any_semantic(),
    )
    .shutdown_on_signal()
    .run(worker::reconcile, worker::error_policy, ctx)
    .for_each(|result| async move { log_result(result) });
    futures::join!(pools, workers);
}

fn log_result<K: Resource, E: std::fmt::Display>(
    result: std::result::Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<Error, E>>,
) {
    use kube::runtime::controller::Error as ControllerError;
    match result {
        Ok((object, _)) => tracing::debug!(name = %object.name, "reconciled"),
        Err(ControllerError::ReconcilerFailed(..)) => {}
        Err(ControllerError::ObjectNotFound(object)) => tracing::debug!(%object, "gone"),
        Err(error) => warn!(%error, "controller error"),
    }
}

#[instrument(skip_all, fields(namespace = %pool.namespace().unwrap_or_default(), name = %pool.name_any()))]
pub async fn reconcile(pool: Arc<NodePool>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer(CONTROLLER);
    ctx.metrics.reconcile_run(CONTROLLER);
    let namespace = pool
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<NodePool> = Api::namespaced(ctx.client.clone(), &namespace);
    if pool.metadata.deletion_timestamp.is_some() {
        return cleanup(&pool, &ctx, &api).await;
    }
    finalizers::ensure(&api, pool.as_ref(), KIND).await?;
    apply(&pool, &ctx).await
}

pub fn error_policy(pool: Arc<NodePool>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(name = %pool.name_any(), error = %error, "reconcile failed");
    ctx.metrics.reconcile_failure(CONTROLLER, error);
    Action::requeue(error.retry_after().max(ctx.backoff.next_for(pool.as_ref())))
}

async fn apply(pool: &NodePool, ctx: &Context) -> Result<Action> {
    let namespace = pool.namespace().unwrap_or_default();
    let workers = list_workers(ctx, pool).await?;
    let hc = Api::<HostedCluster>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&pool.spec.cluster_name)
        .await
        .context("get", "HostedCluster", &pool.spec.cluster_name)?;
    let version = pool
        .spec
        .version
        .clone()
        .or_else(|| hc.as_ref().map(|hc| hc.spec.version.clone()));
    let (gate, prepared) = gate(ctx, pool, hc.as_ref()).await;
    let (nodes, nodes_error) = match hc.as_ref().filter(|hc| available(hc)) {
        Some(hc) => match hosted_nodes::client(ctx, hc).await {
            Ok(hosted) => match hosted_nodes::states(&hosted).await {
                Ok(nodes) => (nodes, None),
                Err(e) => (BTreeMap::new(), Some(e)),
            },
            Err(e) => (BTreeMap::new(), Some(e)),
        },
        None => (BTreeMap::new(), None),
    };
    let template_hash = template_hash(pool, version.as_deref());
    let nodes_read = hc.as_ref().is_some_and(available) && nodes_error.is_none();
    let views: Vec<WorkerView> = workers.iter().map(|w| view(w, &nodes, nodes_read)).collect();
    let mut plan = plan::plan(&pool.spec, &template_hash, &views, ctx.clock.timestamp());
    if let Some((reason, message)) = &gate {
        // Nothing new while blocked; deleting (scale down, repair) needs no join.
        plan.create = 0;
        info!(reason, message, "not creating workers");
    }
    act(pool, ctx, &plan, &template_hash).await?;

    let observed = Observed {
        workers: &views,
        template_hash: &template_hash,
        gate: gate.clone(),
        prepared,
        version,
        nodes_error,
        selector: format!("{NODE_POOL_LABEL}={}", pool.name_any()),
    };
    let status = status::compute_status(pool, &observed, ctx.clock.timestamp());
    ctx.metrics.record_node_pool_workers(
        &pool.namespace().unwrap_or_default(),
        &pool.name_any(),
        i64::from(pool.spec.replicas),
        i64::from(status.ready_replicas),
    );
    let settled = gate.is_none()
        && plan.create == 0
        && plan.delete.is_empty()
        && status.available_replicas == pool.spec.replicas
        && status.replicas == pool.spec.replicas;
    write_status(pool, ctx, &status).await?;
    Ok(if settled {
        ctx.backoff.forget_for(pool);
        Action::requeue(REQUEUE_STEADY)
    } else {
        Action::requeue(ctx.backoff.next_for(pool))
    })
}

fn available(hc: &HostedCluster) -> bool {
    hc.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == reasons::AVAILABLE && c.status == "True")
    })
}

/// What keeps the pool from creating workers, if anything: the first of cluster, version,
/// cloud and join preparation that fails.
/// When nothing does, what the join preparation reported (the bootstrap token's expiry and the
/// add-ons' state).
async fn gate(
    ctx: &Context,
    pool: &NodePool,
    hc: Option<&HostedCluster>,
) -> (Option<Gate>, Option<status::Prepared>) {
    let cluster = &pool.spec.cluster_name;
    let Some(hc) = hc else {
        let message = format!("HostedCluster {cluster} does not exist in this namespace");
        return (Some((reasons::REASON_CLUSTER_NOT_AVAILABLE, message)), None);
    };
    if !available(hc) {
        let message = format!("HostedCluster {cluster} is not Available: workers could not join it yet");
        return (Some((reasons::REASON_CLUSTER_NOT_AVAILABLE, message)), None);
    }
    if let Some(wanted) = &pool.spec.version
        && newer(wanted, &hc.spec.version)
    {
        let message = format!(
            "spec.version {wanted} is newer than the control plane's {} (HostedCluster {cluster}): \
             kubelets must not be newer than their API server",
            hc.spec.version
        );
        return (
            Some((reasons::REASON_VERSION_NEWER_THAN_CONTROL_PLANE, message)),
            None,
        );
    }
    if let Err(error) = ctx.clouds.compute(&ctx.client, pool).await {
        return (Some((cloud::reason(&error), error.to_string())), None);
    }
    match join::prepare(ctx, hc, pool).await {
        Ok((join, addons)) => (
            None,
            Some(status::Prepared {
                token_expires: join.token_expires,
                addons,
            }),
        ),
        Err(error) => (
            Some((reasons::REASON_JOIN_PREPARATION_FAILED, error.to_string())),
            None,
        ),
    }
}

/// `a` is a later Kubernetes version than `b` (`vMAJOR.MINOR.PATCH`).
fn newer(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> {
        v.trim_start_matches('v')
            .split(['.', '-', '+'])
            .take(3)
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    parse(a) > parse(b)
}

/// Digest of everything a worker is made from: a change replaces workers in a rolling update.
/// The cloud Secret's name is left out: new credentials for the same cloud replace nothing.
fn template_hash(pool: &NodePool, version: Option<&str>) -> String {
    let mut openstack = pool.spec.openstack.clone();
    openstack.cloud_secret_ref = Default::default();
    let mut fields = json!({
        "openstack": openstack,
        "version": version,
        "nodeLabels": pool.spec.node_labels,
        "nodeTaints": pool.spec.node_taints,
        "kubeletExtraArgs": pool.spec.kubelet_extra_args,
    });
    // Only when set, so that pools without mirrors keep their digest (and their workers).
    if !pool.spec.registry_mirrors.is_empty() {
        fields["registryMirrors"] = json!(pool.spec.registry_mirrors);
    }
    let mut hash = hash_data([("template", fields.to_string().as_bytes())]);
    hash.truncate(16);
    hash
}

/// The pool's Workers, read live (a create of the last pass must be seen, or it is repeated).
async fn list_workers(ctx: &Context, pool: &NodePool) -> Result<Vec<Worker>> {
    let namespace = pool.namespace().unwrap_or_default();
    let selector = format!("{NODE_POOL_LABEL}={}", pool.name_any());
    let uid = pool.uid();
    let workers = Api::<Worker>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .context("list", "Worker", &selector)?;
    Ok(workers
        .items
        .into_iter()
        .filter(|w| {
            w.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        })
        .collect())
}

fn view(worker: &Worker, nodes: &BTreeMap<String, hosted_nodes::NodeState>, nodes_read: bool) -> WorkerView {
    let status = worker.status.clone().unwrap_or_default();
    WorkerView {
        name: worker.name_any(),
        phase: status.phase,
        template_hash: worker.spec.template_hash.clone(),
        created: worker.metadata.creation_timestamp.as_ref().map(|t| t.0),
        deleting: worker.metadata.deletion_timestamp.is_some(),
        node: nodes.get(&worker.name_any()).cloned(),
        nodes_read,
        server_created: status
            .server_id
            .as_ref()
            .and(status.server_created.as_ref())
            .map(|t| t.0),
        failure: status.failure_reason.zip(status.failure_message),
    }
}

/// Deletes and creates Workers as planned, with an event for each.
async fn act(pool: &NodePool, ctx: &Context, plan: &plan::Plan, template_hash: &str) -> Result<()> {
    let namespace = pool.namespace().unwrap_or_default();
    let api: Api<Worker> = Api::namespaced(ctx.client.clone(), &namespace);
    for (name, why) in &plan.delete {
        let because = match why {
            Removal::ScaleDown => "scaling down".to_string(),
            Removal::Outdated => "replacing a worker of an older spec".to_string(),
            Removal::Repair(fault) => format!("auto-repair: {fault}"),
        };
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => info!(worker = %name, %because, "deleting worker"),
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(source) => return Err(source).context("delete", "Worker", name),
        }
        let note = format!("deleting worker {name}: {because}");
        publish(
            ctx,
            pool,
            event(EventType::Normal, "WorkerDeleting", "Scale").note(note),
        )
        .await;
    }
    for _ in 0..plan.create {
        let created = api
            .create(&PostParams::default(), &new_worker(pool, template_hash)?)
            .await
            .context("create", "Worker", &format!("{}-*", pool.name_any()))?;
        info!(worker = %created.name_any(), "created worker");
        let note = format!("created worker {}", created.name_any());
        publish(
            ctx,
            pool,
            event(EventType::Normal, "WorkerCreated", "Scale").note(note),
        )
        .await;
    }
    Ok(())
}

/// A Worker named `<pool>-<5 random characters>` (the API server's `generateName`), owned by
/// the pool.
fn new_worker(pool: &NodePool, template_hash: &str) -> Result<Worker> {
    let owner = pool
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("NodePool metadata.uid"))?;
    Ok(Worker {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", pool.name_any())),
            namespace: pool.namespace(),
            labels: Some(BTreeMap::from([(NODE_POOL_LABEL.to_string(), pool.name_any())])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: WorkerSpec {
            node_pool: pool.name_any(),
            cluster_name: pool.spec.cluster_name.clone(),
            template_hash: template_hash.to_string(),
        },
        status: None,
    })
}

async fn write_status(pool: &NodePool, ctx: &Context, status: &crate::api::NodePoolStatus) -> Result<()> {
    if pool.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<NodePool> = Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": <NodePool as Resource>::api_version(&()),
        "kind": <NodePool as Resource>::kind(&()),
        "status": status,
    });
    api.patch_status(
        &pool.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .context("patch status of", KIND, &pool.name_any())?;
    Ok(())
}

/// Deletes every Worker (each deletes its server) and waits until they are gone.
async fn cleanup(pool: &NodePool, ctx: &Context, api: &Api<NodePool>) -> Result<Action> {
    if !pool.finalizers().iter().any(|f| f == finalizers::FINALIZER) {
        return Ok(Action::await_change());
    }
    let workers = list_workers(ctx, pool).await?;
    if !workers.is_empty() {
        let plan = plan::Plan {
            create: 0,
            delete: workers
                .iter()
                .filter(|w| w.metadata.deletion_timestamp.is_none())
                .map(|w| (w.name_any(), Removal::ScaleDown))
                .collect(),
        };
        act(pool, ctx, &plan, "").await?;
        return Ok(Action::requeue(REQUEUE_DELETING));
    }
    sweep(pool, ctx).await?;
    let namespace = pool.namespace().unwrap_or_default();
    if let Some(hc) = Api::<HostedCluster>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&pool.spec.cluster_name)
        .await
        .context("get", "HostedCluster", &pool.spec.cluster_name)?
    {
        join::cleanup(ctx, &hc, pool).await?;
    }
    finalizers::remove(api, pool, KIND).await?;
    ctx.metrics
        .forget_node_pool(&pool.namespace().unwrap_or_default(), &pool.name_any());
    ctx.backoff.forget_for(pool);
    Ok(Action::await_change())
}

/// Deletes what a gone pool may have left in the cloud besides servers: ports of a Worker whose
/// finalizer was removed by hand, and the pool's server group (nothing to do, and no cloud
/// client needed, for a pool with neither). With no Worker left and no
/// usable cloud Secret (a pool of a cluster that never existed, deleted with its namespace),
/// there is nothing to sweep with: the pool goes, with a warning, rather than never.
async fn sweep(pool: &NodePool, ctx: &Context) -> Result<()> {
    let openstack = &pool.spec.openstack;
    if openstack.ports.is_empty() && openstack.server_group_policy.is_none() {
        return Ok(());
    }
    let compute = match ctx.clouds.compute(&ctx.client, pool).await {
        Ok(compute) => compute,
        Err(error @ Error::CloudSecret { .. }) => {
            warn!(%error, "not sweeping the pool's ports and server groups");
            let note =
                format!("unattached ports and server groups of the pool, if any, were not swept: {error}");
            publish(
                ctx,
                pool,
                event(EventType::Warning, reasons::REASON_CLOUD_SECRET_INVALID, "Delete").note(note),
            )
            .await;
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    let tag = worker::server::pool_tag(&pool.uid().ok_or(Error::MissingField("metadata.uid"))?);
    if !openstack.ports.is_empty() {
        worker::server::delete_unattached_ports(compute.as_ref(), &tag).await?;
    }
    if openstack.server_group_policy.is_some() {
        compute.delete_server_groups(&tag).await?;
    }
    Ok(())
}

/// The NodePools of `hc`, for the HostedCluster's cleanup: deletes them and says which remain.
pub async fn delete_pools_of(client: &kube::Client, hc: &HostedCluster) -> Result<Vec<String>> {
    let namespace = hc.namespace().unwrap_or_default();
    let api: Api<NodePool> = Api::namespaced(client.clone(), &namespace);
    let pools = match api.list(&ListParams::default()).await {
        Ok(pools) => pools,
        // No NodePool CRD installed: no pools.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Vec::new()),
        Err(source) => return Err(source).context("list", KIND, &namespace),
    };
    let mut remaining = Vec::new();
    for pool in pools
        .items
        .iter()
        .filter(|p| p.spec.cluster_name == hc.name_any())
    {
        if pool.metadata.deletion_timestamp.is_none() {
            match api.delete(&pool.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(source) => return Err(source).context("delete", KIND, &pool.name_any()),
            }
        }
        remaining.push(pool.name_any());
    }
    Ok(remaining)
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::api::NodePool;

    /// A pool of one worker on the test cloud's names.
    pub fn pool() -> NodePool {
        let mut pool: NodePool = serde_json::from_value(serde_json::json!({
            "apiVersion": "nestplane.io/v1alpha1",
            "kind": "NodePool",
            "metadata": { "name": "workers", "namespace": "team-a", "uid": "p-uid", "generation": 1 },
            "spec": {
                "clusterName": "demo",
                "openstack": {
                    "cloudSecretRef": { "name": "cloud" },
                    "cloud": "nestplane",
                    "flavor": "nestplane.tiny",
                    "image": "nestplane-tiny",
                    "networks": ["nestplane-net"],
                },
            },
        }))
        .expect("pool");
        pool.status = None;
        pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_number_not_text() {
        assert!(newer("v1.35.10", "v1.35.4"));
        assert!(!newer("v1.35.4", "v1.35.4"));
        assert!(!newer("v1.34.9", "v1.35.0"));
    }

    #[test]
    fn the_template_changes_with_the_image_not_with_the_credentials_secret() {
        let pool = testing::pool();
        let before = template_hash(&pool, Some("v1.35.4"));
        let mut other_secret = pool.clone();
        other_secret.spec.openstack.cloud_secret_ref.name = "rotated".into();
        assert_eq!(template_hash(&other_secret, Some("v1.35.4")), before);
        let mut other_image = pool.clone();
        other_image.spec.openstack.image = "nestplane-tiny-2".into();
        assert_ne!(template_hash(&other_image, Some("v1.35.4")), before);
        assert_ne!(template_hash(&pool, Some("v1.35.3")), before);
    }

    #[test]
    fn registry_mirrors_change_the_template_and_pools_without_keep_theirs() {
        let pool = testing::pool();
        let before = template_hash(&pool, Some("v1.35.4"));
        // The digest before registryMirrors existed: a pool without mirrors must not roll.
        let mut openstack = pool.spec.openstack.clone();
        openstack.cloud_secret_ref = Default::default();
        let fields = json!({
            "openstack": openstack,
            "version": "v1.35.4",
            "nodeLabels": pool.spec.node_labels,
            "nodeTaints": pool.spec.node_taints,
            "kubeletExtraArgs": pool.spec.kubelet_extra_args,
        });
        let mut earlier = hash_data([("template", fields.to_string().as_bytes())]);
        earlier.truncate(16);
        assert_eq!(before, earlier);
        let mut mirrored = pool.clone();
        mirrored.spec.registry_mirrors = vec![crate::api::RegistryMirror {
            registry: "registry.k8s.io".into(),
            endpoints: vec!["https://mirror.example.com".into()],
            ca_bundle: None,
        }];
        let with_mirrors = template_hash(&mirrored, Some("v1.35.4"));
        assert_ne!(with_mirrors, before);
        // The digest before caBundle existed: mirrors without one keep their workers too.
        let mut fields = fields;
        fields["registryMirrors"] = json!([{
            "registry": "registry.k8s.io",
            "endpoints": ["https://mirror.example.com"],
        }]);
        let mut earlier = hash_data([("template", fields.to_string().as_bytes())]);
        earlier.truncate(16);
        assert_eq!(with_mirrors, earlier);
        mirrored.spec.registry_mirrors[0].ca_bundle = Some("-----BEGIN CERTIFICATE-----".into());
        assert_ne!(
            template_hash(&mirrored, Some("v1.35.4")),
            with_mirrors,
            "a new CA bundle replaces the workers"
        );
    }

    #[test]
    fn a_new_worker_is_named_after_and_owned_by_its_pool() {
        let worker = new_worker(&testing::pool(), "abc").expect("worker");
        assert_eq!(worker.metadata.generate_name.as_deref(), Some("workers-"));
        let owner = &worker.metadata.owner_references.as_ref().expect("owners")[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("NodePool", Some(true)));
        assert_eq!(
            worker.labels().get(NODE_POOL_LABEL).map(String::as_str),
            Some("workers")
        );
        assert_eq!(worker.spec.template_hash, "abc");
    }
}
