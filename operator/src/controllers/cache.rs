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
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// How long a pass waits for the first complete list of every watched kind after a start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The stores, one per kind the controller reads.
#[derive(Clone)]
pub struct Cache {
    secrets: Store<Secret>,
    services: Store<Service>,
    statefulsets: Store<StatefulSet>,
    deployments: Store<Deployment>,
    config_maps: Store<ConfigMap>,
    disruption_budgets: Store<PodDisruptionBudget>,
    claims: Store<PersistentVolumeClaim>,
    nodes: Store<Node>,
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
}

macro_rules! cached {
    ($($kind:ty => $field:ident),* $(,)?) => {
        $(impl Cached for $kind {
            fn store(cache: &Cache) -> &Store<Self> {
                &cache.$field
            }
        })*
    };
}

cached!(
    Secret => secrets,
    Service => services,
    StatefulSet => statefulsets,
    Deployment => deployments,
    ConfigMap => config_maps,
    PodDisruptionBudget => disruption_budgets,
    PersistentVolumeClaim => claims,
    Node => nodes,
);

/// The writing half of each store: every stream returned here must be polled (by the
/// controller) for its store to fill.
pub struct Writers {
    pub secrets: reflector::store::Writer<Secret>,
    pub services: reflector::store::Writer<Service>,
    pub statefulsets: reflector::store::Writer<StatefulSet>,
    pub deployments: reflector::store::Writer<Deployment>,
    pub config_maps: reflector::store::Writer<ConfigMap>,
    pub disruption_budgets: reflector::store::Writer<PodDisruptionBudget>,
    pub claims: reflector::store::Writer<PersistentVolumeClaim>,
    pub nodes: reflector::store::Writer<Node>,
}

impl Cache {
    pub fn new() -> (Cache, Writers) {
        let (secrets, secrets_writer) = reflector::store();
        let (services, services_writer) = reflector::store();
        let (statefulsets, statefulsets_writer) = reflector::store();
        let (deployments, deployments_writer) = reflector::store();
        let (config_maps, config_maps_writer) = reflector::store();
        let (disruption_budgets, disruption_budgets_writer) = reflector::store();
        let (claims, claims_writer) = reflector::store();
        let (nodes, nodes_writer) = reflector::store();
        let cache = Cache {
            secrets,
            services,
            statefulsets,
            deployments,
            config_maps,
            disruption_budgets,
            claims,
            nodes,
        };
        let writers = Writers {
            secrets: secrets_writer,
            services: services_writer,
            statefulsets: statefulsets_writer,
            deployments: deployments_writer,
            config_maps: config_maps_writer,
            disruption_budgets: disruption_budgets_writer,
            claims: claims_writer,
            nodes: nodes_writer,
        };
        (cache, writers)
    }

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

    /// Waits for the first complete list of every kind, so that a pass right after a start
    /// never takes an empty store for an empty namespace.
    pub async fn wait_until_ready(&self) -> Result<()> {
        async fn ready<K: Cached>(cache: &Cache) -> Result<()> {
            tokio::time::timeout(READY_TIMEOUT, K::store(cache).wait_until_ready())
                .await
                .ok()
                .and_then(|waited| waited.ok())
                .ok_or(Error::CacheNotReady(K::KIND))
        }
        ready::<Secret>(self).await?;
        ready::<Service>(self).await?;
        ready::<StatefulSet>(self).await?;
        ready::<Deployment>(self).await?;
        ready::<ConfigMap>(self).await?;
        ready::<PodDisruptionBudget>(self).await?;
        ready::<PersistentVolumeClaim>(self).await?;
        ready::<Node>(self).await
    }
}

/// A watch of `api` that keeps `writer`'s store current and yields each changed object.
/// Managed fields are dropped first: nothing reads them, and they are most of an object's size.
pub fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
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
