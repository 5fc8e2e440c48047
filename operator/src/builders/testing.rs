//! Fixtures and golden-file comparison for builder tests.
use std::collections::BTreeMap;

use super::*;
use crate::api::{HostedCluster, HostedClusterSpec};

pub fn hosted_cluster() -> HostedCluster {
    let spec: HostedClusterSpec =
        serde_json::from_value(serde_json::json!({ "version": "v1.35.4" })).expect("spec");
    let mut hc = HostedCluster::new("demo", spec);
    hc.metadata.namespace = Some("team-a".into());
    hc.metadata.uid = Some("11111111-2222-3333-4444-555555555555".into());
    hc
}

pub fn inputs() -> Inputs {
    Inputs {
        images: Images::for_version("v1.35.4", "registry.k8s.io").expect("images"),
        endpoint: Endpoint {
            host: "192.0.2.2".into(),
            port: 31443,
        },
        apiserver_port: 31443,
        advertise_address: Some("192.0.2.2".into()),
        inputs_hash: Component::ALL
            .iter()
            .map(|c| (*c, format!("hash-of-{}", c.as_str())))
            .collect::<BTreeMap<_, _>>(),
        etcd: etcd::EtcdInputs::default(),
        tunnel_image: "ghcr.io/nestplane/nestplane:v0.1.0".into(),
    }
}

/// Compares `object` with `testdata/<name>.yaml`; `UPDATE_GOLDEN=1` rewrites the file.
pub fn assert_golden<T: serde::Serialize>(name: &str, object: &T) {
    assert_golden_text(name, &serde_yaml::to_string(object).expect("yaml"));
}

/// Compares `actual`, a rendered document, with `testdata/<name>.yaml`; `UPDATE_GOLDEN=1`
/// rewrites the file.
pub fn assert_golden_text(name: &str, actual: &str) {
    let path = format!("{}/src/builders/testdata/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{name} differs from {path} (run with UPDATE_GOLDEN=1 and review the diff):\n{actual}"
    );
}
