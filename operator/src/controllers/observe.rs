//! Reads a reconcile needs before it builds anything: where the API server is reached, what the
//! workloads look like, and whether the hosted API answers /readyz.
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::cache::Cache;
use super::hosted_clients::HostedClients;
use super::status::WorkloadState;
use crate::api::{ApiServerServiceType, HostedCluster};
use crate::builders::{self, APISERVER_SERVICE_PORT, Component, Endpoint, Workload, WorkloadKind, tunnel};
use crate::error::{Error, KubeContext, Result};

/// Where the API server is reached, once that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointObservation {
    Known {
        endpoint: Endpoint,
        /// Port kube-apiserver listens on (the node port, for NodePort).
        apiserver_port: i32,
        /// Address kube-apiserver advertises to the hosted cluster.
        advertise_address: Option<String>,
        /// Where tunnel agents dial: the endpoint's host and the tunnel's port (its node port,
        /// for NodePort), when the Service has one.
        tunnel: Option<Endpoint>,
    },
    /// Not known yet; the message says why and what to do.
    Pending(String),
}

/// Reads the endpoint from the applied API server Service (and, for NodePort, the nodes).
pub async fn observe_endpoint(
    client: &kube::Client,
    cache: &Cache,
    hc: &HostedCluster,
    service: &Service,
) -> Result<EndpointObservation> {
    let spec = service.spec.clone().unwrap_or_default();
    let ports = spec.ports.clone().unwrap_or_default();
    let port = ports.first().cloned().unwrap_or_default();
    let tunnel_port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some(tunnel::AGENT_PORT_NAME))
        .and_then(|p| match hc.spec.api_server.service.type_ {
            ApiServerServiceType::NodePort => p.node_port,
            _ => Some(p.port),
        });
    let observation = match hc.spec.api_server.service.type_ {
        ApiServerServiceType::NodePort => {
            let node_port = port
                .node_port
                .ok_or(Error::MissingField("spec.ports[0].nodePort"))?;
            let (host, advertise_address) = node_port_host(client, cache, hc)
                .await?
                .ok_or(Error::NoNodeAddress(node_port))?;
            EndpointObservation::Known {
                endpoint: Endpoint {
                    host,
                    port: node_port,
                },
                apiserver_port: node_port,
                advertise_address,
                tunnel: None,
            }
        }
        ApiServerServiceType::ClusterIP => {
            let ip = spec.cluster_ip.ok_or(Error::MissingField("spec.clusterIP"))?;
            EndpointObservation::Known {
                endpoint: Endpoint {
                    host: ip.clone(),
                    port: port.port,
                },
                apiserver_port: APISERVER_SERVICE_PORT,
                advertise_address: Some(ip),
                tunnel: None,
            }
        }
        ApiServerServiceType::LoadBalancer => load_balancer_endpoint(service, port.port),
    };
    Ok(match observation {
        EndpointObservation::Known {
            endpoint,
            apiserver_port,
            advertise_address,
            tunnel: _,
        } => EndpointObservation::Known {
            tunnel: tunnel_port.map(|port| Endpoint {
                host: endpoint.host.clone(),
                port,
            }),
            endpoint,
            apiserver_port,
            advertise_address,
        },
        pending => pending,
    })
}

fn load_balancer_endpoint(service: &Service, port: i32) -> EndpointObservation {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|i| i.first().cloned())
        .unwrap_or_default();
    match ingress.ip.clone().or(ingress.hostname) {
        Some(host) => EndpointObservation::Known {
            endpoint: Endpoint { host, port },
            apiserver_port: APISERVER_SERVICE_PORT,
            advertise_address: ingress.ip,
            tunnel: None,
        },
        None => EndpointObservation::Pending(format!(
            "LoadBalancer Service {} has no address yet; if this management cluster has no \
             load-balancer implementation, use apiServer.service.type NodePort",
            service.name_any()
        )),
    }
}

