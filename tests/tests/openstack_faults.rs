//! Real network failures between nestplane and Nova: the catalog's public compute endpoint is a
//! toxiproxy proxy named `nova` (172.31.250.1:18774 -> 127.0.0.1:8774), and this test tells toxiproxy
//! (`NESTPLANE_E2E_TOXIPROXY`, default http://127.0.0.1:8474) to break it.
//!
//! Everything runs in one test so that no other case in this binary sees a broken proxy; toxics
//! are removed afterwards whether the case passed or not.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use nestplane_e2e::openstack::cloud_config;
use nestplane_e2e::toxiproxy::Toxiproxy;
use nestplane_openstack::{Client, Compute, Failure};
use serde_json::json;

fn client(timeout: Duration) -> Result<Client> {
    let mut config = cloud_config("nestplane")?;
    config.timeout = timeout;
    Ok(Client::new(config)?)
}

/// The error of a call that must fail.
fn failed<T: std::fmt::Debug>(
    result: nestplane_openstack::Result<T>,
    why: &str,
) -> Result<nestplane_openstack::Error> {
    match result {
        Ok(value) => bail!("{why}, yet the call succeeded: {value:?}"),
        Err(error) => Ok(error),
    }
}

fn transport(error: &nestplane_openstack::Error) -> Option<(&str, bool)> {
    match error.failure() {
        Some(Failure::Transport { message, timeout, .. }) => Some((message.as_str(), *timeout)),
        _ => None,
    }
}

#[tokio::test]
async fn compute_failures_surface_as_clear_transient_errors() -> Result<()> {
    let toxiproxy = Toxiproxy::new();
    toxiproxy
        .reset()
        .await
        .context("toxiproxy is not running: start the cloud with `make openstack-up`")?;
    let outcome = faults(&toxiproxy).await;
    toxiproxy.reset().await?;
    outcome
}

async fn faults(toxiproxy: &Toxiproxy) -> Result<()> {
    let os = client(Duration::from_secs(2))?;
    // Authenticate and prove the path works before breaking it.
    os.list_servers_by_tag("nestplane-faults").await?;

    // Connections reset as soon as Nova's answer starts to flow back.
    toxiproxy
        .add_toxic("nova", "reset", "reset_peer", json!({ "timeout": 0 }))
        .await?;
    let error = failed(
        os.list_servers_by_tag("nestplane-faults").await,
        "the proxy resets every connection",
    )?;
    let message = error.to_string();
    let (_, timed_out) = transport(&error).with_context(|| format!("not a transport failure: {message}"))?;
    ensure!(!timed_out, "a reset is not a timeout: {message}");
    ensure!(
        message.contains("OpenStack list servers by tag") && message.contains(":18774/"),
        "{message}"
    );
    ensure!(
        error.is_transient(),
        "a reset connection is worth a retry: {message}"
    );
    toxiproxy.remove_toxic("nova", "reset").await?;
    os.list_servers_by_tag("nestplane-faults")
        .await
        .context("Nova answers again once the reset toxic is gone")?;

    // Answers slower than the client's timeout.
    toxiproxy
        .add_toxic("nova", "slow", "latency", json!({ "latency": 4000 }))
        .await?;
    let error = failed(
        os.get_server("00000000-0000-0000-0000-000000000000").await,
        "the answer comes too late",
    )?;
    let message = error.to_string();
    let (_, timed_out) = transport(&error).with_context(|| format!("not a transport failure: {message}"))?;
    ensure!(timed_out && message.contains("timed out"), "{message}");
    ensure!(
        message.contains("OpenStack get server") && error.is_transient(),
        "{message}"
    );
    toxiproxy.remove_toxic("nova", "slow").await?;

    // Nova unreachable: the proxy stops listening.
    toxiproxy.set_enabled("nova", false).await?;
    let error = failed(
        os.delete_server("00000000-0000-0000-0000-000000000000").await,
        "nothing listens",
    )?;
    let message = error.to_string();
    transport(&error).with_context(|| format!("not a transport failure: {message}"))?;
    ensure!(
        message.contains("OpenStack delete server") && message.to_lowercase().contains("refused"),
        "{message}"
    );
    toxiproxy.set_enabled("nova", true).await?;

    // A response cut off after 100 bytes: never taken for a valid answer.
    toxiproxy
        .add_toxic("nova", "cut", "limit_data", json!({ "bytes": 100 }))
        .await?;
    let error = failed(
        os.list_servers_by_tag("nestplane-faults").await,
        "the body is cut short",
    )?;
    ensure!(
        error.is_transient() || matches!(error.failure(), Some(Failure::Decode { .. })),
        "{error}"
    );
    toxiproxy.remove_toxic("nova", "cut").await?;

    // Neutron sits behind its own proxy: a reset there fails network look-ups, not compute calls.
    toxiproxy
        .add_toxic("neutron", "reset", "reset_peer", json!({ "timeout": 0 }))
        .await?;
    let error = failed(
        os.find_network("nestplane-net").await,
        "Neutron resets every connection",
    )?;
    ensure!(
        error.to_string().contains("OpenStack find network") && error.is_transient(),
        "{error}"
    );
    os.list_servers_by_tag("nestplane-faults").await?;
    toxiproxy.remove_toxic("neutron", "reset").await?;
    os.find_network("nestplane-net").await?;
    Ok(())
}
