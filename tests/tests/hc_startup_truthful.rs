//! While a HostedCluster starts (every component at once), its conditions say only what is
//! true: each status the operator writes is checked, the moment the watch delivers it, against
//! what a user would look at. A component condition that is True has a Ready pod; a component
//! the `Available` message names as missing has its condition False; and the first
//! `Available=True` (and every `APIServerAvailable=True`) is seen only when the hosted API
//! answers `/readyz` to the admin kubeconfig, at the first try.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use nestplane_api::HostedCluster;
use nestplane_e2e::hosted::{admin_kubeconfig, available, hosted_client, readyz, sample};
use nestplane_e2e::startup::{COMPONENT_LABEL, COMPONENTS, INSTANCE_LABEL};
use nestplane_e2e::{pod_ready, with_temp_namespace};

/// Condition type of each component, as published.
const CONDITIONS: [(&str, &str); 4] = [
    ("etcd", "EtcdAvailable"),
    ("kube-apiserver", "APIServerAvailable"),
    ("kube-controller-manager", "ControllerManagerAvailable"),
    ("kube-scheduler", "SchedulerAvailable"),
];

#[tokio::test]
async fn conditions_are_truthful_while_a_cluster_starts() -> Result<()> {
    with_temp_namespace("hc-startup", |client, ns| async move {
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        let hc = sample(&ns)?;
        let name = hc.name_any();
        let watch = watcher::watcher(
            hcs.clone(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        );
        let mut watch = std::pin::pin!(watch);
        hcs.create(&PostParams::default(), &hc).await?;

        let mut statuses_checked = 0;
        let mut seen_unavailable = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        loop {
            let event = tokio::time::timeout_at(deadline, watch.try_next())
                .await
                .context("the cluster did not become Available within 300 s")??;
            let Some(Event::Apply(hc) | Event::InitApply(hc)) = event else {
                continue;
            };
            let Some(status) = hc.status.as_ref() else {
                continue;
            };
            if status.conditions.is_empty() {
                continue;
            }
            statuses_checked += 1;
            check_components(&client, &ns, &name, &hc).await?;
            if available(Some(&hc)) {
                ensure!(
                    seen_unavailable,
                    "the first status written was already Available: the start was not observed"
                );
                // The user's next step: the admin kubeconfig works at once.
                let answer = admin_readyz(&client, &hc).await?;
                ensure!(answer == "ok", "Available=True but /readyz answered {answer:?}");
                break;
            }
            seen_unavailable = true;
            check_unavailable_message(&hc)?;
        }
        println!("checked {statuses_checked} statuses of {name} while it started");
        ensure!(statuses_checked >= 2, "only {statuses_checked} statuses seen");
        Ok(())
    })
    .await
}

fn condition<'a>(
    hc: &'a HostedCluster,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    hc.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

/// Every component condition that is True has a Ready pod now; an `APIServerAvailable=True`
/// means the hosted API answers.
async fn check_components(client: &Client, ns: &str, name: &str, hc: &HostedCluster) -> Result<()> {
    let ready = ready_components(client, ns, name).await?;
    for (component, type_) in CONDITIONS {
        let Some(cond) = condition(hc, type_) else {
            bail!("no {type_} condition in {:?}", hc.status);
        };
        if cond.status == "True" {
            ensure!(
                ready.contains(component),
                "{type_}=True ({}) but no {component} pod is Ready",
                cond.message
            );
            if component == "kube-apiserver" {
                let answer = admin_readyz(client, hc).await?;
                ensure!(answer == "ok", "{type_}=True but /readyz answered {answer:?}");
            }
        }
    }
    Ok(())
}

/// While not Available, the message names what is missing, and each named component's own
/// condition is False.
fn check_unavailable_message(hc: &HostedCluster) -> Result<()> {
    let Some(cond) = condition(hc, "Available") else {
        bail!("no Available condition");
    };
    ensure!(
        cond.status == "False",
        "Available {} without being available",
        cond.status
    );
    if cond.reason != "ComponentsUnavailable" {
        // A reconcile error or a pending endpoint says so in its own words.
        return Ok(());
    }
    let missing: Vec<&str> = cond
        .message
        .trim_start_matches("not available: ")
        .split(", ")
        .collect();
    ensure!(
        !missing.is_empty(),
        "Available=False names nothing: {:?}",
        cond.message
    );
    for (component, type_) in CONDITIONS {
        let named = missing.contains(&component);
        let own = condition(hc, type_).map(|c| c.status.as_str());
        ensure!(
            named == (own == Some("False")),
            "{component}: named as missing {named}, but its {type_} is {own:?} ({:?})",
            cond.message
        );
    }
    Ok(())
}

async fn ready_components(client: &Client, ns: &str, name: &str) -> Result<BTreeSet<&'static str>> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={name}")))
        .await?;
    Ok(COMPONENTS
        .into_iter()
        .filter(|component| {
            pods.iter().any(|p| {
                p.labels().get(COMPONENT_LABEL).map(String::as_str) == Some(*component) && pod_ready(Some(p))
            })
        })
        .collect())
}

/// `/readyz` as the cluster's admin, once, with the kubeconfig its status points at as it is now.
async fn admin_readyz(client: &Client, hc: &HostedCluster) -> Result<String> {
    let kubeconfig = admin_kubeconfig(client, hc).await?;
    let hosted = hosted_client(&kubeconfig).await?;
    match tokio::time::timeout(Duration::from_secs(5), readyz(&hosted)).await {
        Ok(Ok(body)) => Ok(body.trim().to_string()),
        Ok(Err(error)) => Ok(format!("error: {error}")),
        Err(_) => Ok("no answer within 5 s".to_string()),
    }
}
