//! Adding and removing `nestplane.io/cleanup` on NodePools and Workers. Not kube-runtime's
//! `finalizer` helper: it removes the finalizer as soon as a cleanup pass returns, and these
//! cleanups wait (for Nova to say a server is gone) by asking to be looked at again, which is
//! not a failure. The merge patch carries the resourceVersion it was computed from, so a
//! concurrent change of the list fails with a conflict instead of being overwritten.
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::{KubeContext, Result};

pub const FINALIZER: &str = "nestplane.io/cleanup";

/// Adds the finalizer unless `object` has it.
pub async fn ensure<K>(api: &Api<K>, object: &K, kind: &'static str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if object.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = object.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    patch_finalizers(api, object, finalizers, "add finalizer to", kind).await
}

/// Removes the finalizer, if `object` has it.
pub async fn remove<K>(api: &Api<K>, object: &K, kind: &'static str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if !object.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let finalizers: Vec<String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(api, object, finalizers, "remove finalizer from", kind).await
}

async fn patch_finalizers<K>(
    api: &Api<K>,
    object: &K,
    finalizers: Vec<String>,
    action: &'static str,
    kind: &'static str,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = object.name_any();
    let patch = |finalizers: &[String], version: Option<String>| {
        Patch::Merge(json!({
            "metadata": { "finalizers": finalizers, "resourceVersion": version }
        }))
    };
    let params = PatchParams::default();
    let mut outcome = api
        .patch::<serde_json::Value>(&name, &params, &patch(&finalizers, object.resource_version()))
        .await;
    // The pass itself may have changed the object (its status) since it was read: once more
    // on the current version, with the same change made to its list.
    if let Err(kube::Error::Api(status)) = &outcome
        && status.code == 409
        && let Some(current) = api.get_opt(&name).await.context("get", kind, &name)?
    {
        let adding = finalizers.iter().any(|f| f == FINALIZER);
        let mut list: Vec<String> = current
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        if adding {
            list.push(FINALIZER.to_string());
        }
        outcome = api
            .patch::<serde_json::Value>(&name, &params, &patch(&list, current.resource_version()))
            .await;
    }
    match outcome {
        // Gone already: nothing to hold or release.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other.map(|_| ()).context(action, kind, &name),
    }
}
