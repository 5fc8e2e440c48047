use std::net::IpAddr;

use super::*;

pub(crate) fn input() -> PlanInput {
    PlanInput {
        cluster: "demo".into(),
        service_cidr: "10.96.0.0/12".into(),
        dns_domain: "cluster.local".into(),
        apiserver_service_names: vec!["demo-apiserver.team-a.svc".into()],
        endpoint_host: "192.0.2.2".into(),
        extra_sans: vec!["api.example.org".into()],
        etcd_dns_names: vec!["*.demo-etcd.team-a.svc".into()],
        external_server: "https://192.0.2.2:31443".into(),
        internal_server: "https://demo-apiserver.team-a.svc:6443".into(),
    }
}

#[test]
fn the_plan_follows_kubeadm_names_and_cas() {
    let plan = plan(&input()).expect("plan");
    let planned: Vec<(&str, CaRole)> = plan.certificates().map(|(name, ca, _)| (name, ca)).collect();
    assert_eq!(
        planned,
        vec![
            ("apiserver", CaRole::Cluster),
            ("apiserver-kubelet-client", CaRole::Cluster),
            ("apiserver-etcd-client", CaRole::Etcd),
            ("front-proxy-client", CaRole::FrontProxy),
            ("etcd/server", CaRole::Etcd),
            ("etcd/peer", CaRole::Etcd),
            ("admin", CaRole::Cluster),
            ("controller-manager", CaRole::Cluster),
            ("scheduler", CaRole::Cluster),
            ("tunnel-server", CaRole::Cluster),
        ]
    );
}

#[test]
fn serving_certificate_names_the_endpoint_service_ip_services_and_extra_sans() {
    let plan = plan(&input()).expect("plan");
    let serving = &plan.leaves[0];
    assert_eq!(serving.role, LeafRole::ApiServer);
    let ips: Vec<String> = serving.spec.ip_addresses.iter().map(IpAddr::to_string).collect();
    for ip in ["192.0.2.2", "10.96.0.1", "127.0.0.1"] {
        assert!(ips.iter().any(|i| i == ip), "{ip} missing from {ips:?}");
    }
    for name in [
        "demo-apiserver.team-a.svc",
        "api.example.org",
        "kubernetes.default.svc.cluster.local",
    ] {
        assert!(serving.spec.dns_names.iter().any(|d| d == name), "{name} missing");
    }
}

#[test]
fn etcd_members_are_named_on_the_server_and_peer_certificates_only() {
    let plan = plan(&input()).expect("plan");
    for leaf in &plan.leaves {
        let names_members = leaf.spec.dns_names.iter().any(|d| d == "*.demo-etcd.team-a.svc");
        let member = matches!(leaf.role, LeafRole::EtcdServer | LeafRole::EtcdPeer);
        assert_eq!(names_members, member, "{:?}", leaf.role);
    }
}

#[test]
fn the_admin_uses_the_endpoint_and_components_the_internal_server() {
    let plan = plan(&input()).expect("plan");
    let servers: Vec<_> = plan
        .kubeconfigs
        .iter()
        .map(|k| (k.role, k.user, k.cluster.as_str(), k.server.as_str()))
        .collect();
    assert_eq!(
        servers,
        [
            (KubeconfigRole::Admin, "admin", "demo", "https://192.0.2.2:31443"),
            (
                KubeconfigRole::ControllerManager,
                "kube-controller-manager",
                "demo",
                "https://demo-apiserver.team-a.svc:6443"
            ),
            (
                KubeconfigRole::Scheduler,
                "kube-scheduler",
                "demo",
                "https://demo-apiserver.team-a.svc:6443"
            ),
            (
                KubeconfigRole::TunnelServer,
                "nestplane-tunnel-server",
                "demo",
                "https://demo-apiserver.team-a.svc:6443"
            ),
        ]
    );
}

#[test]
fn the_kubernetes_service_ip_is_the_first_address_of_the_service_cidr() {
    let ip = |cidr: &str| first_service_ip(cidr).map(|ip| ip.to_string());
    assert_eq!(ip("10.96.0.0/12").expect("v4"), "10.96.0.1");
    assert_eq!(ip("fd00:10::/108").expect("v6"), "fd00:10::1");
    for bad in ["10.96.0.0", "not-an-ip/12"] {
        let err = ip(bad).expect_err(bad);
        assert!(
            matches!(err, Error::InvalidServiceCidr(ref c) if c == bad),
            "{err}"
        );
    }
    let bad_input = PlanInput {
        service_cidr: "10.96.0.0".into(),
        ..input()
    };
    assert!(plan(&bad_input).is_err());
}
