//! kube-controller-manager: signs kubelet certificates and runs the bootstrap-token controllers
//! that a stock `kubeadm join` needs.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;

use super::control_plane::{self, ControlPlaneDeployment};
use super::kubeconfig::KUBECONFIG_KEY;
use super::secrets::{SA_PRIVATE_KEY, SecretRole, ca_cert, pair, project};
use super::*;
use crate::api::conditions::CONTROLLER_MANAGER_AVAILABLE;

pub const PORT: i32 = 10257;
const KUBECONFIG: &str = "/etc/kubernetes/controller-manager.conf";

pub const COMPONENT: ComponentDef = ComponentDef {
    name: "kube-controller-manager",
    kind: WorkloadKind::Deployment,
    depends_on: &[Component::KubeApiserver],
    required_certs: &[
        SecretRole::Ca,
        SecretRole::FrontProxyCa,
        SecretRole::ServiceAccount,
        SecretRole::ControllerManagerKubeconfig,
    ],
    config_maps: component::no_config_maps,
    condition_type: CONTROLLER_MANAGER_AVAILABLE,
    availability: Availability::Pods,
    image: |version, registry| {
        Ok(component::release_image(
            registry,
            "kube-controller-manager",
            version,
        ))
    },
    // Leader-elected: a drain that takes the leader only moves the lease.
    wants_disruption_budget: |_| false,
    build: |hc, inputs| Ok(Workload::Deployment(deployment(hc, inputs)?)),
};

pub fn args(hc: &HostedCluster) -> Result<BTreeMap<&'static str, String>, BuildError> {
    let network = &hc.spec.network;
    let mut args = control_plane::base_args(KUBECONFIG, PORT);
    args.extend([
        ("cluster-name", name(hc)?),
        ("controllers", "*,bootstrapsigner,tokencleaner".to_string()),
        ("allocate-node-cidrs", "true".to_string()),
        ("cluster-cidr", network.pod_cidr.clone()),
        ("service-cluster-ip-range", network.service_cidr.clone()),
        (
            "cluster-signing-cert-file",
            "/etc/kubernetes/pki/ca.crt".to_string(),
        ),
        (
            "cluster-signing-key-file",
            "/etc/kubernetes/pki/ca.key".to_string(),
        ),
        ("root-ca-file", "/etc/kubernetes/pki/ca.crt".to_string()),
        ("client-ca-file", "/etc/kubernetes/pki/ca.crt".to_string()),
        (
            "requestheader-client-ca-file",
            "/etc/kubernetes/pki/front-proxy-ca.crt".to_string(),
        ),
        (
            "service-account-private-key-file",
            format!("/etc/kubernetes/pki/{SA_PRIVATE_KEY}"),
        ),
        ("use-service-account-credentials", "true".to_string()),
        ("profiling", "false".to_string()),
    ]);
    Ok(args)
}

pub fn deployment(hc: &HostedCluster, inputs: &Inputs) -> Result<Deployment, BuildError> {
    let cluster = name(hc)?;
    let spec = &hc.spec.controller_manager;
    let sa_key_path = format!("pki/{SA_PRIVATE_KEY}");
    let sources = vec![
        pair(&cluster, SecretRole::Ca, "pki/ca"),
        ca_cert(&cluster, SecretRole::FrontProxyCa, "pki/front-proxy-ca"),
        project(
            &cluster,
            SecretRole::ServiceAccount,
            &[(SA_PRIVATE_KEY, &sa_key_path)],
        ),
        project(
            &cluster,
            SecretRole::ControllerManagerKubeconfig,
            &[(KUBECONFIG_KEY, "controller-manager.conf")],
        ),
    ];
    control_plane::deployment(
        hc,
        inputs,
        ControlPlaneDeployment {
            component: Component::KubeControllerManager,
            spec,
            image: inputs.images.get(Component::KubeControllerManager)?,
            args: render_args(args(hc)?, &spec.extra_args),
            port: PORT,
            // kubeadm probes /healthz only; it also tells whether the pod may count as ready.
            liveness_path: "/healthz",
            readiness_path: "/healthz",
            default_requests: ("25m", "64Mi"),
            sources,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::testing::{assert_golden, hosted_cluster, inputs};

    #[test]
    fn deployment_matches_golden() {
        assert_golden(
            "kube-controller-manager",
            &deployment(&hosted_cluster(), &inputs()).expect("build"),
        );
    }

    #[test]
    fn every_file_a_flag_names_is_mounted() {
        let d = deployment(&hosted_cluster(), &inputs()).expect("build");
        let yaml = serde_yaml::to_string(&d).expect("yaml");
        for (flag, value) in args(&hosted_cluster()).expect("args") {
            if let Some(file) = value.strip_prefix("/etc/kubernetes/") {
                assert!(
                    yaml.contains(&format!("path: {file}")),
                    "--{flag}={value} is not mounted"
                );
            }
        }
    }

    #[test]
    fn signs_kubelet_certificates_and_runs_bootstrap_controllers() {
        let args = args(&hosted_cluster()).expect("args");
        assert_eq!(args["controllers"], "*,bootstrapsigner,tokencleaner");
        assert_eq!(args["cluster-signing-key-file"], "/etc/kubernetes/pki/ca.key");
        assert_eq!(args["use-service-account-credentials"], "true");
        assert_eq!(args["cluster-cidr"], "10.244.0.0/16");
    }
}
