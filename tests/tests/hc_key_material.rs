//! Key material is never silently regenerated, and nothing of a derived name that the
//! HostedCluster does not own is ever adopted. Each case does the harmful thing for real:
//! deletes the CA, service-account or encryption Secret, or plants a Secret under a derived name.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nestplane_api::HostedCluster;
use nestplane_api::conditions::{
    ACCEPT_NEW_KEY_MATERIAL_ANNOTATION, AVAILABLE, KEY_MATERIAL_INTACT, REASON_INTACT,
    REASON_KEY_MATERIAL_MISSING, REASON_OBJECT_NOT_OWNED,
};
use nestplane_e2e::hosted::{
    admin_kubeconfig, available, create_available, eventually, hosted_client, readyz, sample, template_hash,
};
use nestplane_e2e::{wait_until, with_temp_namespace};
use serde_json::json;

fn condition(hc: &HostedCluster, type_: &str) -> Option<Condition> {
    hc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// `type_` is False with `reason`, and its message names `object`.
fn is_false_naming(hc: Option<&HostedCluster>, type_: &str, reason: &str, object: &str) -> bool {
    hc.and_then(|hc| condition(hc, type_))
        .is_some_and(|c| c.status == "False" && c.reason == reason && c.message.contains(object))
}

fn fingerprint(hc: &HostedCluster, secret: &str) -> Option<String> {
    hc.status
        .as_ref()?
        .key_fingerprints
        .iter()
        .find(|f| f.secret_name == secret)
        .map(|f| f.sha256.clone())
}

async fn recorded_fingerprint(hcs: &Api<HostedCluster>, name: &str, secret: &str) -> Result<String> {
    eventually(Duration::from_secs(60), || async {
        match fingerprint(&hcs.get(name).await?, secret) {
            Some(print) => Ok(print),
            None => bail!("no fingerprint recorded for {secret}"),
        }
    })
    .await
}

/// resourceVersion of every Secret of the control plane except `except`.
async fn secret_versions(
    secrets: &Api<Secret>,
    cluster: &str,
    except: &str,
) -> Result<BTreeMap<String, String>> {
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={cluster}"));
    Ok(secrets
        .list(&selector)
        .await?
        .items
        .iter()
        .filter(|s| s.name_any() != except)
        .map(|s| (s.name_any(), s.resource_version().unwrap_or_default()))
        .collect())
}

/// A Warning or Normal event about the HostedCluster with this reason whose note names `object`.
async fn event_exists(
    client: &Client,
    ns: &str,
    hc: &str,
    type_: &str,
    reason: &str,
    object: &str,
) -> Result<()> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually(Duration::from_secs(60), || async {
        let found = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(hc)
                    && e.type_.as_deref() == Some(type_)
                    && e.reason.as_deref() == Some(reason)
                    && e.note.as_deref().is_some_and(|n| n.contains(object))
            });
        ensure!(found, "no {type_} event {reason} naming {object}");
        Ok(())
    })
    .await
}

async fn serves_readyz(kubeconfig: &str) -> Result<()> {
    eventually(Duration::from_secs(120), || async {
        let body = readyz(&hosted_client(kubeconfig).await?).await?;
        ensure!(body.trim() == "ok", "/readyz said {body}");
        Ok(())
    })
    .await
}

