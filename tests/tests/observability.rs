//! What a platform engineer sees in Prometheus and Grafana: the chart installs the dashboard for
//! Grafana's sidecar, and the operator's /metrics (scraped through its Service) carries every
//! series the dashboard queries, follows a HostedCluster (and a NodePool of it) to Available and
//! drops them once deleted.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use nestplane_api::{HostedCluster, NodePool};
use nestplane_e2e::hosted::{create_available, eventually, sample};
use nestplane_e2e::node_pools::{create_cloud_secret, pool};
use nestplane_e2e::openstack::clouds_yaml;
use nestplane_e2e::{operator_namespace, scrape_operator_metrics, with_temp_namespace};

const DASHBOARD: &str = include_str!("../../deploy/chart/nestplane/dashboards/nestplane.json");
const RELEASE: &str = "nestplane";

/// The sample lines of `metric` whose labels include every `name="value"` in `labels`.
fn samples<'a>(text: &'a str, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a str> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .filter(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .collect()
}

fn value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Metric names in the dashboard's queries (`nestplane_*`).
fn dashboard_metrics() -> Vec<String> {
    let mut names: Vec<String> = DASHBOARD
        .match_indices("nestplane_")
        .map(|(start, _)| {
            DASHBOARD[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .filter(|name: &String| name != "nestplane_")
        .collect();
    names.sort();
    names.dedup();
    names
}

#[tokio::test]
async fn chart_installs_the_grafana_dashboard() -> Result<()> {
    let client = nestplane_e2e::client().await?;
    let config = Api::<ConfigMap>::namespaced(client, &operator_namespace())
        .get(&format!("{RELEASE}-dashboards"))
        .await
        .context("the chart's dashboard ConfigMap")?;
    ensure!(
        config.labels().get("grafana_dashboard").map(String::as_str) == Some("1"),
        "labels {:?}",
        config.labels()
    );
    let installed = config
        .data
        .unwrap_or_default()
        .remove("nestplane.json")
        .context("no nestplane.json in the ConfigMap")?;
    ensure!(
        installed == DASHBOARD,
        "the installed dashboard differs from the chart's file"
    );
    let dashboard: serde_json::Value = serde_json::from_str(&installed)?;
    ensure!(
        dashboard["uid"] == "nestplane-overview",
        "uid {}",
        dashboard["uid"]
    );
    Ok(())
}

#[tokio::test]
async fn metrics_follow_a_hosted_cluster_from_available_to_gone() -> Result<()> {
    with_temp_namespace("metrics", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();

        let text = eventually(Duration::from_secs(60), || async {
            let text = scrape_operator_metrics(&client).await?;
            let available = samples(
                &text,
                "nestplane_hosted_cluster_phase",
                &[("namespace", &ns), ("name", &name), ("phase", "Available")],
            );
            ensure!(
                available.len() == 1 && value(available[0]) == 1.0,
                "phase Available: {available:?}"
            );
            Ok(text)
        })
        .await?;
        let phases = samples(
            &text,
            "nestplane_hosted_cluster_phase",
            &[("namespace", &ns), ("name", &name)],
        );
        ensure!(
            phases.iter().map(|l| value(l)).sum::<f64>() == 1.0,
            "exactly one phase is 1: {phases:?}"
        );

        // Certificates: the serving certificate expires when spec.certificates.validityDays says.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64();
        let apiserver = samples(
            &text,
            "nestplane_certificate_expiry_timestamp_seconds",
            &[("namespace", &ns), ("name", &name), ("cert", "apiserver")],
        );
        ensure!(
            apiserver.len() == 1,
            "apiserver certificate expiry: {apiserver:?}"
        );
        let days_left = (value(apiserver[0]) - now) / 86400.0;
        let validity = f64::from(hc.spec.certificates.validity_days);
        ensure!(
            (days_left - validity).abs() < 1.0,
            "the apiserver certificate expires in {days_left:.1} days, not {validity}"
        );

        // A NodePool of one worker on the fake compute host gives the workers row its series: desired and
        // ready workers, the bootstrap token's expiry as the pool's status says, and the
        // OpenStack requests of its cloud.
        create_cloud_secret(&client, &ns, "cloud", &clouds_yaml()?).await?;
        let pools: Api<NodePool> = Api::namespaced(client.clone(), &ns);
        pools
            .create(
                &PostParams::default(),
                &pool(&ns, "workers", &name, "nestplane", "nestplane.tiny", 1)?,
            )
            .await?;
        let text = eventually(Duration::from_secs(120), || async {
            let expires = pools
                .get("workers")
                .await?
                .status
                .and_then(|s| s.bootstrap_token_expires)
                .context("status.bootstrapTokenExpires not set yet")?;
            let text = scrape_operator_metrics(&client).await?;
            let pool_labels = [("namespace", ns.as_str()), ("node_pool", "workers")];
            let expiry = samples(
                &text,
                "nestplane_bootstrap_token_expiry_timestamp_seconds",
                &pool_labels,
            );
            ensure!(
                expiry.len() == 1 && value(expiry[0]) == expires.0.as_second() as f64,
                "token expiry {expiry:?}, status says {expires:?}"
            );
            let desired = samples(
                &text,
                "nestplane_nodepool_workers",
                &[pool_labels[0], pool_labels[1], ("state", "desired")],
            );
            ensure!(
                desired.len() == 1 && value(desired[0]) == 1.0,
                "desired workers {desired:?}"
            );
            let creates = samples(
                &text,
                "nestplane_openstack_requests_total",
                &[("operation", "create_server"), ("outcome", "ok")],
            );
            ensure!(
                creates.iter().any(|l| value(l) >= 1.0),
                "the worker's server was created in Nova: {creates:?}"
            );
            Ok(text)
        })
        .await?;

        // Every series the dashboard queries exists.
        for metric in dashboard_metrics() {
            ensure!(
                text.lines().any(|l| l.starts_with(&metric)),
                "the dashboard queries {metric}, which /metrics does not carry"
            );
        }

        Api::<HostedCluster>::namespaced(client.clone(), &ns)
            .delete(&name, &DeleteParams::default())
            .await?;
        eventually(Duration::from_secs(120), || async {
            let text = scrape_operator_metrics(&client).await?;
            let left: Vec<_> = text
                .lines()
                .filter(|l| l.contains(&format!("namespace=\"{ns}\"")))
                .collect();
            ensure!(left.is_empty(), "series of the deleted cluster: {left:?}");
            Ok(())
        })
        .await
    })
    .await
}
