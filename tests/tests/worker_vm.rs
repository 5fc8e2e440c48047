//! A real worker, as a user would run one: a HostedCluster and a NodePool of two servers in the
//! test cloud's QEMU zone. Nova boots `nestplane-worker` with the operator's user-data,
//! cloud-init runs a stock `kubeadm join`, and the Nodes work: Ready with their provider IDs,
//! labels and taints, kubelet serving certificates from the hosted cluster, CoreDNS and
//! kube-proxy on them, pods reaching each other across nodes and a Service by its DNS name.
//! Losing a worker gets a replacement that joins; scaling to zero removes Nodes and servers.
//!
//! Slow by nature: guests run under software emulation (TCG) on this machine.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nestplane_api::{NodePool, Worker};
use nestplane_e2e::hosted::{self, admin_kubeconfig, eventually, hosted_client};
use nestplane_e2e::node_pools::{
    agree, create_cloud_secret, delete_leaves_nothing, pool, pool_tag, scale, servers,
};
use nestplane_e2e::openstack::{cloud_config, clouds_yaml};
use nestplane_e2e::with_temp_namespace;
use nestplane_openstack::Client as Nova;
use serde_json::json;

/// The image `make openstack-up` uploads and the flavor it creates for workers.
const IMAGE: &str = "nestplane-worker";
const FLAVOR: &str = "nestplane.worker";
const ZONE: &str = "nestplane-qemu";
const POOL: &str = "workers";
/// Boot under TCG, cloud-init, `kubeadm join`, and the node's pods starting.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(8 * 60);
/// The pool's label and taint, as a user would set them.
const POOL_LABEL: (&str, &str) = ("nestplane.io/e2e-pool", "workers");
const POOL_TAINT: (&str, &str, &str) = ("nestplane.io/e2e-workers", "true", "PreferNoSchedule");
/// The only image on the workers with a shell and an HTTP server (busybox): workers here cannot
/// pull, and the test uses what the node image preloads.
const WORKLOAD_IMAGE: &str = "ghcr.io/flannel-io/flannel:v0.28.10";

#[tokio::test]
async fn two_vms_join_run_pods_and_are_replaced_and_removed() -> Result<()> {
    with_temp_namespace("worker-vm", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane")?)?;
        let hc = hosted::create_available(&client, &hosted::sample(&namespace)?).await?;
        create_cloud_secret(&client, &namespace, "cloud", &clouds_yaml()?).await?;
        let created = Api::<NodePool>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &qemu_pool(&namespace, &hc.name_any())?)
            .await?;
        let hosted = hosted_client(&admin_kubeconfig(&client, &hc).await?).await?;

        // 1–2: both servers boot and join.
        let workers = agree(&client, &nova, &created, 2).await?;
        let nodes = nodes_ready(&hosted, &workers).await?;
        check_registration(&nodes, &workers)?;
        check_serving_certificates(&hosted, &hc_ca(&client, &hc).await?, &nodes).await?;

        // 3: the node's own pods, then a workload spread over both nodes.
        system_pods_on(&hosted, &nodes).await?;
        pods_reach_each_other(&hosted, &nodes).await?;

        // 4: a lost worker is replaced by one that joins.
        let gone = workers[0].name_any();
        Api::<Worker>::namespaced(client.clone(), &namespace)
            .delete(&gone, &DeleteParams::default())
            .await?;
        let replaced = eventually(JOIN_TIMEOUT, || async {
            let workers = agree(&client, &nova, &created, 2).await?;
            ensure!(
                workers.iter().all(|w| w.name_any() != gone),
                "{gone} is still a worker"
            );
            Ok(workers)
        })
        .await?;
        let nodes = nodes_ready(&hosted, &replaced).await?;
        ensure!(
            !nodes.iter().any(|n| n.name_any() == gone),
            "the deleted worker's Node {gone} is still registered"
        );

        // Scaling to zero drains and deletes the Nodes and the servers.
        scale(&client, &namespace, POOL, 0).await?;
        agree(&client, &nova, &created, 0).await?;
        let nodes: Api<Node> = Api::all(hosted.clone());
        eventually(WORKLOAD_TIMEOUT, || async {
            let left: Vec<String> = nodes
                .list(&ListParams::default())
                .await?
                .iter()
                .map(|n| n.name_any())
                .collect();
            ensure!(left.is_empty(), "Nodes left: {left:?}");
            Ok(())
        })
        .await?;
        ensure!(
            servers(&nova, &pool_tag(&created)).await?.is_empty(),
            "servers left after scaling to zero"
        );
        delete_leaves_nothing(&client, &nova, &created).await
    })
    .await
}

