//! The nestplane.io/v1alpha1 API: types only, no I/O.
pub mod conditions;
mod hosted_cluster;

pub use hosted_cluster::*;

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::{HostedCluster, SUPPORTED_MINORS};

    #[test]
    fn the_version_rule_admits_every_supported_minor() {
        for minor in SUPPORTED_MINORS {
            let escaped = format!("^v{}", minor.replace('.', r"\\."));
            assert!(
                super::hosted_cluster::SUPPORTED_VERSION.contains(&escaped),
                "the CEL version rule lacks {minor}"
            );
        }
    }

    /// `make crds` writes the committed CRD; it must match the Rust types.
    #[test]
    fn committed_crd_matches_generated() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/crds/hostedclusters.nestplane.io.yaml"
        );
        let committed = std::fs::read_to_string(path).expect("committed CRD");
        let generated = serde_yaml::to_string(&HostedCluster::crd()).expect("yaml");
        assert!(
            committed == generated,
            "{path} is stale: run `make crds` and commit the result"
        );
        let chart_copy = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/chart/nestplane/files/crds/hostedclusters.nestplane.io.yaml"
        );
        assert!(
            std::fs::read_to_string(chart_copy).expect("chart's CRD") == generated,
            "{chart_copy} is stale: run `make crds` and commit the result"
        );
    }
}
