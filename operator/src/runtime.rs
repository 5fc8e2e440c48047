//! `nestplane run`: the HTTP endpoint and the controller, and what happens when either stops.
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use kube::Client;
use tracing::info;

use crate::controllers::{self, Config};
use crate::http::{self, Health};
use crate::leader::{self, Election};
use crate::metrics::Metrics;

/// The operator's version: the package version unless the build set `NESTPLANE_VERSION`.
pub const VERSION: &str = env!("NESTPLANE_VERSION");

/// A client for the management cluster that counts each request by verb, so the API load of a
/// reconcile is visible (`nestplane_kube_requests_total`).
async fn counted_client(metrics: Arc<Metrics>) -> Result<Client, kube::Error> {
    let config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    let count = tower::util::MapRequestLayer::new(move |request: ::http::Request<kube::client::Body>| {
        metrics.kube_request(request.method(), request.uri());
        request
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}

/// Runs the operator until it is asked to stop. A port that cannot be bound, an endpoint that
/// stops serving or a controller that panics ends the process with an error, so the kubelet
/// restarts it instead of leaving a pod that looks alive and does nothing. The controllers run
/// only while this replica holds the leader Lease; losing it ends the process the same way.
/// A standby is healthy: /healthz reports the process, not whether it leads.
pub async fn run(http_addr: SocketAddr, config: Config, election: Election) -> anyhow::Result<()> {
    info!(version = VERSION, "starting");
    let listener = http::bind(http_addr)
        .await
        .with_context(|| format!("binding the /metrics and /healthz endpoint to {http_addr}"))?;
    let metrics = Arc::new(Metrics::default());
    let client = counted_client(metrics.clone())
        .await
        .context("connecting to the management cluster")?;
    let health = Health::default();
    let controller = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            let controllers = controllers::run(client.clone(), config, metrics.clone());
            leader::lead(client, &election, &metrics, controllers).await
        }
    });
    health.set_controller_running(true);
    tokio::select! {
        served = http::serve(listener, metrics, health.clone()) => {
            served.context("serving /metrics and /healthz")?;
            bail!("the /metrics and /healthz endpoint stopped");
        }
        stopped = controller => {
            health.set_controller_running(false);
            stopped.context("the controller failed")??;
        }
    }
    Ok(())
}
