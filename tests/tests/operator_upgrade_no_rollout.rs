//! `helm upgrade` to a new operator image restarts no hosted control-plane pod when the new
//! operator would run the same control plane (k0smotron and Cluster API's
//! KubeadmControlPlane have both shipped this bug). The operator is rebuilt with another
//! version string (`NESTPLANE_VERSION`, through `hack/operator-image.sh`), which changes its
//! binary and image tag and nothing else; the release is put back to its image afterwards,
//! also when the case fails.
//!
//! Slow: `hack/operator-image.sh` makes a release build of the operator (several minutes on
//! two cores).

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use nestplane_e2e::hosted::{create_available, eventually, reconciled_again, sample};
use nestplane_e2e::{helm, kubeconfig_path, pod_logs, pod_ready, repo_root, with_temp_namespace};
use tokio::process::Command;

const RELEASE: &str = "nestplane";
const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=nestplane,app.kubernetes.io/instance=nestplane";

fn operator_namespace() -> String {
    std::env::var("NESTPLANE_E2E_OPERATOR_NAMESPACE").unwrap_or_else(|_| "nestplane-system".into())
}

#[tokio::test]
async fn upgrading_the_operator_restarts_no_control_plane_pod() -> Result<()> {
    with_temp_namespace("operator-upgrade", |client, ns| async move {
        let hc = create_available(&client, &sample(&ns)?).await?;
        let name = hc.name_any();
        let before = ControlPlane::observe(&client, &ns, &name).await?;
        ensure!(!before.pods.is_empty(), "no control-plane pods to compare");

        let original = operator_image(&client).await?;
        let version = format!("{}-upgrade-test", env!("CARGO_PKG_VERSION"));
        let upgraded = build_operator_image(&version).await?;
        ensure!(
            upgraded != original,
            "the rebuilt operator has the installed image {original}"
        );

        let outcome = AssertUnwindSafe(async {
            install_operator(&client, &upgraded).await?;
            let logs = operator_logs(&client).await?;
            ensure!(
                logs.contains(&version),
                "the upgraded operator does not log version {version}: {logs}"
            );
            // The new operator has taken a full pass over the cluster...
            reconciled_again(&client, &ns, &name).await?;
            // ...and the Deployment and StatefulSet controllers would have acted on a changed
            // template by now.
            tokio::time::sleep(Duration::from_secs(15)).await;
            let after = ControlPlane::observe(&client, &ns, &name).await?;
            after.ensure_same_as(&before)
        })
        .catch_unwind()
        .await;
        let restored = install_operator(&client, &original)
            .await
            .with_context(|| format!("restoring the operator image {original}"));
        match outcome {
            Ok(result) => result?,
            Err(panic) => std::panic::resume_unwind(panic),
        }
        restored
    })
    .await
}

/// The UIDs of a hosted control plane's pods, ReplicaSets and ControllerRevisions.
#[derive(Debug, PartialEq)]
struct ControlPlane {
    pods: BTreeSet<(String, String)>,
    replica_sets: BTreeSet<(String, String)>,
    revisions: BTreeSet<(String, String)>,
}

impl ControlPlane {
    async fn observe(client: &Client, ns: &str, name: &str) -> Result<ControlPlane> {
        let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
        Ok(ControlPlane {
            pods: uids(
                Api::<Pod>::namespaced(client.clone(), ns)
                    .list(&selector)
                    .await?
                    .items,
            ),
            replica_sets: uids(
                Api::<ReplicaSet>::namespaced(client.clone(), ns)
                    .list(&selector)
                    .await?
                    .items,
            ),
            revisions: uids(
                Api::<ControllerRevision>::namespaced(client.clone(), ns)
                    .list(&selector)
                    .await?
                    .items,
            ),
        })
    }

    fn ensure_same_as(&self, before: &ControlPlane) -> Result<()> {
        let mut problems = Vec::new();
        for (what, now, then) in [
            ("pods", &self.pods, &before.pods),
            ("ReplicaSets", &self.replica_sets, &before.replica_sets),
            ("ControllerRevisions", &self.revisions, &before.revisions),
        ] {
            let gone: Vec<_> = then.difference(now).map(|(n, _)| n).collect();
            let new: Vec<_> = now.difference(then).map(|(n, _)| n).collect();
            if !gone.is_empty() || !new.is_empty() {
                problems.push(format!("{what}: replaced or removed {gone:?}, new {new:?}"));
            }
        }
        ensure!(
            problems.is_empty(),
            "the operator upgrade changed the control plane: {}",
            problems.join("; ")
        );
        Ok(())
    }
}

fn uids<K: Resource>(objects: Vec<K>) -> BTreeSet<(String, String)> {
    objects
        .iter()
        .map(|o| {
            let meta = o.meta();
            (
                meta.name.clone().unwrap_or_default(),
                meta.uid.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The image of the installed operator's Deployment.
async fn operator_image(client: &Client) -> Result<String> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), &operator_namespace())
        .get(RELEASE)
        .await
        .context("the operator's Deployment; install it with `make up`")?;
    deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image)
        .ok_or_else(|| anyhow!("the operator's Deployment names no image"))
}

/// `hack/operator-image.sh` with `NESTPLANE_VERSION`: builds and imports the image, prints it.
async fn build_operator_image(version: &str) -> Result<String> {
    let script = repo_root().join("hack/operator-image.sh");
    let output = Command::new(&script)
        .env("NESTPLANE_VERSION", version)
        .current_dir(repo_root())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8(output.stdout)?;
    stdout
        .lines()
        .last()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} printed no image", script.display()))
}

/// `helm upgrade` of the release to `image` (the flags of `hack/operator-up.sh`), then waits
/// until the only operator pod runs that image and is Ready.
async fn install_operator(client: &Client, image: &str) -> Result<()> {
    let (repository, tag) = image
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("image {image} has no tag"))?;
    let helm = helm()?;
    let output = Command::new(&helm)
        .args(["upgrade", RELEASE])
        .arg(repo_root().join("deploy/chart/nestplane"))
        .args(["--kubeconfig", &kubeconfig_path()])
        .args(["--namespace", &operator_namespace()])
        .args(["--reset-then-reuse-values", "--wait", "--timeout", "3m"])
        .args(["--set", &format!("image.repository={repository}")])
        .args(["--set", &format!("image.tag={tag}")])
        .args(["--set", "image.pullPolicy=Never"])
        .output()
        .await
        .with_context(|| format!("running {}", helm.display()))?;
    if !output.status.success() {
        bail!(
            "helm upgrade to {image} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &operator_namespace());
    eventually(Duration::from_secs(180), || async {
        let listed = pods
            .list(&ListParams::default().labels(OPERATOR_SELECTOR))
            .await?
            .items;
        let images: Vec<_> = listed.iter().map(|p| (p.name_any(), pod_image(p))).collect();
        // Every replica (one leads, the others stand by) runs the new image and is Ready.
        ensure!(
            !listed.is_empty()
                && listed
                    .iter()
                    .all(|p| pod_image(p).as_deref() == Some(image) && pod_ready(Some(p))),
            "operator pods: {images:?}, waiting for only Ready pods of {image}"
        );
        Ok(())
    })
    .await
}

fn pod_image(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
}

async fn operator_logs(client: &Client) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &operator_namespace());
    let listed = pods
        .list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await?
        .items;
    let pod = listed
        .first()
        .ok_or_else(|| anyhow!("no operator pod"))?
        .name_any();
    pod_logs(client, &operator_namespace(), &pod).await
}
