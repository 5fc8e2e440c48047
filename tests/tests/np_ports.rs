//! NodePools with `openstack.ports` against the real operator and the test cloud: each worker's
//! server boots on a Neutron port of its own, on the asked subnet, and deleting the pool leaves
//! no port. A fixed address with more than one replica is refused at admission.

use anyhow::{Context, Result, ensure};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use nestplane_api::NodePool;
use nestplane_e2e::hosted;
use nestplane_e2e::node_pools::{agree, create_cloud_secret, delete_leaves_nothing, pool, pool_tag};
use nestplane_e2e::openstack::{cloud_config, clouds_yaml};
use nestplane_e2e::with_temp_namespace;
use nestplane_openstack::{Client as Nova, Compute};
use serde_json::json;

const NETWORK: &str = "nestplane-net";
const SUBNET: &str = "nestplane-subnet";

/// `pool` with one port on `SUBNET` (at `address` when given) instead of `networks`.
fn with_port(mut pool: NodePool, address: Option<&str>) -> Result<NodePool> {
    let mut fixed = json!({ "subnet": SUBNET });
    if let Some(address) = address {
        fixed["ipAddress"] = json!(address);
    }
    pool.spec.openstack.networks.clear();
    pool.spec.openstack.ports = vec![serde_json::from_value(
        json!({ "network": NETWORK, "fixedIps": [fixed] }),
    )?];
    Ok(pool)
}

#[tokio::test]
async fn workers_boot_on_their_own_port_on_the_asked_subnet_and_leave_no_port() -> Result<()> {
    with_temp_namespace("np-ports", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane")?)?;
        let hc = hosted::create_available(&client, &hosted::sample(&namespace)?).await?;
        create_cloud_secret(&client, &namespace, "cloud", &clouds_yaml()?).await?;
        let spec = with_port(
            pool(
                &namespace,
                "ported",
                &hc.name_any(),
                "nestplane",
                "nestplane.tiny",
                2,
            )?,
            None,
        )?;
        let pool = Api::<NodePool>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &spec)
            .await?;
        let workers = agree(&client, &nova, &pool, 2).await?;

        let subnet = nova
            .find_subnet(&nova.find_network(NETWORK).await?, SUBNET)
            .await?;
        let ports = nova.list_ports_by_tag(&pool_tag(&pool)).await?;
        ensure!(ports.len() == 2, "the pool's ports: {ports:?}");
        for worker in &workers {
            let status = worker.status.clone().unwrap_or_default();
            let port = ports
                .iter()
                .find(|p| p.device_id == status.server_id)
                .with_context(|| format!("{}'s server has none of {ports:?}", worker.name_any()))?;
            ensure!(port.name == format!("{}-0", worker.name_any()), "port {port:?}");
            let on_subnet: Vec<&String> = port
                .fixed_ips
                .iter()
                .filter(|ip| ip.subnet_id == subnet)
                .filter_map(|ip| ip.ip_address.as_ref())
                .collect();
            ensure!(
                on_subnet.len() == 1 && status.addresses.iter().collect::<Vec<_>>() == on_subnet,
                "{} has addresses {:?}; its port {port:?}",
                worker.name_any(),
                status.addresses
            );
        }
        delete_leaves_nothing(&client, &nova, &pool).await
    })
    .await
}

#[tokio::test]
async fn a_fixed_address_is_refused_for_more_than_one_worker() -> Result<()> {
    with_temp_namespace("np-ports-fixed", |client, namespace| async move {
        let api = Api::<NodePool>::namespaced(client.clone(), &namespace);
        let base = |replicas| {
            pool(
                &namespace,
                "pinned",
                "demo",
                "nestplane",
                "nestplane.tiny",
                replicas,
            )
        };
        let mut two = with_port(base(2)?, Some("172.31.250.248"))?;
        two.spec.management.max_surge = 0;
        two.spec.management.max_unavailable = 1;
        let mut surging = with_port(base(1)?, Some("172.31.250.248"))?;
        surging.spec.management.max_surge = 1;
        for refused in [two, surging.clone()] {
            let error = api
                .create(
                    &PostParams {
                        dry_run: true,
                        ..PostParams::default()
                    },
                    &refused,
                )
                .await
                .err()
                .context("a fixed address for more than one worker at a time was admitted")?;
            ensure!(
                error
                    .to_string()
                    .contains("replicas <= 1 and management.maxSurge 0"),
                "refused for another reason: {error}"
            );
        }
        let mut one = surging;
        one.spec.management.max_surge = 0;
        one.spec.management.max_unavailable = 1;
        // No cluster `demo` here: the pool only waits, and no port is made.
        api.create(&PostParams::default(), &one).await?;
        let scaled = api
            .patch_scale(
                "pinned",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "replicas": 2 } })),
            )
            .await;
        ensure!(
            scaled.is_err(),
            "kubectl scale to 2 with a fixed address was admitted"
        );
        Ok(())
    })
    .await
}