fn qemu_pool(namespace: &str, cluster: &str) -> Result<NodePool> {
    let mut pool = pool(namespace, POOL, cluster, "nestplane", FLAVOR, 2)?;
    pool.spec.openstack.image = IMAGE.into();
    pool.spec.openstack.availability_zone = Some(ZONE.into());
    pool.spec.node_labels = BTreeMap::from([(POOL_LABEL.0.into(), POOL_LABEL.1.into())]);
    pool.spec.node_taints = vec![serde_json::from_value(json!({
        "key": POOL_TAINT.0, "value": POOL_TAINT.1, "effect": POOL_TAINT.2,
    }))?];
    Ok(pool)
}

/// Waits until exactly the workers' Nodes are registered and Ready.
async fn nodes_ready(hosted: &Client, workers: &[Worker]) -> Result<Vec<Node>> {
    let want: BTreeSet<String> = workers.iter().map(ResourceExt::name_any).collect();
    let api: Api<Node> = Api::all(hosted.clone());
    eventually(JOIN_TIMEOUT, || async {
        let nodes = api.list(&ListParams::default()).await?.items;
        let names: BTreeSet<String> = nodes.iter().map(ResourceExt::name_any).collect();
        ensure!(names == want, "Nodes {names:?}, workers {want:?}");
        for node in &nodes {
            ensure!(node_ready(node), "{} is not Ready", node.name_any());
        }
        Ok(nodes)
    })
    .await
    .context("the workers' Nodes becoming Ready")
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Each Node has its server's provider ID and the pool's label and taint.
fn check_registration(nodes: &[Node], workers: &[Worker]) -> Result<()> {
    for node in nodes {
        let worker = workers
            .iter()
            .find(|w| w.name_any() == node.name_any())
            .ok_or_else(|| anyhow!("no worker for Node {}", node.name_any()))?;
        let server = worker
            .status
            .as_ref()
            .and_then(|s| s.server_id.clone())
            .ok_or_else(|| anyhow!("{} has no server ID", worker.name_any()))?;
        let spec = node.spec.clone().unwrap_or_default();
        ensure!(
            spec.provider_id.as_deref() == Some(format!("openstack:///{server}").as_str()),
            "{}: providerID {:?}, server {server}",
            node.name_any(),
            spec.provider_id
        );
        ensure!(
            node.labels().get(POOL_LABEL.0).map(String::as_str) == Some(POOL_LABEL.1),
            "{} lacks the pool's label: {:?}",
            node.name_any(),
            node.labels()
        );
        let tainted = spec.taints.unwrap_or_default().iter().any(|t| {
            t.key == POOL_TAINT.0 && t.value.as_deref() == Some(POOL_TAINT.1) && t.effect == POOL_TAINT.2
        });
        ensure!(tainted, "{} lacks the pool's taint", node.name_any());
    }
    Ok(())
}

/// The hosted cluster's CA, as its admin kubeconfig names it.
async fn hc_ca(client: &Client, hc: &nestplane_api::HostedCluster) -> Result<Vec<u8>> {
    let kubeconfig: serde_yaml::Value = serde_yaml::from_str(&admin_kubeconfig(client, hc).await?)?;
    let data = kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .ok_or_else(|| anyhow!("the admin kubeconfig has no CA"))?;
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.decode(data)?)
}

