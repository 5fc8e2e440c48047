//! The NodePool and Worker controllers against a real kube-apiserver and etcd and the real test
//! cloud (`make openstack-up`), servers on the fake compute host. The test plays the
//! HostedCluster's part: an Available status set by hand, and an admin kubeconfig that points at
//! the test API server itself, which thus is the "hosted cluster" too. Nova is checked by tag.
//!
//! Needs the pinned binaries and the test cloud's clouds.yaml (`NESTPLANE_E2E_CLOUDS_YAML`,
//! default `/var/lib/nestplane/openstack/clouds.yaml`); without them it passes with a note,
//! except under `NESTPLANE_TESTENV_REQUIRED=1`.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Resource, ResourceExt};
use nestplane::api::{HostedCluster, NodePool, Worker};
use nestplane::controllers::{self, Config};
use nestplane::metrics::Metrics;
use nestplane_openstack::{CloudConfig, Compute, ServerStatus};
use nestplane_testenv::TestEnv;
use serde_json::json;

const NAMESPACE: &str = "pools";
const CLUSTER: &str = "demo";
const STEP: Duration = Duration::from_secs(240);

fn clouds_yaml() -> Option<PathBuf> {
    let path = PathBuf::from(
        std::env::var("NESTPLANE_E2E_CLOUDS_YAML")
            .unwrap_or_else(|_| "/var/lib/nestplane/openstack/clouds.yaml".into()),
    );
    // A clouds.yaml left from an earlier run does not mean the cloud is running: ask Keystone.
    if path.exists() && keystone_answers(&path) {
        return Some(path);
    }
    assert!(
        std::env::var("NESTPLANE_TESTENV_REQUIRED").as_deref() != Ok("1"),
        "no running test cloud for {}: start it with `make openstack-up`",
        path.display()
    );
    eprintln!(
        "skipping: no running test cloud for {} (make openstack-up)",
        path.display()
    );
    None
}

fn keystone_answers(clouds_yaml: &std::path::Path) -> bool {
    let auth_url = std::fs::read_to_string(clouds_yaml)
        .ok()
        .and_then(|text| serde_yaml::from_str::<serde_yaml::Value>(&text).ok())
        .and_then(|clouds| {
            clouds["clouds"]["nestplane"]["auth"]["auth_url"]
                .as_str()
                .map(str::to_owned)
        });
    let Some(address) = auth_url
        .as_deref()
        .and_then(|url| url.split("://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .and_then(|host_port| std::net::ToSocketAddrs::to_socket_addrs(host_port).ok())
        .and_then(|mut addresses| addresses.next())
    else {
        return false;
    };
    std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok()
}

#[test]
fn node_pools_on_a_real_api_server_and_the_test_cloud() -> Result<()> {
    let Some(clouds) = clouds_yaml() else {
        return Ok(());
    };
    let Some(mut env) = TestEnv::start("node_pool") else {
        return Ok(());
    };
    // RUST_LOG=nestplane=debug shows the controllers' log.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(async {
        let client = env.client().await;
        let clouds_text = std::fs::read_to_string(&clouds)?;
        let nova = nestplane_openstack::Client::new(CloudConfig::from_yaml(&clouds_text, "nestplane")?)?;
        let quota =
            nestplane_openstack::Client::new(CloudConfig::from_yaml(&clouds_text, "nestplane-quota")?)?;
        let hc = setup(&client, &env, &clouds_text).await?;
        let config = Config {
            image_registry: "registry.k8s.io".into(),
            namespace: None,
            tunnel_image: "ghcr.io/nestplane/nestplane:test".into(),
        };
        let controller = tokio::spawn(controllers::run_node_pools(
            client.clone(),
            config,
            Arc::new(Metrics::default()),
        ));
        let outcome = async {
            lifecycle(&client, &nova).await?;
            fixed_port(&client, &nova).await?;
            server_group(&client, &nova).await?;
            quota_exceeded(&client, &quota).await?;
            wrong_flavor(&client, &nova).await?;
            wrong_credentials(&client, &nova, &clouds_text).await?;
            deleted_cloud_secret(&client, &nova, &clouds_text).await?;
            node_startup_timeout(&client, &nova).await
        }
        .await;
        controller.abort();
        // Whatever happened, nothing of this run stays in the cloud.
        let uid = hc.uid().unwrap_or_default();
        for compute in [&nova, &quota] {
            for server in compute.list_servers_by_tag(&format!("np-cluster:{uid}")).await? {
                compute.delete_server(&server.id).await?;
            }
        }
        // Only pools of the `nestplane` project have ports; a port that cannot be deleted is
        // reported without hiding the outcome.
        for port in nova.list_ports_by_tag(&format!("np-cluster:{uid}")).await? {
            if let Err(error) = nova.delete_port(&port.id).await {
                eprintln!("port {} ({}) not deleted: {error}", port.name, port.id);
            }
        }
        outcome
    });
    if outcome.is_err() {
        env.assert_running();
    }
    outcome
}

