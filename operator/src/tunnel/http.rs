//! The tunnel commands' HTTP endpoint: `/metrics`, `/healthz` and `/readyz` (the server: its
//! listeners are bound; the agent: it holds a connection to a server).
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use nestplane_tunnel::Metrics;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// The OpenMetrics text format prometheus-client writes.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
pub(super) struct Endpoint {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    /// The agent's readiness: connected to at least one server (its own metrics say so).
    connected: Option<Metrics>,
}

impl Endpoint {
    /// Not ready until [`Endpoint::set_ready`].
    pub(super) fn new(registry: Registry) -> Self {
        Self {
            registry: Arc::new(registry),
            ready: Arc::default(),
            connected: None,
        }
    }

    /// Ready while `metrics` count a connection to a server: an agent that cannot reach any
    /// server shows as not Ready in its DaemonSet (and in the NodePool's add-ons).
    pub(super) fn ready_while_connected(registry: Registry, metrics: Metrics) -> Self {
        Self {
            connected: Some(metrics),
            ..Self::new(registry)
        }
    }

    pub(super) fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub(super) fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }

    /// Serves until the listener fails; returns only with an error.
    pub(super) async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}

async fn readyz(State(endpoint): State<Endpoint>) -> (StatusCode, &'static str) {
    if let Some(metrics) = &endpoint.connected {
        return if metrics.snapshot().agent_connections > 0 {
            (StatusCode::OK, "ok")
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not connected to a tunnel server",
            )
        };
    }
    if endpoint.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "listeners not bound yet")
    }
}

async fn metrics(State(endpoint): State<Endpoint>) -> impl IntoResponse {
    let mut text = String::new();
    match encode(&mut text, &endpoint.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
            text,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            String::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use nestplane_tunnel::Metrics;
    use tower::ServiceExt;

    use super::*;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readyz_waits_for_the_listeners_and_metrics_carry_the_tunnel_series() {
        let mut registry = Registry::with_prefix("nestplane");
        Metrics::new().register(&mut registry);
        let endpoint = Endpoint::new(registry);
        assert_eq!(get(endpoint.router(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(endpoint.router(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        endpoint.set_ready();
        assert_eq!(get(endpoint.router(), "/readyz").await.0, StatusCode::OK);
        let (status, text) = get(endpoint.router(), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.lines().any(|l| l == "nestplane_tunnel_agent_connections 0"),
            "{text}"
        );
    }

    /// An agent without a connection to a server is not ready (`operator/tests/tunnel.rs` checks
    /// a connected one is).
    #[tokio::test]
    async fn an_agent_without_a_server_is_not_ready() {
        let metrics = Metrics::new();
        let mut registry = Registry::with_prefix("nestplane");
        metrics.register(&mut registry);
        let endpoint = Endpoint::ready_while_connected(registry, metrics);
        let (status, text) = get(endpoint.router(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(text, "not connected to a tunnel server");
    }
}