/// The host of a NodePort endpoint and the address kube-apiserver advertises: the configured
/// `address` when set, else a node's InternalIP (see [`choose_node_address`]). A configured
/// host name cannot be advertised (kube-apiserver takes an IP), so a node's address is.
/// The cached nodes decide while they keep the current address; a move (which reissues the
/// serving certificate) is decided on a fresh list.
async fn node_port_host(
    client: &kube::Client,
    cache: &Cache,
    hc: &HostedCluster,
) -> Result<Option<(String, Option<String>)>> {
    let configured = hc.spec.api_server.service.address.clone();
    if let Some(address) = &configured
        && address.parse::<IpAddr>().is_ok()
    {
        return Ok(Some((address.clone(), Some(address.clone()))));
    }
    let current = hc
        .status
        .as_ref()
        .and_then(|s| s.endpoint.as_deref())
        .and_then(endpoint_host);
    let cached: Vec<Node> = cache.all::<Node>().iter().map(|n| Node::clone(n)).collect();
    let mut node_address = choose_node_address(current.as_deref(), &cached);
    if node_address.is_none() || node_address != current {
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .context("list", "Node", "*")?
            .items;
        node_address = choose_node_address(current.as_deref(), &nodes);
    }
    Ok(match configured {
        Some(host) => Some((host, node_address)),
        None => node_address.map(|ip| (ip.clone(), Some(ip))),
    })
}

/// The node address a NodePort endpoint uses. Moving it reissues the serving certificate and
/// breaks every kubeconfig handed out, so the current endpoint's host is kept while a node
/// with that InternalIP exists, Ready or not, cordoned or not. Only without one does it take
/// the InternalIP of the first Ready node by name.
pub fn choose_node_address(current_host: Option<&str>, nodes: &[Node]) -> Option<String> {
    if let Some(host) = current_host
        && nodes.iter().any(|node| internal_ips(node).any(|ip| ip == host))
    {
        return Some(host.to_string());
    }
    let mut ready: Vec<&Node> = nodes.iter().filter(|node| is_ready(node)).collect();
    ready.sort_by_key(|node| node.name_any());
    ready
        .into_iter()
        .find_map(|node| internal_ips(node).next().map(str::to_string))
}

fn internal_ips(node: &Node) -> impl Iterator<Item = &str> {
    node.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address.as_str())
}

