//! kube-scheduler.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;

use super::control_plane::{self, ControlPlaneDeployment};
use super::kubeconfig::KUBECONFIG_KEY;
use super::secrets::{SecretRole, project};
use super::*;
use crate::api::conditions::SCHEDULER_AVAILABLE;

pub const PORT: i32 = 10259;
const KUBECONFIG: &str = "/etc/kubernetes/scheduler.conf";

pub const COMPONENT: ComponentDef = ComponentDef {
    name: "kube-scheduler",
    kind: WorkloadKind::Deployment,
    depends_on: &[Component::KubeApiserver],
    required_certs: &[SecretRole::SchedulerKubeconfig],
    config_maps: component::no_config_maps,
    condition_type: SCHEDULER_AVAILABLE,
    availability: Availability::Pods,
    image: |version, registry| Ok(component::release_image(registry, "kube-scheduler", version)),
    // Leader-elected: a drain that takes the leader only moves the lease.
    wants_disruption_budget: |_| false,
    build: |hc, inputs| Ok(Workload::Deployment(deployment(hc, inputs)?)),
};

pub fn args() -> BTreeMap<&'static str, String> {
    let mut args = control_plane::base_args(KUBECONFIG, PORT);
    args.insert("profiling", "false".to_string());
    args
}

pub fn deployment(hc: &HostedCluster, inputs: &Inputs) -> Result<Deployment, BuildError> {
    let cluster = name(hc)?;
    let spec = &hc.spec.scheduler;
    let sources = vec![project(
        &cluster,
        SecretRole::SchedulerKubeconfig,
        &[(KUBECONFIG_KEY, "scheduler.conf")],
    )];
    control_plane::deployment(
        hc,
        inputs,
        ControlPlaneDeployment {
            component: Component::KubeScheduler,
            spec,
            image: inputs.images.get(Component::KubeScheduler)?,
            args: render_args(args(), &spec.extra_args),
            port: PORT,
            // As kubeadm: /livez keeps it running, /readyz gates readiness.
            liveness_path: "/livez",
            readiness_path: "/readyz",
            default_requests: ("10m", "32Mi"),
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
            "kube-scheduler",
            &deployment(&hosted_cluster(), &inputs()).expect("build"),
        );
    }
}
