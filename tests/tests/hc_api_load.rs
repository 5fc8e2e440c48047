//! A settled cluster costs the management cluster's API no reads: a pass takes what it needs
//! from the watches the operator already holds (`nestplane_kube_requests_total` counts every
//! request it sends, by verb). With many tenants, ~20 live reads per pass per cluster would
//! load the management API server for nothing.

use std::time::Duration;

use anyhow::{Result, ensure};
use nestplane_e2e::hosted::{create_available, reconciled_again, sample};
use nestplane_e2e::{operator_metric, with_temp_namespace};

/// Passes to count over: each `reconciled_again` makes at least one.
const POKES: usize = 6;

async fn counts(client: &kube::Client) -> Result<(f64, f64)> {
    let passes = operator_metric(
        client,
        "nestplane_reconcile_runs_total",
        "controller=\"hostedcluster\"",
    )
    .await?;
    let get = operator_metric(client, "nestplane_kube_requests_total", "verb=\"get\"").await?;
    let list = operator_metric(client, "nestplane_kube_requests_total", "verb=\"list\"").await?;
    Ok((passes, get + list))
}

#[tokio::test]
async fn a_settled_cluster_is_reconciled_from_the_watches_without_live_reads() -> Result<()> {
    with_temp_namespace("hc-api-load", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.metadata.name.clone().unwrap_or_default();
        // Let the passes that creation triggers settle (rollouts finishing, first status).
        reconciled_again(&client, &ns, &name).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;

        let (passes_before, reads_before) = counts(&client).await?;
        for _ in 0..POKES {
            reconciled_again(&client, &ns, &name).await?;
        }
        let (passes_after, reads_after) = counts(&client).await?;
        let passes = passes_after - passes_before;
        let reads = reads_after - reads_before;
        ensure!(
            passes >= POKES as f64,
            "only {passes} passes for {POKES} requests"
        );
        // Other clusters (the demo one, namespaces earlier tests are deleting) may be reconciled
        // meanwhile; a pass that read its objects live would cost about 20.
        ensure!(
            reads / passes < 1.0,
            "{reads} GET/LIST requests in {passes} passes over a settled cluster: passes read live \
             instead of from the watches"
        );
        Ok(())
    })
    .await
}
