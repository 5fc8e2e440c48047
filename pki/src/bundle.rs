//! The whole PKI of one control plane at once, from its [`plan`](crate::plan()): for tests and
//! for a cluster's first creation. A controller that finds some pieces already stored issues
//! only the rest, from the same plan.
use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use crate::plan::{CaRole, KubeconfigRole, LeafRole, Plan};
use crate::{
    CertKeyPair, Result, ServiceAccountKeys, generate_ca, generate_service_account_keys, issue_leaf,
};

/// When the PKI is issued and for how long it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub now: OffsetDateTime,
    pub ca: Duration,
    pub leaf: Duration,
}

/// A kubeconfig as issued: its client pair and the rendered file.
#[derive(Clone)]
pub struct IssuedKubeconfig {
    pub client: CertKeyPair,
    pub kubeconfig: String,
}

impl std::fmt::Debug for IssuedKubeconfig {
    // The file embeds the client key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKubeconfig")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// Three CAs, the service-account keys, every leaf and every kubeconfig of a [`Plan`].
#[derive(Debug, Clone)]
pub struct ControlPlaneBundle {
    pub ca: CertKeyPair,
    pub etcd_ca: CertKeyPair,
    pub front_proxy_ca: CertKeyPair,
    pub service_account: ServiceAccountKeys,
    pub leaves: BTreeMap<LeafRole, CertKeyPair>,
    pub kubeconfigs: BTreeMap<KubeconfigRole, IssuedKubeconfig>,
}

impl ControlPlaneBundle {
    pub fn generate(plan: &Plan, validity: Validity) -> Result<Self> {
        let ca = |role: CaRole| generate_ca(role.common_name(), validity.now, validity.ca);
        let mut bundle = ControlPlaneBundle {
            ca: ca(CaRole::Cluster)?,
            etcd_ca: ca(CaRole::Etcd)?,
            front_proxy_ca: ca(CaRole::FrontProxy)?,
            service_account: generate_service_account_keys()?,
            leaves: BTreeMap::new(),
            kubeconfigs: BTreeMap::new(),
        };
        for planned in &plan.leaves {
            let leaf = issue_leaf(
                bundle.ca(planned.issuer),
                &planned.spec,
                validity.now,
                validity.leaf,
            )?;
            bundle.leaves.insert(planned.role, leaf);
        }
        for planned in &plan.kubeconfigs {
            let issuer = bundle.ca(planned.issuer);
            let client = issue_leaf(issuer, &planned.client, validity.now, validity.leaf)?;
            let kubeconfig = planned.render(&issuer.cert_pem, &client);
            bundle
                .kubeconfigs
                .insert(planned.role, IssuedKubeconfig { client, kubeconfig });
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

    pub fn leaf(&self, role: LeafRole) -> Option<&CertKeyPair> {
        self.leaves.get(&role)
    }

    pub fn kubeconfig(&self, role: KubeconfigRole) -> Option<&IssuedKubeconfig> {
        self.kubeconfigs.get(&role)
    }

    /// Every certificate issued from a CA (leaves and kubeconfig clients) by its file base name.
    pub fn certificates(&self) -> impl Iterator<Item = (&'static str, &CertKeyPair)> {
        let leaves = self.leaves.iter().map(|(role, pair)| (role.file_name(), pair));
        let clients = self
            .kubeconfigs
            .iter()
            .map(|(role, issued)| (role.file_name(), &issued.client));
        leaves.chain(clients)
    }
}

#[cfg(test)]
mod tests;
