//! Server-side apply with one field manager, for every object the operator owns.
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{KubeContext, Result};

pub const FIELD_MANAGER: &str = "nestplane";

/// Applies `object` in its namespace and returns what the API server stored.
pub async fn apply<K>(client: &kube::Client, object: &K) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied =
        api.patch(&name, &params, &Patch::Apply(object))
            .await
            .context("apply", kind_of::<K>(), &name)?;
    if applied.meta().resource_version != object.meta().resource_version {
        tracing::debug!(kind = kind_of::<K>(), name = %name, "applied");
    }
    Ok(applied)
}

fn kind_of<K: Resource>() -> &'static str
where
    K::DynamicType: Default,
{
    // Kinds are static for k8s-openapi types; leak-free because the set is finite.
    match K::kind(&K::DynamicType::default()).as_ref() {
        "Secret" => "Secret",
        "Service" => "Service",
        "StatefulSet" => "StatefulSet",
        "Deployment" => "Deployment",
        "ConfigMap" => "ConfigMap",
        _ => "object",
    }
}
