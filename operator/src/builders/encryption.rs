//! Secrets encrypted at rest: the API server's `EncryptionConfiguration`, kept in the Secret
//! `<cluster>-encryption`. The operator writes it once with a generated key and records its
//! fingerprint like other key material; rotating the key is an edit of that Secret that a person
//! then accepts (which rolls the API server through its inputs hash).
use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::secrets::{SecretRole, project, secret};
use super::{BuildError, HostedCluster};

/// Key of the configuration file in the Secret, and its file name in the API server's pod.
pub const ENCRYPTION_CONFIG_KEY: &str = "encryption-config.yaml";
/// secretbox (XSalsa20-Poly1305) takes a 32-byte key.
pub const KEY_LEN: usize = 32;
/// Name of the first key; a rotation adds `key2`, and so on.
pub const FIRST_KEY_NAME: &str = "key1";

/// An `EncryptionConfiguration` that writes Secrets with `key` (secretbox) and still reads what
/// was stored before encryption was on (`identity`, last).
pub fn encryption_config(key_name: &str, key: &[u8]) -> Result<String, BuildError> {
    if key.len() != KEY_LEN {
        return Err(BuildError::Invalid {
            what: "encryption key",
            message: format!("secretbox needs {KEY_LEN} bytes, got {}", key.len()),
        });
    }
    let config = json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [
                { "secretbox": { "keys": [{ "name": key_name, "secret": STANDARD.encode(key) }] } },
                { "identity": {} },
            ],
        }],
    });
    serde_yaml::to_string(&config).map_err(|e| BuildError::Invalid {
        what: "encryption configuration",
        message: e.to_string(),
    })
}

/// The Secret holding the configuration (and so the key).
pub fn encryption_secret(hc: &HostedCluster, config: &str) -> Result<Secret, BuildError> {
    let data = BTreeMap::from([(
        ENCRYPTION_CONFIG_KEY.to_string(),
        ByteString(config.as_bytes().to_vec()),
    )]);
    secret(hc, SecretRole::Encryption, "Opaque", data, BTreeMap::new())
}