async fn setup(client: &Client, env: &TestEnv, clouds_text: &str) -> Result<HostedCluster> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in nestplane::api::crds() {
        crds.create(&PostParams::default(), &crd).await?;
        let name = crd.name_any();
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(STEP, established)
            .await
            .context("CRD not established")??;
    }
    let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": NAMESPACE } }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), NAMESPACE);
    let hc: HostedCluster = serde_json::from_value(json!({
        "apiVersion": "nestplane.io/v1alpha1", "kind": "HostedCluster",
        "metadata": { "name": CLUSTER, "namespace": NAMESPACE },
        "spec": { "version": "v1.35.4" },
    }))?;
    let hc = hcs.create(&PostParams::default(), &hc).await?;
    // The admin kubeconfig and the cluster CA as the HostedCluster controller would have made
    // them (owned by the HostedCluster: nestplane reads key material only from its own Secrets),
    // here for the testenv API server playing the hosted cluster.
    let owner = hc
        .controller_owner_ref(&())
        .context("the HostedCluster has no uid")?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let kubeconfig = std::fs::read_to_string(env.admin_kubeconfig())?;
    let ca = env.bundle().ca.cert_pem.clone();
    for (name, key, value, owned) in [
        ("demo-kubeconfig", "value", kubeconfig.as_str(), true),
        ("demo-ca", "tls.crt", ca.as_str(), true),
        ("cloud", "clouds.yaml", clouds_text, false),
    ] {
        let mut secret: Secret = serde_json::from_value(json!({
            "metadata": { "name": name }, "stringData": { key: value },
        }))?;
        if owned {
            secret.metadata.owner_references = Some(vec![owner.clone()]);
        }
        secrets.create(&PostParams::default(), &secret).await?;
    }
    let status = json!({ "status": {
        "endpoint": env.server(),
        "kubeconfigSecretRef": { "name": "demo-kubeconfig", "key": "value" },
        "conditions": [{
            "type": "Available", "status": "True", "reason": "AllComponentsAvailable",
            "message": "set by the test", "lastTransitionTime": "2026-01-01T00:00:00Z",
        }],
    }});
    hcs.patch_status(CLUSTER, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(hc)
}

async fn create_pool(
    client: &Client,
    name: &str,
    cloud: &str,
    flavor: &str,
    replicas: i32,
) -> Result<NodePool> {
    create_pool_with(client, name, "cloud", cloud, flavor, replicas).await
}

async fn create_pool_with(
    client: &Client,
    name: &str,
    secret: &str,
    cloud: &str,
    flavor: &str,
    replicas: i32,
) -> Result<NodePool> {
    let pool: NodePool = serde_json::from_value(json!({
        "apiVersion": "nestplane.io/v1alpha1", "kind": "NodePool",
        "metadata": { "name": name, "namespace": NAMESPACE },
        "spec": {
            "clusterName": CLUSTER,
            "replicas": replicas,
            "openstack": {
                "cloudSecretRef": { "name": secret },
                "cloud": cloud,
                "flavor": flavor,
                "image": "nestplane-tiny",
                "networks": ["nestplane-net"],
                "availabilityZone": "nestplane-fake",
            },
        },
    }))?;
    Ok(Api::<NodePool>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &pool)
        .await?)
}

