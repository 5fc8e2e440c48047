//! The one place the NodePool and Worker controllers reach the hosted-cluster side of a join:
//! what the hosted API needs before a worker joins, and the user-data a worker boots with.
//!
//! PLACEHOLDER until `controllers::hosted_objects` and `builders::user_data` are merged: this
//! version writes nothing into the hosted cluster and renders a `#cloud-config` that only names
//! the worker and the endpoint. `prepare` is then to call `hosted_objects::{resolve, apply,
//! ensure_bootstrap_token}`, `cleanup` `delete_bootstrap_tokens`, and `user_data`
//! `builders::user_data` with the token and CA hash in `JoinData`.
use kube::ResourceExt;

use super::Context;
use crate::api::{HostedCluster, NodePool};
use crate::error::{Error, Result};

/// What a worker's user-data is rendered from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinData {
    /// The hosted API server as workers reach it (`status.endpoint`).
    pub endpoint: String,
    pub cluster_name: String,
}

/// Makes the hosted cluster ready for `pool`'s workers to join, and says how they join.
pub async fn prepare(_ctx: &Context, hc: &HostedCluster, _pool: &NodePool) -> Result<JoinData> {
    let endpoint = hc
        .status
        .as_ref()
        .and_then(|s| s.endpoint.clone())
        .ok_or_else(|| Error::JoinPreparation {
            cluster: hc.name_any(),
            message: "status.endpoint is not set yet".into(),
        })?;
    Ok(JoinData {
        endpoint,
        cluster_name: hc.name_any(),
    })
}

/// Removes what `prepare` made for `pool` (its bootstrap token) once the pool is gone.
pub async fn cleanup(_ctx: &Context, _hc: &HostedCluster, _pool: &NodePool) -> Result<()> {
    Ok(())
}

/// The cloud-init user-data of worker `worker_name`.
pub fn user_data(join: &JoinData, worker_name: &str) -> Result<Vec<u8>> {
    let document = serde_json::json!({
        "hostname": worker_name,
        "write_files": [{
            "path": "/etc/nestplane/join.env",
            "content": format!("NESTPLANE_ENDPOINT={}\nNESTPLANE_CLUSTER={}\n", join.endpoint, join.cluster_name),
        }],
    });
    let yaml = serde_yaml::to_string(&document).map_err(|e| Error::JoinPreparation {
        cluster: join.cluster_name.clone(),
        message: format!("rendering user-data: {e}"),
    })?;
    Ok(format!("#cloud-config\n{yaml}").into_bytes())
}
