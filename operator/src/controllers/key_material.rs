//! Key material: the three CAs, the service-account key and the encryption-at-rest key. Each is
//! created once and its fingerprint recorded in `status.keyFingerprints`. A recorded Secret that
//! is gone or holds other material is never replaced on the operator's own initiative: every
//! kubeconfig, token and certificate issued from it would silently stop working, and every
//! Secret stored in the hosted etcd with the encryption key would become unreadable. The pass
//! stops before anything is issued from it (running pods keep their mounted copies) until a
//! person restores the Secret or names it in `nestplane.io/accept-new-key-material`.
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use nestplane_pki::{self as pki, CaRole, CertKeyPair, ServiceAccountKeys, Verdict};
use time::{Duration, OffsetDateTime};
use tracing::info;

use super::Context;
use super::encryption;
use super::observe::{observe_workloads_as_they_are, probe_readyz, remove_request_annotation};
use super::owned::{Control, OwnedSet};
use super::pki_store::{self, SecretData, SecretReader};
use super::status::{Check, Observed, hosted_api_pods_ready};
use crate::api::conditions::{
    ACCEPT_NEW_KEY_MATERIAL_ANNOTATION, CERTIFICATE_AUTHORITIES_VALID, KEY_MATERIAL_INTACT,
    REASON_CA_EXPIRING, REASON_INTACT, REASON_KEY_MATERIAL_CHANGED, REASON_KEY_MATERIAL_MISSING,
    REASON_VALID,
};
use crate::api::{HostedCluster, KeyFingerprint};
use crate::builders::encryption::ENCRYPTION_CONFIG_KEY;
use crate::builders::secrets::{self, SA_PRIVATE_KEY, SA_PUBLIC_KEY, SecretRole, TLS_CERT, TLS_KEY};
use crate::builders::{self, Endpoint, labels, owner_reference};
use crate::error::{Error, Result};

/// What stands under a key-material Secret's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoundMaterial {
    Absent,
    Present {
        control: Control,
        /// `None` when the material cannot be read.
        fingerprint: Option<String>,
        /// Parses, belongs together and (for a CA) has not expired.
        usable: bool,
    },
}

/// What to do with one key-material Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Nothing there: generate it and record its fingerprint.
    Create,
    /// Keep what is there and record its fingerprint (first seen, or an accepted replacement).
    Record,
    /// As recorded.
    Intact,
    /// Generate anew over what is there (accepted, but what is there cannot be used).
    Replace,
    /// Stop: the recorded material is gone.
    Missing,
    /// Stop: the Secret holds other material than recorded.
    Changed,
    /// Stop: the object belongs to someone else (who, for the message).
    NotOwned(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVerdict {
    pub action: KeyAction,
    /// Take over a Secret that has no controller before using it.
    pub adopt: bool,
}

/// The decision for one key-material Secret, from the fingerprint recorded in status, what is
/// stored, and whether a person accepted new material for it.
///
/// A Secret without a controller is adopted only when it holds the recorded material (restored
/// from a backup) or a person named it; one controlled by anything else is never touched.
pub fn compute_key_material(recorded: Option<&str>, found: &FoundMaterial, accepted: bool) -> KeyVerdict {
    let verdict = |action, adopt| KeyVerdict { action, adopt };
    let (control, fingerprint, usable) = match found {
        FoundMaterial::Absent if recorded.is_some() && !accepted => {
            return verdict(KeyAction::Missing, false);
        }
        FoundMaterial::Absent => return verdict(KeyAction::Create, false),
        FoundMaterial::Present {
            control,
            fingerprint,
            usable,
        } => (control, fingerprint.as_deref(), *usable),
    };
    let as_recorded = recorded.is_some() && fingerprint == recorded;
    let adopt = match control {
        Control::Ours => false,
        Control::Nobody if as_recorded || accepted => true,
        other => return verdict(KeyAction::NotOwned(other.describe()), false),
    };
    let action = match (recorded, fingerprint) {
        _ if as_recorded => KeyAction::Intact,
        (_, Some(_)) if accepted && usable => KeyAction::Record,
        _ if accepted => KeyAction::Replace,
        (None, Some(_)) => KeyAction::Record,
        _ => KeyAction::Changed,
    };
    verdict(action, adopt)
}

/// A recorded Secret that is not as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub secret: String,
    pub reason: &'static str,
    pub detail: String,
}

