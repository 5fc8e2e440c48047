//! etcd's claims. They outlive the StatefulSet (its retention policy is `Retain`), grow by
//! volume expansion (the StatefulSet's claim template never changes), and go away only with the
//! HostedCluster, unless `etcd.storage.deletionPolicy: Retain` keeps them for a HostedCluster of
//! the same name, which must then ask for them.
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use k8s_openapi::api::apps::v1::StatefulSet;

use super::cache::Cache;
use super::observe::observe_workload;
use super::status::Check;
use crate::api::conditions::*;
use crate::api::{EtcdDeletionPolicy, HostedCluster};
use crate::builders::etcd::{DATA_VOLUME, EtcdInputs};
use crate::builders::{self, Component, Workload, quantity};
use crate::error::{KubeContext, Result};

/// The etcd StatefulSet's claim template and the members' claims, as they are.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    pub template: Option<PersistentVolumeClaim>,
    /// The existing StatefulSet's `--initial-cluster-token`.
    pub cluster_token: Option<String>,
    /// Sorted by name.
    pub claims: Vec<PersistentVolumeClaim>,
}

/// The labels the claim template gives every member claim.
pub fn claim_selector(hc: &HostedCluster) -> Result<String> {
    let selector = builders::selector(hc, Component::Etcd)?;
    Ok(selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(","))
}

/// The StatefulSet and claims as the watches last saw them, read again live unless that is a
/// settled etcd (the StatefulSet and a bound claim per member): the token and claims decide
/// what data etcd starts on, so no new StatefulSet or claim adoption rests on a lagging copy.
pub async fn observe_claims(client: &kube::Client, cache: &Cache, hc: &HostedCluster) -> Result<Claims> {
    let cached_sts = observe_workload(cache, hc, Component::Etcd);
    let cached_claims = cached_claims(cache, hc)?;
    let members = usize::try_from(hc.spec.etcd.replicas).unwrap_or_default();
    let settled = cached_sts.is_some()
        && cached_claims.len() == members
        && cached_claims.iter().all(|c| {
            c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
                && !c.annotations().contains_key(RETAINED_FROM_ANNOTATION)
        });
    let (sts, mut claims) = if settled {
        (cached_sts, cached_claims)
    } else {
        let name = Component::Etcd.workload_name(&builders::name(hc)?);
        let sts = Api::<StatefulSet>::namespaced(client.clone(), &builders::namespace(hc)?)
            .get_opt(&name)
            .await
            .context("get", "StatefulSet", &name)?
            .map(Workload::StatefulSet);
        (sts, list_claims(client, hc).await?)
    };
    let (spec, terminating) = match sts {
        Some(Workload::StatefulSet(sts)) => (sts.spec, sts.metadata.deletion_timestamp.is_some()),
        _ => (None, false),
    };
    let template = spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .and_then(|t| t.iter().find(|c| c.metadata.name.as_deref() == Some(DATA_VOLUME)))
        .cloned();
    // A StatefulSet on its way out is replaced by a new one, which gets a new token.
    let cluster_token = spec.as_ref().filter(|_| !terminating).and_then(|s| {
        let pod = s.template.spec.as_ref()?;
        pod.containers
            .first()?
            .args
            .as_ref()?
            .iter()
            .find_map(|a| a.strip_prefix("--initial-cluster-token=").map(str::to_string))
    });
    claims.sort_by_key(|c| c.name_any());
    Ok(Claims {
        template,
        cluster_token,
        claims,
    })
}

/// The member claims of this HostedCluster's etcd StatefulSet, read live.
async fn list_claims(client: &kube::Client, hc: &HostedCluster) -> Result<Vec<PersistentVolumeClaim>> {
    let selector = claim_selector(hc)?;
    Ok(claims_api(client, hc)?
        .list(&ListParams::default().labels(&selector))
        .await
        .context("list", "PersistentVolumeClaim", &selector)?
        .items
        .into_iter()
        .filter(|c| is_member_claim(hc, c))
        .collect())
}

