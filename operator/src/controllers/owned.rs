//! `OwnedSet`: every object a HostedCluster owns is written here, by server-side apply with one
//! field manager. The set takes the labelled objects from the controller's cache at the start of
//! a pass, records the UID of each object applied or kept, and at the end deletes what it found
//! but did not record (by UID precondition, so a copy the watch has not caught up with deletes
//! nothing it should not).
//!
//! It never takes over what is not this HostedCluster's: an existing object whose controller
//! ownerReference names another UID, or no controller at all, is neither applied over, read as
//! ours nor deleted; the pass fails with `Error::NotOwned` instead.
use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;

use super::cache::{Cache, Cached, KindVisitor, owned_kinds};
use crate::error::{Error, KubeContext, Result};

pub const FIELD_MANAGER: &str = "nestplane";

/// A namespaced Kubernetes type the operator owns.
pub trait Owned:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + k8s_openapi::Resource
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
{
}

impl<K> Owned for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
{
}

/// An object this pass created or changed, for events and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: &'static str,
    pub name: String,
    pub created: bool,
    /// The object, as an event's `related` reference.
    pub reference: ObjectReference,
}

/// Who controls an existing object, seen from one HostedCluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Its controller ownerReference carries this HostedCluster's UID.
    Ours,
    /// It has no controller ownerReference (made by hand, or restored from a backup).
    Nobody,
    /// Another object controls it: `"<kind> <name> (uid <uid>)"`.
    Other(String),
}

impl Control {
    /// From an object's ownerReferences.
    pub fn of(meta: &ObjectMeta, owner_uid: &str) -> Control {
        let references = meta.owner_references.as_deref().unwrap_or_default();
        match references.iter().find(|r| r.controller == Some(true)) {
            None => Control::Nobody,
            Some(r) if r.uid == owner_uid => Control::Ours,
            Some(r) => Control::Other(format!("{} {} (uid {})", r.kind, r.name, r.uid)),
        }
    }

    /// Who owns it, for a message.
    pub fn describe(&self) -> String {
        match self {
            Control::Ours => "this HostedCluster".to_string(),
            Control::Nobody => "no controller ownerReference".to_string(),
            Control::Other(owner) => format!("controlled by {owner}"),
        }
    }

    /// `Ok` when it is ours; the error names the object and its owner.
    pub fn ours_or_error(&self, kind: &'static str, name: &str) -> Result<()> {
        match self {
            Control::Ours => Ok(()),
            other => Err(Error::NotOwned {
                kind,
                name: name.to_string(),
                owner: other.describe(),
            }),
        }
    }
}

#[derive(Debug, Clone)]
struct Found {
    uid: String,
    resource_version: Option<String>,
    generation: Option<i64>,
    control: Control,
}

impl Found {
    /// What applying made of this object, seen in what the API server returned: `Some(true)`
    /// created (no such object, or another with the same name), `Some(false)` changed, `None`
    /// untouched. An object with a generation changed only if it moved: its resourceVersion
    /// also moves with each status the workload controllers write, which an apply that changed
    /// nothing returns.
    fn change(found: Option<&Found>, stored: &ObjectMeta) -> Option<bool> {
        let Some(found) = found else {
            return Some(true);
        };
        if Some(&found.uid) != stored.uid.as_ref() {
            return Some(true);
        }
        let changed = match (found.generation, stored.generation) {
            (Some(before), Some(after)) => before != after,
            _ => found.resource_version != stored.resource_version,
        };
        changed.then_some(false)
    }
}

/// Deletes one object of the kind it was made for (see [`Listed`]).
type DeleteFn = for<'a> fn(
    &'a kube::Client,
    &'a str,
    &'a str,
    &'a DeleteParams,
) -> BoxFuture<'a, Result<ObjectReference>>;

/// An owner's objects of one kind at the start of the pass, by name, and how to delete one:
/// the sweep needs no list of kinds of its own.
struct Listed {
    objects: BTreeMap<String, Found>,
    delete: DeleteFn,
}

