//! kube-apiserver's configuration files that are not secret: the audit policy and the
//! structured authentication configuration (which limits anonymous requests), each in a
//! ConfigMap, and the bounds of the audit log.
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

use super::{BuildError, Component, HostedCluster, meta, name, object_meta, tunnel};

pub const AUDIT_POLICY_KEY: &str = "audit-policy.yaml";
pub const AUTHENTICATION_CONFIG_KEY: &str = "authentication-config.yaml";

/// Where the audit log is written: an `emptyDir` of at most `AUDIT_LOG_VOLUME_MIB`.
pub const AUDIT_LOG_DIR: &str = "/var/log/kubernetes/audit";
pub const AUDIT_LOG_VOLUME_MIB: u32 = 128;
/// Rotated at this size (MiB), keeping this many old files: the current file and the backups
/// (100 MiB) stay well under the volume's limit, past which the kubelet would evict the pod.
pub const AUDIT_LOG_MAX_SIZE_MIB: u32 = 25;
pub const AUDIT_LOG_MAX_BACKUPS: u32 = 3;
pub const AUDIT_LOG_MAX_AGE_DAYS: u32 = 7;
// Checked when compiling: the current file and every backup fit under the volume's limit with
// a fifth to spare (an event may take a file past the rotation size), and 0 backups would mean
// no limit at all.
const _: () = assert!(
    AUDIT_LOG_MAX_BACKUPS > 0
        && (AUDIT_LOG_MAX_BACKUPS + 1) * AUDIT_LOG_MAX_SIZE_MIB * 5 <= AUDIT_LOG_VOLUME_MIB * 4
);

/// The only requests served to anonymous users: health checks, and the ConfigMap that
/// `kubeadm join` reads before it has a credential (token discovery).
pub const ANONYMOUS_PATHS: [&str; 4] = [
    "/livez",
    "/readyz",
    "/healthz",
    "/api/v1/namespaces/kube-public/configmaps/cluster-info",
];

pub fn audit_policy_name(cluster: &str) -> String {
    format!("{cluster}-audit-policy")
}

pub fn authentication_config_name(cluster: &str) -> String {
    format!("{cluster}-authentication-config")
}

/// Metadata (who did what to which object, never the content) for everything a person or a
/// controller changes; nothing for health checks and the system components' reads, which would
/// otherwise fill the log.
pub fn audit_policy() -> Value {
    let reads = json!(["get", "list", "watch"]);
    json!({
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            { "level": "None", "nonResourceURLs": ["/healthz*", "/livez*", "/readyz*", "/version"] },
            {
                "level": "None",
                "users": [
                    "system:apiserver", "system:kube-controller-manager",
                    "system:kube-scheduler", "system:kube-proxy",
                ],
                "verbs": reads,
            },
            { "level": "None", "userGroups": ["system:nodes"], "verbs": reads },
            // Leader election renews its lease every few seconds.
            {
                "level": "None",
                "users": ["system:kube-controller-manager", "system:kube-scheduler"],
                "resources": [{ "group": "coordination.k8s.io", "resources": ["leases"] }],
            },
            { "level": "None", "resources": [{ "group": "", "resources": ["events"] }] },
            // Content of these is secret or credential: never more than Metadata.
            {
                "level": "Metadata",
                "resources": [
                    { "group": "", "resources": ["secrets", "configmaps", "serviceaccounts/token"] },
                    { "group": "authentication.k8s.io", "resources": ["tokenreviews"] },
                ],
            },
            { "level": "Metadata" },
        ],
    })
}

/// Anonymous requests are authenticated only on `ANONYMOUS_PATHS` (and then authorised by
/// RBAC as usual); anywhere else a request without a credential gets 401.
pub fn authentication_config() -> Value {
    let conditions: Vec<Value> = ANONYMOUS_PATHS
        .iter()
        .map(|path| json!({ "path": path }))
        .collect();
    json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "anonymous": { "enabled": true, "conditions": conditions },
    })
}

/// The ConfigMaps kube-apiserver mounts.
pub fn config_maps(hc: &HostedCluster) -> Result<Vec<ConfigMap>, BuildError> {
    let cluster = name(hc)?;
    let mut maps = vec![
        config_map(
            hc,
            &audit_policy_name(&cluster),
            AUDIT_POLICY_KEY,
            &audit_policy(),
        )?,
        config_map(
            hc,
            &authentication_config_name(&cluster),
            AUTHENTICATION_CONFIG_KEY,
            &authentication_config(),
        )?,
    ];
    if tunnel::enabled(hc) {
        maps.push(config_map(
            hc,
            &tunnel::egress_selector_config_name(&cluster),
            tunnel::EGRESS_SELECTOR_KEY,
            &tunnel::egress_selector_configuration(),
        )?);
    }
    Ok(maps)
}

fn config_map(
    hc: &HostedCluster,
    object_name: &str,
    key: &str,
    content: &Value,
) -> Result<ConfigMap, BuildError> {
    let yaml = serde_yaml::to_string(content).map_err(|e| BuildError::Invalid {
        what: "apiserver configuration file",
        message: e.to_string(),
    })?;
    meta::object(
        "apiserver config map",
        object_meta(hc, object_name, Some(Component::KubeApiserver))?,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "data": { key: yaml },
        }),
    )
}

/// Projected-volume sources: every file under its key's name.
pub(crate) fn volume_sources(hc: &HostedCluster) -> Result<Vec<Value>, BuildError> {
    let cluster = name(hc)?;
    let source = |object_name: String, key: &str| json!({ "configMap": { "name": object_name, "items": [{ "key": key, "path": key }] } });
    let mut sources = vec![
        source(audit_policy_name(&cluster), AUDIT_POLICY_KEY),
        source(authentication_config_name(&cluster), AUTHENTICATION_CONFIG_KEY),
    ];
    if tunnel::enabled(hc) {
        sources.push(source(
            tunnel::egress_selector_config_name(&cluster),
            tunnel::EGRESS_SELECTOR_KEY,
        ));
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::testing::{assert_golden, hosted_cluster};

    #[test]
    fn config_maps_match_golden() {
        assert_golden(
            "kube-apiserver-config",
            &config_maps(&hosted_cluster()).expect("build"),
        );
    }

    /// The first rule that matches decides: secrets must never reach a rule above Metadata.
    #[test]
    fn secrets_are_audited_without_their_content() {
        let policy = audit_policy();
        let rules = policy["rules"].as_array().expect("rules");
        for rule in rules {
            let level = rule["level"].as_str().expect("level");
            assert!(matches!(level, "None" | "Metadata"), "{rule}");
        }
        let last = rules.last().expect("a catch-all rule");
        assert_eq!(last, &json!({ "level": "Metadata" }));
    }

    #[test]
    fn anonymous_requests_are_limited_to_health_and_discovery() {
        let config = authentication_config();
        assert_eq!(config["apiVersion"], "apiserver.config.k8s.io/v1");
        assert_eq!(config["anonymous"]["enabled"], true);
        let paths: Vec<&str> = config["anonymous"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .map(|c| c["path"].as_str().expect("path"))
            .collect();
        assert_eq!(paths, ANONYMOUS_PATHS);
    }
}
