//! Leader election against a real kube-apiserver and etcd: of replicas electing on one Lease,
//! one runs its controllers and the others stand by; a killed leader is replaced within the
//! Lease's duration; a leader that stops releases the Lease; a leader whose Lease is taken
//! stops its controllers and fails. Each replica is `leader::lead` with a stand-in for the
//! controllers that records whether it runs.
//!
//! Needs the pinned binaries (`make binaries`); without them it passes with a note, except
//! under `make test`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use nestplane::leader::{self, Election};
use nestplane::metrics::Metrics;
use nestplane_testenv::TestEnv;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NAMESPACE: &str = "nestplane-system";
/// Short, so the test takes seconds; the operator's are 15 and 10.
const DURATION_SECONDS: u64 = 4;
const RENEW_BEFORE_EXPIRY_SECONDS: u64 = 2;
/// What a takeover may take beyond the Lease's duration: the crate's jitter (up to 1 s) and
/// a request or two.
const SLACK: Duration = Duration::from_secs(3);

#[test]
fn one_replica_leads_and_another_takes_over() -> Result<()> {
    let Some(mut env) = TestEnv::start("leader") else {
        return Ok(());
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(async {
        let client = env.client().await;
        let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": NAMESPACE } }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        scenario(&client).await
    });
    if outcome.is_err() {
        env.assert_running();
    }
    outcome
}

async fn scenario(client: &Client) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let lease_duration = Duration::from_secs(DURATION_SECONDS);

    let a = Replica::start(client, "replica-a");
    wait_until("replica-a leads", lease_duration + SLACK, || async {
        Ok(a.running() && holder(&leases).await?.as_deref() == Some("replica-a"))
    })
    .await?;

    // A standby stays one for several renewals of the leader.
    let mut b = Replica::start(client, "replica-b");
    tokio::time::sleep(2 * lease_duration).await;
    ensure!(
        !b.running(),
        "replica-b runs its controllers while replica-a leads"
    );
    ensure!(a.running(), "replica-a stopped leading");
    ensure!(holder(&leases).await?.as_deref() == Some("replica-a"));
    ensure!(
        a.leader_gauge()? == 1 && b.leader_gauge()? == 0,
        "nestplane_leader"
    );

    // The leader dies without releasing the Lease: the standby takes over once it expires.
    let killed = Instant::now();
    a.task.abort();
    wait_until("replica-b takes over", lease_duration + SLACK, || async {
        Ok(b.running() && holder(&leases).await?.as_deref() == Some("replica-b"))
    })
    .await?;
    println!("replica-b took over {:?} after replica-a died", killed.elapsed());
    ensure!(b.leader_gauge()? == 1, "nestplane_leader of the new leader");

    // A leader whose controllers stop (on a signal) releases the Lease and returns Ok; the
    // next standby takes it.
    let mut c = Replica::start(client, "replica-c");
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(!c.running(), "replica-c leads beside replica-b");
    b.stop_controllers();
    let b_result = tokio::time::timeout(SLACK, &mut b.task)
        .await
        .context("replica-b did not stop")??;
    ensure!(b_result.is_ok(), "replica-b stopping: {b_result:?}");
    ensure!(b.leader_gauge()? == 0, "nestplane_leader after stopping");
    wait_until("replica-c takes over", lease_duration + SLACK, || async {
        Ok(c.running() && holder(&leases).await?.as_deref() == Some("replica-c"))
    })
    .await?;

    // Someone else takes the Lease from the leader: it stops its controllers and fails.
    let patch = json!({ "spec": {
        "holderIdentity": "intruder",
        "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now()),
        "leaseDurationSeconds": 60,
    }});
    leases
        .patch(leader::LEASE_NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let c_result = tokio::time::timeout(lease_duration + SLACK, &mut c.task)
        .await
        .context("replica-c kept leading after losing the Lease")??;
    ensure!(
        matches!(c_result, Err(leader::Error::Lost { .. })),
        "replica-c after losing the Lease: {c_result:?}"
    );
    ensure!(!c.running(), "replica-c's controllers still run");
    ensure!(c.leader_gauge()? == 0, "nestplane_leader after losing the Lease");
    Ok(())
}

/// One operator replica: `leader::lead` with controllers that only record that they run.
struct Replica {
    running: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    metrics: Arc<Metrics>,
    task: JoinHandle<Result<(), leader::Error>>,
}

impl Replica {
    fn start(client: &Client, identity: &str) -> Replica {
        let election = Election {
            duration_seconds: DURATION_SECONDS,
            renew_before_expiry_seconds: RENEW_BEFORE_EXPIRY_SECONDS,
            ..Election::new(NAMESPACE, identity)
        };
        let running = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = oneshot::channel::<()>();
        let controllers = {
            let running = running.clone();
            async move {
                let _running = RunningFlag::set(running);
                let _ = stopped.await;
            }
        };
        let metrics = Arc::new(Metrics::default());
        let task = tokio::spawn({
            let client = client.clone();
            let metrics = metrics.clone();
            async move { leader::lead(client, &election, &metrics, controllers).await }
        });
        Replica {
            running,
            stop: Some(stop),
            metrics,
            task,
        }
    }

    fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    fn stop_controllers(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    fn leader_gauge(&self) -> Result<i64> {
        let text = self.metrics.encode()?;
        text.lines()
            .find_map(|line| line.strip_prefix("nestplane_leader "))
            .and_then(|value| value.trim().parse().ok())
            .context("no nestplane_leader in the metrics")
    }
}

/// True while the controllers' future is alive: cleared when it ends or is dropped.
struct RunningFlag(Arc<AtomicBool>);

impl RunningFlag {
    fn set(flag: Arc<AtomicBool>) -> Self {
        flag.store(true, Ordering::SeqCst);
        Self(flag)
    }
}

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

async fn holder(leases: &Api<Lease>) -> Result<Option<String>> {
    Ok(leases
        .get_opt(leader::LEASE_NAME)
        .await?
        .and_then(|lease| lease.spec)
        .and_then(|spec| spec.holder_identity))
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
