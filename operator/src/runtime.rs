//! `nestplane run`: the HTTP endpoint and the controller, and what happens when either stops.
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use kube::Client;
use tracing::info;

use crate::controllers::{self, Config};
use crate::http::{self, Health};
use crate::metrics::Metrics;

/// The operator's version: the package version unless the build set `NESTPLANE_VERSION`.
pub const VERSION: &str = env!("NESTPLANE_VERSION");

/// Runs the operator until it is asked to stop. A port that cannot be bound, an endpoint that
/// stops serving or a controller that panics ends the process with an error, so the kubelet
/// restarts it instead of leaving a pod that looks alive and does nothing.
pub async fn run(http_addr: SocketAddr, config: Config) -> anyhow::Result<()> {
    info!(version = VERSION, "starting");
    let listener = http::bind(http_addr)
        .await
        .with_context(|| format!("binding the /metrics and /healthz endpoint to {http_addr}"))?;
    let client = Client::try_default()
        .await
        .context("connecting to the management cluster")?;
    let metrics = Arc::new(Metrics::default());
    let health = Health::default();
    let controller = tokio::spawn(controllers::run(client, config, metrics.clone()));
    health.set_controller_running(true);
    tokio::select! {
        served = http::serve(listener, metrics, health.clone()) => {
            served.context("serving /metrics and /healthz")?;
            bail!("the /metrics and /healthz endpoint stopped");
        }
        stopped = controller => {
            health.set_controller_running(false);
            stopped.context("the controller failed")?;
        }
    }
    Ok(())
}
