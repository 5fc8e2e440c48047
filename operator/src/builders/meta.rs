//! Object metadata every builder shares: the owner's name and namespace, the fixed labels, the
//! owner reference (kube's own helper, so any owner kind works: a HostedCluster today, a
//! NodePool next) and the `ObjectMeta` made of them.
use std::collections::BTreeMap;

use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde::de::DeserializeOwned;

use super::{BuildError, Component, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL};

const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// The object's name; an object not yet named has nothing to derive names from.
pub fn name<K: Resource>(object: &K) -> Result<String, BuildError> {
    object
        .meta()
        .name
        .clone()
        .ok_or(BuildError::MissingField("metadata.name"))
}

/// The object's namespace, where everything it owns lives.
pub fn namespace<K: Resource>(object: &K) -> Result<String, BuildError> {
    object
        .meta()
        .namespace
        .clone()
        .ok_or(BuildError::MissingField("metadata.namespace"))
}

/// The controller reference to `owner`, so the garbage collector removes what it owns. kube's
/// helper leaves `blockOwnerDeletion` unset; it is set, as the objects have always had it (a
/// foreground deletion of the owner waits for them).
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> Result<OwnerReference, BuildError> {
    name(owner)?;
    let mut reference = owner
        .controller_owner_ref(&())
        .ok_or(BuildError::MissingField("metadata.uid"))?;
    reference.block_owner_deletion = Some(true);
    Ok(reference)
}

/// Labels every object of `owner` carries; with a component, also its name and component.
pub fn labels<K: Resource>(
    owner: &K,
    component: Option<Component>,
) -> Result<BTreeMap<String, String>, BuildError> {
    let mut labels = BTreeMap::from([
        (INSTANCE_LABEL.to_string(), name(owner)?),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        ("app.kubernetes.io/part-of".to_string(), "nestplane".to_string()),
    ]);
    if let Some(component) = component {
        labels.insert(
            "app.kubernetes.io/name".to_string(),
            component.as_str().to_string(),
        );
        labels.insert(COMPONENT_LABEL.to_string(), component.as_str().to_string());
    }
    Ok(labels)
}

/// Selector labels: instance and component only, so they never change.
pub fn selector<K: Resource>(
    owner: &K,
    component: Component,
) -> Result<BTreeMap<String, String>, BuildError> {
    Ok(BTreeMap::from([
        (INSTANCE_LABEL.to_string(), name(owner)?),
        (COMPONENT_LABEL.to_string(), component.as_str().to_string()),
    ]))
}

/// The labels that find every object `owner`'s controller wrote (its watches, its listing
/// and its orphan sweep select by them).
pub fn owned_selector<K: Resource>(owner: &K) -> Result<BTreeMap<String, String>, BuildError> {
    Ok(BTreeMap::from([
        (INSTANCE_LABEL.to_string(), name(owner)?),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
    ]))
}

/// Metadata of an object `owner` controls: named `object_name`, in the owner's namespace, with
/// the fixed labels and the owner reference.
pub fn object_meta<K: Resource<DynamicType = ()>>(
    owner: &K,
    object_name: impl Into<String>,
    component: Option<Component>,
) -> Result<ObjectMeta, BuildError> {
    Ok(ObjectMeta {
        name: Some(object_name.into()),
        namespace: Some(namespace(owner)?),
        labels: Some(labels(owner, component)?),
        owner_references: Some(vec![owner_reference(owner)?]),
        ..ObjectMeta::default()
    })
}

/// A typed object from a `json!` body (without metadata) and its metadata.
pub(crate) fn object<T>(
    what: &'static str,
    metadata: ObjectMeta,
    body: serde_json::Value,
) -> Result<T, BuildError>
where
    T: DeserializeOwned + Metadata<Ty = ObjectMeta>,
{
    let mut object: T = super::typed(what, body)?;
    *object.metadata_mut() = metadata;
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::testing::hosted_cluster;

    #[test]
    fn owner_reference_is_kube_s_controller_reference_blocking_deletion() {
        let reference = owner_reference(&hosted_cluster()).expect("reference");
        assert_eq!(
            reference,
            OwnerReference {
                api_version: "nestplane.io/v1alpha1".into(),
                kind: "HostedCluster".into(),
                name: "demo".into(),
                uid: "11111111-2222-3333-4444-555555555555".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }
        );
    }

    #[test]
    fn an_owner_without_name_namespace_or_uid_is_refused_by_field() {
        let mut hc = hosted_cluster();
        hc.metadata.uid = None;
        assert!(matches!(
            owner_reference(&hc),
            Err(BuildError::MissingField("metadata.uid"))
        ));
        hc.metadata.namespace = None;
        assert!(matches!(
            object_meta(&hc, "x", None),
            Err(BuildError::MissingField("metadata.namespace"))
        ));
        hc.metadata.name = None;
        let error = labels(&hc, None).expect_err("no name");
        assert_eq!(error.to_string(), "object has no metadata.name");
    }

    #[test]
    fn object_meta_places_the_object_beside_its_owner() {
        let meta = object_meta(&hosted_cluster(), "demo-etcd", Some(Component::Etcd)).expect("meta");
        assert_eq!(meta.name.as_deref(), Some("demo-etcd"));
        assert_eq!(meta.namespace.as_deref(), Some("team-a"));
        let labels = meta.labels.expect("labels");
        assert_eq!(labels[INSTANCE_LABEL], "demo");
        assert_eq!(labels[COMPONENT_LABEL], "etcd");
        assert_eq!(labels[MANAGED_BY_LABEL], "nestplane");
        assert_eq!(meta.owner_references.expect("owner").len(), 1);
    }
}
