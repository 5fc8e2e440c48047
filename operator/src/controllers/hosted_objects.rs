//! The objects nestplane keeps inside a hosted cluster, through its API as its admin: what
//! `kubeadm join` reads, the add-ons (and the pod network) a worker needs, and each NodePool's
//! bootstrap token. The NodePool controller calls these on every pass; the builders in
//! `builders::hosted` say what the objects are.
use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use rand::SeedableRng;
use rand::rngs::StdRng;
use time::{Duration, OffsetDateTime};
use tracing::{debug, info, instrument};

use super::Context;
use super::pki_store::{self, SecretReader};
use crate::api::conditions::AVAILABLE;
use crate::api::{Cni, HostedCluster};
use crate::builders::hosted::bootstrap_token::{BootstrapToken, NODE_POOL_LABEL, node_pool_selector};
use crate::builders::hosted::join::{KUBE_SYSTEM, dns_service_ip};
use crate::builders::hosted::{
    HOSTED_FIELD_MANAGER, HOSTED_MANAGED_BY_LABEL, HostedInput, HostedObject, addons, flannel, join,
};
use crate::builders::secrets::{SecretRole, TLS_CERT};
use crate::builders::{self, Endpoint, MANAGED_BY, tunnel};
use crate::error::{Error, Result};

/// A bootstrap token lives a day, like kubeadm's default: long enough for any server of a
/// rollout to boot and join, short enough that a leaked user-data is soon useless.
pub const BOOTSTRAP_TOKEN_TTL: Duration = Duration::hours(24);
/// A token is replaced this long before it expires, so that a server created with it still has
/// hours to boot and join (slow images, a cloud that queues builds).
pub const BOOTSTRAP_TOKEN_RENEW_BEFORE: Duration = Duration::hours(8);

/// The hosted cluster's admin client and what the hosted builders need, once the HostedCluster
/// is Available.
#[instrument(skip_all, fields(namespace = %hc.namespace().unwrap_or_default(), name = %hc.name_any()))]
pub async fn resolve(ctx: &Context, hc: &HostedCluster) -> Result<(kube::Client, HostedInput)> {
    let not_available = |why: &str| Error::HostedClusterNotAvailable {
        name: hc.name_any(),
        why: why.to_string(),
    };
    if !is_available(hc) {
        return Err(not_available("its Available condition is not True"));
    }
    let endpoint = hc
        .status
        .as_ref()
        .and_then(|s| s.endpoint.as_deref())
        .and_then(parse_endpoint)
        .ok_or_else(|| not_available("its status has no endpoint"))?;
    let cluster = builders::name(hc)?;
    let secrets = SecretReader::new(&ctx.client, &ctx.cache, hc);
    let kubeconfig = pki_store::stored_admin_kubeconfig(&secrets, hc)
        .await?
        .ok_or_else(|| not_available("its admin kubeconfig Secret does not exist"))?;
    let ca_name = SecretRole::Ca.secret_name(&cluster);
    let ca_pem = secrets
        .ours(&ca_name, |_| true)
        .await?
        .and_then(|s| {
            s.data?
                .get(TLS_CERT)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        })
        .ok_or(Error::SecretKey {
            name: ca_name,
            key: TLS_CERT,
        })?;
    let client = ctx
        .hosted
        .client(hc, &kubeconfig)
        .await
        .map_err(|message| Error::HostedApi {
            cluster: cluster.clone(),
            message,
        })?;
    let mut input = hosted_input(hc, endpoint, ca_pem, &ctx.config.image_registry)?;
    input.tunnel = tunnel_agent(hc, &ctx.config.tunnel_image);
    Ok((client, input))
}

fn is_available(hc: &HostedCluster) -> bool {
    hc.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == AVAILABLE && c.status == "True")
    })
}

