//! Harness for tests that run against the real management cluster that `make up` starts.
//!
//! The kubeconfig comes from `NESTPLANE_E2E_KUBECONFIG` (default `/var/lib/nestplane/kubeconfig`).
//! Each test case gets its own namespace from [`with_temp_namespace`], deleted afterwards
//! whether the case passed or failed.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, LogParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client, Config, Resource};
use serde_json::json;

pub mod kubeadm;
pub mod registry;
pub mod startup;
pub mod tunnel_backend;

pub const DEFAULT_KUBECONFIG: &str = "/var/lib/nestplane/kubeconfig";
/// Label on every namespace the harness creates, so leftovers can be found and removed.
pub const TEST_NAMESPACE_LABEL: &str = "nestplane.io/e2e";
/// The smoke-test image that `hack/images.sh` assembles and imports.
pub const SMOKE_IMAGE: &str = "nestplane.local/smoke:dev";

/// Path of the management cluster's kubeconfig.
pub fn kubeconfig_path() -> String {
    std::env::var("NESTPLANE_E2E_KUBECONFIG").unwrap_or_else(|_| DEFAULT_KUBECONFIG.to_string())
}

/// A client for the management cluster.
pub async fn client() -> Result<Client> {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path)
        .with_context(|| format!("reading kubeconfig {path}; start the cluster with `make up`"))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Runs `case` in a fresh namespace and deletes the namespace afterwards, also when `case` fails or panics.
pub async fn with_temp_namespace<F, Fut>(prefix: &str, case: F) -> Result<()>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let client = client().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value::<Namespace>(json!({
        "metadata": {
            "generateName": format!("{prefix}-"),
            "labels": { TEST_NAMESPACE_LABEL: "true" }
        }
    }))?;
    let created = namespaces.create(&PostParams::default(), &namespace).await?;
    let name = created
        .meta()
        .name
        .clone()
        .ok_or_else(|| anyhow!("namespace without a name"))?;
    let outcome = AssertUnwindSafe(case(client, name.clone())).catch_unwind().await;
    namespaces.delete(&name, &DeleteParams::background()).await?;
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Waits until `condition` holds for the named object, or fails after `timeout` with what was last seen.
pub async fn wait_until<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    condition: impl Condition<K>,
) -> Result<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(Some(object))) => Ok(object),
        Ok(Ok(None)) => bail!("{name} was deleted while waiting"),
        Ok(Err(error)) => Err(error).with_context(|| format!("watching {name}")),
        Err(_) => {
            let mut last = api.get_opt(name).await?;
            let events = match &last {
                Some(object) => events_of(api, object).await,
                None => String::new(),
            };
            // Who wrote which field says nothing about why the wait failed and hides the status.
            if let Some(object) = last.as_mut() {
                object.meta_mut().managed_fields = None;
            }
            bail!(
                "timed out after {timeout:?} waiting for {name}; last seen: {last:#?}\nits events:\n{events}"
            )
        }
    }
}

/// The events about `object`, a line each, for a failure message (empty when they cannot be read).
async fn events_of<K: Resource + Clone>(api: &Api<K>, object: &K) -> String {
    let client: Client = Api::clone(api).into_client();
    let events: Api<k8s_openapi::api::core::v1::Event> = match object.meta().namespace.as_deref() {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    };
    let selector = format!(
        "involvedObject.name={}",
        object.meta().name.as_deref().unwrap_or_default()
    );
    match events
        .list(&kube::api::ListParams::default().fields(&selector))
        .await
    {
        Ok(list) => list
            .items
            .iter()
            .map(|e| {
                format!(
                    "  {} {} x{}: {}\n",
                    e.type_.as_deref().unwrap_or_default(),
                    e.reason.as_deref().unwrap_or_default(),
                    e.count.unwrap_or(1),
                    e.message.as_deref().unwrap_or_default()
                )
            })
            .collect(),
        Err(error) => format!("  (not readable: {error})\n"),
    }
}

