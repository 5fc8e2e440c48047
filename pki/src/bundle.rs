//! The whole PKI of one control plane at once: for tests and for a cluster's first creation.
//! A controller that finds some pieces already stored uses [`plan`] and issues only the rest.
use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use crate::profiles::{self, ApiServerSans};
use crate::{
    CertKeyPair, LeafSpec, Result, ServiceAccountKeys, generate_ca, generate_service_account_keys, issue_leaf,
};

/// Which of the three CAs signs a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaRole {
    /// `ca.crt`
    Cluster,
    /// `etcd/ca.crt`
    Etcd,
    /// `front-proxy-ca.crt`
    FrontProxy,
}

impl CaRole {
    pub const ALL: [CaRole; 3] = [CaRole::Cluster, CaRole::Etcd, CaRole::FrontProxy];

    pub fn common_name(self) -> &'static str {
        match self {
            CaRole::Cluster => profiles::CA_COMMON_NAME,
            CaRole::Etcd => profiles::ETCD_CA_COMMON_NAME,
            CaRole::FrontProxy => profiles::FRONT_PROXY_CA_COMMON_NAME,
        }
    }
}

/// What a control plane's certificates depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInput {
    pub apiserver_sans: ApiServerSans,
    /// DNS names of every etcd member (and of the etcd client Service).
    pub etcd_dns_names: Vec<String>,
    pub now: OffsetDateTime,
    pub ca_validity: Duration,
    pub leaf_validity: Duration,
}

/// One leaf of a control plane: its kubeadm base name, issuing CA and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLeaf {
    /// kubeadm's file base name (`apiserver`, `etcd/server`, ...) or, for kubeconfig users,
    /// the kubeconfig's (`admin`, `controller-manager`, `scheduler`).
    pub name: &'static str,
    pub ca: CaRole,
    pub spec: LeafSpec,
}

/// Every leaf certificate a control plane needs, in issuing order.
pub fn plan(input: &BundleInput) -> Vec<PlannedLeaf> {
    let leaf = |name, ca, spec| PlannedLeaf { name, ca, spec };
    let etcd = &input.etcd_dns_names;
    vec![
        leaf(
            "apiserver",
            CaRole::Cluster,
            profiles::apiserver(&input.apiserver_sans),
        ),
        leaf(
            "apiserver-kubelet-client",
            CaRole::Cluster,
            profiles::apiserver_kubelet_client(),
        ),
        leaf(
            "apiserver-etcd-client",
            CaRole::Etcd,
            profiles::apiserver_etcd_client(),
        ),
        leaf(
            "front-proxy-client",
            CaRole::FrontProxy,
            profiles::front_proxy_client(),
        ),
        leaf("etcd/server", CaRole::Etcd, profiles::etcd_server(etcd)),
        leaf("etcd/peer", CaRole::Etcd, profiles::etcd_peer(etcd)),
        leaf(
            "etcd/healthcheck-client",
            CaRole::Etcd,
            profiles::etcd_healthcheck_client(),
        ),
        leaf("admin", CaRole::Cluster, profiles::admin()),
        leaf(
            "controller-manager",
            CaRole::Cluster,
            profiles::controller_manager(),
        ),
        leaf("scheduler", CaRole::Cluster, profiles::scheduler()),
    ]
}

/// Three CAs, the service-account keys and every leaf of [`plan`].
#[derive(Debug, Clone)]
pub struct ControlPlaneBundle {
    pub ca: CertKeyPair,
    pub etcd_ca: CertKeyPair,
    pub front_proxy_ca: CertKeyPair,
    pub service_account: ServiceAccountKeys,
    /// By [`PlannedLeaf::name`].
    pub leaves: BTreeMap<&'static str, CertKeyPair>,
}

impl ControlPlaneBundle {
    pub fn generate(input: &BundleInput) -> Result<Self> {
        let ca = |role: CaRole| generate_ca(role.common_name(), input.now, input.ca_validity);
        let mut bundle = ControlPlaneBundle {
            ca: ca(CaRole::Cluster)?,
            etcd_ca: ca(CaRole::Etcd)?,
            front_proxy_ca: ca(CaRole::FrontProxy)?,
            service_account: generate_service_account_keys()?,
            leaves: BTreeMap::new(),
        };
        for planned in plan(input) {
            let leaf = issue_leaf(
                bundle.ca(planned.ca),
                &planned.spec,
                input.now,
                input.leaf_validity,
            )?;
            bundle.leaves.insert(planned.name, leaf);
        }
        Ok(bundle)
    }

    pub fn ca(&self, role: CaRole) -> &CertKeyPair {
        match role {
            CaRole::Cluster => &self.ca,
            CaRole::Etcd => &self.etcd_ca,
            CaRole::FrontProxy => &self.front_proxy_ca,
        }
    }

    pub fn leaf(&self, name: &str) -> Option<&CertKeyPair> {
        self.leaves.get(name)
    }
}

#[cfg(test)]
mod tests;