/// The member claims as the watch last saw them.
fn cached_claims(cache: &Cache, hc: &HostedCluster) -> Result<Vec<PersistentVolumeClaim>> {
    let labels = builders::selector(hc, Component::Etcd)?;
    Ok(cache
        .labelled::<PersistentVolumeClaim>(&builders::namespace(hc)?, &labels)
        .iter()
        .map(|c| PersistentVolumeClaim::clone(c))
        .filter(|c| is_member_claim(hc, c))
        .collect())
}

/// Claims of the StatefulSet's data volume (`data-<cluster>-etcd-<ordinal>`).
fn is_member_claim(hc: &HostedCluster, claim: &PersistentVolumeClaim) -> bool {
    let prefix = format!("{DATA_VOLUME}-{}-", Component::Etcd.workload_name(&hc.name_any()));
    claim.name_any().starts_with(&prefix)
}

fn claims_api(client: &kube::Client, hc: &HostedCluster) -> Result<Api<PersistentVolumeClaim>> {
    Ok(Api::namespaced(client.clone(), &builders::namespace(hc)?))
}

impl Claims {
    /// What the etcd builder needs: the template and token to keep (`new_token` for a new
    /// StatefulSet) and the capacity there.
    pub fn etcd_inputs(&self, new_token: String) -> EtcdInputs {
        EtcdInputs {
            claim_template: self.template.clone(),
            capacity: self.smallest_capacity(),
            cluster_token: Some(self.cluster_token.clone().unwrap_or(new_token)),
        }
    }

    /// Capacity of the smallest bound claim, as the storage system reports it.
    pub fn smallest_capacity(&self) -> Option<Quantity> {
        self.claims
            .iter()
            .filter_map(capacity)
            .filter_map(|q| Some((bytes(&q)?, q)))
            .min_by_key(|(b, _)| *b)
            .map(|(_, q)| q)
    }

    /// Claims an earlier HostedCluster of this name retained, which this one has not adopted.
    pub fn retained_from_elsewhere(&self, hc: &HostedCluster) -> Vec<&PersistentVolumeClaim> {
        let own = hc.uid().unwrap_or_default();
        self.claims
            .iter()
            .filter(|c| retained_from(c).is_some_and(|uid| uid != own))
            .collect()
    }
}

fn retained_from(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .annotations()
        .get(RETAINED_FROM_ANNOTATION)
        .map(String::as_str)
}

/// The etcd cluster ID recorded on a retained claim.
pub fn retained_cluster_id(claim: &PersistentVolumeClaim) -> Option<String> {
    claim.annotations().get(CLAIM_ETCD_CLUSTER_ANNOTATION).cloned()
}

fn capacity(claim: &PersistentVolumeClaim) -> Option<Quantity> {
    claim.status.as_ref()?.capacity.as_ref()?.get("storage").cloned()
}

fn requested(claim: &PersistentVolumeClaim) -> Option<Quantity> {
    crate::builders::etcd::requested_size(claim)
}

fn bytes(q: &Quantity) -> Option<u64> {
    quantity::to_bytes(q).ok()
}

/// One member claim's sizes, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSize {
    pub name: String,
    pub requested: u64,
    /// What is there; the request while the claim is not bound yet.
    pub capacity: u64,
}

/// What growing the claims to the size the spec asks for takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resize {
    AsRequested,
    /// These claims ask for less than the spec: their request must be raised.
    Expand(Vec<String>),
    /// Every claim asks for enough; these do not have it yet.
    Resizing(Vec<String>),
}

pub fn plan_resize(wanted: u64, claims: &[ClaimSize]) -> Resize {
    let short: Vec<String> = claims
        .iter()
        .filter(|c| c.requested < wanted)
        .map(|c| c.name.clone())
        .collect();
    if !short.is_empty() {
        return Resize::Expand(short);
    }
    let growing: Vec<String> = claims
        .iter()
        .filter(|c| c.capacity < wanted)
        .map(|c| c.name.clone())
        .collect();
    if growing.is_empty() {
        Resize::AsRequested
    } else {
        Resize::Resizing(growing)
    }
}

