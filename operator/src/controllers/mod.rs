//! The only layer that does I/O: kube client, clock, (later) OpenStack.
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::api::HostedCluster;
use crate::metrics::Metrics;

pub mod backoff;
pub mod encryption;
pub mod etcd;
pub mod etcd_client;
pub mod etcd_storage;
pub mod hosted_cluster;
pub mod key_material;
pub mod observe;
pub mod owned;
pub mod pki_store;
pub mod rbac;
pub mod status;
pub mod supporting_objects;

/// Operator settings from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Registry the control-plane images come from.
    pub image_registry: String,
    /// Watch only this namespace; all namespaces when unset.
    pub namespace: Option<String>,
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
}

/// Runs the HostedCluster controller until the process is asked to stop.
pub async fn run(client: Client, config: Config, metrics: Arc<Metrics>) {
    let reporter = Reporter {
        controller: "nestplane".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    metrics.register_controller(hosted_cluster::CONTROLLER);
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        metrics,
        config,
        clock: Clock,
        backoff: backoff::Backoff::default(),
    });
    let namespace = ctx.config.namespace.as_deref();
    let hosted_clusters: Api<HostedCluster> = api(&client, namespace);
    // Children are watched by the label every owned object carries, so drift wakes the parent.
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=nestplane");
    Controller::new(hosted_clusters, watcher::Config::default().any_semantic())
        .owns(api::<StatefulSet>(&client, namespace), owned.clone())
        .owns(api::<Deployment>(&client, namespace), owned.clone())
        .owns(api::<Service>(&client, namespace), owned.clone())
        .owns(api::<Secret>(&client, namespace), owned.clone())
        .owns(api::<ConfigMap>(&client, namespace), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, namespace), owned)
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
        })
        .await;
    info!("controller stopped");
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