/// Condition: the pod has finished, successfully or not.
pub fn pod_finished(pod: Option<&Pod>) -> bool {
    matches!(
        pod.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Condition: the pod is Ready.
pub fn pod_ready(pod: Option<&Pod>) -> bool {
    pod.and_then(|p| p.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Runs a one-shot pod of `image` with `args` and returns its phase and logs.
pub async fn run_pod(
    client: &Client,
    namespace: &str,
    name: &str,
    image: &str,
    args: &[&str],
) -> Result<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "main", "image": image, "imagePullPolicy": "Never", "args": args }]
        }
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let done = wait_until(&pods, name, Duration::from_secs(120), pod_finished).await?;
    let phase = done.status.and_then(|s| s.phase).unwrap_or_default();
    let logs = pods.logs(name, &LogParams::default()).await?;
    Ok((phase, logs))
}

/// The logs of a pod's container.
pub async fn pod_logs(client: &Client, namespace: &str, name: &str) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(pods.logs(name, &LogParams::default()).await?)
}

/// The repository's root (charts, hack scripts).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The helm binary: `NESTPLANE_E2E_HELM`, else the one `make up` builds into
/// `$NESTPLANE_CACHE/helm-<version>/bin` (default cache `~/.cache/nestplane`).
pub fn helm() -> Result<PathBuf> {
    if let Ok(path) = std::env::var("NESTPLANE_E2E_HELM") {
        return Ok(PathBuf::from(path));
    }
    let cache = std::env::var("NESTPLANE_CACHE")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|home| PathBuf::from(home).join(".cache/nestplane")))
        .context("neither NESTPLANE_CACHE nor HOME is set")?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
        .with_context(|| format!("reading {}", cache.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("helm-"))
        })
        .map(|p| p.join("bin/helm"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| anyhow!("no helm in {}/helm-*/bin: run `make binaries`", cache.display()))
}

/// Namespace of the operator's Helm release (`NESTPLANE_E2E_OPERATOR_NAMESPACE`, default
/// `nestplane-system`).
pub fn operator_namespace() -> String {
    std::env::var("NESTPLANE_E2E_OPERATOR_NAMESPACE").unwrap_or_else(|_| "nestplane-system".into())
}

/// GET /metrics of the leading operator replica, through the metrics Service and the API
/// server's service proxy. The proxy picks a replica at random and only the leader reconciles,
/// so an answer from a standby (`nestplane_leader 0`) is asked again.
pub async fn scrape_operator_metrics(client: &Client) -> Result<String> {
    const ATTEMPTS: usize = 20;
    let path = format!(
        "/api/v1/namespaces/{}/services/nestplane-metrics:http/proxy/metrics",
        operator_namespace()
    );
    for _ in 0..ATTEMPTS {
        let request = http::Request::get(&path).body(Vec::new())?;
        let text = client.request_text(request).await?;
        if !text.lines().any(|line| line == "nestplane_leader 0") {
            return Ok(text);
        }
    }
    bail!("{ATTEMPTS} scrapes of {path} all reached a standby replica (nestplane_leader 0)")
}

/// The sum of every sample of the operator's metric `name` whose labels contain `labels`
/// (e.g. `controller="hostedcluster"`); an error when there is none.
pub async fn operator_metric(client: &Client, name: &str, labels: &str) -> Result<f64> {
    let text = scrape_operator_metrics(client).await?;
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    anyhow::ensure!(!samples.is_empty(), "no {name}{{{labels}}} in /metrics");
    Ok(samples.iter().sum())
}

/// Helpers for HostedCluster cases.
/// The test OpenStack cloud that `make openstack-up` starts.
pub mod openstack {
    use anyhow::{Context, Result};
    use nestplane_openstack::CloudConfig;

    pub const DEFAULT_CLOUDS_YAML: &str = "/var/lib/nestplane/openstack/clouds.yaml";

