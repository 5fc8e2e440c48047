//! The node start-up timeout against the real operator and the test cloud's fake compute host,
//! whose servers go ACTIVE and never boot, so their Nodes never register: with
//! `nodeStartupTimeoutSeconds: 30`, auto-repair replaces the worker and its server (one server at
//! the end, the old one gone from Nova, an event saying why), and a pool without auto-repair keeps
//! its worker and names it in `AllMachinesReady`.

use anyhow::{Context, Result, anyhow, ensure};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nestplane_api::{NodePool, WorkerPhase};
use nestplane_e2e::hosted::{self, eventually};
use nestplane_e2e::node_pools::{
    STEP, agree, condition, create_cloud_secret, delete_leaves_nothing, pool, pool_tag, servers, workers,
};
use nestplane_e2e::openstack::{cloud_config, clouds_yaml};
use nestplane_e2e::with_temp_namespace;
use nestplane_openstack::Client as Nova;
use serde_json::json;

const STARTUP_TIMEOUT_S: i64 = 30;
const NO_NODE: &str = "no Node registered within 30s of server creation";

/// A one-worker pool on the fake host with a 30 s start-up timeout and `autoRepair`.
async fn create_pool(
    client: &Client,
    namespace: &str,
    cluster: &str,
    name: &str,
    auto_repair: bool,
) -> Result<NodePool> {
    let mut spec = pool(namespace, name, cluster, "nestplane", "nestplane.tiny", 1)?;
    spec.spec.management.auto_repair = auto_repair;
    spec.spec.management.node_startup_timeout_seconds = STARTUP_TIMEOUT_S as i32;
    Ok(Api::<NodePool>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &spec)
        .await?)
}

/// The pool's first Worker once it has recorded its server: (Worker, server ID, server created).
async fn first_worker(client: &Client, pool: &NodePool) -> Result<(String, String, Timestamp)> {
    eventually(STEP, || async {
        let workers = workers(client, pool).await?;
        ensure!(workers.len() == 1, "{} Workers", workers.len());
        let status = workers[0].status.clone().unwrap_or_default();
        let id = status.server_id.ok_or_else(|| anyhow!("no server yet"))?;
        let created = status.server_created.ok_or_else(|| anyhow!("no serverCreated"))?;
        Ok((workers[0].name_any(), id, created.0))
    })
    .await
    .with_context(|| format!("the first Worker of {}", pool.name_any()))
}

/// The `WorkerDeleting` event of `pool` about `worker`: its message and when it happened.
async fn deleting_event(client: &Client, pool: &NodePool, worker: &str) -> Result<(String, Timestamp)> {
    let selector = format!(
        "involvedObject.kind=NodePool,involvedObject.name={},reason=WorkerDeleting",
        pool.name_any()
    );
    let events = Api::<Event>::namespaced(client.clone(), &pool.namespace().unwrap_or_default())
        .list(&ListParams::default().fields(&selector))
        .await?;
    let event = events
        .items
        .into_iter()
        .find(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.starts_with(&format!("deleting worker {worker}:")))
        })
        .ok_or_else(|| anyhow!("no WorkerDeleting event about {worker}"))?;
    let at = event
        .event_time
        .map(|t| t.0)
        .or(event.first_timestamp.map(|t| t.0))
        .ok_or_else(|| anyhow!("the event has no time"))?;
    Ok((event.message.unwrap_or_default(), at))
}

