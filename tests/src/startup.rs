//! How a HostedCluster starts, as a user would watch it: the time from apply to each milestone
//! (Secrets written, etcd claim bound, each component's pods Ready, the hosted `/readyz`
//! answering its admin, `Available`), taken from watch events as they arrive. `make bench`
//! prints these per cluster (`bench-startup`); `hc_startup_truthful` checks the conditions
//! against the hosted API at the moment each one is seen.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use nestplane_api::HostedCluster;

pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The components whose pods must be Ready, in start order.
pub const COMPONENTS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// A point in a cluster's start, in the order a user sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Milestone {
    /// The admin kubeconfig Secret (the last of the PKI) exists.
    SecretsWritten,
    EtcdClaimBound,
    EtcdReady,
    ApiServerReady,
    /// The hosted API server's `/readyz` answered 200 to the admin kubeconfig (polled).
    ReadyzOk,
    ControllerManagerReady,
    SchedulerReady,
    /// `Available=True` for the current generation.
    Available,
    /// A request as the admin of the hosted cluster (list namespaces) succeeded after Available.
    AdminUsable,
}

impl Milestone {
    pub const ALL: [Milestone; 9] = [
        Milestone::SecretsWritten,
        Milestone::EtcdClaimBound,
        Milestone::EtcdReady,
        Milestone::ApiServerReady,
        Milestone::ReadyzOk,
        Milestone::ControllerManagerReady,
        Milestone::SchedulerReady,
        Milestone::Available,
        Milestone::AdminUsable,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Milestone::SecretsWritten => "secrets",
            Milestone::EtcdClaimBound => "claim_bound",
            Milestone::EtcdReady => "etcd_ready",
            Milestone::ApiServerReady => "apiserver_ready",
            Milestone::ReadyzOk => "readyz",
            Milestone::ControllerManagerReady => "kcm_ready",
            Milestone::SchedulerReady => "scheduler_ready",
            Milestone::Available => "available",
            Milestone::AdminUsable => "admin_usable",
        }
    }

    fn of_component(component: &str) -> Option<Milestone> {
        match component {
            "etcd" => Some(Milestone::EtcdReady),
            "kube-apiserver" => Some(Milestone::ApiServerReady),
            "kube-controller-manager" => Some(Milestone::ControllerManagerReady),
            "kube-scheduler" => Some(Milestone::SchedulerReady),
            _ => None,
        }
    }
}

/// When each milestone of one cluster was first seen, from the apply.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub reached: BTreeMap<Milestone, Duration>,
}

impl Timeline {
    fn reach(&mut self, milestone: Milestone, at: Duration) {
        self.reached.entry(milestone).or_insert(at);
    }

    pub fn get(&self, milestone: Milestone) -> Option<Duration> {
        self.reached.get(&milestone).copied()
    }

