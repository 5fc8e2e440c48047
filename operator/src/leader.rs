//! Leader election on a `coordination.k8s.io/v1` Lease: of the operator's replicas only the one
//! holding the Lease runs the controllers, so two replicas never act on the same object (or
//! create the same server). The others stand by, serving /healthz and /metrics.
//!
//! The Lease is kept by `kube-lease-manager` (kube has no leader election of its own,
//! kube-rs/kube#485): it takes a free or expired Lease, renews it `grace` seconds before it
//! expires, and detects a second holder through server-side apply conflicts.
//!
//! A leader that loses the Lease, or cannot renew it, does not try to stop its controllers
//! half-way: [`lead`] returns an error and the process exits, so the kubelet restarts it as a
//! standby (fail-stop, as kube-controller-manager does). Stopping on a signal releases the Lease
//! so a standby takes over at once instead of after the Lease expires.
use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, instrument, warn};

use crate::metrics::Metrics;

/// The Lease's name in the operator's namespace.
pub const LEASE_NAME: &str = "nestplane-leader";
/// How long a Lease lasts without renewal: a standby takes over at most this long after the
/// leader died (plus up to a second of jitter and the controllers' start).
pub const LEASE_DURATION_SECONDS: u64 = 15;
/// The leader renews this long before the Lease would expire: every 5 seconds with the
/// duration above, so two missed renewals still leave it the Lease.
pub const RENEW_BEFORE_EXPIRY_SECONDS: u64 = 10;
/// Wait between attempts while a standby cannot read the Lease.
const STANDBY_RETRY: Duration = Duration::from_secs(2);

/// Which Lease to hold, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Election {
    pub lease_name: String,
    /// The operator's namespace (`POD_NAMESPACE`).
    pub namespace: String,
    /// This replica's name in the Lease (`POD_NAME`): unique among the replicas, and the same
    /// after a container restart, so a restarted leader takes its own unexpired Lease back.
    pub identity: String,
    pub duration_seconds: u64,
    pub renew_before_expiry_seconds: u64,
}

impl Election {
    /// The operator's election: [`LEASE_NAME`] with the durations above.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            lease_name: LEASE_NAME.to_string(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration_seconds: LEASE_DURATION_SECONDS,
            renew_before_expiry_seconds: RENEW_BEFORE_EXPIRY_SECONDS,
        }
    }

    /// The election of this replica from its pod's namespace and name; outside a pod, the
    /// kubeconfig's namespace and the host name stand in for them.
    pub async fn infer(
        namespace: Option<String>,
        identity: Option<String>,
    ) -> Result<Self, kube::config::InferConfigError> {
        let namespace = match namespace {
            Some(namespace) => namespace,
            None => kube::Config::infer().await?.default_namespace,
        };
        let identity = identity
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("nestplane-{}", std::process::id()));
        Ok(Self::new(namespace, identity))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("preparing Lease {namespace}/{lease}: {source}")]
    Prepare {
        namespace: String,
        lease: String,
        #[source]
        source: LeaseManagerError,
    },
    #[error("Lease {namespace}/{lease} was taken over by another replica; stopping the controllers")]
    Lost { namespace: String, lease: String },
    #[error(
        "renewing Lease {namespace}/{lease}: {source}; stopping the controllers, as another replica may take it"
    )]
    Renew {
        namespace: String,
        lease: String,
        #[source]
        source: LeaseManagerError,
    },
    #[error("listening for termination signals: {0}")]
    Signal(#[source] std::io::Error),
}

/// Stands by until this replica holds the Lease, then runs `controllers` while it keeps it.
/// Returns `Ok` when asked to stop (a signal while standing by, or `controllers` returning,
/// which they do on a signal), and an error when the Lease is lost or cannot be renewed, after
/// dropping `controllers`.
#[instrument(skip_all, fields(lease = %election.lease_name, namespace = %election.namespace, identity = %election.identity))]
pub async fn lead<F>(
    client: Client,
    election: &Election,
    metrics: &Metrics,
    controllers: F,
) -> Result<(), Error>
where
    F: Future<Output = ()>,
{
    metrics.set_leader(false);
    let manager = LeaseManagerBuilder::new(client, &election.lease_name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration_seconds)
        .with_grace(election.renew_before_expiry_seconds)
        // Not the operator's single field manager: the crate tells holders apart by their
        // field managers (a conflicting apply is a held Lease), so each replica needs its own.
        .with_field_manager(format!("nestplane-leader-{}", election.identity))
        .build()
        .await
        .map_err(|source| Error::Prepare {
            namespace: election.namespace.clone(),
            lease: election.lease_name.clone(),
            source,
        })?;

    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    info!("standing by for the leader Lease");
    tokio::select! {
        () = acquire(&manager) => {}
        _ = terminate.recv() => return Ok(()),
        _ = tokio::signal::ctrl_c() => return Ok(()),
    }
    info!("leading: starting the controllers");
    metrics.set_leader(true);
    let outcome = tokio::select! {
        () = controllers => Ok(()),
        error = hold(&manager, election) => Err(error),
    };
    metrics.set_leader(false);
    if outcome.is_ok() {
        // Hand over now rather than after the Lease expires.
        match manager.release().await {
            Ok(()) => info!("released the leader Lease"),
            Err(error) => warn!(%error, "could not release the leader Lease; it expires on its own"),
        }
    }
    outcome
}

/// Returns once this replica holds the Lease.
async fn acquire(manager: &LeaseManager) {
    loop {
        match manager.changed().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(error) => {
                warn!(%error, "reading the leader Lease failed; retrying");
                tokio::time::sleep(STANDBY_RETRY).await;
            }
        }
    }
}

/// Renews the Lease until it is lost or a renewal fails; returns why.
async fn hold(manager: &LeaseManager, election: &Election) -> Error {
    loop {
        match manager.changed().await {
            Ok(true) => {}
            Ok(false) => {
                return Error::Lost {
                    namespace: election.namespace.clone(),
                    lease: election.lease_name.clone(),
                };
            }
            Err(source) => {
                return Error::Renew {
                    namespace: election.namespace.clone(),
                    lease: election.lease_name.clone(),
                    source,
                };
            }
        }
    }
}