pub struct OwnedSet {
    client: kube::Client,
    namespace: String,
    owner_uid: String,
    /// The owner's kind, e.g. `HostedCluster`.
    owner_kind: String,
    /// Labelled objects at the start of the pass, by kind.
    found: BTreeMap<&'static str, Listed>,
    recorded: BTreeSet<String>,
    /// Objects not listed at the start of the pass that were since found to be ours (or absent).
    checked: BTreeSet<(&'static str, String)>,
    changes: Vec<Change>,
    /// Objects controlled by an earlier owner of the same kind and name.
    predecessors: Vec<(&'static str, String)>,
}

impl OwnedSet {
    /// What `owner` controls now: the objects of every owned kind in its namespace that carry
    /// all of `selector`'s labels, as the controller's watches last saw them.
    pub async fn observe<O>(
        client: &kube::Client,
        cache: &Cache,
        owner: &O,
        selector: &BTreeMap<String, String>,
    ) -> Result<OwnedSet>
    where
        O: Resource<DynamicType = ()>,
    {
        cache.wait_until_ready().await?;
        let mut set = OwnedSet {
            client: client.clone(),
            namespace: owner
                .namespace()
                .ok_or(Error::MissingField("metadata.namespace"))?,
            owner_uid: owner.uid().ok_or(Error::MissingField("metadata.uid"))?,
            owner_kind: O::kind(&()).into_owned(),
            found: BTreeMap::new(),
            recorded: BTreeSet::new(),
            checked: BTreeSet::new(),
            changes: Vec::new(),
            predecessors: Vec::new(),
        };
        owned_kinds(&mut Lister {
            set: &mut set,
            cache,
            selector,
        });
        // An owner deleted and created again under the same name: the garbage collector may not
        // have removed the old one's objects yet. Adopting its CA or etcd would hand the new
        // cluster material that is about to vanish, so wait until it is gone.
        if let Some((kind, name)) = set.predecessors.first() {
            return Err(Error::PredecessorNotGone {
                kind,
                name: name.clone(),
            });
        }
        Ok(set)
    }

    fn list<K: Owned + Cached>(&mut self, cache: &Cache, selector: &BTreeMap<String, String>) {
        let objects = cache
            .labelled::<K>(&self.namespace, selector)
            .into_iter()
            .map(|o| {
                let controller = o.owner_references().iter().find(|r| r.controller == Some(true));
                if controller.is_some_and(|r| r.kind == self.owner_kind && r.uid != self.owner_uid) {
                    self.predecessors.push((K::KIND, o.name_any()));
                }
                let found = Found {
                    uid: o.uid().unwrap_or_default(),
                    resource_version: o.resource_version(),
                    generation: o.meta().generation,
                    control: Control::of(o.meta(), &self.owner_uid),
                };
                (o.name_any(), found)
            })
            .collect();
        let delete: DeleteFn =
            |client, namespace, name, params| Box::pin(delete::<K>(client, namespace, name, params));
        self.found.insert(K::KIND, Listed { objects, delete });
    }

    /// The UID of the owner this set belongs to.
    pub fn owner_uid(&self) -> &str {
        &self.owner_uid
    }

    /// Server-side apply of `object`; returns what the API server stored. Fails with
    /// `Error::NotOwned` rather than take over an object of that name that is not ours.
    pub async fn apply<K: Owned>(&mut self, object: &K) -> Result<K> {
        let name = object.name_any();
        self.ensure_ours::<K>(&name).await?;
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let applied =
            api.patch(&name, &params, &Patch::Apply(object))
                .await
                .context("apply", K::KIND, &name)?;
        self.note(&applied);
        Ok(applied)
    }

    /// Creates `object` unless it exists; an existing object is returned untouched, so material
    /// that must never be regenerated (CAs, keys) survives any number of passes.
    pub async fn create_if_absent<K: Owned>(&mut self, object: &K) -> Result<K> {
        let name = object.name_any();
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let stored = match api.create(&PostParams::default(), object).await {
            Ok(created) => created,
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = api
                    .get(&name)
                    .await
                    .context("get after conflict", K::KIND, &name)?;
                Control::of(existing.meta(), &self.owner_uid).ours_or_error(K::KIND, &name)?;
                existing
            }
            Err(source) => return Err(source).context("create", K::KIND, &name),
        };
        self.note(&stored);
        Ok(stored)
    }

    /// Makes this HostedCluster the controller of an object that has none (a Secret restored
    /// from a backup without its ownerReferences), with the labels that let the sweep and the
    /// watches find it. The caller has decided that the object is ours; nothing else changes.
    pub async fn adopt<K: Owned>(
        &mut self,
        object: &K,
        controller: OwnerReference,
        labels: BTreeMap<String, String>,
    ) -> Result<K> {
        let name = object.name_any();
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut references = object.owner_references().to_vec();
        references.push(controller);
        let patch = serde_json::json!({
            "metadata": {
                "labels": labels,
                "ownerReferences": references,
                // Fails if the object changed since it was read.
                "resourceVersion": object.resource_version(),
            }
        });
        let adopted = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context("adopt", K::KIND, &name)?;
        if let Some(found) = self
            .found
            .get_mut(K::KIND)
            .and_then(|listed| listed.objects.get_mut(&name))
        {
            found.control = Control::Ours;
        }
        self.checked.insert((K::KIND, name));
        self.note(&adopted);
        Ok(adopted)
    }

    /// Before writing an object: ours, or absent. Objects listed at the start of the pass are
    /// judged from that list; any other name is read first. (Between that read and the write
    /// lies one round trip in which another client could create the object; admission refuses
    /// HostedCluster names whose derived names collide, so this is the second line of defence.)
    async fn ensure_ours<K: Owned>(&mut self, name: &str) -> Result<()> {
        if let Some(found) = self.found(K::KIND, name) {
            return found.control.ours_or_error(K::KIND, name);
        }
        if self.checked.contains(&(K::KIND, name.to_string())) {
            return Ok(());
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let existing = api.get_metadata_opt(name).await.context("get", K::KIND, name)?;
        if let Some(existing) = existing {
            Control::of(&existing.metadata, &self.owner_uid).ours_or_error(K::KIND, name)?;
        }
        self.checked.insert((K::KIND, name.to_string()));
        Ok(())
    }

    /// Records an object left as it is this pass, so the sweep keeps it.
    pub fn keep<K: Owned>(&mut self, object: &K) {
        if let Some(uid) = object.uid() {
            self.recorded.insert(uid);
        }
    }

    fn note<K: Owned>(&mut self, stored: &K) {
        let name = stored.name_any();
        match Found::change(self.found(K::KIND, &name), stored.meta()) {
            Some(created) => self.changes.push(Change {
                kind: K::KIND,
                name,
                created,
                reference: stored.object_ref(&()),
            }),
            None => debug!(kind = K::KIND, name = %name, "unchanged"),
        }
        self.keep(stored);
    }

    /// What this pass created or changed so far; drained.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    fn found(&self, kind: &str, name: &str) -> Option<&Found> {
        self.found.get(kind)?.objects.get(name)
    }

    /// Deletes the labelled objects this owner controls that this pass neither applied nor
    /// kept. Call only after a complete pass. Returns references to what it deleted.
    pub async fn delete_orphans(&mut self) -> Result<Vec<ObjectReference>> {
        let mut deleted = Vec::new();
        for listed in self.found.values() {
            let orphans = listed
                .objects
                .iter()
                .filter(|(_, f)| f.control == Control::Ours && !self.recorded.contains(&f.uid));
            for (name, found) in orphans {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(found.uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::background()
                };
                deleted.push((listed.delete)(&self.client, &self.namespace, name, &params).await?);
            }
        }
        Ok(deleted)
    }
}

/// Lists an owner's objects of each owned kind into its set.
struct Lister<'a> {
    set: &'a mut OwnedSet,
    cache: &'a Cache,
    selector: &'a BTreeMap<String, String>,
}

