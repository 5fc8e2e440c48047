//! The encryption-at-rest key as key material (`key_material`): a fresh random key when the
//! Secret is first made (or a person accepted a new one), and what makes a stored
//! configuration its fingerprint and usable. A rotation is an edit of the Secret by a person,
//! then accepted (see `builders::encryption`); the API server rolls through its inputs hash.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use crate::api::HostedCluster;
use crate::builders::encryption::{
    ENCRYPTION_CONFIG_KEY, FIRST_KEY_NAME, KEY_LEN, encryption_config, encryption_secret, fingerprint,
    secret_key_names,
};
use crate::builders::{self, secrets::SecretRole};
use crate::error::{Error, Result};

/// A new `<cluster>-encryption` Secret with a random key.
pub fn generate(hc: &HostedCluster) -> Result<Secret> {
    let secret = SecretRole::Encryption.secret_name(&builders::name(hc)?);
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|source| Error::GenerateKey { secret, source })?;
    Ok(encryption_secret(hc, &encryption_config(FIRST_KEY_NAME, &key)?)?)
}

/// Fingerprint of the stored configuration; `None` when the Secret holds none.
pub fn stored_fingerprint(data: &BTreeMap<String, ByteString>) -> Option<String> {
    data.get(ENCRYPTION_CONFIG_KEY)
        .map(|config| fingerprint(&config.0))
}

/// The stored configuration parses and has at least one key for Secrets, so the API server
/// can start with it.
pub fn is_usable(data: &BTreeMap<String, ByteString>) -> bool {
    data.get(ENCRYPTION_CONFIG_KEY)
        .and_then(|config| secret_key_names(&config.0).ok())
        .is_some_and(|names| !names.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::testing::hosted_cluster;

    #[test]
    fn a_generated_secret_is_usable_and_each_one_has_its_own_key() {
        let hc = hosted_cluster();
        let first = generate(&hc).expect("secret").data.expect("data");
        let second = generate(&hc).expect("secret").data.expect("data");
        assert!(is_usable(&first));
        assert_eq!(
            secret_key_names(&first[ENCRYPTION_CONFIG_KEY].0).expect("parses"),
            [FIRST_KEY_NAME]
        );
        assert_ne!(stored_fingerprint(&first), stored_fingerprint(&second));
        assert_eq!(
            stored_fingerprint(&first),
            Some(fingerprint(&first[ENCRYPTION_CONFIG_KEY].0))
        );
    }

    #[test]
    fn only_the_api_server_mounts_it_so_only_it_rolls_when_the_key_changes() {
        use crate::builders::Component;
        let mounting: Vec<Component> = Component::ALL
            .into_iter()
            .filter(|c| c.required_certs().contains(&SecretRole::Encryption))
            .collect();
        assert_eq!(mounting, [Component::KubeApiserver]);
    }

    #[test]
    fn a_secret_without_a_configuration_has_no_fingerprint_and_is_not_usable() {
        let empty = BTreeMap::new();
        assert_eq!(stored_fingerprint(&empty), None);
        assert!(!is_usable(&empty));
        let broken = BTreeMap::from([(
            ENCRYPTION_CONFIG_KEY.to_string(),
            ByteString(b"kind: EncryptionConfiguration\n".to_vec()),
        )]);
        assert!(stored_fingerprint(&broken).is_some(), "readable, so comparable");
        assert!(!is_usable(&broken), "no rule for secrets");
    }
}
