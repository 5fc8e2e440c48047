//! kube-scheduler.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;

use super::kube_controller_manager::{ControlPlaneContainer, control_plane_deployment};
use super::kubeconfig::KUBECONFIG_KEY;
use super::secrets::{SecretRole, project};
use super::*;

pub const PORT: i32 = 10259;
const KUBECONFIG: &str = "/etc/kubernetes/scheduler.conf";

pub fn depends_on() -> &'static [Component] {
    &[Component::KubeApiserver]
}

pub fn required_certs() -> &'static [SecretRole] {
    &[SecretRole::SchedulerKubeconfig]
}

pub fn args() -> BTreeMap<&'static str, String> {
    let mut args = controller_base_args(KUBECONFIG, PORT);
    args.insert("profiling", "false".to_string());
    args
}

pub fn deployment(hc: &HostedCluster, inputs: &Inputs) -> Result<Deployment, BuildError> {
    let cluster = name(hc);
    let spec = &hc.spec.scheduler;
    let sources = vec![project(
        &cluster,
        SecretRole::SchedulerKubeconfig,
        &[(KUBECONFIG_KEY, "scheduler.conf")],
    )];
    control_plane_deployment(
        hc,
        ControlPlaneContainer {
            component: Component::KubeScheduler,
            image: &inputs.images.kube_scheduler,
            inputs_hash: inputs.hash(Component::KubeScheduler),
            args: render_args(args(), &spec.extra_args),
            port: PORT,
            // As kubeadm: /livez keeps it running, /readyz gates readiness.
            probe_paths: ("/livez", "/readyz"),
            sources,
        },
        spec,
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
