//! kube-controller-manager: signs kubelet certificates and runs the bootstrap-token controllers
//! that a stock `kubeadm join` needs.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use super::kubeconfig::KUBECONFIG_KEY;
use super::secrets::{SA_PRIVATE_KEY, SecretRole, ca_cert, pair, project};
use super::*;

pub const PORT: i32 = 10257;
const KUBECONFIG: &str = "/etc/kubernetes/controller-manager.conf";

pub fn depends_on() -> &'static [Component] {
    &[Component::KubeApiserver]
}

pub fn required_certs() -> &'static [SecretRole] {
    &[
        SecretRole::Ca,
        SecretRole::FrontProxyCa,
        SecretRole::ServiceAccount,
        SecretRole::ControllerManagerKubeconfig,
    ]
}

pub fn args(hc: &HostedCluster) -> BTreeMap<&'static str, String> {
    let network = &hc.spec.network;
    let mut args = controller_base_args(KUBECONFIG, PORT);
    args.extend([
        ("cluster-name", name(hc)),
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
    args
}

pub fn deployment(hc: &HostedCluster, inputs: &Inputs) -> Result<Deployment, BuildError> {
    let cluster = name(hc);
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
    control_plane_deployment(
        hc,
        ControlPlaneContainer {
            component: Component::KubeControllerManager,
            image: &inputs.images.kube_controller_manager,
            inputs_hash: inputs.hash(Component::KubeControllerManager),
            args: render_args(args(hc), &spec.extra_args),
            port: PORT,
            // kubeadm probes /healthz only; it also tells whether the pod may count as ready.
            probe_paths: ("/healthz", "/healthz"),
            sources,
        },
        spec,
    )
}

/// What differs between the kube-controller-manager and kube-scheduler containers.
pub(crate) struct ControlPlaneContainer<'a> {
    pub component: Component,
    pub image: &'a str,
    pub inputs_hash: String,
    pub args: Vec<String>,
    pub port: i32,
    /// HTTPS paths of the liveness (and startup) probe and of the readiness probe.
    pub probe_paths: (&'static str, &'static str),
    /// Projected under /etc/kubernetes.
    pub sources: Vec<serde_json::Value>,
}

/// The Deployment shape kube-controller-manager and kube-scheduler share: leader-elected
/// replicas, HTTPS probes, and files projected under /etc/kubernetes.
pub(crate) fn control_plane_deployment(
    hc: &HostedCluster,
    container: ControlPlaneContainer,
    spec: &crate::api::ComponentSpec,
) -> Result<Deployment, BuildError> {
    let ControlPlaneContainer {
        component,
        image,
        inputs_hash,
        args,
        port,
        probe_paths: (live, ready),
        sources,
    } = container;
    let cluster = name(hc);
    // Requests are small so that many control planes share a node; limits are the user's call.
    let (cpu, memory) = match component {
        Component::KubeControllerManager => ("25m", "64Mi"),
        _ => ("10m", "32Mi"),
    };
    let probe = |path: &str, failures: i32| {
        json!({
            "httpGet": { "path": path, "port": "https", "scheme": "HTTPS" },
            "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": failures,
        })
    };
    typed(
        "control-plane deployment",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": component.workload_name(&cluster), "namespace": namespace(hc),
                "labels": labels(hc, Some(component)),
                "ownerReferences": [owner_reference(hc)],
            },
            "spec": {
                "replicas": spec.replicas,
                "selector": { "matchLabels": selector(hc, component) },
                "template": {
                    "metadata": {
                        "labels": labels(hc, Some(component)),
                        "annotations": { INPUTS_HASH_ANNOTATION: inputs_hash },
                    },
                    "spec": {
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "securityContext": pod_security(),
                        "affinity": spread(hc, component),
                        "containers": [{
                            "name": component.as_str(),
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": [component.as_str()],
                            "args": args,
                            "ports": [{ "name": "https", "containerPort": port }],
                            "startupProbe": probe(live, 30),
                            "readinessProbe": probe(ready, 3),
                            "livenessProbe": probe(live, 8),
                            "resources": resources(&spec.resources, cpu, memory),
                            "securityContext": container_security(),
                            "volumeMounts": [{ "name": "config", "mountPath": "/etc/kubernetes", "readOnly": true }],
                        }],
                        "volumes": [{ "name": "config", "projected": { "defaultMode": 0o440, "sources": sources } }],
                    }
                }
            }
        }),
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
        for (flag, value) in args(&hosted_cluster()) {
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
        let args = args(&hosted_cluster());
        assert_eq!(args["controllers"], "*,bootstrapsigner,tokencleaner");
        assert_eq!(args["cluster-signing-key-file"], "/etc/kubernetes/pki/ca.key");
        assert_eq!(args["use-service-account-credentials"], "true");
        assert_eq!(args["cluster-cidr"], "10.244.0.0/16");
    }
}
