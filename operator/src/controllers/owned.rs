//! `OwnedSet`: every object a HostedCluster owns is written here, by server-side apply with one
//! field manager. The set lists the labelled objects at the start of a pass, records the UID of
//! each object applied or kept, and at the end deletes what it found but did not record.
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::Resource as _;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::api::HostedCluster;
use crate::builders::{self, MANAGED_BY};
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

#[derive(Debug, Clone)]
struct Found {
    uid: String,
    resource_version: Option<String>,
    owned_by_us: bool,
}

pub struct OwnedSet {
    client: kube::Client,
    namespace: String,
    owner_uid: String,
    /// Labelled objects at the start of the pass, by kind and name.
    found: BTreeMap<&'static str, BTreeMap<String, Found>>,
    /// Kinds the operator may not list: never swept.
    unlisted: BTreeSet<&'static str>,
    recorded: BTreeSet<String>,
    changes: Vec<Change>,
    /// Objects controlled by an earlier HostedCluster of the same name.
    predecessors: Vec<(&'static str, String)>,
}

impl OwnedSet {
    /// Lists what the HostedCluster owns now (by `instance` and `managed-by` labels).
    pub async fn observe(client: &kube::Client, hc: &HostedCluster) -> Result<OwnedSet> {
        let mut set = OwnedSet {
            client: client.clone(),
            namespace: hc.namespace().ok_or(Error::MissingField("metadata.namespace"))?,
            owner_uid: hc.uid().ok_or(Error::MissingField("metadata.uid"))?,
            found: BTreeMap::new(),
            unlisted: BTreeSet::new(),
            recorded: BTreeSet::new(),
            changes: Vec::new(),
            predecessors: Vec::new(),
        };
        let selector = format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/managed-by={MANAGED_BY}",
            builders::name(hc)
        );
        set.list::<Secret>(&selector).await?;
        set.list::<Service>(&selector).await?;
        set.list::<StatefulSet>(&selector).await?;
        set.list::<Deployment>(&selector).await?;
        set.list::<ConfigMap>(&selector).await?;
        set.list::<PodDisruptionBudget>(&selector).await?;
        // A HostedCluster deleted and created again under the same name: the garbage collector
        // may not have removed the old control plane yet. Adopting its CA or etcd would hand the
        // new cluster material that is about to vanish, so wait until it is gone.
        if let Some((kind, name)) = set.predecessors.first() {
            return Err(Error::PredecessorNotGone {
                kind,
                name: name.clone(),
            });
        }
        Ok(set)
    }

    async fn list<K: Owned>(&mut self, selector: &str) -> Result<()> {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let objects = match api.list_metadata(&ListParams::default().labels(selector)).await {
            Ok(list) => list.items,
            Err(kube::Error::Api(status)) if status.code == 403 => {
                debug!(kind = K::KIND, "not allowed to list; not swept");
                self.unlisted.insert(K::KIND);
                return Ok(());
            }
            Err(source) => return Err(source).context("list", K::KIND, selector),
        };
        let by_name = objects
            .into_iter()
            .map(|o| {
                let controller = o.owner_references().iter().find(|r| r.controller == Some(true));
                let owned_by_us = controller.is_some_and(|r| r.uid == self.owner_uid);
                if controller.is_some_and(|r| r.kind == "HostedCluster" && r.uid != self.owner_uid) {
                    self.predecessors.push((K::KIND, o.name_any()));
                }
                let found = Found {
                    uid: o.uid().unwrap_or_default(),
                    resource_version: o.resource_version(),
                    owned_by_us,
                };
                (o.name_any(), found)
            })
            .collect();
        self.found.insert(K::KIND, by_name);
        Ok(())
    }

    /// Server-side apply of `object`; returns what the API server stored.
    pub async fn apply<K: Owned>(&mut self, object: &K) -> Result<K> {
        let name = object.name_any();
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
                api.get(&name)
                    .await
                    .context("get after conflict", K::KIND, &name)?
            }
            Err(source) => return Err(source).context("create", K::KIND, &name),
        };
        self.note(&stored);
        Ok(stored)
    }

    /// Records an object left as it is this pass, so the sweep keeps it.
    pub fn keep<K: Owned>(&mut self, object: &K) {
        if let Some(uid) = object.uid() {
            self.recorded.insert(uid);
        }
    }

    fn note<K: Owned>(&mut self, stored: &K) {
        let name = stored.name_any();
        let before = self.found.get(K::KIND).and_then(|objects| objects.get(&name));
        let change = match before {
            None => Some(true),
            Some(found) if found.uid != stored.uid().unwrap_or_default() => Some(true),
            Some(found) if found.resource_version != stored.resource_version() => Some(false),
            Some(_) => None,
        };
        match change {
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

    /// Deletes the labelled objects this HostedCluster controls that this pass neither applied
    /// nor kept. Call only after a complete pass. Returns references to what it deleted.
    pub async fn delete_orphans(&mut self) -> Result<Vec<ObjectReference>> {
        let mut deleted = Vec::new();
        for (kind, name, uid) in self.orphans() {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            let reference = match kind {
                Secret::KIND => self.delete::<Secret>(&name, &params).await,
                Service::KIND => self.delete::<Service>(&name, &params).await,
                StatefulSet::KIND => self.delete::<StatefulSet>(&name, &params).await,
                ConfigMap::KIND => self.delete::<ConfigMap>(&name, &params).await,
                PodDisruptionBudget::KIND => self.delete::<PodDisruptionBudget>(&name, &params).await,
                _ => self.delete::<Deployment>(&name, &params).await,
            }?;
            deleted.push(reference);
        }
        Ok(deleted)
    }

    fn orphans(&self) -> Vec<(&'static str, String, String)> {
        self.found
            .iter()
            .filter(|(kind, _)| !self.unlisted.contains(*kind))
            .flat_map(|(kind, objects)| {
                objects
                    .iter()
                    .filter(|(_, f)| f.owned_by_us && !self.recorded.contains(&f.uid))
                    .map(|(name, f)| (*kind, name.clone(), f.uid.clone()))
            })
            .collect()
    }

    async fn delete<K: Owned>(&self, name: &str, params: &DeleteParams) -> Result<ObjectReference> {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
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
            namespace: Some(self.namespace.clone()),
            ..ObjectReference::default()
        })
    }
}
