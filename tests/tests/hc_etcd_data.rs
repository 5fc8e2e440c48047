//! etcd's data: deleting the StatefulSet loses nothing, losing the claims is reported and never
//! looks Available, the deletion policy decides what deleting the HostedCluster does to the
//! claims, a size the StorageClass cannot give is reported without wedging anything, and the
//! space quota fits the volume.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nestplane_api::HostedCluster;
use nestplane_e2e::hosted::{
    admin_kubeconfig, available, condition_true, create_available, eventually, hosted_client, sample,
};
use nestplane_e2e::{wait_until, with_temp_namespace};
use serde_json::json;

const MARKER: &str = "etcd-data-marker";
const TIMEOUT: Duration = Duration::from_secs(300);

fn condition(hc: &HostedCluster, type_: &str) -> Option<Condition> {
    hc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

fn has_reason(hc: Option<&HostedCluster>, type_: &str, status: &str, reason: &str) -> bool {
    hc.and_then(|hc| condition(hc, type_))
        .is_some_and(|c| c.status == status && c.reason == reason)
}

fn claim_name(cluster: &str) -> String {
    format!("data-{cluster}-etcd-0")
}

/// Writes a ConfigMap into the hosted cluster.
async fn write_marker(client: &Client, hc: &HostedCluster) -> Result<()> {
    let hosted = hosted_client(&admin_kubeconfig(client, hc).await?).await?;
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": MARKER, "namespace": "default" },
        "data": { "written": "before" }
    }))?;
    Api::<ConfigMap>::namespaced(hosted, "default")
        .create(&PostParams::default(), &config_map)
        .await?;
    Ok(())
}

/// The ConfigMap written by `write_marker`, read through the hosted API (retried while it restarts).
async fn read_marker(client: &Client, hc: &HostedCluster) -> Result<Option<ConfigMap>> {
    let kubeconfig = admin_kubeconfig(client, hc).await?;
    eventually(Duration::from_secs(120), || async {
        let hosted = hosted_client(&kubeconfig).await?;
        Ok(Api::<ConfigMap>::namespaced(hosted, "default")
            .get_opt(MARKER)
            .await?)
    })
    .await
}

async fn available_again(api: &Api<HostedCluster>, name: &str) -> Result<HostedCluster> {
    // The controller must first see the change; then the cluster must be Available.
    tokio::time::sleep(Duration::from_secs(5)).await;
    wait_until(api, name, TIMEOUT, available).await
}