fn is_ready(node: &Node) -> bool {
    node.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The host of an endpoint URL such as `https://192.0.2.7:31443` (brackets of an IPv6
/// address removed).
fn endpoint_host(endpoint: &str) -> Option<String> {
    let uri: http::Uri = endpoint.parse().ok()?;
    let host = uri.host()?;
    Some(host.trim_start_matches('[').trim_end_matches(']').to_string())
}

/// The component's workload as the watches last saw it, if it exists.
pub fn observe_workload(cache: &Cache, hc: &HostedCluster, component: Component) -> Option<Workload> {
    let namespace = builders::namespace(hc).ok()?;
    let name = component.workload_name(&builders::name(hc).ok()?);
    match component.def().kind {
        WorkloadKind::StatefulSet => cache
            .get::<StatefulSet>(&namespace, &name)
            .map(|sts| Workload::StatefulSet(StatefulSet::clone(&sts))),
        WorkloadKind::Deployment => cache
            .get::<Deployment>(&namespace, &name)
            .map(|d| Workload::Deployment(Deployment::clone(&d))),
    }
}

/// Every component's workload as it is, for a pass that applies none (a failed pass, or one
/// blocked on key material); a workload that is missing waits for `waits_for`.
pub fn observe_workloads_as_they_are(
    cache: &Cache,
    hc: &HostedCluster,
    waits_for: &'static str,
) -> Vec<(Component, WorkloadState)> {
    let mut workloads = Vec::new();
    for component in Component::ALL {
        let state = match observe_workload(cache, hc, component) {
            Some(workload) => WorkloadState::of_workload(&workload),
            None => WorkloadState::Waiting(waits_for),
        };
        workloads.push((component, state));
    }
    workloads
}

/// Removes an annotation a person set on the HostedCluster to ask for something, once it is
/// honoured (a merge patch: the annotation is theirs, not the field manager's).
pub async fn remove_request_annotation(client: &kube::Client, hc: &HostedCluster, key: &str) {
    let Ok(namespace) = builders::namespace(hc) else {
        return;
    };
    let api: Api<HostedCluster> = Api::namespaced(client.clone(), &namespace);
    let patch = serde_json::json!({ "metadata": { "annotations": { key: null } } });
    match api
        .patch(&hc.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => tracing::info!(annotation = key, "request honoured and removed"),
        Err(error) => tracing::warn!(%error, annotation = key, "could not remove the annotation"),
    }
}

/// GET /readyz on the hosted API server as its admin, at the endpoint in the admin kubeconfig:
/// the same URL works from the operator's pod and from a developer's shell. A failure on the
/// kept client is tried once more on a new one, so a connection the restarted API server left
/// behind is never reported as the API not answering.
/// How long a pass asks again when the hosted API server's pods are Ready but `/readyz` does
/// not answer yet (its endpoint being routed, its last start hooks), and how often.
const READYZ_SETTLE: std::time::Duration = std::time::Duration::from_secs(3);
const READYZ_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// [`probe_readyz`], asked again every 250 ms for up to 3 s while it fails: the pods' readiness
/// is seen a moment before the API answers through its endpoint, and a pass that reported that
/// moment would wait out a retry delay.
pub async fn probe_readyz_settling(
    clients: &HostedClients,
    hc: &HostedCluster,
    kubeconfig: &str,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + READYZ_SETTLE;
    loop {
        let result = probe_readyz(clients, hc, kubeconfig).await;
        if result.is_ok() || tokio::time::Instant::now() + READYZ_RETRY > deadline {
            return result;
        }
        tokio::time::sleep(READYZ_RETRY).await;
    }
}

pub async fn probe_readyz(
    clients: &HostedClients,
    hc: &HostedCluster,
    kubeconfig: &str,
) -> Result<(), String> {
    let kept = clients.client(hc, kubeconfig).await?;
    if readyz(&kept).await.is_ok() {
        return Ok(());
    }
    clients.forget(hc);
    readyz(&clients.client(hc, kubeconfig).await?).await
}

async fn readyz(client: &kube::Client) -> Result<(), String> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(body) if body.trim() == "ok" => Ok(()),
        Ok(body) => Err(format!("answered {:?}", body.trim())),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_balancer_without_ingress_is_pending_with_advice() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "demo-apiserver" }, "status": { "loadBalancer": {} }
        }))
        .expect("service");
        match load_balancer_endpoint(&service, 6443) {
            EndpointObservation::Pending(why) => assert!(why.contains("NodePort"), "{why}"),
            known => panic!("{known:?}"),
        }
    }

    fn node(name: &str, ip: &str, ready: bool) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": name },
            "status": {
                "addresses": [
                    { "type": "Hostname", "address": name },
                    { "type": "InternalIP", "address": ip }
                ],
                "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }]
            }
        }))
        .expect("node")
    }

    #[test]
    fn without_an_endpoint_the_first_ready_node_by_name_is_chosen() {
        let nodes = [
            node("worker-b", "192.0.2.12", true),
            node("worker-a", "192.0.2.11", false),
            node("worker-c", "192.0.2.13", true),
        ];
        assert_eq!(choose_node_address(None, &nodes).as_deref(), Some("192.0.2.12"));
        assert_eq!(
            choose_node_address(None, &[node("only", "192.0.2.1", false)]),
            None
        );
    }

    #[test]
    fn the_current_endpoint_stays_while_its_node_exists() {
        let nodes = [
            // A new node that sorts first, and the current one gone NotReady (or cordoned).
            node("aaa-new", "192.0.2.1", true),
            node("current", "192.0.2.9", false),
        ];
        assert_eq!(
            choose_node_address(Some("192.0.2.9"), &nodes).as_deref(),
            Some("192.0.2.9")
        );
    }

    #[test]
    fn the_endpoint_moves_only_when_its_node_is_gone() {
        let nodes = [node("aaa-new", "192.0.2.1", true)];
        assert_eq!(
            choose_node_address(Some("192.0.2.9"), &nodes).as_deref(),
            Some("192.0.2.1")
        );
    }

    #[test]
    fn the_host_of_an_endpoint_url() {
        assert_eq!(
            endpoint_host("https://192.0.2.9:31443").as_deref(),
            Some("192.0.2.9")
        );
        assert_eq!(
            endpoint_host("https://[2001:db8::1]:6443").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(endpoint_host("not a url"), None);
    }

    #[test]
    fn a_load_balancer_hostname_is_the_endpoint() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "demo-apiserver" },
            "status": { "loadBalancer": { "ingress": [{ "hostname": "lb.example.org" }] } }
        }))
        .expect("service");
        let EndpointObservation::Known { endpoint, .. } = load_balancer_endpoint(&service, 6443) else {
            panic!("pending");
        };
        assert_eq!(endpoint.url(), "https://lb.example.org:6443");
    }
}
