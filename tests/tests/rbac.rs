//! The chart grants the operator exactly the permissions its code uses
//! (`nestplane::controllers::rbac::PERMISSIONS`, each with its call site), in both modes:
//! across all namespaces (one ClusterRole) and for one namespace (`watchNamespace`: a Role
//! there, a ClusterRole for nodes only, and `--namespace` passed to the operator).
//! Renders the chart with the helm binary `make up` builds (or `NESTPLANE_E2E_HELM`).

use std::process::Command;

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use nestplane::controllers::rbac::{Scope, differences, required};
use nestplane_e2e::{helm, repo_root};
use serde::Deserialize;

const RELEASE: &str = "nestplane";
const RELEASE_NAMESPACE: &str = "nestplane-system";

#[test]
fn all_namespaces_mode_grants_exactly_what_the_code_uses() -> Result<()> {
    let manifests = render(&[])?;
    ensure!(
        manifests.of_kind::<Role>("Role")?.is_empty(),
        "a Role in the all-namespaces mode"
    );
    let cluster_roles = manifests.of_kind::<ClusterRole>("ClusterRole")?;
    ensure!(cluster_roles.len() == 1, "ClusterRoles: {}", cluster_roles.len());
    let rules = cluster_roles[0].rules.clone().unwrap_or_default();
    let found = differences(&rules, &required(None));
    ensure!(found.is_empty(), "ClusterRole {RELEASE}:\n{}", found.join("\n"));
    let bindings = manifests.of_kind::<ClusterRoleBinding>("ClusterRoleBinding")?;
    ensure!(
        bindings
            .iter()
            .any(|b| b.role_ref.name == RELEASE && binds_operator(b.subjects.as_deref())),
        "no ClusterRoleBinding gives {RELEASE} to the operator's ServiceAccount"
    );
    ensure!(
        !operator_args(&manifests)?
            .iter()
            .any(|a| a.starts_with("--namespace")),
        "--namespace passed in the all-namespaces mode"
    );
    Ok(())
}

#[test]
fn namespaced_mode_grants_a_role_there_and_only_nodes_cluster_wide() -> Result<()> {
    let watched = "tenants";
    let manifests = render(&["--set", &format!("watchNamespace={watched}")])?;

    let roles = manifests.of_kind::<Role>("Role")?;
    ensure!(roles.len() == 1, "Roles: {}", roles.len());
    ensure!(
        roles[0].metadata.namespace.as_deref() == Some(watched),
        "the Role is in {:?}, not {watched}",
        roles[0].metadata.namespace
    );
    let found = differences(
        &roles[0].rules.clone().unwrap_or_default(),
        &required(Some(Scope::Namespace)),
    );
    ensure!(found.is_empty(), "Role in {watched}:\n{}", found.join("\n"));
    let bindings = manifests.of_kind::<RoleBinding>("RoleBinding")?;
    ensure!(
        bindings
            .iter()
            .any(|b| b.metadata.namespace.as_deref() == Some(watched)
                && b.role_ref.kind == "Role"
                && binds_operator(b.subjects.as_deref())),
        "no RoleBinding in {watched} gives the Role to the operator's ServiceAccount"
    );

    // Cluster-wide: the nodes, and nothing else.
    let cluster_roles = manifests.of_kind::<ClusterRole>("ClusterRole")?;
    ensure!(cluster_roles.len() == 1, "ClusterRoles: {}", cluster_roles.len());
    let found = differences(
        &cluster_roles[0].rules.clone().unwrap_or_default(),
        &required(Some(Scope::Cluster)),
    );
    ensure!(found.is_empty(), "ClusterRole:\n{}", found.join("\n"));
    let cluster_role = cluster_roles[0].metadata.name.clone().unwrap_or_default();
    ensure!(
        manifests
            .of_kind::<ClusterRoleBinding>("ClusterRoleBinding")?
            .iter()
            .any(|b| b.role_ref.name == cluster_role && binds_operator(b.subjects.as_deref())),
        "no ClusterRoleBinding gives {cluster_role} to the operator's ServiceAccount"
    );

    let args = operator_args(&manifests)?;
    ensure!(
        args.iter().any(|a| a == &format!("--namespace={watched}")),
        "the operator runs with {args:?}, without --namespace={watched}"
    );
    Ok(())
}

fn binds_operator(subjects: Option<&[k8s_openapi::api::rbac::v1::Subject]>) -> bool {
    subjects.unwrap_or_default().iter().any(|s| {
        s.kind == "ServiceAccount" && s.name == RELEASE && s.namespace.as_deref() == Some(RELEASE_NAMESPACE)
    })
}

fn operator_args(manifests: &Manifests) -> Result<Vec<String>> {
    let deployments = manifests.of_kind::<Deployment>("Deployment")?;
    let container = deployments
        .first()
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .ok_or_else(|| anyhow!("the chart renders no operator container"))?;
    Ok(container.args.clone().unwrap_or_default())
}

struct Manifests(Vec<serde_yaml::Value>);

impl Manifests {
    fn of_kind<K: serde::de::DeserializeOwned>(&self, kind: &str) -> Result<Vec<K>> {
        self.0
            .iter()
            .filter(|doc| doc.get("kind").and_then(|k| k.as_str()) == Some(kind))
            .map(|doc| serde_yaml::from_value(doc.clone()).with_context(|| format!("parsing a {kind}")))
            .collect()
    }
}

/// `helm template` of the chart with `extra` arguments, as documents.
fn render(extra: &[&str]) -> Result<Manifests> {
    let chart = repo_root().join("deploy/chart/nestplane");
    let helm = helm()?;
    let output = Command::new(&helm)
        .args(["template", RELEASE])
        .arg(&chart)
        .args([
            "--namespace",
            RELEASE_NAMESPACE,
            "--kube-version",
            &kubernetes_version()?,
        ])
        .args(extra)
        .output()
        .with_context(|| format!("running {}", helm.display()))?;
    if !output.status.success() {
        bail!(
            "helm template failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8(output.stdout)?;
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(serde_yaml::Value::deserialize)
        .filter(|doc| !matches!(doc, Ok(serde_yaml::Value::Null)))
        .collect::<Result<_, _>>()?;
    Ok(Manifests(docs))
}

/// `KUBERNETES_VERSION` of `hack/versions.env`: the chart requires a recent one, and
/// `helm template` assumes an old one unless told.
fn kubernetes_version() -> Result<String> {
    let path = repo_root().join("hack/versions.env");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("KUBERNETES_VERSION="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .ok_or_else(|| anyhow!("{} sets no KUBERNETES_VERSION", path.display()))
}