impl KindVisitor for Lister<'_> {
    fn visit<K: Owned + Cached>(&mut self) {
        self.set.list::<K>(self.cache, self.selector);
    }
}

async fn delete<K: Owned>(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    params: &DeleteParams,
) -> Result<ObjectReference> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, params).await {
        Ok(_) => {}
        // Already gone, or replaced by a new object of the same name: nothing to sweep.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
        Err(source) => return Err(source).context("delete", K::KIND, name),
    }
    Ok(ObjectReference {
        api_version: Some(K::API_VERSION.to_string()),
        kind: Some(K::KIND.to_string()),
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        ..ObjectReference::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(references: &[(&str, &str, Option<bool>)]) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(
                references
                    .iter()
                    .map(|(kind, uid, controller)| OwnerReference {
                        api_version: "nestplane.io/v1alpha1".into(),
                        kind: kind.to_string(),
                        name: "x".into(),
                        uid: uid.to_string(),
                        controller: *controller,
                        block_owner_deletion: None,
                    })
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    fn found(uid: &str, resource_version: &str, generation: Option<i64>) -> Found {
        Found {
            uid: uid.into(),
            resource_version: Some(resource_version.into()),
            generation,
            control: Control::Ours,
        }
    }

    fn stored(uid: &str, resource_version: &str, generation: Option<i64>) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            resource_version: Some(resource_version.into()),
            generation,
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn an_apply_is_a_creation_a_change_or_nothing() {
        // Nothing of that name before, or another object of that name: created.
        assert_eq!(Found::change(None, &stored("a", "1", None)), Some(true));
        assert_eq!(
            Found::change(Some(&found("a", "1", None)), &stored("b", "2", None)),
            Some(true)
        );
        // A Secret or ConfigMap (no generation) is changed when its resourceVersion moves.
        assert_eq!(
            Found::change(Some(&found("a", "1", None)), &stored("a", "2", None)),
            Some(false)
        );
        assert_eq!(
            Found::change(Some(&found("a", "1", None)), &stored("a", "1", None)),
            None
        );
        // A Deployment's resourceVersion moves with its status too: only its generation counts.
        assert_eq!(
            Found::change(Some(&found("a", "1", Some(1))), &stored("a", "5", Some(1))),
            None
        );
        assert_eq!(
            Found::change(Some(&found("a", "1", Some(1))), &stored("a", "5", Some(2))),
            Some(false)
        );
    }

    #[test]
    fn only_our_uid_as_controller_makes_an_object_ours() {
        assert_eq!(
            Control::of(&meta(&[("HostedCluster", "ours", Some(true))]), "ours"),
            Control::Ours
        );
        assert_eq!(Control::of(&ObjectMeta::default(), "ours"), Control::Nobody);
        // Named as an owner, but not as the controller: not ours to write.
        assert_eq!(
            Control::of(&meta(&[("HostedCluster", "ours", None)]), "ours"),
            Control::Nobody
        );
        let other = Control::of(
            &meta(&[
                ("HostedCluster", "ours", Some(false)),
                ("HostedCluster", "theirs", Some(true)),
            ]),
            "ours",
        );
        assert_eq!(other, Control::Other("HostedCluster x (uid theirs)".into()));
    }

    #[test]
    fn anything_but_ours_is_refused_with_the_owner_named() {
        assert!(Control::Ours.ours_or_error("Secret", "demo-ca").is_ok());
        let err = Control::Other("HostedCluster demo-etcd (uid 42)".into())
            .ours_or_error("Secret", "demo-etcd-ca")
            .expect_err("not ours");
        let message = err.to_string();
        assert!(message.contains("Secret demo-etcd-ca"), "{message}");
        assert!(
            message.contains("controlled by HostedCluster demo-etcd (uid 42)"),
            "{message}"
        );
        let err = Control::Nobody
            .ours_or_error("Secret", "demo-ca")
            .expect_err("not ours");
        assert!(matches!(err, Error::NotOwned { .. }), "{err}");
    }
}
