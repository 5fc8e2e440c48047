//! NodePools with `openstack.rootVolume` against the real operator and the test cloud (Nova's fake
//! host, Cinder): each server boots from a Cinder volume made from the pool's image, of the asked
//! size and type, and deleting the pool leaves neither server nor volume. A volume type Cinder
//! does not know is a clear condition, and no server is left half-made.

use anyhow::{Context, Result, anyhow, ensure};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use nestplane_api::NodePool;
use nestplane_e2e::hosted::{self, eventually};
use nestplane_e2e::node_pools::{
    STEP, agree, create_cloud_secret, delete_leaves_nothing, pool, pool_tag, ready_false, servers,
};
use nestplane_e2e::openstack::{cloud_config, clouds_yaml, volume};
use nestplane_e2e::with_temp_namespace;
use nestplane_openstack::{Client as Nova, Compute};
use serde_json::json;

const IMAGE: &str = "nestplane-tiny";

/// A pool of an Available cluster in `namespace` whose one server boots from a 2 GiB volume of
/// `volume_type`.
async fn volume_pool(client: &Client, namespace: &str, volume_type: &str) -> Result<NodePool> {
    let hc = hosted::create_available(client, &hosted::sample(namespace)?).await?;
    create_cloud_secret(client, namespace, "cloud", &clouds_yaml()?).await?;
    let mut spec = pool(
        namespace,
        "boot-from-volume",
        &hc.name_any(),
        "nestplane",
        "nestplane.tiny",
        1,
    )?;
    spec.spec.openstack.image = IMAGE.into();
    spec.spec.openstack.root_volume = Some(serde_json::from_value(
        json!({ "sizeGiB": 2, "volumeType": volume_type }),
    )?);
    Ok(Api::<NodePool>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &spec)
        .await?)
}

#[tokio::test]
async fn workers_boot_from_a_volume_of_the_asked_size_and_type_that_goes_with_the_pool() -> Result<()> {
    with_temp_namespace("np-root-volume", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane")?)?;
        let pool = volume_pool(&client, &namespace, "nestplane-standard").await?;
        let workers = agree(&client, &nova, &pool, 1).await?;
        let server_id = workers[0]
            .status
            .as_ref()
            .and_then(|s| s.server_id.clone())
            .context("the worker records no server")?;
        let server = nova.get_server(&server_id).await?.context("the server is gone")?;
        let [volume_id] = server.volume_ids.as_slice() else {
            return Err(anyhow!(
                "server {server_id} has volumes {:?}, not one",
                server.volume_ids
            ));
        };
        let shown = volume("nestplane", volume_id)
            .await?
            .with_context(|| format!("Cinder does not know volume {volume_id}"))?;
        ensure!(
            shown["size"] == json!(2) && shown["type"] == json!("nestplane-standard"),
            "volume {volume_id}: {shown}"
        );
        ensure!(
            shown["status"] == json!("in-use") && shown["bootable"] == json!(true),
            "volume {volume_id} is not an attached boot volume: {shown}"
        );
        ensure!(
            shown["volume_image_metadata"]["image_name"] == json!(IMAGE),
            "volume {volume_id} was not made from {IMAGE}: {shown}"
        );
        let attached_to = shown["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["server_id"].as_str())
            .collect::<Vec<_>>();
        ensure!(attached_to == [server_id.as_str()], "attachments: {shown}");

        delete_leaves_nothing(&client, &nova, &pool).await?;
        eventually(STEP, || async {
            let left = volume("nestplane", volume_id).await?;
            ensure!(left.is_none(), "volume {volume_id} outlived its server: {left:?}");
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test]
async fn an_unknown_volume_type_is_reported_and_no_server_is_made() -> Result<()> {
    with_temp_namespace("np-volume-type", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane")?)?;
        let pool = volume_pool(&client, &namespace, "nestplane-no-such-type").await?;
        ready_false(&client, &pool, "VolumeTypeNotFound", "nestplane-no-such-type").await?;
        let made = servers(&nova, &pool_tag(&pool)).await?;
        ensure!(made.is_empty(), "servers made for a pool Nova refuses: {made:?}");
        delete_leaves_nothing(&client, &nova, &pool).await
    })
    .await
}