#[tokio::test]
async fn a_worker_whose_node_never_registers_is_replaced_after_the_startup_timeout() -> Result<()> {
    with_temp_namespace("np-startup", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane")?)?;
        let hc = hosted::create_available(&client, &hosted::sample(&namespace)?).await?;
        create_cloud_secret(&client, &namespace, "cloud", &clouds_yaml()?).await?;
        let repaired = create_pool(&client, &namespace, &hc.name_any(), "repaired", true).await?;
        let kept = create_pool(&client, &namespace, &hc.name_any(), "kept", false).await?;
        let (first, first_server, created) = first_worker(&client, &repaired).await?;
        let (kept_worker, kept_server, _) = first_worker(&client, &kept).await?;

        // Replaced: a new Worker, the old server gone from Nova, and the event says why.
        eventually(STEP, || async {
            let names: Vec<String> = workers(&client, &repaired)
                .await?
                .iter()
                .map(|w| w.name_any())
                .collect();
            ensure!(!names.contains(&first), "{first} is still there: {names:?}");
            ensure!(names.iter().any(|n| n != &first), "no replacement yet: {names:?}");
            let left = servers(&nova, &pool_tag(&repaired)).await?;
            ensure!(
                !left.iter().any(|(id, _)| *id == first_server),
                "server {first_server} of {first} is still in Nova: {left:?}"
            );
            Ok(())
        })
        .await
        .context("the unjoined worker replaced")?;
        let (message, at) = eventually(STEP, || deleting_event(&client, &repaired, &first)).await?;
        ensure!(
            message.contains(&format!("auto-repair: {NO_NODE}")),
            "the event does not say why: {message}"
        );
        // Nova's and the operator's clocks are this host's: a second of slack for rounding.
        let earliest = created + SignedDuration::from_secs(STARTUP_TIMEOUT_S - 1);
        ensure!(
            at >= earliest,
            "{first} was deleted at {at}, before the start-up timeout ({created} + {STARTUP_TIMEOUT_S}s)"
        );
        let (_, _, autorepair) = condition(
            &Api::<NodePool>::namespaced(client.clone(), &namespace)
                .get("repaired")
                .await?,
            "AutorepairEnabled",
        )
        .ok_or_else(|| anyhow!("no AutorepairEnabled"))?;
        ensure!(
            autorepair.contains("NotReady for 300s") && autorepair.contains("within 30s of server creation"),
            "AutorepairEnabled does not name both timeouts: {autorepair}"
        );

        // Stop the churn (every replacement never joins either), then exactly one Worker and one
        // server, the Worker's own: no leak, no duplicate.
        let pools: Api<NodePool> = Api::namespaced(client.clone(), &namespace);
        let off = json!({ "spec": { "management": { "autoRepair": false } } });
        pools
            .patch("repaired", &PatchParams::default(), &Patch::Merge(&off))
            .await?;
        let settled = agree(&client, &nova, &repaired, 1).await?;
        ensure!(settled[0].name_any() != first, "the first worker came back");

        // Without auto-repair: the same worker and server, Joining, with the reason on the
        // Worker and its name in the pool's AllMachinesReady.
        eventually(STEP, || async {
            let current = pools.get("kept").await?;
            let (status, reason, message) =
                condition(&current, "AllMachinesReady").ok_or_else(|| anyhow!("no AllMachinesReady"))?;
            ensure!(
                status == "False" && reason == "NodeStartupTimeout",
                "AllMachinesReady {status} {reason}: {message}"
            );
            ensure!(
                message.contains(NO_NODE) && message.contains(&kept_worker),
                "AllMachinesReady does not name {kept_worker}: {message}"
            );
            Ok(())
        })
        .await
        .context("the kept pool naming its late worker")?;
        let only = workers(&client, &kept).await?;
        ensure!(only.len() == 1, "{} Workers in the kept pool", only.len());
        ensure!(
            only[0].name_any() == kept_worker,
            "the kept pool's worker was replaced: {}",
            only[0].name_any()
        );
        let status = only[0].status.clone().unwrap_or_default();
        ensure!(
            status.phase == Some(WorkerPhase::Joining),
            "phase {:?}",
            status.phase
        );
        ensure!(
            status.failure_reason.as_deref() == Some("NodeStartupTimeout")
                && status
                    .failure_message
                    .as_deref()
                    .is_some_and(|m| m.contains(NO_NODE)),
            "failure {:?}: {:?}",
            status.failure_reason,
            status.failure_message
        );
        let kept_servers = servers(&nova, &pool_tag(&kept)).await?;
        ensure!(
            kept_servers.len() == 1 && kept_servers.iter().all(|(id, _)| *id == kept_server),
            "the kept pool's servers changed: {kept_servers:?}"
        );

        delete_leaves_nothing(&client, &nova, &repaired).await?;
        delete_leaves_nothing(&client, &nova, &kept).await?;
        Ok(())
    })
    .await
}
