//! Every permission the operator uses, in one place, each next to the calls that need it. The
//! chart's `templates/rbac.yaml` grants exactly these: a unit test compares them with the
//! rendered `manifests/rbac/nestplane.yaml`, and `tests/tests/rbac.rs` with `helm template`
//! in both modes. A new kube call adds its verb here and in the chart.
use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::PolicyRule;

/// Where a permission is granted when the operator watches one namespace (`--namespace`):
/// namespaced resources in a Role there, cluster-scoped ones in a ClusterRole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespace,
    Cluster,
    /// In a Role in the operator's own namespace, whichever namespaces it watches.
    OperatorNamespace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub api_group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub scope: Scope,
}

/// Server-side apply of an object that does not exist yet is authorised as `create` too.
pub const PERMISSIONS: &[Permission] = &[
    // controllers/mod.rs: `Controller::new` lists and watches HostedClusters;
    // hosted_cluster.rs `reconcile`: kube-runtime's `finalizer` adds and removes
    // `nestplane.io/cleanup` with JSON patches; node_pool.rs and worker.rs read the pool's
    // cluster (get).
    Permission {
        api_group: "nestplane.io",
        resource: "hostedclusters",
        verbs: &["get", "list", "watch", "patch"],
        scope: Scope::Namespace,
    },
    // hosted_cluster.rs `write_status`: `patch_status` (server-side apply).
    Permission {
        api_group: "nestplane.io",
        resource: "hostedclusters/status",
        verbs: &["patch"],
        scope: Scope::Namespace,
    },
    // No call: owned objects carry an ownerReference with blockOwnerDeletion
    // (builders::owner_reference), which the OwnerReferencesPermissionEnforcement admission
    // plugin allows only to who may update the owner's finalizers.
    Permission {
        api_group: "nestplane.io",
        resource: "hostedclusters/finalizers",
        verbs: &["update"],
        scope: Scope::Namespace,
    },
    // node_pool.rs `run` (list, watch: Workers wake their pool, and Workers are reconciled);
    // `list_workers` (list, live), `act` (create, delete); finalizers.rs (patch; get after a
    // conflict).
    Permission {
        api_group: "nestplane.io",
        resource: "workers",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        scope: Scope::Namespace,
    },
    // worker.rs `write_status`: `patch_status` (server-side apply).
    Permission {
        api_group: "nestplane.io",
        resource: "workers/status",
        verbs: &["patch"],
        scope: Scope::Namespace,
    },
    // node_pool.rs `run` (list, watch); worker.rs `parents` (get); finalizers.rs (patch);
    // `delete_pools_of` (list, delete: a HostedCluster's deletion deletes its pools first).
    Permission {
        api_group: "nestplane.io",
        resource: "nodepools",
        verbs: &["get", "list", "watch", "patch", "delete"],
        scope: Scope::Namespace,
    },
    // node_pool.rs `write_status`: `patch_status` (server-side apply).
    Permission {
        api_group: "nestplane.io",
        resource: "nodepools/status",
        verbs: &["patch"],
        scope: Scope::Namespace,
    },
    // No call: Workers carry a controller ownerReference to their NodePool with
    // blockOwnerDeletion (node_pool.rs `new_worker`), as for hostedclusters/finalizers.
    Permission {
        api_group: "nestplane.io",
        resource: "nodepools/finalizers",
        verbs: &["update"],
        scope: Scope::Namespace,
    },
    // mod.rs `.owns_stream` (list, watch: the cache); owned.rs `apply` (patch, create),
    // `create_if_absent` (create, get after a conflict), `delete_orphans` (delete);
    // pki_store.rs `SecretReader` (get, live before a reissue or an alarm),
    // `clear_rotate_request` (patch); cloud.rs (get: a NodePool's cloud Secret) and
    // node_pool.rs `run` (list, watch of metadata only: a changed cloud Secret wakes its pools).
    Permission {
        api_group: "",
        resource: "secrets",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        scope: Scope::Namespace,
    },
    // mod.rs `.owns_stream` (list, watch: the cache); owned.rs `apply` (get of a name not in
    // the cache, to never take over someone else's object; patch, create), `delete_orphans`
    // (delete).
    Permission {
        api_group: "",
        resource: "services",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        scope: Scope::Namespace,
    },
    // mod.rs `.owns_stream` (list, watch: the cache); owned.rs `apply` (patch, create; get of a
    // name not in the cache), `delete_orphans` (delete); etcd_storage.rs `observe_claims` (get,
    // live before a decision on etcd's data).
    Permission {
        api_group: "apps",
        resource: "statefulsets",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        scope: Scope::Namespace,
    },
    // As for StatefulSets.
    Permission {
        api_group: "apps",
        resource: "deployments",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        scope: Scope::Namespace,
    },
    // mod.rs `.owns_stream` (list, watch: the cache); owned.rs `apply` (patch, create),
    // `delete_orphans` (delete), and `apply`'s ownership check (get): kube-apiserver's audit
    // policy and authentication configuration.
    Permission {
        api_group: "",
        resource: "configmaps",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        scope: Scope::Namespace,
    },
    // As for ConfigMaps: budgets of etcd (3 members) and kube-apiserver (2+ replicas).
    Permission {
        api_group: "policy",
        resource: "poddisruptionbudgets",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        scope: Scope::Namespace,
    },
    // mod.rs `.watches_stream` (list, watch: the cache); etcd_storage.rs `list_claims` (list,
    // live before a decision); claims expanded when etcd.storage.size grows and marked when
    // retained (patch), deleted with the HostedCluster (delete): they outlive the StatefulSet.
    Permission {
        api_group: "",
        resource: "persistentvolumeclaims",
        verbs: &["list", "watch", "patch", "delete"],
        scope: Scope::Namespace,
    },
    // etcd_storage.rs: whether the claims' StorageClass allows volume expansion (get_opt).
    Permission {
        api_group: "storage.k8s.io",
        resource: "storageclasses",
        verbs: &["get"],
        scope: Scope::Cluster,
    },
    // hosted_cluster.rs `publish`: kube-runtime's `Recorder` creates events.k8s.io/v1 Events
    // and patches a repeated one's series.
    Permission {
        api_group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        scope: Scope::Namespace,
    },
    // leader.rs `lead`: kube-lease-manager reads the Lease (get), creates it when absent
    // (create), and takes, renews and releases it (patch: apply and strategic merge).
    Permission {
        api_group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "patch"],
        scope: Scope::OperatorNamespace,
    },
    // mod.rs `.watches_stream` (list, watch: the cache) and observe.rs `node_port_host` (list,
    // live before the endpoint moves): a NodePort endpoint's address.
    Permission {
        api_group: "",
        resource: "nodes",
        verbs: &["list", "watch"],
        scope: Scope::Cluster,
    },
];