/// (a) The claims outlive the StatefulSet; (b) losing them is EtcdDataLost, never Available,
/// until the new etcd is accepted.
#[tokio::test]
async fn deleting_the_statefulset_keeps_the_data_and_a_lost_claim_is_reported() -> Result<()> {
    with_temp_namespace("etcd-data", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let sts_name = format!("{name}-etcd");
        write_marker(&client, &hc).await?;
        let claim_uid = claims.get(&claim_name(&name)).await?.uid();

        // (a) Delete the StatefulSet: same claim, same data.
        let old_sts = statefulsets.get(&sts_name).await?.uid();
        statefulsets
            .delete(&sts_name, &DeleteParams::background())
            .await?;
        eventually(TIMEOUT, || async {
            let sts = statefulsets.get(&sts_name).await?;
            ensure!(sts.uid() != old_sts, "not recreated yet");
            Ok(())
        })
        .await?;
        let hc = available_again(&hcs, &name).await?;
        ensure!(
            claims.get(&claim_name(&name)).await?.uid() == claim_uid,
            "the claim was replaced"
        );
        let marker = read_marker(&client, &hc).await?;
        ensure!(marker.is_some(), "the ConfigMap written before is gone");
        let recorded = hc
            .status
            .as_ref()
            .and_then(|s| s.etcd.as_ref()?.cluster_id.clone())
            .ok_or_else(|| anyhow!("status.etcd.clusterID is not recorded"))?;

        // (b) Delete the StatefulSet and its claim: the data is really gone.
        claims
            .delete(&claim_name(&name), &DeleteParams::background())
            .await?;
        statefulsets
            .delete(&sts_name, &DeleteParams::foreground())
            .await?;
        // Once the loss shows (Available=False), Available must not come back.
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut went_down = false;
        let lost = loop {
            let hc = hcs.get(&name).await?;
            let up = condition_true(&hc, "Available");
            ensure!(
                !(went_down && up),
                "Available again after the data was lost: {:#?}",
                hc.status
            );
            went_down |= !up;
            if has_reason(Some(&hc), "EtcdAvailable", "False", "EtcdDataLost") {
                break hc;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "no EtcdDataLost: {:#?}",
                hc.status
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let message = condition(&lost, "EtcdAvailable")
            .map(|c| c.message)
            .unwrap_or_default();
        let found = message
            .split("nestplane.io/accept-etcd-cluster-id=")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .ok_or_else(|| anyhow!("the message does not say how to accept: {message}"))?
            .to_string();
        ensure!(message.contains(&recorded), "recorded ID missing: {message}");
        ensure!(found != recorded, "same ID twice: {message}");
        let available = condition(&lost, "Available").context("no Available condition")?;
        ensure!(available.status == "False", "{available:?}");
        // It stays that way.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let still = hcs.get(&name).await?;
        ensure!(!condition_true(&still, "Available"), "{:#?}", still.status);
        ensure!(has_reason(Some(&still), "EtcdAvailable", "False", "EtcdDataLost"));

        // Accept the new, empty etcd: Available again, and the data is indeed gone.
        let patch =
            json!({ "metadata": { "annotations": { "nestplane.io/accept-etcd-cluster-id": found } } });
        hcs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let hc = available_again(&hcs, &name).await?;
        let now = hc
            .status
            .as_ref()
            .and_then(|s| s.etcd.as_ref()?.cluster_id.clone());
        ensure!(
            now.as_deref() == Some(found.as_str()),
            "recorded {now:?}, accepted {found}"
        );
        ensure!(
            read_marker(&client, &hc).await?.is_none(),
            "the old data is back?"
        );
        Ok(())
    })
    .await
}

/// (c) With `deletionPolicy: Retain` the claim and its data outlive the HostedCluster, and a
/// HostedCluster of the same name uses them once it asks for them; by default they go with it.
#[tokio::test]
async fn the_deletion_policy_decides_whether_the_claims_outlive_the_hosted_cluster() -> Result<()> {
    with_temp_namespace("etcd-retain", |client, ns| async move {
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);

        let mut retained = sample(&ns)?;
        retained.metadata.name = Some("keep".into());
        retained.spec.etcd.storage.deletion_policy = nestplane_api::EtcdDeletionPolicy::Retain;
        let hc = create_available(&client, &retained).await?;
        write_marker(&client, &hc).await?;
        let mut deleted = sample(&ns)?;
        deleted.metadata.name = Some("drop".into());
        create_available(&client, &deleted).await?;
        let kept_uid = claims.get(&claim_name("keep")).await?.uid();

        for name in ["keep", "drop"] {
            hcs.delete(name, &DeleteParams::default()).await?;
        }
        for name in ["keep", "drop"] {
            eventually(TIMEOUT, || async {
                ensure!(hcs.get_opt(name).await?.is_none(), "{name} not deleted yet");
                Ok(())
            })
            .await?;
        }
        eventually(TIMEOUT, || async {
            let gone = claims.get_opt(&claim_name("drop")).await?;
            ensure!(
                gone.is_none(),
                "claim of the default policy still there: {gone:?}"
            );
            Ok(())
        })
        .await?;
        // Give the garbage collector time to remove everything it would.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let kept = claims.get(&claim_name("keep")).await?;
        ensure!(
            kept.uid() == kept_uid && kept.metadata.deletion_timestamp.is_none(),
            "{kept:?}"
        );

        // The same name again: the retained claim is not used until asked for.
        hcs.create(&PostParams::default(), &retained).await?;
        let waiting = wait_until(&hcs, "keep", TIMEOUT, |hc: Option<&HostedCluster>| {
            has_reason(hc, "EtcdAvailable", "False", "EtcdClaimsRetained")
        })
        .await?;
        let message = condition(&waiting, "EtcdAvailable")
            .map(|c| c.message)
            .unwrap_or_default();
        ensure!(message.contains(&claim_name("keep")), "{message}");
        let patch = json!({ "metadata": { "annotations": { "nestplane.io/adopt-etcd-claims": "true" } } });
        hcs.patch("keep", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let hc = available_again(&hcs, "keep").await?;
        ensure!(claims.get(&claim_name("keep")).await?.uid() == kept_uid);
        ensure!(
            read_marker(&client, &hc).await?.is_some(),
            "the retained data is not there"
        );
        Ok(())
    })
    .await
}

/// (d) A size local-path cannot give: reported, nothing wedged. (e) The quota fits the claim.
#[tokio::test]
async fn a_size_the_storage_class_cannot_give_is_reported_and_the_quota_fits() -> Result<()> {
    with_temp_namespace("etcd-size", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);

        // (e) --quota-backend-bytes is below the claim's capacity.
        let pod = Api::<Pod>::namespaced(client.clone(), &ns)
            .get(&format!("{name}-etcd-0"))
            .await?;
        let quota: u64 = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.args.iter().flatten())
            .find_map(|a| a.strip_prefix("--quota-backend-bytes="))
            .context("no --quota-backend-bytes")?
            .parse()?;
        let claim = claims.get(&claim_name(&name)).await?;
        let capacity = claim
            .status
            .as_ref()
            .and_then(|s| s.capacity.as_ref()?.get("storage").cloned())
            .context("claim without capacity")?;
        ensure!(capacity.0 == "1Gi", "sample claim has {capacity:?}");
        ensure!(quota < 1 << 30, "quota {quota} does not fit a 1Gi claim");
        ensure!(
            has_reason(Some(&hc), "EtcdStorageReady", "True", "AsRequested"),
            "{:#?}",
            hc.status
        );

        // (d) Ask for 2Gi on local-path, which does not allow expansion.
        let patch = json!({ "spec": { "etcd": { "storage": { "size": "2Gi" } } } });
        hcs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let hc = wait_until(&hcs, &name, TIMEOUT, |hc: Option<&HostedCluster>| {
            has_reason(hc, "EtcdStorageReady", "False", "ExpansionNotAllowed") && available(hc)
        })
        .await?;
        let message = condition(&hc, "EtcdStorageReady")
            .map(|c| c.message)
            .unwrap_or_default();
        ensure!(message.contains("local-path"), "{message}");
        let requested = claims
            .get(&claim_name(&name))
            .await?
            .spec
            .and_then(|s| s.resources?.requests?.get("storage").cloned());
        ensure!(
            requested.map(|q| q.0).as_deref() == Some("1Gi"),
            "the claim was patched"
        );

        // Later changes still reconcile: a rotation request reissues the API server certificate.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let secret_name = format!("{name}-apiserver");
        let before = secrets.get(&secret_name).await?.resource_version();
        let patch = json!({ "metadata": { "annotations": { "nestplane.io/rotate": "e2e" } } });
        secrets
            .patch(&secret_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        eventually(TIMEOUT, || async {
            let secret = secrets.get(&secret_name).await?;
            ensure!(
                !secret.annotations().contains_key("nestplane.io/rotate")
                    && secret.resource_version() != before,
                "not reissued yet"
            );
            Ok(())
        })
        .await?;
        let hc = available_again(&hcs, &name).await?;
        for c in &hc
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default()
        {
            ensure!(!c.message.contains("422"), "{c:?}");
        }
        ensure!(has_reason(
            Some(&hc),
            "EtcdStorageReady",
            "False",
            "ExpansionNotAllowed"
        ));
        Ok(())
    })
    .await
}

