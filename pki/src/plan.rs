//! The one plan of a control plane's PKI: every CA, every leaf and every kubeconfig, with its
//! issuer and identity (subject, usages, names), computed from where the control plane runs.
//! The operator stores each planned item in a Secret; this crate's own tests start etcd and
//! kube-apiserver on the same plan, so they check exactly what the operator issues.
use std::net::IpAddr;

use crate::profiles::{self, ApiServerSans};
use crate::{CertKeyPair, Error, KubeconfigSpec, LeafSpec, Result, kubeconfig};

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

    /// kubeadm's file base name under /etc/kubernetes/pki.
    pub fn file_name(self) -> &'static str {
        match self {
            CaRole::Cluster => "ca",
            CaRole::Etcd => "etcd/ca",
            CaRole::FrontProxy => "front-proxy-ca",
        }
    }
}

/// A leaf certificate that a component mounts as a certificate and key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeafRole {
    ApiServer,
    ApiServerKubeletClient,
    ApiServerEtcdClient,
    FrontProxyClient,
    EtcdServer,
    EtcdPeer,
}

impl LeafRole {
    /// kubeadm's file base name under /etc/kubernetes/pki.
    pub fn file_name(self) -> &'static str {
        match self {
            LeafRole::ApiServer => "apiserver",
            LeafRole::ApiServerKubeletClient => "apiserver-kubelet-client",
            LeafRole::ApiServerEtcdClient => "apiserver-etcd-client",
            LeafRole::FrontProxyClient => "front-proxy-client",
            LeafRole::EtcdServer => "etcd/server",
            LeafRole::EtcdPeer => "etcd/peer",
        }
    }
}

/// A kubeconfig and the client certificate inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KubeconfigRole {
    Admin,
    ControllerManager,
    Scheduler,
    TunnelServer,
}

impl KubeconfigRole {
    /// kubeadm's file base name under /etc/kubernetes (`admin.conf`, ...).
    pub fn file_name(self) -> &'static str {
        match self {
            KubeconfigRole::Admin => "admin",
            KubeconfigRole::ControllerManager => "controller-manager",
            KubeconfigRole::Scheduler => "scheduler",
            KubeconfigRole::TunnelServer => "tunnel-server",
        }
    }
}

/// Where a control plane runs and how it is reached: everything its certificates name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInput {
    /// The hosted cluster's name, as its kubeconfigs call the cluster.
    pub cluster: String,
    /// The hosted cluster's service CIDR: its first address is the `kubernetes` Service.
    pub service_cidr: String,
    /// The hosted cluster's DNS domain, e.g. `cluster.local`.
    pub dns_domain: String,
    /// Names of the API server's Service in the management cluster.
    pub apiserver_service_names: Vec<String>,
    /// Host of the advertised endpoint: an IP address or a DNS name.
    pub endpoint_host: String,
    /// Extra names or addresses the user asked for on the serving certificate.
    pub extra_sans: Vec<String>,
    /// DNS names of every etcd member and of the etcd client Service.
    pub etcd_dns_names: Vec<String>,
    /// URL of the advertised endpoint, for the admin's kubeconfig.
    pub external_server: String,
    /// URL the control-plane components reach the API server at.
    pub internal_server: String,
}

/// A leaf certificate: its role, issuing CA and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLeaf {
    pub role: LeafRole,
    pub issuer: CaRole,
    pub spec: LeafSpec,
}

/// A kubeconfig: the identity of its client certificate, the CA that issues it (and that the
/// kubeconfig trusts) and where it points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedKubeconfig {
    pub role: KubeconfigRole,
    pub issuer: CaRole,
    pub client: LeafSpec,
    pub cluster: String,
    pub server: String,
    pub user: &'static str,
}

impl PlannedKubeconfig {
    /// The kubeconfig file for `client`, trusting `ca_cert_pem`.
    pub fn render(&self, ca_cert_pem: &str, client: &CertKeyPair) -> String {
        kubeconfig(&KubeconfigSpec {
            cluster_name: &self.cluster,
            server: &self.server,
            ca_cert_pem,
            user_name: self.user,
            client,
        })
    }
}

