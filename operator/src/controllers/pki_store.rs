//! PKI bundles in Secrets, create-if-absent: CAs and the service-account key are never
//! regenerated unless a person accepts new material (`key_material`); a leaf is reissued only when `nestplane_pki::check` finds it wrong (expiring,
//! broken chain, changed names) or a user annotated its Secret with `nestplane.io/rotate`.
//! Kubeconfigs are rebuilt when the CA they embed or the server they name changes.
//! A Secret of a derived name that is not this HostedCluster's is never read as ours.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use nestplane_pki::{self as pki, CertKeyPair, LeafSpec, PlannedKubeconfig, Verdict};
use time::{Duration, OffsetDateTime};

use super::cache::Cache;
use super::key_material::{self, KeyReport};
use super::owned::{Control, OwnedSet};
use crate::api::HostedCluster;
use crate::builders::kubeconfig::{self, KUBECONFIG_KEY};
use crate::builders::secrets::{self, ROTATE_ANNOTATION, SecretRole, TLS_CERT, TLS_KEY};
use crate::builders::{self, Endpoint, pki_plan};
use crate::error::{Error, KubeContext, Result};

/// Secret data by role, after every Secret exists and is current.
pub type SecretData = BTreeMap<SecretRole, BTreeMap<String, ByteString>>;

/// The certificate (PEM) of each Secret that holds one, by role: what the metrics record.
pub fn certificates(data: &SecretData) -> impl Iterator<Item = (SecretRole, &[u8])> {
    data.iter()
        .filter_map(|(role, secret)| Some((*role, secret.get(TLS_CERT)?.0.as_slice())))
}

/// A reissued Secret and why (a `Verdict` reason, `RotationRequested` or `KubeconfigStale`).
pub type Reissue = (SecretRole, &'static str);

pub struct PkiRequest<'a> {
    pub hc: &'a HostedCluster,
    pub endpoint: &'a Endpoint,
    /// The port kube-apiserver listens on, which the components' kubeconfigs name.
    pub apiserver_port: i32,
    pub now: OffsetDateTime,
}

impl PkiRequest<'_> {
    fn leaf_validity(&self) -> Duration {
        Duration::days(self.hc.spec.certificates.validity_days.into())
    }
    fn renew_before(&self) -> Duration {
        Duration::days(self.hc.spec.certificates.renew_before_days.into())
    }
    fn cluster(&self) -> String {
        kube::ResourceExt::name_any(self.hc)
    }
}

/// What `ensure_pki` found and did.
pub struct PkiOutcome {
    /// Every Secret's data; only the key material's when `keys` is not intact.
    pub data: SecretData,
    pub reissued: Vec<Reissue>,
    pub keys: KeyReport,
}

/// Ensures every PKI and kubeconfig Secret; returns their data and what was reissued. Issues
/// nothing when the key material is not intact.
pub async fn ensure_pki(
    owned: &mut OwnedSet,
    secrets: &SecretReader<'_>,
    req: &PkiRequest<'_>,
) -> Result<PkiOutcome> {
    let api = &secrets.api;
    let keys = key_material::ensure_key_material(owned, secrets, req.hc, req.now).await?;
    let mut data = keys.data.clone();
    let mut reissued = Vec::new();
    if !keys.is_intact() {
        return Ok(PkiOutcome { data, reissued, keys });
    }
    let plan = pki_plan::plan(req.hc, req.endpoint, req.apiserver_port)?;
    for leaf in &plan.leaves {
        let role = SecretRole::from(leaf.role);
        let ca = pair_of(&data, leaf.issuer.into(), &req.cluster())?;
        let usable = |s: &Secret| leaf_verdict(s, &ca, &leaf.spec, req).is_ok();
        let existing = secrets.ours(&role.secret_name(&req.cluster()), usable).await?;
        let secret = match existing.as_ref().map(|s| leaf_verdict(s, &ca, &leaf.spec, req)) {
            Some(Ok(())) => {
                let secret = existing.ok_or(Error::MissingField("leaf Secret"))?;
                owned.keep(&secret);
                secret
            }
            verdict => {
                if let Some(Err(reason)) = verdict {
                    reissued.push((role, reason));
                }
                let pair = pki::issue_leaf(&ca, &leaf.spec, req.now, req.leaf_validity())?;
                let secret = secrets::tls_secret(req.hc, role, &pair, &ca.cert_pem)?;
                let applied = owned.apply(&secret).await?;
                clear_rotate_request(api, &applied).await?
            }
        };
        data.insert(role, secret.data.unwrap_or_default());
    }
    ensure_kubeconfigs(owned, secrets, req, &plan.kubeconfigs, &mut data, &mut reissued).await?;
    Ok(PkiOutcome { data, reissued, keys })
}

async fn ensure_kubeconfigs(
    owned: &mut OwnedSet,
    secrets: &SecretReader<'_>,
    req: &PkiRequest<'_>,
    planned: &[PlannedKubeconfig],
    data: &mut SecretData,
    reissued: &mut Vec<Reissue>,
) -> Result<()> {
    let cluster = req.cluster();
    for plan in planned {
        let role = SecretRole::from(plan.role);
        let ca = pair_of(data, plan.issuer.into(), &cluster)?;
        let ca_hash = pki::ca_cert_hash(&ca.cert_pem)?;
        let verdict_of = |secret: &Secret| {
            leaf_verdict(secret, &ca, &plan.client, req).and_then(|()| {
                kubeconfig::is_current(secret, plan, &ca_hash)
                    .then_some(())
                    .ok_or("KubeconfigStale")
            })
        };
        let existing = secrets
            .ours(&role.secret_name(&cluster), |s| verdict_of(s).is_ok())
            .await?;
        let verdict = existing.as_ref().map(verdict_of);
        let secret = match (existing, verdict) {
            (Some(secret), Some(Ok(()))) => {
                owned.keep(&secret);
                secret
            }
            (_, verdict) => {
                if let Some(Err(reason)) = verdict {
                    reissued.push((role, reason));
                }
                let client = pki::issue_leaf(&ca, &plan.client, req.now, req.leaf_validity())?;
                let secret = kubeconfig::kubeconfig_secret(req.hc, plan, &ca, &ca_hash, &client)?;
                let applied = owned.apply(&secret).await?;
                clear_rotate_request(&secrets.api, &applied).await?
            }
        };
        data.insert(role, secret.data.unwrap_or_default());
    }
    Ok(())
}

