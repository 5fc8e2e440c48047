//! `nestplane tunnel-server` and `nestplane tunnel-agent`: the tunnel crate (`nestplane-tunnel`)
//! behind flags, with a TokenReview authenticator for agents, an HTTP endpoint for probes and
//! metrics, and a clean stop on SIGTERM.
mod agent;
pub mod authenticator;
mod http;
mod server;

pub use agent::{AgentArgs, run_agent};
pub use server::{ServerArgs, run_server};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

/// A future that resolves on SIGTERM (the kubelet stopping the container) or Ctrl-C. The
/// handler is installed now, so a signal that comes before the future is polled is not lost.
pub fn on_termination() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    })
}

/// Reads a file named by a flag, saying which.
fn read_flag_file(flag: &str, path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))
}
