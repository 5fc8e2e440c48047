//! A NodePool's life against the real operator, a real HostedCluster and the test cloud's fake
//! compute host: scale 0→5→2→0 with Nova (listed by tag), the Workers and the status agreeing
//! after each step, and a HostedCluster deleted with its pools leaving no server.

use std::time::Duration;

use anyhow::{Result, ensure};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use nestplane_api::{HostedCluster, NodePool};
use nestplane_e2e::hosted::{self, eventually};
use nestplane_e2e::node_pools::{STEP, agree, create_cloud_secret, pool, pool_tag, scale, servers};
use nestplane_e2e::openstack::cloud_config;
use nestplane_e2e::openstack::clouds_yaml;
use nestplane_e2e::with_temp_namespace;
use nestplane_openstack::Client as Nova;

#[tokio::test]
async fn scale_zero_five_two_zero_agrees_with_nova() -> Result<()> {
    with_temp_namespace("np-lifecycle", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane")?)?;
        let hc = hosted::create_available(&client, &hosted::sample(&namespace)?).await?;
        create_cloud_secret(&client, &namespace, "cloud", &clouds_yaml()?).await?;
        let pools: Api<NodePool> = Api::namespaced(client.clone(), &namespace);
        let created = pools
            .create(
                &PostParams::default(),
                &pool(
                    &namespace,
                    "workers",
                    &hc.name_any(),
                    "nestplane",
                    "nestplane.tiny",
                    0,
                )?,
            )
            .await?;
        for replicas in [0, 5, 2, 0] {
            scale(&client, &namespace, "workers", replicas).await?;
            agree(&client, &nova, &created, replicas as usize).await?;
        }
        pools.delete("workers", &DeleteParams::default()).await?;
        eventually(STEP, || async {
            ensure!(
                pools.get_opt("workers").await?.is_none(),
                "the NodePool is still there"
            );
            Ok(())
        })
        .await?;
        ensure!(
            servers(&nova, &pool_tag(&created)).await?.is_empty(),
            "servers left behind"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn deleting_the_hosted_cluster_deletes_its_pools_and_leaves_no_server() -> Result<()> {
    with_temp_namespace("np-hc-delete", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane")?)?;
        let hc = hosted::create_available(&client, &hosted::sample(&namespace)?).await?;
        create_cloud_secret(&client, &namespace, "cloud", &clouds_yaml()?).await?;
        let pools: Api<NodePool> = Api::namespaced(client.clone(), &namespace);
        let created = pools
            .create(
                &PostParams::default(),
                &pool(
                    &namespace,
                    "workers",
                    &hc.name_any(),
                    "nestplane",
                    "nestplane.tiny",
                    2,
                )?,
            )
            .await?;
        agree(&client, &nova, &created, 2).await?;

        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &namespace);
        hcs.delete(&hc.name_any(), &DeleteParams::default()).await?;
        eventually(Duration::from_secs(600), || async {
            ensure!(
                hcs.get_opt(&hc.name_any()).await?.is_none(),
                "the HostedCluster is still there"
            );
            Ok(())
        })
        .await?;
        ensure!(
            pools.get_opt("workers").await?.is_none(),
            "the NodePool outlived its cluster"
        );
        let cluster_tag = format!("np-cluster:{}", hc.uid().unwrap_or_default());
        let left = servers(&nova, &cluster_tag).await?;
        ensure!(
            left.is_empty(),
            "servers of the deleted cluster left in Nova: {left:?}"
        );
        Ok(())
    })
    .await
}

/// What a user does when done with a team: `kubectl delete namespace`. The namespace goes (the
/// pools delete their servers with the cloud client built before the Secret went, and do not
/// wait for a control plane that is going too) and Nova keeps no server of the pool.
#[tokio::test]
async fn deleting_the_namespace_deletes_the_servers_and_completes() -> Result<()> {
    let client = nestplane_e2e::client().await?;
    let nova = Nova::new(cloud_config("nestplane")?)?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {
            "generateName": "np-ns-delete-",
            "labels": { nestplane_e2e::TEST_NAMESPACE_LABEL: "true" }
        }
    }))?;
    let namespace = namespaces
        .create(&PostParams::default(), &namespace)
        .await?
        .name_any();
    let hc = hosted::create_available(&client, &hosted::sample(&namespace)?).await?;
    create_cloud_secret(&client, &namespace, "cloud", &clouds_yaml()?).await?;
    let pools: Api<NodePool> = Api::namespaced(client.clone(), &namespace);
    let created = pools
        .create(
            &PostParams::default(),
            &pool(
                &namespace,
                "workers",
                &hc.name_any(),
                "nestplane",
                "nestplane.tiny",
                2,
            )?,
        )
        .await?;
    agree(&client, &nova, &created, 2).await?;

    namespaces.delete(&namespace, &DeleteParams::background()).await?;
    eventually(Duration::from_secs(600), || async {
        ensure!(
            namespaces.get_opt(&namespace).await?.is_none(),
            "namespace {namespace} is still there"
        );
        Ok(())
    })
    .await?;
    let left = servers(&nova, &pool_tag(&created)).await?;
    ensure!(
        left.is_empty(),
        "servers of the deleted namespace's pool left in Nova: {left:?}"
    );
    Ok(())
}
