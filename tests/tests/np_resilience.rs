//! A NodePool survives the operator's death and a broken cloud, against the real operator (two
//! replicas, Lease `nestplane-leader`), a real HostedCluster and the test cloud's fake compute
//! host: whatever happened, Nova ends with exactly one server per Worker, found by the pool's
//! tag, and nothing once the pool is gone.
//!
//! The operator is killed (no grace period) at several points of a scale-up: before any server
//! exists, right after the first create, and while servers build. The cloud breaks through the
//! toxiproxy in front of Nova: connections reset, answers later than the client's timeout (so a
//! create can be done in Nova while its answer is lost), and 503s from a stand-in for a load
//! balancer without a backend (toxiproxy works on TCP and has no toxic that answers HTTP).
//! Meanwhile the pool's `Ready` says `CloudUnreachable`, naming the error.
//!
//! Both cases disturb what other tests share (the operator, the cloud): they take
//! [`ONE_AT_A_TIME`], so `make e2e`'s two test threads never run them together (cargo runs test
//! binaries one after another, so no other binary's tests run beside them).

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use nestplane_api::{NodePool, Worker};
use nestplane_e2e::hosted::{self, eventually};
use nestplane_e2e::node_pools::{
    STEP, agree, condition, create_cloud_secret, delete_leaves_nothing, pool, pool_tag, scale, servers,
    workers,
};
use nestplane_e2e::openstack::{cloud_config, clouds_yaml};
use nestplane_e2e::toxiproxy::Toxiproxy;
use nestplane_e2e::{operator_namespace, operator_pods, with_temp_namespace};
use nestplane_openstack::{Client as Nova, Compute, Server, ServerStatus};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const POOL: &str = "workers";
/// How long the operator has to show a fault on the pool.
const NOTICE: Duration = Duration::from_secs(120);
/// How long a settled pool is watched for a late duplicate (a create sent before a death).
const STAYS: Duration = Duration::from_secs(15);
/// How often the moment to kill is looked for.
const POLL: Duration = Duration::from_millis(100);
/// The operator's timeout for one OpenStack request in the fault case (clouds.yaml
/// `api_timeout`; the client's default is 60 s, which would make every faulty pass a minute long).
const API_TIMEOUT_S: u64 = 10;

/// An Available HostedCluster in `namespace`, its cloud Secret with `clouds`, and a pool of it
/// on the fake compute host with `replicas`.
async fn pool_of_a_cluster(
    client: &Client,
    namespace: &str,
    clouds: &str,
    replicas: i32,
) -> Result<NodePool> {
    let hc = hosted::create_available(client, &hosted::sample(namespace)?).await?;
    create_cloud_secret(client, namespace, "cloud", clouds).await?;
    let spec = pool(
        namespace,
        POOL,
        &hc.name_any(),
        "nestplane",
        "nestplane.tiny",
        replicas,
    )?;
    Ok(Api::<NodePool>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &spec)
        .await?)
}

/// Waits until `agree` holds for `n`, then checks that Nova keeps exactly those servers for a
/// while: no duplicate turns up late, none carries the pool's tag without being a Worker's.
async fn settled(client: &Client, nova: &dyn Compute, pool: &NodePool, n: usize) -> Result<()> {
    let workers = agree(client, nova, pool, n).await?;
    let expected: BTreeSet<(String, String)> = workers
        .iter()
        .filter_map(|w| Some((w.status.as_ref()?.server_id.clone()?, w.name_any())))
        .collect();
    tokio::time::sleep(STAYS).await;
    let now = servers(nova, &pool_tag(pool)).await?;
    ensure!(
        now == expected,
        "Nova by the pool's tag {now:?}, the Workers' servers {expected:?}"
    );
    Ok(())
}

/// Live servers with the pool's tag, with their status.
async fn tagged(nova: &dyn Compute, pool: &NodePool) -> Result<Vec<Server>> {
    Ok(nova
        .list_servers_by_tag(&pool_tag(pool))
        .await?
        .into_iter()
        .filter(|s| s.status != ServerStatus::Deleted)
        .collect())
}

