//! The pod network inside a hosted cluster: once a NodePool exists, flannel (VXLAN over the
//! cluster's pod CIDR) is there for workers to run, and a cluster with `network.cni: none` gets
//! none. No server is needed: the pools have no replicas.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use nestplane_api::{Cni, HostedCluster, NodePool};
use nestplane_e2e::hosted::{admin_kubeconfig, create_available, eventually, hosted_client, sample};
use nestplane_e2e::openstack::DEFAULT_CLOUDS_YAML;
use nestplane_e2e::with_temp_namespace;
use serde_json::{Value, json};

/// Not the default, so that the test sees the spec's value and not a fallback.
const POD_CIDR: &str = "10.200.0.0/16";
const ADDONS_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test]
async fn flannel_carries_the_cluster_s_pod_cidr_over_vxlan() -> Result<()> {
    with_temp_namespace("np-pod-network", |client, ns| async move {
        let mut hc = sample(&ns)?;
        hc.spec.network.pod_cidr = POD_CIDR.to_string();
        let hc = create_available(&client, &hc).await?;
        create_empty_pool(&client, &ns, &hc).await?;
        let hosted = hosted_client(&admin_kubeconfig(&client, &hc).await?).await?;

        let config_maps: Api<ConfigMap> = Api::namespaced(hosted.clone(), "kube-flannel");
        let config = eventually(ADDONS_TIMEOUT, || async {
            Ok(config_maps.get("kube-flannel-cfg").await?)
        })
        .await?;
        let data = config.data.unwrap_or_default();
        let net_conf: Value = serde_json::from_str(data.get("net-conf.json").context("net-conf.json")?)?;
        ensure!(net_conf["Network"] == POD_CIDR, "net-conf.json: {net_conf}");
        ensure!(
            net_conf["Backend"]["Type"] == "vxlan",
            "net-conf.json: {net_conf}"
        );
        let cni_conf: Value = serde_json::from_str(data.get("cni-conf.json").context("cni-conf.json")?)?;
        let bridge = &cni_conf["plugins"][0];
        ensure!(
            bridge["type"] == "bridge" && bridge["ipam"]["type"] == "host-local",
            "cni-conf.json does not use the standard plugins: {cni_conf}"
        );
        ensure!(
            bridge["ipam"]["routes"][0]["dst"] == POD_CIDR,
            "pods get no route to the pod CIDR: {cni_conf}"
        );

        let daemon_sets: Api<DaemonSet> = Api::namespaced(hosted.clone(), "kube-flannel");
        let daemon_set = eventually(ADDONS_TIMEOUT, || async {
            Ok(daemon_sets.get("kube-flannel-ds").await?)
        })
        .await?;
        ensure!(
            daemon_set
                .labels()
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some("nestplane"),
            "the DaemonSet is not labelled as nestplane's: {:?}",
            daemon_set.labels()
        );
        let pod = daemon_set
            .spec
            .and_then(|s| s.template.spec)
            .ok_or_else(|| anyhow!("DaemonSet without a pod spec"))?;
        ensure!(
            pod.host_network == Some(true),
            "flanneld is not on the node's network"
        );
        let tolerates_all = pod
            .tolerations
            .unwrap_or_default()
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none());
        ensure!(tolerates_all, "flanneld does not tolerate every taint");
        let flanneld = pod
            .containers
            .iter()
            .find(|c| c.name == "kube-flannel")
            .ok_or_else(|| anyhow!("no kube-flannel container"))?;
        let image = flanneld.image.clone().unwrap_or_default();
        ensure!(
            image.starts_with("ghcr.io/flannel-io/flannel:v0.28."),
            "flanneld image {image}"
        );
        // flanneld talks to the hosted API at the endpoint workers use, not the Service.
        let endpoint = hc
            .status
            .as_ref()
            .and_then(|s| s.endpoint.clone())
            .ok_or_else(|| anyhow!("no status.endpoint"))?;
        let env = flanneld.env.clone().unwrap_or_default();
        let host = env
            .iter()
            .find(|e| e.name == "KUBERNETES_SERVICE_HOST")
            .and_then(|e| e.value.clone())
            .ok_or_else(|| anyhow!("flanneld has no KUBERNETES_SERVICE_HOST"))?;
        ensure!(
            endpoint.contains(&host),
            "flanneld reaches {host}, the endpoint is {endpoint}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_cluster_that_brings_its_own_cni_gets_no_flannel() -> Result<()> {
    with_temp_namespace("np-own-cni", |client, ns| async move {
        let mut hc = sample(&ns)?;
        hc.spec.network.cni = Cni::None;
        let hc = create_available(&client, &hc).await?;
        create_empty_pool(&client, &ns, &hc).await?;
        let hosted = hosted_client(&admin_kubeconfig(&client, &hc).await?).await?;

        // The other add-ons arrive in the same pass: once kube-proxy is there, flannel would be.
        let kube_proxy: Api<DaemonSet> = Api::namespaced(hosted.clone(), "kube-system");
        eventually(ADDONS_TIMEOUT, || async {
            Ok(kube_proxy.get("kube-proxy").await?)
        })
        .await?;
        let flannel: Api<DaemonSet> = Api::namespaced(hosted, "kube-flannel");
        let found = flannel.get_opt("kube-flannel-ds").await?;
        ensure!(
            found.is_none(),
            "network.cni is none, yet flannel's DaemonSet is there"
        );
        Ok(())
    })
    .await
}

/// A NodePool of no servers for `hc`, with the test cloud's credentials in a Secret.
async fn create_empty_pool(client: &Client, ns: &str, hc: &HostedCluster) -> Result<NodePool> {
    let clouds_path =
        std::env::var("NESTPLANE_E2E_CLOUDS_YAML").unwrap_or_else(|_| DEFAULT_CLOUDS_YAML.into());
    let clouds = std::fs::read_to_string(&clouds_path)
        .with_context(|| format!("no test cloud at {clouds_path}: start it with `make openstack-up`"))?;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "cloud" },
        "stringData": { "clouds.yaml": clouds },
    }))?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await?;
    let pool: NodePool = serde_json::from_value(json!({
        "apiVersion": "nestplane.io/v1alpha1",
        "kind": "NodePool",
        "metadata": { "name": "workers" },
        "spec": {
            "clusterName": hc.name_any(),
            "replicas": 0,
            "openstack": {
                "cloudSecretRef": { "name": "cloud" },
                "cloud": "nestplane",
                "flavor": "nestplane.tiny",
                "image": "nestplane-tiny",
                "networks": ["nestplane-net"],
                "availabilityZone": "nestplane-fake",
            },
        },
    }))?;
    Ok(Api::<NodePool>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pool)
        .await?)
}