async fn scale(client: &Client, name: &str, replicas: i32) -> Result<()> {
    let patch = json!({ "spec": { "replicas": replicas } });
    Api::<NodePool>::namespaced(client.clone(), NAMESPACE)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Retries `check` every 2 s until it passes or `STEP` is over; then its last complaint.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                bail!("{what}: still not after {STEP:?}: {e:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

/// The pool's live servers in Nova, by ID and name.
async fn servers(nova: &dyn Compute, pool: &NodePool) -> Result<BTreeSet<(String, String)>> {
    let tag = format!("np-pool:{}", pool.uid().unwrap_or_default());
    Ok(nova
        .list_servers_by_tag(&tag)
        .await?
        .into_iter()
        .filter(|s| s.status != ServerStatus::Deleted)
        .map(|s| (s.id, s.name))
        .collect())
}

async fn workers(client: &Client, pool: &str) -> Result<Vec<Worker>> {
    let selector = format!("nestplane.io/node-pool={pool}");
    Ok(Api::<Worker>::namespaced(client.clone(), NAMESPACE)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

/// Nova, the Workers and the pool's status agree on `n` workers: one ACTIVE server per Worker,
/// named after it and recorded in its status, and `status.replicas` n.
async fn agree(client: &Client, nova: &dyn Compute, pool: &NodePool, n: usize) -> Result<Vec<Worker>> {
    let name = pool.name_any();
    eventually(&format!("{n} workers in {name}"), || async {
        let workers = workers(client, &name).await?;
        let servers = servers(nova, pool).await?;
        let current = Api::<NodePool>::namespaced(client.clone(), NAMESPACE)
            .get(&name)
            .await?;
        let status = current.status.clone().unwrap_or_default();
        let ready = condition(&current, "Ready");
        let failures: Vec<_> = workers
            .iter()
            .filter_map(|w| w.status.as_ref()?.failure_message.clone())
            .collect();
        ensure!(
            workers.len() == n,
            "{} Workers (Ready {ready:?}, failures {failures:?})",
            workers.len()
        );
        ensure!(
            servers.len() == n,
            "{} servers: {servers:?} (Ready {ready:?}, failures {failures:?})",
            servers.len()
        );
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
                "{}'s server {id} is not among {servers:?}",
                worker.name_any()
            );
            ensure!(
                ws.server_status.as_deref() == Some("ACTIVE"),
                "{} server {:?}",
                worker.name_any(),
                ws.server_status
            );
        }
        Ok(workers)
    })
    .await
}

fn condition(pool: &NodePool, type_: &str) -> Option<(String, String, String)> {
    let c = pool
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn lifecycle(client: &Client, nova: &dyn Compute) -> Result<()> {
    let pool = create_pool(client, "workers", "nestplane", "nestplane.tiny", 0).await?;
    agree(client, nova, &pool, 0).await?;
    scale(client, "workers", 5).await?;
    agree(client, nova, &pool, 5).await?;
    scale(client, "workers", 2).await?;
    let two = agree(client, nova, &pool, 2).await?;

    // A Worker deleted by its user is replaced, with a new server.
    let gone = two[0].name_any();
    Api::<Worker>::namespaced(client.clone(), NAMESPACE)
        .delete(&gone, &DeleteParams::default())
        .await?;
    eventually("the deleted Worker replaced", || async {
        let now = agree(client, nova, &pool, 2).await?;
        ensure!(now.iter().all(|w| w.name_any() != gone), "{gone} is still there");
        Ok(())
    })
    .await?;

    // A server deleted behind the operator's back fails its Worker, and auto-repair replaces it.
    let victim = workers(client, "workers").await?.remove(0);
    let victim_id = victim
        .status
        .and_then(|s| s.server_id)
        .ok_or_else(|| anyhow!("no server ID"))?;
    nova.delete_server(&victim_id).await?;
    eventually("the vanished server replaced", || async {
        let now = agree(client, nova, &pool, 2).await?;
        ensure!(
            now.iter()
                .all(|w| w.name_any() != victim.metadata.name.clone().unwrap_or_default()),
            "the Worker of the vanished server is still there"
        );
        Ok(())
    })
    .await?;

    rolling_update(client, nova, &pool).await?;
    nodes_ready_and_not_ready(client, nova, &pool).await?;

    scale(client, "workers", 0).await?;
    agree(client, nova, &pool, 0).await?;
    // The Ready Node went with its worker (cordoned, drained, deleted).
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    ensure!(
        nodes.items.is_empty(),
        "Nodes left: {:?}",
        nodes.iter().map(|n| n.name_any()).collect::<Vec<_>>()
    );
    delete_pool(client, nova, &pool).await
}

async fn delete_pool(client: &Client, nova: &dyn Compute, pool: &NodePool) -> Result<()> {
    let api = Api::<NodePool>::namespaced(client.clone(), NAMESPACE);
    api.delete(&pool.name_any(), &DeleteParams::default()).await?;
    eventually("the pool gone with its servers", || async {
        ensure!(
            api.get_opt(&pool.name_any()).await?.is_none(),
            "the NodePool is still there"
        );
        let left = servers(nova, pool).await?;
        ensure!(left.is_empty(), "servers left: {left:?}");
        Ok(())
    })
    .await
}

async fn quota_exceeded(client: &Client, quota: &dyn Compute) -> Result<()> {
    let pool = create_pool(client, "quota", "nestplane-quota", "nestplane.tiny", 3).await?;
    let api = Api::<NodePool>::namespaced(client.clone(), NAMESPACE);
    eventually("QuotaExceeded with two servers", || async {
        let current = api.get("quota").await?;
        let ready = condition(&current, "Ready").ok_or_else(|| anyhow!("no Ready condition"))?;
        ensure!(
            ready.0 == "False" && ready.1 == "QuotaExceeded",
            "Ready {ready:?}"
        );
        let servers = servers(quota, &pool).await?;
        ensure!(servers.len() == 2, "{} servers", servers.len());
        Ok(())
    })
    .await?;
    // Backoff, not a hot loop: still two, and no third attempt got through.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let servers = servers(quota, &pool).await?;
    ensure!(servers.len() == 2, "{} servers after waiting", servers.len());
    delete_pool(client, quota, &pool).await
}

async fn wrong_flavor(client: &Client, nova: &dyn Compute) -> Result<()> {
    let pool = create_pool(client, "wrong-flavor", "nestplane", "no-such-flavor", 1).await?;
    let api = Api::<NodePool>::namespaced(client.clone(), NAMESPACE);
    eventually("FlavorNotFound", || async {
        let current = api.get("wrong-flavor").await?;
        let ready = condition(&current, "Ready").ok_or_else(|| anyhow!("no Ready condition"))?;
        ensure!(ready.1 == "FlavorNotFound", "Ready {ready:?}");
        ensure!(
            ready.2.contains("no-such-flavor"),
            "the message does not name the flavor: {}",
            ready.2
        );
        Ok(())
    })
    .await?;
    ensure!(
        servers(nova, &pool).await?.is_empty(),
        "a server exists for a missing flavor"
    );
    delete_pool(client, nova, &pool).await
}

async fn create_secret(client: &Client, name: &str, clouds_text: &str) -> Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": name }, "stringData": { "clouds.yaml": clouds_text },
    }))?;
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

