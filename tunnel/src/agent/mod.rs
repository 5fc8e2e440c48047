//! The tunnel agent: dials the server, authenticates, and serves the server's CONNECT streams
//! by dialling their targets from this node (`session`).
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use hyper::upgrade::Upgraded;
use rustls::pki_types::ServerName;
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info_span, warn};

use crate::{Error, Metrics, Tuning};

mod session;

/// Where the agent's bearer token comes from. A projected service-account token is rotated by
/// the kubelet, so a file is read again for each connection.
#[derive(Clone, Debug)]
pub enum TokenSource {
    Static(String),
    File(PathBuf),
}

impl TokenSource {
    async fn read(&self) -> Result<String, Error> {
        match self {
            Self::Static(token) => Ok(token.clone()),
            Self::File(path) => tokio::fs::read_to_string(path)
                .await
                .map(|t| t.trim().to_string())
                .map_err(|source| Error::ReadToken {
                    path: path.display().to_string(),
                    source,
                }),
        }
    }
}

/// Sooner than this, a restarted server is rarely ready to take agents.
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_secs(1);
/// A node's agent retries at least this often while its server is away.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The servers' endpoint, `host:port`; the host is also the TLS server name.
    pub endpoint: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub token: TokenSource,
    pub node_name: String,
    /// The node's addresses: dials to them are sent to this agent.
    pub node_addresses: Vec<String>,
    pub tuning: Tuning,
    /// Reconnect backoff: exponential with jitter between these bounds
    /// ([`DEFAULT_MIN_BACKOFF`], [`DEFAULT_MAX_BACKOFF`] unless a test needs them shorter).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

pub struct Agent {
    shared: Arc<AgentShared>,
}

struct AgentShared {
    config: AgentConfig,
    server_name: ServerName<'static>,
    metrics: Metrics,
}

/// An upgraded connection to one server, not yet served.
struct Upgrade {
    server_id: String,
    server_count: usize,
    io: Upgraded,
}

impl Agent {
    pub fn new(config: AgentConfig, metrics: Metrics) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidEndpoint {
            endpoint: config.endpoint.clone(),
            reason: reason.into(),
        };
        let (host, port) = config
            .endpoint
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected host:port"))?;
        port.parse::<u16>()
            .map_err(|_| invalid("the port is not a number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_string()).map_err(|e| invalid(&e.to_string()))?;
        Ok(Self {
            shared: Arc::new(AgentShared {
                config,
                server_name,
                metrics,
            }),
        })
    }

    /// Keeps one connection to each server behind the endpoint, reconnecting with backoff,
    /// until the future is dropped (which closes every connection).
    pub async fn run(self) {
        let config = &self.shared.config;
        let mut backoff = Backoff::new(config.min_backoff, config.max_backoff);
        let mut connections = Connections::default();
        let mut wanted = 1;
        let mut pause = None;
        loop {
            let mut lifetimes = Vec::new();
            while let Some(ended) = connections.tasks.try_join_next_with_id() {
                lifetimes.push(connections.ended(ended));
            }
            if lifetimes.is_empty()
                && connections.len() >= wanted
                && let Some(ended) = connections.tasks.join_next_with_id().await
            {
                lifetimes.push(connections.ended(ended));
            }
            for lived in lifetimes {
                // A connection that ends soon after it was made (a server that closes it, a
                // second agent with the same identity replacing this one) counts as a failure,
                // so that such a cycle backs off too.
                if lived >= STABLE_CONNECTION {
                    backoff.reset();
                } else {
                    pause = Some(backoff.next());
                }
            }
            if connections.len() >= wanted {
                continue;
            }
            if let Some(delay) = pause.take() {
                tokio::time::sleep(delay).await;
            }
            match self.shared.connect().await {
                Ok(upgrade) if connections.holds(&upgrade.server_id) => {
                    // The endpoint led to a server already held: drop this one and try again
                    // soon, the balancer may pick another.
                    debug!(server = %upgrade.server_id, "already connected to this server");
                    wanted = upgrade.server_count;
                    pause = Some(config.min_backoff);
                }
                Ok(upgrade) => {
                    wanted = upgrade.server_count;
                    connections.spawn(self.shared.clone(), upgrade);
                }
                Err(error) => {
                    let delay = backoff.next();
                    warn!(%error, ?delay, "connecting to the tunnel server failed; retrying");
                    pause = Some(delay);
                }
            }
        }
    }
}

/// A connection that lasted this long was a working one: after it ends, the backoff starts over.
const STABLE_CONNECTION: Duration = Duration::from_secs(30);

/// Exponential backoff with jitter between two bounds, without end.
struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times();
        Self {
            builder,
            delays: builder.build(),
            max,
        }
    }

    fn next(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max)
    }

    fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

/// The connections held, one per server id; each task returns how long its connection lasted.
#[derive(Default)]
struct Connections {
    tasks: JoinSet<Duration>,
    server_of: HashMap<tokio::task::Id, String>,
}

impl Connections {
    fn len(&self) -> usize {
        self.server_of.len()
    }

    fn holds(&self, server_id: &str) -> bool {
        self.server_of.values().any(|s| s == server_id)
    }

    fn spawn(&mut self, shared: Arc<AgentShared>, upgrade: Upgrade) {
        let server = upgrade.server_id.clone();
        let span = info_span!("server_connection", server = %server);
        let task = self.tasks.spawn(shared.serve(upgrade).instrument(span));
        self.server_of.insert(task.id(), server);
    }

    /// Forgets an ended connection; returns how long it lasted.
    fn ended(&mut self, ended: Result<(tokio::task::Id, Duration), tokio::task::JoinError>) -> Duration {
        let (id, lived) = match ended {
            Ok(ended) => ended,
            Err(error) => (error.id(), Duration::ZERO),
        };
        self.server_of.remove(&id);
        lived
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_file_is_read_afresh_and_trimmed() {
        let path = std::env::temp_dir().join(format!("nestplane-tunnel-token-{}", std::process::id()));
        let source = TokenSource::File(path.clone());
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(source.read().await.unwrap(), "first");
        // The kubelet rotated the projected token.
        std::fs::write(&path, "second\n").unwrap();
        assert_eq!(source.read().await.unwrap(), "second");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(source.read().await, Err(Error::ReadToken { .. })));
    }

    #[test]
    fn the_endpoint_must_be_host_and_port() {
        let config = |endpoint: &str| AgentConfig {
            endpoint: endpoint.to_string(),
            tls: Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            ),
            token: TokenSource::Static("t".into()),
            node_name: "worker-0".into(),
            node_addresses: vec![],
            tuning: Tuning::default(),
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        };
        for good in ["192.0.2.2:31443", "tunnel.example:443", "[2001:db8::1]:443"] {
            assert!(Agent::new(config(good), Metrics::new()).is_ok(), "{good}");
        }
        for bad in ["192.0.2.2", "host:port", ":443"] {
            assert!(
                matches!(
                    Agent::new(config(bad), Metrics::new()),
                    Err(Error::InvalidEndpoint { .. })
                ),
                "{bad}"
            );
        }
    }
}