    /// Cloud `cloud` from the clouds.yaml in `NESTPLANE_E2E_CLOUDS_YAML` (default
    /// [`DEFAULT_CLOUDS_YAML`]): `nestplane`, or `nestplane-quota` (a project allowing two servers).
    pub fn cloud_config(cloud: &str) -> Result<CloudConfig> {
        let path = clouds_yaml_path();
        CloudConfig::from_clouds_yaml(&path, cloud)
            .with_context(|| format!("no test cloud at {path}: start it with `make openstack-up`"))
    }

    fn clouds_yaml_path() -> String {
        std::env::var("NESTPLANE_E2E_CLOUDS_YAML").unwrap_or_else(|_| DEFAULT_CLOUDS_YAML.into())
    }

    /// Cinder's view of volume `id` in cloud `cloud` (`openstack volume show -f json`), `None`
    /// once the project has no such volume. Through the `openstack` CLI: nestplane itself never
    /// calls Cinder (Nova makes and deletes root volumes).
    pub async fn volume(cloud: &str, id: &str) -> Result<Option<serde_json::Value>> {
        // `volume show` of a missing ID falls back to a search by name, which Cinder refuses:
        // presence is read from the list.
        let listed = openstack_cli(cloud, &["volume", "list", "-f", "json"]).await?;
        let present = listed
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["ID"].as_str() == Some(id));
        if !present {
            return Ok(None);
        }
        openstack_cli(cloud, &["volume", "show", id, "-f", "json"])
            .await
            .map(Some)
    }

    async fn openstack_cli(cloud: &str, args: &[&str]) -> Result<serde_json::Value> {
        let output = tokio::process::Command::new(OPENSTACK_CLI)
            .args(args)
            .env("OS_CLIENT_CONFIG_FILE", clouds_yaml_path())
            .env("OS_CLOUD", cloud)
            .output()
            .await
            .with_context(|| format!("running {OPENSTACK_CLI} (from `make openstack-up`)"))?;
        anyhow::ensure!(
            output.status.success(),
            "openstack {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// The `openstack` CLI of the test cloud's virtualenv (a link that `make openstack-up` keeps).
    pub const OPENSTACK_CLI: &str = "/var/lib/nestplane/openstack/venv/bin/openstack";

    /// The test cloud's clouds.yaml as text, for a NodePool's cloud Secret.
    pub fn clouds_yaml() -> Result<String> {
        let path = clouds_yaml_path();
        std::fs::read_to_string(&path)
            .with_context(|| format!("no test cloud at {path}: start it with `make openstack-up`"))
    }
}

pub mod hosted {
    /// Pod-template annotation nestplane sets to a hash of what a component mounts.
    pub const INPUTS_HASH: &str = "nestplane.io/inputs-hash";

    /// The inputs hash of a Deployment's pod template: it changes exactly when the pods roll.
    pub fn template_hash(d: &k8s_openapi::api::apps::v1::Deployment) -> Option<String> {
        d.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(INPUTS_HASH)
            .cloned()
    }

    use std::time::Duration;

    use anyhow::{Context, Result, anyhow, bail};
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams, PostParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use kube::{Api, Client, Config};
    use nestplane_api::HostedCluster;

    use crate::wait_until;

    /// The sample every user starts from, `manifests/samples/hostedcluster.yaml`, in `namespace`.
    pub fn sample(namespace: &str) -> Result<HostedCluster> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/samples/hostedcluster.yaml"
        );
        let mut hc: HostedCluster = serde_yaml::from_str(&std::fs::read_to_string(path)?)?;
        hc.metadata.namespace = Some(namespace.to_string());
        Ok(hc)
    }

    pub fn condition_true(hc: &HostedCluster, type_: &str) -> bool {
        hc.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == "True")
        })
    }

    /// Condition: the HostedCluster reports `Available=True` for its current generation.
    pub fn available(hc: Option<&HostedCluster>) -> bool {
        hc.is_some_and(|hc| {
            condition_true(hc, "Available")
                && hc.status.as_ref().and_then(|s| s.observed_generation) == hc.metadata.generation
        })
    }

    /// Creates `hc` and waits until it is Available.
    pub async fn create_available(client: &Client, hc: &HostedCluster) -> Result<HostedCluster> {
        let namespace = hc.metadata.namespace.clone().unwrap_or_default();
        let name = hc.metadata.name.clone().unwrap_or_default();
        let api: Api<HostedCluster> = Api::namespaced(client.clone(), &namespace);
        api.create(&PostParams::default(), hc).await?;
        wait_until(&api, &name, Duration::from_secs(300), available).await
    }

    /// The admin kubeconfig the HostedCluster's status points at.
    pub async fn admin_kubeconfig(client: &Client, hc: &HostedCluster) -> Result<String> {
        let namespace = hc.metadata.namespace.clone().unwrap_or_default();
        let reference = hc
            .status
            .as_ref()
            .and_then(|s| s.kubeconfig_secret_ref.clone())
            .ok_or_else(|| anyhow!("status.kubeconfigSecretRef is not set"))?;
        let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
            .get(&reference.name)
            .await?;
        let data = secret.data.unwrap_or_default();
        let value = data
            .get(&reference.key)
            .ok_or_else(|| anyhow!("key {} missing", reference.key))?;
        Ok(String::from_utf8(value.0.clone())?)
    }

    /// A client for the hosted cluster, as its admin.
    pub async fn hosted_client(kubeconfig: &str) -> Result<Client> {
        let config =
            Config::from_custom_kubeconfig(Kubeconfig::from_yaml(kubeconfig)?, &KubeConfigOptions::default())
                .await
                .context("hosted kubeconfig")?;
        Ok(Client::try_from(config)?)
    }

    /// GET /readyz on the hosted API server.
    pub async fn readyz(client: &Client) -> Result<String> {
        let request = http::Request::get("/readyz").body(Vec::new())?;
        Ok(client.request_text(request).await?)
    }

    /// Makes the operator take a full pass over the HostedCluster and waits until it has: the
    /// status's observedGeneration is cleared through the status subresource, and only a
    /// successful pass sets it back with `Available=True`.
    pub async fn reconciled_again(client: &Client, namespace: &str, name: &str) -> Result<HostedCluster> {
        let api: Api<HostedCluster> = Api::namespaced(client.clone(), namespace);
        let patch = serde_json::json!({ "status": { "observedGeneration": 0 } });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("clearing status.observedGeneration of {name}"))?;
        wait_until(&api, name, Duration::from_secs(180), available).await
    }

    /// Retries `f` until it succeeds or `timeout` passes (the hosted API restarts in some cases).
    pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match f().await {
                Ok(value) => return Ok(value),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    bail!("still failing after {timeout:?}: {e:#}")
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        }
    }
}

