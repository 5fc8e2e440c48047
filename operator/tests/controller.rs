//! The HostedCluster controller against a real kube-apiserver and etcd (no management cluster):
//! finalizer, owned objects, status, an idempotent second pass, no takeover of an object that
//! is someone else's, and deletion. No kubelet or controller manager runs, so no pod starts
//! and etcd never becomes ready: the cluster stays Provisioning, as it would on a cluster
//! whose etcd cannot start.
//!
//! Needs the pinned binaries (`make binaries`); without them it passes with a note, except
//! under `make test`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Resource, ResourceExt};
use nestplane::api::HostedCluster;
use nestplane::controllers::{self, Config};
use nestplane::metrics::Metrics;
use nestplane_testenv::TestEnv;
use serde::de::DeserializeOwned;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);
const CLUSTER: &str = "demo";
const FINALIZER: &str = "nestplane.io/cleanup";

#[test]
fn hosted_cluster_controller_on_a_real_api_server() -> Result<()> {
    let Some(mut env) = TestEnv::start("controller") else {
        return Ok(());
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(async {
        let client = env.client().await;
        install_crd(&client).await?;
        let metrics = Arc::new(Metrics::default());
        let config = Config {
            image_registry: "registry.k8s.io".into(),
            namespace: None,
            tunnel_image: "ghcr.io/nestplane/nestplane:test".into(),
        };
        let controller = tokio::spawn(controllers::run(client.clone(), config, metrics.clone()));
        let outcome = async {
            let hc = first_pass_provisions_and_reports(&client).await?;
            second_pass_rewrites_nothing(&client, &metrics, &hc).await?;
            an_object_of_a_derived_name_is_not_taken_over(&client).await?;
            deletion_removes_the_finalizer(&client, &hc).await
        }
        .await;
        controller.abort();
        outcome
    });
    if outcome.is_err() {
        // A failure from a stopped etcd or API server is reported with its log.
        env.assert_running();
    }
    outcome
}

async fn install_crd(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = nestplane::api::hosted_cluster_crd();
    crds.create(&PostParams::default(), &crd).await?;
    let name = crd.name_any();
    let established = await_condition(crds, &name, conditions::is_crd_established());
    tokio::time::timeout(TIMEOUT, established)
        .await
        .context("the CRD is not established")??;
    Ok(())
}

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(())
}

/// The sample, with the endpoint's address given: there are no Nodes to take one from.
async fn create_hosted_cluster(client: &Client, namespace: &str) -> Result<HostedCluster> {
    let hc: HostedCluster = serde_json::from_value(json!({
        "apiVersion": "nestplane.io/v1alpha1",
        "kind": "HostedCluster",
        "metadata": { "name": CLUSTER, "namespace": namespace },
        "spec": {
            "version": "v1.35.4",
            "apiServer": { "service": { "address": "192.0.2.10" } },
        },
    }))?;
    Ok(Api::<HostedCluster>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &hc)
        .await?)
}