/// Where in a scale-up the leader dies.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// Right after the scale, before any server exists.
    AfterScale,
    /// As soon as a server of the pool exists (a Worker has a server ID, or Nova lists one).
    AfterFirstCreate,
    /// While servers build: all three are in Nova, or the first is ACTIVE.
    WhileBuilding,
}

impl KillPoint {
    /// Whether the moment has come, from what Nova and the Workers show.
    fn reached(self, servers: &[Server], workers: &[Worker]) -> bool {
        match self {
            KillPoint::AfterScale => true,
            KillPoint::AfterFirstCreate => {
                !servers.is_empty()
                    || workers
                        .iter()
                        .any(|w| w.status.as_ref().is_some_and(|s| s.server_id.is_some()))
            }
            KillPoint::WhileBuilding => {
                servers.len() >= 3 || servers.iter().any(|s| s.status == ServerStatus::Active)
            }
        }
    }
}

/// Until two operator replicas are Ready, so that a killed leader has a standby.
async fn standby_ready(client: &Client) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &operator_namespace());
    eventually(Duration::from_secs(180), || async {
        let ready = operator_pods::ready(&pods).await?;
        ensure!(ready.len() >= 2, "Ready operator pods: {ready:?}");
        Ok(())
    })
    .await
}

/// Held by each case for its whole run.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn the_leader_killed_during_a_scale_up_leaves_one_server_per_worker() -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().await;
    with_temp_namespace("np-kill", |client, namespace| async move {
        let nova = Nova::new(cloud_config("nestplane")?)?;
        let pool = pool_of_a_cluster(&client, &namespace, &clouds_yaml()?, 0).await?;
        for point in [
            KillPoint::AfterScale,
            KillPoint::AfterFirstCreate,
            KillPoint::WhileBuilding,
        ] {
            standby_ready(&client).await?;
            let started = Instant::now();
            scale(&client, &namespace, POOL, 3).await?;
            let seen = loop {
                let seen = (tagged(&nova, &pool).await?, workers(&client, &pool).await?);
                if point.reached(&seen.0, &seen.1) {
                    break seen;
                }
                ensure!(
                    started.elapsed() < STEP,
                    "{point:?} never came: Nova {:?}",
                    seen.0
                );
                tokio::time::sleep(POLL).await;
            };
            let leader = operator_pods::kill_leader(&client).await?;
            let killed = started.elapsed();
            let statuses: Vec<String> = seen.0.iter().map(|s| s.status.to_string()).collect();
            let recorded = seen
                .1
                .iter()
                .filter(|w| w.status.as_ref().is_some_and(|s| s.server_id.is_some()))
                .count();
            settled(&client, &nova, &pool, 3)
                .await
                .with_context(|| format!("after killing {leader} at {point:?}"))?;
            println!(
                "{point:?}: killed {leader} {killed:?} after the scale, seeing servers {statuses:?} and \
                 {} Workers ({recorded} with a server ID); 3 servers, one per Worker, {:?} after the scale",
                seen.1.len(),
                started.elapsed() - STAYS,
            );
            scale(&client, &namespace, POOL, 0).await?;
            agree(&client, &nova, &pool, 0)
                .await
                .with_context(|| format!("scaling to 0 after {point:?}"))?;
        }
        delete_leaves_nothing(&client, &nova, &pool).await
    })
    .await
}

/// Answers every HTTP request with 503, as a load balancer without a healthy backend does;
/// returns its `host:port`. Lives as long as the test's runtime.
async fn unavailable_backend() -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the whole request first: closing on an unread body would reset the
                // connection, and the client would see a reset instead of the 503.
                let mut request = Vec::new();
                let mut buffer = [0u8; 8192];
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                    if complete(&request) {
                        break;
                    }
                }
                let body = "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n";
                let response = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(address)
}