async fn ready_reason(client: &Client, pool: &str, reason: &str, names: &str) -> Result<()> {
    let api = Api::<NodePool>::namespaced(client.clone(), NAMESPACE);
    eventually(reason, || async {
        let current = api.get(pool).await?;
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

async fn wrong_credentials(client: &Client, nova: &dyn Compute, clouds_text: &str) -> Result<()> {
    let mut clouds: serde_yaml::Value = serde_yaml::from_str(clouds_text)?;
    clouds["clouds"]["nestplane"]["auth"]["application_credential_secret"] = "not-the-secret".into();
    create_secret(client, "wrong", &serde_yaml::to_string(&clouds)?).await?;
    let pool = create_pool_with(
        client,
        "wrong-credentials",
        "wrong",
        "nestplane",
        "nestplane.tiny",
        1,
    )
    .await?;
    ready_reason(client, "wrong-credentials", "AuthenticationFailed", "401").await?;
    ensure!(
        servers(nova, &pool).await?.is_empty(),
        "a server without credentials"
    );
    // With the credentials fixed, the Worker can make sure there is nothing to delete.
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .delete("wrong", &DeleteParams::default())
        .await?;
    create_secret(client, "wrong", clouds_text).await?;
    delete_pool(client, nova, &pool).await
}

async fn deleted_cloud_secret(client: &Client, nova: &dyn Compute, clouds_text: &str) -> Result<()> {
    create_secret(client, "doomed", clouds_text).await?;
    let pool = create_pool_with(client, "secretless", "doomed", "nestplane", "nestplane.tiny", 1).await?;
    agree(client, nova, &pool, 1).await?;
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .delete("doomed", &DeleteParams::default())
        .await?;
    ready_reason(client, "secretless", "CloudSecretInvalid", "pools/doomed").await?;
    create_secret(client, "doomed", clouds_text).await?;
    agree(client, nova, &pool, 1).await?;
    delete_pool(client, nova, &pool).await
}

/// A changed flavor replaces every worker, within maxSurge 1 (the fake host's servers never
/// become Nodes, so they are all unavailable and go one by one).
async fn rolling_update(client: &Client, nova: &dyn Compute, pool: &NodePool) -> Result<()> {
    let before: BTreeSet<String> = workers(client, "workers")
        .await?
        .iter()
        .map(|w| w.name_any())
        .collect();
    let patch = json!({ "spec": { "openstack": { "flavor": "nestplane.small" } } });
    Api::<NodePool>::namespaced(client.clone(), NAMESPACE)
        .patch("workers", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    eventually("every worker replaced", || async {
        let now = agree(client, nova, pool, 2).await?;
        ensure!(
            now.iter().all(|w| !before.contains(&w.name_any())),
            "old workers remain: {:?}",
            now.iter().map(|w| w.name_any()).collect::<Vec<_>>()
        );
        let current = Api::<NodePool>::namespaced(client.clone(), NAMESPACE)
            .get("workers")
            .await?;
        let status = current.status.clone().unwrap_or_default();
        ensure!(
            status.updated_replicas == 2,
            "updatedReplicas {}",
            status.updated_replicas
        );
        let updating = condition(&current, "UpdatingConfig").ok_or_else(|| anyhow!("no UpdatingConfig"))?;
        ensure!(updating.0 == "False", "UpdatingConfig {updating:?}");
        Ok(())
    })
    .await
}

/// The test plays two kubelets: a Ready Node counts as ready, a Node NotReady for an hour is
/// replaced by auto-repair, and its Node is deleted with it.
async fn nodes_ready_and_not_ready(client: &Client, nova: &dyn Compute, pool: &NodePool) -> Result<()> {
    let current = workers(client, "workers").await?;
    let (healthy, sick) = (current[0].name_any(), current[1].name_any());
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, ready) in [(&healthy, "True"), (&sick, "False")] {
        let node: Node = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
        nodes.create(&PostParams::default(), &node).await?;
        let status = json!({ "status": { "conditions": [{
            "type": "Ready", "status": ready, "reason": "Test", "message": "played by the test",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z",
        }] } });
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    eventually(
        "the NotReady worker replaced and the Ready one counted",
        || async {
            let now = agree(client, nova, pool, 2).await?;
            let names: Vec<String> = now.iter().map(|w| w.name_any()).collect();
            ensure!(
                !names.contains(&sick),
                "{sick} (NotReady for long) is still there"
            );
            ensure!(names.contains(&healthy), "{healthy} (Ready) was replaced");
            ensure!(
                nodes.get_opt(&sick).await?.is_none(),
                "the Node of {sick} was not deleted"
            );
            let current = Api::<NodePool>::namespaced(client.clone(), NAMESPACE)
                .get("workers")
                .await?;
            let status = current.status.clone().unwrap_or_default();
            ensure!(
                status.ready_replicas == 1,
                "readyReplicas {}",
                status.ready_replicas
            );
            let worker = now
                .iter()
                .find(|w| w.name_any() == healthy)
                .and_then(|w| w.status.clone());
            ensure!(
                worker.as_ref().and_then(|s| s.phase) == Some(nestplane::api::WorkerPhase::Running),
                "{healthy} is not Running: {worker:?}"
            );
            Ok(())
        },
    )
    .await
}

/// Ports on a fixed subnet: each worker's server boots on a port of its own, on that subnet,
/// named after the worker; deleting the pool leaves no port. A fixed address with two replicas
/// (or a surge) is refused at admission, through `kubectl scale` too. (The address itself is
/// not asked for here: Neutron's default policy lets only the network's owner pick one, and
/// the test project does not own `nestplane-net`.)
async fn fixed_port(client: &Client, nova: &dyn Compute) -> Result<()> {
    let api = Api::<NodePool>::namespaced(client.clone(), NAMESPACE);
    // The second pool has its own name: testenv runs no garbage collector, so Workers of the
    // deleted first pool would still carry its name.
    let spec = |name: &str, replicas: i32, max_surge: i32, address: Option<&str>| {
        let mut fixed = json!({ "subnet": "nestplane-subnet" });
        if let Some(address) = address {
            fixed["ipAddress"] = json!(address);
        }
        json!({
            "apiVersion": "nestplane.io/v1alpha1", "kind": "NodePool",
            "metadata": { "name": name, "namespace": NAMESPACE },
            "spec": {
                "clusterName": CLUSTER,
                "replicas": replicas,
                "management": { "maxSurge": max_surge, "maxUnavailable": 1 },
                "openstack": {
                    "cloudSecretRef": { "name": "cloud" },
                    "cloud": "nestplane",
                    "flavor": "nestplane.tiny",
                    "image": "nestplane-tiny",
                    "ports": [{ "network": "nestplane-net", "fixedIps": [fixed] }],
                    "availabilityZone": "nestplane-fake",
                },
            },
        })
    };
    for (replicas, max_surge) in [(2, 0), (1, 1)] {
        let refused = api
            .create(
                &PostParams::default(),
                &serde_json::from_value(spec("pinned", replicas, max_surge, Some("172.31.250.247")))?,
            )
            .await
            .err()
            .with_context(|| {
                format!("replicas {replicas}, maxSurge {max_surge} with a fixed address was admitted")
            })?;
        ensure!(
            refused
                .to_string()
                .contains("replicas <= 1 and management.maxSurge 0"),
            "refused for another reason: {refused}"
        );
    }
    let pinned = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(spec("pinned", 1, 0, Some("172.31.250.247")))?,
        )
        .await?;
    let scaled = api
        .patch_scale(
            "pinned",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 2 } })),
        )
        .await;
    ensure!(
        scaled.is_err(),
        "scaling a pool with a fixed address to 2 was admitted"
    );
    api.delete("pinned", &DeleteParams::default()).await?;
    eventually("the pinned pool gone", || async {
        ensure!(api.get_opt("pinned").await?.is_none(), "still there");
        Ok(())
    })
    .await?;
    let left = nova
        .list_ports_by_tag(&format!("np-pool:{}", pinned.uid().unwrap_or_default()))
        .await?;
    ensure!(left.is_empty(), "ports left after the pinned pool: {left:?}");

    let pool = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(spec("ported", 2, 1, None))?,
        )
        .await?;
    let workers = agree(client, nova, &pool, 2).await?;
    let pool_tag = format!("np-pool:{}", pool.uid().unwrap_or_default());
    let ports = nova.list_ports_by_tag(&pool_tag).await?;
    ensure!(ports.len() == 2, "ports of the pool: {ports:?}");
    let subnet = nova
        .find_subnet(&nova.find_network("nestplane-net").await?, "nestplane-subnet")
        .await?;
    for worker in &workers {
        let status = worker.status.clone().unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.device_id == status.server_id)
            .with_context(|| format!("no port of {}'s server among {ports:?}", worker.name_any()))?;
        ensure!(port.name == format!("{}-0", worker.name_any()), "port {port:?}");
        let on_subnet: Vec<&String> = port
            .fixed_ips
            .iter()
            .filter(|ip| ip.subnet_id == subnet)
            .filter_map(|ip| ip.ip_address.as_ref())
            .collect();
        ensure!(
            on_subnet.len() == 1 && status.addresses.iter().collect::<Vec<_>>() == on_subnet,
            "{} has addresses {:?}, its port {port:?}",
            worker.name_any(),
            status.addresses
        );
    }
    delete_pool(client, nova, &pool).await?;
    let left = nova.list_ports_by_tag(&pool_tag).await?;
    ensure!(left.is_empty(), "ports left after the pool: {left:?}");
    Ok(())
}

