//! One function per control-plane certificate, named as kubeadm names its files,
//! with kubeadm's subjects (cmd/kubeadm/app/constants), so tools that expect them work.
use std::net::{IpAddr, Ipv4Addr};

use crate::leaf::{LeafSpec, Usage};

/// Where clients reach the API server, for its serving certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServerSans {
    /// The cluster IP of the hosted `kubernetes` Service (first address of the service CIDR).
    pub service_ip: IpAddr,
    /// The hosted cluster's DNS domain, e.g. `cluster.local`.
    pub dns_domain: String,
    /// Names of the API server's Service in the management cluster.
    pub service_names: Vec<String>,
    /// Hosts in the advertised endpoint: IP addresses or DNS names.
    pub endpoint_hosts: Vec<String>,
    /// Extra names or addresses the user asked for.
    pub extra_sans: Vec<String>,
}

pub fn apiserver(sans: &ApiServerSans) -> LeafSpec {
    let mut spec = LeafSpec {
        common_name: "kube-apiserver".to_string(),
        organizations: Vec::new(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        usage: Usage::Server,
    };
    let domain_name = format!("kubernetes.default.svc.{}", sans.dns_domain);
    for name in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        &domain_name,
        "localhost",
    ] {
        spec = spec.with_name(name);
    }
    spec = spec.with_name(&sans.service_ip.to_string());
    spec = spec.with_name(&IpAddr::V4(Ipv4Addr::LOCALHOST).to_string());
    for name in sans
        .service_names
        .iter()
        .chain(&sans.endpoint_hosts)
        .chain(&sans.extra_sans)
    {
        spec = spec.with_name(name);
    }
    spec
}

pub fn apiserver_kubelet_client() -> LeafSpec {
    LeafSpec::client("kube-apiserver-kubelet-client", &["kubeadm:cluster-admins"])
}

pub fn apiserver_etcd_client() -> LeafSpec {
    LeafSpec::client("kube-apiserver-etcd-client", &[])
}

pub fn front_proxy_client() -> LeafSpec {
    LeafSpec::client("front-proxy-client", &[])
}

/// etcd's serving certificate; etcd also uses it as a client of its own health checks.
pub fn etcd_server(dns_names: &[String]) -> LeafSpec {
    etcd_member("kube-etcd", dns_names)
}

pub fn etcd_peer(dns_names: &[String]) -> LeafSpec {
    etcd_member("kube-etcd-peer", dns_names)
}

fn etcd_member(common_name: &str, dns_names: &[String]) -> LeafSpec {
    let mut spec = LeafSpec {
        common_name: common_name.to_string(),
        organizations: Vec::new(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        usage: Usage::ServerAndClient,
    };
    spec = spec.with_name("localhost").with_name("127.0.0.1");
    for name in dns_names {
        spec = spec.with_name(name);
    }
    spec
}

/// The hosted cluster's administrator. No `kubeadm init` runs in a hosted cluster, so the
/// `kubeadm:cluster-admins` binding does not exist: the admin is in `system:masters`.
pub fn admin() -> LeafSpec {
    LeafSpec::client("kubernetes-admin", &["system:masters"])
}

pub fn controller_manager() -> LeafSpec {
    LeafSpec::client("system:kube-controller-manager", &[])
}

pub fn scheduler() -> LeafSpec {
    LeafSpec::client("system:kube-scheduler", &[])
}