/// Fingerprint of a stored configuration: hex SHA-256 of its bytes, so any edit (a key added,
/// reordered or removed) changes it.
pub fn fingerprint(config: &[u8]) -> String {
    Sha256::digest(config)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The parts of an `EncryptionConfiguration` that say which keys protect Secrets.
#[derive(Deserialize)]
struct StoredConfig {
    kind: String,
    #[serde(default)]
    resources: Vec<ResourceRule>,
}

#[derive(Deserialize)]
struct ResourceRule {
    #[serde(default)]
    resources: Vec<String>,
    /// Each provider is a one-entry map: its type (`secretbox`, `aescbc`, `identity`, …) to it.
    #[serde(default)]
    providers: Vec<BTreeMap<String, Provider>>,
}

#[derive(Deserialize, Default)]
struct Provider {
    #[serde(default)]
    keys: Vec<ProviderKey>,
}

#[derive(Deserialize)]
struct ProviderKey {
    name: String,
    secret: String,
}

/// Names of the keys that encrypt Secrets, in the order the API server tries them (the first
/// writes). An error when the configuration does not parse, has no rule for Secrets, or holds a
/// key that is not base64.
pub fn secret_key_names(config: &[u8]) -> Result<Vec<String>, BuildError> {
    let invalid = |message: String| BuildError::Invalid {
        what: "encryption configuration",
        message,
    };
    let parsed: StoredConfig = serde_yaml::from_slice(config).map_err(|e| invalid(e.to_string()))?;
    if parsed.kind != "EncryptionConfiguration" {
        return Err(invalid(format!("kind is {:?}", parsed.kind)));
    }
    // The API server uses the first rule that matches Secrets.
    let rule = parsed
        .resources
        .iter()
        .find(|r| {
            r.resources
                .iter()
                .any(|g| matches!(g.as_str(), "secrets" | "*." | "*.*"))
        })
        .ok_or_else(|| invalid("no rule covers secrets".to_string()))?;
    let mut names = Vec::new();
    for key in rule
        .providers
        .iter()
        .flat_map(|p| p.values())
        .flat_map(|p| &p.keys)
    {
        match STANDARD.decode(&key.secret) {
            Ok(bytes) if !bytes.is_empty() => names.push(key.name.clone()),
            _ => return Err(invalid(format!("key {} is not base64", key.name))),
        }
    }
    Ok(names)
}

/// Projected-volume source: the configuration under its file name.
pub(crate) fn volume_source(cluster: &str) -> Value {
    project(
        cluster,
        SecretRole::Encryption,
        &[(ENCRYPTION_CONFIG_KEY, ENCRYPTION_CONFIG_KEY)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::testing::hosted_cluster;

    #[test]
    fn secretbox_writes_and_identity_still_reads_plaintext() {
        let config: serde_json::Value =
            serde_yaml::from_str(&encryption_config("key1", &[7; KEY_LEN]).expect("config")).expect("yaml");
        assert_eq!(config["kind"], "EncryptionConfiguration");
        let rule = &config["resources"][0];
        assert_eq!(rule["resources"], json!(["secrets"]));
        let providers = rule["providers"].as_array().expect("providers");
        assert_eq!(providers.len(), 2);
        let key = &providers[0]["secretbox"]["keys"][0];
        assert_eq!(key["name"], "key1");
        let decoded = STANDARD
            .decode(key["secret"].as_str().expect("secret"))
            .expect("base64");
        assert_eq!(decoded, [7; KEY_LEN]);
        assert_eq!(providers[1], json!({ "identity": {} }), "identity comes last");
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused() {
        assert!(encryption_config("key1", &[0; 16]).is_err());
    }

    #[test]
    fn a_generated_configuration_has_its_key_and_an_edit_changes_the_fingerprint() {
        let config = encryption_config("key1", &[7; KEY_LEN]).expect("config");
        assert_eq!(secret_key_names(config.as_bytes()).expect("parses"), ["key1"]);
        let print = fingerprint(config.as_bytes());
        assert_eq!(print.len(), 64);
        assert_eq!(
            print,
            fingerprint(config.as_bytes()),
            "the same bytes, the same print"
        );
        assert_ne!(print, fingerprint(config.replace("key1", "key2").as_bytes()));
    }

    #[test]
    fn a_rotated_configuration_lists_its_keys_in_order() {
        let new = STANDARD.encode([1; KEY_LEN]);
        let old = STANDARD.encode([2; KEY_LEN]);
        let config = format!(
            r#"
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - secretbox:
      keys:
      - {{name: key2, secret: "{new}"}}
      - {{name: key1, secret: "{old}"}}
  - identity: {{}}
"#
        );
        assert_eq!(
            secret_key_names(config.as_bytes()).expect("parses"),
            ["key2", "key1"]
        );
    }

    #[test]
    fn configurations_that_protect_nothing_are_told_apart_from_broken_ones() {
        let identity = b"kind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - identity: {}\n";
        assert_eq!(secret_key_names(identity).expect("parses"), Vec::<String>::new());
        for broken in [
            &b"not: [yaml"[..],
            b"kind: ConfigMap\n",
            b"kind: EncryptionConfiguration\nresources:\n- resources: [configmaps]\n",
            b"kind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox: {keys: [{name: k, secret: '%%'}]}\n",
        ] {
            assert!(
                secret_key_names(broken).is_err(),
                "{}",
                String::from_utf8_lossy(broken)
            );
        }
    }

    #[test]
    fn the_secret_is_named_after_the_cluster() {
        let secret = encryption_secret(&hosted_cluster(), "config").expect("secret");
        assert_eq!(secret.metadata.name.as_deref(), Some("demo-encryption"));
        let data = secret.data.expect("data");
        assert_eq!(data[ENCRYPTION_CONFIG_KEY].0, b"config");
    }
}
