//! /metrics and /healthz.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Whether the controller is running, as /healthz reports it. Starts as not running, so the
/// pod is not Ready before the controller is, and is unhealthy again once it has stopped.
#[derive(Debug, Clone, Default)]
pub struct Health {
    controller_running: Arc<AtomicBool>,
}

impl Health {
    pub fn set_controller_running(&self, running: bool) {
        self.controller_running.store(running, Ordering::SeqCst);
    }

    pub fn controller_running(&self) -> bool {
        self.controller_running.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// Binds the endpoint's port; a port already in use is an error the caller reports at start.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until the listener fails; returns only with an error.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, health: Health) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, health)).await
}

fn router(metrics: Arc<Metrics>, health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .with_state(AppState { metrics, health })
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.health.controller_running() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "controller not running")
    }
}

async fn render_metrics(State(state): State<AppState>) -> (StatusCode, String) {
    match state.metrics.encode() {
        Ok(text) => (StatusCode::OK, text),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get_healthz(health: &Health) -> (StatusCode, String) {
        let response = router(Arc::new(Metrics::default()), health.clone())
            .oneshot(Request::get("/healthz").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthz_follows_the_controller() {
        let health = Health::default();
        assert_eq!(
            get_healthz(&health).await,
            (StatusCode::SERVICE_UNAVAILABLE, "controller not running".into()),
            "before the controller starts"
        );
        health.set_controller_running(true);
        assert_eq!(get_healthz(&health).await, (StatusCode::OK, "ok".into()));
        health.set_controller_running(false);
        assert_eq!(
            get_healthz(&health).await.0,
            StatusCode::SERVICE_UNAVAILABLE,
            "after the controller stopped"
        );
    }

    #[tokio::test]
    async fn binding_a_port_in_use_fails() {
        let taken = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("first bind");
        let addr = taken.local_addr().expect("local addr");
        assert!(bind(addr).await.is_err(), "a second bind of {addr} succeeded");
    }
}
