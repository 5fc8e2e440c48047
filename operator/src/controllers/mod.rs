//! The only layer that does I/O: kube client, clock, (later) OpenStack.
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::api::HostedCluster;
use crate::metrics::Metrics;

pub mod hosted_cluster;
pub mod owned;
pub mod pki_store;
pub mod status;

/// Operator settings from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Registry the control-plane images come from.
    pub image_registry: String,
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
}

/// Runs the HostedCluster controller until the process is asked to stop.
pub async fn run(client: Client, config: Config, metrics: Arc<Metrics>) {
    let reporter = Reporter {
        controller: "nestplane".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        metrics,
        config,
        clock: Clock,
    });
    let hosted_clusters: Api<HostedCluster> = Api::all(client.clone());
    // Children are watched by the label every owned object carries, so drift wakes the parent.
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=nestplane");
    Controller::new(hosted_clusters, watcher::Config::default().any_semantic())
        .owns(Api::<StatefulSet>::all(client.clone()), owned.clone())
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        .owns(Api::<Service>::all(client.clone()), owned.clone())
        .owns(Api::<Secret>::all(client.clone()), owned)
        .shutdown_on_signal()
        .run(hosted_cluster::reconcile, hosted_cluster::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(name = %object.name, "reconciled"),
                Err(error) => warn!(%error, "reconcile error"),
            }
        })
        .await;
    info!("controller stopped");
}
