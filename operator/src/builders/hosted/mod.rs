//! Objects nestplane writes inside a hosted cluster, through its API as its admin: what a stock
//! `kubeadm join` reads (`join`), the add-ons a worker needs (`addons`: kube-proxy and CoreDNS;
//! `flannel`: the pod network) and each NodePool's bootstrap token (`bootstrap_token`).
//! Pure like every builder: resolved inputs in, objects out; the controllers apply them.
use kube::Resource;
use kube::api::{ApiResource, DynamicObject};
use serde::Serialize;

use super::{BuildError, Endpoint};
use crate::api::Cni;

pub mod addons;
pub mod bootstrap_token;
pub mod flannel;
pub mod join;
#[cfg(test)]
pub(crate) mod testing;

/// Label on every object nestplane writes inside a hosted cluster, with [`super::MANAGED_BY`]:
/// what carries it and is no longer built is pruned.
pub const HOSTED_MANAGED_BY_LABEL: &str = super::MANAGED_BY_LABEL;

/// The field manager of nestplane's server-side applies inside hosted clusters.
pub const HOSTED_FIELD_MANAGER: &str = "nestplane";

/// One object to apply into a hosted cluster: its kind (for the API path) and its body.
#[derive(Clone, Debug)]
pub struct HostedObject {
    pub resource: ApiResource,
    pub object: DynamicObject,
}

impl HostedObject {
    /// Erases a typed object, keeping its apiVersion and kind for the apply.
    pub fn new<K>(object: &K) -> Result<Self, BuildError>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let resource = ApiResource::erase::<K>(&());
        let value = serde_json::to_value(object).map_err(|source| BuildError::Encode {
            what: "hosted object",
            source,
        })?;
        let mut object: DynamicObject =
            serde_json::from_value(value).map_err(|source| BuildError::Encode {
                what: "hosted object",
                source,
            })?;
        object.types = Some(kube::api::TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        });
        Ok(HostedObject { resource, object })
    }
}

/// What the hosted-cluster builders need, resolved by the controller from the HostedCluster
/// and its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostedInput {
    pub cluster_name: String,
    /// Kubernetes version of the control plane, e.g. `v1.35.4`.
    pub version: String,
    /// Where workers reach the hosted API server (the NodePort on a management node, or the
    /// LoadBalancer's address), as in `status.endpoint`.
    pub endpoint: Endpoint,
    /// The cluster CA's certificate (PEM): in `cluster-info` and in every kubeconfig.
    pub ca_pem: String,
    pub service_cidr: String,
    pub pod_cidr: String,
    pub dns_domain: String,
    /// The hosted `kube-dns` Service's address: the 10th of the service CIDR.
    pub dns_service_ip: String,
    pub cni: Cni,
    /// Registry of the Kubernetes images (`registry.k8s.io` unless the operator is told otherwise).
    pub image_registry: String,
    /// The user kube-apiserver presents to kubelets (CN of `apiserver-kubelet-client`), which
    /// `system:kubelet-api-admin` is bound to so that logs and exec work.
    pub apiserver_kubelet_client_user: String,
    /// The tunnel agent add-on, unless the tunnel is disabled (or its endpoint not known yet).
    pub tunnel: Option<crate::builders::tunnel::AgentInput>,
}

/// Metadata of an object nestplane writes inside a hosted cluster: its name, its namespace (none
/// for cluster-scoped kinds) and the managed-by label the prune selects by.
pub(crate) fn hosted_meta(name: &str, namespace: Option<&str>) -> serde_json::Value {
    let mut meta = serde_json::json!({
        "name": name,
        "labels": { HOSTED_MANAGED_BY_LABEL: super::MANAGED_BY },
    });
    if let Some(namespace) = namespace {
        meta["namespace"] = namespace.into();
    }
    meta
}

/// A typed object from a `json!` literal, erased for the apply.
pub(crate) fn hosted_object<K>(
    what: &'static str,
    value: serde_json::Value,
) -> Result<HostedObject, BuildError>
where
    K: Resource<DynamicType = ()> + Serialize + serde::de::DeserializeOwned,
{
    HostedObject::new(&super::typed::<K>(what, value)?)
}