/// What the key-material step found and did.
#[derive(Debug, Clone, Default)]
pub struct KeyReport {
    /// Data of every key-material Secret that is usable as it is.
    pub data: SecretData,
    /// Every fingerprint to record: the recorded ones, updated by this pass.
    pub fingerprints: Vec<KeyFingerprint>,
    pub problems: Vec<Problem>,
    /// Secrets given new material this pass because a person accepted it, with what happened.
    pub renewed: Vec<(String, String)>,
    /// `KeyMaterialIntact` and `CertificateAuthoritiesValid`.
    pub checks: Vec<Check>,
}

impl KeyReport {
    /// Nothing stops the pass.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds the checks and fingerprints to what the status is computed from.
    pub fn record(&self, observed: &mut Observed) {
        observed.checks.extend(self.checks.iter().cloned());
        observed.key_fingerprints = self.fingerprints.clone();
    }
}

/// `kubectl annotate` of the way out, naming `secrets`.
fn accept_command(hc: &HostedCluster, secrets: &[&str]) -> String {
    format!(
        "kubectl -n {} annotate hostedcluster {} {ACCEPT_NEW_KEY_MATERIAL_ANNOTATION}={}",
        hc.namespace().unwrap_or_default(),
        hc.name_any(),
        secrets.join(",")
    )
}

/// `KeyMaterialIntact`: the problems, sorted by Secret, and the two ways out.
pub fn key_material_check(hc: &HostedCluster, problems: &[Problem]) -> Check {
    if problems.is_empty() {
        return Check {
            type_: KEY_MATERIAL_INTACT,
            ok: true,
            reason: REASON_INTACT,
            message: "every CA, the service-account key and the encryption key are as recorded".to_string(),
            blocks_available: true,
        };
    }
    let mut problems = problems.to_vec();
    problems.sort_by(|a, b| a.secret.cmp(&b.secret));
    let names: Vec<&str> = problems.iter().map(|p| p.secret.as_str()).collect();
    let details: Vec<&str> = problems.iter().map(|p| p.detail.as_str()).collect();
    let reason = if problems.iter().any(|p| p.reason == REASON_KEY_MATERIAL_MISSING) {
        REASON_KEY_MATERIAL_MISSING
    } else {
        REASON_KEY_MATERIAL_CHANGED
    };
    let message = format!(
        "{}. nestplane issues nothing from other key material on its own, since every kubeconfig, \
         token and certificate issued from the recorded one (and every Secret encrypted with it) \
         would stop working; running pods keep their copies. Either restore the recorded material (e.g. `kubectl apply` the Secret from \
         a backup), or accept new material, which re-issues everything that depends on it and \
         rolls the pods: `{}`",
        details.join("; "),
        accept_command(hc, &names)
    );
    Check {
        type_: KEY_MATERIAL_INTACT,
        ok: false,
        reason,
        message,
        blocks_available: true,
    }
}