/// What the hosted builders need, from the HostedCluster and what was read for it.
pub fn hosted_input(
    hc: &HostedCluster,
    endpoint: Endpoint,
    ca_pem: String,
    image_registry: &str,
) -> Result<HostedInput> {
    let network = &hc.spec.network;
    Ok(HostedInput {
        cluster_name: builders::name(hc)?,
        // The version that runs: kube-proxy must not be newer than the API server.
        version: hc
            .status
            .as_ref()
            .and_then(|s| s.version.clone())
            .unwrap_or_else(|| hc.spec.version.clone()),
        endpoint,
        ca_pem,
        service_cidr: network.service_cidr.clone(),
        pod_cidr: network.pod_cidr.clone(),
        dns_domain: network.dns_domain.clone(),
        dns_service_ip: dns_service_ip(&network.service_cidr)?,
        cni: network.cni,
        image_registry: image_registry.to_string(),
        apiserver_kubelet_client_user: nestplane_pki::profiles::apiserver_kubelet_client().common_name,
        tunnel: None,
    })
}

/// The tunnel agent add-on, once the tunnel's endpoint is known; none while it is disabled.
pub fn tunnel_agent(hc: &HostedCluster, image: &str) -> Option<tunnel::AgentInput> {
    let server_url = hc.status.as_ref()?.tunnel_endpoint.clone()?;
    tunnel::enabled(hc).then(|| tunnel::AgentInput {
        server_url,
        image: image.to_string(),
    })
}

/// `https://host:port` (an IPv6 host in brackets) as in `status.endpoint`.
pub fn parse_endpoint(url: &str) -> Option<Endpoint> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    Some(Endpoint {
        host: host.to_string(),
        port: i32::from(uri.port_u16().unwrap_or(443)),
    })
}

/// Every object of the hosted cluster's join configuration and add-ons, in apply order.
pub fn build_objects(input: &HostedInput) -> Result<Vec<HostedObject>> {
    let mut objects = join::objects(input)?;
    objects.extend(addons::objects(input)?);
    if input.cni == Cni::Flannel {
        objects.extend(flannel::objects(input)?);
    }
    Ok(objects)
}

/// Applies the join configuration and add-ons (server-side, nestplane's field manager), deletes
/// what nestplane wrote before and no longer builds, and reports the add-ons' readiness.
#[instrument(skip_all, fields(cluster = %input.cluster_name))]
pub async fn apply(client: &kube::Client, input: &HostedInput) -> Result<AddonsStatus> {
    let objects = build_objects(input)?;
    let mut applied = Vec::with_capacity(objects.len());
    for object in &objects {
        applied.push(apply_object(client, object).await?);
    }
    prune(client, &objects).await?;
    Ok(AddonsStatus::of(&applied))
}

/// One object, server-side applied with force: nestplane owns the fields it sets, and only
/// those (the bootstrap signer's keys in `cluster-info` stay the signer's).
async fn apply_object(client: &kube::Client, object: &HostedObject) -> Result<DynamicObject> {
    let (kind, name) = identity(object)?;
    let applied = api_for(
        client,
        &object.resource,
        object.object.metadata.namespace.as_deref(),
    )
    .patch(
        object.object.metadata.name.as_deref().unwrap_or_default(),
        &PatchParams::apply(HOSTED_FIELD_MANAGER).force(),
        &Patch::Apply(&object.object),
    )
    .await
    .map_err(|source| Error::HostedKube {
        action: "apply",
        object: format!("{kind} {name}"),
        source,
    })?;
    debug!(kind, name, "applied");
    Ok(applied)
}

fn identity(object: &HostedObject) -> Result<(String, String)> {
    let name = object
        .object
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingField("metadata.name of a hosted object"))?;
    let qualified = match object.object.metadata.namespace.as_deref() {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_string(),
    };
    Ok((object.resource.kind.clone(), qualified))
}