/// Helpers for NodePool cases: the cloud Secret, a pool on the fake compute host, and its
/// servers in Nova by tag.
pub mod node_pools {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use anyhow::{Context, Result, anyhow, ensure};
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{ListParams, Patch, PatchParams, PostParams};
    use kube::{Api, Client, ResourceExt};
    use nestplane_api::{HostedCluster, NodePool, Worker};
    use nestplane_openstack::{Compute, ServerStatus};
    use serde_json::json;

    use crate::hosted::eventually;

    /// How long a step of a scale or a deletion may take on the fake compute host.
    pub const STEP: Duration = Duration::from_secs(300);

    /// Creates Secret `name` in `namespace` with `clouds_yaml` under `clouds.yaml`.
    pub async fn create_cloud_secret(
        client: &Client,
        namespace: &str,
        name: &str,
        clouds_yaml: &str,
    ) -> Result<()> {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": namespace },
            "stringData": { "clouds.yaml": clouds_yaml },
        }))?;
        Api::<Secret>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &secret)
            .await?;
        Ok(())
    }

    /// A NodePool of `cluster` on the fake compute host, with the cloud Secret `cloud`.
    pub fn pool(
        namespace: &str,
        name: &str,
        cluster: &str,
        cloud: &str,
        flavor: &str,
        replicas: i32,
    ) -> Result<NodePool> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "nestplane.io/v1alpha1", "kind": "NodePool",
            "metadata": { "name": name, "namespace": namespace },
            "spec": {
                "clusterName": cluster,
                "replicas": replicas,
                "openstack": {
                    "cloudSecretRef": { "name": "cloud" },
                    "cloud": cloud,
                    "flavor": flavor,
                    "image": "nestplane-tiny",
                    "networks": ["nestplane-net"],
                    "availabilityZone": "nestplane-fake",
                },
            },
        }))?)
    }

    pub async fn scale(client: &Client, namespace: &str, name: &str, replicas: i32) -> Result<()> {
        let patch = json!({ "spec": { "replicas": replicas } });
        Api::<NodePool>::namespaced(client.clone(), namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Live servers carrying `tag` (`np-pool:<uid>`, `np-cluster:<uid>`), by ID and name.
    pub async fn servers(nova: &dyn Compute, tag: &str) -> Result<BTreeSet<(String, String)>> {
        Ok(nova
            .list_servers_by_tag(tag)
            .await?
            .into_iter()
            .filter(|s| s.status != ServerStatus::Deleted)
            .map(|s| (s.id, s.name))
            .collect())
    }

    /// Deletes the pool and checks that it goes and leaves no server and no port with its tag or
    /// its cluster's (`np-cluster:<uid>`, when the pool was the cluster's only one).
    pub async fn delete_leaves_nothing(client: &Client, nova: &dyn Compute, pool: &NodePool) -> Result<()> {
        let api: Api<NodePool> = Api::namespaced(client.clone(), &pool.namespace().unwrap_or_default());
        api.delete(&pool.name_any(), &kube::api::DeleteParams::default())
            .await?;
        eventually(STEP, || async {
            ensure!(
                api.get_opt(&pool.name_any()).await?.is_none(),
                "the NodePool is still there"
            );
            Ok(())
        })
        .await?;
        let left = servers(nova, &pool_tag(pool)).await?;
        ensure!(left.is_empty(), "servers left: {left:?}");
        let ports = nova.list_ports_by_tag(&pool_tag(pool)).await?;
        ensure!(ports.is_empty(), "ports left: {ports:?}");
        let namespace = pool.namespace().unwrap_or_default();
        let others = api.list(&ListParams::default()).await?.items;
        let cluster_has_others = others
            .iter()
            .any(|p| p.spec.cluster_name == pool.spec.cluster_name);
        if !cluster_has_others
            && let Some(hc) = Api::<HostedCluster>::namespaced(client.clone(), &namespace)
                .get_opt(&pool.spec.cluster_name)
                .await?
        {
            let tag = format!("np-cluster:{}", hc.uid().unwrap_or_default());
            let servers = servers(nova, &tag).await?;
            let ports = nova.list_ports_by_tag(&tag).await?;
            ensure!(
                servers.is_empty() && ports.is_empty(),
                "the cluster's last pool is gone, yet servers {servers:?} and ports {ports:?} remain"
            );
        }
        Ok(())
    }

    /// The pool's Workers, by its label.
    pub async fn workers(client: &Client, pool: &NodePool) -> Result<Vec<Worker>> {
        let selector = format!("nestplane.io/node-pool={}", pool.name_any());
        Ok(
            Api::<Worker>::namespaced(client.clone(), &pool.namespace().unwrap_or_default())
                .list(&ListParams::default().labels(&selector))
                .await?
                .items,
        )
    }

    pub fn pool_tag(pool: &NodePool) -> String {
        format!("np-pool:{}", pool.uid().unwrap_or_default())
    }

    /// Waits until the pool's `Ready` is False with `reason` and a message containing `names`.
    pub async fn ready_false(client: &Client, pool: &NodePool, reason: &str, names: &str) -> Result<()> {
        let api: Api<NodePool> = Api::namespaced(client.clone(), &pool.namespace().unwrap_or_default());
        eventually(STEP, || async {
            let current = api.get(&pool.name_any()).await?;
            let ready = condition(&current, "Ready").ok_or_else(|| anyhow!("no Ready condition"))?;
            ensure!(ready.0 == "False" && ready.1 == reason, "Ready {ready:?}");
            ensure!(
                ready.2.contains(names),
                "the message does not name {names}: {}",
                ready.2
            );
            Ok(())
        })
        .await
    }

    /// The condition `type_` of the pool as (status, reason, message).
    pub fn condition(pool: &NodePool, type_: &str) -> Option<(String, String, String)> {
        let c = pool
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)?;
        Some((c.status.clone(), c.reason.clone(), c.message.clone()))
    }

    /// Waits until Nova (by the pool's tag), the pool's Workers and its status agree on `n`:
    /// one ACTIVE server per Worker, named after it and recorded in its status.
    pub async fn agree(
        client: &Client,
        nova: &dyn Compute,
        pool: &NodePool,
        n: usize,
    ) -> Result<Vec<Worker>> {
        let namespace = pool.namespace().unwrap_or_default();
        let name = pool.name_any();
        eventually(STEP, || async {
            let selector = format!("nestplane.io/node-pool={name}");
            let workers = Api::<Worker>::namespaced(client.clone(), &namespace)
                .list(&ListParams::default().labels(&selector))
                .await?
                .items;
            let servers = servers(nova, &pool_tag(pool)).await?;
            let current = Api::<NodePool>::namespaced(client.clone(), &namespace)
                .get(&name)
                .await?;
            let status = current.status.clone().unwrap_or_default();
            let ready = condition(&current, "Ready");
            ensure!(workers.len() == n, "{} Workers (Ready {ready:?})", workers.len());
            ensure!(servers.len() == n, "{} servers (Ready {ready:?})", servers.len());
            ensure!(status.replicas == n as i32, "status.replicas {}", status.replicas);
            ensure!(
                status.observed_generation == current.metadata.generation,
                "status is of an older generation"
            );
            for worker in &workers {
                let ws = worker.status.clone().unwrap_or_default();
                let id = ws
                    .server_id
                    .clone()
                    .ok_or_else(|| anyhow!("{} has no server ID", worker.name_any()))?;
                ensure!(
                    servers.contains(&(id.clone(), worker.name_any())),
                    "{}'s server {id} is not in Nova",
                    worker.name_any()
                );
                ensure!(
                    ws.server_status.as_deref() == Some("ACTIVE"),
                    "{} {:?}",
                    worker.name_any(),
                    ws.server_status
                );
            }
            Ok(workers)
        })
        .await
        .with_context(|| format!("NodePool {name} with {n} workers"))
    }
}