async fn first_pass_provisions_and_reports(client: &Client) -> Result<HostedCluster> {
    let namespace = "provisioning";
    create_namespace(client, namespace).await?;
    let created = create_hosted_cluster(client, namespace).await?;
    let api: Api<HostedCluster> = Api::namespaced(client.clone(), namespace);
    let hc = wait_for(&api, CLUSTER, "a status with an Available condition", |hc| {
        condition(hc, "Available").is_some()
    })
    .await?;

    ensure!(
        hc.finalizers().iter().any(|f| f == FINALIZER),
        "finalizer {FINALIZER} missing: {:?}",
        hc.finalizers()
    );
    let uid = created.uid().ok_or_else(|| anyhow!("no uid"))?;
    for name in ["demo-apiserver", "demo-etcd", "demo-etcd-client"] {
        let service = Api::<Service>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?;
        controlled_by(&uid, "Service", service.as_ref().map(|s| &s.metadata))?;
    }
    let node_port = Api::<Service>::namespaced(client.clone(), namespace)
        .get("demo-apiserver")
        .await?
        .spec
        .and_then(|s| s.ports?.first()?.node_port)
        .ok_or_else(|| anyhow!("Service demo-apiserver has no node port"))?;
    let status = hc.status.clone().unwrap_or_default();
    ensure!(
        status.endpoint.as_deref() == Some(&format!("https://192.0.2.10:{node_port}")),
        "endpoint {:?} is not the configured address and the node port {node_port}",
        status.endpoint
    );
    let secret_names = [
        "demo-ca",
        "demo-etcd-ca",
        "demo-front-proxy-ca",
        "demo-sa",
        "demo-encryption",
        "demo-apiserver",
        "demo-kubeconfig",
    ];
    for name in secret_names {
        let secret = Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?;
        controlled_by(&uid, "Secret", secret.as_ref().map(|s| &s.metadata))?;
        let keys = secret.and_then(|s| s.data).unwrap_or_default();
        ensure!(!keys.is_empty(), "Secret {name} holds no data");
    }
    let audit = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt("demo-audit-policy")
        .await?;
    controlled_by(&uid, "ConfigMap", audit.as_ref().map(|c| &c.metadata))?;
    let etcd = Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .get_opt("demo-etcd")
        .await?;
    controlled_by(&uid, "StatefulSet", etcd.as_ref().map(|s| &s.metadata))?;
    // Everything else nestplane labelled as this cluster's is the HostedCluster's too.
    for (kind, meta) in owned_objects(client, namespace).await? {
        controlled_by(&uid, &kind, Some(&meta))?;
    }

    // Every component starts at once, each retrying the one it needs: etcd never becomes ready
    // here (no kubelet), and the others are created all the same.
    let deployments: BTreeSet<String> = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let expected: BTreeSet<String> = [
        "demo-kube-apiserver",
        "demo-kube-controller-manager",
        "demo-kube-scheduler",
    ]
    .map(String::from)
    .into();
    ensure!(
        deployments == expected,
        "Deployments {deployments:?}, expected {expected:?}"
    );
    expect_condition(
        &hc,
        "EtcdAvailable",
        "False",
        "Progressing",
        "0/1 etcd pods ready",
    )?;
    expect_condition(
        &hc,
        "APIServerAvailable",
        "False",
        "Progressing",
        "0/1 kube-apiserver pods ready",
    )?;
    expect_condition(
        &hc,
        "Available",
        "False",
        "ComponentsUnavailable",
        "etcd, kube-apiserver, kube-controller-manager, kube-scheduler",
    )?;
    ensure!(
        status.phase.as_deref() == Some("Provisioning"),
        "phase {:?}",
        status.phase
    );
    ensure!(
        status.observed_generation == hc.metadata.generation,
        "observedGeneration {:?} for generation {:?}",
        status.observed_generation,
        hc.metadata.generation
    );
    Ok(hc)
}

/// Every owned object keeps its resourceVersion through a pass forced by an annotation, and
/// the status is not written again: a settled cluster costs no writes.
async fn second_pass_rewrites_nothing(client: &Client, metrics: &Metrics, hc: &HostedCluster) -> Result<()> {
    let namespace = hc.namespace().unwrap_or_default();
    let passes = wait_until_idle(metrics).await?;
    let before = resource_versions(client, &namespace).await?;
    ensure!(
        before.len() >= 12,
        "only {} owned objects: {before:?}",
        before.len()
    );

    let api: Api<HostedCluster> = Api::namespaced(client.clone(), &namespace);
    let patch = json!({ "metadata": { "annotations": { "example.com/touched": "yes" } } });
    let touched = api
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let mut after_passes = passes;
    tokio::time::timeout(TIMEOUT, async {
        while after_passes <= passes {
            after_passes = wait_until_idle(metrics).await?;
        }
        anyhow::Ok(())
    })
    .await
    .context("no pass after the annotation changed")??;

    let after = resource_versions(client, &namespace).await?;
    let changed: Vec<_> = after
        .iter()
        .filter(|(object, version)| before.get(*object) != Some(version))
        .map(|(object, _)| object)
        .collect();
    ensure!(
        changed.is_empty() && before.len() == after.len(),
        "{} more pass(es) rewrote or created {changed:?} (before {} objects, after {})",
        after_passes - passes,
        before.len(),
        after.len()
    );
    let current = api.get(CLUSTER).await?;
    ensure!(
        current.resource_version() == touched.resource_version(),
        "the HostedCluster was written after the annotation: status {:?}",
        current.status
    );
    Ok(())
}