/// The StatefulSet stays and only the claim goes (deleted, then the pod that held it): the member
/// starts again on an empty claim under the same cluster token, so with the same cluster ID. The
/// marker nestplane wrote into etcd is what is missing, and the loss is reported all the same.
#[tokio::test]
async fn a_claim_lost_under_a_surviving_statefulset_is_reported() -> Result<()> {
    with_temp_namespace("etcd-claim-lost", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        write_marker(&client, &hc).await?;
        let hc = eventually(TIMEOUT, || async {
            let hc = hcs.get(&name).await?;
            let etcd = hc
                .status
                .as_ref()
                .and_then(|s| s.etcd.clone())
                .unwrap_or_default();
            ensure!(etcd.marked == Some(true), "etcd not marked yet: {etcd:?}");
            Ok(hc)
        })
        .await?;
        let recorded = hc
            .status
            .as_ref()
            .and_then(|s| s.etcd.as_ref()?.cluster_id.clone())
            .ok_or_else(|| anyhow!("status.etcd.clusterID is not recorded"))?;
        let claim = claims.get(&claim_name(&name)).await?;

        // The claim is protected while its pod runs: delete both.
        claims
            .delete(&claim_name(&name), &DeleteParams::background())
            .await?;
        pods.delete(&format!("{name}-etcd-0"), &DeleteParams::background())
            .await?;
        eventually(TIMEOUT, || async {
            let now = claims.get_opt(&claim_name(&name)).await?;
            ensure!(now.is_some_and(|c| c.uid() != claim.uid()), "no new claim yet");
            Ok(())
        })
        .await?;
        let lost = wait_until(&hcs, &name, TIMEOUT, |hc: Option<&HostedCluster>| {
            has_reason(hc, "EtcdAvailable", "False", "EtcdDataLost")
        })
        .await?;
        let message = condition(&lost, "EtcdAvailable")
            .map(|c| c.message)
            .unwrap_or_default();
        ensure!(
            message.contains(&recorded) && message.contains("marker"),
            "the message names neither the ID nor the marker: {message}"
        );
        ensure!(!condition_true(&lost, "Available"), "{:#?}", lost.status);
        tokio::time::sleep(Duration::from_secs(15)).await;
        ensure!(
            has_reason(
                Some(&hcs.get(&name).await?),
                "EtcdAvailable",
                "False",
                "EtcdDataLost"
            ),
            "the loss was not kept reported"
        );

        // Accepting the empty etcd (same ID) brings it back, once; the annotation goes.
        let patch =
            json!({ "metadata": { "annotations": { "nestplane.io/accept-etcd-cluster-id": recorded } } });
        hcs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let hc = available_again(&hcs, &name).await?;
        ensure!(
            read_marker(&client, &hc).await?.is_none(),
            "the old data is back?"
        );
        eventually(Duration::from_secs(60), || async {
            let hc = hcs.get(&name).await?;
            ensure!(
                !hc.annotations()
                    .contains_key("nestplane.io/accept-etcd-cluster-id"),
                "the accept annotation stays and would accept the next loss"
            );
            Ok(())
        })
        .await
    })
    .await
}
