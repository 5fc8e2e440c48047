//! A cluster that cannot become ready is retried with growing delays, not every few seconds
//! forever: with many tenants, a few broken clusters must not keep the operator (and the API
//! server) busy. A LoadBalancer Service never gets an address here (no load-balancer
//! implementation), so such a cluster waits for its endpoint for good.

use std::time::Duration;

use anyhow::{Result, ensure};
use kube::Api;
use kube::api::PostParams;
use nestplane_api::{ApiServerServiceType, HostedCluster};
use nestplane_e2e::hosted::{condition_true, sample};
use nestplane_e2e::{operator_metric, wait_until, with_temp_namespace};

/// How long the reconciles are counted: a fixed 5 s retry would run 30 times in it.
const WINDOW: Duration = Duration::from_secs(150);

/// `nestplane_reconcile_runs_total` of the HostedCluster controller.
async fn reconcile_runs(client: &kube::Client) -> Result<f64> {
    operator_metric(
        client,
        "nestplane_reconcile_runs_total",
        "controller=\"hostedcluster\"",
    )
    .await
}

fn waits_for_endpoint(hc: Option<&HostedCluster>) -> bool {
    hc.and_then(|hc| hc.status.as_ref()).is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "APIServerAvailable" && c.reason == "WaitingForEndpoint")
    })
}

#[tokio::test]
async fn a_cluster_that_never_settles_is_retried_less_and_less_often() -> Result<()> {
    with_temp_namespace("hc-backoff", |client, ns| async move {
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        let mut hc = sample(&ns)?;
        hc.spec.api_server.service.type_ = ApiServerServiceType::LoadBalancer;
        hcs.create(&PostParams::default(), &hc).await?;
        let name = hc.metadata.name.clone().unwrap_or_default();
        wait_until(&hcs, &name, Duration::from_secs(60), waits_for_endpoint).await?;
        // Let the passes that creation itself triggers (finalizer, first status) go by.
        tokio::time::sleep(Duration::from_secs(20)).await;

        let before = reconcile_runs(&client).await?;
        tokio::time::sleep(WINDOW).await;
        let runs = reconcile_runs(&client).await? - before;
        // 5, 10, 20, 40, 80 s: about 5 passes, plus one a minute for each settled cluster
        // (the demo cluster) and a few for namespaces earlier tests are deleting.
        ensure!(
            runs <= 15.0,
            "{runs} reconciles in {WINDOW:?}: a cluster waiting for its endpoint is retried at a fixed short interval"
        );
        // It is still reported as it is, with the advice.
        let now = hcs.get(&name).await?;
        ensure!(waits_for_endpoint(Some(&now)), "{:#?}", now.status);
        ensure!(!condition_true(&now, "Available"), "{:#?}", now.status);
        Ok(())
    })
    .await
}
