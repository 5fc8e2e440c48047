//! The Nodes of a hosted cluster, read and drained through its admin client: which workers
//! joined and are Ready, and the cordon, drain and delete of a worker that goes away.
//! Nodes are read with a list per pass; a watch per hosted cluster is a later optimisation.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{debug, info};

use super::Context;
use crate::api::HostedCluster;

/// What a Node says about its worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub ready: bool,
    /// When the Ready condition last changed while it is not True (auto-repair's clock).
    pub not_ready_since: Option<Time>,
}

impl NodeState {
    pub fn of(node: &Node) -> NodeState {
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        let is_ready = ready.is_some_and(|c| c.status == "True");
        NodeState {
            ready: is_ready,
            not_ready_since: if is_ready {
                None
            } else {
                ready
                    .and_then(|c| c.last_transition_time.clone())
                    .or_else(|| node.metadata.creation_timestamp.clone())
            },
        }
    }
}

/// A client for `hc`'s API as its admin, from the kubeconfig Secret its status names.
pub async fn client(ctx: &Context, hc: &HostedCluster) -> Result<kube::Client, String> {
    let namespace = hc.namespace().unwrap_or_default();
    let reference = hc
        .status
        .as_ref()
        .and_then(|s| s.kubeconfig_secret_ref.clone())
        .ok_or("the HostedCluster's status names no kubeconfig Secret yet")?;
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .get(&reference.name)
        .await
        .map_err(|e| format!("reading Secret {}: {e}", reference.name))?;
    let kubeconfig = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .ok_or_else(|| format!("Secret {} has no key {}", reference.name, reference.key))?;
    ctx.hosted
        .client(hc, &String::from_utf8_lossy(&kubeconfig.0))
        .await
}

/// Every Node of the hosted cluster by name.
pub async fn states(hosted: &kube::Client) -> Result<BTreeMap<String, NodeState>, String> {
    let nodes = Api::<Node>::all(hosted.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing Nodes: {e}"))?;
    Ok(nodes.iter().map(|n| (n.name_any(), NodeState::of(n))).collect())
}

/// Node `name` itself, if registered.
pub async fn get(hosted: &kube::Client, name: &str) -> Result<Option<Node>, String> {
    Api::<Node>::all(hosted.clone())
        .get_opt(name)
        .await
        .map_err(|e| format!("reading Node {name}: {e}"))
}

/// Where a drain stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Drain {
    /// No Node by that name (never joined, or already deleted).
    NoNode,
    /// Cordoned and no pod left to evict.
    Done,
    /// Pods are still there (a PodDisruptionBudget refused, or they are terminating).
    Waiting(Vec<String>),
}

/// Cordons Node `name` and asks to evict its pods (PodDisruptionBudgets honoured); DaemonSet
/// pods and static pods stay, as `kubectl drain` leaves them.
pub async fn drain(hosted: &kube::Client, name: &str) -> Result<Drain, String> {
    let nodes = Api::<Node>::all(hosted.clone());
    let Some(node) = nodes
        .get_opt(name)
        .await
        .map_err(|e| format!("reading Node {name}: {e}"))?
    else {
        return Ok(Drain::NoNode);
    };
    if !node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        let patch = json!({ "spec": { "unschedulable": true } });
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("cordoning Node {name}: {e}"))?;
        info!(node = name, "cordoned");
    }
    let pods = Api::<Pod>::all(hosted.clone())
        .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
        .await
        .map_err(|e| format!("listing the pods of Node {name}: {e}"))?;
    let mut waiting = Vec::new();
    for pod in pods.iter().filter(|p| must_evict(p)) {
        let (namespace, pod_name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        waiting.push(format!("{namespace}/{pod_name}"));
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match Api::<Pod>::namespaced(hosted.clone(), &namespace)
            .evict(&pod_name, &EvictParams::default())
            .await
        {
            Ok(_) => info!(pod = %pod_name, %namespace, "evicted"),
            // 429: a PodDisruptionBudget allows no disruption now; 404: already gone.
            Err(kube::Error::Api(s)) if s.code == 429 || s.code == 404 => {
                debug!(pod = %pod_name, code = s.code, "eviction refused")
            }
            Err(e) => return Err(format!("evicting pod {namespace}/{pod_name}: {e}")),
        }
    }
    Ok(if waiting.is_empty() {
        Drain::Done
    } else {
        Drain::Waiting(waiting)
    })
}

/// Pods a drain evicts: not finished, not a DaemonSet's, not a static (mirror) pod.
fn must_evict(pod: &Pod) -> bool {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    let daemon = pod
        .owner_references()
        .iter()
        .any(|o| o.kind == "DaemonSet" && o.controller == Some(true));
    let mirror = pod.annotations().contains_key("kubernetes.io/config.mirror");
    !finished && !daemon && !mirror
}

/// Deletes Node `name`; one that is already gone is fine.
pub async fn delete(hosted: &kube::Client, name: &str) -> Result<(), String> {
    match Api::<Node>::all(hosted.clone())
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => {
            info!(node = name, "deleted Node");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(format!("deleting Node {name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str, since: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": { "name": "pool-abcde" },
            "status": { "conditions": [
                { "type": "Ready", "status": ready, "lastTransitionTime": since }
            ] },
        }))
        .expect("node")
    }

    #[test]
    fn a_not_ready_node_says_since_when() {
        let ready = NodeState::of(&node("True", "2026-01-01T00:00:00Z"));
        assert!(ready.ready);
        assert_eq!(ready.not_ready_since, None);
        let not_ready = NodeState::of(&node("Unknown", "2026-01-01T00:05:00Z"));
        assert!(!not_ready.ready);
        assert_eq!(
            not_ready.not_ready_since.map(|t| t.0.to_string()),
            Some("2026-01-01T00:05:00Z".to_string())
        );
    }

    #[test]
    fn a_drain_leaves_daemonset_static_and_finished_pods() {
        let pod = |extra: serde_json::Value| -> Pod {
            let mut value = json!({ "metadata": { "name": "p", "namespace": "default" } });
            if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
                for (k, v) in extra {
                    base.insert(k.clone(), v.clone());
                }
            }
            serde_json::from_value(value).expect("pod")
        };
        assert!(must_evict(&pod(json!({}))));
        assert!(!must_evict(&pod(
            json!({ "metadata": { "name": "p", "ownerReferences": [
            { "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "kube-proxy", "uid": "u", "controller": true }
        ] } })
        )));
        assert!(!must_evict(&pod(
            json!({ "metadata": { "name": "p", "annotations": {
            "kubernetes.io/config.mirror": "x"
        } } })
        )));
        assert!(!must_evict(&pod(json!({ "status": { "phase": "Succeeded" } }))));
    }
}
