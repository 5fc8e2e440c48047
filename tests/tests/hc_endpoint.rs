//! The NodePort endpoint does not flap: a new node that sorts first, or the endpoint's node
//! being cordoned or NotReady, leaves the endpoint, the kubeconfigs handed out and the
//! certificates as they are; `spec.apiServer.service.address` is the endpoint when set.
//!
//! Both cases add a fake Node to the management cluster, and the first cordons the real one:
//! they take a lock so they never overlap, and undo both in every case.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Endpoints, Node, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nestplane_api::HostedCluster;
use nestplane_e2e::hosted::{
    admin_kubeconfig, create_available, eventually, hosted_client, readyz, reconciled_again, sample,
};
use nestplane_e2e::with_temp_namespace;
use serde_json::json;
use tokio::sync::Mutex;

/// The management cluster's nodes are shared by both cases.
static NODES: Mutex<()> = Mutex::const_new(());
/// An address from TEST-NET-1 (RFC 5737): nothing answers there.
const FAKE_NODE_IP: &str = "192.0.2.251";

#[tokio::test]
async fn endpoint_stays_when_a_node_sorting_first_appears_and_its_node_is_cordoned() -> Result<()> {
    let _nodes = NODES.lock().await;
    with_temp_namespace("hc-endpoint", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();
        let endpoint = endpoint(&hc)?;
        let host = url_host(&endpoint)?;
        let kubeconfig = admin_kubeconfig(&client, &hc).await?;
        let secrets_before = secret_versions(&client, &ns, &name).await?;
        let node = node_with_internal_ip(&client, &host).await?;

        let fake = "aaa-e2e-fake-endpoint";
        let (client_, node_) = (client.clone(), node.clone());
        with_node_changes(&client, fake, Some(&node), async move {
            create_ready_fake_node(&client_, fake).await?;
            set_unschedulable(&client_, &node_, true).await?;
            // The fake node is Ready for about 40 s before the node lifecycle controller marks
            // it unknown: the pass must come while it is the first Ready node by name.
            let after = reconciled_again(&client_, &ns, &name).await?;
            ensure!(
                endpoint_of(&after) == Some(endpoint.clone()),
                "the endpoint moved from {endpoint} to {:?}",
                endpoint_of(&after)
            );
            let kubeconfig_after = admin_kubeconfig(&client_, &after).await?;
            ensure!(
                server_of(&kubeconfig_after)? == server_of(&kubeconfig)?,
                "the admin kubeconfig's server changed from {} to {}",
                server_of(&kubeconfig)?,
                server_of(&kubeconfig_after)?
            );
            let secrets_after = secret_versions(&client_, &ns, &name).await?;
            ensure!(
                secrets_after == secrets_before,
                "Secrets were rewritten (certificates reissued?): before {secrets_before:?}, \
                 after {secrets_after:?}"
            );
            // The kubeconfig handed out before still works.
            let hosted = hosted_client(&kubeconfig).await?;
            let answer = eventually(Duration::from_secs(60), || async { readyz(&hosted).await }).await?;
            ensure!(
                answer.trim() == "ok",
                "/readyz with the earlier kubeconfig: {answer}"
            );
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test]
async fn the_configured_address_is_the_endpoint_and_is_advertised() -> Result<()> {
    let _nodes = NODES.lock().await;
    with_temp_namespace("hc-address", |client, ns| async move {
        // A real node's address, so the endpoint works; a fake Ready node that sorts first
        // would be chosen without the setting.
        let address = first_ready_node_ip(&client).await?;
        let fake = "aaa-e2e-fake-address";
        let client_ = client.clone();
        with_node_changes(&client, fake, None, async move {
            create_ready_fake_node(&client_, fake).await?;
            let mut wanted = sample(&ns)?;
            wanted.spec.api_server.service.address = Some(address.clone());
            let hc = create_available(&client_, &wanted).await?;
            let endpoint = endpoint(&hc)?;
            ensure!(
                url_host(&endpoint)? == address,
                "endpoint {endpoint}, configured address {address}"
            );
            let kubeconfig = admin_kubeconfig(&client_, &hc).await?;
            ensure!(
                url_host(&server_of(&kubeconfig)?)? == address,
                "the admin kubeconfig's server is {}",
                server_of(&kubeconfig)?
            );
            // The hosted `kubernetes` Service points where workers can reach the API server.
            let hosted = hosted_client(&kubeconfig).await?;
            let endpoints = Api::<Endpoints>::namespaced(hosted, "default")
                .get("kubernetes")
                .await?;
            let advertised: Vec<String> = endpoints
                .subsets
                .unwrap_or_default()
                .into_iter()
                .flat_map(|s| s.addresses.unwrap_or_default())
                .map(|a| a.ip)
                .collect();
            ensure!(
                advertised == vec![address.clone()],
                "the hosted kubernetes Service's endpoints are {advertised:?}, not [{address}]"
            );
            Ok(())
        })
        .await
    })
    .await
}

/// Runs `case`, then deletes the fake node and makes the `cordoned` one schedulable again,
/// whether the case passed, failed or panicked.
async fn with_node_changes(
    client: &Client,
    fake: &str,
    cordoned: Option<&str>,
    case: impl Future<Output = Result<()>>,
) -> Result<()> {
    let outcome = AssertUnwindSafe(case).catch_unwind().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let deleted = match nodes.delete(fake, &DeleteParams::default()).await {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other.map(|_| ()),
    };
    let uncordoned = match cordoned {
        Some(node) => set_unschedulable(client, node, false)
            .await
            .with_context(|| format!("uncordoning {node}")),
        None => Ok(()),
    };
    let result = match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    result?;
    deleted.with_context(|| format!("deleting the fake node {fake}"))?;
    uncordoned
}

/// A Node with no kubelet behind it, Ready and with an InternalIP (status goes through the
/// status subresource, as a kubelet would write it).
async fn create_ready_fake_node(client: &Client, name: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "nestplane.io/e2e": "true" } }
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({ "status": {
        "addresses": [{ "type": "InternalIP", "address": FAKE_NODE_IP }],
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake",
            "lastHeartbeatTime": now, "lastTransitionTime": now
        }]
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// `kubectl cordon` (true) or `kubectl uncordon` (false).
async fn set_unschedulable(client: &Client, name: &str, unschedulable: bool) -> Result<()> {
    let patch = json!({ "spec": { "unschedulable": unschedulable } });
    Api::<Node>::all(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn node_with_internal_ip(client: &Client, ip: &str) -> Result<String> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    nodes
        .items
        .iter()
        .find(|n| internal_ip(n).as_deref() == Some(ip))
        .map(|n| n.name_any())
        .ok_or_else(|| anyhow!("no node has the endpoint's address {ip}"))
}

async fn first_ready_node_ip(client: &Client) -> Result<String> {
    let mut nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    nodes.sort_by_key(|n| n.name_any());
    nodes
        .iter()
        .filter(|n| {
            n.status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .find_map(internal_ip)
        .ok_or_else(|| anyhow!("no Ready node with an InternalIP"))
}

fn internal_ip(node: &Node) -> Option<String> {
    node.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
}

/// resourceVersion of every Secret of the cluster, by name.
async fn secret_versions(client: &Client, ns: &str, name: &str) -> Result<BTreeMap<String, String>> {
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
    let secrets = Api::<Secret>::namespaced(client.clone(), ns)
        .list(&selector)
        .await?;
    ensure!(!secrets.items.is_empty(), "the cluster has no Secrets");
    Ok(secrets
        .items
        .iter()
        .map(|s| (s.name_any(), s.resource_version().unwrap_or_default()))
        .collect())
}

fn endpoint_of(hc: &HostedCluster) -> Option<String> {
    hc.status.as_ref().and_then(|s| s.endpoint.clone())
}

fn endpoint(hc: &HostedCluster) -> Result<String> {
    endpoint_of(hc).ok_or_else(|| anyhow!("status.endpoint is not set"))
}

fn url_host(url: &str) -> Result<String> {
    let uri: http::Uri = url.parse().with_context(|| format!("parsing {url}"))?;
    uri.host()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{url} has no host"))
}

/// The server URL of a kubeconfig's first cluster.
fn server_of(kubeconfig: &str) -> Result<String> {
    let config = kube::config::Kubeconfig::from_yaml(kubeconfig)?;
    config
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .ok_or_else(|| anyhow!("the kubeconfig names no server"))
}