/// `CertificateAuthoritiesValid`: false when a CA expires before a leaf issued now would, so
/// new leaves are cut short to its expiry. Informational: it does not block `Available`.
pub fn ca_validity_check(
    hc: &HostedCluster,
    ca_expiry: &[(String, OffsetDateTime)],
    now: OffsetDateTime,
    leaf_validity: Duration,
) -> Check {
    let mut expiring: Vec<&(String, OffsetDateTime)> = ca_expiry
        .iter()
        .filter(|(_, not_after)| *not_after - now < leaf_validity)
        .collect();
    expiring.sort();
    if expiring.is_empty() {
        return Check {
            type_: CERTIFICATE_AUTHORITIES_VALID,
            ok: true,
            reason: REASON_VALID,
            message: format!(
                "every CA outlives a new certificate's {} days",
                leaf_validity.whole_days()
            ),
            blocks_available: false,
        };
    }
    let details: Vec<String> = expiring
        .iter()
        .map(|(secret, not_after)| {
            let verb = if *not_after <= now { "expired" } else { "expires" };
            format!("CA Secret {secret} {verb} at {}", rfc3339(*not_after))
        })
        .collect();
    let names: Vec<&str> = expiring.iter().map(|(secret, _)| secret.as_str()).collect();
    let message = format!(
        "{}, sooner than certificates.validityDays ({}): new certificates end when their CA does. \
         To renew a CA, keep a copy of its Secret, delete it and accept a new one: `{}`; \
         everything issued from it is re-issued and its pods roll",
        details.join("; "),
        leaf_validity.whole_days(),
        accept_command(hc, &names)
    );
    Check {
        type_: CERTIFICATE_AUTHORITIES_VALID,
        ok: false,
        reason: REASON_CA_EXPIRING,
        message,
        blocks_available: false,
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    Timestamp::from_second(at.unix_timestamp())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Secret names in the accept annotation.
pub fn accepted_names(hc: &HostedCluster) -> BTreeSet<String> {
    hc.annotations()
        .get(ACCEPT_NEW_KEY_MATERIAL_ANNOTATION)
        .map(|names| {
            names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// One key-material Secret: a CA, the service-account key or the encryption-at-rest
/// configuration.
#[derive(Debug, Clone, Copy)]
enum Material {
    Ca(CaRole),
    ServiceAccount,
    Encryption,
}

impl Material {
    fn role(self) -> SecretRole {
        match self {
            Material::Ca(role) => role.into(),
            Material::ServiceAccount => SecretRole::ServiceAccount,
            Material::Encryption => SecretRole::Encryption,
        }
    }

    /// The Secret key the fingerprint is taken from.
    fn fingerprinted_key(self) -> &'static str {
        match self {
            Material::Ca(..) => TLS_CERT,
            Material::ServiceAccount => SA_PUBLIC_KEY,
            Material::Encryption => ENCRYPTION_CONFIG_KEY,
        }
    }
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> String {
    data.get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

/// Fingerprint (and, for a CA, expiry) of stored material; `None` when it cannot be read.
fn fingerprint_of(
    material: Material,
    data: &BTreeMap<String, ByteString>,
) -> Option<(String, Option<OffsetDateTime>)> {
    match material {
        Material::Ca(..) => {
            let cert = text(data, TLS_CERT);
            Some((pki::fingerprint(&cert).ok()?, pki::not_after(&cert).ok()))
        }
        Material::ServiceAccount => Some((
            pki::public_key_fingerprint(&text(data, SA_PUBLIC_KEY)).ok()?,
            None,
        )),
        Material::Encryption => Some((encryption::stored_fingerprint(data)?, None)),
    }
}

fn usable(material: Material, data: &BTreeMap<String, ByteString>, now: OffsetDateTime) -> bool {
    let verdict = match material {
        Material::Ca(..) => pki::check_ca(
            &CertKeyPair {
                cert_pem: text(data, TLS_CERT),
                key_pem: text(data, TLS_KEY),
            },
            now,
        ),
        Material::ServiceAccount => pki::check_service_account_keys(&ServiceAccountKeys {
            private_key_pem: text(data, SA_PRIVATE_KEY),
            public_key_pem: text(data, SA_PUBLIC_KEY),
        }),
        Material::Encryption => return encryption::is_usable(data),
    };
    verdict == Verdict::Valid
}

fn found_material(
    material: Material,
    secret: Option<&Secret>,
    owner_uid: &str,
    now: OffsetDateTime,
) -> FoundMaterial {
    match secret {
        None => FoundMaterial::Absent,
        Some(secret) => {
            let data = secret.data.clone().unwrap_or_default();
            FoundMaterial::Present {
                control: Control::of(&secret.metadata, owner_uid),
                fingerprint: fingerprint_of(material, &data).map(|(f, _)| f),
                usable: usable(material, &data, now),
            }
        }
    }
}

/// New material of this kind, as the Secret that holds it.
fn generate(hc: &HostedCluster, material: Material, now: OffsetDateTime) -> Result<Secret> {
    Ok(match material {
        Material::Ca(role) => {
            let validity = Duration::days(hc.spec.certificates.ca_validity_days.into());
            let ca = pki::generate_ca(role.common_name(), now, validity)?;
            secrets::tls_secret(hc, role.into(), &ca, &ca.cert_pem)?
        }
        Material::ServiceAccount => {
            secrets::service_account_secret(hc, &pki::generate_service_account_keys()?)?
        }
        Material::Encryption => encryption::generate(hc)?,
    })
}

/// Ensures the CAs and the service-account key as described in the module comment; never
/// writes when a recorded Secret is missing or changed without acceptance. Fails with
/// `Error::NotOwned` for a Secret that is someone else's.
pub async fn ensure_key_material(
    owned: &mut OwnedSet,
    secrets: &SecretReader<'_>,
    hc: &HostedCluster,
    now: OffsetDateTime,
) -> Result<KeyReport> {
    let cluster = builders::name(hc)?;
    let recorded: Vec<KeyFingerprint> = hc
        .status
        .as_ref()
        .map(|s| s.key_fingerprints.clone())
        .unwrap_or_default();
    let accepted = accepted_names(hc);
    let materials = CaRole::ALL
        .into_iter()
        .map(Material::Ca)
        .chain([Material::ServiceAccount, Material::Encryption]);

    // Decide for every Secret before writing any, so that one problem stops them all.
    let mut plans = Vec::new();
    let mut problems = Vec::new();
    let mut ca_expiry = Vec::new();
    for material in materials {
        let name = material.role().secret_name(&cluster);
        let recorded_print = recorded
            .iter()
            .find(|r| r.secret_name == name)
            .map(|r| r.sha256.as_str());
        let is_accepted = accepted.contains(&name);
        // Only material that is intact as recorded is taken from the watch's copy.
        let intact = |s: &Secret| {
            let found = found_material(material, Some(s), owned.owner_uid(), now);
            compute_key_material(recorded_print, &found, is_accepted)
                == KeyVerdict {
                    action: KeyAction::Intact,
                    adopt: false,
                }
        };
        let secret = secrets.any(&name, intact).await?;
        let found = found_material(material, secret.as_ref(), owned.owner_uid(), now);
        if let Some((_, Some(not_after))) = secret
            .as_ref()
            .and_then(|s| fingerprint_of(material, &s.data.clone().unwrap_or_default()))
        {
            ca_expiry.push((name.clone(), not_after));
        }
        let verdict = compute_key_material(recorded_print, &found, is_accepted);
        let short = |print: &str| print.chars().take(16).collect::<String>();
        match &verdict.action {
            KeyAction::NotOwned(owner) => {
                return Err(Error::NotOwned {
                    kind: "Secret",
                    name,
                    owner: owner.clone(),
                });
            }
            KeyAction::Missing => problems.push(Problem {
                detail: format!(
                    "Secret {name} (recorded sha256 {}…) is missing",
                    short(recorded_print.unwrap_or_default())
                ),
                secret: name.clone(),
                reason: REASON_KEY_MATERIAL_MISSING,
            }),
            KeyAction::Changed => {
                // Accepting what cannot be used generates new material over it: say so, since
                // for the encryption key that loses what was stored with the old one.
                let found_print = match &found {
                    FoundMaterial::Present {
                        fingerprint: Some(print),
                        usable: true,
                        ..
                    } => format!("sha256 {}…", short(print)),
                    FoundMaterial::Present {
                        fingerprint: Some(print),
                        ..
                    } => format!(
                        "sha256 {}…, which cannot be used (accepting it generates anew)",
                        short(print)
                    ),
                    _ => "unreadable material (accepting it generates anew)".to_string(),
                };
                problems.push(Problem {
                    detail: format!(
                        "Secret {name} holds {found_print}, not the recorded sha256 {}…",
                        short(recorded_print.unwrap_or_default())
                    ),
                    secret: name.clone(),
                    reason: REASON_KEY_MATERIAL_CHANGED,
                });
            }
            _ => {}
        }
        plans.push((material, name, secret, verdict));
    }

    let leaf_validity = Duration::days(hc.spec.certificates.validity_days.into());
    let mut report = KeyReport {
        fingerprints: recorded,
        ..KeyReport::default()
    };
    if !problems.is_empty() {
        report.checks.push(key_material_check(hc, &problems));
        report
            .checks
            .push(ca_validity_check(hc, &ca_expiry, now, leaf_validity));
        report.problems = problems;
        return Ok(report);
    }
    ca_expiry.clear();
    for (material, name, existing, verdict) in plans {
        let stored = apply_verdict(owned, hc, material, existing, &verdict, now).await?;
        let data = stored.data.clone().unwrap_or_default();
        let (sha256, not_after) = fingerprint_of(material, &data).ok_or_else(|| Error::SecretKey {
            name: name.clone(),
            key: material.fingerprinted_key(),
        })?;
        if let Some(not_after) = not_after {
            ca_expiry.push((name.clone(), not_after));
        }
        match verdict.action {
            KeyAction::Record if accepted.contains(&name) => report.renewed.push((
                name.clone(),
                format!("accepted the key material now in Secret {name} (sha256 {sha256})"),
            )),
            KeyAction::Create | KeyAction::Replace if accepted.contains(&name) => report.renewed.push((
                name.clone(),
                format!(
                    "generated new key material for Secret {name} (sha256 {sha256}) as accepted by \
                     {ACCEPT_NEW_KEY_MATERIAL_ANNOTATION}; everything issued from it is re-issued"
                ),
            )),
            _ => {}
        }
        let entry = KeyFingerprint {
            secret_name: name.clone(),
            sha256,
            not_after: not_after.map(rfc3339),
        };
        match report.fingerprints.iter_mut().find(|r| r.secret_name == name) {
            Some(existing) => *existing = entry,
            None => report.fingerprints.push(entry),
        }
        report.data.insert(material.role(), data);
    }
    report.checks.push(key_material_check(hc, &[]));
    report
        .checks
        .push(ca_validity_check(hc, &ca_expiry, now, leaf_validity));
    Ok(report)
}

/// Carries out a verdict that does not stop the pass; returns the Secret as stored.
async fn apply_verdict(
    owned: &mut OwnedSet,
    hc: &HostedCluster,
    material: Material,
    existing: Option<Secret>,
    verdict: &KeyVerdict,
    now: OffsetDateTime,
) -> Result<Secret> {
    let existing = match existing {
        Some(secret) if verdict.adopt => {
            info!(secret = %secret.name_any(), "adopting");
            Some(
                owned
                    .adopt(&secret, owner_reference(hc)?, labels(hc, None)?)
                    .await?,
            )
        }
        other => other,
    };
    match (&verdict.action, existing) {
        (KeyAction::Intact | KeyAction::Record, Some(secret)) => {
            owned.keep(&secret);
            Ok(secret)
        }
        (KeyAction::Replace, Some(_)) => owned.apply(&generate(hc, material, now)?).await,
        _ => owned.create_if_absent(&generate(hc, material, now)?).await,
    }
}

/// The status of a pass stopped by key material: the workloads as they run, and whether the API
/// server still answers with the admin kubeconfig already handed out.
pub async fn observe_blocked(
    hc: &HostedCluster,
    ctx: &Context,
    secrets: &SecretReader<'_>,
    keys: &KeyReport,
    endpoint: &Endpoint,
) -> Observed {
    let mut observed = Observed::nothing_yet(hc, Some(endpoint.url()));
    observed.workloads = observe_workloads_as_they_are(&ctx.cache, hc, "intact key material");
    let apiserver_ready = hosted_api_pods_ready(observed.workloads.iter().map(|(c, s)| (c, s)));
    observed.readyz = match pki_store::stored_admin_kubeconfig(secrets, hc).await {
        Ok(Some(kubeconfig)) if apiserver_ready => probe_readyz(&ctx.hosted, hc, &kubeconfig).await,
        Ok(Some(_)) => Err("kube-apiserver is not ready".to_string()),
        Ok(None) => Err("no admin kubeconfig to probe with".to_string()),
        Err(error) => Err(error.to_string()),
    };
    observed.kubeconfig_secret = Some(SecretRole::AdminKubeconfig.secret_name(&hc.name_any()));
    keys.record(&mut observed);
    observed
}

/// Once a pass honoured the accept annotation and its status is written, the annotation goes
/// (a merge patch: it belongs to the person who set it). Honouring it again is harmless (what
/// it named is intact by then), so a failure here is only logged.
pub async fn clear_accept_request(client: &kube::Client, hc: &HostedCluster, observed: &Observed) {
    let honoured = observed
        .checks
        .iter()
        .any(|c| c.type_ == KEY_MATERIAL_INTACT && c.ok);
    if !honoured || !hc.annotations().contains_key(ACCEPT_NEW_KEY_MATERIAL_ANNOTATION) {
        return;
    }
    remove_request_annotation(client, hc, ACCEPT_NEW_KEY_MATERIAL_ANNOTATION).await;
}

#[cfg(test)]
mod tests;
