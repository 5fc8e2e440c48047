//! What an operator of nestplane relies on after creation: a steady state writes nothing,
//! an operator restart keeps every CA, a rotation request rolls only the components that
//! mount the certificate, and bad specs are refused with a message that says why.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nestplane_api::HostedCluster;
use nestplane_e2e::hosted::{available, create_available, eventually, sample, template_hash};
use nestplane_e2e::{pod_ready, wait_until, with_temp_namespace};
use serde_json::json;

const OPERATOR_NAMESPACE: &str = "nestplane-system";

/// resourceVersion of every object the control plane owns, by kind/name.
async fn owned_versions(client: &Client, ns: &str, name: &str) -> Result<BTreeMap<String, String>> {
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
    let mut versions = BTreeMap::new();
    macro_rules! collect {
        ($kind:ty, $label:expr) => {
            for o in Api::<$kind>::namespaced(client.clone(), ns)
                .list(&selector)
                .await?
                .items
            {
                versions.insert(
                    format!("{}/{}", $label, o.name_any()),
                    o.resource_version().unwrap_or_default(),
                );
            }
        };
    }
    collect!(Secret, "Secret");
    collect!(Service, "Service");
    collect!(Deployment, "Deployment");
    collect!(StatefulSet, "StatefulSet");
    Ok(versions)
}

/// Annotating the HostedCluster wakes the controller without changing the spec.
async fn nudge(client: &Client, ns: &str, name: &str, value: &str) -> Result<()> {
    let patch = json!({ "metadata": { "annotations": { "e2e.nestplane.io/nudge": value } } });
    Api::<HostedCluster>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    Ok(())
}

#[tokio::test]
async fn steady_state_writes_nothing_and_operator_restart_keeps_the_ca() -> Result<()> {
    with_temp_namespace("hc-steady", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        // Let the last status write and rollouts settle, then look twice.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = owned_versions(&client, &ns, &name).await?;
        let status_before = hcs.get(&name).await?.status;
        nudge(&client, &ns, &name, "1").await?;
        let after = owned_versions(&client, &ns, &name).await?;
        ensure!(
            before == after,
            "a reconcile with nothing to do wrote objects:\n{before:#?}\n{after:#?}"
        );
        ensure!(
            hcs.get(&name).await?.status == status_before,
            "an unchanged status was rewritten"
        );

        let ca_name = format!("{name}-ca");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let ca_before = secrets.get(&ca_name).await?;
        restart_operator(&client).await?;
        nudge(&client, &ns, &name, "2").await?;
        wait_until(&hcs, &name, Duration::from_secs(120), available).await?;
        let ca_after = secrets.get(&ca_name).await?;
        ensure!(
            ca_before.metadata.uid == ca_after.metadata.uid,
            "the CA Secret was recreated"
        );
        ensure!(
            ca_before.data == ca_after.data,
            "the CA changed across an operator restart"
        );
        ensure!(
            before == owned_versions(&client, &ns, &name).await?,
            "the restarted operator rewrote objects"
        );
        Ok(())
    })
    .await
}

async fn restart_operator(client: &Client) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let selector = ListParams::default().labels("app.kubernetes.io/name=nestplane");
    let old: Vec<String> = pods
        .list(&selector)
        .await?
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    ensure!(
        !old.is_empty(),
        "no operator pod in {OPERATOR_NAMESPACE}: run `make up`"
    );
    for pod in &old {
        pods.delete(pod, &DeleteParams::default()).await?;
    }
    eventually(Duration::from_secs(120), || async {
        let fresh: Vec<Pod> = pods.list(&selector).await?.items;
        if fresh
            .iter()
            .any(|p| !old.contains(&p.name_any()) && pod_ready(Some(p)))
        {
            Ok(())
        } else {
            bail!("no new ready operator pod yet")
        }
    })
    .await
}

