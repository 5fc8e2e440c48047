//! The one place the NodePool and Worker controllers reach the hosted-cluster side of a join:
//! what the hosted API needs before a worker joins (`hosted_objects`), and the user-data a
//! worker boots with (`builders::user_data`).
use kube::ResourceExt;
use time::Duration;

use super::{Context, hosted_objects};
use crate::api::{HostedCluster, NodePool};
use crate::builders::Endpoint;
use crate::builders::user_data::{self, JoinInput};
use crate::error::{Error, Result};

/// How long a bootstrap token is valid. A worker needs it only for its first minutes; a day
/// leaves room for a slow boot and a rollout, and a leaked token is short-lived.
const TOKEN_TTL: Duration = Duration::hours(24);
/// A token is replaced this long before it expires, so a server created just before never
/// boots with a token that expires under it (the old one stays until it expires).
const TOKEN_RENEW_BEFORE: Duration = Duration::hours(8);

/// What a worker's user-data is rendered from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinData {
    pub endpoint: Endpoint,
    /// `<id>.<secret>`.
    pub token: String,
    /// `sha256:<hex>` of the cluster CA's public key.
    pub ca_cert_hash: String,
    pub token_expires: time::OffsetDateTime,
    /// The kubelets' version: the pool's, else the control plane's.
    pub version: String,
    pub cluster_name: String,
}

/// Makes the hosted cluster ready for `pool`'s workers to join (the objects `kubeadm join`
/// reads, the add-ons, the pool's bootstrap token) and says how they join. Once per NodePool pass.
pub async fn prepare(
    ctx: &Context,
    hc: &HostedCluster,
    pool: &NodePool,
) -> Result<(JoinData, hosted_objects::AddonsStatus)> {
    let (client, input) = hosted_objects::resolve(ctx, hc).await?;
    let addons = hosted_objects::apply(&client, &input).await?;
    let join = join_data(ctx, hc, pool, &client, &input).await?;
    Ok((join, addons))
}

/// How `pool`'s next worker joins, without re-applying the hosted objects (the NodePool pass
/// keeps those): the current token, made if there is none.
pub async fn for_worker(ctx: &Context, hc: &HostedCluster, pool: &NodePool) -> Result<JoinData> {
    let (client, input) = hosted_objects::resolve(ctx, hc).await?;
    join_data(ctx, hc, pool, &client, &input).await
}

async fn join_data(
    ctx: &Context,
    hc: &HostedCluster,
    pool: &NodePool,
    client: &kube::Client,
    input: &crate::builders::hosted::HostedInput,
) -> Result<JoinData> {
    let namespace = pool.namespace().unwrap_or_default();
    let pool_name = pool.name_any();
    let token = hosted_objects::ensure_bootstrap_token(
        client,
        &namespace,
        &pool_name,
        ctx.clock.now(),
        TOKEN_TTL,
        TOKEN_RENEW_BEFORE,
    )
    .await?;
    ctx.metrics
        .record_bootstrap_token_expiry(&namespace, &pool_name, token.expires);
    let ca_cert_hash = nestplane_pki::ca_cert_hash(&input.ca_pem).map_err(|e| Error::JoinPreparation {
        cluster: hc.name_any(),
        message: format!("the cluster CA's public key: {e}"),
    })?;
    Ok(JoinData {
        endpoint: input.endpoint.clone(),
        token: token.token(),
        token_expires: token.expires,
        ca_cert_hash,
        version: pool
            .spec
            .version
            .clone()
            .unwrap_or_else(|| hc.spec.version.clone()),
        cluster_name: hc.name_any(),
    })
}

/// Removes what `prepare` made for `pool` (its bootstrap tokens) once the pool is gone. A hosted
/// cluster that no longer answers keeps nothing to remove that matters: the tokens expire.
pub async fn cleanup(ctx: &Context, hc: &HostedCluster, pool: &NodePool) -> Result<()> {
    if hc.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let client = match hosted_objects::resolve(ctx, hc).await {
        Ok((client, _)) => client,
        // Not serving: a pool's deletion must not wait for its control plane (a namespace
        // being deleted takes the pods first); the tokens expire within TOKEN_TTL.
        Err(Error::HostedClusterNotAvailable { why, .. }) => {
            tracing::warn!(%why, "bootstrap tokens left to expire");
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    hosted_objects::delete_bootstrap_tokens(&client, &pool.namespace().unwrap_or_default(), &pool.name_any())
        .await?;
    ctx.metrics
        .forget_node_pool(&pool.namespace().unwrap_or_default(), &pool.name_any());
    Ok(())
}

/// The cloud-init user-data of worker `worker_name` (its server's and its Node's name).
pub fn user_data(join: &JoinData, pool: &NodePool, worker_name: &str) -> Result<Vec<u8>> {
    let input = JoinInput {
        endpoint: join.endpoint.clone(),
        token: join.token.clone(),
        ca_cert_hashes: vec![join.ca_cert_hash.clone()],
        node_name: worker_name.to_string(),
        node_labels: pool.spec.node_labels.clone(),
        node_taints: pool.spec.node_taints.clone(),
        kubelet_extra_args: pool.spec.kubelet_extra_args.clone(),
        version: join.version.clone(),
        registry_mirrors: pool.spec.registry_mirrors.clone(),
    };
    Ok(user_data::render(&input)?.into_bytes())
}
