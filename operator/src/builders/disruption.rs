//! PodDisruptionBudgets: a node drain may take one etcd member of three, or one API server of
//! several, at a time. A single replica gets none: a budget for it would block every drain.
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::json;

use super::{BuildError, Component, HostedCluster, meta, name, object_meta, selector};

/// The budgets this spec wants; a budget no longer wanted is removed by the orphan sweep.
pub fn pod_disruption_budgets(hc: &HostedCluster) -> Result<Vec<PodDisruptionBudget>, BuildError> {
    Component::ALL
        .into_iter()
        .filter(|c| (c.def().wants_disruption_budget)(hc))
        .map(|component| budget(hc, component))
        .collect()
}

pub fn budget_name(cluster: &str, component: Component) -> String {
    component.workload_name(cluster)
}

fn budget(hc: &HostedCluster, component: Component) -> Result<PodDisruptionBudget, BuildError> {
    meta::object(
        "pod disruption budget",
        object_meta(hc, budget_name(&name(hc)?, component), Some(component))?,
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "spec": {
                "maxUnavailable": 1,
                "selector": { "matchLabels": selector(hc, component)? },
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::testing::hosted_cluster;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn names(hc: &HostedCluster) -> Vec<String> {
        pod_disruption_budgets(hc)
            .expect("build")
            .into_iter()
            .filter_map(|b| b.metadata.name)
            .collect()
    }

    #[test]
    fn single_replicas_get_no_budget() {
        assert!(names(&hosted_cluster()).is_empty());
    }

    #[test]
    fn three_etcd_members_and_two_api_servers_may_lose_one_each() {
        let mut hc = hosted_cluster();
        hc.spec.etcd.replicas = 3;
        hc.spec.api_server.replicas = 2;
        assert_eq!(names(&hc), ["demo-etcd", "demo-kube-apiserver"]);
        for budget in pod_disruption_budgets(&hc).expect("build") {
            let spec = budget.spec.expect("spec");
            assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
            let selector = spec.selector.and_then(|s| s.match_labels).expect("selector");
            assert_eq!(selector["app.kubernetes.io/instance"], "demo");
        }
    }

    #[test]
    fn one_api_server_with_three_etcd_members_covers_etcd_only() {
        let mut hc = hosted_cluster();
        hc.spec.etcd.replicas = 3;
        assert_eq!(names(&hc), ["demo-etcd"]);
    }
}
