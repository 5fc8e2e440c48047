//! HostedCluster reconciliation: orchestration only. Builders make the objects, `pki_store`
//! the Secrets, `status` the conditions; this file runs them in dependency order.
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, info_span, instrument, warn};

use super::pki_store::{self, PkiRequest, SecretData};
use super::status::{Observed, WorkloadState, compute_status};
use super::{Context, owned};
use crate::api::conditions::PHASE_DELETING;
use crate::api::{ApiServerServiceType, HostedCluster};
use crate::builders::secrets::{SecretRole, mounted_by};
use crate::builders::{
    self, APISERVER_SERVICE_PORT, Component, Endpoint, Images, Inputs, etcd, hash_data, kube_apiserver,
    kube_controller_manager, kube_scheduler,
};
use crate::error::{Error, KubeContext, Result};

pub const FINALIZER: &str = "nestplane.io/cleanup";

#[instrument(skip_all, fields(namespace = %hc.namespace().unwrap_or_default(), name = %hc.name_any()))]
pub async fn reconcile(hc: Arc<HostedCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer("hostedcluster");
    ctx.metrics.reconcile_run("hostedcluster");
    let namespace = hc.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<HostedCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, hc, |event| async {
        match event {
            FinalizerEvent::Apply(hc) => apply(&hc, &ctx).await,
            FinalizerEvent::Cleanup(hc) => cleanup(&hc, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

pub fn error_policy(hc: Arc<HostedCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(name = %hc.name_any(), error = %error, "reconcile failed");
    ctx.metrics.reconcile_failure("hostedcluster", error);
    Action::requeue(error.retry_after())
}

async fn apply(hc: &HostedCluster, ctx: &Context) -> Result<Action> {
    let outcome = provision(hc, ctx).await;
    let (observed, requeue) = match outcome {
        Ok(progress) => progress,
        Err(error) => {
            publish(
                ctx,
                hc,
                EventType::Warning,
                "ReconcileFailed",
                "Reconcile",
                error.to_string(),
            )
            .await;
            let observed = observe_failure(hc, ctx, &error).await;
            patch_status(hc, ctx, &observed).await?;
            return Err(error);
        }
    };
    patch_status(hc, ctx, &observed).await?;
    Ok(Action::requeue(requeue))
}

/// Services → endpoint → PKI → etcd → kube-apiserver (once etcd is ready) → controller
/// manager and scheduler (once the API server is ready). Returns what it saw, for the status.
async fn provision(hc: &HostedCluster, ctx: &Context) -> Result<(Observed, Duration)> {
    let client = &ctx.client;
    let cluster = builders::name(hc);

    let service = owned::apply(client, &kube_apiserver::service(hc, None)?)
        .instrument(info_span!("apply", component = "kube-apiserver-service"))
        .await?;
    for svc in etcd::services(hc)? {
        owned::apply(client, &svc).await?;
    }
    let Some((endpoint, apiserver_port, advertise_address)) = observe_endpoint(hc, ctx, &service).await?
    else {
        let mut observed = empty_observation(hc, None);
        observed.readyz = Err("the LoadBalancer Service has no address yet".into());
        return Ok((observed, Duration::from_secs(10)));
    };

    let request = PkiRequest {
        hc,
        endpoint: &endpoint,
        now: ctx.clock.now(),
    };
    let (secret_data, changes) = pki_store::ensure_pki(client, &request)
        .instrument(info_span!("pki"))
        .await?;
    for role in &changes.created {
        info!(secret = %role.secret_name(&cluster), "created");
    }
    for (role, why) in &changes.reissued {
        info!(secret = %role.secret_name(&cluster), reason = %why, "reissued");
        let note = format!("reissued Secret {}: {why}", role.secret_name(&cluster));
        publish(
            ctx,
            hc,
            EventType::Normal,
            "CertificateReissued",
            "RotateCertificate",
            note,
        )
        .await;
    }
    ctx.metrics.record_certificates(hc, &secret_data);

    let inputs = Inputs {
        images: Images::for_version(&hc.spec.version, &ctx.config.image_registry)?,
        endpoint: endpoint.clone(),
        apiserver_port,
        advertise_address,
        inputs_hash: Component::ALL
            .iter()
            .map(|c| (*c, component_hash(&secret_data, *c)))
            .collect(),
    };

    let mut workloads = Vec::new();
    let sts = owned::apply(client, &etcd::statefulset(hc, &inputs)?)
        .instrument(info_span!("apply", component = "etcd"))
        .await?;
    let etcd_state = statefulset_state(&sts);
    workloads.push((Component::Etcd, etcd_state.clone()));

    let apiserver_state = if is_ready(&etcd_state) {
        let d = owned::apply(client, &kube_apiserver::deployment(hc, &inputs)?)
            .instrument(info_span!("apply", component = "kube-apiserver"))
            .await?;
        deployment_state(&d)
    } else {
        observe_deployment(hc, ctx, Component::KubeApiserver, "etcd").await?
    };
    workloads.push((Component::KubeApiserver, apiserver_state.clone()));

    for (component, build) in [
        (
            Component::KubeControllerManager,
            kube_controller_manager::deployment as BuildFn,
        ),
        (Component::KubeScheduler, kube_scheduler::deployment as BuildFn),
    ] {
        let state = if is_ready(&apiserver_state) {
            let d = owned::apply(client, &build(hc, &inputs)?)
                .instrument(info_span!("apply", component = component.as_str()))
                .await?;
            deployment_state(&d)
        } else {
            observe_deployment(hc, ctx, component, "kube-apiserver").await?
        };
        workloads.push((component, state));
    }

    let readyz = if is_ready(&apiserver_state) {
        probe_readyz(&pki_store::admin_kubeconfig(&secret_data, &cluster)?).await
    } else {
        Err("kube-apiserver is not ready".to_string())
    };
    let settled = readyz.is_ok() && workloads.iter().all(|(_, s)| is_ready(s));
    let mut observed = empty_observation(hc, Some(endpoint.url()));
    observed.workloads = workloads;
    observed.readyz = readyz;
    observed.kubeconfig_secret = Some(SecretRole::AdminKubeconfig.secret_name(&cluster));
    // Steady state: look again every minute (certificate expiry, drift); sooner while progressing.
    let requeue = if settled {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(5)
    };
    Ok((observed, requeue))
}

type BuildFn = fn(&HostedCluster, &Inputs) -> Result<Deployment, builders::BuildError>;

/// Where the API server is reachable, the port it listens on, and the address it advertises.
async fn observe_endpoint(
    hc: &HostedCluster,
    ctx: &Context,
    service: &Service,
) -> Result<Option<(Endpoint, i32, Option<String>)>> {
    let spec = service.spec.clone().unwrap_or_default();
    let port = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .next()
        .unwrap_or_default();
    match hc.spec.api_server.service.type_ {
        ApiServerServiceType::NodePort => {
            let node_port = port
                .node_port
                .ok_or(Error::MissingField("spec.ports[0].nodePort"))?;
            let node_ip = node_address(ctx).await?.ok_or(Error::NoNodeAddress(node_port))?;
            let endpoint = Endpoint {
                host: node_ip.clone(),
                port: node_port,
            };
            Ok(Some((endpoint, node_port, Some(node_ip))))
        }
        ApiServerServiceType::ClusterIP => {
            let ip = spec.cluster_ip.ok_or(Error::MissingField("spec.clusterIP"))?;
            let endpoint = Endpoint {
                host: ip.clone(),
                port: port.port,
            };
            Ok(Some((endpoint, APISERVER_SERVICE_PORT, Some(ip))))
        }
        ApiServerServiceType::LoadBalancer => {
            let ingress = service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .and_then(|i| i.first().cloned());
            Ok(ingress.and_then(|i| {
                let advertise = i.ip.clone();
                i.ip.or(i.hostname).map(|host| {
                    (
                        Endpoint {
                            host,
                            port: port.port,
                        },
                        APISERVER_SERVICE_PORT,
                        advertise,
                    )
                })
            }))
        }
    }
}

/// The InternalIP of the first Ready node, by name: stable across reconciles.
async fn node_address(ctx: &Context) -> Result<Option<String>> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut list = nodes
        .list(&ListParams::default())
        .await
        .context("list", "Node", "*")?
        .items;
    list.sort_by_key(|n| n.name_any());
    Ok(list.iter().find_map(|node| {
        let status = node.status.as_ref()?;
        let ready = status
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let addresses = status.addresses.as_ref()?;
        ready.then(|| {
            addresses
                .iter()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
        })?
    }))
}

fn component_hash(data: &SecretData, component: Component) -> String {
    let mut entries = Vec::new();
    for role in mounted_by(component) {
        if let Some(secret) = data.get(role) {
            for (key, value) in secret {
                entries.push((format!("{}/{key}", role.suffix()), value.0.as_slice()));
            }
        }
    }
    hash_data(entries.iter().map(|(k, v)| (k.as_str(), *v)))
}

fn statefulset_state(sts: &StatefulSet) -> WorkloadState {
    let desired = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = sts.status.clone().unwrap_or_default();
    let current = status.observed_generation >= sts.metadata.generation
        && status.update_revision == status.current_revision;
    let ready = if current {
        status.ready_replicas.unwrap_or(0)
    } else {
        0
    };
    WorkloadState::Pods { ready, desired }
}

fn deployment_state(d: &Deployment) -> WorkloadState {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let current = status.observed_generation >= d.metadata.generation;
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let ready = if current { updated.min(available) } else { 0 };
    WorkloadState::Pods { ready, desired }
}

fn is_ready(state: &WorkloadState) -> bool {
    matches!(state, WorkloadState::Pods { ready, desired } if ready >= desired && *desired > 0)
}

/// A Deployment not applied this pass: report what exists, or that it waits for `dependency`.
async fn observe_deployment(
    hc: &HostedCluster,
    ctx: &Context,
    component: Component,
    dependency: &'static str,
) -> Result<WorkloadState> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &builders::namespace(hc));
    let name = component.workload_name(&builders::name(hc));
    Ok(
        match api.get_opt(&name).await.context("get", "Deployment", &name)? {
            Some(d) => deployment_state(&d),
            None => WorkloadState::Waiting(dependency),
        },
    )
}

/// GET /readyz on the hosted API server as its admin.
async fn probe_readyz(kubeconfig: &str) -> Result<(), String> {
    let config = kube::config::Kubeconfig::from_yaml(kubeconfig).map_err(|e| e.to_string())?;
    let mut config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    config.connect_timeout = Some(Duration::from_secs(3));
    config.read_timeout = Some(Duration::from_secs(5));
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(body) if body.trim() == "ok" => Ok(()),
        Ok(body) => Err(format!("answered {:?}", body.trim())),
        Err(e) => Err(e.to_string()),
    }
}