/// Brings the claims to the size the spec asks for where the StorageClass allows it, and says
/// how far that is (`EtcdInputsReady`). Nothing to say before the claims exist.
pub async fn ensure_size(
    client: &kube::Client,
    hc: &HostedCluster,
    claims: &Claims,
) -> Result<Option<Check>> {
    let spec_size = &hc.spec.etcd.storage.size;
    let (Some(wanted), false) = (bytes(spec_size), claims.claims.is_empty()) else {
        return Ok(None);
    };
    let sizes: Vec<ClaimSize> = claims
        .claims
        .iter()
        .filter_map(|c| {
            let requested = bytes(&requested(c)?)?;
            let capacity = capacity(c).as_ref().and_then(bytes).unwrap_or(requested);
            Some(ClaimSize {
                name: c.name_any(),
                requested,
                capacity,
            })
        })
        .collect();
    let there = claims
        .smallest_capacity()
        .map_or_else(|| "no capacity yet".to_string(), |q| q.0);
    let check = |ok, reason, message| Check {
        type_: ETCD_STORAGE_READY,
        ok,
        reason,
        message,
        // The claims keep working at their old size.
        blocks_available: false,
    };
    let names = |names: &[String]| names.join(", ");
    Ok(Some(match plan_resize(wanted, &sizes) {
        Resize::AsRequested => check(
            true,
            REASON_STORAGE_AS_REQUESTED,
            format!("claims have {there}, as requested ({})", spec_size.0),
        ),
        Resize::Resizing(growing) => check(
            false,
            REASON_STORAGE_RESIZING,
            format!(
                "expanding claims {} to {}; the smallest has {there}",
                names(&growing),
                spec_size.0
            ),
        ),
        Resize::Expand(short) => {
            let class = claims
                .claims
                .iter()
                .find_map(|c| c.spec.as_ref()?.storage_class_name.clone());
            let expandable = match &class {
                Some(class) => Api::<StorageClass>::all(client.clone())
                    .get_opt(class)
                    .await
                    .context("get", "StorageClass", class)?
                    .and_then(|c| c.allow_volume_expansion)
                    .unwrap_or(false),
                None => false,
            };
            if expandable {
                let patch = json!({ "spec": { "resources": { "requests": { "storage": spec_size } } } });
                for name in &short {
                    // A merge patch of the one field: the rest of the claim is the StatefulSet
                    // controller's.
                    claims_api(client, hc)?
                        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .context("expand", "PersistentVolumeClaim", name)?;
                }
                check(
                    false,
                    REASON_STORAGE_RESIZING,
                    format!(
                        "expanding claims {} to {}; the smallest has {there}",
                        names(&short),
                        spec_size.0
                    ),
                )
            } else {
                let class = class.unwrap_or_else(|| "(none)".to_string());
                check(
                    false,
                    REASON_STORAGE_RESIZE_UNSUPPORTED,
                    format!(
                        "etcd.storage.size asks for {} but StorageClass {class} does not allow volume \
                         expansion, so claims {} keep {there}; etcd keeps working at that size. Enable \
                         allowVolumeExpansion on the StorageClass if its provisioner supports it, or \
                         restore a backup into a cluster created with the larger size",
                        spec_size.0,
                        names(&short)
                    ),
                )
            }
        }
    }))
}

/// Takes the retained-from mark off claims this HostedCluster adopts.
pub async fn adopt(
    client: &kube::Client,
    hc: &HostedCluster,
    claims: &[&PersistentVolumeClaim],
) -> Result<()> {
    let patch = json!({ "metadata": { "annotations": {
        RETAINED_FROM_ANNOTATION: null, CLAIM_ETCD_CLUSTER_ANNOTATION: null,
    } } });
    for claim in claims {
        let name = claim.name_any();
        claims_api(client, hc)?
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context("adopt", "PersistentVolumeClaim", &name)?;
    }
    Ok(())
}