/// Whether `request` holds a whole HTTP/1.1 request (headers and a `content-length` body).
fn complete(request: &[u8]) -> bool {
    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let headers = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
    let length: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

/// Waits until the pool's `Ready` is False with `CloudUnreachable` and a message containing
/// each of `names`; returns the message.
async fn cloud_unreachable(client: &Client, pool: &NodePool, names: &[&str]) -> Result<String> {
    let api: Api<NodePool> = Api::namespaced(client.clone(), &pool.namespace().unwrap_or_default());
    eventually(NOTICE, || async {
        let current = api.get(&pool.name_any()).await?;
        let (status, reason, message) =
            condition(&current, "Ready").ok_or_else(|| anyhow!("no Ready condition"))?;
        ensure!(
            status == "False" && reason == "CloudUnreachable",
            "Ready {status} {reason}: {message}"
        );
        for name in names {
            ensure!(
                message.to_lowercase().contains(&name.to_lowercase()),
                "the message does not name {name}: {message}"
            );
        }
        Ok(message)
    })
    .await
}

/// Waits until a Worker of the pool reports a failure whose message contains each of `names`.
async fn worker_failure_naming(client: &Client, pool: &NodePool, names: &[&str]) -> Result<String> {
    eventually(NOTICE, || async {
        let failures: Vec<String> = workers(client, pool)
            .await?
            .into_iter()
            .filter_map(|w| w.status?.failure_message)
            .collect();
        failures
            .iter()
            .find(|m| names.iter().all(|n| m.to_lowercase().contains(&n.to_lowercase())))
            .cloned()
            .ok_or_else(|| anyhow!("no Worker failure names {names:?}: {failures:?}"))
    })
    .await
}

/// Checks, a while into a fault, that the pool still says `CloudUnreachable` and that Nova has
/// no server for it beyond `n`.
async fn still_unreachable(client: &Client, nova: &dyn Compute, pool: &NodePool, n: usize) -> Result<()> {
    tokio::time::sleep(STAYS).await;
    cloud_unreachable(client, pool, &[]).await?;
    let count = servers(nova, &pool_tag(pool)).await?.len();
    ensure!(count <= n, "{count} servers while Nova answers nothing");
    Ok(())
}

/// The Workers of the pool that got a `ServerCreated` event: their create's answer arrived.
async fn created_events(client: &Client, pool: &NodePool) -> Result<BTreeSet<String>> {
    let events = Api::<Event>::namespaced(client.clone(), &pool.namespace().unwrap_or_default())
        .list(&ListParams::default().fields("involvedObject.kind=Worker,reason=ServerCreated"))
        .await?;
    Ok(events
        .items
        .into_iter()
        .filter_map(|e| e.involved_object.name)
        .collect())
}

#[tokio::test]
async fn cloud_faults_show_cloud_unreachable_and_leave_no_duplicate() -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().await;
    let toxiproxy = Toxiproxy::new();
    toxiproxy.reset().await?;
    let nova_upstream = toxiproxy.upstream("nova").await?;
    let outcome = AssertUnwindSafe(with_temp_namespace("np-faults", |client, namespace| {
        faults(client, namespace, &toxiproxy, &nova_upstream)
    }))
    .catch_unwind()
    .await;
    // Whatever happened, Nova is reachable again for what runs next.
    toxiproxy.set_upstream("nova", &nova_upstream).await?;
    toxiproxy.reset().await?;
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Nova as the test sees it during a fault: through the catalog's `internal` endpoints, which
/// bypass toxiproxy (the operator uses the `public` ones).
fn nova_beside_the_proxy() -> Result<Nova> {
    let mut config = cloud_config("nestplane")?;
    config.interface = "internal".into();
    Ok(Nova::new(config)?)
}

async fn faults(client: Client, namespace: String, toxiproxy: &Toxiproxy, nova_upstream: &str) -> Result<()> {
    let nova = nova_beside_the_proxy()?;
    let mut clouds: serde_yaml::Value = serde_yaml::from_str(&clouds_yaml()?)?;
    clouds["clouds"]["nestplane"]["api_timeout"] = API_TIMEOUT_S.into();
    let pool = pool_of_a_cluster(&client, &namespace, &serde_yaml::to_string(&clouds)?, 2).await?;
    settled(&client, &nova, &pool, 2).await?;

    // (a) Every connection to Nova is reset as its answer starts.
    toxiproxy
        .add_toxic("nova", "reset", "reset_peer", json!({ "timeout": 0 }))
        .await?;
    let broken = Instant::now();
    scale(&client, &namespace, POOL, 3).await?;
    let message = cloud_unreachable(&client, &pool, &[":18774/"]).await?;
    println!("reset: CloudUnreachable after {:?}: {message}", broken.elapsed());
    still_unreachable(&client, &nova, &pool, 2).await?;
    toxiproxy.remove_toxic("nova", "reset").await?;
    let fixed = Instant::now();
    settled(&client, &nova, &pool, 3)
        .await
        .context("after the resets")?;
    println!("reset: 3 servers {:?} after the fault", fixed.elapsed() - STAYS);

    // (b) Answers come later than the client waits: first all of them, so nothing can be done;
    // then each late or not at random, so that a create can be done in Nova while its answer is
    // lost. The server must then be found by its tag, never made twice.
    let timeout_ms = API_TIMEOUT_S * 1000;
    toxiproxy
        .add_toxic("nova", "slow", "latency", json!({ "latency": timeout_ms + 5000 }))
        .await?;
    let broken = Instant::now();
    scale(&client, &namespace, POOL, 4).await?;
    let message = cloud_unreachable(&client, &pool, &[":18774/", "timed out"]).await?;
    println!(
        "latency: CloudUnreachable after {:?}: {message}",
        broken.elapsed()
    );
    still_unreachable(&client, &nova, &pool, 3).await?;
    toxiproxy.remove_toxic("nova", "slow").await?;
    toxiproxy
        .add_toxic(
            "nova",
            "jitter",
            "latency",
            json!({ "latency": timeout_ms, "jitter": timeout_ms }),
        )
        .await?;
    let jitter = Instant::now();
    while jitter.elapsed() < Duration::from_secs(60)
        && servers(&nova, &pool_tag(&pool))
            .await
            .map_or(true, |s| s.len() < 4)
    {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The Worker's next look at its server goes through the same fault.
    tokio::time::sleep(Duration::from_secs(10)).await;
    toxiproxy.remove_toxic("nova", "jitter").await?;
    let fixed = Instant::now();
    settled(&client, &nova, &pool, 4)
        .await
        .context("after the latency")?;
    let answered = created_events(&client, &pool).await?;
    let adopted: Vec<String> = workers(&client, &pool)
        .await?
        .iter()
        .map(|w| w.name_any())
        .filter(|name| !answered.contains(name))
        .collect();
    println!(
        "latency: 4 servers {:?} after the fault; Workers whose create answer was lost, their server found by tag: {adopted:?}",
        fixed.elapsed() - STAYS
    );

    // (c) Nova's endpoint answers 503.
    toxiproxy
        .set_upstream("nova", &unavailable_backend().await?)
        .await?;
    let broken = Instant::now();
    scale(&client, &namespace, POOL, 5).await?;
    // The pool's message names one failing worker, and a worker still in its backoff from the
    // latency fault may keep that older message a while: the 503 is on the new workers.
    cloud_unreachable(&client, &pool, &[]).await?;
    let message = worker_failure_naming(&client, &pool, &[":18774/", "503"]).await?;
    println!("503: CloudUnreachable after {:?}: {message}", broken.elapsed());
    still_unreachable(&client, &nova, &pool, 4).await?;
    toxiproxy.set_upstream("nova", nova_upstream).await?;
    let fixed = Instant::now();
    settled(&client, &nova, &pool, 5)
        .await
        .context("after the 503s")?;
    println!("503: 5 servers {:?} after the fault", fixed.elapsed() - STAYS);

    delete_leaves_nothing(&client, &nova, &pool).await
}