fn api_for(client: &kube::Client, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// The kinds nestplane writes into hosted clusters, plus any kind among `built`: each is listed
/// by the managed-by label, so that an object no longer built is found even when no object of
/// its kind is built any more.
fn pruned_kinds(built: &[HostedObject]) -> Vec<ApiResource> {
    let mut kinds = vec![
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<Secret>(&()),
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<Role>(&()),
        ApiResource::erase::<RoleBinding>(&()),
        ApiResource::erase::<ClusterRole>(&()),
        ApiResource::erase::<ClusterRoleBinding>(&()),
        ApiResource::erase::<DaemonSet>(&()),
        ApiResource::erase::<Deployment>(&()),
    ];
    for object in built {
        if !kinds
            .iter()
            .any(|k| k.api_version == object.resource.api_version && k.kind == object.resource.kind)
        {
            kinds.push(object.resource.clone());
        }
    }
    kinds
}

/// Deletes the objects carrying nestplane's label that `built` no longer has. Bootstrap tokens
/// carry the label too, and are left to their NodePool (`ensure_bootstrap_token`).
async fn prune(client: &kube::Client, built: &[HostedObject]) -> Result<()> {
    let wanted: BTreeSet<(String, String)> = built.iter().map(identity).collect::<Result<_>>()?;
    let selector = format!("{HOSTED_MANAGED_BY_LABEL}={MANAGED_BY},!{NODE_POOL_LABEL}");
    for resource in pruned_kinds(built) {
        let listed = Api::<DynamicObject>::all_with(client.clone(), &resource)
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| Error::HostedKube {
                action: "list",
                object: format!("{} {selector}", resource.kind),
                source,
            })?;
        for object in listed.items {
            let namespace = object.metadata.namespace.clone();
            let name = object.name_any();
            let qualified = match &namespace {
                Some(namespace) => format!("{namespace}/{name}"),
                None => name.clone(),
            };
            if wanted.contains(&(resource.kind.clone(), qualified.clone())) {
                continue;
            }
            delete(
                &api_for(client, &resource, namespace.as_deref()),
                &resource.kind,
                &name,
                &qualified,
            )
            .await?;
            info!(kind = resource.kind, name = qualified, "deleted: no longer built");
        }
    }
    Ok(())
}

async fn delete(api: &Api<DynamicObject>, kind: &str, name: &str, qualified: &str) -> Result<()> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        // Gone already: what the delete was for.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::HostedKube {
            action: "delete",
            object: format!("{kind} {qualified}"),
            source,
        }),
    }
}

/// Readiness of the add-on workloads, as their apply answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddonsStatus {
    /// Sorted by kind and name.
    pub workloads: Vec<AddonWorkload>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddonWorkload {
    pub kind: String,
    /// `namespace/name`.
    pub name: String,
    /// DaemonSet: nodes it should run on; Deployment: replicas.
    pub desired: i32,
    /// DaemonSet: ready pods; Deployment: available replicas.
    pub ready: i32,
}

impl AddonWorkload {
    /// A DaemonSet runs ready on every node it should (and there is a node); a Deployment
    /// (CoreDNS) has a replica that answers.
    pub fn is_ready(&self) -> bool {
        match self.kind.as_str() {
            "DaemonSet" => self.desired > 0 && self.ready >= self.desired,
            _ => self.ready > 0,
        }
    }
}

impl AddonsStatus {
    pub fn of(applied: &[DynamicObject]) -> AddonsStatus {
        let mut workloads: Vec<AddonWorkload> = applied.iter().filter_map(workload_of).collect();
        workloads.sort();
        AddonsStatus { workloads }
    }

    pub fn is_ready(&self) -> bool {
        self.workloads.iter().all(AddonWorkload::is_ready)
    }

    /// No node to run on yet: the DaemonSets (which tolerate every taint) are scheduled nowhere.
    /// Expected before the first worker joins, not an error.
    pub fn waits_for_workers(&self) -> bool {
        self.workloads
            .iter()
            .any(|w| w.kind == "DaemonSet" && w.desired == 0)
    }

