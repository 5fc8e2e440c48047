//! Two operator replicas: the one named in the Lease `nestplane-leader` reconciles; when its pod
//! is killed (no grace period, so it cannot release the Lease), the other replica takes the
//! Lease and acts on a HostedCluster within 30 seconds.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use nestplane_api::HostedCluster;
use nestplane_e2e::hosted::{self, eventually};
use nestplane_e2e::{operator_namespace, operator_pods, wait_until, with_temp_namespace};

const TAKEOVER: Duration = Duration::from_secs(30);

#[tokio::test]
async fn killing_the_leader_hands_reconciling_to_the_other_replica() -> Result<()> {
    with_temp_namespace("op-leader", |client, ns| async move {
        let hc = hosted::create_available(&client, &hosted::sample(&ns)?).await?;
        let name = hc.name_any();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &operator_namespace());

        let ready = operator_pods::ready(&pods).await?;
        ensure!(
            ready.len() >= 2,
            "operator pods Ready: {ready:?}; the chart runs two replicas"
        );
        let leader = operator_pods::lease_holder(&client).await?;
        ensure!(
            ready.contains(&leader),
            "the Lease names {leader:?}, not one of the Ready operator pods {ready:?}"
        );

        let killed = Instant::now();
        pods.delete(&leader, &DeleteParams::default().grace_period(0))
            .await
            .with_context(|| format!("deleting the leader pod {leader}"))?;

        // A pass only the new leader can make: status.observedGeneration cleared, and set back
        // with Available=True by a full reconcile.
        let api: Api<HostedCluster> = Api::namespaced(client.clone(), &ns);
        let patch = serde_json::json!({ "status": { "observedGeneration": 0 } });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("clearing status.observedGeneration of {name}"))?;
        wait_until(&api, &name, TAKEOVER, hosted::available)
            .await
            .context("no replica reconciled the HostedCluster within 30s of the leader's death")?;
        let new_leader = operator_pods::lease_holder(&client).await?;
        ensure!(
            new_leader != leader && ready.contains(&new_leader),
            "the Lease names {new_leader:?} after {leader} was killed; standby replicas were {ready:?}"
        );
        println!(
            "{new_leader} took over from {leader} and reconciled within {:?}",
            killed.elapsed()
        );

        // Leave the operator as found: the Deployment replaces the killed pod.
        eventually(Duration::from_secs(120), || async {
            let now = operator_pods::ready(&pods).await?;
            ensure!(
                now.len() >= ready.len() && !now.contains(&leader),
                "Ready operator pods: {now:?}"
            );
            Ok(())
        })
        .await
    })
    .await
}