/// Every leaf and kubeconfig of a control plane, in issuing order. The CAs are [`CaRole::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub leaves: Vec<PlannedLeaf>,
    pub kubeconfigs: Vec<PlannedKubeconfig>,
}

impl Plan {
    /// Every certificate issued from a CA, leaves and kubeconfig clients alike: its file base
    /// name, issuer and identity.
    pub fn certificates(&self) -> impl Iterator<Item = (&'static str, CaRole, &LeafSpec)> {
        let leaves = self
            .leaves
            .iter()
            .map(|l| (l.role.file_name(), l.issuer, &l.spec));
        let clients = self
            .kubeconfigs
            .iter()
            .map(|k| (k.role.file_name(), k.issuer, &k.client));
        leaves.chain(clients)
    }
}

/// The plan for a control plane described by `input`.
///
/// No `etcd/healthcheck-client`: kubeadm issues one, but nothing here presents it. etcd's
/// probes run etcdctl with the server certificate (it has client usage), and the operator talks
/// to etcd as the API server does, with `apiserver-etcd-client`.
pub fn plan(input: &PlanInput) -> Result<Plan> {
    let sans = ApiServerSans {
        service_ip: first_service_ip(&input.service_cidr)?,
        dns_domain: input.dns_domain.clone(),
        service_names: input.apiserver_service_names.clone(),
        endpoint_hosts: vec![input.endpoint_host.clone()],
        extra_sans: input.extra_sans.clone(),
    };
    let etcd = &input.etcd_dns_names;
    let leaf = |role, issuer, spec| PlannedLeaf { role, issuer, spec };
    let leaves = vec![
        leaf(LeafRole::ApiServer, CaRole::Cluster, profiles::apiserver(&sans)),
        leaf(
            LeafRole::ApiServerKubeletClient,
            CaRole::Cluster,
            profiles::apiserver_kubelet_client(),
        ),
        leaf(
            LeafRole::ApiServerEtcdClient,
            CaRole::Etcd,
            profiles::apiserver_etcd_client(),
        ),
        leaf(
            LeafRole::FrontProxyClient,
            CaRole::FrontProxy,
            profiles::front_proxy_client(),
        ),
        leaf(LeafRole::EtcdServer, CaRole::Etcd, profiles::etcd_server(etcd)),
        leaf(LeafRole::EtcdPeer, CaRole::Etcd, profiles::etcd_peer(etcd)),
    ];
    let kubeconfig = |role, client, server: &str, user| PlannedKubeconfig {
        role,
        issuer: CaRole::Cluster,
        client,
        cluster: input.cluster.clone(),
        server: server.to_string(),
        user,
    };
    let kubeconfigs = vec![
        kubeconfig(
            KubeconfigRole::Admin,
            profiles::admin(),
            &input.external_server,
            "admin",
        ),
        kubeconfig(
            KubeconfigRole::ControllerManager,
            profiles::controller_manager(),
            &input.internal_server,
            "kube-controller-manager",
        ),
        kubeconfig(
            KubeconfigRole::Scheduler,
            profiles::scheduler(),
            &input.internal_server,
            "kube-scheduler",
        ),
        kubeconfig(
            KubeconfigRole::TunnelServer,
            profiles::tunnel_server(),
            &input.internal_server,
            "nestplane-tunnel-server",
        ),
    ];
    Ok(Plan { leaves, kubeconfigs })
}

/// The first address of a service CIDR: the hosted `kubernetes` Service's cluster IP.
pub fn first_service_ip(cidr: &str) -> Result<IpAddr> {
    let invalid = || Error::InvalidServiceCidr(cidr.to_string());
    let (base, _) = cidr.split_once('/').ok_or_else(invalid)?;
    match base.parse::<IpAddr>().map_err(|_| invalid())? {
        IpAddr::V4(v4) => Ok(IpAddr::from(u32::from(v4).wrapping_add(1).to_be_bytes())),
        IpAddr::V6(v6) => Ok(IpAddr::from(u128::from(v6).wrapping_add(1).to_be_bytes())),
    }
}

#[cfg(test)]
pub(crate) mod tests;