/// A pool with a server group policy schedules into one group of its own, deleted with the pool.
async fn server_group(client: &Client, nova: &dyn Compute) -> Result<()> {
    let pool = create_pool(client, "spread", "nestplane", "nestplane.tiny", 0).await?;
    let patch =
        json!({ "spec": { "replicas": 2, "openstack": { "serverGroupPolicy": "soft-anti-affinity" } } });
    Api::<NodePool>::namespaced(client.clone(), NAMESPACE)
        .patch("spread", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    agree(client, nova, &pool, 2).await?;
    let name = format!("np-pool:{}", pool.uid().unwrap_or_default());
    let group = nova.ensure_server_group(&name, "soft-anti-affinity").await?;
    delete_pool(client, nova, &pool).await?;
    let after = nova.ensure_server_group(&name, "soft-anti-affinity").await?;
    nova.delete_server_groups(&name).await?;
    ensure!(
        after != group,
        "the pool's server group {group} outlived the pool"
    );
    Ok(())
}

/// The fake host's servers never boot, so their Nodes never register: with a 30 s start-up
/// timeout the worker is replaced (the old server gone from Nova, the event saying why); with
/// auto-repair then off the next one stays, Joining, with `NodeStartupTimeout` on the Worker and
/// its name in the pool's `AllMachinesReady`.
async fn node_startup_timeout(client: &Client, nova: &dyn Compute) -> Result<()> {
    let pool = create_pool(client, "late", "nestplane", "nestplane.tiny", 0).await?;
    let api = Api::<NodePool>::namespaced(client.clone(), NAMESPACE);
    let management = json!({ "spec": { "replicas": 1, "management": { "nodeStartupTimeoutSeconds": 30 } } });
    api.patch("late", &PatchParams::default(), &Patch::Merge(&management))
        .await?;
    let (first, first_server) = eventually("the first worker's server", || async {
        let current = workers(client, "late").await?;
        ensure!(current.len() == 1, "{} Workers", current.len());
        let status = current[0].status.clone().unwrap_or_default();
        ensure!(status.server_created.is_some(), "no serverCreated yet");
        let id = status.server_id.ok_or_else(|| anyhow!("no server yet"))?;
        Ok((current[0].name_any(), id))
    })
    .await?;
    eventually("the unjoined worker replaced", || async {
        let names: Vec<String> = workers(client, "late")
            .await?
            .iter()
            .map(|w| w.name_any())
            .collect();
        ensure!(!names.contains(&first) && !names.is_empty(), "Workers {names:?}");
        let left = servers(nova, &pool).await?;
        ensure!(
            !left.iter().any(|(id, _)| *id == first_server),
            "server {first_server} is still in Nova"
        );
        Ok(())
    })
    .await?;
    let events = Api::<Event>::namespaced(client.clone(), NAMESPACE)
        .list(&ListParams::default().fields("involvedObject.name=late,reason=WorkerDeleting"))
        .await?;
    let wanted =
        format!("deleting worker {first}: auto-repair: no Node registered within 30s of server creation");
    ensure!(
        events
            .items
            .iter()
            .any(|e| e.message.as_deref() == Some(wanted.as_str())),
        "no event {wanted:?} among {:?}",
        events.items.iter().map(|e| e.message.clone()).collect::<Vec<_>>()
    );

    let off = json!({ "spec": { "management": { "autoRepair": false } } });
    api.patch("late", &PatchParams::default(), &Patch::Merge(&off))
        .await?;
    let kept = agree(client, nova, &pool, 1).await?[0].name_any();
    eventually("the late worker named, not replaced", || async {
        let current = workers(client, "late").await?;
        ensure!(
            current.len() == 1 && current[0].name_any() == kept,
            "Workers {:?}",
            current.iter().map(|w| w.name_any()).collect::<Vec<_>>()
        );
        let status = current[0].status.clone().unwrap_or_default();
        ensure!(
            status.phase == Some(nestplane::api::WorkerPhase::Joining),
            "phase {:?}",
            status.phase
        );
        ensure!(
            status.failure_reason.as_deref() == Some("NodeStartupTimeout"),
            "failure {:?}",
            status.failure_reason
        );
        let machines = condition(&api.get("late").await?, "AllMachinesReady")
            .ok_or_else(|| anyhow!("no AllMachinesReady"))?;
        ensure!(
            machines.1 == "NodeStartupTimeout"
                && machines.2 == format!("no Node registered within 30s of server creation: {kept}"),
            "AllMachinesReady {machines:?}"
        );
        Ok(())
    })
    .await?;
    ensure!(servers(nova, &pool).await?.len() == 1, "not one server");
    delete_pool(client, nova, &pool).await
}