/// Annotating the HostedCluster wakes the controller without changing the spec.
async fn nudge(hcs: &Api<HostedCluster>, name: &str, value: &str) -> Result<()> {
    let patch = json!({ "metadata": { "annotations": { "e2e.nestplane.io/nudge": value } } });
    hcs.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn controller_uid(secret: &Secret) -> Option<String> {
    secret
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

/// `backup` as `kubectl get -o yaml` minus the server's fields (ownerReferences, uid,
/// resourceVersion), created again.
async fn restore(secrets: &Api<Secret>, backup: &Secret) -> Result<()> {
    let restored = Secret {
        metadata: ObjectMeta {
            name: backup.metadata.name.clone(),
            namespace: backup.metadata.namespace.clone(),
            labels: backup.metadata.labels.clone(),
            annotations: backup.metadata.annotations.clone(),
            ..ObjectMeta::default()
        },
        data: backup.data.clone(),
        type_: backup.type_.clone(),
        ..Secret::default()
    };
    secrets.create(&PostParams::default(), &restored).await?;
    Ok(())
}

/// After a key-material Secret was restored from `backup`: the cluster is Available again with
/// the same fingerprint and `KeyMaterialIntact=True`, and the Secret is unchanged and adopted.
async fn restored_and_whole(
    hcs: &Api<HostedCluster>,
    secrets: &Api<Secret>,
    name: &str,
    backup: &Secret,
    recorded: &str,
) -> Result<()> {
    let secret_name = backup.name_any();
    let whole = wait_until(hcs, name, Duration::from_secs(180), available).await?;
    ensure!(
        fingerprint(&whole, &secret_name).as_deref() == Some(recorded),
        "the recorded fingerprint of {secret_name} changed: {:?}",
        whole.status
    );
    ensure!(
        condition(&whole, KEY_MATERIAL_INTACT)
            .is_some_and(|c| c.status == "True" && c.reason == REASON_INTACT),
        "KeyMaterialIntact is not True: {:?}",
        whole.status
    );
    let adopted = secrets.get(&secret_name).await?;
    ensure!(
        adopted.data == backup.data,
        "the restored {secret_name} was changed"
    );
    ensure!(
        controller_uid(&adopted) == whole.uid(),
        "the restored {secret_name} was not adopted: {:?}",
        adopted.metadata.owner_references
    );
    Ok(())
}

#[tokio::test]
async fn deleted_ca_is_not_recreated_and_restoring_it_makes_the_cluster_whole() -> Result<()> {
    with_temp_namespace("hc-ca-deleted", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let ca_name = format!("{name}-ca");
        let recorded = recorded_fingerprint(&hcs, &name, &ca_name).await?;
        let kubeconfig = admin_kubeconfig(&client, &hcs.get(&name).await?).await?;
        // Let the last status write and rollouts settle before taking the backup.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let backup = secrets.get(&ca_name).await?;
        let leaves_before = secret_versions(&secrets, &name, &ca_name).await?;

        secrets.delete(&ca_name, &Default::default()).await?;
        let missing = ca_name.clone();
        let blocked = wait_until(
            &hcs,
            &name,
            Duration::from_secs(120),
            move |hc: Option<&HostedCluster>| {
                is_false_naming(hc, KEY_MATERIAL_INTACT, REASON_KEY_MATERIAL_MISSING, &missing)
            },
        )
        .await?;
        let message = condition(&blocked, KEY_MATERIAL_INTACT)
            .map(|c| c.message)
            .unwrap_or_default();
        ensure!(
            message.contains(ACCEPT_NEW_KEY_MATERIAL_ANNOTATION) && message.contains("restore"),
            "the message does not say both ways out: {message}"
        );
        ensure!(
            condition(&blocked, AVAILABLE).is_some_and(|c| c.status == "False"),
            "Available while the CA is missing: {:?}",
            blocked.status
        );

        // Woken again and given time, the operator still mints no new CA.
        nudge(&hcs, &name, "1").await?;
        tokio::time::sleep(Duration::from_secs(20)).await;
        ensure!(
            secrets.get_opt(&ca_name).await?.is_none(),
            "a new CA Secret was created"
        );
        event_exists(
            &client,
            &ns,
            &name,
            "Warning",
            REASON_KEY_MATERIAL_MISSING,
            &ca_name,
        )
        .await?;
        // The running control plane keeps its mounted copies and keeps serving.
        serves_readyz(&kubeconfig).await?;
        ensure!(
            secret_versions(&secrets, &name, &ca_name).await? == leaves_before,
            "certificates were written while the CA was missing"
        );

        restore(&secrets, &backup).await?;
        restored_and_whole(&hcs, &secrets, &name, &backup, &recorded).await?;
        ensure!(
            secret_versions(&secrets, &name, &ca_name).await? == leaves_before,
            "certificates were re-issued although the same CA came back"
        );
        serves_readyz(&kubeconfig).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn deleted_encryption_key_is_not_regenerated_and_restoring_it_keeps_the_data() -> Result<()> {
    with_temp_namespace("hc-enc-deleted", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let encryption_name = format!("{name}-encryption");
        let recorded = recorded_fingerprint(&hcs, &name, &encryption_name).await?;
        let kubeconfig = admin_kubeconfig(&client, &hcs.get(&name).await?).await?;

        // A Secret in the hosted cluster, stored encrypted with the key about to be deleted.
        let hosted_secrets: Api<Secret> = Api::namespaced(hosted_client(&kubeconfig).await?, "default");
        let stored = Secret {
            metadata: ObjectMeta {
                name: Some("e2e-encrypted".to_string()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "token".to_string(),
                ByteString(b"kept across the loss of the key Secret".to_vec()),
            )])),
            ..Secret::default()
        };
        hosted_secrets.create(&PostParams::default(), &stored).await?;
        let apiserver = format!("{name}-kube-apiserver");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let backup = secrets.get(&encryption_name).await?;
        let hash_before = template_hash(&deployments.get(&apiserver).await?);

        secrets.delete(&encryption_name, &Default::default()).await?;
        let missing = encryption_name.clone();
        let blocked = wait_until(
            &hcs,
            &name,
            Duration::from_secs(120),
            move |hc: Option<&HostedCluster>| {
                is_false_naming(hc, KEY_MATERIAL_INTACT, REASON_KEY_MATERIAL_MISSING, &missing)
            },
        )
        .await?;
        ensure!(
            condition(&blocked, AVAILABLE).is_some_and(|c| c.status == "False"),
            "Available while the encryption key is missing: {:?}",
            blocked.status
        );

        // Woken again and given time, the operator still generates no new key.
        nudge(&hcs, &name, "1").await?;
        tokio::time::sleep(Duration::from_secs(20)).await;
        ensure!(
            secrets.get_opt(&encryption_name).await?.is_none(),
            "a new encryption Secret was created"
        );
        let still_blocked = hcs.get(&name).await?;
        ensure!(
            is_false_naming(
                Some(&still_blocked),
                KEY_MATERIAL_INTACT,
                REASON_KEY_MATERIAL_MISSING,
                &encryption_name
            ),
            "KeyMaterialIntact no longer names the missing key: {:?}",
            still_blocked.status
        );
        ensure!(
            template_hash(&deployments.get(&apiserver).await?) == hash_before,
            "kube-apiserver was rolled while its encryption key was missing"
        );
        // The running API server keeps its mounted copy and keeps serving.
        serves_readyz(&kubeconfig).await?;

        restore(&secrets, &backup).await?;
        restored_and_whole(&hcs, &secrets, &name, &backup, &recorded).await?;
        ensure!(
            template_hash(&deployments.get(&apiserver).await?) == hash_before,
            "kube-apiserver rolled although the same key came back"
        );
        serves_readyz(&kubeconfig).await?;
        let read_back = hosted_secrets.get("e2e-encrypted").await?;
        ensure!(
            read_back.data == stored.data,
            "the hosted Secret reads differently"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn accepting_a_new_service_account_key_rolls_what_mounts_it() -> Result<()> {
    with_temp_namespace("hc-sa-accept", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let sa_name = format!("{name}-sa");
        let recorded = recorded_fingerprint(&hcs, &name, &sa_name).await?;
        let hashes = || async {
            let mut hashes = BTreeMap::new();
            for component in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
                let d = deployments.get(&format!("{name}-{component}")).await?;
                hashes.insert(component, template_hash(&d));
            }
            anyhow::Ok(hashes)
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = hashes().await?;
        let old_key = secrets.get(&sa_name).await?.data;

        secrets.delete(&sa_name, &Default::default()).await?;
        let missing = sa_name.clone();
        wait_until(
            &hcs,
            &name,
            Duration::from_secs(120),
            move |hc: Option<&HostedCluster>| {
                is_false_naming(hc, KEY_MATERIAL_INTACT, REASON_KEY_MATERIAL_MISSING, &missing)
            },
        )
        .await?;

        let accept =
            json!({ "metadata": { "annotations": { ACCEPT_NEW_KEY_MATERIAL_ANNOTATION: sa_name } } });
        hcs.patch(&name, &PatchParams::default(), &Patch::Merge(&accept))
            .await?;
        let (sa, old_print) = (sa_name.clone(), recorded.clone());
        let accepted = wait_until(
            &hcs,
            &name,
            Duration::from_secs(120),
            move |hc: Option<&HostedCluster>| {
                hc.is_some_and(|hc| {
                    fingerprint(hc, &sa).is_some_and(|print| print != old_print)
                        && !hc.annotations().contains_key(ACCEPT_NEW_KEY_MATERIAL_ANNOTATION)
                        && condition(hc, KEY_MATERIAL_INTACT).is_some_and(|c| c.status == "True")
                })
            },
        )
        .await?;
        let new_key = secrets.get(&sa_name).await?;
        ensure!(new_key.data != old_key, "the service-account key was not renewed");
        ensure!(
            controller_uid(&new_key) == accepted.uid(),
            "the new key is not owned by the cluster"
        );
        event_exists(&client, &ns, &name, "Normal", "KeyMaterialAccepted", &sa_name).await?;

        // The components that mount the key roll; the scheduler, which does not, stays.
        eventually(Duration::from_secs(120), || async {
            let after = hashes().await?;
            for component in ["kube-apiserver", "kube-controller-manager"] {
                ensure!(after[component] != before[component], "{component} did not roll");
            }
            ensure!(
                after["kube-scheduler"] == before["kube-scheduler"],
                "kube-scheduler rolled"
            );
            Ok(())
        })
        .await?;
        let whole = wait_until(&hcs, &name, Duration::from_secs(300), available).await?;
        serves_readyz(&admin_kubeconfig(&client, &whole).await?).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_secret_planted_under_a_derived_name_is_never_adopted() -> Result<()> {
    with_temp_namespace("hc-not-owned", |client, ns| async move {
        let hc = sample(&ns)?;
        let name = hc.name_any();
        let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let planted_name = format!("{name}-etcd-ca");
        let planted = Secret {
            metadata: ObjectMeta {
                name: Some(planted_name.clone()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "tls.crt".to_string(),
                ByteString(b"not a certificate".to_vec()),
            )])),
            ..Secret::default()
        };
        let planted = secrets.create(&PostParams::default(), &planted).await?;
        hcs.create(&PostParams::default(), &hc).await?;

        let object = planted_name.clone();
        let refused = wait_until(
            &hcs,
            &name,
            Duration::from_secs(120),
            move |hc: Option<&HostedCluster>| {
                is_false_naming(hc, AVAILABLE, REASON_OBJECT_NOT_OWNED, &object)
            },
        )
        .await?;
        let message = condition(&refused, AVAILABLE)
            .map(|c| c.message)
            .unwrap_or_default();
        ensure!(
            message.contains("no controller"),
            "the message does not say who owns it: {message}"
        );
        // Woken again, it still leaves the Secret alone and stays unavailable.
        nudge(&hcs, &name, "1").await?;
        tokio::time::sleep(Duration::from_secs(15)).await;
        let after = secrets.get(&planted_name).await?;
        ensure!(
            after.resource_version() == planted.resource_version() && after.data == planted.data,
            "the planted Secret was changed"
        );
        ensure!(
            !available(Some(&hcs.get(&name).await?)),
            "Available with someone else's Secret"
        );

        secrets.delete(&planted_name, &Default::default()).await?;
        let whole = wait_until(&hcs, &name, Duration::from_secs(400), available).await?;
        let etcd_ca = secrets.get(&planted_name).await?;
        ensure!(
            controller_uid(&etcd_ca) == whole.uid(),
            "the etcd CA is not the cluster's own"
        );
        Ok(())
    })
    .await
}