/// One verb on one resource, e.g. `apps/deployments patch` (`core` for the "" group).
pub type Grant = String;

fn grant(api_group: &str, resource: &str, verb: &str) -> Grant {
    let group = if api_group.is_empty() { "core" } else { api_group };
    format!("{group}/{resource} {verb}")
}

/// The grants [`PERMISSIONS`] needs, all of them or only those of one scope.
pub fn required(scope: Option<Scope>) -> BTreeSet<Grant> {
    PERMISSIONS
        .iter()
        .filter(|p| scope.is_none_or(|s| p.scope == s))
        .flat_map(|p| p.verbs.iter().map(|verb| grant(p.api_group, p.resource, verb)))
        .collect()
}

/// The grants of RBAC rules, each group × resource × verb spelled out. Wildcards and
/// resource names stay as they are, so they never match a requirement.
pub fn granted(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for rule in rules {
        let restricted = rule.resource_names.as_ref().is_some_and(|n| !n.is_empty());
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    let resource = if restricted {
                        format!("{resource}[named]")
                    } else {
                        resource.clone()
                    };
                    grants.insert(grant(group, &resource, verb));
                }
            }
        }
    }
    grants
}

/// What `rules` grant beyond `wanted` and what they lack of it, as sentences; empty when they
/// match.
pub fn differences(rules: &[PolicyRule], wanted: &BTreeSet<Grant>) -> Vec<String> {
    let granted = granted(rules);
    let unused = granted
        .difference(wanted)
        .map(|g| format!("granted but never used: {g}"));
    let missing = wanted
        .difference(&granted)
        .map(|g| format!("used but not granted: {g}"));
    unused.chain(missing).collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
    use serde::Deserialize;

    use super::*;

    /// The chart's rules as `make crds` renders them (all namespaces, one ClusterRole).
    fn committed<K: serde::de::DeserializeOwned>(kind: &str) -> Vec<K> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/rbac/nestplane.yaml");
        let text = std::fs::read_to_string(path).expect("manifests/rbac/nestplane.yaml");
        serde_yaml::Deserializer::from_str(&text)
            .map(|doc| serde_yaml::Value::deserialize(doc).expect("yaml document"))
            .filter(|doc| doc.get("kind").and_then(|k| k.as_str()) == Some(kind))
            .map(|doc| serde_yaml::from_value(doc).expect(kind))
            .collect()
    }

    fn committed_cluster_roles() -> Vec<ClusterRole> {
        committed("ClusterRole")
    }

    #[test]
    fn the_leader_election_role_grants_exactly_the_lease_calls() {
        let roles: Vec<Role> = committed("Role");
        assert_eq!(roles.len(), 1, "one Role (leader election) in the default mode");
        assert_eq!(roles[0].metadata.namespace.as_deref(), Some("nestplane-system"));
        let rules = roles[0].rules.clone().unwrap_or_default();
        let differences = differences(&rules, &required(Some(Scope::OperatorNamespace)));
        assert!(differences.is_empty(), "{}", differences.join("\n"));
    }

    #[test]
    fn the_chart_grants_exactly_what_the_code_uses() {
        let roles = committed_cluster_roles();
        assert_eq!(roles.len(), 1, "one ClusterRole in the default mode");
        let rules = roles[0].rules.clone().unwrap_or_default();
        let watched: BTreeSet<Grant> = required(Some(Scope::Namespace))
            .union(&required(Some(Scope::Cluster)))
            .cloned()
            .collect();
        let differences = differences(&rules, &watched);
        assert!(
            differences.is_empty(),
            "deploy/chart/nestplane/templates/rbac.yaml (rendered in manifests/rbac) and \
             controllers/rbac.rs disagree; fix one and run `make crds`:\n{}",
            differences.join("\n")
        );
    }

    fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            api_groups: Some(vec![group.into()]),
            resources: Some(resources.iter().map(|r| r.to_string()).collect()),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..PolicyRule::default()
        }
    }

    #[test]
    fn an_extra_verb_a_missing_verb_and_a_wildcard_are_reported() {
        let wanted = BTreeSet::from(["core/nodes list".to_string()]);
        let rules = [rule("", &["nodes"], &["list", "watch"])];
        assert_eq!(
            differences(&rules, &wanted),
            ["granted but never used: core/nodes watch"]
        );
        assert_eq!(
            differences(&[rule("", &["nodes"], &["get"])], &wanted),
            [
                "granted but never used: core/nodes get",
                "used but not granted: core/nodes list"
            ]
        );
        assert_eq!(
            differences(&[rule("*", &["*"], &["*"])], &wanted),
            [
                "granted but never used: */* *",
                "used but not granted: core/nodes list"
            ]
        );
    }

    #[test]
    fn each_resource_is_listed_once_with_known_verbs() {
        const KNOWN: [&str; 8] = [
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ];
        let mut seen = BTreeSet::new();
        for p in PERMISSIONS {
            assert!(seen.insert((p.api_group, p.resource)), "{} twice", p.resource);
            assert!(p.verbs.iter().all(|v| KNOWN.contains(v)), "{p:?}");
        }
    }
}
