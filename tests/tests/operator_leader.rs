//! Two operator replicas: the one named in the Lease `nestplane-leader` reconciles; when its pod
//! is killed (no grace period, so it cannot release the Lease), the other replica takes the
//! Lease within 30 seconds, and then acts on a HostedCluster.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use nestplane_api::HostedCluster;
use nestplane_e2e::hosted::{self, eventually};
use nestplane_e2e::{operator_namespace, operator_pods, wait_until, with_temp_namespace};

const TAKEOVER: Duration = Duration::from_secs(30);
/// From the leader's death until the new leader's pass has acted on the HostedCluster.
const FIRST_PASS: Duration = Duration::from_secs(120);

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
        // The Lease moves to a standby within TAKEOVER...
        let new_leader = eventually(TAKEOVER, || async {
            let holder = operator_pods::lease_holder(&client).await?;
            // The standby, or the Deployment's replacement pod when it starts first: the
            // killed leader releases the Lease on SIGTERM, and the standby looks again only
            // when the Lease it last saw would have expired.
            ensure!(
                holder != leader,
                "the Lease still names the killed leader {leader}"
            );
            Ok(holder)
        })
        .await
        .context("no replica took the Lease within 30s of the leader's death")?;
        let took_over = killed.elapsed();
        // ...and the new leader reconciles. Its first passes wait for its watches to fill its
        // caches, which under load takes longer than the takeover itself.
        wait_until(&api, &name, FIRST_PASS, hosted::available)
            .await
            .context("the new leader did not reconcile the HostedCluster")?;
        println!(
            "{new_leader} took the Lease from {leader} after {took_over:?} and reconciled after {:?}",
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