/// The operator's replicas in the management cluster: which one leads (the Lease), and killing it.
pub mod operator_pods {
    use anyhow::{Context, Result};
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{DeleteParams, ListParams};
    use kube::{Api, Client, ResourceExt};

    use crate::{operator_namespace, pod_ready};

    /// The Lease the replicas elect their leader with.
    pub const LEASE: &str = "nestplane-leader";
    /// The labels of the chart's operator pods.
    pub const OPERATOR_SELECTOR: &str =
        "app.kubernetes.io/name=nestplane,app.kubernetes.io/instance=nestplane";

    /// Names of the operator pods that are Ready and not being deleted.
    pub async fn ready(pods: &Api<Pod>) -> Result<Vec<String>> {
        let listed = pods
            .list(&ListParams::default().labels(OPERATOR_SELECTOR))
            .await?;
        Ok(listed
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(Some(p)))
            .map(|p| p.name_any())
            .collect())
    }

    /// The pod the Lease names as leader.
    pub async fn lease_holder(client: &Client) -> Result<String> {
        let lease = Api::<Lease>::namespaced(client.clone(), &operator_namespace())
            .get(LEASE)
            .await
            .with_context(|| format!("the Lease {LEASE} in {}", operator_namespace()))?;
        lease
            .spec
            .and_then(|s| s.holder_identity)
            .with_context(|| format!("the Lease {LEASE} has no holder"))
    }

    /// Deletes the leader's pod without a grace period (it cannot release the Lease, like a
    /// crash) and returns its name.
    pub async fn kill_leader(client: &Client) -> Result<String> {
        let leader = lease_holder(client).await?;
        Api::<Pod>::namespaced(client.clone(), &operator_namespace())
            .delete(&leader, &DeleteParams::default().grace_period(0))
            .await
            .with_context(|| format!("deleting the leader pod {leader}"))?;
        Ok(leader)
    }
}

