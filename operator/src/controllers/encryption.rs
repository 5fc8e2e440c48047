//! The encryption-at-rest key, create-if-absent: generated once, never regenerated, so that
//! what the API server encrypted stays readable. A rotation is an edit of the Secret by a
//! person (see `builders::encryption`), which the API server's inputs hash picks up.
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tracing::info;

use super::owned::OwnedSet;
use super::pki_store::SecretData;
use crate::api::HostedCluster;
use crate::builders::encryption::{FIRST_KEY_NAME, KEY_LEN, encryption_config, encryption_secret};
use crate::builders::{self, secrets::SecretRole};
use crate::error::{Error, KubeContext, Result};

/// Ensures `<cluster>-encryption` exists and adds its data to `data`.
pub async fn ensure_encryption_config(
    owned: &mut OwnedSet,
    client: &kube::Client,
    hc: &HostedCluster,
    data: &mut SecretData,
) -> Result<()> {
    let name = SecretRole::Encryption.secret_name(&builders::name(hc));
    let api: Api<Secret> = Api::namespaced(client.clone(), &builders::namespace(hc));
    let secret = match api.get_opt(&name).await.context("get", "Secret", &name)? {
        Some(secret) => {
            owned.keep(&secret);
            secret
        }
        None => {
            let mut key = [0u8; KEY_LEN];
            getrandom::fill(&mut key).map_err(|source| Error::GenerateKey {
                secret: name.clone(),
                source,
            })?;
            let config = encryption_config(FIRST_KEY_NAME, &key)?;
            let created = owned.create_if_absent(&encryption_secret(hc, &config)?).await?;
            info!(secret = %name, "generated the encryption key");
            created
        }
    };
    data.insert(SecretRole::Encryption, secret.data.unwrap_or_default());
    Ok(())
}
