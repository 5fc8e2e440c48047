//! The operator's PKI plan for a throwaway cluster, issued whole and written out as kubeadm
//! lays it out.
use nestplane_pki::{CaRole, ControlPlaneBundle, Plan, PlanInput, Validity, plan};
use time::OffsetDateTime;

use crate::process::TempDir;

/// The hosted cluster's service CIDR, as kube-apiserver is started with it.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

/// The operator's plan for a cluster `demo` whose API server is reached at `server` (both from
/// outside and by its components) and whose one etcd member is `demo-etcd-0.demo-etcd`, issued
/// whole. External tools judge validity by the real clock, so these certificates start now.
pub fn bundle_for(server: &str) -> (Plan, ControlPlaneBundle) {
    let input = PlanInput {
        cluster: "demo".into(),
        service_cidr: SERVICE_CIDR.into(),
        dns_domain: "cluster.local".into(),
        apiserver_service_names: vec!["demo-apiserver".into()],
        endpoint_host: "127.0.0.1".into(),
        extra_sans: Vec::new(),
        etcd_dns_names: vec!["demo-etcd-0.demo-etcd".into()],
        external_server: server.into(),
        internal_server: server.into(),
    };
    let plan = plan(&input).expect("plan");
    let validity = Validity {
        now: OffsetDateTime::now_utc(),
        ca: time::Duration::days(3650),
        leaf: time::Duration::days(365),
    };
    let bundle = ControlPlaneBundle::generate(&plan, validity).expect("bundle");
    (plan, bundle)
}

/// For tests that start no API server: the kubeconfigs name a port nothing listens on.
pub fn bundle() -> (Plan, ControlPlaneBundle) {
    bundle_for("https://127.0.0.1:6443")
}

/// Writes the CAs as `ca.crt`, `etcd/ca.crt`, `front-proxy-ca.crt` and every certificate under
/// its kubeadm name, as kubeadm lays out /etc/kubernetes/pki.
pub fn write_pki(dir: &TempDir, bundle: &ControlPlaneBundle) {
    for role in CaRole::ALL {
        dir.write_pair(role.file_name(), bundle.ca(role));
    }
    for (name, pair) in bundle.certificates() {
        dir.write_pair(name, pair);
    }
    dir.write("sa.key", &bundle.service_account.private_key_pem);
    dir.write("sa.pub", &bundle.service_account.public_key_pem);
}
