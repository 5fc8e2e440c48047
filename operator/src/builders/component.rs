//! The control-plane components as data. Each component's file declares one
//! [`ComponentDef`] (its name, workload kind, dependencies, mounted Secrets and ConfigMaps,
//! condition type, image and build function); status, observation, inputs hashes and images
//! iterate [`Component::ALL`] and read the record, so none of them matches on a component.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ConfigMap;

use super::secrets::SecretRole;
use super::{BuildError, Inputs, etcd, kube_apiserver, kube_controller_manager, kube_scheduler};
use crate::api::HostedCluster;

/// A control-plane component: the key under which its record, inputs hash, image and observed
/// state are found. Declaration order is start order (and the order of its conditions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
}

/// What a component is, declared in the component's own file.
#[derive(Debug)]
pub struct ComponentDef {
    /// Value of the `app.kubernetes.io/component` label, container name and workload suffix.
    pub name: &'static str,
    pub kind: WorkloadKind,
    /// Components that must be available before this one is rolled out.
    pub depends_on: &'static [Component],
    /// The Secrets the component mounts: their contents make up its inputs hash.
    pub required_certs: &'static [SecretRole],
    /// The ConfigMaps the component mounts: their contents are part of its inputs hash.
    pub config_maps: fn(&HostedCluster) -> Result<Vec<ConfigMap>, BuildError>,
    /// Type of the status condition that reports it (a constant of `api::conditions`).
    pub condition_type: &'static str,
    /// What, beyond ready pods, makes it available.
    pub availability: Availability,
    /// Its container image for a Kubernetes version, from a registry.
    pub image: fn(version: &str, registry: &str) -> Result<String, BuildError>,
    /// Whether this spec runs enough replicas for a PodDisruptionBudget to leave drains room.
    pub wants_disruption_budget: fn(&HostedCluster) -> bool,
    /// Its workload, of kind `kind`.
    pub build: fn(&HostedCluster, &Inputs) -> Result<Workload, BuildError>,
}

/// What a component's condition checks beyond its pods being ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Ready pods are enough.
    Pods,
    /// It serves the hosted API: it waits for the endpoint, and is available once the hosted
    /// API answers /readyz.
    HostedApi,
    /// It keeps the hosted cluster's data: lost data or a full disk make it unavailable
    /// although its pods are ready.
    ClusterData,
}

impl Component {
    pub const ALL: [Component; 4] = [
        Component::Etcd,
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
    ];

    /// The component's record: the one place that maps a key to its file.
    pub fn def(self) -> &'static ComponentDef {
        match self {
            Component::Etcd => &etcd::COMPONENT,
            Component::KubeApiserver => &kube_apiserver::COMPONENT,
            Component::KubeControllerManager => &kube_controller_manager::COMPONENT,
            Component::KubeScheduler => &kube_scheduler::COMPONENT,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.def().name
    }

    /// Name of the component's workload (StatefulSet or Deployment).
    pub fn workload_name(self, cluster: &str) -> String {
        format!("{cluster}-{}", self.as_str())
    }

    pub fn depends_on(self) -> &'static [Component] {
        self.def().depends_on
    }

    /// Components that need this one, directly or through others, in start order.
    pub fn dependents(self) -> Vec<Component> {
        let mut dependents: Vec<Component> = Vec::new();
        // Dependencies point backwards in start order, so one pass finds every path.
        for component in Component::ALL {
            if component
                .depends_on()
                .iter()
                .any(|d| *d == self || dependents.contains(d))
            {
                dependents.push(component);
            }
        }
        dependents
    }

    pub fn required_certs(self) -> &'static [SecretRole] {
        self.def().required_certs
    }

    pub fn config_maps(self, hc: &HostedCluster) -> Result<Vec<ConfigMap>, BuildError> {
        (self.def().config_maps)(hc)
    }

    pub fn workload(self, hc: &HostedCluster, inputs: &Inputs) -> Result<Workload, BuildError> {
        (self.def().build)(hc, inputs)
    }
}

/// A component that mounts no ConfigMap.
pub(crate) fn no_config_maps(_: &HostedCluster) -> Result<Vec<ConfigMap>, BuildError> {
    Ok(Vec::new())
}

/// The image of a Kubernetes release binary: `<registry>/<name>:<version>`.
pub(crate) fn release_image(registry: &str, name: &str, version: &str) -> String {
    format!("{registry}/{name}:{version}")
}

