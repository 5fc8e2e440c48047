//! The chart grants the operator exactly the permissions its code uses, in both modes: across
//! all namespaces (one ClusterRole) and for one namespace (`watchNamespace`: a Role there, a
//! ClusterRole for cluster-scoped resources only, and `--namespace` passed to the operator).
//!
//! The operator's table of permissions (operator/src/controllers/rbac.rs, each verb beside its
//! call site) is pinned to the committed `manifests/rbac/nestplane.yaml` by a unit test there.
//! This crate does not link the operator, so it closes the chain from the other end: the chart
//! as rendered now is that committed file, and the namespaced mode grants the same verbs split
//! by the scope the management cluster's API reports for each resource.
//! Renders the chart with the helm binary `make up` builds (or `NESTPLANE_E2E_HELM`).

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::discovery::{Discovery, Scope};
use nestplane_e2e::{client, helm, repo_root};
use serde::Deserialize;

const RELEASE: &str = "nestplane";
const RELEASE_NAMESPACE: &str = "nestplane-system";
/// What `make crds` renders the chart's RBAC into; the operator's unit test compares it with the
/// code's table of permissions.
const COMMITTED_RBAC: &str = "manifests/rbac/nestplane.yaml";

#[test]
fn all_namespaces_mode_renders_the_committed_rbac() -> Result<()> {
    // The same command as `make crds`.
    let rendered = helm_template(&["-s", "templates/rbac.yaml", "-s", "templates/serviceaccount.yaml"])?;
    let committed = std::fs::read_to_string(repo_root().join(COMMITTED_RBAC))
        .with_context(|| format!("reading {COMMITTED_RBAC}"))?;
    ensure!(
        rendered == committed,
        "the chart's RBAC differs from {COMMITTED_RBAC}: run `make crds`, then `cargo test -p \
         nestplane rbac` checks it against the operator's calls"
    );

    let manifests = render(&[])?;
    let roles = manifests.of_kind::<Role>("Role")?;
    ensure!(
        roles.iter().all(is_leader_election_role),
        "a Role other than leader election's in the all-namespaces mode"
    );
    let cluster_roles = manifests.of_kind::<ClusterRole>("ClusterRole")?;
    ensure!(cluster_roles.len() == 1, "ClusterRoles: {}", cluster_roles.len());
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

#[tokio::test]
async fn namespaced_mode_grants_a_role_there_and_only_cluster_scoped_resources_cluster_wide() -> Result<()> {
    let all_namespaces = render(&[])?.of_kind::<ClusterRole>("ClusterRole")?;
    ensure!(
        all_namespaces.len() == 1,
        "ClusterRoles: {}",
        all_namespaces.len()
    );
    let wanted = grants(&all_namespaces[0].rules.clone().unwrap_or_default());

    let watched = "tenants";
    let manifests = render(&["--set", &format!("watchNamespace={watched}")])?;

    let roles: Vec<Role> = manifests
        .of_kind::<Role>("Role")?
        .into_iter()
        .filter(|role| !is_leader_election_role(role))
        .collect();
    ensure!(roles.len() == 1, "Roles: {}", roles.len());
    ensure!(
        roles[0].metadata.namespace.as_deref() == Some(watched),
        "the Role is in {:?}, not {watched}",
        roles[0].metadata.namespace
    );
    let in_namespace = grants(&roles[0].rules.clone().unwrap_or_default());
    let bindings = manifests.of_kind::<RoleBinding>("RoleBinding")?;
    ensure!(
        bindings
            .iter()
            .any(|b| b.metadata.namespace.as_deref() == Some(watched)
                && b.role_ref.kind == "Role"
                && binds_operator(b.subjects.as_deref())),
        "no RoleBinding in {watched} gives the Role to the operator's ServiceAccount"
    );

    let cluster_roles = manifests.of_kind::<ClusterRole>("ClusterRole")?;
    ensure!(cluster_roles.len() == 1, "ClusterRoles: {}", cluster_roles.len());
    let cluster_wide = grants(&cluster_roles[0].rules.clone().unwrap_or_default());
    let cluster_role = cluster_roles[0].metadata.name.clone().unwrap_or_default();
    ensure!(
        manifests
            .of_kind::<ClusterRoleBinding>("ClusterRoleBinding")?
            .iter()
            .any(|b| b.role_ref.name == cluster_role && binds_operator(b.subjects.as_deref())),
        "no ClusterRoleBinding gives {cluster_role} to the operator's ServiceAccount"
    );

    // The same verbs as across all namespaces, neither more nor fewer.
    let granted: BTreeSet<Grant> = in_namespace.union(&cluster_wide).cloned().collect();
    ensure!(
        granted == wanted,
        "the namespaced mode grants {:?} beyond the all-namespaces mode and lacks {:?}",
        granted.difference(&wanted).collect::<Vec<_>>(),
        wanted.difference(&granted).collect::<Vec<_>>()
    );
    // Each where the API server scopes it: a cluster-scoped resource in a Role grants nothing,
    // a namespaced one in the ClusterRole grants it in every namespace.
    let cluster_scoped = cluster_scoped_resources().await?;
    let misplaced_in_role: Vec<_> = in_namespace
        .iter()
        .filter(|g| cluster_scoped.contains(&g.group_resource()))
        .collect();
    ensure!(
        misplaced_in_role.is_empty(),
        "cluster-scoped resources in the Role in {watched}: {misplaced_in_role:?}"
    );
    let namespaced_cluster_wide: Vec<_> = cluster_wide
        .iter()
        .filter(|g| !cluster_scoped.contains(&g.group_resource()))
        .collect();
    ensure!(
        namespaced_cluster_wide.is_empty(),
        "namespaced resources granted in every namespace by {cluster_role}: {namespaced_cluster_wide:?}"
    );

    let args = operator_args(&manifests)?;
    ensure!(
        args.iter().any(|a| a == &format!("--namespace={watched}")),
        "the operator runs with {args:?}, without --namespace={watched}"
    );
    Ok(())
}

/// One verb on one resource (`""` is the core group; a subresource keeps its `/status`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    group: String,
    resource: String,
    verb: String,
}

