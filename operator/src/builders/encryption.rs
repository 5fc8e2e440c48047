//! Secrets encrypted at rest: the API server's `EncryptionConfiguration`, kept in the Secret
//! `<cluster>-encryption`. The operator writes it once with a generated key and never again;
//! rotating the key is an edit of that Secret (which rolls the API server through its inputs
//! hash).
use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

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
    fn the_secret_is_named_after_the_cluster() {
        let secret = encryption_secret(&hosted_cluster(), "config").expect("secret");
        assert_eq!(secret.metadata.name.as_deref(), Some("demo-encryption"));
        let data = secret.data.expect("data");
        assert_eq!(data[ENCRYPTION_CONFIG_KEY].0, b"config");
    }
}