/// The test cloud's toxiproxy (`NESTPLANE_E2E_TOXIPROXY`, default http://127.0.0.1:8474): its
/// proxies `nova` and `neutron` carry the public endpoints of the catalog, so what it breaks,
/// it breaks for the operator's pods too.
pub mod toxiproxy {
    use anyhow::{Context, Result, ensure};
    use serde_json::{Value, json};

    pub const DEFAULT_TOXIPROXY: &str = "http://127.0.0.1:8474";

    pub struct Toxiproxy {
        http: reqwest::Client,
        url: String,
    }

    impl Default for Toxiproxy {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Toxiproxy {
        pub fn new() -> Self {
            let url = std::env::var("NESTPLANE_E2E_TOXIPROXY").unwrap_or_else(|_| DEFAULT_TOXIPROXY.into());
            Self {
                http: reqwest::Client::new(),
                url,
            }
        }

        async fn post(&self, path: &str, body: Value) -> Result<()> {
            let response = self
                .http
                .post(format!("{}{path}", self.url))
                .json(&body)
                .send()
                .await
                .with_context(|| format!("toxiproxy {path}: start the cloud with `make openstack-up`"))?;
            ensure!(
                response.status().is_success(),
                "toxiproxy {path}: {}",
                response.text().await?
            );
            Ok(())
        }