impl Grant {
    /// The group and top-level resource, as discovery names them.
    fn group_resource(&self) -> (String, String) {
        let resource = self.resource.split('/').next().unwrap_or_default();
        (self.group.clone(), resource.to_string())
    }
}

/// Every group × resource × verb the rules spell out. A rule restricted to resource names keeps
/// `[named]` on its resource, and wildcards stay as they are, so neither equals a full grant.
fn grants(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for rule in rules {
        let named = rule.resource_names.as_ref().is_some_and(|n| !n.is_empty());
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    grants.insert(Grant {
                        group: group.clone(),
                        resource: if named {
                            format!("{resource}[named]")
                        } else {
                            resource.clone()
                        },
                        verb: verb.clone(),
                    });
                }
            }
        }
    }
    grants
}

/// Group and plural of every cluster-scoped resource the management cluster serves.
async fn cluster_scoped_resources() -> Result<BTreeSet<(String, String)>> {
    let discovery = Discovery::new(client().await?)
        .run()
        .await
        .context("discovering the management cluster's API")?;
    Ok(discovery
        .groups()
        .flat_map(|group| group.recommended_resources())
        .filter(|(_, caps)| caps.scope == Scope::Cluster)
        .map(|(resource, _)| (resource.group, resource.plural))
        .collect())
}

/// The Role for the leader Lease in the operator's own namespace, in either mode; the operator's
/// unit test pins its verbs to the Lease calls.
fn is_leader_election_role(role: &Role) -> bool {
    role.metadata.namespace.as_deref() == Some(RELEASE_NAMESPACE)
        && role.rules.iter().flatten().all(|rule| {
            rule.api_groups.as_deref() == Some(&["coordination.k8s.io".to_string()][..])
                && rule.resources.as_deref() == Some(&["leases".to_string()][..])
        })
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
    let text = helm_template(extra)?;
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(serde_yaml::Value::deserialize)
        .filter(|doc| !matches!(doc, Ok(serde_yaml::Value::Null)))
        .collect::<Result<_, _>>()?;
    Ok(Manifests(docs))
}

/// The output of `helm template` of the chart with `extra` arguments, as `make crds` runs it.
fn helm_template(extra: &[&str]) -> Result<String> {
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
    Ok(String::from_utf8(output.stdout)?)
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