/// `Ok` when the stored leaf can stay; otherwise why it must be reissued.
fn leaf_verdict(
    secret: &Secret,
    ca: &CertKeyPair,
    spec: &LeafSpec,
    req: &PkiRequest,
) -> Result<(), &'static str> {
    let rotate = secret
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ROTATE_ANNOTATION));
    if rotate {
        return Err("RotationRequested");
    }
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default()
    };
    let pair = CertKeyPair {
        cert_pem: text(TLS_CERT),
        key_pem: text(TLS_KEY),
    };
    match pki::check(&pair, &ca.cert_pem, spec, req.now, req.renew_before()) {
        Verdict::Valid => Ok(()),
        verdict => Err(verdict.reason()),
    }
}

/// The certificate and key stored for `role`.
pub fn pair_of(data: &SecretData, role: SecretRole, cluster: &str) -> Result<CertKeyPair> {
    let secret_data = data.get(&role).ok_or(Error::MissingField("PKI Secret"))?;
    let text = |key: &'static str| {
        secret_data
            .get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .ok_or_else(|| Error::SecretKey {
                name: role.secret_name(cluster),
                key,
            })
    };
    Ok(CertKeyPair {
        cert_pem: text(TLS_CERT)?,
        key_pem: text(TLS_KEY)?,
    })
}

/// The admin kubeconfig stored for a cluster.
pub fn admin_kubeconfig(data: &SecretData, cluster: &str) -> Result<String> {
    data.get(&SecretRole::AdminKubeconfig)
        .and_then(|d| d.get(KUBECONFIG_KEY))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .ok_or_else(|| Error::SecretKey {
            name: SecretRole::AdminKubeconfig.secret_name(cluster),
            key: KUBECONFIG_KEY,
        })
}

/// A rotation request is honoured once: the annotation goes away with the reissue.
async fn clear_rotate_request(api: &Api<Secret>, secret: &Secret) -> Result<Secret> {
    let requested = secret
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ROTATE_ANNOTATION));
    if !requested {
        return Ok(secret.clone());
    }
    let name = secret.metadata.name.clone().unwrap_or_default();
    // A merge patch: the annotation belongs to the user who set it, not to our field manager.
    let patch = serde_json::json!({ "metadata": { "annotations": { ROTATE_ANNOTATION: null } } });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("clear rotation request on", "Secret", &name)
}

/// Reads a HostedCluster's Secrets: the watch's copy when the caller can use it as it is, a
/// live read otherwise, so that no reissue, new key material or alarm rests on a copy the watch
/// has not brought up to date yet.
pub struct SecretReader<'a> {
    cache: &'a Cache,
    api: Api<Secret>,
    namespace: String,
    owner_uid: String,
}

impl<'a> SecretReader<'a> {
    pub fn new(client: &kube::Client, cache: &'a Cache, hc: &HostedCluster) -> SecretReader<'a> {
        let namespace = kube::ResourceExt::namespace(hc).unwrap_or_default();
        SecretReader {
            cache,
            api: Api::namespaced(client.clone(), &namespace),
            namespace,
            owner_uid: hc.metadata.uid.clone().unwrap_or_default(),
        }
    }

    /// The Secret `name`, whoever controls it: the cached copy when `usable` accepts it, else
    /// read live.
    pub async fn any(&self, name: &str, usable: impl Fn(&Secret) -> bool) -> Result<Option<Secret>> {
        if let Some(cached) = self.cache.get::<Secret>(&self.namespace, name)
            && usable(&cached)
        {
            return Ok(Some(Secret::clone(&cached)));
        }
        self.api.get_opt(name).await.context("get", "Secret", name)
    }

    /// The Secret `name` if it exists and is this HostedCluster's; `Error::NotOwned` otherwise.
    pub async fn ours(&self, name: &str, usable: impl Fn(&Secret) -> bool) -> Result<Option<Secret>> {
        let is_ours = |s: &Secret| Control::of(&s.metadata, &self.owner_uid) == Control::Ours;
        let secret = self.any(name, |s| is_ours(s) && usable(s)).await?;
        if let Some(secret) = &secret {
            Control::of(&secret.metadata, &self.owner_uid).ours_or_error("Secret", name)?;
        }
        Ok(secret)
    }
}

/// The admin kubeconfig as stored, if it is this HostedCluster's (for probing the API server
/// in a pass that issues nothing).
pub async fn stored_admin_kubeconfig(
    secrets: &SecretReader<'_>,
    hc: &HostedCluster,
) -> Result<Option<String>> {
    let cluster = builders::name(hc)?;
    let name = SecretRole::AdminKubeconfig.secret_name(&cluster);
    let Some(secret) = secrets.ours(&name, |_| true).await? else {
        return Ok(None);
    };
    let data = SecretData::from([(SecretRole::AdminKubeconfig, secret.data.unwrap_or_default())]);
    admin_kubeconfig(&data, &cluster).map(Some)
}
