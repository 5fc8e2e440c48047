//! A user applies the sample HostedCluster and gets a working Kubernetes API: it becomes
//! Available, answers /readyz, stores objects, keeps them when etcd's pod is deleted, and
//! deleting the HostedCluster removes what it owned and nothing else.

use std::time::Duration;

use anyhow::{Result, ensure};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nestplane_api::HostedCluster;
use nestplane_e2e::hosted::{
    admin_kubeconfig, available, create_available, eventually, hosted_client, readyz, sample,
};
use nestplane_e2e::{pod_ready, wait_until, with_temp_namespace};
use serde_json::json;

#[tokio::test]
async fn sample_becomes_available_keeps_data_and_cleans_up() -> Result<()> {
    with_temp_namespace("hc-available", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();
        let status = hc.status.clone().unwrap_or_default();
        ensure!(
            status.version.as_deref() == Some("v1.35.4"),
            "status.version: {:?}",
            status.version
        );
        ensure!(
            status.phase.as_deref() == Some("Available"),
            "status.phase: {:?}",
            status.phase
        );
        ensure!(
            status
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("https://")),
            "endpoint {:?}",
            status.endpoint
        );

        // The hosted API works with the kubeconfig nestplane published.
        let hosted = hosted_client(&admin_kubeconfig(&client, &hc).await?).await?;
        ensure!(readyz(&hosted).await?.trim() == "ok", "/readyz did not answer ok");
        let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": "tenant" } }))?;
        Api::<Namespace>::all(hosted.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        let config: ConfigMap =
            serde_json::from_value(json!({ "metadata": { "name": "kept" }, "data": { "answer": "42" } }))?;
        Api::<ConfigMap>::namespaced(hosted.clone(), "tenant")
            .create(&PostParams::default(), &config)
            .await?;

        restart_etcd_keeps_data(&client, &ns, &name, &hosted).await?;
        delete_removes_owned_objects_only(&client, &ns, &name).await
    })
    .await
}

async fn restart_etcd_keeps_data(client: &Client, ns: &str, name: &str, hosted: &Client) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let etcd_pod = format!("{name}-etcd-0");
    let old_uid = pods.get(&etcd_pod).await?.metadata.uid;
    pods.delete(&etcd_pod, &DeleteParams::default()).await?;
    let uid = old_uid.clone();
    wait_until(
        &pods,
        &etcd_pod,
        Duration::from_secs(180),
        move |p: Option<&Pod>| p.is_some_and(|p| p.metadata.uid != uid) && pod_ready(p),
    )
    .await?;
    let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), ns);
    wait_until(&hcs, name, Duration::from_secs(180), available).await?;
    let configs: Api<ConfigMap> = Api::namespaced(hosted.clone(), "tenant");
    let kept = eventually(Duration::from_secs(120), || async {
        Ok(configs.get("kept").await?)
    })
    .await?;
    let answer = kept.data.unwrap_or_default().get("answer").cloned();
    ensure!(
        answer.as_deref() == Some("42"),
        "data after the etcd pod restarted: {answer:?}"
    );
    Ok(())
}

async fn delete_removes_owned_objects_only(client: &Client, ns: &str, name: &str) -> Result<()> {
    let unrelated: Secret = serde_json::from_value(json!({ "metadata": { "name": "not-nestplanes" } }))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets.create(&PostParams::default(), &unrelated).await?;

    let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), ns);
    hcs.delete(name, &DeleteParams::default()).await?;
    wait_until(
        &hcs,
        name,
        Duration::from_secs(120),
        |hc: Option<&HostedCluster>| hc.is_none(),
    )
    .await
    .ok();
    ensure!(
        hcs.get_opt(name).await?.is_none(),
        "the HostedCluster was not deleted"
    );

    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
    let left = eventually(Duration::from_secs(120), || async {
        let mut left = Vec::new();
        left.extend(names(
            Api::<Secret>::namespaced(client.clone(), ns)
                .list(&selector)
                .await?
                .items,
        ));
        left.extend(names(
            Api::<Service>::namespaced(client.clone(), ns)
                .list(&selector)
                .await?
                .items,
        ));
        left.extend(names(
            Api::<Deployment>::namespaced(client.clone(), ns)
                .list(&selector)
                .await?
                .items,
        ));
        left.extend(names(
            Api::<StatefulSet>::namespaced(client.clone(), ns)
                .list(&selector)
                .await?
                .items,
        ));
        left.extend(names(
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
                .list(&selector)
                .await?
                .items,
        ));
        if left.is_empty() {
            Ok(left)
        } else {
            anyhow::bail!("still present: {left:?}")
        }
    })
    .await?;
    ensure!(left.is_empty());
    ensure!(
        secrets.get_opt("not-nestplanes").await?.is_some(),
        "an object nestplane does not own was deleted"
    );
    Ok(())
}

fn names<K: ResourceExt>(items: Vec<K>) -> Vec<String> {
    items.iter().map(|o| o.name_any()).collect()
}