/// Each kubelet serves a certificate issued through the hosted cluster's CSR API: its CSR was
/// approved and signed, and a TLS client that trusts only the hosted CA accepts the kubelet's
/// port at the Node's address.
async fn check_serving_certificates(hosted: &Client, ca_pem: &[u8], nodes: &[Node]) -> Result<()> {
    let csrs: Api<CertificateSigningRequest> = Api::all(hosted.clone());
    let tls = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem)?)
        .timeout(Duration::from_secs(20))
        .build()?;
    for node in nodes {
        let name = node.name_any();
        eventually(WORKLOAD_TIMEOUT, || async {
            let issued = csrs
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .any(|csr| {
                    csr.spec.signer_name == "kubernetes.io/kubelet-serving"
                        && csr.spec.username.as_deref() == Some(format!("system:node:{name}").as_str())
                        && csr.status.as_ref().is_some_and(|s| s.certificate.is_some())
                });
            ensure!(issued, "no issued kubelet-serving CSR for {name}");
            Ok(())
        })
        .await?;
        let address = internal_ip(node)?;
        // An anonymous request is refused (401/403) by a kubelet that completed the handshake.
        let answer = eventually(WORKLOAD_TIMEOUT, || async {
            Ok(tls
                .get(format!("https://{address}:10250/healthz"))
                .send()
                .await?
                .status())
        })
        .await
        .with_context(|| format!("TLS to {name}'s kubelet at {address} with only the hosted CA"))?;
        ensure!(
            answer.is_client_error(),
            "{name}'s kubelet answered an anonymous request with {answer}"
        );
    }
    Ok(())
}

fn internal_ip(node: &Node) -> Result<String> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .ok_or_else(|| anyhow!("{} has no InternalIP", node.name_any()))
}

/// kube-proxy and flannel run on every worker, CoreDNS is available on them.
async fn system_pods_on(hosted: &Client, nodes: &[Node]) -> Result<()> {
    let names: BTreeSet<String> = nodes.iter().map(ResourceExt::name_any).collect();
    for (namespace, daemon_set) in [("kube-system", "kube-proxy"), ("kube-flannel", "kube-flannel-ds")] {
        let api: Api<DaemonSet> = Api::namespaced(hosted.clone(), namespace);
        eventually(WORKLOAD_TIMEOUT, || async {
            let status = api.get(daemon_set).await?.status.unwrap_or_default();
            ensure!(
                status.desired_number_scheduled == names.len() as i32
                    && status.number_ready == names.len() as i32,
                "{daemon_set}: {} of {} ready",
                status.number_ready,
                status.desired_number_scheduled
            );
            Ok(())
        })
        .await?;
    }
    let deployments: Api<Deployment> = Api::namespaced(hosted.clone(), "kube-system");
    eventually(WORKLOAD_TIMEOUT, || async {
        let status = deployments.get("coredns").await?.status.unwrap_or_default();
        ensure!(
            status.available_replicas.unwrap_or(0) >= 1,
            "coredns: {:?} available",
            status.available_replicas
        );
        Ok(())
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(hosted.clone(), "kube-system");
    let on_workers = pods
        .list(&ListParams::default().labels("k8s-app=kube-dns"))
        .await?
        .items
        .into_iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .is_some_and(|n| names.contains(&n))
        })
        .count();
    ensure!(on_workers >= 1, "no CoreDNS pod on the workers");
    Ok(())
}

