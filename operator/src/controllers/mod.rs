//! The only layer that does I/O: kube client, clock, (later) OpenStack.
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::api::HostedCluster;
use crate::builders::{INSTANCE_LABEL, MANAGED_BY_LABEL};
use crate::metrics::Metrics;
use cache::{Cache, reflect};

pub mod backoff;
pub mod cache;
pub mod cloud;
pub mod encryption;
pub mod etcd;
pub mod etcd_client;
pub mod etcd_storage;
pub mod events;
pub mod finalizers;
pub mod hosted_clients;
pub mod hosted_cluster;
pub mod hosted_nodes;
pub mod hosted_objects;
pub mod join;
pub mod key_material;
pub mod metered_compute;
pub mod node_pool;
pub mod observe;
pub mod owned;
pub mod pki_store;
pub mod rbac;
pub mod status;
pub mod supporting_objects;
pub mod worker;

/// Operator settings from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Registry the control-plane images come from.
    pub image_registry: String,
    /// Watch only this namespace; all namespaces when unset.
    pub namespace: Option<String>,
    /// The nestplane image, for the tunnel server beside each kube-apiserver and the tunnel
    /// agent on each worker.
    pub tunnel_image: String,
}

/// The time source; tests can pin it.
#[derive(Debug, Clone, Default)]
pub struct Clock;

impl Clock {
    pub fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
    pub fn timestamp(&self) -> k8s_openapi::jiff::Timestamp {
        k8s_openapi::jiff::Timestamp::now()
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    pub clock: Clock,
    /// Retry delays of the HostedClusters that are not settled.
    pub backoff: backoff::Backoff,
    /// What the watches below have seen: every read of a pass starts here.
    pub cache: Cache,
    /// Clients for the hosted clusters' APIs.
    pub hosted: hosted_clients::HostedClients,
    /// OpenStack clients from the NodePools' cloud Secrets.
    pub clouds: cloud::Clouds,
}

impl Context {
    fn new(client: Client, config: Config, metrics: Arc<Metrics>, cache: Cache) -> Self {
        let reporter = Reporter {
            controller: "nestplane".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            cache,
            hosted: hosted_clients::HostedClients::default(),
            clouds: cloud::Clouds::metered(metrics.clone()),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            config,
            clock: Clock,
            backoff: backoff::Backoff::default(),
        }
    }
}

/// Runs only the NodePool and Worker controllers: for tests that play the HostedCluster's part.
pub async fn run_node_pools(client: Client, config: Config, metrics: Arc<Metrics>) {
    let (cache, _writers) = Cache::new();
    node_pool::run(Arc::new(Context::new(client, config, metrics, cache))).await;
}

/// Runs the HostedCluster, NodePool and Worker controllers until the process is asked to stop.
pub async fn run(client: Client, config: Config, metrics: Arc<Metrics>) {
    metrics.register_controller(hosted_cluster::CONTROLLER);
    let (cache, writers) = Cache::new();
    let ctx = Arc::new(Context::new(client.clone(), config, metrics, cache));
    let node_pools = node_pool::run(ctx.clone());
    let namespace = ctx.config.namespace.as_deref();
    let hosted_clusters: Api<HostedCluster> = api(&client, namespace);
    // Children are watched by the label every owned object carries, so drift wakes the parent;
    // the same watches fill the cache the passes read from.
    let managed = format!("{MANAGED_BY_LABEL}={}", crate::builders::MANAGED_BY);
    let owned = watcher::Config::default().labels(&managed);
    let mut writers = writers;
    let mut watches = OwnedWatches {
        controller: Some(Controller::new(
            hosted_clusters,
            watcher::Config::default().any_semantic(),
        )),
        writers: &mut writers,
        client: &client,
        namespace,
        config: owned.clone(),
    };
    cache::owned_kinds(&mut watches);
    let Some(controller) = watches.controller else {
        // Only `visit` takes it, and it always puts it back.
        warn!("no controller to run");
        return;
    };
    let w = writers;
    let hosted_clusters = controller
        // etcd's claims are the StatefulSet's, not the HostedCluster's: a claim that is bound or
        // resized wakes the HostedCluster its instance label names.
        .watches_stream(
            reflect::<PersistentVolumeClaim>(api(&client, namespace), owned, w.claims),
            |claim| {
                let instance = claim.labels().get(INSTANCE_LABEL)?;
                Some(ObjectRef::<HostedCluster>::new(instance).within(&claim.namespace()?))
            },
        )
        // Nodes only feed the cache (the NodePort endpoint's address); they wake nobody.
        .watches_stream(
            reflect::<Node>(Api::all(client.clone()), watcher::Config::default(), w.nodes),
            |_| None::<ObjectRef<HostedCluster>>,
        )
        .shutdown_on_signal()
        .run(hosted_cluster::reconcile, hosted_cluster::error_policy, ctx)
        .for_each(|result| async move {
            use kube::runtime::controller::Error as ControllerError;
            match result {
                Ok((object, _)) => tracing::debug!(name = %object.name, "reconciled"),
                // `error_policy` has logged and counted it.
                Err(ControllerError::ReconcilerFailed(..)) => {}
                // A deleted object with a wake-up still queued.
                Err(ControllerError::ObjectNotFound(object)) => tracing::debug!(%object, "gone"),
                Err(error) => warn!(%error, "controller error"),
            }
        });
    futures::join!(hosted_clusters, node_pools);
    info!("controllers stopped");
}

/// Registers the watch of each owned kind with the controller, each filling its store.
struct OwnedWatches<'a> {
    controller: Option<Controller<HostedCluster>>,
    writers: &'a mut cache::Writers,
    client: &'a Client,
    namespace: Option<&'a str>,
    config: watcher::Config,
}

impl cache::KindVisitor for OwnedWatches<'_> {
    fn visit<K: owned::Owned + cache::Cached>(&mut self) {
        // Each kind's writer is taken once; a kind listed twice would be watched once.
        let Some(writer) = K::take_writer(self.writers) else {
            return;
        };
        let Some(controller) = self.controller.take() else {
            return;
        };
        let watch = reflect(api::<K>(self.client, self.namespace), self.config.clone(), writer);
        self.controller = Some(controller.owns_stream(watch));
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
