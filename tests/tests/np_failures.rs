//! NodePool failures against the real operator and the test cloud: each is a clear condition on
//! the pool naming what is wrong, and nothing is leaked in Nova.
//! Quota (the `nestplane-quota` project allows two servers), a flavor that does not exist, wrong
//! credentials, and a cloud Secret deleted under a running pool.

use std::time::Duration;

use anyhow::{Result, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nestplane_api::NodePool;
use nestplane_e2e::hosted::{self, eventually};
use nestplane_e2e::node_pools::{
    STEP, agree, create_cloud_secret, delete_leaves_nothing, pool, pool_tag, ready_false, servers,
};
use nestplane_e2e::openstack::cloud_config;
use nestplane_e2e::openstack::clouds_yaml;
use nestplane_e2e::with_temp_namespace;
use nestplane_openstack::Client as Nova;

/// An Available HostedCluster in `namespace` and a pool of it; returns the created pool.
async fn pool_of_a_cluster(
    client: &Client,
    namespace: &str,
    cloud: &str,
    flavor: &str,
    replicas: i32,
    clouds_yaml: &str,
) -> Result<NodePool> {
    let hc = hosted::create_available(client, &hosted::sample(namespace)?).await?;
    create_cloud_secret(client, namespace, "cloud", clouds_yaml).await?;
    let spec = pool(namespace, "workers", &hc.name_any(), cloud, flavor, replicas)?;
    Ok(Api::<NodePool>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &spec)
        .await?)
}

#[tokio::test]
async fn over_quota_a_pool_says_quota_exceeded_and_keeps_what_fits() -> Result<()> {
    with_temp_namespace("np-quota", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane-quota")?)?;
        let clouds = clouds_yaml()?;
        let pool = pool_of_a_cluster(
            &client,
            &namespace,
            "nestplane-quota",
            "nestplane.tiny",
            3,
            &clouds,
        )
        .await?;
        ready_false(&client, &pool, "QuotaExceeded", "Quota exceeded").await?;
        eventually(STEP, || async {
            let count = servers(&nova, &pool_tag(&pool)).await?.len();
            ensure!(count == 2, "{count} servers in a project that allows two");
            Ok(())
        })
        .await?;
        // Retried with backoff, never past the quota and never a leaked third server.
        tokio::time::sleep(Duration::from_secs(20)).await;
        ensure!(
            servers(&nova, &pool_tag(&pool)).await?.len() == 2,
            "not two servers any more"
        );
        delete_leaves_nothing(&client, &nova, &pool).await
    })
    .await
}

#[tokio::test]
async fn a_flavor_that_does_not_exist_creates_no_server() -> Result<()> {
    with_temp_namespace("np-flavor", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane")?)?;
        let clouds = clouds_yaml()?;
        let pool = pool_of_a_cluster(&client, &namespace, "nestplane", "no-such-flavor", 1, &clouds).await?;
        ready_false(&client, &pool, "FlavorNotFound", "no-such-flavor").await?;
        ensure!(
            servers(&nova, &pool_tag(&pool)).await?.is_empty(),
            "a server for a missing flavor"
        );
        delete_leaves_nothing(&client, &nova, &pool).await
    })
    .await
}

#[tokio::test]
async fn wrong_credentials_are_authentication_failed() -> Result<()> {
    with_temp_namespace("np-credentials", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane")?)?;
        let mut clouds: serde_yaml::Value = serde_yaml::from_str(&clouds_yaml()?)?;
        clouds["clouds"]["nestplane"]["auth"]["application_credential_secret"] = "not-the-secret".into();
        let clouds = serde_yaml::to_string(&clouds)?;
        let pool = pool_of_a_cluster(&client, &namespace, "nestplane", "nestplane.tiny", 1, &clouds).await?;
        ready_false(&client, &pool, "AuthenticationFailed", "401").await?;
        ensure!(
            servers(&nova, &pool_tag(&pool)).await?.is_empty(),
            "a server without credentials"
        );
        // The Worker cannot delete what it never created; with the credentials fixed it can go.
        let good = clouds_yaml()?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        secrets.delete("cloud", &DeleteParams::default()).await?;
        create_cloud_secret(&client, &namespace, "cloud", &good).await?;
        delete_leaves_nothing(&client, &nova, &pool).await
    })
    .await
}

#[tokio::test]
async fn a_deleted_cloud_secret_is_reported_on_the_pool() -> Result<()> {
    with_temp_namespace("np-secret", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane")?)?;
        let clouds = clouds_yaml()?;
        let pool = pool_of_a_cluster(&client, &namespace, "nestplane", "nestplane.tiny", 1, &clouds).await?;
        agree(&client, &nova, &pool, 1).await?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        secrets.delete("cloud", &DeleteParams::default()).await?;
        ready_false(
            &client,
            &pool,
            "CloudSecretInvalid",
            &format!("{namespace}/cloud"),
        )
        .await?;
        create_cloud_secret(&client, &namespace, "cloud", &clouds).await?;
        agree(&client, &nova, &pool, 1).await?;
        delete_leaves_nothing(&client, &nova, &pool).await
    })
    .await
}
