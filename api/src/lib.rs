//! The nestplane.io/v1alpha1 API: types and CRDs only, no I/O. The crate depends on no async
//! runtime and no Kubernetes client, so code that needs only the types (the end-to-end tests,
//! later a CLI) builds without the operator.
#![forbid(unsafe_code)]

pub mod conditions;
mod hosted_cluster;
mod node_pool;

pub use hosted_cluster::*;
pub use node_pool::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

/// The HostedCluster CRD as installed: the derived one, with `metadata.name` bounded so that
/// the CEL rules about the name stay within the API server's cost budget.
pub fn hosted_cluster_crd() -> CustomResourceDefinition {
    with_bounded_name(HostedCluster::crd(), MAX_NAME_LENGTH)
}

/// The NodePool CRD as installed, its name bounded like [`hosted_cluster_crd`]'s.
pub fn node_pool_crd() -> CustomResourceDefinition {
    with_bounded_name(NodePool::crd(), MAX_NODE_POOL_NAME_LENGTH)
}

fn with_bounded_name(mut crd: CustomResourceDefinition, max: usize) -> CustomResourceDefinition {
    let name = JSONSchemaProps {
        type_: Some("string".into()),
        max_length: Some(max as i64),
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
    vec![hosted_cluster_crd(), node_pool_crd(), Worker::crd()]
}

/// Each CRD as its own YAML document, with the file name `make crds` commits it under
/// (`<plural>.<group>.yaml`).
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    crds()
        .iter()
        .map(|crd| Ok((format!("{}.yaml", crd.spec_name()), serde_yaml::to_string(crd)?)))
        .collect()
}

/// [`crds`] as one multi-document YAML stream, for `kubectl apply -f -`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let documents = crd_files()?.into_iter().map(|(_, yaml)| yaml).collect::<Vec<_>>();
    Ok(documents.join("---\n"))
}

/// The `metadata.name` of a CRD: `<plural>.<group>`.
trait SpecName {
    fn spec_name(&self) -> String;
}

impl SpecName for CustomResourceDefinition {
    fn spec_name(&self) -> String {
        format!("{}.{}", self.spec.names.plural, self.spec.group)
    }
}

#[cfg(test)]
mod tests {
    use super::{SUPPORTED_MINORS, crd_files};

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

    /// `make crds` writes the committed CRDs (`nestplane crd --dir`, i.e. [`crd_files`]); they
    /// must match the Rust types, in `manifests/crds` and in the chart's copy.
    #[test]
    fn committed_crds_match_generated() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        for dir in ["manifests/crds", "deploy/chart/nestplane/files/crds"] {
            let generated = crd_files().expect("yaml");
            let mut committed: Vec<String> = std::fs::read_dir(format!("{root}/{dir}"))
                .expect("CRD directory")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            committed.sort();
            let mut expected: Vec<String> = generated.iter().map(|(f, _)| f.clone()).collect();
            expected.sort();
            assert_eq!(
                committed, expected,
                "{dir} holds other CRD files: run `make crds`"
            );
            for (file, yaml) in generated {
                let path = format!("{root}/{dir}/{file}");
                let on_disk = std::fs::read_to_string(&path).expect("committed CRD");
                assert!(
                    on_disk == yaml,
                    "{path} is stale: run `make crds` and commit the result"
                );
            }
        }
    }
}
