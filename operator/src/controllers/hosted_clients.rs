//! Clients for the hosted clusters' APIs: one per HostedCluster, kept while its admin
//! kubeconfig stays the same, so a pass reuses the connection (and TLS session) of the last
//! one instead of building a client and handshaking anew. The objects nestplane writes inside
//! hosted clusters go through these clients too.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::api::HostedCluster;

/// A hosted API that does not answer within these is reported as not answering; the next pass
/// asks again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct HostedClients {
    /// By `namespace/name`: the kubeconfig's digest and the client built from it.
    clients: Mutex<HashMap<String, ([u8; 32], kube::Client)>>,
}

impl HostedClients {
    /// The client for `hc`'s API as its admin, built anew only when `kubeconfig` changed.
    pub async fn client(&self, hc: &HostedCluster, kubeconfig: &str) -> Result<kube::Client, String> {
        let key = key(hc);
        let digest: [u8; 32] = Sha256::digest(kubeconfig.as_bytes()).into();
        if let Some((cached, client)) = self.lock().get(&key)
            && *cached == digest
        {
            return Ok(client.clone());
        }
        let client = build(kubeconfig).await?;
        self.lock().insert(key, (digest, client.clone()));
        Ok(client)
    }

    /// Drops the client of a HostedCluster that is gone.
    pub fn forget(&self, hc: &HostedCluster) {
        self.lock().remove(&key(hc));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ([u8; 32], kube::Client)>> {
        // A panic while holding the lock leaves a map that is still whole: keep using it.
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn key(hc: &HostedCluster) -> String {
    format!("{}/{}", hc.namespace().unwrap_or_default(), hc.name_any())
}

async fn build(kubeconfig: &str) -> Result<kube::Client, String> {
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig).map_err(|e| e.to_string())?;
    let mut config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    kube::Client::try_from(config).map_err(|e| e.to_string())
}