    /// `key=seconds` for every milestone, `-` for one not reached.
    pub fn fields(&self) -> String {
        Milestone::ALL
            .iter()
            .map(|m| match self.get(*m) {
                Some(d) => format!("{}={:.2}", m.key(), d.as_secs_f64()),
                None => format!("{}=-", m.key()),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What was seen of the clusters in one namespace while they started.
#[derive(Debug, Default)]
struct Seen {
    timelines: BTreeMap<String, Timeline>,
    /// Admin kubeconfigs, once their Secrets exist, by cluster.
    kubeconfigs: BTreeMap<String, String>,
}

enum Observed {
    HostedCluster(Box<HostedCluster>),
    Pod(Box<Pod>),
    Claim(Box<PersistentVolumeClaim>),
    Secret(Box<Secret>),
}

/// Ready, and not on its way out.
fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && crate::pod_ready(Some(pod))
}

impl Seen {
    fn record(&mut self, object: Observed, at: Duration) {
        match object {
            Observed::HostedCluster(hc) => {
                if crate::hosted::available(Some(&hc)) {
                    self.timeline(&hc.name_any()).reach(Milestone::Available, at);
                }
            }
            Observed::Pod(pod) => {
                let labels = pod.labels();
                let (Some(cluster), Some(milestone)) = (
                    labels.get(INSTANCE_LABEL),
                    labels
                        .get(COMPONENT_LABEL)
                        .and_then(|c| Milestone::of_component(c)),
                ) else {
                    return;
                };
                if pod_ready(&pod) {
                    self.timeline(&cluster.clone()).reach(milestone, at);
                }
            }
            Observed::Claim(claim) => {
                let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
                if let (true, Some(cluster)) = (bound, claim.labels().get(INSTANCE_LABEL)) {
                    self.timeline(&cluster.clone())
                        .reach(Milestone::EtcdClaimBound, at);
                }
            }
            Observed::Secret(secret) => {
                let name = secret.name_any();
                let Some(cluster) = name.strip_suffix("-kubeconfig") else {
                    return;
                };
                if !self.timelines.contains_key(cluster) {
                    return;
                }
                let value = secret.data.as_ref().and_then(|d| d.get("value"));
                if let Some(value) = value {
                    self.kubeconfigs.insert(
                        cluster.to_string(),
                        String::from_utf8_lossy(&value.0).into_owned(),
                    );
                    self.timeline(cluster).reach(Milestone::SecretsWritten, at);
                }
            }
        }
    }

    fn timeline(&mut self, cluster: &str) -> &mut Timeline {
        self.timelines.entry(cluster.to_string()).or_default()
    }
}

/// Applies `clusters` (server-side) in `namespace` at one instant, then follows them until each
/// is Available and usable by its admin, or `timeout` passes.
pub async fn start_and_follow(
    client: &Client,
    namespace: &str,
    clusters: &[HostedCluster],
    timeout: Duration,
) -> Result<BTreeMap<String, Timeline>> {
    let hcs: Api<HostedCluster> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default();
    let events = stream::select_all([
        watch(
            Api::<HostedCluster>::namespaced(client.clone(), namespace),
            config.clone(),
            |o| Observed::HostedCluster(Box::new(o)),
        ),
        watch(
            Api::<Pod>::namespaced(client.clone(), namespace),
            config.clone(),
            |o| Observed::Pod(Box::new(o)),
        ),
        watch(
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace),
            config.clone(),
            |o| Observed::Claim(Box::new(o)),
        ),
        watch(
            Api::<Secret>::namespaced(client.clone(), namespace),
            config,
            |o| Observed::Secret(Box::new(o)),
        ),
    ]);
    let mut events = std::pin::pin!(events);
    let mut seen = Seen::default();
    for hc in clusters {
        seen.timeline(&hc.name_any());
    }
    let start = Instant::now();
    for hc in clusters {
        let name = hc.name_any();
        hcs.patch(&name, &PatchParams::apply("nestplane-bench"), &Patch::Apply(hc))
            .await
            .with_context(|| format!("applying HostedCluster {name}"))?;
    }
    let deadline = start + timeout;
    let mut readyz_probe = tokio::time::interval(Duration::from_millis(100));
    loop {
        if seen
            .timelines
            .values()
            .all(|t| t.get(Milestone::AdminUsable).is_some())
        {
            return Ok(seen.timelines);
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(object)) => seen.record(object, start.elapsed()),
                // The watcher retries by itself; a gap only delays what is seen.
                Some(Err(error)) => eprintln!("watch: {error}"),
                None => bail!("the watches ended"),
            },
            _ = readyz_probe.tick() => probe_admins(&mut seen, start).await,
            _ = tokio::time::sleep_until(deadline.into()) => {
                let pending: Vec<_> = seen.timelines.iter()
                    .filter(|(_, t)| t.get(Milestone::AdminUsable).is_none())
                    .map(|(n, t)| format!("{n}: {}", t.fields()))
                    .collect();
                bail!("not usable within {timeout:?}: {}", pending.join("; "));
            }
        }
    }
}

/// Polls `/readyz` as the admin of each cluster whose API server pod is Ready, and a list of
/// namespaces for each one that is Available.
async fn probe_admins(seen: &mut Seen, start: Instant) {
    let due: Vec<(String, String, bool)> = seen
        .timelines
        .iter()
        .filter_map(|(name, t)| {
            let kubeconfig = seen.kubeconfigs.get(name)?;
            let readyz_due =
                t.get(Milestone::ApiServerReady).is_some() && t.get(Milestone::ReadyzOk).is_none();
            let usable_due = t.get(Milestone::Available).is_some() && t.get(Milestone::AdminUsable).is_none();
            (readyz_due || usable_due).then(|| (name.clone(), kubeconfig.clone(), usable_due))
        })
        .collect();
    for (name, kubeconfig, usable_due) in due {
        let Ok(client) = crate::hosted::hosted_client(&kubeconfig).await else {
            continue;
        };
        let probe = tokio::time::timeout(Duration::from_secs(2), crate::hosted::readyz(&client)).await;
        if matches!(probe, Ok(Ok(_))) {
            seen.timeline(&name).reach(Milestone::ReadyzOk, start.elapsed());
        }
        if usable_due {
            let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
            let list =
                tokio::time::timeout(Duration::from_secs(2), namespaces.list(&Default::default())).await;
            if matches!(list, Ok(Ok(_))) {
                seen.timeline(&name)
                    .reach(Milestone::AdminUsable, start.elapsed());
            }
        }
    }
}

fn watch<K, F>(
    api: Api<K>,
    config: watcher::Config,
    wrap: F,
) -> std::pin::Pin<Box<dyn futures::Stream<Item = Result<Observed, watcher::Error>> + Send>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
    F: Fn(K) -> Observed + Send + Sync + Copy + 'static,
{
    watcher::watcher(api, config)
        .map_ok(move |event| match event {
            Event::Apply(o) | Event::InitApply(o) => vec![wrap(o)],
            _ => Vec::new(),
        })
        .map_ok(|objects| stream::iter(objects.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}

/// Median of some durations, in seconds.
pub fn median_s(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
