//! The Deployment shape kube-controller-manager and kube-scheduler share: leader-elected
//! replicas, HTTPS probes, and files projected under /etc/kubernetes. Each component passes
//! what differs as data; nothing here asks which component called.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

use super::{
    BuildError, Component, Inputs, container_security, kube_apiserver, launch, meta, object_meta,
    pod_template, resources, selector,
};
use crate::api::{ComponentSpec, HostedCluster};

/// Flags kube-controller-manager and kube-scheduler share, as kubeadm sets them: one kubeconfig
/// for talking to the API server and for checking their own clients, serving on `port` on every
/// address, with leader election.
pub(crate) fn base_args(kubeconfig: &str, port: i32) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("kubeconfig", kubeconfig.to_string()),
        ("authentication-kubeconfig", kubeconfig.to_string()),
        ("authorization-kubeconfig", kubeconfig.to_string()),
        ("bind-address", "0.0.0.0".to_string()),
        ("secure-port", port.to_string()),
        ("leader-elect", "true".to_string()),
    ])
}

/// What differs between the control-plane Deployments built here.
pub(crate) struct ControlPlaneDeployment<'a> {
    pub component: Component,
    pub spec: &'a ComponentSpec,
    pub image: &'a str,
    /// Rendered `--name=value` flags.
    pub args: Vec<String>,
    pub port: i32,
    /// HTTPS path of the liveness probe.
    pub liveness_path: &'static str,
    /// HTTPS path of the readiness (and startup) probe.
    pub readiness_path: &'static str,
    /// CPU and memory requested when the spec gives no resources. Requests are small so that
    /// many control planes share a node; limits are the user's call.
    pub default_requests: (&'static str, &'static str),
    /// Projected-volume sources, mounted under /etc/kubernetes.
    pub sources: Vec<Value>,
}

pub(crate) fn deployment(
    hc: &HostedCluster,
    inputs: &Inputs,
    shape: ControlPlaneDeployment,
) -> Result<Deployment, BuildError> {
    let ControlPlaneDeployment {
        component,
        spec,
        image,
        args,
        port,
        liveness_path,
        readiness_path,
        default_requests: (cpu, memory),
        sources,
    } = shape;
    let cluster = super::name(hc)?;
    let probe = |path: &str, period: i32, failures: i32| {
        json!({
            "httpGet": { "path": path, "port": "https", "scheme": "HTTPS" },
            "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures,
        })
    };
    meta::object(
        "control-plane deployment",
        object_meta(hc, component.workload_name(&cluster), Some(component))?,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "spec": {
                "replicas": spec.replicas,
                "selector": { "matchLabels": selector(hc, component)? },
                "template": pod_template(hc, component, inputs, json!({
                    "initContainers": [launch::install_container(&inputs.tunnel_image)],
                    "containers": [{
                        "name": component.as_str(),
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        // Started the moment a Ready API server pod takes connections.
                        "command": launch::command(
                            &[kube_apiserver::internal_url(hc, inputs.apiserver_port)?],
                            launch::Wait::All,
                            component.as_str(),
                        )?,
                        "args": args,
                        "ports": [{ "name": "https", "containerPort": port }],
                        // Started once it would be ready, looked at every second (five minutes
                        // at most): the kubelet runs the readiness probe the moment this one
                        // passes, where a failing first readiness probe would wait its period.
                        "startupProbe": probe(readiness_path, 1, 300),
                        "readinessProbe": probe(readiness_path, 10, 3),
                        "livenessProbe": probe(liveness_path, 10, 8),
                        "resources": resources("control-plane resources", &spec.resources, cpu, memory)?,
                        "securityContext": container_security(),
                        "volumeMounts": [
                            { "name": "config", "mountPath": "/etc/kubernetes", "readOnly": true },
                            launch::volume_mount(),
                        ],
                    }],
                    "volumes": [
                        { "name": "config", "projected": { "defaultMode": 0o440, "sources": sources } },
                        launch::volume(),
                    ],
                }))?
            }
        }),
    )
}