/// What became of the claims when the HostedCluster went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    Deleted(Vec<String>),
    Retained(Vec<String>),
}

/// On deletion of the HostedCluster: deletes the claims, or with `deletionPolicy: Retain`
/// marks them with this HostedCluster's UID and etcd cluster ID and keeps them.
pub async fn release_claims(client: &kube::Client, hc: &HostedCluster) -> Result<Released> {
    let api = claims_api(client, hc)?;
    let names: Vec<String> = list_claims(client, hc)
        .await?
        .iter()
        .map(|c| c.name_any())
        .collect();
    match hc.spec.etcd.storage.deletion_policy {
        EtcdDeletionPolicy::Delete => {
            for name in &names {
                match api.delete(name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(source) => return Err(source).context("delete", "PersistentVolumeClaim", name),
                }
            }
            Ok(Released::Deleted(names))
        }
        EtcdDeletionPolicy::Retain => {
            let cluster_id = hc
                .status
                .as_ref()
                .and_then(|s| s.etcd.as_ref()?.cluster_id.clone());
            let patch = json!({ "metadata": { "annotations": {
                RETAINED_FROM_ANNOTATION: hc.uid().unwrap_or_default(),
                CLAIM_ETCD_CLUSTER_ANNOTATION: cluster_id,
            } } });
            for name in &names {
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .context("mark as retained", "PersistentVolumeClaim", name)?;
            }
            Ok(Released::Retained(names))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1 << 30;

    fn claim(name: &str, requested: u64, capacity: u64) -> ClaimSize {
        ClaimSize {
            name: name.into(),
            requested,
            capacity,
        }
    }

    #[test]
    fn claims_of_the_requested_size_need_nothing() {
        assert_eq!(plan_resize(GI, &[claim("a", GI, GI)]), Resize::AsRequested);
        // A provisioner that rounds up gives more than asked: still as requested.
        assert_eq!(plan_resize(GI, &[claim("a", GI, 10 * GI)]), Resize::AsRequested);
    }

    #[test]
    fn a_larger_size_expands_the_claims_that_ask_for_less() {
        let claims = [claim("a", 2 * GI, GI), claim("b", GI, GI), claim("c", GI, GI)];
        assert_eq!(
            plan_resize(2 * GI, &claims),
            Resize::Expand(vec!["b".into(), "c".into()])
        );
    }

    #[test]
    fn claims_that_ask_for_enough_but_lack_it_are_resizing() {
        let claims = [claim("a", 2 * GI, 2 * GI), claim("b", 2 * GI, GI)];
        assert_eq!(plan_resize(2 * GI, &claims), Resize::Resizing(vec!["b".into()]));
    }

    #[test]
    fn the_smallest_capacity_is_reported_and_retained_claims_are_told_apart() {
        let pvc = |name: &str, capacity: &str, retained_from: Option<&str>| -> PersistentVolumeClaim {
            serde_json::from_value(json!({
                "metadata": { "name": name, "annotations": retained_from
                    .map(|uid| json!({ RETAINED_FROM_ANNOTATION: uid })).unwrap_or(json!({})) },
                "status": { "capacity": { "storage": capacity } }
            }))
            .expect("claim")
        };
        let claims = Claims {
            template: None,
            cluster_token: None,
            claims: vec![pvc("a", "2Gi", Some("old-uid")), pvc("b", "1536Mi", None)],
        };
        assert_eq!(claims.smallest_capacity(), Some(Quantity("1536Mi".into())));
        let mut hc = crate::builders::testing::hosted_cluster();
        let names = |hc: &HostedCluster| {
            claims
                .retained_from_elsewhere(hc)
                .iter()
                .map(|c| c.name_any())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&hc), ["a"]);
        hc.metadata.uid = Some("old-uid".into());
        assert!(names(&hc).is_empty(), "its own retained claims are its own");
    }
}
