//! A throwaway PKI for the components, written out as kubeadm lays it out.
use nestplane_pki::{ApiServerSans, BundleInput, CaRole, ControlPlaneBundle};
use time::OffsetDateTime;

use crate::process::TempDir;

/// External tools judge validity by the real clock, so these certificates start now.
pub fn bundle() -> (BundleInput, ControlPlaneBundle) {
    let input = BundleInput {
        apiserver_sans: ApiServerSans {
            service_ip: "10.96.0.1".parse().expect("ip"),
            dns_domain: "cluster.local".into(),
            service_names: vec!["demo-apiserver".into()],
            endpoint_hosts: vec!["127.0.0.1".into()],
            extra_sans: Vec::new(),
        },
        etcd_dns_names: vec!["demo-etcd-0.demo-etcd".into()],
        now: OffsetDateTime::now_utc(),
        ca_validity: time::Duration::days(3650),
        leaf_validity: time::Duration::days(365),
    };
    let bundle = ControlPlaneBundle::generate(&input).expect("bundle");
    (input, bundle)
}

/// Writes the CAs as `ca.crt`, `etcd/ca.crt`, `front-proxy-ca.crt` and every leaf under its
/// kubeadm name, as kubeadm lays out /etc/kubernetes/pki.
pub fn write_pki(dir: &TempDir, bundle: &ControlPlaneBundle) {
    for role in CaRole::ALL {
        let name = match role {
            CaRole::Cluster => "ca",
            CaRole::Etcd => "etcd/ca",
            CaRole::FrontProxy => "front-proxy-ca",
        };
        dir.write_pair(name, bundle.ca(role));
    }
    for (name, leaf) in &bundle.leaves {
        dir.write_pair(name, leaf);
    }
    dir.write("sa.key", &bundle.service_account.private_key_pem);
    dir.write("sa.pub", &bundle.service_account.public_key_pem);
}
