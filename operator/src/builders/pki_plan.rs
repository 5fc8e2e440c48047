//! Where this HostedCluster's control plane runs, as the PKI plan needs it: the plan itself
//! (every CA, leaf and kubeconfig with its issuer and identity) is `nestplane_pki::plan`; each
//! planned item's Secret is `SecretRole::from` its role (`secrets.rs`).
use nestplane_pki::{self as pki, Plan, PlanInput};

use super::{BuildError, Endpoint, etcd, kube_apiserver, name};
use crate::api::HostedCluster;

/// The plan for `hc`. The serving certificate names the observed endpoint, so it is planned
/// only once the endpoint is known; the components' kubeconfigs name the port kube-apiserver
/// listens on (`apiserver_port`).
pub fn plan(hc: &HostedCluster, endpoint: &Endpoint, apiserver_port: i32) -> Result<Plan, BuildError> {
    let input = PlanInput {
        cluster: name(hc)?,
        service_cidr: hc.spec.network.service_cidr.clone(),
        dns_domain: hc.spec.network.dns_domain.clone(),
        apiserver_service_names: kube_apiserver::service_dns_names(hc)?,
        endpoint_host: endpoint.host.clone(),
        extra_sans: hc.spec.api_server.extra_sans.clone(),
        etcd_dns_names: etcd::member_dns_names(hc)?,
        external_server: endpoint.url(),
        internal_server: kube_apiserver::internal_url(hc, apiserver_port)?,
    };
    pki::plan(&input).map_err(|err| BuildError::Invalid {
        what: "the PKI plan",
        message: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use nestplane_pki::{KubeconfigRole, LeafRole};

    use super::*;
    use crate::builders::testing::{hosted_cluster, inputs};

    #[test]
    fn serving_certificate_names_the_endpoint_service_and_extra_sans() {
        let mut hc = hosted_cluster();
        hc.spec.api_server.extra_sans = vec!["api.example.org".into()];
        let plan = plan(&hc, &inputs().endpoint, inputs().apiserver_port).expect("plan");
        let serving = &plan
            .leaves
            .iter()
            .find(|l| l.role == LeafRole::ApiServer)
            .expect("apiserver")
            .spec;
        let ips: Vec<String> = serving.ip_addresses.iter().map(|ip| ip.to_string()).collect();
        assert!(ips.contains(&"192.0.2.2".to_string()), "{ips:?}");
        assert!(ips.contains(&"10.96.0.1".to_string()), "{ips:?}");
        for name in [
            "demo-apiserver.team-a.svc",
            "api.example.org",
            "kubernetes.default.svc.cluster.local",
        ] {
            assert!(serving.dns_names.iter().any(|d| d == name), "{name} missing");
        }
    }

    #[test]
    fn etcd_certificates_name_every_member_and_the_client_service() {
        let plan = plan(&hosted_cluster(), &inputs().endpoint, inputs().apiserver_port).expect("plan");
        let members: Vec<_> = plan
            .leaves
            .iter()
            .filter(|l| matches!(l.role, LeafRole::EtcdServer | LeafRole::EtcdPeer))
            .collect();
        assert_eq!(members.len(), 2);
        for leaf in members {
            for name in ["*.demo-etcd.team-a.svc", "demo-etcd-client.team-a.svc"] {
                assert!(
                    leaf.spec.dns_names.iter().any(|d| d == name),
                    "{:?}: {name}",
                    leaf.role
                );
            }
        }
    }

    #[test]
    fn admin_uses_the_external_endpoint_and_components_the_ready_pods() {
        let mut hc = hosted_cluster();
        hc.spec.network.service_cidr = "fd00:10::/108".into();
        let endpoint = Endpoint {
            host: "2001:db8::2".into(),
            port: 31443,
        };
        let plan = plan(&hc, &endpoint, inputs().apiserver_port).expect("plan");
        let servers: Vec<_> = plan
            .kubeconfigs
            .iter()
            .map(|k| (k.role, k.cluster.as_str(), k.server.as_str()))
            .collect();
        assert_eq!(
            servers,
            [
                (KubeconfigRole::Admin, "demo", "https://[2001:db8::2]:31443"),
                (
                    KubeconfigRole::ControllerManager,
                    "demo",
                    "https://demo-apiserver-pods.team-a.svc:31443"
                ),
                (
                    KubeconfigRole::Scheduler,
                    "demo",
                    "https://demo-apiserver-pods.team-a.svc:31443"
                ),
                (
                    KubeconfigRole::TunnelServer,
                    "demo",
                    "https://demo-apiserver-pods.team-a.svc:31443"
                ),
            ]
        );
        let serving = &plan.leaves[0].spec;
        let ips: Vec<String> = serving.ip_addresses.iter().map(|ip| ip.to_string()).collect();
        assert!(ips.contains(&"fd00:10::1".to_string()), "{ips:?}");
        assert!(ips.contains(&"2001:db8::2".to_string()), "{ips:?}");
    }

    #[test]
    fn a_service_cidr_that_is_no_cidr_fails_the_plan_with_its_value() {
        let mut hc = hosted_cluster();
        hc.spec.network.service_cidr = "10.96.0.0".into();
        let err = plan(&hc, &inputs().endpoint, inputs().apiserver_port).expect_err("no CIDR");
        assert!(err.to_string().contains("\"10.96.0.0\""), "{err}");
    }
}