/// The kind of object that runs a component's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Members keep their claims across restarts.
    StatefulSet,
    Deployment,
}

/// What runs a component's pods.
#[derive(Debug, Clone)]
pub enum Workload {
    /// etcd: members keep their claims across restarts.
    StatefulSet(StatefulSet),
    Deployment(Deployment),
}

impl Workload {
    pub fn kind(&self) -> WorkloadKind {
        match self {
            Workload::StatefulSet(_) => WorkloadKind::StatefulSet,
            Workload::Deployment(_) => WorkloadKind::Deployment,
        }
    }
}

/// Container images of one control plane, by component. They follow `spec.version` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images(BTreeMap<Component, String>);

impl Images {
    pub fn for_version(version: &str, registry: &str) -> Result<Images, BuildError> {
        Component::ALL
            .into_iter()
            .map(|c| Ok((c, (c.def().image)(version, registry)?)))
            .collect::<Result<_, _>>()
            .map(Images)
    }

    pub fn get(&self, component: Component) -> Result<&str, BuildError> {
        self.0
            .get(&component)
            .map(String::as_str)
            .ok_or_else(|| BuildError::Invalid {
                what: "images",
                message: format!("no image for {}", component.as_str()),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::api::conditions::{
        API_SERVER_AVAILABLE, CONTROLLER_MANAGER_AVAILABLE, ETCD_AVAILABLE, SCHEDULER_AVAILABLE,
    };
    use crate::builders::testing;

    fn images(version: &str) -> Result<Vec<String>, BuildError> {
        let images = Images::for_version(version, "registry.k8s.io")?;
        Component::ALL
            .into_iter()
            .map(|c| images.get(c).map(str::to_string))
            .collect()
    }

    #[test]
    fn every_supported_minor_has_an_etcd_image() {
        for minor in crate::api::SUPPORTED_MINORS {
            let images = Images::for_version(&format!("v{minor}.0"), "registry.k8s.io").expect(minor);
            let etcd = images.get(Component::Etcd).expect("etcd image");
            assert!(etcd.starts_with("registry.k8s.io/etcd:"), "{images:?}");
        }
    }

    #[test]
    fn images_follow_the_spec_version_only() {
        assert_eq!(
            images("v1.35.4").expect("images"),
            [
                "registry.k8s.io/etcd:3.6.16-0",
                "registry.k8s.io/kube-apiserver:v1.35.4",
                "registry.k8s.io/kube-controller-manager:v1.35.4",
                "registry.k8s.io/kube-scheduler:v1.35.4",
            ]
        );
        assert!(images("v1.34.2").is_err());
    }

    #[test]
    fn dependencies_point_backwards_in_start_order() {
        for component in Component::ALL {
            for dependency in component.depends_on() {
                assert!(dependency < &component, "{component:?} depends on {dependency:?}");
            }
        }
        assert_eq!(Component::KubeApiserver.depends_on(), [Component::Etcd]);
    }

    #[test]
    fn everything_else_needs_etcd_and_nothing_needs_the_scheduler() {
        assert_eq!(
            Component::Etcd.dependents(),
            [
                Component::KubeApiserver,
                Component::KubeControllerManager,
                Component::KubeScheduler
            ]
        );
        assert_eq!(Component::KubeScheduler.dependents(), []);
    }

    /// Names and condition types are API (labels, object names, conditions people watch).
    #[test]
    fn names_and_condition_types_are_as_published() {
        let published: Vec<_> = Component::ALL
            .iter()
            .map(|c| (c.as_str(), c.def().condition_type))
            .collect();
        assert_eq!(
            published,
            [
                ("etcd", ETCD_AVAILABLE),
                ("kube-apiserver", API_SERVER_AVAILABLE),
                ("kube-controller-manager", CONTROLLER_MANAGER_AVAILABLE),
                ("kube-scheduler", SCHEDULER_AVAILABLE),
            ]
        );
        let types: BTreeSet<_> = published.iter().map(|(_, t)| t).collect();
        assert_eq!(types.len(), Component::ALL.len(), "one condition per component");
    }

    /// Observation looks a workload up by the record's kind: the build must agree with it.
    #[test]
    fn each_workload_is_of_the_kind_its_record_declares() {
        let (hc, inputs) = (testing::hosted_cluster(), testing::inputs());
        for component in Component::ALL {
            let workload = component.workload(&hc, &inputs).expect("build");
            assert_eq!(workload.kind(), component.def().kind, "{component:?}");
        }
    }
}
