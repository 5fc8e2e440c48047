//! HostedCluster reconciliation: orchestration only. Builders make the objects, `pki_store`
//! the Secrets, `observe` the reads, `status` the conditions; this file runs them in order:
//! finalizer, Services, endpoint, PKI, kubeconfigs, then each component once its dependencies
//! are available, orphan sweep, status.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, instrument, warn};

use super::Context;
use super::etcd::EtcdGuard;
use super::etcd_storage::{self, Released};
use super::events::{EventExt, event, list_note, publish, secret_reference};
use super::key_material::{self, KeyReport};
use super::observe::{
    EndpointObservation, observe_endpoint, observe_workload, observe_workloads_as_they_are,
    probe_readyz_settling,
};
use super::owned::{FIELD_MANAGER, OwnedSet};
use super::pki_store::{self, PkiRequest, SecretData, SecretReader};
use super::status::{Observed, WorkloadState, compute_status, hosted_api_pods_ready};
use super::supporting_objects::{ConfigData, apply_config_maps, apply_disruption_budgets};
use crate::api::conditions::{PHASE_AVAILABLE, PHASE_DELETING};
use crate::api::{HostedCluster, HostedClusterStatus};
use crate::builders::secrets::SecretRole;
use crate::builders::{self, Component, Endpoint, Images, Inputs, Workload, etcd, hash_data, kube_apiserver};
use crate::error::{Error, KubeContext, Result};

pub const FINALIZER: &str = "nestplane.io/cleanup";
pub(crate) const CONTROLLER: &str = "hostedcluster";
/// Steady state: look again every minute (certificate expiry, drift); while progressing or
/// failing, after the growing delays of `ctx.backoff`.
const REQUEUE_STEADY: Duration = Duration::from_secs(60);

#[instrument(skip_all, fields(namespace = %hc.namespace().unwrap_or_default(), name = %hc.name_any()))]
pub async fn reconcile(hc: Arc<HostedCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer(CONTROLLER);
    ctx.metrics.reconcile_run(CONTROLLER);
    let namespace = hc.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<HostedCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, hc, |event| async {
        match event {
            FinalizerEvent::Apply(hc) => apply(&hc, &ctx).await,
            FinalizerEvent::Cleanup(hc) => cleanup(&hc, &ctx).await,
        }
    })
    .await
    .or_else(|e| match e {
        // A second pass over a deleted object found it gone: nothing left to do.
        FinalizerError::RemoveFinalizer(kube::Error::Api(status)) if status.code == 404 => {
            Ok(Action::await_change())
        }
        e => Err(Error::Finalizer(Box::new(e))),
    })
}

pub fn error_policy(hc: Arc<HostedCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(name = %hc.name_any(), error = %error, "reconcile failed");
    ctx.metrics.reconcile_failure(CONTROLLER, error);
    if waits_for_node_pools(error) {
        // Not a failure that grows: the pools finish on their own, and nothing else wakes the
        // HostedCluster when the last one is gone.
        return Action::requeue(std::time::Duration::from_secs(5));
    }
    Action::requeue(error.retry_after().max(ctx.backoff.next(&hc)))
}

fn waits_for_node_pools(error: &Error) -> bool {
    match error {
        Error::NodePoolsRemain { .. } => true,
        Error::Finalizer(inner) => matches!(
            inner.as_ref(),
            kube::runtime::finalizer::Error::CleanupFailed(Error::NodePoolsRemain { .. })
        ),
        _ => false,
    }
}