#[tokio::test]
async fn rotation_request_rolls_only_the_components_that_mount_it() -> Result<()> {
    with_temp_namespace("hc-rotate", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let apiserver = format!("{name}-kube-apiserver");
        let scheduler = format!("{name}-kube-scheduler");
        let etcd = format!("{name}-etcd");
        let hash_before = template_hash(&deployments.get(&apiserver).await?);
        let scheduler_before = template_hash(&deployments.get(&scheduler).await?);
        let etcd_before = statefulsets
            .get(&etcd)
            .await?
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations);
        let cert_before = secrets.get(&format!("{name}-apiserver")).await?.data;

        let patch = json!({ "metadata": { "annotations": { "nestplane.io/rotate": "true" } } });
        secrets
            .patch(
                &format!("{name}-apiserver"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        let rolled = eventually(Duration::from_secs(60), || async {
            let d = deployments.get(&apiserver).await?;
            if template_hash(&d) != hash_before {
                Ok(d)
            } else {
                bail!("kube-apiserver did not roll")
            }
        })
        .await?;
        ensure!(template_hash(&rolled).is_some());
        let rotated = secrets.get(&format!("{name}-apiserver")).await?;
        ensure!(rotated.data != cert_before, "the certificate was not reissued");
        ensure!(
            !rotated.annotations().contains_key("nestplane.io/rotate"),
            "the rotation request stays and would rotate forever"
        );
        ensure!(
            template_hash(&deployments.get(&scheduler).await?) == scheduler_before,
            "the scheduler rolled"
        );
        let etcd_after = statefulsets
            .get(&etcd)
            .await?
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations);
        ensure!(
            etcd_after == etcd_before,
            "etcd rolled for an API server certificate"
        );
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        wait_until(&hcs, &name, Duration::from_secs(180), available).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn invalid_specs_are_refused_with_a_reason() -> Result<()> {
    with_temp_namespace("hc-invalid", |client, ns| async move {
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        for (spec, message) in [
            (json!({ "version": "v1.30.0" }), "unsupported version: nestplane supports v1.35.x"),
            (json!({ "version": "v1.35.4", "etcd": { "replicas": 2 } }), "etcd.replicas must be 1 or 3"),
            (
                json!({ "version": "v1.35.4", "network": { "serviceCIDR": "10.96.0.0/33" } }),
                "serviceCIDR must be an IPv4 CIDR",
            ),
            (
                json!({ "version": "v1.35.4", "apiServer": { "service": { "type": "NodePort", "port": 8443 } } }),
                "a NodePort port must be within 30000-32767",
            ),
        ] {
            let hc: HostedCluster = serde_json::from_value(json!({
                "apiVersion": "nestplane.io/v1alpha1", "kind": "HostedCluster",
                "metadata": { "name": "bad" }, "spec": spec
            }))?;
            match hcs.create(&PostParams::default(), &hc).await {
                Ok(_) => bail!("accepted an invalid spec: {spec}"),
                Err(e) => ensure!(e.to_string().contains(message), "{spec}: expected {message:?}, got {e}"),
            }
        }

        // Updates: the version moves forward only and the network is fixed.
        let good: HostedCluster = serde_json::from_value(json!({
            "apiVersion": "nestplane.io/v1alpha1", "kind": "HostedCluster",
            "metadata": { "name": "good" }, "spec": { "version": "v1.35.4" }
        }))?;
        hcs.create(&PostParams::default(), &good).await?;
        for (patch, message) in [
            (json!({ "spec": { "version": "v1.35.1" } }), "version cannot be downgraded"),
            (json!({ "spec": { "network": { "podCIDR": "10.0.0.0/16" } } }), "network is immutable"),
        ] {
            match hcs.patch("good", &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => bail!("accepted an invalid update: {patch}"),
                Err(e) => ensure!(e.to_string().contains(message), "{patch}: expected {message:?}, got {e}"),
            }
        }
        Ok(())
    })
    .await
}