fn empty_observation(hc: &HostedCluster, endpoint: Option<String>) -> Observed {
    Observed {
        generation: hc.metadata.generation,
        version: hc.spec.version.clone(),
        endpoint,
        kubeconfig_secret: None,
        workloads: Component::ALL
            .iter()
            .map(|c| (*c, WorkloadState::Waiting("the endpoint")))
            .collect(),
        readyz: Err("not probed".into()),
        error: None,
    }
}

/// After a failed pass: keep the previous picture, with the error on `Available`.
async fn observe_failure(hc: &HostedCluster, ctx: &Context, error: &Error) -> Observed {
    let previous = hc.status.clone().unwrap_or_default();
    let mut observed = empty_observation(hc, previous.endpoint.clone());
    observed.kubeconfig_secret = previous.kubeconfig_secret_ref.map(|r| r.name);
    let mut workloads = Vec::new();
    for component in Component::ALL {
        let state = observe_deployment(hc, ctx, component, "a successful reconcile")
            .await
            .unwrap_or(WorkloadState::Waiting("a successful reconcile"));
        workloads.push((component, state));
    }
    observed.workloads = workloads;
    observed.error = Some(error.to_string());
    observed
}

async fn patch_status(hc: &HostedCluster, ctx: &Context, observed: &Observed) -> Result<()> {
    let status = compute_status(hc.status.as_ref(), observed, ctx.clock.timestamp());
    if hc.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let became_available = status.phase.as_deref() == Some(crate::api::conditions::PHASE_AVAILABLE)
        && hc.status.as_ref().and_then(|s| s.phase.as_deref()) != status.phase.as_deref();
    let api: Api<HostedCluster> = Api::namespaced(ctx.client.clone(), &builders::namespace(hc));
    let patch = json!({ "apiVersion": "nestplane.io/v1alpha1", "kind": "HostedCluster", "status": status });
    api.patch_status(
        &hc.name_any(),
        &PatchParams::apply(owned::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .context("patch status of", "HostedCluster", &hc.name_any())?;
    if became_available {
        let note = format!(
            "the control plane is available at {}",
            status.endpoint.unwrap_or_default()
        );
        publish(ctx, hc, EventType::Normal, "Available", "Reconcile", note).await;
    }
    Ok(())
}

/// Owned objects go by ownerReferences; nothing outside the cluster exists yet to remove first.
async fn cleanup(hc: &HostedCluster, ctx: &Context) -> Result<Action> {
    let api: Api<HostedCluster> = Api::namespaced(ctx.client.clone(), &builders::namespace(hc));
    let patch = json!({ "status": { "phase": PHASE_DELETING } });
    // Best effort: the object is going away.
    let _ = api
        .patch_status(&hc.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    publish(
        ctx,
        hc,
        EventType::Normal,
        "Deleting",
        "Cleanup",
        "removing the control plane".into(),
    )
    .await;
    Ok(Action::await_change())
}

async fn publish(
    ctx: &Context,
    hc: &HostedCluster,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &hc.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}