/// A Service of the name nestplane would give the API server's exists and is someone else's:
/// the pass stops there, says so, and leaves the Service as it was.
async fn an_object_of_a_derived_name_is_not_taken_over(client: &Client) -> Result<()> {
    let namespace = "not-ours";
    create_namespace(client, namespace).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let theirs: Service = serde_json::from_value(json!({
        "metadata": { "name": "demo-apiserver", "labels": { "app": "theirs" } },
        "spec": { "selector": { "app": "theirs" }, "ports": [{ "port": 8443 }] },
    }))?;
    let theirs = services.create(&PostParams::default(), &theirs).await?;
    create_hosted_cluster(client, namespace).await?;

    let api: Api<HostedCluster> = Api::namespaced(client.clone(), namespace);
    let hc = wait_for(&api, CLUSTER, "Available=False ObjectNotOwned", |hc| {
        condition(hc, "Available").is_some_and(|c| c.reason == "ObjectNotOwned")
    })
    .await?;
    expect_condition(
        &hc,
        "Available",
        "False",
        "ObjectNotOwned",
        "Service demo-apiserver",
    )?;

    let now = services.get("demo-apiserver").await?;
    ensure!(
        now.resource_version() == theirs.resource_version() && now.owner_references().is_empty(),
        "their Service was changed: {now:?}"
    );
    let ca = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt("demo-ca")
        .await?;
    ensure!(
        ca.is_none(),
        "a CA was minted although the pass could not own its Service"
    );
    Ok(())
}

/// The finalizer comes off and the HostedCluster is gone, though no claims exist (nothing
/// here creates a StatefulSet's claims).
async fn deletion_removes_the_finalizer(client: &Client, hc: &HostedCluster) -> Result<()> {
    let namespace = hc.namespace().unwrap_or_default();
    let api: Api<HostedCluster> = Api::namespaced(client.clone(), &namespace);
    api.delete(CLUSTER, &DeleteParams::default()).await?;
    let uid = hc.uid().unwrap_or_default();
    let gone = await_condition(api.clone(), CLUSTER, conditions::is_deleted(&uid));
    if tokio::time::timeout(TIMEOUT, gone).await.is_err() {
        let left = api.get_opt(CLUSTER).await?;
        bail!(
            "the HostedCluster is still there after {TIMEOUT:?}: finalizers {:?}, status {:?}",
            left.as_ref().map(|h| h.finalizers().to_vec()),
            left.and_then(|h| h.status)
        );
    }
    Ok(())
}

/// The object exists and its controller ownerReference is the HostedCluster `uid`.
fn controlled_by(uid: &str, kind: &str, meta: Option<&ObjectMeta>) -> Result<()> {
    let meta = meta.ok_or_else(|| anyhow!("{kind} missing"))?;
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .ok_or_else(|| anyhow!("{kind} {:?} has no controller ownerReference", meta.name))?;
    ensure!(
        controller.kind == "HostedCluster" && controller.name == CLUSTER && controller.uid == uid,
        "{kind} {:?} is controlled by {} {} ({}), not HostedCluster {CLUSTER} ({uid})",
        meta.name,
        controller.kind,
        controller.name,
        controller.uid
    );
    Ok(())
}