async fn apply(hc: &HostedCluster, ctx: &Context) -> Result<Action> {
    let outcome = match OwnedSet::observe(&ctx.client, &ctx.cache, hc, &builders::owned_selector(hc)?).await {
        Ok(mut owned) => {
            let outcome = provision(hc, ctx, &mut owned).await;
            publish_changes(ctx, hc, &mut owned).await;
            outcome
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok((observed, requeue)) => {
            apply_status(hc, ctx, &observed).await?;
            key_material::clear_accept_request(&ctx.client, hc, &observed).await;
            super::etcd::clear_accept_request(&ctx.client, hc, &observed).await;
            Ok(Action::requeue(requeue))
        }
        Err(error) => {
            let event = event(EventType::Warning, "ReconcileFailed", "Reconcile").note(error.to_string());
            publish(ctx, hc, event).await;
            let observed = observe_failure(hc, ctx, &error).await;
            apply_status(hc, ctx, &observed).await?;
            Err(error)
        }
    }
}

/// One pass over the control plane. Returns what it saw (for the status) and when to look again.
async fn provision(hc: &HostedCluster, ctx: &Context, owned: &mut OwnedSet) -> Result<(Observed, Duration)> {
    let cluster = builders::name(hc)?;
    let service = apply_services(hc, owned).await?;
    let (endpoint, apiserver_port, advertise_address, tunnel_endpoint) =
        match observe_endpoint(&ctx.client, &ctx.cache, hc, &service).await? {
            EndpointObservation::Known {
                endpoint,
                apiserver_port,
                advertise_address,
                tunnel,
            } => (endpoint, apiserver_port, advertise_address, tunnel),
            // No certificate can name an endpoint that is not known: wait, and sweep nothing.
            EndpointObservation::Pending(why) => {
                let mut observed = Observed::nothing_yet(hc, None);
                observed.pending_endpoint = Some(why);
                return Ok((observed, ctx.backoff.next(hc)));
            }
        };

    let secrets = SecretReader::new(&ctx.client, &ctx.cache, hc);
    let (secret_data, keys) = ensure_secrets(hc, ctx, owned, &secrets, &endpoint, apiserver_port).await?;
    if !keys.is_intact() {
        // Nothing is issued from, or rolled out with, material nobody accepted: the workloads
        // run on with what they mounted, and nothing is swept.
        let observed = key_material::observe_blocked(hc, ctx, &secrets, &keys, &endpoint).await;
        return Ok((observed, REQUEUE_STEADY));
    }
    let config_data = apply_config_maps(hc, owned).await?;
    apply_disruption_budgets(hc, owned).await?;
    let mut etcd_guard = EtcdGuard::observe(hc, ctx, &secret_data).await?;

    let inputs = Inputs {
        images: Images::for_version(&hc.spec.version, &ctx.config.image_registry)?,
        endpoint: endpoint.clone(),
        apiserver_port,
        advertise_address,
        inputs_hash: Component::ALL
            .iter()
            .map(|c| (*c, component_hash(&secret_data, &config_data, *c)))
            .collect(),
        etcd: etcd_guard.inputs(hc, ctx),
        tunnel_image: ctx.config.tunnel_image.clone(),
    };
    let workloads = roll_out(hc, ctx, owned, &inputs, etcd_guard.held()).await?;
    etcd_guard
        .settle(hc, ctx, workloads.get(&Component::Etcd))
        .await?;

    let apiserver_ready = hosted_api_pods_ready(&workloads);
    let readyz = if apiserver_ready {
        probe_readyz_settling(
            &ctx.hosted,
            hc,
            &pki_store::admin_kubeconfig(&secret_data, &cluster)?,
        )
        .await
    } else {
        Err("kube-apiserver is not ready".to_string())
    };
    sweep_orphans(hc, ctx, owned).await?;

    let settled = readyz.is_ok() && workloads.values().all(|w| w.is_ready() && w.is_rolled_out());
    let mut observed = Observed::nothing_yet(hc, Some(endpoint.url()));
    observed.tunnel_endpoint = tunnel_endpoint.map(|t| t.url());
    observed.workloads = workloads.into_iter().collect();
    observed.readyz = readyz;
    observed.kubeconfig_secret = Some(SecretRole::AdminKubeconfig.secret_name(&cluster));
    etcd_guard.report(&mut observed);
    keys.record(&mut observed);
    let requeue = if settled {
        ctx.backoff.reset(hc);
        REQUEUE_STEADY
    } else {
        ctx.backoff.next(hc)
    };
    Ok((observed, requeue))
}

/// Deletes what this HostedCluster controls but no longer wants, with an event for each.
async fn sweep_orphans(hc: &HostedCluster, ctx: &Context, owned: &mut OwnedSet) -> Result<()> {
    for deleted in owned.delete_orphans().await? {
        let (kind, name) = (deleted.kind.clone(), deleted.name.clone());
        info!(kind, name, "deleted");
        let event = event(EventType::Normal, "Deleted", "Sweep")
            .note(format!(
                "deleted {} {}: no longer part of the control plane",
                kind.unwrap_or_default(),
                name.unwrap_or_default()
            ))
            .related(deleted);
        publish(ctx, hc, event).await;
    }
    Ok(())
}

/// The Services come first: the API server's allocated node port is part of the endpoint that
/// the serving certificate names.
async fn apply_services(hc: &HostedCluster, owned: &mut OwnedSet) -> Result<Service> {
    let service = owned
        .apply(&kube_apiserver::service(hc, None)?)
        .instrument(info_span!("apply", component = "kube-apiserver"))
        .await?;
    owned
        .apply(&kube_apiserver::pods_service(hc)?)
        .instrument(info_span!("apply", component = "kube-apiserver"))
        .await?;
    for etcd_service in etcd::services(hc)? {
        owned.apply(&etcd_service).await?;
    }
    Ok(service)
}

/// PKI and kubeconfig Secrets; an event per reissued certificate, per key-material Secret
/// renewed, and a warning while key material is not intact.
async fn ensure_secrets(
    hc: &HostedCluster,
    ctx: &Context,
    owned: &mut OwnedSet,
    secrets: &SecretReader<'_>,
    endpoint: &Endpoint,
    apiserver_port: i32,
) -> Result<(SecretData, KeyReport)> {
    let cluster = builders::name(hc)?;
    let request = PkiRequest {
        hc,
        endpoint,
        apiserver_port,
        now: ctx.clock.now(),
    };
    let pki_store::PkiOutcome {
        data: secret_data,
        reissued,
        keys,
    } = pki_store::ensure_pki(owned, secrets, &request)
        .instrument(info_span!("pki"))
        .await?;
    for check in keys.checks.iter().filter(|c| !c.ok && c.blocks_available) {
        warn!(reason = check.reason, "key material is not intact");
        let event = event(EventType::Warning, check.reason, "CheckKeyMaterial").note(check.message.clone());
        publish(ctx, hc, event).await;
    }
    for (name, note) in &keys.renewed {
        info!(secret = %name, "new key material accepted");
        let event = event(EventType::Normal, "KeyMaterialAccepted", "AcceptKeyMaterial")
            .note(note.clone())
            .related(secret_reference(hc, name));
        publish(ctx, hc, event).await;
    }
    for (role, why) in reissued {
        let name = role.secret_name(&cluster);
        info!(secret = %name, reason = why, "reissued");
        let event = event(EventType::Normal, "CertificateReissued", "RotateCertificate")
            .note(format!("reissued Secret {name}: {why}"))
            .related(secret_reference(hc, &name));
        publish(ctx, hc, event).await;
    }
    ctx.metrics
        .record_certificates(hc, pki_store::certificates(&secret_data));
    Ok((secret_data, keys))
}

/// Applies each component that is not `held` (with what it waits for) and is new or has its
/// dependencies available; reports (and keeps) the others.
async fn roll_out(
    hc: &HostedCluster,
    ctx: &Context,
    owned: &mut OwnedSet,
    inputs: &Inputs,
    held: &BTreeMap<Component, &'static str>,
) -> Result<BTreeMap<Component, WorkloadState>> {
    let mut states = BTreeMap::new();
    for component in Component::ALL {
        // A component that does not exist yet starts at once, beside its dependencies: each
        // retries the one it needs (kube-apiserver etcd, the others kube-apiserver), so a
        // cluster starts in the time of its slowest component, not of their sum. An existing one
        // is changed only while its dependencies are ready: a restarting etcd rolls nothing.
        let existing = observe_workload(&ctx.cache, hc, component);
        let exists = existing.is_some();
        let blocked_by = held.get(&component).copied().or_else(|| {
            component
                .depends_on()
                .iter()
                .find(|d| exists && !states.get(*d).is_some_and(WorkloadState::is_ready))
                .map(|d| d.as_str())
        });
        let span = info_span!("apply", component = component.as_str());
        let state = match blocked_by {
            None => match component.workload(hc, inputs)? {
                Workload::StatefulSet(sts) => {
                    let applied = owned.apply(&sts).instrument(span).await?;
                    WorkloadState::of_statefulset(&applied)
                }
                Workload::Deployment(d) => {
                    let applied = owned.apply(&d).instrument(span).await?;
                    WorkloadState::of_deployment(&applied)
                }
            },
            // Left as it is until the dependency is back: a restarting etcd does not roll the
            // API server, and the sweep must not take the workload for an orphan.
            Some(dependency) => match existing {
                Some(existing) => {
                    keep(owned, &existing);
                    debug!(
                        component = component.as_str(),
                        waits_for = dependency,
                        "not applied"
                    );
                    WorkloadState::of_workload(&existing)
                }
                None => WorkloadState::Waiting(dependency),
            },
        };
        states.insert(component, state);
    }
    Ok(states)
}

fn keep(owned: &mut OwnedSet, workload: &Workload) {
    match workload {
        Workload::StatefulSet(sts) => owned.keep(sts),
        Workload::Deployment(d) => owned.keep(d),
    }
}

/// Hash of every key of every Secret and ConfigMap the component mounts.
fn component_hash(data: &SecretData, config: &ConfigData, component: Component) -> String {
    let mut entries = Vec::new();
    for role in component.required_certs() {
        for (key, value) in data.get(role).into_iter().flatten() {
            entries.push((format!("{}/{key}", role.suffix()), value.0.as_slice()));
        }
    }
    for config_map in config.get(&component).into_iter().flatten() {
        let name = config_map.metadata.name.as_deref().unwrap_or_default();
        for (key, value) in config_map.data.iter().flatten() {
            entries.push((format!("configmap/{name}/{key}"), value.as_bytes()));
        }
    }
    hash_data(entries.iter().map(|(k, v)| (k.as_str(), *v)))
}

/// After a failed pass: the workloads as they are, with the error on `Available`.
async fn observe_failure(hc: &HostedCluster, ctx: &Context, error: &Error) -> Observed {
    let previous = hc.status.clone().unwrap_or_default();
    let mut observed = Observed::nothing_yet(hc, previous.endpoint.clone());
    observed.kubeconfig_secret = previous.kubeconfig_secret_ref.map(|r| r.name);
    observed.workloads = observe_workloads_as_they_are(&ctx.cache, hc, "a successful reconcile");
    observed.error = Some(error.to_string());
    observed.error_reason = error.condition_reason();
    observed
}

/// Writes the status computed from `observed`, unless it is what is already there.
async fn apply_status(hc: &HostedCluster, ctx: &Context, observed: &Observed) -> Result<()> {
    let status = compute_status(hc.status.as_ref(), observed, ctx.clock.timestamp());
    if let Some(phase) = status.phase.as_deref() {
        ctx.metrics.record_phase(hc, phase);
    }
    if hc.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let became_available = status.phase.as_deref() == Some(PHASE_AVAILABLE)
        && hc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some(PHASE_AVAILABLE);
    write_status(hc, ctx, &status).await?;
    if became_available {
        let note = format!(
            "the control plane is available at {}",
            status.endpoint.unwrap_or_default()
        );
        publish(
            ctx,
            hc,
            event(EventType::Normal, "Available", "Reconcile").note(note),
        )
        .await;
    }
    Ok(())
}

async fn write_status(hc: &HostedCluster, ctx: &Context, status: &HostedClusterStatus) -> Result<()> {
    let api: Api<HostedCluster> = Api::namespaced(ctx.client.clone(), &builders::namespace(hc)?);
    let patch = json!({
        "apiVersion": <HostedCluster as kube::Resource>::api_version(&()),
        "kind": <HostedCluster as kube::Resource>::kind(&()),
        "status": status,
    });
    api.patch_status(
        &hc.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .context("patch status of", "HostedCluster", &hc.name_any())?;
    Ok(())
}

/// Everything the HostedCluster owns carries an ownerReference to it, so the garbage collector
/// removes it. etcd's claims outlive the StatefulSet: they are deleted here, or kept with
/// `deletionPolicy: Retain`.
async fn cleanup(hc: &HostedCluster, ctx: &Context) -> Result<Action> {
    // Workers first, while the control plane still answers their drains: the NodePools delete
    // their servers, and the control plane goes only once they are gone.
    let pools = super::node_pool::delete_pools_of(&ctx.client, hc).await?;
    if !pools.is_empty() {
        return Err(Error::NodePoolsRemain {
            cluster: hc.name_any(),
            names: pools,
        });
    }
    let mut status = hc.status.clone().unwrap_or_default();
    status.phase = Some(PHASE_DELETING.to_string());
    // Best effort: the object is going away.
    if let Err(error) = write_status(hc, ctx, &status).await {
        debug!(%error, "could not mark the HostedCluster as deleting");
    }
    let event = event(EventType::Normal, "Deleting", "Cleanup").note("removing the control plane".into());
    publish(ctx, hc, event).await;
    if let Released::Retained(claims) = etcd_storage::release_claims(&ctx.client, hc).await? {
        let note = format!(
            "kept etcd claims {} (deletionPolicy Retain) for a HostedCluster of the same name",
            claims.join(", ")
        );
        info!(?claims, "retained etcd claims");
        let retained = self::event(EventType::Normal, "EtcdClaimsRetained", "Cleanup").note(note);
        publish(ctx, hc, retained).await;
    }
    ctx.metrics.forget(hc);
    ctx.backoff.forget(hc);
    ctx.hosted.forget(hc);
    Ok(Action::await_change())
}

/// One `Created` event naming what the pass created and one `Updated` naming the workloads and
/// Services it changed (changed Secrets have their own `CertificateReissued` events); each object
/// is in the log. One event per pass rather than per object: a cluster's start creates 26 objects,
/// and the recorder keeps every event it published for six minutes to count repeats. The first
/// object named is the event's `related` object, which also keeps two passes' events apart: the
/// recorder folds events with the same reason and related object into one series.
async fn publish_changes(ctx: &Context, hc: &HostedCluster, owned: &mut OwnedSet) {
    let changes = owned.take_changes();
    for change in &changes {
        let verb = if change.created { "created" } else { "updated" };
        info!(kind = change.kind, name = %change.name, "{verb}");
    }
    let (created, updated): (Vec<_>, Vec<_>) = changes
        .into_iter()
        .filter(|c| c.created || c.kind != "Secret")
        .partition(|c| c.created);
    for (reason, verb, changes) in [("Created", "created", created), ("Updated", "updated", updated)] {
        let Some(first) = changes.first() else {
            continue;
        };
        let related = first.reference.clone();
        let names: Vec<String> = changes.iter().map(|c| format!("{} {}", c.kind, c.name)).collect();
        let note = match names.as_slice() {
            [one] => format!("{verb} {one}"),
            all => list_note(&format!("{verb} {} objects", all.len()), all),
        };
        let event = event(EventType::Normal, reason, "Apply")
            .note(note)
            .related(related);
        publish(ctx, hc, event).await;
    }
}