        /// Adds a toxic on the answers (`downstream`) of every connection through `proxy`.
        pub async fn add_toxic(&self, proxy: &str, name: &str, kind: &str, attributes: Value) -> Result<()> {
            let toxic = json!({"name": name, "type": kind, "stream": "downstream", "toxicity": 1.0, "attributes": attributes});
            self.post(&format!("/proxies/{proxy}/toxics"), toxic).await
        }

        pub async fn remove_toxic(&self, proxy: &str, name: &str) -> Result<()> {
            let response = self
                .http
                .delete(format!("{}/proxies/{proxy}/toxics/{name}", self.url))
                .send()
                .await?;
            ensure!(
                response.status().is_success(),
                "toxiproxy: removing {name}: {}",
                response.text().await?
            );
            Ok(())
        }

        pub async fn set_enabled(&self, proxy: &str, enabled: bool) -> Result<()> {
            self.post(&format!("/proxies/{proxy}"), json!({ "enabled": enabled }))
                .await
        }

        /// Where `proxy` forwards to (`host:port`).
        pub async fn upstream(&self, proxy: &str) -> Result<String> {
            let proxy: Value = self
                .http
                .get(format!("{}/proxies/{proxy}", self.url))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            proxy["upstream"]
                .as_str()
                .map(str::to_string)
                .context("a proxy without an upstream")
        }

        /// Makes `proxy` forward to `upstream` (`host:port`); [`Toxiproxy::reset`] does not undo this.
        pub async fn set_upstream(&self, proxy: &str, upstream: &str) -> Result<()> {
            self.post(&format!("/proxies/{proxy}"), json!({ "upstream": upstream }))
                .await
        }

        /// Enables every proxy and removes every toxic.
        pub async fn reset(&self) -> Result<()> {
            self.post("/reset", json!({})).await
        }
    }
}
