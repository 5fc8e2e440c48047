//! Reads a reconcile needs before it builds anything: where the API server is reached, what the
//! workloads look like, and whether the hosted API answers /readyz.
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::api::{ApiServerServiceType, HostedCluster};
use crate::builders::{self, APISERVER_SERVICE_PORT, Component, Endpoint, Workload};
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
    },
    /// Not known yet; the message says why and what to do.
    Pending(String),
}

/// Reads the endpoint from the applied API server Service (and, for NodePort, the nodes).
pub async fn observe_endpoint(
    client: &kube::Client,
    hc: &HostedCluster,
    service: &Service,
) -> Result<EndpointObservation> {
    let spec = service.spec.clone().unwrap_or_default();
    let port = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .next()
        .unwrap_or_default();
    match hc.spec.api_server.service.type_ {
        ApiServerServiceType::NodePort => {
            let node_port = port
                .node_port
                .ok_or(Error::MissingField("spec.ports[0].nodePort"))?;
            let node_ip = observe_node_address(client)
                .await?
                .ok_or(Error::NoNodeAddress(node_port))?;
            Ok(EndpointObservation::Known {
                endpoint: Endpoint {
                    host: node_ip.clone(),
                    port: node_port,
                },
                apiserver_port: node_port,
                advertise_address: Some(node_ip),
            })
        }
        ApiServerServiceType::ClusterIP => {
            let ip = spec.cluster_ip.ok_or(Error::MissingField("spec.clusterIP"))?;
            Ok(EndpointObservation::Known {
                endpoint: Endpoint {
                    host: ip.clone(),
                    port: port.port,
                },
                apiserver_port: APISERVER_SERVICE_PORT,
                advertise_address: Some(ip),
            })
        }
        ApiServerServiceType::LoadBalancer => Ok(load_balancer_endpoint(service, port.port)),
    }
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
        },
        None => EndpointObservation::Pending(format!(
            "LoadBalancer Service {} has no address yet; if this management cluster has no \
             load-balancer implementation, use apiServer.service.type NodePort",
            service.name_any()
        )),
    }
}

/// The InternalIP of the first Ready node, by name: stable across reconciles.
async fn observe_node_address(client: &kube::Client) -> Result<Option<String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut list = nodes
        .list(&ListParams::default())
        .await
        .context("list", "Node", "*")?
        .items;
    list.sort_by_key(|n| n.name_any());
    Ok(list.iter().find_map(|node| {
        let status = node.status.as_ref()?;
        let ready = status
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let addresses = status.addresses.as_ref()?;
        ready.then(|| {
            addresses
                .iter()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
        })?
    }))
}

/// The component's workload as it is in the cluster, if it exists.
pub async fn observe_workload(
    client: &kube::Client,
    hc: &HostedCluster,
    component: Component,
) -> Result<Option<Workload>> {
    let namespace = builders::namespace(hc);
    let name = component.workload_name(&builders::name(hc));
    Ok(match component {
        Component::Etcd => Api::<StatefulSet>::namespaced(client.clone(), &namespace)
            .get_opt(&name)
            .await
            .context("get", "StatefulSet", &name)?
            .map(Workload::StatefulSet),
        _ => Api::<Deployment>::namespaced(client.clone(), &namespace)
            .get_opt(&name)
            .await
            .context("get", "Deployment", &name)?
            .map(Workload::Deployment),
    })
}

/// GET /readyz on the hosted API server as its admin, at the endpoint in the admin kubeconfig:
/// the same URL works from the operator's pod and from a developer's shell.
pub async fn probe_readyz(kubeconfig: &str) -> Result<(), String> {
    let config = kube::config::Kubeconfig::from_yaml(kubeconfig).map_err(|e| e.to_string())?;
    let mut config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    config.connect_timeout = Some(Duration::from_secs(3));
    config.read_timeout = Some(Duration::from_secs(5));
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
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