    /// What is not ready yet, e.g. `DaemonSet kube-system/kube-proxy 1/2 ready`; empty when all is.
    pub fn message(&self) -> String {
        self.workloads
            .iter()
            .filter(|w| !w.is_ready())
            .map(|w| format!("{} {} {}/{} ready", w.kind, w.name, w.ready, w.desired))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn workload_of(object: &DynamicObject) -> Option<AddonWorkload> {
    let kind = object.types.as_ref()?.kind.clone();
    let name = format!(
        "{}/{}",
        object.metadata.namespace.clone().unwrap_or_default(),
        object.name_any()
    );
    let (desired, ready) = match kind.as_str() {
        "DaemonSet" => {
            let status = object
                .clone()
                .try_parse::<DaemonSet>()
                .ok()?
                .status
                .unwrap_or_default();
            (status.desired_number_scheduled, status.number_ready)
        }
        "Deployment" => {
            let deployment = object.clone().try_parse::<Deployment>().ok()?;
            let desired = deployment.spec.and_then(|s| s.replicas).unwrap_or(1);
            let available = deployment.status.and_then(|s| s.available_replicas).unwrap_or(0);
            (desired, available)
        }
        _ => return None,
    };
    Some(AddonWorkload {
        kind,
        name,
        desired,
        ready,
    })
}

/// The NodePool's bootstrap token: the current one while it expires after `now + renew_before`,
/// otherwise a new one (drawn from the system's random source), after which the pool's older
/// tokens are deleted. `ttl` must exceed `renew_before`, or every pass makes a new token.
#[instrument(skip(client))]
pub async fn ensure_bootstrap_token(
    client: &kube::Client,
    namespace: &str,
    node_pool: &str,
    now: OffsetDateTime,
    ttl: Duration,
    renew_before: Duration,
) -> Result<BootstrapToken> {
    let api: Api<Secret> = Api::namespaced(client.clone(), KUBE_SYSTEM);
    let selector = node_pool_selector(namespace, node_pool);
    let existing = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::HostedKube {
            action: "list",
            object: format!("Secrets {KUBE_SYSTEM} {selector}"),
            source,
        })?
        .items;
    if let Some(current) = current_token(&existing, now, renew_before) {
        return Ok(current);
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|source| Error::GenerateKey {
        secret: format!("bootstrap token of NodePool {namespace}/{node_pool}"),
        source,
    })?;
    let token = BootstrapToken::generate(&mut StdRng::from_seed(seed), now, ttl);
    let secret: Secret = token
        .secret(namespace, node_pool)?
        .object
        .try_parse()
        .map_err(|e| crate::builders::BuildError::Invalid {
            what: "bootstrap token Secret",
            message: e.to_string(),
        })?;
    // Created, not applied: a token id drawn twice must fail (and be drawn again on the next
    // pass), never take over another pool's token.
    api.create(&PostParams::default(), &secret)
        .await
        .map_err(|source| Error::HostedKube {
            action: "create",
            object: format!("Secret {KUBE_SYSTEM}/{}", token.secret_name()),
            source,
        })?;
    info!(token_id = %token.id, expires = %token.expires, "bootstrap token created");
    let resource = ApiResource::erase::<Secret>(&());
    let dynamic = Api::<DynamicObject>::namespaced_with(client.clone(), KUBE_SYSTEM, &resource);
    // A token being replaced stays until it expires: a server created with it in the renewal
    // window must still be able to join.
    let expired = existing
        .iter()
        .filter(|s| BootstrapToken::from_secret(s).is_none_or(|t| t.expires <= now));
    for old in expired {
        let name = old.name_any();
        delete(&dynamic, "Secret", &name, &format!("{KUBE_SYSTEM}/{name}")).await?;
        info!(secret = %name, "expired bootstrap token deleted");
    }
    Ok(token)
}

/// The token of `secrets` that expires last, if that is after `now + renew_before`.
pub fn current_token(
    secrets: &[Secret],
    now: OffsetDateTime,
    renew_before: Duration,
) -> Option<BootstrapToken> {
    secrets
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .filter_map(BootstrapToken::from_secret)
        .filter(|t| t.expires > now + renew_before)
        .max_by_key(|t| t.expires)
}

/// Deletes every bootstrap token of a NodePool (when the pool is deleted).
#[instrument(skip(client))]
pub async fn delete_bootstrap_tokens(client: &kube::Client, namespace: &str, node_pool: &str) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), KUBE_SYSTEM);
    let selector = node_pool_selector(namespace, node_pool);
    api.delete_collection(
        &DeleteParams::background(),
        &ListParams::default().labels(&selector),
    )
    .await
    .map_err(|source| Error::HostedKube {
        action: "delete",
        object: format!("Secrets {KUBE_SYSTEM} {selector}"),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
