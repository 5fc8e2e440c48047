//! One function per control-plane certificate, named as kubeadm names its files, with kubeadm's
//! subjects and usages (kubeadm v1.35 `constants` and `phases/certs/certlist.go`), so that tools
//! and RBAC rules that expect them work.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::leaf::{LeafSpec, Usage};

/// CN of the cluster CA (`ca.crt`): it signs the API server, its kubelet client, the
/// kubeconfig users and, through kube-controller-manager, the kubelets' client certificates.
pub const CA_COMMON_NAME: &str = "kubernetes";
/// CN of the etcd CA (`etcd/ca.crt`).
pub const ETCD_CA_COMMON_NAME: &str = "etcd-ca";
/// CN of the front-proxy CA (`front-proxy-ca.crt`), kube-apiserver's `--requestheader-client-ca-file`.
pub const FRONT_PROXY_CA_COMMON_NAME: &str = "front-proxy-ca";

/// Where clients reach the API server, for its serving certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServerSans {
    /// The cluster IP of the hosted `kubernetes` Service (first address of the service CIDR).
    pub service_ip: IpAddr,
    /// The hosted cluster's DNS domain, e.g. `cluster.local`.
    pub dns_domain: String,
    /// Names of the API server's Service in the management cluster, e.g. `<hc>-apiserver`,
    /// `<hc>-apiserver.<ns>`, `<hc>-apiserver.<ns>.svc`.
    pub service_names: Vec<String>,
    /// Hosts in the advertised endpoint: IP addresses or DNS names.
    pub endpoint_hosts: Vec<String>,
    /// Extra names or addresses the user asked for.
    pub extra_sans: Vec<String>,
}

/// `apiserver.crt`: serves the API to kubelets, kubectl and in-cluster clients.
/// kubeadm's names plus localhost, for probes and sidecars in the API server's pod.
pub fn apiserver(sans: &ApiServerSans) -> LeafSpec {
    let in_cluster_name = format!("kubernetes.default.svc.{}", sans.dns_domain);
    let mut spec = LeafSpec::new("kube-apiserver", Usage::Server);
    for name in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        &in_cluster_name,
        "localhost",
    ] {
        spec = spec.with_name(name);
    }
    spec.ip_addresses.push(sans.service_ip);
    spec = spec.with_name(&Ipv4Addr::LOCALHOST.to_string());
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

/// `apiserver-kubelet-client.crt`: the API server's identity towards kubelets (logs, exec,
/// port-forward). The hosted cluster binds `system:kubelet-api-admin` to this identity.
pub fn apiserver_kubelet_client() -> LeafSpec {
    LeafSpec::client("kube-apiserver-kubelet-client", &["kubeadm:cluster-admins"])
}

/// `apiserver-etcd-client.crt`: the API server's identity towards etcd (signed by the etcd CA).
pub fn apiserver_etcd_client() -> LeafSpec {
    LeafSpec::client("kube-apiserver-etcd-client", &[])
}

/// `front-proxy-client.crt`: the API server's identity towards aggregated API servers
/// (signed by the front-proxy CA).
pub fn front_proxy_client() -> LeafSpec {
    LeafSpec::client("front-proxy-client", &[])
}

/// `etcd/server.crt`: etcd's serving certificate; client usage too, because etcd uses it for
/// its own gRPC gateway connections (etcd-io/etcd#9785).
pub fn etcd_server(dns_names: &[String]) -> LeafSpec {
    etcd_member("kube-etcd", dns_names)
}

/// `etcd/peer.crt`: etcd members authenticate each other with it, in both directions.
pub fn etcd_peer(dns_names: &[String]) -> LeafSpec {
    etcd_member("kube-etcd-peer", dns_names)
}

/// kubeadm names the etcd certificates after the node; one certificate serves every member of
/// the StatefulSet here, so it carries a fixed CN and every member's DNS names.
fn etcd_member(common_name: &str, dns_names: &[String]) -> LeafSpec {
    let mut spec = LeafSpec::new(common_name, Usage::ServerAndClient).with_name("localhost");
    spec.ip_addresses = vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
    for name in dns_names {
        spec = spec.with_name(name);
    }
    spec
}

/// `admin.conf`: the hosted cluster's administrator. No `kubeadm init` runs in a hosted cluster,
/// so the `kubeadm:cluster-admins` binding does not exist: the admin is in `system:masters`.
pub fn admin() -> LeafSpec {
    LeafSpec::client("kubernetes-admin", &["system:masters"])
}

/// `controller-manager.conf`.
pub fn controller_manager() -> LeafSpec {
    LeafSpec::client("system:kube-controller-manager", &[])
}

/// `scheduler.conf`.
pub fn scheduler() -> LeafSpec {
    LeafSpec::client("system:kube-scheduler", &[])
}

/// The user the tunnel server beside kube-apiserver reviews agents' tokens as; the hosted
/// cluster binds it to `system:auth-delegator` and nothing else.
pub const TUNNEL_SERVER_USER: &str = "nestplane:tunnel-server";

/// `tunnel-server.conf`: the tunnel server's TokenReviews.
pub fn tunnel_server() -> LeafSpec {
    LeafSpec::client(TUNNEL_SERVER_USER, &[])
}

#[cfg(test)]
mod tests;
