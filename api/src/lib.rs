//! The nestplane.io/v1alpha1 API: types and CRDs only, no I/O. The crate depends on no async
//! runtime and no Kubernetes client, so code that needs only the types (the end-to-end tests,
//! later a CLI) builds without the operator.
#![forbid(unsafe_code)]

pub mod conditions;
mod hosted_cluster;

pub use hosted_cluster::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

/// The HostedCluster CRD as installed: the derived one, with `metadata.name` bounded so that
/// the CEL rules about the name stay within the API server's cost budget.
pub fn hosted_cluster_crd() -> CustomResourceDefinition {
    let mut crd = HostedCluster::crd();
    let name = JSONSchemaProps {
        type_: Some("string".into()),
        max_length: Some(MAX_NAME_LENGTH as i64),
        ..JSONSchemaProps::default()
    };
    let metadata = JSONSchemaProps {
        type_: Some("object".into()),
        properties: Some([("name".to_string(), name)].into()),
        ..JSONSchemaProps::default()
    };
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema
                .properties
                .get_or_insert_with(Default::default)
                .insert("metadata".to_string(), metadata.clone());
        }
    }
    crd
}

/// Every CRD of the API, in the order `nestplane crd` prints them and `make crds` installs them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![hosted_cluster_crd()]
}

/// [`crds`] as one multi-document YAML stream. With a single CRD the output is that CRD's
/// document alone (no `---`), byte-identical to what `make crds` committed before.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let documents = crds()
        .iter()
        .map(serde_yaml::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(documents.join("---\n"))
}

#[cfg(test)]
mod tests {
    use super::{SUPPORTED_MINORS, crds_yaml};

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

    /// `make crds` writes the committed CRDs (`nestplane crd`, i.e. [`crds_yaml`]); they must
    /// match the Rust types.
    #[test]
    fn committed_crd_matches_generated() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/crds/hostedclusters.nestplane.io.yaml"
        );
        let committed = std::fs::read_to_string(path).expect("committed CRD");
        let generated = crds_yaml().expect("yaml");
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
