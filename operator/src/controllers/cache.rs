//! What the controller reads, from the watches it already holds: one reflector store per kind,
//! fed by the same streams that wake a HostedCluster when one of its objects changes.
//!
//! A store can lag the API server by the time a watch event takes to arrive. So the cache only
//! answers "all is well": whatever would lead to a write or an alarm (a Secret to reissue, key
//! material that looks changed, a name that is not in the store) is read again live by the
//! caller before it acts.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::owned::Owned;
use crate::error::{Error, Result};

/// How long a pass waits for the first complete list of every watched kind after a start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Something done once for each kind [`owned_kinds`] lists, e.g. registering its
/// watch or listing an owner's objects of that kind.
pub trait KindVisitor {
    fn visit<K: Owned + Cached>(&mut self);
}

/// A kind held in the cache.
pub trait Cached:
    Resource<DynamicType = ()>
    + k8s_openapi::Resource
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    fn store(cache: &Cache) -> &Store<Self>;
    /// Takes the writing half of this kind's store (once: it goes to the kind's watch).
    fn take_writer(writers: &mut Writers) -> Option<Writer<Self>>;
}

/// The one list of the kinds an owner controls: it makes the cache's stores, the watches that
/// wake an owner (each kind's watch fills its store), the listing at the start of a pass and,
/// through that listing, the orphan sweep. A kind added here is watched, cached, listed and
/// swept; the kinds after `read` are only watched and cached.
macro_rules! kinds {
    (owned: $($kind:ty => $field:ident),+ ; read: $($read:ty => $read_field:ident),+ $(,)?) => {
        /// The stores, one per kind the controller reads.
        #[derive(Clone)]
        pub struct Cache {
            $($field: Store<$kind>,)+
            $($read_field: Store<$read>,)+
        }

        /// The writing half of each store: each goes to the watch of its kind, which must be
        /// polled (by the controller) for the store to fill.
        pub struct Writers {
            $($field: Option<Writer<$kind>>,)+
            $(pub $read_field: Writer<$read>,)+
        }

        $(impl Cached for $kind {
            fn store(cache: &Cache) -> &Store<Self> {
                &cache.$field
            }
            fn take_writer(writers: &mut Writers) -> Option<Writer<Self>> {
                writers.$field.take()
            }
        })+

        $(impl Cached for $read {
            fn store(cache: &Cache) -> &Store<Self> {
                &cache.$read_field
            }
            fn take_writer(_: &mut Writers) -> Option<Writer<Self>> {
                None
            }
        })+

        /// Calls `visitor` once for each owned kind.
        pub fn owned_kinds(visitor: &mut impl KindVisitor) {
            $(visitor.visit::<$kind>();)+
        }

        impl Cache {
            pub fn new() -> (Cache, Writers) {
                $(let $field = reflector::store();)+
                $(let $read_field = reflector::store();)+
                let cache = Cache {
                    $($field: $field.0,)+
                    $($read_field: $read_field.0,)+
                };
                let writers = Writers {
                    $($field: Some($field.1),)+
                    $($read_field: $read_field.1,)+
                };
                (cache, writers)
            }

            /// Waits for the first complete list of every kind, so that a pass right after a
            /// start never takes an empty store for an empty namespace.
            pub async fn wait_until_ready(&self) -> Result<()> {
                $(ready(&self.$field).await?;)+
                $(ready(&self.$read_field).await?;)+
                Ok(())
            }
        }
    };
}

kinds!(
    owned:
        Secret => secrets,
        Service => services,
        StatefulSet => statefulsets,
        Deployment => deployments,
        ConfigMap => config_maps,
        PodDisruptionBudget => disruption_budgets;
    read:
        PersistentVolumeClaim => claims,
        Node => nodes,
);

async fn ready<K: Cached>(store: &Store<K>) -> Result<()> {
    tokio::time::timeout(READY_TIMEOUT, store.wait_until_ready())
        .await
        .ok()
        .and_then(|waited| waited.ok())
        .ok_or(Error::CacheNotReady(K::KIND))
}

impl Cache {
    /// The object of that name, as last seen.
    pub fn get<K: Cached>(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        K::store(self).get(&ObjectRef::new(name).within(namespace))
    }

    /// Every object of kind `K` in `namespace` that carries all of `labels`, by name.
    pub fn labelled<K: Cached>(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Vec<Arc<K>> {
        let mut objects: Vec<Arc<K>> = K::store(self)
            .state()
            .into_iter()
            .filter(|o| o.namespace().as_deref() == Some(namespace))
            .filter(|o| labels.iter().all(|(k, v)| o.labels().get(k) == Some(v)))
            .collect();
        objects.sort_by_key(|o| o.name_any());
        objects
    }

    /// Every cluster-scoped object of kind `K`.
    pub fn all<K: Cached>(&self) -> Vec<Arc<K>> {
        K::store(self).state()
    }
}

/// A watch of `api` that keeps `writer`'s store current and yields each changed object.
/// Managed fields are dropped first: nothing reads them, and they are most of an object's size.
pub fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Cached,
{
    watcher(api, config)
        .default_backoff()
        .modify(|object| {
            object.managed_fields_mut().clear();
        })
        .reflect(writer)
        .applied_objects()
        .boxed()
}
