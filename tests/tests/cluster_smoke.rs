//! The management cluster does what every later test relies on: pods of a locally built image run,
//! Services resolve by DNS name from other pods, a PersistentVolumeClaim keeps its data when the
//! pod that uses it is deleted, and a deleted claim takes its volume and the directory behind it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Service};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{conditions, wait::await_condition};
use kube::{Api, Client, ResourceExt};
use nestplane_e2e::{SMOKE_IMAGE, pod_logs, pod_ready, run_pod, wait_until, with_temp_namespace};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test]
async fn deployment_of_local_image_is_reachable_by_service_dns_name() -> Result<()> {
    with_temp_namespace("smoke-dns", |client, ns| async move {
        create_web(&client, &ns).await?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        wait_until(
            &deployments,
            "web",
            TIMEOUT,
            conditions::is_deployment_completed(),
        )
        .await?;

        let url = format!("http://web.{ns}.svc.cluster.local/");
        let (phase, logs) = run_pod(&client, &ns, "client", SMOKE_IMAGE, &["fetch", &url]).await?;
        ensure!(phase == "Succeeded", "client pod {phase}: {logs}");
        ensure!(
            logs.contains(&format!("resolved web.{ns}.svc.cluster.local")),
            "no DNS answer: {logs}"
        );
        ensure!(
            logs.contains("status 200 body smoke web-"),
            "no answer from a web pod: {logs}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn statefulset_volume_survives_pod_deletion() -> Result<()> {
    with_temp_namespace("smoke-pvc", |client, ns| async move {
        let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        statefulsets
            .create(&PostParams::default(), &keeper_statefulset()?)
            .await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

        let first = wait_until(&pods, "keeper-0", TIMEOUT, pod_ready).await?;
        let first_token = token(&pod_logs(&client, &ns, "keeper-0").await?)?;
        ensure!(
            pod_logs(&client, &ns, "keeper-0")
                .await?
                .contains("created token"),
            "first pod found old data"
        );

        pods.delete("keeper-0", &DeleteParams::default()).await?;
        let first_uid = first.metadata.uid.clone();
        let second = wait_until(&pods, "keeper-0", TIMEOUT, move |p: Option<&Pod>| {
            p.is_some_and(|p| p.metadata.uid != first_uid) && pod_ready(p)
        })
        .await?;
        ensure!(
            second.metadata.uid != first.metadata.uid,
            "the pod was not replaced"
        );
        let second_logs = pod_logs(&client, &ns, "keeper-0").await?;
        ensure!(
            !second_logs.contains("created token"),
            "the replacement pod found an empty volume"
        );
        ensure!(
            token(&second_logs)? == first_token,
            "volume data changed: {second_logs}"
        );
        Ok(())
    })
    .await
}

/// The default StorageClass deletes what it made (reclaim policy Delete): nothing is left on the
/// node once the claim is gone.
#[tokio::test]
async fn a_deleted_claim_takes_its_volume_and_directory() -> Result<()> {
    with_temp_namespace("smoke-reclaim", |client, ns| async move {
        let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        statefulsets
            .create(&PostParams::default(), &keeper_statefulset()?)
            .await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod = wait_until(&pods, "keeper-0", TIMEOUT, pod_ready).await?;

        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let volume_name = claims
            .get("data-keeper-0")
            .await?
            .spec
            .and_then(|s| s.volume_name)
            .context("the claim is not bound")?;
        let volumes: Api<PersistentVolume> = Api::all(client.clone());
        let volume = volumes.get(&volume_name).await?;
        let path = volume
            .spec
            .as_ref()
            .and_then(|s| s.host_path.as_ref())
            .map(|h| h.path.clone())
            .context("not a host path volume")?;
        ensure!(Path::new(&path).is_dir(), "{path} is not on this node");

        statefulsets.delete("keeper", &DeleteParams::background()).await?;
        let pod_uid = pod.uid().context("pod without uid")?;
        gone(&pods, "keeper-0", &pod_uid).await?;
        claims.delete("data-keeper-0", &DeleteParams::default()).await?;
        let volume_uid = volume.uid().context("volume without uid")?;
        gone(&volumes, &volume_name, &volume_uid).await?;
        ensure!(!Path::new(&path).exists(), "{path} was left on the node");
        Ok(())
    })
    .await
}

/// Waits until the object with this uid no longer exists.
async fn gone<K>(api: &Api<K>, name: &str, uid: &str) -> Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    tokio::time::timeout(
        TIMEOUT,
        await_condition(api.clone(), name, conditions::is_deleted(uid)),
    )
    .await
    .with_context(|| format!("{name} still exists after {TIMEOUT:?}"))??;
    Ok(())
}

async fn create_web(client: &Client, ns: &str) -> Result<()> {
    let labels = json!({ "app": "web" });
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": { "containers": [{
                    "name": "web", "image": SMOKE_IMAGE, "imagePullPolicy": "Never", "args": ["serve"],
                    "ports": [{ "containerPort": 8080 }],
                    "readinessProbe": { "httpGet": { "path": "/healthz", "port": 8080 }, "periodSeconds": 2 }
                }]}
            }
        }
    }))?;
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "selector": labels, "ports": [{ "port": 80, "targetPort": 8080 }] }
    }))?;
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &deployment)
        .await?;
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &service)
        .await?;
    Ok(())
}

fn keeper_statefulset() -> Result<StatefulSet> {
    let labels = json!({ "app": "keeper" });
    Ok(serde_json::from_value(json!({
        "metadata": { "name": "keeper" },
        "spec": {
            "serviceName": "keeper",
            "replicas": 1,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "keeper", "image": SMOKE_IMAGE, "imagePullPolicy": "Never",
                        "args": ["keep", "/data/token"],
                        "volumeMounts": [{ "name": "data", "mountPath": "/data" }]
                    }]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "16Mi" } } }
            }]
        }
    }))?)
}

fn token(logs: &str) -> Result<String> {
    logs.lines()
        .find_map(|l| l.strip_prefix("token="))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no token in logs: {logs}"))
}