fn condition<'a>(hc: &'a HostedCluster, type_: &str) -> Option<&'a Condition> {
    hc.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

fn expect_condition(
    hc: &HostedCluster,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> Result<()> {
    let found = condition(hc, type_).ok_or_else(|| anyhow!("no {type_} condition: {:?}", hc.status))?;
    ensure!(
        found.status == status && found.reason == reason && found.message.contains(message),
        "{type_}: want {status} {reason} with {message:?} in the message, got {} {} {:?}",
        found.status,
        found.reason,
        found.message
    );
    Ok(())
}

/// Polls the HostedCluster until `ready` holds.
async fn wait_for(
    api: &Api<HostedCluster>,
    name: &str,
    what: &str,
    ready: impl Fn(&HostedCluster) -> bool,
) -> Result<HostedCluster> {
    let mut last = None;
    let polled = tokio::time::timeout(TIMEOUT, async {
        loop {
            last = api.get_opt(name).await?;
            if let Some(hc) = last.as_ref().filter(|hc| ready(hc)) {
                return anyhow::Ok(hc.clone());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    match polled {
        Ok(found) => found,
        Err(_) => bail!(
            "HostedCluster {name}: no {what} after {TIMEOUT:?}; last seen {:?}",
            last.and_then(|hc| hc.status)
        ),
    }
}

/// Waits until no pass is running, and returns how many have finished.
async fn wait_until_idle(metrics: &Metrics) -> Result<u64> {
    for _ in 0..240 {
        let text = metrics.encode()?;
        let started = counter(&text, "nestplane_reconcile_runs_total")?;
        let finished = counter(&text, "nestplane_reconcile_duration_seconds_count")?;
        if started == finished && finished > 0 {
            // A pass may be about to start on a watch event of the last one's writes.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let text = metrics.encode()?;
            if counter(&text, "nestplane_reconcile_runs_total")? == started {
                return Ok(finished);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("the controller never went idle")
}

fn counter(text: &str, name: &str) -> Result<u64> {
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) && line.contains("controller=\"hostedcluster\"")
        })
        .find_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .ok_or_else(|| anyhow!("no {name} for hostedcluster in\n{text}"))
}

/// The objects labelled as this cluster's by nestplane, as `(kind, metadata)`.
async fn owned_objects(client: &Client, namespace: &str) -> Result<Vec<(String, ObjectMeta)>> {
    let params = ListParams::default().labels(&format!(
        "app.kubernetes.io/instance={CLUSTER},app.kubernetes.io/managed-by=nestplane"
    ));
    let mut objects = Vec::new();
    collect::<Secret>(client, namespace, &params, &mut objects).await?;
    collect::<Service>(client, namespace, &params, &mut objects).await?;
    collect::<ConfigMap>(client, namespace, &params, &mut objects).await?;
    collect::<StatefulSet>(client, namespace, &params, &mut objects).await?;
    collect::<Deployment>(client, namespace, &params, &mut objects).await?;
    collect::<PodDisruptionBudget>(client, namespace, &params, &mut objects).await?;
    Ok(objects)
}

async fn collect<K>(
    client: &Client,
    namespace: &str,
    params: &ListParams,
    into: &mut Vec<(String, ObjectMeta)>,
) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let listed = Api::<K>::namespaced(client.clone(), namespace)
        .list(params)
        .await?;
    into.extend(
        listed
            .items
            .into_iter()
            .map(|o| (K::KIND.to_string(), o.meta().clone())),
    );
    Ok(())
}

/// `kind/name` → resourceVersion of every owned object.
async fn resource_versions(client: &Client, namespace: &str) -> Result<BTreeMap<String, String>> {
    Ok(owned_objects(client, namespace)
        .await?
        .into_iter()
        .map(|(kind, meta)| {
            (
                format!("{kind}/{}", meta.name.unwrap_or_default()),
                meta.resource_version.unwrap_or_default(),
            )
        })
        .collect())
}