/// A Deployment of two web servers, one per node, and a Service; a client on one node fetches
/// from the pod on the other by pod IP, and from the Service by its DNS name.
async fn pods_reach_each_other(hosted: &Client, nodes: &[Node]) -> Result<()> {
    let namespace = "default";
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
                        { "labelSelector": { "matchLabels": { "app": "web" } }, "topologyKey": "kubernetes.io/hostname" }
                    ] } },
                    "containers": [{
                        "name": "web", "image": WORKLOAD_IMAGE, "imagePullPolicy": "Never",
                        "command": ["/bin/sh", "-c",
                            "mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"],
                        "ports": [{ "containerPort": 8080 }],
                        "readinessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 2 },
                    }],
                },
            },
        },
    }))?;
    Api::<Deployment>::namespaced(hosted.clone(), namespace)
        .create(&PostParams::default(), &deployment)
        .await?;
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80, "targetPort": 8080 }] },
    }))?;
    Api::<Service>::namespaced(hosted.clone(), namespace)
        .create(&PostParams::default(), &service)
        .await?;

    let pods: Api<Pod> = Api::namespaced(hosted.clone(), namespace);
    let web = eventually(WORKLOAD_TIMEOUT, || async {
        let web: Vec<Pod> = pods
            .list(&ListParams::default().labels("app=web"))
            .await?
            .items
            .into_iter()
            .filter(|p| nestplane_e2e::pod_ready(Some(p)))
            .collect();
        ensure!(web.len() == 2, "{} web pods ready", web.len());
        Ok(web)
    })
    .await?;
    let placed: BTreeSet<String> = web
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    let all: BTreeSet<String> = nodes.iter().map(ResourceExt::name_any).collect();
    ensure!(placed == all, "web pods on {placed:?}, nodes {all:?}");

    // The client runs beside web[0] and fetches web[1] across the pod network.
    let (here, there) = (&web[0], &web[1]);
    let node = here
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .context("web[0] node")?;
    let there_ip = there
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("web[1] pod IP")?;
    // busybox from Debian's busybox-static: its wget crashes in glibc's static resolver, so the
    // client resolves with nslookup (busybox's own resolver) and speaks HTTP through nc.
    let fetch = format!(
        "set -e; get() {{ printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 \"$1\" \"$2\" | tail -n 1; }}; \
         a=$(get {there_ip} 8080); \
         ip=$(nslookup web.{namespace}.svc.cluster.local | awk '/^Address: / {{print $2}}' | tail -n 1); \
         b=$(get \"$ip\" 80); \
         echo \"$a $b $ip\" > /dev/termination-log"
    );
    let client_pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "client" },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{
                "name": "client", "image": WORKLOAD_IMAGE, "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", fetch],
            }],
        },
    }))?;
    pods.create(&PostParams::default(), &client_pod).await?;
    let finished = eventually(WORKLOAD_TIMEOUT, || async {
        let pod = pods.get("client").await?;
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        match phase.as_str() {
            "Succeeded" | "Failed" => Ok(pod),
            other => bail!("client pod is {other}"),
        }
    })
    .await?;
    let status = finished.status.clone().unwrap_or_default();
    let terminated = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .find_map(|c| c.state?.terminated)
        .ok_or_else(|| anyhow!("the client container has not terminated"))?;
    ensure!(
        status.phase.as_deref() == Some("Succeeded"),
        "the client on {node} could not reach {} at {there_ip} and the Service: exit {}, {:?}",
        there.name_any(),
        terminated.exit_code,
        terminated.message
    );
    let answers = terminated.message.unwrap_or_default();
    let mut words = answers.split_whitespace();
    let (by_ip, by_service, resolved) = (words.next(), words.next(), words.next());
    ensure!(
        by_ip == Some(there.name_any().as_str()),
        "{there_ip} answered {by_ip:?}, not {}",
        there.name_any()
    );
    let cluster_ip = Api::<Service>::namespaced(hosted.clone(), namespace)
        .get("web")
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .context("the web Service has no ClusterIP")?;
    ensure!(
        resolved == Some(cluster_ip.as_str()),
        "web.{namespace}.svc.cluster.local resolved to {resolved:?}, the Service's ClusterIP is {cluster_ip}"
    );
    let web_names: BTreeSet<String> = web.iter().map(ResourceExt::name_any).collect();
    ensure!(
        by_service.is_some_and(|name| web_names.contains(name)),
        "the Service answered {by_service:?}, not one of {web_names:?}"
    );
    Ok(())
}
